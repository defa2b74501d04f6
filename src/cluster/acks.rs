//! The export ledger of cluster mode: what each partition's exporters
//! delivered since the partition's last checkpoint, as records on the
//! acknowledgements stream (subject per partition). A replica taking a
//! partition reads the records after the checkpoint's position and does
//! not send those items again: a dead owner's deliveries are not repeated.
//!
//! Receipts acknowledge synchronously (`AckLog`), so records are queued in
//! memory and published, PubAcks awaited; `flush` waits until everything
//! queued is stored (a clean hand-over). The queue is bounded by the
//! receipts in flight, which the exporters' buffers bound. A record lost
//! to a crash before it left the process means its items are sent once
//! more by the next owner (at least once, as with the single-process
//! ledger's unsynced writes). That window is kept short by publishing
//! from a thread of its own with its own connection (`spawn_thread`):
//! stitching on the main runtime's workers cannot delay it (measured: a
//! shared runtime under load let acknowledgements lag by tens of ms), and
//! closed for a process killed and started again on the same data
//! directory by a local journal (`cluster::journal`).

use super::journal::Journal;
use super::nats::{js_error, Cluster, ClusterConfig, ClusterError};
use crate::durable::ledger::{AckLog, Delivered, Signal};
use crate::telemetry::names;
use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Record: `exporter u8 | signal u8 | ids u64[]` (little endian).
pub fn encode(exporter: u8, signal: Signal, ids: &[u64]) -> Vec<u8> {
    let mut rec = Vec::with_capacity(2 + ids.len() * 8);
    rec.push(exporter);
    rec.push(signal as u8);
    for id in ids {
        rec.extend_from_slice(&id.to_le_bytes());
    }
    rec
}

/// Adds a record to `into`; false when it is not one.
pub fn decode(rec: &[u8], into: &mut Delivered) -> bool {
    if rec.len() < 2 || (rec.len() - 2) % 8 != 0 {
        return false;
    }
    let signal = match rec[1] {
        0 => Signal::Spans,
        1 => Signal::Logs,
        _ => return false,
    };
    let set = into.entry((rec[0], signal)).or_default();
    for c in rec[2..].chunks_exact(8) {
        set.insert(u64::from_le_bytes(c.try_into().unwrap_or_default()));
    }
    true
}

#[derive(Debug, Default)]
struct Queue {
    records: Vec<(u32, Vec<u8>)>,
    journal: Option<Journal>,
    /// Records queued so far (counted under the same lock as the push, so
    /// a flush's target never counts a record queued behind another).
    queued: u64,
}

#[derive(Debug)]
pub struct AckStream {
    queue: Mutex<Queue>,
    wake: Notify,
    /// How many queued records are stored.
    stored: watch::Sender<u64>,
    journal_failed: AtomicBool,
}

impl AckLog for AckStream {
    fn acknowledge(&self, shard: usize, exporter: u8, signal: Signal, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        let rec = encode(exporter, signal, ids);
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.queued += 1;
            let queued = q.queued;
            if let Some(j) = q.journal.as_mut() {
                if let Err(e) = j.append(shard as u32, &rec, queued) {
                    // Still published; only the crash window reopens.
                    if !self.journal_failed.swap(true, Ordering::Relaxed) {
                        tracing::error!(error = %e, dir = %j.dir().display(), "cannot write the acknowledgements journal");
                    }
                }
            }
            q.records.push((shard as u32, rec));
        }
        self.wake.notify_one();
    }
}

impl AckStream {
    /// Without a journal (tests, benches).
    pub fn new() -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            stored: watch::channel(0).0,
            journal_failed: AtomicBool::new(false),
        }
    }

    /// With the journal in `dir`: what an earlier process of this replica
    /// left unstored there is queued first. Returns the stream and how
    /// many records it found.
    pub fn with_journal(dir: &std::path::Path) -> std::io::Result<(Self, usize)> {
        let (journal, left) = Journal::open(dir)?;
        if left.torn_bytes > 0 {
            tracing::warn!(
                bytes = left.torn_bytes,
                dir = %dir.display(),
                "acknowledgements journal: a record cut short by a crash was left out"
            );
        }
        let n = left.records.len();
        let me = Self::new();
        {
            let mut q = me.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.queued = n as u64;
            q.records = left.records;
            q.journal = Some(journal);
        }
        Ok((me, n))
    }

    /// Publishes queued records until `stop`; what is queued then is
    /// published before it returns (bounded by `stop_within`).
    pub async fn run(
        &self,
        cluster: &Cluster,
        stop: tokio_util::sync::CancellationToken,
        stop_within: Duration,
    ) {
        self.run_on(&cluster.js, &cluster.cfg, stop, stop_within)
            .await
    }

    /// `run` on a thread of its own, with a connection of its own.
    pub fn spawn_thread(
        self: &std::sync::Arc<Self>,
        cfg: ClusterConfig,
        stop: tokio_util::sync::CancellationToken,
        stop_within: Duration,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let me = self.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("stepstitch-acks".into())
            .spawn(move || {
                rt.block_on(async move {
                    let client = loop {
                        match async_nats::ConnectOptions::new()
                            .name(format!("stepstitch-{}-acks", cfg.node))
                            .connect(cfg.urls.as_str())
                            .await
                        {
                            Ok(c) => break c,
                            Err(e) => {
                                tracing::warn!(error = %e, "acknowledgements: cannot reach NATS; retrying");
                                tokio::select! {
                                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                    _ = stop.cancelled() => return,
                                }
                            }
                        }
                    };
                    let js = jetstream::new(client);
                    me.run_on(&js, &cfg, stop, stop_within).await;
                })
            })
    }

    /// Sends each batch as soon as it is queued, without waiting for the
    /// PubAcks of the batches before it (what matters after a kill is
    /// that the bytes left the process); PubAcks are taken in order, so
    /// `stored` only ever counts a prefix of what was queued.
    async fn run_on(
        &self,
        js: &jetstream::Context,
        cfg: &ClusterConfig,
        stop: tokio_util::sync::CancellationToken,
        stop_within: Duration,
    ) {
        let mut stopping: Option<tokio::time::Instant> = None;
        let mut in_flight: VecDeque<Flight> = VecDeque::new();
        loop {
            if in_flight.len() < MAX_IN_FLIGHT {
                let batch = {
                    let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                    std::mem::take(&mut q.records)
                };
                if !batch.is_empty() {
                    match send(js, cfg, &batch).await {
                        Ok(acks) => in_flight.push_back(Flight {
                            records: batch,
                            acks: Box::pin(acks),
                        }),
                        Err(e) => {
                            if self.retry_later(&mut in_flight, batch, &e, stopping).await {
                                return;
                            }
                        }
                    }
                    continue;
                }
            }
            if in_flight.is_empty() && stopping.is_some() {
                return;
            }
            tokio::select! {
                r = async { in_flight.front_mut().map(|f| f.acks.as_mut()).expect("in flight").await }, if !in_flight.is_empty() => {
                    let Some(done) = in_flight.pop_front() else { continue };
                    match r {
                        Ok(()) => self.stored(done.records.len() as u64),
                        Err(e) => {
                            if self.retry_later(&mut in_flight, done.records, &e, stopping).await {
                                return;
                            }
                        }
                    }
                }
                _ = self.wake.notified(), if in_flight.len() < MAX_IN_FLIGHT => {}
                _ = stop.cancelled(), if stopping.is_none() => {
                    stopping = Some(tokio::time::Instant::now() + stop_within);
                }
            }
        }
    }

    fn stored(&self, n: u64) {
        metrics::counter!(names::CLUSTER_ACKS_WRITTEN, "outcome" => "ok").increment(n);
        // Only this thread adds to it.
        let stored = *self.stored.borrow() + n;
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let queued = q.queued;
            if let Some(Err(e)) = q.journal.as_mut().map(|j| j.stored(stored, queued)) {
                tracing::warn!(error = %e, "cannot trim the acknowledgements journal; the next start sends its records again (harmless)");
            }
        }
        self.stored.send_replace(stored);
    }

    /// A batch not stored: it and everything sent after it go back in
    /// front of the queue, in order (some may be stored twice: records
    /// are sets, that is harmless), retried after a pause. True when
    /// stopping and out of time.
    async fn retry_later(
        &self,
        in_flight: &mut VecDeque<Flight>,
        failed: Vec<(u32, Vec<u8>)>,
        e: &ClusterError,
        stopping: Option<tokio::time::Instant>,
    ) -> bool {
        let mut again = failed;
        again.extend(in_flight.drain(..).flat_map(|f| f.records));
        let n = again.len() as u64;
        metrics::counter!(names::CLUSTER_ACKS_WRITTEN, "outcome" => "retried").increment(n);
        tracing::warn!(error = %e, records = n, "cannot store export acknowledgements; retrying");
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let later = std::mem::replace(&mut q.records, again);
            q.records.extend(later);
        }
        if stopping.is_some_and(|d| tokio::time::Instant::now() >= d) {
            tracing::error!("export acknowledgements not stored before stopping; their items may be sent again by the next owner");
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        false
    }

    /// Waits until every record queued before the call is stored.
    pub async fn flush(&self, within: Duration) -> bool {
        let target = self.queue.lock().unwrap_or_else(|e| e.into_inner()).queued;
        let mut rx = self.stored.subscribe();
        let done = tokio::time::timeout(within, rx.wait_for(|s| *s >= target))
            .await
            .is_ok();
        done
    }
}

impl Default for AckStream {
    fn default() -> Self {
        Self::new()
    }
}

/// Batches sent and waiting for their PubAcks, at most.
const MAX_IN_FLIGHT: usize = 64;

/// A batch sent, its PubAcks pending.
struct Flight {
    records: Vec<(u32, Vec<u8>)>,
    acks: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ClusterError>> + Send>>,
}

/// Sends a batch; the returned future waits for its PubAcks.
async fn send(
    js: &jetstream::Context,
    cfg: &ClusterConfig,
    batch: &[(u32, Vec<u8>)],
) -> Result<impl std::future::Future<Output = Result<(), ClusterError>> + Send, ClusterError> {
    let mut pending = Vec::with_capacity(batch.len());
    for (p, rec) in batch {
        pending.push(
            js.publish(cfg.acks_subject(*p), rec.clone().into())
                .await
                .map_err(js_error)?,
        );
    }
    Ok(async move {
        for a in pending {
            a.await.map_err(js_error)?;
        }
        Ok(())
    })
}

impl Cluster {
    /// The acknowledgements stream's last sequence (a checkpoint covers
    /// the records up to it).
    pub async fn acks_position(&self) -> Result<u64, ClusterError> {
        let mut s = self
            .js
            .get_stream(self.cfg.acks_stream())
            .await
            .map_err(js_error)?;
        Ok(s.info().await.map_err(js_error)?.state.last_sequence)
    }

    /// The acknowledgements of `partition` stored after `position`.
    pub async fn acks_after(
        &self,
        partition: u32,
        position: u64,
    ) -> Result<(Delivered, usize), ClusterError> {
        let stream = self
            .js
            .get_stream(self.cfg.acks_stream())
            .await
            .map_err(js_error)?;
        let mut c = stream
            .create_consumer(consumer::pull::OrderedConfig {
                filter_subject: self.cfg.acks_subject(partition),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: position + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(js_error)?;
        let mut left = c.info().await.map_err(js_error)?.num_pending;
        let mut out = Delivered::new();
        let mut records = 0;
        if left == 0 {
            return Ok((out, 0));
        }
        let mut messages = c.messages().await.map_err(js_error)?;
        while left > 0 {
            let m = tokio::time::timeout(Duration::from_secs(10), messages.next())
                .await
                .map_err(|_| js_error("timed out reading acknowledgements"))?
                .ok_or_else(|| js_error("acknowledgements ended early"))?
                .map_err(js_error)?;
            left = m.info().map_err(js_error)?.pending;
            if decode(&m.payload, &mut out) {
                records += 1;
            }
        }
        Ok((out, records))
    }

    /// Drops a partition's acknowledgements up to `position` (a checkpoint
    /// taken after them covers them).
    pub async fn purge_acks(&self, partition: u32, position: u64) -> Result<(), ClusterError> {
        let stream = self
            .js
            .get_stream(self.cfg.acks_stream())
            .await
            .map_err(js_error)?;
        stream
            .purge()
            .filter(self.cfg.acks_subject(partition))
            .sequence(position + 1)
            .await
            .map_err(js_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_and_garbage_is_refused() {
        let mut d = Delivered::new();
        assert!(decode(&encode(2, Signal::Logs, &[7, u64::MAX]), &mut d));
        assert!(decode(&encode(0, Signal::Spans, &[1]), &mut d));
        assert_eq!(d[&(2, Signal::Logs)].len(), 2);
        assert!(d[&(2, Signal::Logs)].contains(&u64::MAX));
        assert!(!decode(&[0, 9], &mut d));
        assert!(!decode(&[0, 0, 1, 2, 3], &mut d));
        assert!(!decode(&[], &mut d));
    }
}
