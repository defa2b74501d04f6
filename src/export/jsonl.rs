//! `jsonl:PATH` (`jsonl:-` = stdout), flushed per batch:
//! - `{"span": S}`, `S` with exactly the fields of a Datadog v0.4 JSON span;
//! - `{"metric": M}`, `M` = `{name, type, timestamp, value | values, tags}`,
//!   one line per series per 10-second window; a later line for the same
//!   name, tags and timestamp replaces the earlier one (the window's count
//!   grew with late events), exactly as Datadog's series intake treats it;
//!   distribution lines carry only the values new since the previous line;
//! - `{"log": L}` when log forwarding is on.
//!
//! Runs on its own thread so slow disks or pipes never stall async workers;
//! its input is bounded, so a stuck output backs up to Firehose as 503s.

use super::item::{ExportItem, MetricPoint};
use super::receipt::Receipt;
use crate::stitch::output::{LogRecord, MetricKind};
use crate::stitch::span::{Span, SpanLine};
use crate::telemetry::names;
use serde::Serialize;
use std::io::Write;
use std::sync::Arc;
use tokio::sync::mpsc;

#[derive(Serialize)]
struct MetricBody<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    values: Option<&'a [f64]>,
    tags: &'a [String],
}

#[derive(Serialize)]
struct MetricLine<'a> {
    metric: MetricBody<'a>,
}

#[derive(Serialize)]
struct LogBody<'a> {
    timestamp: i64,
    status: &'static str,
    service: &'a str,
    trace_id: u64,
    span_id: u64,
    tags: &'a [String],
    message: &'a str,
}

#[derive(Serialize)]
struct LogLine<'a> {
    log: LogBody<'a>,
}

pub fn spawn_jsonl_exporter(
    mut rx: mpsc::Receiver<(ExportItem, Option<Arc<Receipt>>)>,
    mut outputs: Vec<Box<dyn Write + Send>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("stepstitch-jsonl".into())
        .spawn(move || {
            let mut line = Vec::with_capacity(4096);
            while let Some((item, receipt)) = rx.blocking_recv() {
                for out in outputs.iter_mut() {
                    if let Err(e) = write_item(out, &item, &mut line) {
                        metrics::counter!(names::EXPORT_ERRORS, "exporter" => "jsonl").increment(1);
                        tracing::error!(error = %e, items = item.len(), "jsonl export failed");
                        // Not written: keep it for the next start.
                        if let Some(r) = &receipt {
                            r.fail();
                        }
                    }
                }
                // Written (and flushed): acknowledged.
                drop(receipt);
                if let ExportItem::Spans(s) = &item {
                    metrics::counter!(names::SPANS_EXPORTED, "exporter" => "jsonl")
                        .increment(s.len() as u64);
                }
            }
            for out in outputs.iter_mut() {
                let _ = out.flush();
            }
        })
}

fn metric_line(p: &MetricPoint) -> Option<MetricLine<'_>> {
    let (value, values) = match p.kind {
        MetricKind::Distribution if p.values.is_empty() => return None,
        MetricKind::Distribution => (None, Some(&p.values[..])),
        _ => (Some(p.value), None),
    };
    Some(MetricLine {
        metric: MetricBody {
            name: p.name,
            kind: p.kind.as_str(),
            timestamp: p.timestamp,
            value,
            values,
            tags: &p.tags,
        },
    })
}

fn log_line(l: &LogRecord) -> LogLine<'_> {
    LogLine {
        log: LogBody {
            timestamp: l.timestamp_ms,
            status: if l.error { "error" } else { "info" },
            service: &l.service,
            trace_id: l.trace_id,
            span_id: l.span_id,
            tags: &l.tags,
            message: &l.message,
        },
    }
}

fn write_line(
    out: &mut Box<dyn Write + Send>,
    line: &mut Vec<u8>,
    value: &impl Serialize,
) -> std::io::Result<()> {
    line.clear();
    serde_json::to_writer(&mut *line, value)?;
    line.push(b'\n');
    out.write_all(line)
}

fn write_item(
    out: &mut Box<dyn Write + Send>,
    item: &ExportItem,
    line: &mut Vec<u8>,
) -> std::io::Result<()> {
    match item {
        ExportItem::Spans(spans) => {
            for span in spans.iter() {
                write_line(
                    out,
                    line,
                    &SpanLine {
                        span: span as &Span,
                    },
                )?;
            }
        }
        ExportItem::Metrics(points) => {
            for m in points.iter().filter_map(metric_line) {
                write_line(out, line, &m)?;
            }
        }
        ExportItem::Logs(logs) => {
            for l in logs.iter() {
                write_line(out, line, &log_line(l))?;
            }
        }
    }
    out.flush()
}
