//! The bounded queues between the endpoint and the stitcher.

use crate::setting_id as id;
use crate::settings::{non_empty, Check, ConfigError};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Queues")]
pub struct PipelineArgs {
    /// Events accepted but not yet processed, at most; past it requests get 503.
    #[arg(
        long,
        env = "STEPSTITCH_QUEUE_CAPACITY_EVENTS",
        default_value = "1000000"
    )]
    pub queue_capacity_events: String,
    /// Bytes of accepted request bodies waiting to be decoded, at most; past it requests get 503.
    #[arg(long, env = "STEPSTITCH_DECODE_QUEUE_BYTES", default_value = "256MiB")]
    pub decode_queue_bytes: String,
    /// How long a request waits for room in the queue before 503.
    #[arg(long, env = "STEPSTITCH_HANDOFF_WAIT", default_value = "1s")]
    pub handoff_wait: String,
    /// Write every decoded event as a JSON line to this file (`-` = stdout); for debugging.
    #[arg(long, env = "STEPSTITCH_EVENTS_OUT")]
    pub events_out: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub queue_capacity_events: usize,
    pub decode_queue_bytes: usize,
    pub handoff_wait: Duration,
    /// `Some(None)` = stdout.
    pub events_out: Option<Option<PathBuf>>,
}

impl PipelineArgs {
    pub fn validate(self) -> Result<PipelineSettings, ConfigError> {
        type C = Check<PipelineArgs>;
        Ok(PipelineSettings {
            queue_capacity_events: C::count(
                id!(queue_capacity_events),
                &self.queue_capacity_events,
                "1000000",
            )?,
            decode_queue_bytes: C::size(
                id!(decode_queue_bytes),
                &self.decode_queue_bytes,
                "256MiB",
            )?,
            handoff_wait: C::duration(id!(handoff_wait), &self.handoff_wait, "1s")?,
            events_out: non_empty(self.events_out).map(|p| (p != "-").then(|| PathBuf::from(p))),
        })
    }
}
