//! Delivery lanes: one per (exporter, signal). A lane batches items by size,
//! count and time, encodes a batch into one request, and delivers it:
//! retries with jittered exponential backoff on network errors, 408, 429 and
//! 5xx (for as long as it takes), splits on 413, drops and counts on other
//! 4xx. While a lane retries it takes nothing new; its byte budget then
//! fills, senders wait, and the wait travels back to Firehose as 503s:
//! memory stays bounded and nothing is dropped silently.
//!
//! Shutdown: when the senders are gone the lane flushes what it holds and
//! keeps retrying until `give_up` is set (the shutdown deadline); what is
//! left then is dropped and counted.

pub mod backoff;
pub mod client;

pub use client::{Client, Outcome, Request};

use super::receipt::{Receipt, Receipts};
use crate::telemetry::names;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Per-request limits of an intake.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_items: usize,
    /// Uncompressed bytes (as `Encoder::size` estimates them).
    pub max_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot encode a {signal} batch: {reason}")]
pub struct EncodeError {
    pub signal: &'static str,
    pub reason: String,
}

/// Turns a batch of items into one intake request.
pub trait Encoder: Send + Sync + 'static {
    type Item: Send + 'static;
    /// `traces`, `series`, `distributions`, `logs`: a metric label.
    fn signal(&self) -> &'static str;
    /// Encoded size estimate of one item, in bytes.
    fn size(&self, item: &Self::Item) -> usize;
    fn limits(&self) -> BatchLimits;
    fn encode(&self, items: &[Self::Item]) -> Result<Request, EncodeError>;
    /// The intake's answer to a request of `items` items, revised by the
    /// protocol's own rules (OTLP retries fewer statuses than Datadog and
    /// reports partial rejections in a 200). By default it stands.
    fn review(&self, outcome: Outcome, items: usize) -> Outcome {
        let _ = items;
        outcome
    }
}

/// Where requests go: a real HTTP client, or anything else in tests.
pub trait Transport: Send + Sync + 'static {
    fn send<'a>(
        &'a self,
        req: &'a Request,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send + 'a>>;
}

impl Transport for Client {
    fn send<'a>(
        &'a self,
        req: &'a Request,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send + 'a>> {
        Box::pin(Client::send(self, req))
    }
}

#[derive(Debug, Clone)]
pub struct LaneConfig {
    /// Exporter name (metric label).
    pub exporter: &'static str,
    /// A batch goes out at most this long after its first item arrived.
    pub flush_interval: Duration,
    pub max_backoff: Duration,
}

/// The byte budget an exporter's lanes share: items hold permits from the
/// moment they are queued until their request is done.
#[derive(Debug, Clone)]
pub struct Budget {
    sem: Arc<Semaphore>,
    total: usize,
    exporter: &'static str,
}

impl Budget {
    pub fn new(exporter: &'static str, bytes: usize) -> Self {
        let total = bytes.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            sem: Arc::new(Semaphore::new(total)),
            total,
            exporter,
        }
    }

    pub fn in_use(&self) -> usize {
        self.total - self.sem.available_permits()
    }

    fn report(&self) {
        metrics::gauge!(names::EXPORT_BUFFERED_BYTES, "exporter" => self.exporter)
            .set(self.in_use() as f64);
    }
}

type Queued<T> = (Vec<T>, usize, OwnedSemaphorePermit, Option<Arc<Receipt>>);

/// The sending side of a lane.
pub struct LaneSender<E: Encoder> {
    tx: mpsc::Sender<Queued<E::Item>>,
    encoder: Arc<E>,
    budget: Budget,
}

impl<E: Encoder> LaneSender<E> {
    /// Queues items, waiting for budget (this wait is the backpressure).
    /// The receipt is released once every item is delivered.
    pub async fn send(&self, items: Vec<E::Item>, receipt: Option<Arc<Receipt>>) {
        if items.is_empty() {
            return;
        }
        let bytes: usize = items.iter().map(|i| self.encoder.size(i)).sum();
        // One oversized message may take the whole budget, never more.
        let want = bytes.clamp(1, self.budget.total).min(u32::MAX as usize) as u32;
        let Ok(permit) = self.budget.sem.clone().acquire_many_owned(want).await else {
            return;
        };
        self.budget.report();
        let _ = self.tx.send((items, bytes, permit, receipt)).await;
    }
}

/// Starts a lane; returns its sender and its task.
pub fn spawn_lane<E: Encoder>(
    encoder: E,
    transport: Arc<dyn Transport>,
    budget: Budget,
    cfg: LaneConfig,
    give_up: CancellationToken,
) -> (LaneSender<E>, tokio::task::JoinHandle<()>) {
    let encoder = Arc::new(encoder);
    // The budget bounds memory; the channel only needs a little slack.
    let (tx, rx) = mpsc::channel(64);
    let lane = Lane {
        encoder: encoder.clone(),
        transport,
        budget: budget.clone(),
        cfg,
        give_up,
    };
    let task = tokio::spawn(lane.run(rx));
    (
        LaneSender {
            tx,
            encoder,
            budget,
        },
        task,
    )
}

/// What an exporter's lanes share (transport, budget, settings, shutdown);
/// spawns them and keeps their tasks.
pub struct Lanes {
    transport: Arc<dyn Transport>,
    budget: Budget,
    cfg: LaneConfig,
    give_up: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Lanes {
    pub fn new(
        transport: Arc<dyn Transport>,
        budget: Budget,
        cfg: LaneConfig,
        give_up: CancellationToken,
    ) -> Self {
        Self {
            transport,
            budget,
            cfg,
            give_up,
            tasks: Vec::new(),
        }
    }

    pub fn spawn<E: Encoder>(&mut self, encoder: E) -> LaneSender<E> {
        let (lane, t) = spawn_lane(
            encoder,
            self.transport.clone(),
            self.budget.clone(),
            self.cfg.clone(),
            self.give_up.clone(),
        );
        self.tasks.push(t);
        lane
    }

    pub fn tasks(self) -> Vec<JoinHandle<()>> {
        self.tasks
    }
}

struct Lane<E: Encoder> {
    encoder: Arc<E>,
    transport: Arc<dyn Transport>,
    budget: Budget,
    cfg: LaneConfig,
    give_up: CancellationToken,
}

struct Pending<T> {
    items: Vec<T>,
    bytes: usize,
    permits: Option<OwnedSemaphorePermit>,
    receipts: Receipts,
    since: Option<Instant>,
}

impl<T> Pending<T> {
    fn new() -> Self {
        Self {
            items: Vec::new(),
            bytes: 0,
            permits: None,
            receipts: Vec::new(),
            since: None,
        }
    }

    fn take(&mut self) -> (Vec<T>, Option<OwnedSemaphorePermit>, Receipts) {
        self.bytes = 0;
        self.since = None;
        (
            std::mem::take(&mut self.items),
            self.permits.take(),
            std::mem::take(&mut self.receipts),
        )
    }
}

impl<E: Encoder> Lane<E> {
    async fn run(mut self, mut rx: mpsc::Receiver<Queued<E::Item>>) {
        let limits = self.encoder.limits();
        let mut pending: Pending<E::Item> = Pending::new();
        loop {
            let due = pending.since.map(|s| s + self.cfg.flush_interval);
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some((items, _bytes, mut permit, receipt)) => {
                        for item in items {
                            let size = self.encoder.size(&item);
                            let full = !pending.items.is_empty()
                                && (pending.bytes + size > limits.max_bytes
                                    || pending.items.len() >= limits.max_items);
                            if full {
                                let (batch, held, r) = pending.take();
                                self.deliver(batch, held, r).await;
                            }
                            if let Some(r) = &receipt {
                                if !pending.receipts.last().is_some_and(|l| Arc::ptr_eq(l, r)) {
                                    pending.receipts.push(r.clone());
                                }
                            }
                            // Move this item's share of the permits along with it.
                            let share = size.min(permit.num_permits().saturating_sub(1));
                            if let Some(p) = permit.split(share) {
                                match &mut pending.permits {
                                    Some(h) => h.merge(p),
                                    None => pending.permits = Some(p),
                                }
                            }
                            pending.bytes += size;
                            pending.items.push(item);
                            pending.since.get_or_insert_with(Instant::now);
                        }
                        // The remainder (at least one permit) rides with the batch too.
                        match &mut pending.permits {
                            Some(h) => h.merge(permit),
                            None => pending.permits = Some(permit),
                        }
                        if pending.items.len() >= limits.max_items || pending.bytes >= limits.max_bytes {
                            let (batch, held, r) = pending.take();
                            self.deliver(batch, held, r).await;
                        }
                    }
                    None => {
                        let (batch, held, r) = pending.take();
                        self.deliver(batch, held, r).await;
                        return;
                    }
                },
                _ = sleep_until_opt(due) => {
                    let (batch, held, r) = pending.take();
                    self.deliver(batch, held, r).await;
                }
            }
        }
    }

    fn count_dropped(&self, n: usize, reason: &'static str) {
        metrics::counter!(names::EXPORT_ITEMS_DROPPED,
            "exporter" => self.cfg.exporter, "signal" => self.encoder.signal(), "reason" => reason)
        .increment(n as u64);
    }

    fn count_request(&self, outcome: &'static str) {
        metrics::counter!(names::EXPORT_REQUESTS,
            "exporter" => self.cfg.exporter, "signal" => self.encoder.signal(), "outcome" => outcome)
        .increment(1);
    }

    /// Delivers a batch (splitting it on 413); returns when every part is
    /// delivered or dropped by policy.
    async fn deliver(
        &mut self,
        batch: Vec<E::Item>,
        permits: Option<OwnedSemaphorePermit>,
        receipts: Receipts,
    ) {
        if batch.is_empty() {
            return;
        }
        let started = Instant::now();
        let signal = self.encoder.signal();
        let exporter = self.cfg.exporter;
        let mut parts: VecDeque<Vec<E::Item>> = VecDeque::from([batch]);
        'parts: while let Some(part) = parts.pop_front() {
            let req = match self.encoder.encode(&part) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(exporter, signal, items = part.len(), error = %e, "dropping a batch that cannot be encoded");
                    self.count_dropped(part.len(), "encode");
                    continue;
                }
            };
            let mut attempt = 0u32;
            loop {
                if self.give_up.is_cancelled() {
                    let left = part.len() + parts.iter().map(Vec::len).sum::<usize>();
                    tracing::warn!(
                        exporter,
                        signal,
                        items = left,
                        "shutdown deadline reached: dropping undelivered items"
                    );
                    self.count_dropped(left, "shutdown");
                    // Kept for the next start (snapshot outbox), not acknowledged.
                    for r in &receipts {
                        r.fail();
                    }
                    break 'parts;
                }
                let outcome = self.transport.send(&req).await;
                match self.encoder.review(outcome, part.len()) {
                    Outcome::Delivered { .. } => {
                        self.count_request("ok");
                        metrics::counter!(names::EXPORT_ITEMS_SENT, "exporter" => exporter, "signal" => signal)
                            .increment(part.len() as u64);
                        if attempt > 0 {
                            tracing::info!(
                                exporter,
                                signal,
                                attempts = attempt + 1,
                                "delivered after retries"
                            );
                        }
                        break;
                    }
                    Outcome::TooLarge if part.len() > 1 => {
                        self.count_request("split");
                        let mut first = part;
                        let second = first.split_off(first.len() / 2);
                        tracing::warn!(
                            exporter,
                            signal,
                            items = first.len() + second.len(),
                            "intake answered 413: splitting the batch"
                        );
                        parts.push_front(second);
                        parts.push_front(first);
                        continue 'parts;
                    }
                    Outcome::TooLarge => {
                        self.count_request("rejected");
                        tracing::error!(
                            exporter,
                            signal,
                            bytes = req.body.len(),
                            "intake answered 413 for a single item: dropping it"
                        );
                        self.count_dropped(1, "too_large");
                        break;
                    }
                    Outcome::Rejected { status, body } => {
                        self.count_request("rejected");
                        tracing::error!(exporter, signal, status, answer = %body, items = part.len(), "intake rejected a batch: dropping it (not retryable)");
                        self.count_dropped(part.len(), "rejected");
                        break;
                    }
                    Outcome::Retry {
                        status,
                        after,
                        why,
                        body,
                    } => {
                        self.count_request(if status.is_some() { "retry" } else { "network" });
                        let wait = backoff::delay(attempt, self.cfg.max_backoff, after);
                        // Loud at first and then now and then, not on every attempt.
                        if attempt < 3 || attempt % 20 == 0 {
                            tracing::warn!(exporter, signal, attempt = attempt + 1, error = %why, answer = %body, wait_ms = wait.as_millis() as u64, "delivery failed; will retry");
                        }
                        attempt = attempt.saturating_add(1);
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = self.give_up.cancelled() => {}
                        }
                    }
                }
            }
        }
        drop(permits);
        drop(receipts);
        self.budget.report();
        metrics::histogram!(names::EXPORT_DELIVERY_DURATION, "exporter" => exporter, "signal" => signal)
            .record(started.elapsed().as_secs_f64());
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Words;
    impl Encoder for Words {
        type Item = String;
        fn signal(&self) -> &'static str {
            "test"
        }
        fn size(&self, item: &String) -> usize {
            item.len()
        }
        fn limits(&self) -> BatchLimits {
            BatchLimits {
                max_items: 4,
                max_bytes: 1000,
            }
        }
        fn encode(&self, items: &[String]) -> Result<Request, EncodeError> {
            Ok(Request::new(
                "http://x/".into(),
                items.join(",").into_bytes(),
            ))
        }
    }

    /// Words whose protocol refuses to retry a 500 (as OTLP does).
    struct NoRetryOn500;
    impl Encoder for NoRetryOn500 {
        type Item = String;
        fn signal(&self) -> &'static str {
            "test"
        }
        fn size(&self, item: &String) -> usize {
            Words.size(item)
        }
        fn limits(&self) -> BatchLimits {
            Words.limits()
        }
        fn encode(&self, items: &[String]) -> Result<Request, EncodeError> {
            Words.encode(items)
        }
        fn review(&self, outcome: Outcome, _items: usize) -> Outcome {
            match outcome {
                Outcome::Retry {
                    status: Some(500), ..
                } => Outcome::Rejected {
                    status: 500,
                    body: String::new(),
                },
                o => o,
            }
        }
    }

    /// Answers from a script, then Delivered; records every body.
    struct Scripted {
        script: Mutex<VecDeque<Outcome>>,
        seen: Mutex<Vec<String>>,
    }
    impl Transport for Scripted {
        fn send<'a>(
            &'a self,
            req: &'a Request,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send + 'a>> {
            let body = String::from_utf8(req.body.to_vec()).unwrap();
            self.seen.lock().unwrap().push(body.clone());
            let next = self.script.lock().unwrap().pop_front();
            Box::pin(async move {
                match next {
                    // 413 whenever a body holds more than two items.
                    None if body.matches(',').count() >= 2 => Outcome::TooLarge,
                    None => Outcome::Delivered {
                        answer: bytes::Bytes::new(),
                    },
                    Some(o) => o,
                }
            })
        }
    }

    type TestLane<E> = (
        LaneSender<E>,
        Arc<Scripted>,
        tokio::task::JoinHandle<()>,
        CancellationToken,
        Budget,
    );

    /// A lane of `encoder` to a transport that answers from `script`.
    fn lane_of<E: Encoder>(encoder: E, script: Vec<Outcome>) -> TestLane<E> {
        let t = Arc::new(Scripted {
            script: Mutex::new(script.into()),
            seen: Mutex::new(Vec::new()),
        });
        let give_up = CancellationToken::new();
        let budget = Budget::new("test", 10_000);
        let (tx, task) = spawn_lane(
            encoder,
            t.clone(),
            budget.clone(),
            LaneConfig {
                exporter: "test",
                flush_interval: Duration::from_millis(50),
                max_backoff: Duration::from_millis(400),
            },
            give_up.clone(),
        );
        (tx, t, task, give_up, budget)
    }

    fn lane(script: Vec<Outcome>) -> TestLane<Words> {
        lane_of(Words, script)
    }

    fn words(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("w{i}")).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_delivered_then_splits_on_413_and_releases_the_budget() {
        let retry = || Outcome::Retry {
            status: Some(503),
            after: None,
            why: "HTTP 503".into(),
            body: String::new(),
        };
        let (tx, t, task, _g, budget) = lane(vec![retry(), retry(), retry()]);
        tx.send(words(3), None).await;
        drop(tx);
        task.await.unwrap();
        let seen = t.seen.lock().unwrap().clone();
        // 3 retries of the whole batch, the 413, then the two halves.
        assert_eq!(seen[..4], vec!["w0,w1,w2"; 4][..]);
        assert_eq!(seen[4..], ["w0".to_string(), "w1,w2".to_string()]);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn batches_by_count_and_time_and_drops_rejected_batches() {
        let (tx, t, task, _g, _b) = lane(vec![Outcome::Rejected {
            status: 400,
            body: "bad".into(),
        }]);
        tx.send(words(2), None).await; // rejected as one batch after the interval
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(vec!["a".into()], None).await;
        tx.send(vec!["b".into()], None).await;
        drop(tx);
        task.await.unwrap();
        let seen = t.seen.lock().unwrap().clone();
        assert_eq!(seen, vec!["w0,w1".to_string(), "a,b".to_string()]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sink_that_stays_down_holds_the_budget_until_give_up() {
        let down: Vec<Outcome> = (0..10_000)
            .map(|_| Outcome::Retry {
                status: None,
                after: None,
                why: "refused".into(),
                body: String::new(),
            })
            .collect();
        let (tx, _t, task, give_up, budget) = lane(down);
        tx.send(words(2), None).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(budget.in_use() > 0, "held while undelivered");
        // A sender now waits on the budget when it is exhausted.
        let big = vec!["x".repeat(10_000)];
        let blocked = tokio::time::timeout(Duration::from_secs(5), tx.send(big, None)).await;
        assert!(blocked.is_err(), "backpressure: no room");
        give_up.cancel();
        drop(tx);
        task.await.unwrap();
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_encoder_reviews_each_answer_before_the_lane_acts_on_it() {
        let retry = |status| Outcome::Retry {
            status: Some(status),
            after: None,
            why: format!("HTTP {status}"),
            body: String::new(),
        };
        let (tx, t, task, _give_up, budget) = lane_of(NoRetryOn500, vec![retry(503), retry(500)]);
        tx.send(words(2), None).await;
        drop(tx);
        task.await.unwrap();
        // 503 retried once, the 500 then ends it: no third request.
        assert_eq!(t.seen.lock().unwrap().len(), 2);
        assert_eq!(budget.in_use(), 0);
    }
}
