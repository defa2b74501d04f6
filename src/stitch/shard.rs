//! The shard: a thin async shell around one [`StitcherCore`]. It takes
//! messages from its bounded mailbox, feeds the core with the runtime's
//! time, and sends what the core emits downstream through a bounded
//! channel, yielding between emissions. Nothing about executions is
//! decided here.

use super::checkpoint::{ExecState, EXPORT_BATCH};
use super::config::StitchConfig;
use super::core::{Emissions, StitchSnapshot, StitcherCore};
use super::joins::JoinRegistry;
use super::output::{Emission, Marker, Part, StitchOut};
use crate::events::{Event, StreamParams};
use crate::telemetry::names;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Whatever must live until every shard applied its part of a batch (the
/// pipeline's WAL pin and queue room). Opaque here: the stitcher only drops it.
pub type Guard = Arc<dyn std::any::Any + Send + Sync>;

pub(crate) enum ShardMsg {
    /// Events of one batch (its guard is dropped once they are applied).
    Events {
        events: Vec<Event>,
        params: Arc<StreamParams>,
        guard: Option<Guard>,
    },
    /// Hand the executions to the snapshot writer, then send a marker
    /// downstream, behind the emissions made so far.
    Checkpoint {
        execs: mpsc::Sender<Vec<ExecState>>,
        reply: mpsc::Sender<Part>,
    },
    Restore {
        execs: Vec<ExecState>,
        done: oneshot::Sender<()>,
    },
    Snapshot {
        reply: oneshot::Sender<StitchSnapshot>,
        deep: bool,
    },
    /// Finalize everything now (tests).
    FlushAll { done: oneshot::Sender<()> },
    /// Finalize everything and stop (shutdown).
    Stop { done: oneshot::Sender<()> },
}

impl std::fmt::Debug for ShardMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardMsg::Events { events, .. } => write!(f, "Events({})", events.len()),
            ShardMsg::Checkpoint { .. } => f.write_str("Checkpoint"),
            ShardMsg::Restore { execs, .. } => write!(f, "Restore({})", execs.len()),
            ShardMsg::Snapshot { .. } => f.write_str("Snapshot"),
            ShardMsg::FlushAll { .. } => f.write_str("FlushAll"),
            ShardMsg::Stop { .. } => f.write_str("Stop"),
        }
    }
}

/// Lets the other tasks of the runtime run between two executions'
/// emissions: a tick can finalize thousands of executions, and on a small
/// machine the Firehose handler shares the worker thread with the shards
/// (ack latency spiked to 300+ ms before this). Each emission costs about
/// tens of µs, so a few per budget unit keep the yields cheap.
async fn breathe() {
    for _ in 0..4 {
        tokio::task::coop::consume_budget().await;
    }
}

/// The runtime's time as the core's: paused and advanced in tests.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

pub(super) struct Shard {
    index: usize,
    cfg: Arc<StitchConfig>,
    core: StitcherCore,
    out: mpsc::Sender<StitchOut>,
    /// Counters already published as metrics.
    published: StitchSnapshot,
}

impl Shard {
    pub(super) fn new(
        cfg: Arc<StitchConfig>,
        out: mpsc::Sender<StitchOut>,
        shards: usize,
        index: usize,
        joins: Arc<JoinRegistry>,
    ) -> Self {
        let max_open = (cfg.max_open_executions / shards).max(1);
        Self {
            index,
            core: StitcherCore::new(cfg.clone(), max_open, joins),
            cfg,
            out,
            published: StitchSnapshot::default(),
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<ShardMsg>) {
        let mut tick = tokio::time::interval(self.cfg.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(ShardMsg::Events { events, params, guard }) => {
                        self.apply(events, &params, guard).await;
                    }
                    Some(ShardMsg::Checkpoint { execs, reply }) => {
                        self.export(execs).await;
                        let marker = Marker { shard: self.index, reply };
                        let _ = self.out.send(StitchOut::Checkpoint(marker)).await;
                    }
                    Some(ShardMsg::Restore { execs, done }) => {
                        self.core.import(execs, now());
                        let _ = done.send(());
                    }
                    Some(ShardMsg::Snapshot { reply, deep }) => {
                        let _ = reply.send(self.core.stats(deep));
                    }
                    Some(ShardMsg::FlushAll { done }) => {
                        self.drain().await;
                        let _ = done.send(());
                    }
                    Some(ShardMsg::Stop { done }) => {
                        self.drain().await;
                        let _ = done.send(());
                        return;
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    let emissions = self.core.tick(now());
                    Self::send_all(self.index, &self.out, emissions).await;
                    self.publish();
                }
            }
        }
        // Senders gone (shutdown): nothing more will arrive.
        self.drain().await;
    }

    async fn apply(
        &mut self,
        events: Vec<Event>,
        params: &Arc<StreamParams>,
        guard: Option<Guard>,
    ) {
        let emissions = self.core.apply(events, params, now());
        // Applied: a snapshot from now on covers the batch, and its queue
        // room frees once every shard is done.
        drop(guard);
        Self::send_all(self.index, &self.out, emissions).await;
        self.publish();
    }

    async fn drain(&mut self) {
        let emissions = self.core.drain(now());
        Self::send_all(self.index, &self.out, emissions).await;
        self.publish();
    }

    /// Sends each emission as it is made. Bounded: a slow exporter stalls
    /// this shard, then the hand-off, then Firehose gets 503.
    async fn send_all(index: usize, out: &mpsc::Sender<StitchOut>, emissions: Emissions<'_>) {
        for emission in emissions {
            metrics::counter!(names::SPANS_EMITTED).increment(emission.spans.len() as u64);
            let emission = Emission {
                shard: index,
                ..emission
            };
            let _ = out.send(StitchOut::Emission(emission)).await;
            breathe().await;
        }
    }

    /// Publishes what the core counted since the last call.
    fn publish(&mut self) {
        let now = self.core.stats(false);
        let evictions = now.evictions - self.published.evictions;
        let incomplete = now.executions_incomplete - self.published.executions_incomplete;
        if evictions > 0 {
            metrics::counter!(names::STITCH_EVICTIONS).increment(evictions);
        }
        if incomplete > 0 {
            metrics::counter!(names::STITCH_INCOMPLETE).increment(incomplete);
        }
        self.published = now;
    }

    /// Everything this shard holds, for a snapshot, in batches to `to`. It
    /// is taken between two messages (so it is consistent) but yields to the
    /// runtime as it goes: hundreds of thousands of held events take seconds
    /// to write out, and the Firehose handler must not wait for that (ack
    /// spikes of 300+ ms). The bounded channel paces it to the writer.
    async fn export(&self, to: mpsc::Sender<Vec<ExecState>>) {
        let mut batch = Vec::with_capacity(EXPORT_BATCH);
        for (i, state) in self.core.export(now()).enumerate() {
            if i % 16 == 15 {
                breathe().await;
            }
            batch.push(state);
            if batch.len() == EXPORT_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(EXPORT_BATCH));
                if to.send(full).await.is_err() {
                    // The writer gave up: this snapshot fails as a whole.
                    return;
                }
            }
        }
        if !batch.is_empty() {
            let _ = to.send(batch).await;
        }
    }
}
