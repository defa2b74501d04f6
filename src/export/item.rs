//! What flows from the hub to each exporter. Shared (`Arc`) so several
//! exporters read one copy.

use crate::stitch::output::{LogRecord, MetricKind};
use crate::stitch::span::Span;
use std::sync::Arc;

/// One aggregated series point of a 10-second window (see `aggregate`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    pub name: &'static str,
    pub kind: MetricKind,
    /// Start of the window, seconds since the epoch.
    pub timestamp: i64,
    /// `key:value`, sorted.
    pub tags: Arc<[String]>,
    /// Counts: the window's total so far (a later point for the same window
    /// replaces it, as Datadog's series intake does). Gauges: the value.
    pub value: f64,
    /// Counts: what was added since the window's previous point.
    pub delta: f64,
    /// Distributions: the values observed since the previous point.
    pub values: Vec<f64>,
}

#[derive(Debug, Clone)]
pub enum ExportItem {
    Spans(Arc<Vec<Span>>),
    Metrics(Arc<Vec<MetricPoint>>),
    Logs(Arc<Vec<LogRecord>>),
}

impl ExportItem {
    pub fn len(&self) -> usize {
        match self {
            ExportItem::Spans(s) => s.len(),
            ExportItem::Metrics(m) => m.len(),
            ExportItem::Logs(l) => l.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
