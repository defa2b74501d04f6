//! The stitcher's settings: the lifecycle's clocks and bounds (the core's)
//! and how it is hosted (shards, mailboxes, tick: the shell's).

use super::builder::SpanConfig;
use super::output::ForwardLogs;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct StitchConfig {
    pub shards: usize,
    /// Batches queued per shard.
    pub mailbox: usize,
    pub finalize_grace: Duration,
    pub idle_timeout: Duration,
    /// How long a finished execution is remembered for late events.
    pub retention: Duration,
    /// Open (not yet final) executions held at most, over all shards.
    pub max_open_executions: usize,
    /// How often shards look for due executions.
    pub tick: Duration,
    /// While an execution runs, its finished spans are emitted this often
    /// (and their payloads released); zero turns it off.
    pub incremental_interval: Duration,
    pub spans: SpanConfig,
    /// Which log events go out with their spans.
    pub forward_logs: ForwardLogs,
}

impl Default for StitchConfig {
    fn default() -> Self {
        Self {
            shards: 2,
            mailbox: 64,
            finalize_grace: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30 * 60),
            retention: Duration::from_secs(10 * 60),
            max_open_executions: 200_000,
            tick: Duration::from_millis(500),
            incremental_interval: Duration::from_secs(60),
            spans: SpanConfig::default(),
            forward_logs: ForwardLogs::None,
        }
    }
}
