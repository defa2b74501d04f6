//! The exporter-neutral span: exactly the fields of a Datadog v0.4 span, which
//! is also the `jsonl` exporter's line format (spec/interfaces.md).

use super::tags::{Meta, Metrics};
use serde::Serialize;
use smol_str::SmolStr;

/// Operation names (trace-model.md §2).
pub mod op {
    pub const EXECUTION: &str = "aws.stepfunctions";
    pub const STATE: &str = "aws.stepfunctions.state";
    pub const MAP_ITERATION: &str = "aws.stepfunctions.map.iteration";
    pub const PARALLEL_BRANCH: &str = "aws.stepfunctions.parallel.branch";
    pub const MAP_RUN: &str = "aws.stepfunctions.map.run";
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    pub trace_id: u64,
    /// The upper half of the 128-bit trace id (the root's `_dd.p.tid`), on
    /// every span: OTLP needs all 128 bits and a span may be emitted
    /// without its root. Not part of the Datadog span (nor the jsonl line).
    #[serde(skip)]
    pub trace_id_high: u64,
    pub span_id: u64,
    /// 0 for a root.
    pub parent_id: u64,
    pub name: &'static str,
    /// State names and the service (the state machine's name) are short or
    /// shared by every span of an execution: no allocation per span.
    pub resource: SmolStr,
    pub service: SmolStr,
    #[serde(rename = "type")]
    pub span_type: &'static str,
    /// Nanoseconds since the epoch.
    pub start: i64,
    /// Nanoseconds.
    pub duration: i64,
    pub error: i32,
    pub meta: Meta,
    pub metrics: Metrics,
}

/// A line of the `jsonl` exporter.
#[derive(Debug, Serialize)]
pub struct SpanLine<'a> {
    pub span: &'a Span,
}

/// An operation name read back (snapshots) as the constant it was.
pub fn intern_op(name: &str) -> &'static str {
    [
        op::EXECUTION,
        op::STATE,
        op::MAP_ITERATION,
        op::PARALLEL_BRANCH,
        op::MAP_RUN,
    ]
    .into_iter()
    .find(|o| *o == name)
    .unwrap_or(op::EXECUTION)
}
