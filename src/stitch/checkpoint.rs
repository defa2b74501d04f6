//! The stitcher's state in a form that survives a restart (durable
//! snapshots): per execution its held events as AWS-shaped log lines (they
//! read back equal, see `output::event_line`), the ids it has seen, pruned
//! and emitted, and its trace context. Instants become ages.

use super::span::{intern_op, Span};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContextState {
    pub trace_id: u64,
    pub tid: Option<String>,
    pub parent_id: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ExecState {
    pub arn: String,
    pub attrs: Vec<(String, String)>,
    /// Held events, as log lines, in id order.
    pub events: Vec<String>,
    pub seen: Vec<u64>,
    pub pruned: Vec<u64>,
    pub emitted: Vec<u64>,
    pub context: Option<ContextState>,
    /// Emitted (kept only for late events).
    pub finalized: bool,
    /// A terminal event arrived; emit after the grace.
    pub final_pending: bool,
    pub idle_ms: u64,
    pub dirty: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ShardState {
    pub execs: Vec<ExecState>,
}

/// A span with owned strings, for snapshots.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SpanState {
    pub trace_id: u64,
    /// Absent from snapshots written before it existed.
    #[serde(default)]
    pub trace_id_high: u64,
    pub span_id: u64,
    pub parent_id: u64,
    pub name: String,
    pub resource: String,
    pub service: String,
    pub span_type: String,
    pub start: i64,
    pub duration: i64,
    pub error: i32,
    pub meta: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, f64>,
}

impl From<&Span> for SpanState {
    fn from(s: &Span) -> Self {
        Self {
            trace_id: s.trace_id,
            trace_id_high: s.trace_id_high,
            span_id: s.span_id,
            parent_id: s.parent_id,
            name: s.name.to_owned(),
            resource: s.resource.to_string(),
            service: s.service.to_string(),
            span_type: s.span_type.to_owned(),
            start: s.start,
            duration: s.duration,
            error: s.error,
            meta: s
                .meta
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_string()))
                .collect(),
            metrics: s.metrics.iter().map(|(k, v)| (k.to_owned(), *v)).collect(),
        }
    }
}

impl From<SpanState> for Span {
    fn from(s: SpanState) -> Self {
        Span {
            trace_id: s.trace_id,
            trace_id_high: s.trace_id_high,
            span_id: s.span_id,
            parent_id: s.parent_id,
            name: intern_op(&s.name),
            resource: s.resource.into(),
            service: s.service.into(),
            span_type: "serverless",
            start: s.start,
            duration: s.duration,
            error: s.error,
            meta: s.meta.into_iter().collect(),
            metrics: s.metrics.into_iter().collect(),
        }
    }
}

/// Executions a shard hands to the snapshot writer at a time: the writer
/// streams them out, so a snapshot never holds a second copy of the state
/// in memory (at a million open executions that copy tripled the RSS).
pub const EXPORT_BATCH: usize = 256;
