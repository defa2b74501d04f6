//! Accepted requests waiting to be decoded, and the workers that decode them.
//!
//! A request is answered 200 once it is in the write-ahead log and has a
//! place here; its records are inflated and parsed afterwards by a decode
//! worker, which hands the events on in chunks and waits for room in the
//! hand-off (so a slow stitcher fills this queue, and a full queue answers
//! Firehose 503). Room is counted in bytes of the queued request bodies:
//! that is what waits here in memory.

use super::handoff::{EventBatch, Handoff};
use crate::decode::body::decode_rest;
use crate::decode::RequestDecoder;
use crate::durable::pins::Pin;
use crate::events::StreamParams;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Events per batch handed on by a decode worker: big enough to amortise
/// the hand-off, small enough that a 64 MiB request streams through.
pub const CHUNK_EVENTS: usize = 2048;

/// Room is counted in KiB so a 64 GiB bound still fits a semaphore.
const UNIT: usize = 1024;

/// One accepted request, decoded up to `next_record`.
#[derive(Debug)]
pub struct DecodeJob {
    pub request_id: Arc<str>,
    pub source_arn: Option<Arc<str>>,
    pub received_at_ms: i64,
    pub attributes: Arc<StreamParams>,
    /// The body as JSON.
    pub plain: Bytes,
    pub next_record: usize,
    pub records: usize,
    pub decoder: RequestDecoder,
    /// Keeps the request's WAL record until its events are applied.
    pub pin: Option<Pin>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueueError {
    #[error("decode queue full")]
    Full,
    #[error("decode queue closed")]
    Closed,
}

#[derive(Debug, Clone)]
pub struct DecodeQueue {
    tx: mpsc::Sender<Queued>,
    room: Arc<Semaphore>,
    capacity_units: usize,
    wait: Duration,
}

#[derive(Debug)]
struct Queued {
    job: DecodeJob,
    _room: OwnedSemaphorePermit,
}

/// A reserved place in the queue; sending cannot fail or wait.
#[derive(Debug)]
pub struct Admission {
    slot: mpsc::OwnedPermit<Queued>,
    room: OwnedSemaphorePermit,
}

impl Admission {
    pub fn send(self, job: DecodeJob) {
        self.slot.send(Queued {
            job,
            _room: self.room,
        });
    }
}

impl DecodeQueue {
    /// A queue holding at most `capacity_bytes` of request bodies (a bigger
    /// request still goes through, alone) and `max_jobs` requests.
    pub fn new(capacity_bytes: usize, max_jobs: usize, wait: Duration) -> (Self, DecodeReceiver) {
        let capacity_units = capacity_bytes
            .div_ceil(UNIT)
            .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let (tx, rx) = mpsc::channel(max_jobs.max(1));
        let me = Self {
            tx,
            room: Arc::new(Semaphore::new(capacity_units)),
            capacity_units,
            wait,
        };
        (me, DecodeReceiver(Arc::new(Mutex::new(rx))))
    }

    /// Reserves room for a body of `bytes`, waiting up to the queue's wait.
    pub async fn admit(&self, bytes: usize) -> Result<Admission, QueueError> {
        let wanted = bytes.div_ceil(UNIT).clamp(1, self.capacity_units) as u32;
        let deadline = tokio::time::Instant::now() + self.wait;
        let room = tokio::time::timeout_at(deadline, self.room.clone().acquire_many_owned(wanted))
            .await
            .map_err(|_| QueueError::Full)?
            .map_err(|_| QueueError::Closed)?;
        let slot = tokio::time::timeout_at(deadline, self.tx.clone().reserve_owned())
            .await
            .map_err(|_| QueueError::Full)?
            .map_err(|_| QueueError::Closed)?;
        Ok(Admission { slot, room })
    }

    pub fn gauge(&self) -> QueueGauge {
        QueueGauge {
            room: self.room.clone(),
            capacity_units: self.capacity_units,
        }
    }
}

/// Queue depth, readable without holding a sender.
#[derive(Debug, Clone)]
pub struct QueueGauge {
    room: Arc<Semaphore>,
    capacity_units: usize,
}

impl QueueGauge {
    pub fn capacity_bytes(&self) -> usize {
        self.capacity_units * UNIT
    }

    pub fn queued_bytes(&self) -> usize {
        (self.capacity_units - self.room.available_permits()) * UNIT
    }
}

/// The receiving end, shared by the workers.
#[derive(Debug, Clone)]
pub struct DecodeReceiver(Arc<Mutex<mpsc::Receiver<Queued>>>);

impl DecodeReceiver {
    fn next(&self) -> Option<Queued> {
        // Holding the lock while waiting is fine: an idle worker has nothing
        // else to do, and a busy one does not hold it.
        let mut rx = self.0.lock().unwrap_or_else(|e| e.into_inner());
        rx.blocking_recv()
    }
}

/// Starts `workers` decode threads. They end when every queue sender is
/// gone and the queue is drained; their hand-off senders go with them.
pub fn spawn_decoders(
    workers: usize,
    rx: DecodeReceiver,
    handoff: Handoff,
    runtime: tokio::runtime::Handle,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    (0..workers.max(1))
        .map(|i| {
            let rx = rx.clone();
            let handoff = handoff.clone();
            let runtime = runtime.clone();
            std::thread::Builder::new()
                .name(format!("stepstitch-decode-{i}"))
                .spawn(move || {
                    while let Some(queued) = rx.next() {
                        decode_job(queued.job, &handoff, &runtime);
                        // Dropping `queued` frees its room.
                    }
                })
        })
        .collect()
}

fn decode_job(mut job: DecodeJob, handoff: &Handoff, runtime: &tokio::runtime::Handle) {
    let span = tracing::info_span!("firehose", request_id = %job.request_id);
    let _enter = span.enter();
    let mut handed = 0usize;
    let mut closed = false;
    let mut hand_on = |events: Vec<crate::events::Event>| {
        if events.is_empty() || closed {
            return;
        }
        handed += events.len();
        let mut batch = EventBatch::new(
            job.request_id.clone(),
            job.source_arn.clone(),
            job.received_at_ms,
            job.attributes.clone(),
            events,
        );
        batch.pin = job.pin.clone();
        if runtime.block_on(handoff.submit_waiting(batch)).is_err() {
            closed = true;
        }
    };
    let head = job.decoder.take_events();
    hand_on(head);
    let rest = if job.next_record < job.records {
        decode_rest(
            &job.plain,
            job.next_record,
            &mut job.decoder,
            CHUNK_EVENTS,
            &mut hand_on,
        )
    } else {
        Ok(())
    };
    if closed {
        tracing::error!("hand-off closed while decoding; the request stays in the write-ahead log for the next start");
    }
    let stats = job.decoder.stats();
    crate::decode::stats::finish(stats);
    if let Err(e) = rest {
        // The envelope parsed before the answer; it cannot fail now, but if
        // it did the events would be lost silently without this line.
        tracing::error!(error = %e, "decoding an accepted request failed");
    }
    tracing::debug!(
        records = stats.records,
        events = handed,
        skipped = stats.total_failures(),
        control_messages = stats.control_messages,
        decoded_bytes = stats.decoded_bytes,
        "Firehose request decoded"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn full_queue_refuses_after_the_wait_then_frees() {
        let (q, rx) = DecodeQueue::new(10 * UNIT, 100, Duration::from_millis(500));
        let a = q.admit(6 * UNIT).await.unwrap();
        assert_eq!(q.gauge().queued_bytes(), 6 * UNIT);
        assert_eq!(q.admit(6 * UNIT).await.unwrap_err(), QueueError::Full);
        // A body bigger than the whole queue goes alone once it is empty.
        drop(a);
        let big = q.admit(50 * UNIT).await.unwrap();
        assert_eq!(q.gauge().queued_bytes(), 10 * UNIT);
        drop(big);
        assert_eq!(q.gauge().queued_bytes(), 0);
        drop(rx);
        assert_eq!(q.admit(1).await.unwrap_err(), QueueError::Closed);
    }
}
