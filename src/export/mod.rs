//! Stage 4: spans, enhanced metrics and logs out.
//!
//! `hub` fans the stitcher's output out to the exporters and aggregates
//! metrics; `delivery` is the batching, retrying, bounded HTTP lane the
//! network exporters share; `datadog` holds the agentless and Agent
//! exporters; `jsonl` writes JSON lines.

pub mod aggregate;
pub mod compress;
pub mod datadog;
pub mod delivery;
pub mod hub;
pub mod item;
pub mod jsonl;
pub mod receipt;
pub mod settings;

pub use jsonl::spawn_jsonl_exporter;

use item::ExportItem;
use receipt::Receipt;
use std::sync::Arc;
use tokio::sync::mpsc;

/// One configured exporter (enum dispatch: three kinds, all known).
pub enum Exporter {
    Jsonl {
        tx: mpsc::Sender<(ExportItem, Option<Arc<Receipt>>)>,
        thread: std::thread::JoinHandle<()>,
    },
    Datadog(datadog::DatadogExporter),
    DatadogAgent(datadog::AgentExporter),
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
        }
    }

    /// Stops taking items and waits for what is queued to be written or
    /// delivered (network lanes give up at the shutdown deadline).
    pub async fn close(self) {
        match self {
            Exporter::Jsonl { tx, thread } => {
                drop(tx);
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
            Exporter::Datadog(d) => {
                let tasks = d.tasks;
                for t in tasks {
                    let _ = t.await;
                }
            }
            Exporter::DatadogAgent(a) => {
                let tasks = a.tasks;
                for t in tasks {
                    let _ = t.await;
                }
            }
        }
    }
}
