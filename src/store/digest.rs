//! Spans and log records into store rows (pure): per execution, the
//! summary its spans imply and its spans as one chunk (`chunks`: each span
//! as the jsonl exporter writes it, the tags they share once): one row per
//! execution and batch, not per span (a row per span cost ~12 µs each and halved the
//! server's throughput, BENCHMARKS.md); one row per log event.

use super::chunks::ChunkWriter;
use super::model::{Status, StoredLog};
use crate::stitch::output::LogRecord;
use crate::stitch::span::{op, Span};
use std::collections::HashMap;

/// What one run's root span says about how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    pub redrive_count: u32,
    pub status: Status,
    pub stop_ms: i64,
    pub error: Option<String>,
    pub cause: Option<String>,
}

/// What a batch says about one execution; merged into its row.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionUpdate {
    pub arn: String,
    pub name: String,
    pub state_machine_arn: String,
    pub state_machine_name: String,
    /// The earliest start among its spans in the batch.
    pub start_ms: i64,
    /// The latest run's end, when its root span is in the batch.
    pub end: Option<RunEnd>,
    /// Its spans in the batch, as one chunk (`chunks`).
    pub spans: ChunkWriter,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    pub execution_arn: String,
    pub log: StoredLog,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    pub executions: Vec<ExecutionUpdate>,
    pub logs: Vec<LogRow>,
    /// Where each execution's update is in `executions`.
    at: HashMap<String, usize>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.executions.is_empty() && self.logs.is_empty()
    }

    /// Adds spans: a span without an execution ARN (none today) is skipped.
    pub fn add_spans(&mut self, spans: &[Span]) {
        for s in spans {
            let Some(arn) = s.meta.get("step_function.execution_arn") else {
                continue;
            };
            let start_ms = s.start / 1_000_000;
            let i = match self.at.get(arn.as_str()) {
                Some(&i) => i,
                None => {
                    self.executions.push(ExecutionUpdate {
                        arn: arn.to_string(),
                        name: meta(s, "step_function.execution_name").unwrap_or_default(),
                        state_machine_arn: meta(s, "step_function.state_machine_arn")
                            .unwrap_or_default(),
                        state_machine_name: meta(s, "step_function.state_machine_name")
                            .unwrap_or_else(|| s.service.to_string()),
                        start_ms,
                        end: None,
                        spans: ChunkWriter::default(),
                    });
                    self.at.insert(arn.to_string(), self.executions.len() - 1);
                    self.executions.len() - 1
                }
            };
            let e = &mut self.executions[i];
            e.start_ms = e.start_ms.min(start_ms);
            if let Some(end) = run_end(s) {
                if e.end
                    .as_ref()
                    .is_none_or(|x| x.redrive_count <= end.redrive_count)
                {
                    e.end = Some(end);
                }
            }
            e.spans.push(s);
        }
    }

    /// Adds log records; one whose event names no execution is skipped.
    pub fn add_logs(&mut self, logs: &[LogRecord]) {
        #[derive(serde::Deserialize)]
        struct Line {
            execution_arn: String,
        }
        for l in logs {
            let Ok(line) = serde_json::from_str::<Line>(&l.message) else {
                continue;
            };
            self.logs.push(LogRow {
                execution_arn: line.execution_arn,
                log: StoredLog {
                    timestamp_ms: l.timestamp_ms,
                    span_id: l.span_id,
                    error: l.error,
                    message: l.message.clone(),
                },
            });
        }
    }
}

fn meta(s: &Span, key: &str) -> Option<String> {
    s.meta.get(key).map(|v| v.to_string())
}

/// A run's root span (the execution, or a redrive segment) that ended.
fn run_end(s: &Span) -> Option<RunEnd> {
    if s.name != op::EXECUTION {
        return None;
    }
    let status = Status::parse(s.meta.get("step_function.status")?)?;
    Some(RunEnd {
        redrive_count: s
            .metrics
            .get("step_function.redrive_count")
            .copied()
            .unwrap_or(0.0) as u32,
        status,
        stop_ms: (s.start + s.duration) / 1_000_000,
        error: meta(s, "error.type"),
        cause: meta(s, "error.message"),
    })
}
