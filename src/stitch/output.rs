//! What the stitcher hands to the exporters: spans, enhanced metric samples
//! (trace-model.md §6) and, when log forwarding is on, the execution's log
//! events tagged with the span each belongs to. Exporter-neutral.

use super::span::Span;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Enhanced metric names (trace-model.md §6).
pub mod metric {
    pub const EXECUTION_STARTED: &str = "aws.states.enhanced.execution.started";
    pub const EXECUTION_SUCCEEDED: &str = "aws.states.enhanced.execution.succeeded";
    pub const EXECUTION_FAILED: &str = "aws.states.enhanced.execution.failed";
    pub const EXECUTION_TIME: &str = "aws.states.enhanced.execution.execution_time";
    pub const TASKS_STARTED: &str = "aws.states.enhanced.task.execution.tasks_started";
    pub const TASKS_SUCCEEDED: &str = "aws.states.enhanced.task.execution.tasks_succeeded";
    pub const TASKS_FAILED: &str = "aws.states.enhanced.task.execution.tasks_failed";
    pub const TASKS_TIMED_OUT: &str = "aws.states.enhanced.task.execution.tasks_timed_out";
    pub const TASK_DURATION: &str = "aws.states.enhanced.task.execution.task_duration";
    pub const STATE_INVOCATION_COUNT: &str = "aws.states.enhanced.state.invocation_count";
    pub const STATE_SUCCEEDED: &str = "aws.states.enhanced.state.succeeded";
    pub const STATE_FAILED: &str = "aws.states.enhanced.state.failed";
    pub const STATE_RUN_DURATION: &str = "aws.states.enhanced.state.run_duration";
    pub const STATE_DURATION: &str = "aws.states.enhanced.state.duration";
    pub const STATE_RETRY_COUNT: &str = "aws.states.enhanced.state.retry_count";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricKind {
    Count,
    Gauge,
    Distribution,
}

impl MetricKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            MetricKind::Count => "count",
            MetricKind::Gauge => "gauge",
            MetricKind::Distribution => "distribution",
        }
    }
}

/// One observation, stamped at the moment it describes (event time).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    pub name: &'static str,
    pub kind: MetricKind,
    pub value: f64,
    pub timestamp_ms: i64,
    /// `key:value`, sorted; shared by the samples of one execution or state.
    pub tags: std::sync::Arc<[String]>,
}

/// One Step Functions log event, correlated with its span.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogRecord {
    pub timestamp_ms: i64,
    /// A failure, timeout or abort event.
    pub error: bool,
    /// The event as JSON (`id`, `type`, `details`, ... as in the CloudWatch line).
    pub message: String,
    pub trace_id: u64,
    /// The trace id's upper half (see `Span::trace_id_high`).
    #[serde(default)]
    pub trace_id_high: u64,
    pub span_id: u64,
    pub service: String,
    /// `key:value`, sorted.
    pub tags: Vec<String>,
}

/// One hand-off from a stitcher shard to the exporters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Emission {
    /// The shard that emitted it (snapshots keep each shard's outbox in order).
    pub shard: usize,
    pub spans: Vec<Span>,
    pub metrics: Vec<MetricSample>,
    /// The span each metric sample belongs to (same order).
    pub metric_owners: Vec<u64>,
    pub logs: Vec<LogRecord>,
}

impl Emission {
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.metrics.is_empty() && self.logs.is_empty()
    }
}

/// Which log events are forwarded (`STEPSTITCH_FORWARD_LOGS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardLogs {
    #[default]
    None,
    Errors,
    All,
}

/// The JSON of a log event as AWS writes it to CloudWatch Logs (field names
/// and the string `event_timestamp`), with the typed details.
#[derive(serde::Serialize)]
struct EventLine<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: &'a str,
    details: serde_json::Value,
    previous_event_id: String,
    event_timestamp: String,
    execution_arn: &'a str,
    redrive_count: String,
}

/// The event as a CloudWatch log line; `parse_log_line` reads it back to an
/// equal event (without `source`), which is what durable snapshots rely on.
pub fn event_line(e: &crate::events::Event) -> String {
    let line = EventLine {
        id: e.id.to_string(),
        kind: e.kind.as_str(),
        details: crate::events::wire::details_to_wire(&e.details),
        previous_event_id: e.previous_event_id.to_string(),
        event_timestamp: e.timestamp_ms.to_string(),
        execution_arn: &e.execution_arn,
        redrive_count: e.redrive_count.to_string(),
    };
    serde_json::to_string(&line).unwrap_or_default()
}

impl LogRecord {
    pub fn is_error_event(kind: &crate::events::EventKind) -> bool {
        let k = kind.as_str();
        k.ends_with("Failed") || k.ends_with("TimedOut") || k.ends_with("Aborted")
    }

    pub fn from_event(e: &crate::events::Event, span: &Span, tags: &[String]) -> Self {
        LogRecord {
            timestamp_ms: e.timestamp_ms,
            error: Self::is_error_event(&e.kind),
            message: event_line(e),
            trace_id: span.trace_id,
            trace_id_high: span.trace_id_high,
            span_id: span.span_id,
            service: span.service.to_string(),
            tags: tags.to_vec(),
        }
    }
}

/// What a shard sends downstream: emissions, and checkpoint markers that
/// travel behind the emissions made before them.
#[derive(Debug)]
pub enum StitchOut {
    Emission(Emission),
    Checkpoint(Marker),
}

/// Emitted but not delivered everywhere when the checkpoint passed the hub.
pub type Outboxed = Vec<(Arc<Vec<Span>>, Arc<Vec<LogRecord>>)>;

/// One shard's part of a checkpoint, completed by the hub. Its executions
/// went to the checkpoint's `execs` channel before the marker was sent.
#[derive(Debug)]
pub struct Part {
    pub shard: usize,
    pub outbox: Outboxed,
}

/// Sent by a shard behind its emissions; the hub adds the shard's outbox
/// and passes it on.
#[derive(Debug)]
pub struct Marker {
    pub shard: usize,
    pub reply: mpsc::Sender<Part>,
}
