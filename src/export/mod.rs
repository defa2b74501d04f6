//! Stage 4: spans, enhanced metrics and logs out.
//!
//! `hub` fans the stitcher's output out to the exporters and aggregates
//! metrics; `delivery` is the batching, retrying, bounded HTTP lane the
//! network exporters share; `datadog` holds the agentless and Agent
//! exporters; `otlp` the OpenTelemetry one; `jsonl` writes JSON lines.

pub mod aggregate;
pub mod compress;
pub mod datadog;
pub mod delivery;
pub mod hub;
pub mod item;
pub mod jsonl;
pub mod otlp;
pub mod receipt;
pub mod settings;
pub mod store;

pub use jsonl::spawn_jsonl_exporter;

use item::ExportItem;
use receipt::Receipt;
use std::sync::Arc;
use tokio::sync::mpsc;

/// One configured exporter (enum dispatch: five kinds, all known; the
/// execution store is the fifth).
pub enum Exporter {
    Jsonl {
        tx: mpsc::Sender<(ExportItem, Option<Arc<Receipt>>)>,
        thread: std::thread::JoinHandle<()>,
    },
    Datadog(datadog::DatadogExporter),
    DatadogAgent(datadog::AgentExporter),
    Otlp(otlp::OtlpExporter),
    Store(store::StoreExporter),
}

impl Exporter {
    /// Takes an item; the receipt (spans, logs) is released once it is
    /// written or delivered.
    pub async fn accept(&self, item: &ExportItem, receipt: Option<Arc<Receipt>>) {
        match self {
            Exporter::Jsonl { tx, .. } => {
                let _ = tx.send((item.clone(), receipt)).await;
            }
            Exporter::Datadog(d) => d.accept(item, receipt).await,
            Exporter::DatadogAgent(a) => a.accept(item, receipt).await,
            Exporter::Otlp(o) => o.accept(item, receipt).await,
            Exporter::Store(st) => st.accept(item, receipt),
        }
    }

    /// Stops taking items and waits for what is queued to be written or
    /// delivered (network lanes give up at the shutdown deadline).
    /// The exporter's name (a metric label).
    pub fn label(&self) -> &'static str {
        match self {
            Exporter::Jsonl { .. } => "jsonl",
            Exporter::Datadog(_) => "datadog",
            Exporter::DatadogAgent(_) => "datadog-agent",
            Exporter::Otlp(_) => "otlp",
            Exporter::Store(_) => "store",
        }
    }

    pub async fn close(self) {
        match self {
            Exporter::Jsonl { tx, thread } => {
                drop(tx);
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
            Exporter::Datadog(d) => join(d.tasks).await,
            Exporter::DatadogAgent(a) => join(a.tasks).await,
            Exporter::Otlp(o) => join(o.tasks).await,
            Exporter::Store(st) => st.close().await,
        }
    }
}

async fn join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}
