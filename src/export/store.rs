//! The execution store as one more sink of the hub. Its queue is bounded
//! and never waited on: when the store is slow or failing, spans are
//! counted as dropped (for the store only) and every other exporter still
//! gets them, so the store is never a reason to refuse Firehose data.
//! A receipt is released once its batch is committed, so what was emitted
//! but not stored at a crash is stored after the restart.

use super::item::ExportItem;
use super::receipt::Receipt;
use crate::clock::Clock;
use crate::store::digest::WriteBatch;
use crate::store::Store;
use crate::telemetry::names;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Items queued for the store writer (each a stitcher emission's spans or logs).
const QUEUED: usize = 256;
/// Items folded into one write transaction at most.
const PER_WRITE: usize = 64;

type Item = (ExportItem, Option<Arc<Receipt>>);

/// Retention, enforced by the writer between writes.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub keep: Duration,
    pub max_bytes: u64,
    pub every: Duration,
}

pub struct StoreExporter {
    tx: SyncSender<Item>,
    thread: std::thread::JoinHandle<()>,
}

impl StoreExporter {
    pub fn spawn(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        retention: Retention,
    ) -> std::io::Result<StoreExporter> {
        let (tx, rx) = sync_channel(QUEUED);
        let thread = std::thread::Builder::new()
            .name("stepstitch-store".into())
            .spawn(move || run(rx, store, clock, retention))?;
        Ok(StoreExporter { tx, thread })
    }

    /// Never waits: a full queue drops the item for the store alone.
    pub fn accept(&self, item: &ExportItem, receipt: Option<Arc<Receipt>>) {
        let signal = match item {
            ExportItem::Metrics(_) => return,
            ExportItem::Spans(_) => "traces",
            ExportItem::Logs(_) => "logs",
        };
        match self.tx.try_send((item.clone(), receipt)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                metrics::counter!(names::STORE_DROPPED, "signal" => signal)
                    .increment(item.len() as u64);
            }
        }
    }

    pub async fn close(self) {
        drop(self.tx);
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

fn run(rx: Receiver<Item>, store: Arc<dyn Store>, clock: Arc<dyn Clock>, r: Retention) {
    let mut next_prune = Instant::now();
    let mut failing = false;
    loop {
        if Instant::now() >= next_prune {
            prune(&*store, &*clock, r);
            next_prune = Instant::now() + r.every;
        }
        let first = match rx.recv_timeout(next_prune.saturating_duration_since(Instant::now())) {
            Ok(item) => item,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut items = vec![first];
        while items.len() < PER_WRITE {
            match rx.try_recv() {
                Ok(item) => items.push(item),
                Err(_) => break,
            }
        }
        let mut batch = WriteBatch::default();
        let mut spans = 0;
        for (item, _) in &items {
            match item {
                ExportItem::Spans(s) => {
                    spans += s.len();
                    batch.add_spans(s)
                }
                ExportItem::Logs(l) => batch.add_logs(l),
                ExportItem::Metrics(_) => {}
            }
        }
        let started = Instant::now();
        match store.write(&batch) {
            Ok(()) => {
                metrics::counter!(names::STORE_WRITES, "outcome" => "ok").increment(1);
                metrics::counter!(names::SPANS_EXPORTED, "exporter" => "store")
                    .increment(spans as u64);
                metrics::gauge!(names::STORE_UP).set(1.0);
                if failing {
                    tracing::info!("execution store writes succeed again");
                    failing = false;
                }
            }
            Err(e) => {
                metrics::counter!(names::STORE_WRITES, "outcome" => "error").increment(1);
                metrics::counter!(names::EXPORT_ERRORS, "exporter" => "store").increment(1);
                metrics::gauge!(names::STORE_UP).set(0.0);
                // Logged when it starts failing, not per batch.
                if !failing {
                    tracing::error!(error = %e, spans, "execution store write failed; spans are exported but not stored until it recovers");
                    failing = true;
                }
            }
        }
        metrics::histogram!(names::STORE_WRITE_DURATION).record(started.elapsed().as_secs_f64());
        // Stored, or given up on: the store never holds the outbox.
        drop(items);
    }
}

fn prune(store: &dyn Store, clock: &dyn Clock, r: Retention) {
    let before = clock.now_ms() - r.keep.as_millis() as i64;
    match store.prune(before, r.max_bytes) {
        Ok(n) => {
            metrics::counter!(names::STORE_PRUNED).increment(n as u64);
            if n > 0 {
                tracing::info!(executions = n, "store retention deleted old executions");
            }
        }
        Err(e) => tracing::error!(error = %e, "store retention failed"),
    }
    if let Ok(n) = store.count() {
        metrics::gauge!(names::STORE_EXECUTIONS).set(n as f64);
    }
}
