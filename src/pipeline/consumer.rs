//! Takes batches off the hand-off: counts the events, writes each one as a
//! JSON line when asked (`--events-out`), and routes them to the stitcher.
//! It runs on its own thread so file or stdout writes never stall the
//! async workers that answer Firehose; a full stitcher mailbox blocks it,
//! which fills the hand-off, which answers Firehose 503.

use super::backfill;
use super::handoff::EventBatch;
use crate::durable::pins::Pin;
use crate::stitch::{Guard, StitcherHandle};
use crate::store::Store;
use crate::telemetry::names;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a batch holds until every shard applied its part: its WAL record's
/// pin (reclamation) and its hand-off room (the memory bound counts events
/// until they are in the stitcher's state, not only until routed).
struct Hold {
    _pin: Option<Pin>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// Totals, readable while the consumer runs.
#[derive(Debug, Default)]
pub struct ConsumerTotals {
    pub batches: AtomicU64,
    pub events: AtomicU64,
    pub write_errors: AtomicU64,
}

/// Starts the consumer thread; it ends when every hand-off sender is gone
/// and the queue is drained.
pub fn spawn_event_consumer(
    mut rx: mpsc::Receiver<EventBatch>,
    mut out: Option<Box<dyn Write + Send>>,
    totals: Arc<ConsumerTotals>,
    stitcher: Option<StitcherHandle>,
    store: Option<Arc<dyn Store>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("stepstitch-consumer".into())
        .spawn(move || {
            while let Some(mut batch) = rx.blocking_recv() {
                if let Some(st) = store.as_deref() {
                    if backfill::is_backfill(&batch.attributes) {
                        let dropped = backfill::drop_stored(&mut batch.events, st);
                        if dropped > 0 {
                            tracing::info!(request_id = %batch.request_id, dropped, "backfill: events of stored executions dropped");
                        }
                    }
                }
                let n = batch.events.len() as u64;
                if let Some(w) = out.as_mut() {
                    if let Err(e) = write_batch(w, &batch) {
                        totals.write_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(request_id = %batch.request_id, error = %e, "writing events failed");
                    }
                }
                totals.batches.fetch_add(1, Ordering::Relaxed);
                totals.events.fetch_add(n, Ordering::Relaxed);
                if let Some(s) = &stitcher {
                    let events = batch.take_events();
                    let hold: Guard = Arc::new(Hold {
                        _pin: batch.pin.take(),
                        _permit: batch.take_permit(),
                    });
                    if s
                        .blocking_send(events, batch.attributes.clone(), Some(hold))
                        .is_err()
                    {
                        tracing::error!(request_id = %batch.request_id, "stitcher stopped; events dropped");
                    }
                }
                metrics::counter!(names::EVENTS_CONSUMED).increment(n);
                // Dropping the batch releases its hand-off permits.
                drop(batch);
            }
            if let Some(w) = out.as_mut() {
                let _ = w.flush();
            }
        })
}

fn write_batch(w: &mut Box<dyn Write + Send>, batch: &EventBatch) -> std::io::Result<()> {
    for event in &batch.events {
        serde_json::to_writer(&mut *w, event)?;
        w.write_all(b"\n")?;
    }
    w.flush()
}
