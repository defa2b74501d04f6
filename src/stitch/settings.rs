//! The stitcher's settings: lifecycle clocks and bounds, payload capture,
//! enhanced metrics, log forwarding.

use super::builder::SpanConfig;
use super::config::StitchConfig;
use super::output::ForwardLogs;
use crate::setting_id as id;
use crate::settings::{list, Check, ConfigError};
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Stitching")]
pub struct StitchArgs {
    /// Wait after an execution's terminal event for late events.
    #[arg(long, env = "STEPSTITCH_FINALIZE_GRACE", default_value = "5s")]
    pub finalize_grace: String,
    /// Emit an execution with no terminal event after this long without events.
    #[arg(long, env = "STEPSTITCH_IDLE_TIMEOUT", default_value = "30m")]
    pub idle_timeout: String,
    /// How long an emitted execution is remembered so late events add only new spans.
    #[arg(long, env = "STEPSTITCH_LATE_EVENT_RETENTION", default_value = "2m")]
    pub late_event_retention: String,
    /// Open executions held at most; past it the longest-idle are emitted as incomplete.
    #[arg(long, env = "STEPSTITCH_MAX_OPEN_EXECUTIONS", default_value = "200000")]
    pub max_open_executions: String,
    /// Stitcher shards (executions are spread over them by ARN).
    #[arg(long, env = "STEPSTITCH_STITCH_SHARDS", default_value = "2")]
    pub stitch_shards: String,
    /// While an execution runs, emit its finished spans this often; 0s = only at the end.
    #[arg(long, env = "STEPSTITCH_INCREMENTAL_INTERVAL", default_value = "1m")]
    pub incremental_interval: String,
    /// Payload capture limit per input/output value, in bytes; 0 = off.
    #[arg(long, env = "STEPSTITCH_MAX_PAYLOAD_BYTES", default_value = "16384")]
    pub max_payload_bytes: String,
    /// JSON keys whose values are redacted in captured payloads, comma-separated.
    #[arg(long, env = "STEPSTITCH_REDACT_KEYS", value_delimiter = ',')]
    pub redact_keys: Vec<String>,
    /// Emit the aws.states.enhanced.* metrics (true or false).
    #[arg(long, env = "STEPSTITCH_ENHANCED_METRICS", default_value = "true")]
    pub enhanced_metrics: String,
    /// State machine names or ARNs without enhanced metrics, comma-separated.
    #[arg(
        long,
        env = "STEPSTITCH_ENHANCED_METRICS_EXCLUDE",
        value_delimiter = ','
    )]
    pub enhanced_metrics_exclude: Vec<String>,
    /// Which Step Functions log events go to Datadog's logs intake: none, errors or all.
    #[arg(long, env = "STEPSTITCH_FORWARD_LOGS", default_value = "none")]
    pub forward_logs: String,
}

impl StitchArgs {
    /// The stitcher's configuration; the span dressing that other
    /// components own (service, env, version, static tags) is left at its
    /// default for the app to fill in.
    pub fn validate(self) -> Result<StitchConfig, ConfigError> {
        type C = Check<StitchArgs>;
        let finalize_grace = C::duration(id!(finalize_grace), &self.finalize_grace, "5s")?;
        let forward_logs = match C::one_of(
            id!(forward_logs),
            &self.forward_logs,
            &["none", "errors", "all"],
            "errors",
        )? {
            0 => ForwardLogs::None,
            1 => ForwardLogs::Errors,
            _ => ForwardLogs::All,
        };
        Ok(StitchConfig {
            shards: C::count(id!(stitch_shards), &self.stitch_shards, "2")?,
            mailbox: 64,
            finalize_grace,
            idle_timeout: C::duration(id!(idle_timeout), &self.idle_timeout, "30m")?,
            retention: C::duration(id!(late_event_retention), &self.late_event_retention, "2m")?,
            max_open_executions: C::count(
                id!(max_open_executions),
                &self.max_open_executions,
                "200000",
            )?,
            // Due executions are found within a fraction of the grace.
            tick: (finalize_grace / 4).clamp(Duration::from_millis(10), Duration::from_millis(500)),
            incremental_interval: C::duration(
                id!(incremental_interval),
                &self.incremental_interval,
                "1m",
            )?,
            spans: SpanConfig {
                max_payload_bytes: C::size(
                    id!(max_payload_bytes),
                    &self.max_payload_bytes,
                    "16384",
                )?,
                redact_keys: list(&self.redact_keys),
                enhanced_metrics: C::bool(id!(enhanced_metrics), &self.enhanced_metrics, "false")?,
                enhanced_metrics_exclude: list(&self.enhanced_metrics_exclude),
                event_owners: forward_logs != ForwardLogs::None,
                ..SpanConfig::default()
            },
            forward_logs,
        })
    }
}
