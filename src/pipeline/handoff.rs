//! The bounded hand-off between the Firehose endpoint and the next stage.
//!
//! Capacity is counted in events (what costs memory), not in batches: a
//! batch holds permits for its events until the consumer drops it. When no
//! room frees up within the hand-off wait, the request is answered 503 and
//! Firehose retries later: memory never grows past the bound.

use crate::events::Event;
use crate::events::StreamParams;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// The events of one accepted Firehose request.
#[derive(Debug)]
pub struct EventBatch {
    pub request_id: Arc<str>,
    pub source_arn: Option<Arc<str>>,
    pub received_at_ms: i64,
    pub attributes: Arc<StreamParams>,
    pub events: Vec<Event>,
    /// Holds the request's WAL record until the stitcher applied it.
    pub pin: Option<crate::durable::pins::Pin>,
    permit: Option<OwnedSemaphorePermit>,
}

impl EventBatch {
    pub fn new(
        request_id: Arc<str>,
        source_arn: Option<Arc<str>>,
        received_at_ms: i64,
        attributes: Arc<StreamParams>,
        events: Vec<Event>,
    ) -> Self {
        Self {
            request_id,
            source_arn,
            received_at_ms,
            attributes,
            events,
            pin: None,
            permit: None,
        }
    }
}

impl EventBatch {
    /// Moves the events out; the batch (and its queue room) stays held
    /// until it is dropped.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Moves the queue room out, to be released by whoever holds the events.
    pub fn take_permit(&mut self) -> Option<OwnedSemaphorePermit> {
        self.permit.take()
    }
}

/// Payload bytes that count as one more event: an event's own memory is
/// a few hundred bytes; captured payloads can be far more, and the bound
/// is on memory.
pub const PAYLOAD_BYTES_PER_EVENT_UNIT: usize = 512;

/// Queue room a batch takes: one unit per event plus one per 512 bytes of
/// payload it carries.
pub fn cost(events: &[Event]) -> usize {
    events
        .iter()
        .map(|e| 1 + e.details.payload_bytes() / PAYLOAD_BYTES_PER_EVENT_UNIT)
        .sum()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandoffError {
    #[error("hand-off queue full")]
    Full,
    #[error("hand-off closed")]
    Closed,
}

#[derive(Debug, Clone)]
pub struct Handoff {
    tx: mpsc::Sender<EventBatch>,
    permits: Arc<Semaphore>,
    capacity_events: usize,
    wait: Duration,
}

impl Handoff {
    /// A hand-off holding at most `capacity_events` events (and at most
    /// `max_batches` batches); a submit waits up to `wait` for room.
    pub fn new(
        capacity_events: usize,
        max_batches: usize,
        wait: Duration,
    ) -> (Self, mpsc::Receiver<EventBatch>) {
        let capacity_events = capacity_events.clamp(1, Semaphore::MAX_PERMITS);
        let (tx, rx) = mpsc::channel(max_batches.max(1));
        let me = Self {
            tx,
            permits: Arc::new(Semaphore::new(capacity_events)),
            capacity_events,
            wait,
        };
        (me, rx)
    }

    /// A read-only view for metrics that does not keep the queue open.
    pub fn gauge(&self) -> HandoffGauge {
        HandoffGauge {
            permits: self.permits.clone(),
            capacity_events: self.capacity_events,
        }
    }

    pub fn capacity_events(&self) -> usize {
        self.capacity_events
    }

    /// Events accepted but not yet released by the consumer.
    pub fn queued_events(&self) -> usize {
        self.capacity_events - self.permits.available_permits()
    }

    /// Queues a batch, waiting up to the hand-off wait for room.
    pub async fn submit(&self, mut batch: EventBatch) -> Result<(), HandoffError> {
        // A batch bigger than the whole queue still goes through, alone.
        let wanted = cost(&batch.events).clamp(1, self.capacity_events);
        let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
        let deadline = tokio::time::Instant::now() + self.wait;
        let permit =
            tokio::time::timeout_at(deadline, self.permits.clone().acquire_many_owned(wanted))
                .await
                .map_err(|_| HandoffError::Full)?
                .map_err(|_| HandoffError::Closed)?;
        batch.permit = Some(permit);
        let slot = tokio::time::timeout_at(deadline, self.tx.reserve())
            .await
            .map_err(|_| HandoffError::Full)?
            .map_err(|_| HandoffError::Closed)?;
        slot.send(batch);
        Ok(())
    }
}

impl Handoff {
    /// Queues a batch, waiting as long as it takes (decode workers: their
    /// request is already acknowledged, so waiting is the backpressure).
    pub async fn submit_waiting(&self, mut batch: EventBatch) -> Result<(), HandoffError> {
        let wanted = cost(&batch.events).clamp(1, self.capacity_events);
        let wanted = u32::try_from(wanted).unwrap_or(u32::MAX);
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(wanted)
            .await
            .map_err(|_| HandoffError::Closed)?;
        batch.permit = Some(permit);
        self.tx.send(batch).await.map_err(|_| HandoffError::Closed)
    }
}

/// Queue depth, readable without holding a sender.
#[derive(Debug, Clone)]
pub struct HandoffGauge {
    permits: Arc<Semaphore>,
    capacity_events: usize,
}

impl HandoffGauge {
    pub fn capacity_events(&self) -> usize {
        self.capacity_events
    }

    pub fn queued_events(&self) -> usize {
        self.capacity_events - self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: usize) -> EventBatch {
        let ev = crate::events::Event {
            execution_arn: "arn:aws:states:us-east-1:1:execution:S:e".into(),
            id: 1,
            previous_event_id: 0,
            timestamp_ms: 0,
            redrive_count: 0,
            kind: crate::events::EventKind::ExecutionStarted,
            details: Default::default(),
            source: None,
        };
        EventBatch::new("r".into(), None, 0, Default::default(), vec![ev; n])
    }

    #[tokio::test(start_paused = true)]
    async fn full_queue_times_out_then_frees() {
        let (h, mut rx) = Handoff::new(10, 100, Duration::from_millis(500));
        h.submit(batch(6)).await.unwrap();
        assert_eq!(h.queued_events(), 6);
        assert_eq!(h.submit(batch(6)).await, Err(HandoffError::Full));
        let first = rx.recv().await.unwrap();
        assert_eq!(first.events.len(), 6);
        drop(first);
        assert_eq!(h.queued_events(), 0);
        h.submit(batch(6)).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn oversized_batch_goes_alone() {
        let (h, mut rx) = Handoff::new(10, 100, Duration::from_millis(100));
        h.submit(batch(25)).await.unwrap();
        assert_eq!(h.queued_events(), 10);
        assert_eq!(h.submit(batch(1)).await, Err(HandoffError::Full));
        drop(rx.recv().await);
        h.submit(batch(1)).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_room_within_the_wait() {
        let (h, mut rx) = Handoff::new(4, 100, Duration::from_secs(2));
        h.submit(batch(4)).await.unwrap();
        let consumer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(rx.recv().await);
            rx
        });
        h.submit(batch(4)).await.unwrap();
        drop(consumer.await.unwrap());
    }

    #[test]
    fn payloads_count_toward_the_bound() {
        let mut e = batch(1).events.pop().unwrap();
        assert_eq!(cost(std::slice::from_ref(&e)), 1);
        e.details = crate::events::Details::Output {
            output: Some(crate::events::model::Payload {
                text: "x".repeat(4096).into(),
                aws_truncated: false,
            }),
        };
        assert_eq!(cost(&[e.clone(), e]), 2 * (1 + 8));
    }

    #[tokio::test]
    async fn closed_consumer_is_reported() {
        let (h, rx) = Handoff::new(4, 100, Duration::from_millis(10));
        drop(rx);
        assert_eq!(h.submit(batch(1)).await, Err(HandoffError::Closed));
    }
}
