//! Where durable state lives and how much disk it may use.

use crate::setting_id as id;
use crate::settings::{env_of, non_empty, Check, ConfigError};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Durability")]
pub struct DurableArgs {
    /// Directory for durable state.
    #[arg(long, env = "STEPSTITCH_DATA_DIR", default_value = "./data")]
    pub data_dir: String,
    /// Disk the data directory may use for the write-ahead log; past it Firehose gets 503.
    #[arg(long, env = "STEPSTITCH_DATA_MAX_BYTES", default_value = "8GiB")]
    pub data_max_bytes: String,
    /// How often the stitcher's state is snapshotted (the log before it is then reclaimed).
    #[arg(long, env = "STEPSTITCH_SNAPSHOT_INTERVAL", default_value = "30s")]
    pub snapshot_interval: String,
    /// Size of one write-ahead log segment file.
    #[arg(long, env = "STEPSTITCH_WAL_SEGMENT_BYTES", default_value = "64MiB")]
    pub wal_segment_bytes: String,
}

#[derive(Debug, Clone)]
pub struct DurableSettings {
    pub data_dir: PathBuf,
    pub data_max_bytes: u64,
    pub snapshot_interval: Duration,
    pub wal_segment_bytes: u64,
}

impl DurableArgs {
    pub fn validate(self) -> Result<DurableSettings, ConfigError> {
        type C = Check<DurableArgs>;
        let data_dir = non_empty(Some(self.data_dir.clone()))
            .map(PathBuf::from)
            .ok_or_else(|| {
                C::error(
                    id!(data_dir),
                    &self.data_dir,
                    "empty path",
                    "/var/lib/stepstitch",
                )
            })?;
        let data_max_bytes = C::size(id!(data_max_bytes), &self.data_max_bytes, "8GiB")? as u64;
        let wal_segment_bytes =
            C::size(id!(wal_segment_bytes), &self.wal_segment_bytes, "64MiB")? as u64;
        if wal_segment_bytes < 4096 || wal_segment_bytes > data_max_bytes {
            return Err(C::error(
                id!(wal_segment_bytes),
                &self.wal_segment_bytes,
                format!(
                    "must be at least 4KiB and at most {}",
                    env_of::<DurableArgs>("data_max_bytes")
                ),
                "64MiB",
            ));
        }
        let snapshot_interval =
            C::duration(id!(snapshot_interval), &self.snapshot_interval, "30s")?;
        if snapshot_interval < Duration::from_millis(100) {
            return Err(C::error(
                id!(snapshot_interval),
                &self.snapshot_interval,
                "must be at least 100ms",
                "30s",
            ));
        }
        Ok(DurableSettings {
            data_dir,
            data_max_bytes,
            snapshot_interval,
            wal_segment_bytes,
        })
    }
}
