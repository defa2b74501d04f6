//! The Firehose endpoint's settings: its listener, access keys, load bounds.

use crate::setting_id as id;
use crate::settings::{non_empty, Check, ConfigError};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Firehose endpoint")]
pub struct FirehoseArgs {
    /// Ingest listener (Firehose endpoint `POST /firehose`, `GET /health`).
    #[arg(long, env = "STEPSTITCH_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// Accepted Firehose access key (repeat the flag, or comma-separate in the env). None: no auth.
    #[arg(
        long = "access-key",
        env = "STEPSTITCH_ACCESS_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub access_keys: Vec<String>,
    /// File with one access key per line, re-read when it changes (rotation without restart).
    #[arg(long, env = "STEPSTITCH_ACCESS_KEYS_FILE")]
    pub access_keys_file: Option<String>,
    /// How often the access keys file is checked for changes.
    #[arg(
        long,
        env = "STEPSTITCH_ACCESS_KEYS_RELOAD_INTERVAL",
        default_value = "5s"
    )]
    pub access_keys_reload_interval: String,
    /// Firehose requests processed at once; more are answered 503.
    #[arg(long, env = "STEPSTITCH_MAX_CONCURRENT_REQUESTS", default_value = "16")]
    pub max_concurrent_requests: String,
    /// Answer every Firehose request within this time (Firehose waits 3 minutes).
    #[arg(long, env = "STEPSTITCH_REQUEST_TIMEOUT", default_value = "150s")]
    pub request_timeout: String,
}

#[derive(Debug, Clone)]
pub struct FirehoseSettings {
    pub listen: SocketAddr,
    pub access_keys: Vec<String>,
    pub access_keys_file: Option<PathBuf>,
    pub access_keys_reload_interval: Duration,
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
}

impl FirehoseArgs {
    pub fn validate(self) -> Result<FirehoseSettings, ConfigError> {
        type C = Check<FirehoseArgs>;
        let access_keys: Vec<String> = self
            .access_keys
            .iter()
            .map(|k| k.trim().to_owned())
            .collect();
        if let Some(i) = access_keys.iter().position(String::is_empty) {
            return Err(C::error(
                id!(access_keys),
                "",
                format!("key {i} is empty"),
                "key-2026-a,key-2026-b",
            ));
        }
        if access_keys
            .iter()
            .any(|k| k.len() > super::auth::MAX_KEY_BYTES)
        {
            return Err(C::error(
                id!(access_keys),
                "",
                "a key is longer than 4096 bytes",
                "key-2026-a,key-2026-b",
            ));
        }
        let access_keys_file = non_empty(self.access_keys_file.clone()).map(PathBuf::from);
        if let Some(path) = &access_keys_file {
            if let Err(e) = std::fs::File::open(path) {
                return Err(C::error(
                    id!(access_keys_file),
                    &path.display().to_string(),
                    format!("cannot read it ({e})"),
                    "/etc/stepstitch/access-keys",
                ));
            }
        }
        let request_timeout = C::duration(id!(request_timeout), &self.request_timeout, "150s")?;
        if request_timeout.is_zero() || request_timeout >= Duration::from_secs(180) {
            return Err(C::error(
                id!(request_timeout),
                &self.request_timeout,
                "must be above 0s and below Firehose's 3-minute deadline",
                "150s",
            ));
        }
        Ok(FirehoseSettings {
            listen: C::socket_addr(id!(listen), &self.listen, "0.0.0.0:8080")?,
            access_keys,
            access_keys_file,
            access_keys_reload_interval: C::positive_duration(
                id!(access_keys_reload_interval),
                &self.access_keys_reload_interval,
                "5s",
            )?,
            max_concurrent_requests: C::count(
                id!(max_concurrent_requests),
                &self.max_concurrent_requests,
                "16",
            )?,
            request_timeout,
        })
    }
}
