//! The execution store as one more sink of the hub. Its queue is never
//! waited on, and bounded by what it holds (spans and log records, not
//! emissions: one emission may be one span or thousands): a burst is
//! absorbed, and only when the store falls that far behind, or fails, are
//! items counted as dropped for the store alone. Every other exporter
//! still gets them, so the store is never a reason to refuse Firehose
//! data. What waits here is shared (`Arc`) with the outbox, which holds it
//! until every exporter acknowledged it anyway.
//! A receipt is released once its batch is committed, so what was emitted
//! but not stored at a crash is stored after the restart.

use super::item::ExportItem;
use super::receipt::Receipt;
use crate::clock::Clock;
use crate::store::digest::WriteBatch;
use crate::store::settings::StoreSettings;
use crate::store::Store;
use crate::telemetry::names;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Instant;

/// Spans and log records queued for the writer at most (a few seconds of
/// peak ingest; the first build dropped at 256 emissions, which a test's
/// burst of 480 executions overran).
const QUEUED: usize = 200_000;
/// Spans and log records folded into one write transaction, about.
const PER_WRITE: usize = 5_000;

type Item = (ExportItem, Option<Arc<Receipt>>);

pub struct StoreExporter {
    tx: Sender<Item>,
    /// Spans and log records in the queue.
    queued: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl StoreExporter {
    pub fn spawn(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        retention: StoreSettings,
    ) -> std::io::Result<StoreExporter> {
        let (tx, rx) = channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let q = queued.clone();
        let thread = std::thread::Builder::new()
            .name("stepstitch-store".into())
            .spawn(move || run(rx, q, store, clock, retention))?;
        Ok(StoreExporter { tx, queued, thread })
    }

    /// Never waits: past the bound, the item is dropped for the store alone.
    pub fn accept(&self, item: &ExportItem, receipt: Option<Arc<Receipt>>) {
        let signal = match item {
            ExportItem::Metrics(_) => return,
            ExportItem::Spans(_) => "traces",
            ExportItem::Logs(_) => "logs",
        };
        let n = item.len();
        // Counted before it is sent, so the writer never takes off more
        // than was put on.
        let before = self.queued.fetch_add(n, Ordering::Relaxed);
        if before + n <= QUEUED && self.tx.send((item.clone(), receipt)).is_ok() {
            return;
        }
        self.queued.fetch_sub(n, Ordering::Relaxed);
        metrics::counter!(names::STORE_DROPPED, "signal" => signal).increment(n as u64);
    }

    pub async fn close(self) {
        drop(self.tx);
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

fn run(
    rx: Receiver<Item>,
    queued: Arc<AtomicUsize>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    r: StoreSettings,
) {
    let mut next_prune = Instant::now();
    let mut failing = false;
    loop {
        if Instant::now() >= next_prune {
            prune(&*store, &*clock, &r);
            next_prune = Instant::now() + r.prune_interval;
        }
        let first = match rx.recv_timeout(next_prune.saturating_duration_since(Instant::now())) {
            Ok(item) => item,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut size = first.0.len();
        let mut items = vec![first];
        while size < PER_WRITE {
            match rx.try_recv() {
                Ok(item) => {
                    size += item.0.len();
                    items.push(item);
                }
                Err(_) => break,
            }
        }
        queued.fetch_sub(size, Ordering::Relaxed);
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
        if batch.is_empty() {
            continue;
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

/// Retention and the size bound, enforced between writes.
fn prune(store: &dyn Store, clock: &dyn Clock, r: &StoreSettings) {
    let before = clock.now_ms() - r.retention.as_millis() as i64;
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
