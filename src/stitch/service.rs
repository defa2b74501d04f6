//! The stitcher's lifecycle (trace-model.md §5): sharded actors, one per
//! shard, each owning the open executions whose ARN hashes to it.
//!
//! - Events arrive at least once, in any order: each execution keeps its
//!   events deduplicated by id; spans are built from the whole set, so the
//!   result does not depend on arrival.
//! - An execution is final at its first terminal event plus the grace; late
//!   events reopen it for the retention window and produce only spans not
//!   emitted before (ids are deterministic).
//! - No terminal event within the idle timeout: emitted as incomplete.
//! - Past `max_open_executions`, the longest-idle executions are flushed as
//!   incomplete and counted.
//! - Mailboxes and the span output are bounded: a slow exporter backs up to
//!   the hand-off and Firehose gets 503.

use super::builder::{build_closed_spans, build_full, SpanConfig};
use super::checkpoint::{ContextState, ExecState, Marker, Part, EXPORT_BATCH};
use super::context::TraceContext;
use super::held::{HeldEvents, IdSet};
use super::joins::{self, JoinRegistry};
use super::output::{Emission, ForwardLogs, LogRecord, MetricSample, StitchOut};
use super::span::op;
use super::span::Span;
use super::tagsets::TagSets;
use crate::durable::pins::Pin;
use crate::hashing::{FastMap, FastSet};

/// What a batch of events holds until every shard applied its part: its WAL
/// record's pin (reclamation) and its hand-off room (the memory bound counts
/// events until they are in the stitcher's state, not only until routed).
#[derive(Debug, Default)]
pub struct Hold {
    pub pin: Option<Pin>,
    pub permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Hold {
    pub fn pin(pin: Pin) -> Option<Arc<Hold>> {
        Some(Arc::new(Hold {
            pin: Some(pin),
            permit: None,
        }))
    }
}
use crate::events::Event;
use crate::firehose::attributes::CommonAttributes;
use crate::telemetry::names;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct StitchConfig {
    pub shards: usize,
    /// Batches queued per shard.
    pub mailbox: usize,
    pub finalize_grace: Duration,
    pub idle_timeout: Duration,
    /// How long a finished execution is remembered for late events.
    pub retention: Duration,
    /// Open (not yet final) executions held at most, over all shards.
    pub max_open_executions: usize,
    /// How often shards look for due executions.
    pub tick: Duration,
    /// While an execution runs, its finished spans are emitted this often
    /// (and their payloads released); zero turns it off.
    pub incremental_interval: Duration,
    pub spans: SpanConfig,
    /// Which log events go out with their spans.
    pub forward_logs: ForwardLogs,
}

impl Default for StitchConfig {
    fn default() -> Self {
        Self {
            shards: 2,
            mailbox: 64,
            finalize_grace: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30 * 60),
            retention: Duration::from_secs(10 * 60),
            max_open_executions: 200_000,
            tick: Duration::from_millis(500),
            incremental_interval: Duration::from_secs(60),
            spans: SpanConfig::default(),
            forward_logs: ForwardLogs::None,
        }
    }
}

/// Counters of one shard (summed by `StitcherHandle::snapshot`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StitchSnapshot {
    pub open_executions: usize,
    pub retained_executions: usize,
    pub events: u64,
    pub duplicate_events: u64,
    pub late_events: u64,
    pub spans_emitted: u64,
    pub executions_finalized: u64,
    pub executions_incomplete: u64,
    pub evictions: u64,
    pub orphaned_events: u64,
    /// Spans emitted while their execution was still running.
    pub incremental_spans: u64,
    /// Events and payload bytes held by open executions now.
    pub held_events: usize,
    pub held_payload_bytes: usize,
}

impl StitchSnapshot {
    fn add(&mut self, o: &StitchSnapshot) {
        self.open_executions += o.open_executions;
        self.retained_executions += o.retained_executions;
        self.events += o.events;
        self.duplicate_events += o.duplicate_events;
        self.late_events += o.late_events;
        self.spans_emitted += o.spans_emitted;
        self.executions_finalized += o.executions_finalized;
        self.executions_incomplete += o.executions_incomplete;
        self.evictions += o.evictions;
        self.orphaned_events += o.orphaned_events;
        self.incremental_spans += o.incremental_spans;
        self.held_events += o.held_events;
        self.held_payload_bytes += o.held_payload_bytes;
    }
}

enum ShardMsg {
    /// Events of one WAL record (its pin is released once they are applied).
    Events(Vec<Event>, Arc<CommonAttributes>, Option<Arc<Hold>>),
    /// Hand the executions to the snapshot writer, then send a marker
    /// downstream, behind the emissions made so far.
    Checkpoint(mpsc::Sender<Vec<ExecState>>, mpsc::Sender<Part>),
    Restore(Vec<ExecState>, oneshot::Sender<()>),
    Snapshot(oneshot::Sender<StitchSnapshot>, bool),
    /// Finalize everything now (tests).
    FlushAll(oneshot::Sender<()>),
    /// Finalize everything and stop (shutdown).
    Stop(oneshot::Sender<()>),
}

/// Cheap to clone; routes events to their shard.
#[derive(Debug, Clone)]
pub struct StitcherHandle {
    shards: Vec<mpsc::Sender<ShardMsg>>,
}

impl std::fmt::Debug for ShardMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShardMsg::Events(e, _, _) => write!(f, "Events({})", e.len()),
            ShardMsg::Checkpoint(..) => f.write_str("Checkpoint"),
            ShardMsg::Restore(e, _) => write!(f, "Restore({})", e.len()),
            ShardMsg::Snapshot(..) => f.write_str("Snapshot"),
            ShardMsg::FlushAll(_) => f.write_str("FlushAll"),
            ShardMsg::Stop(_) => f.write_str("Stop"),
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

fn shard_of(arn: &str, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    // Fixed seed: the same execution lands on the same shard in every run.
    let h = foldhash::fast::FixedState::with_seed(0x5354_4954_4348).hash_one(arn);
    (h % n as u64) as usize
}

#[derive(Debug, thiserror::Error)]
#[error("stitcher stopped")]
pub struct Stopped;

impl StitcherHandle {
    /// Starts the shards; spans go to `out` in batches.
    pub fn spawn(
        cfg: StitchConfig,
        out: mpsc::Sender<StitchOut>,
    ) -> (Self, Vec<tokio::task::JoinHandle<()>>) {
        let n = cfg.shards.max(1);
        let registry = Arc::new(JoinRegistry::new(cfg.max_open_executions.max(1024)));
        let cfg = Arc::new(cfg);
        let mut senders = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        for index in 0..n {
            let (tx, rx) = mpsc::channel(cfg.mailbox.max(1));
            senders.push(tx);
            let shard = Shard::new(cfg.clone(), out.clone(), n, index, registry.clone());
            tasks.push(tokio::spawn(shard.run(rx)));
        }
        (Self { shards: senders }, tasks)
    }

    fn split(&self, events: Vec<Event>) -> Vec<Vec<Event>> {
        let n = self.shards.len();
        if n == 1 {
            return vec![events];
        }
        let mut parts: Vec<Vec<Event>> = (0..n).map(|_| Vec::new()).collect();
        for e in events {
            parts[shard_of(&e.execution_arn, n)].push(e);
        }
        parts
    }

    /// Routes events (and their stream's common attributes) to their shards;
    /// waits while a mailbox is full.
    pub async fn send(
        &self,
        events: Vec<Event>,
        attrs: Arc<CommonAttributes>,
        hold: Option<Arc<Hold>>,
    ) -> Result<(), Stopped> {
        for (i, part) in self.split(events).into_iter().enumerate() {
            if !part.is_empty() {
                self.shards[i]
                    .send(ShardMsg::Events(part, attrs.clone(), hold.clone()))
                    .await
                    .map_err(|_| Stopped)?;
            }
        }
        Ok(())
    }

    /// Every shard's state: its executions in batches to `execs` (which
    /// closes once every shard is done), then its part, completed by the
    /// hub with the shard's undelivered emissions.
    pub async fn checkpoint(
        &self,
        execs: mpsc::Sender<Vec<ExecState>>,
    ) -> Result<Vec<Part>, Stopped> {
        let (tx, mut rx) = mpsc::channel(self.shards.len());
        for s in &self.shards {
            s.send(ShardMsg::Checkpoint(execs.clone(), tx.clone()))
                .await
                .map_err(|_| Stopped)?;
        }
        drop((tx, execs));
        let mut parts = Vec::with_capacity(self.shards.len());
        while let Some(p) = rx.recv().await {
            parts.push(p);
        }
        if parts.len() != self.shards.len() {
            return Err(Stopped);
        }
        parts.sort_by_key(|p| p.shard);
        Ok(parts)
    }

    /// Restores executions from a snapshot (before any event arrives).
    pub async fn restore(&self, execs: Vec<ExecState>) -> Result<(), Stopped> {
        let n = self.shards.len();
        let mut parts: Vec<Vec<ExecState>> = (0..n).map(|_| Vec::new()).collect();
        for e in execs {
            parts[shard_of(&e.arn, n)].push(e);
        }
        for (s, part) in self.shards.iter().zip(parts) {
            let (tx, rx) = oneshot::channel();
            s.send(ShardMsg::Restore(part, tx))
                .await
                .map_err(|_| Stopped)?;
            rx.await.map_err(|_| Stopped)?;
        }
        Ok(())
    }

    /// Blocking variant for a non-async caller thread.
    pub fn blocking_send(
        &self,
        events: Vec<Event>,
        attrs: Arc<CommonAttributes>,
        hold: Option<Arc<Hold>>,
    ) -> Result<(), Stopped> {
        for (i, part) in self.split(events).into_iter().enumerate() {
            if !part.is_empty() {
                self.shards[i]
                    .blocking_send(ShardMsg::Events(part, attrs.clone(), hold.clone()))
                    .map_err(|_| Stopped)?;
            }
        }
        Ok(())
    }

    /// The shards' counters (cheap: answered from counters).
    pub async fn snapshot(&self) -> Result<StitchSnapshot, Stopped> {
        self.snapshot_inner(false).await
    }

    /// The counters plus held events and payload bytes, which cost a walk
    /// over everything held (tests, diagnostics).
    pub async fn deep_snapshot(&self) -> Result<StitchSnapshot, Stopped> {
        self.snapshot_inner(true).await
    }

    async fn snapshot_inner(&self, deep: bool) -> Result<StitchSnapshot, Stopped> {
        let mut total = StitchSnapshot::default();
        for s in &self.shards {
            let (tx, rx) = oneshot::channel();
            s.send(ShardMsg::Snapshot(tx, deep))
                .await
                .map_err(|_| Stopped)?;
            total.add(&rx.await.map_err(|_| Stopped)?);
        }
        Ok(total)
    }

    /// Finalizes every open execution now (complete or not).
    pub async fn flush_all(&self) -> Result<(), Stopped> {
        for s in &self.shards {
            let (tx, rx) = oneshot::channel();
            s.send(ShardMsg::FlushAll(tx)).await.map_err(|_| Stopped)?;
            rx.await.map_err(|_| Stopped)?;
        }
        Ok(())
    }

    /// Emits everything still open and stops the shards: their span
    /// senders close, so the exporters drain and end.
    pub async fn stop(&self) -> Result<(), Stopped> {
        for s in &self.shards {
            let (tx, rx) = oneshot::channel();
            s.send(ShardMsg::Stop(tx)).await.map_err(|_| Stopped)?;
            rx.await.map_err(|_| Stopped)?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Exec {
    events: HeldEvents,
    last_seen: Instant,
    /// When the execution becomes final (terminal seen + grace).
    final_at: Option<Instant>,
    /// Set once spans were emitted. The events are then dropped; what stays
    /// for the retention window is small: the ids already emitted and the
    /// trace context, so a straggler yields only new spans, in the right trace.
    finalized_at: Option<Instant>,
    emitted: FastSet<u64>,
    /// Every event id ever taken, kept past finalization (8 bytes each) so a
    /// redelivered event is recognised as a duplicate, not a late event.
    seen: IdSet,
    context: Option<TraceContext>,
    /// The delivery stream's parameters (service, env, tags).
    attrs: Arc<CommonAttributes>,
    /// Children named by this execution's events are not registered yet.
    pending_joins: bool,
    first_seen: Instant,
    /// Ids of events dropped after incremental emission (8 bytes each).
    pruned: IdSet,
    /// Events arrived since the last incremental emission.
    dirty: bool,
    last_partial: Option<Instant>,
}

/// The span settings for one execution: stream parameters (`service`,
/// `env`, `version`, other non-reserved keys as tags) over the global ones.
fn span_config<'a>(
    base: &'a SpanConfig,
    attrs: &CommonAttributes,
) -> std::borrow::Cow<'a, SpanConfig> {
    if attrs.is_empty() {
        return std::borrow::Cow::Borrowed(base);
    }
    let mut cfg = base.clone();
    for (k, v) in attrs.tags() {
        match k {
            "service" => cfg.service = Some(v.to_owned()),
            "env" => cfg.env = Some(v.to_owned()),
            "version" => cfg.version = Some(v.to_owned()),
            "DD_ENHANCED_METRICS" => cfg.enhanced_metrics = !v.trim().eq_ignore_ascii_case("false"),
            k if k.starts_with("DD_") => {}
            k => cfg.tags.push((k.to_owned(), v.to_owned())),
        }
    }
    std::borrow::Cow::Owned(cfg)
}

struct Shard {
    index: usize,
    /// Executions not yet emitted (kept as a count: the bound is checked per batch).
    open: usize,
    cfg: Arc<StitchConfig>,
    joins: Arc<JoinRegistry>,
    out: mpsc::Sender<StitchOut>,
    /// Boxed: the table keeps empty buckets (up to half of it after it
    /// grows), and an empty bucket should cost a pointer, not an `Exec`.
    execs: FastMap<Arc<str>, Box<Exec>>,
    max_open: usize,
    stats: StitchSnapshot,
    tag_sets: TagSets,
}

impl Shard {
    fn new(
        cfg: Arc<StitchConfig>,
        out: mpsc::Sender<StitchOut>,
        shards: usize,
        index: usize,
        joins: Arc<JoinRegistry>,
    ) -> Self {
        let max_open = (cfg.max_open_executions / shards).max(1);
        Self {
            index,
            open: 0,
            cfg,
            joins,
            out,
            execs: FastMap::default(),
            max_open,
            stats: StitchSnapshot::default(),
            tag_sets: TagSets::default(),
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<ShardMsg>) {
        let mut tick = tokio::time::interval(self.cfg.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(ShardMsg::Events(events, attrs, hold)) => {
                        self.ingest(events, attrs).await;
                        // Applied: a snapshot from now on covers it, and its
                        // queue room frees once every shard is done.
                        drop(hold);
                    }
                    Some(ShardMsg::Checkpoint(execs, reply)) => {
                        self.export_state(execs).await;
                        let marker = Marker { shard: self.index, reply };
                        let _ = self.out.send(StitchOut::Checkpoint(marker)).await;
                    }
                    Some(ShardMsg::Restore(execs, reply)) => {
                        self.import_state(execs);
                        let _ = reply.send(());
                    }
                    Some(ShardMsg::Snapshot(reply, deep)) => {
                        let _ = reply.send(self.snapshot(deep));
                    }
                    Some(ShardMsg::FlushAll(reply)) => {
                        self.flush_all().await;
                        let _ = reply.send(());
                    }
                    Some(ShardMsg::Stop(reply)) => {
                        self.flush_all().await;
                        let _ = reply.send(());
                        return;
                    }
                    None => break,
                },
                _ = tick.tick() => self.on_tick().await,
            }
        }
        // Senders gone (shutdown): nothing more will arrive.
        self.flush_all().await;
    }

    /// Counters, in constant time (scraped with /metrics); `deep` adds the
    /// held events and payload bytes, which walk every held event.
    fn snapshot(&self, deep: bool) -> StitchSnapshot {
        let mut s = self.stats.clone();
        s.open_executions = self.open;
        s.retained_executions = self.execs.len() - self.open;
        if !deep {
            return s;
        }
        debug_assert_eq!(
            self.execs
                .values()
                .filter(|e| e.finalized_at.is_none())
                .count(),
            self.open,
            "open-execution count drifted"
        );
        s.held_events = self.execs.values().map(|e| e.events.len()).sum();
        s.held_payload_bytes = self
            .execs
            .values()
            .flat_map(|e| e.events.values())
            .map(|e| e.details.payload_bytes())
            .sum();
        s
    }

    /// Everything this shard holds, for a snapshot, in batches to `to`. It
    /// is taken between two messages (so it is consistent) but yields to the
    /// runtime as it goes: hundreds of thousands of held events take seconds
    /// to write out, and the Firehose handler must not wait for that (ack
    /// spikes of 300+ ms). The bounded channel paces it to the writer.
    async fn export_state(&self, to: mpsc::Sender<Vec<ExecState>>) {
        let now = Instant::now();
        let sorted = |set: &FastSet<u64>| {
            let mut v: Vec<u64> = set.iter().copied().collect();
            v.sort_unstable();
            v
        };
        let mut batch = Vec::with_capacity(EXPORT_BATCH);
        for (i, (arn, e)) in self.execs.iter().enumerate() {
            if i % 16 == 15 {
                breathe().await;
            }
            batch.push(ExecState {
                arn: arn.to_string(),
                attrs: e
                    .attrs
                    .pairs()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                events: e.events.values().map(super::output::event_line).collect(),
                seen: e.seen.iter().collect(),
                pruned: e.pruned.iter().collect(),
                emitted: sorted(&e.emitted),
                context: e.context.as_ref().map(|c| ContextState {
                    trace_id: c.trace_id,
                    tid: c.tid.clone(),
                    parent_id: c.parent_id,
                }),
                finalized: e.finalized_at.is_some(),
                final_pending: e.final_at.is_some(),
                idle_ms: now.duration_since(e.last_seen).as_millis() as u64,
                dirty: e.dirty,
            });
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

    /// Takes executions back from a snapshot; their clocks restart now
    /// minus the idle time they had.
    fn import_state(&mut self, execs: Vec<ExecState>) {
        let now = Instant::now();
        let mut strings = crate::events::StringCache::default();
        for st in execs {
            let arn: Arc<str> = Arc::from(st.arn.as_str());
            let mut events = HeldEvents::default();
            let mut ids = IdSet::default();
            for line in &st.events {
                match crate::events::parse_log_line(line, &mut strings) {
                    Ok(e) => {
                        if ids.insert(e.id) {
                            events.insert(e);
                        }
                    }
                    Err(err) => {
                        tracing::error!(execution_arn = %arn, error = %err, "snapshot event unreadable; skipped")
                    }
                }
            }
            let last_seen = now
                .checked_sub(Duration::from_millis(st.idle_ms))
                .unwrap_or(now);
            let pending_joins = events.values().any(joins::is_join_event);
            let attrs = Arc::new(CommonAttributes::from_pairs(st.attrs));
            if !st.finalized {
                self.open += 1;
            }
            let exec = Exec {
                events,
                last_seen,
                final_at: st.final_pending.then(|| now + self.cfg.finalize_grace),
                finalized_at: st.finalized.then_some(now),
                emitted: st.emitted.into_iter().collect(),
                seen: st.seen.into_iter().collect(),
                context: st.context.map(|c| TraceContext {
                    trace_id: c.trace_id,
                    tid: c.tid,
                    parent_id: c.parent_id,
                    source: "retained",
                }),
                attrs,
                pending_joins,
                first_seen: last_seen,
                pruned: st.pruned.into_iter().collect(),
                dirty: st.dirty,
                last_partial: None,
            };
            if exec.pending_joins {
                joins::register_children(&exec.events, &arn, &self.joins);
            }
            if let Some(old) = self.execs.insert(arn, Box::new(exec)) {
                if old.finalized_at.is_none() {
                    self.open -= 1;
                }
            }
        }
    }

    async fn ingest(&mut self, events: Vec<Event>, attrs: Arc<CommonAttributes>) {
        let now = Instant::now();
        let grace = self.cfg.finalize_grace;
        let mut joins_touched: Vec<Arc<str>> = Vec::new();
        let mut events = events.into_iter();
        while let Some(first) = events.as_slice().first() {
            // A run of one execution's events (the decoder gives the events
            // of one ARN one shared `Arc`): one lookup and one reservation
            // for the run instead of a hash and a possible growth per event.
            let arn = first.execution_arn.clone();
            let run = events
                .as_slice()
                .iter()
                .take_while(|e| Arc::ptr_eq(&e.execution_arn, &arn))
                .count();
            let open = &mut self.open;
            let exec = self.execs.entry(arn).or_insert_with(|| {
                *open += 1;
                Box::new(Exec {
                    events: HeldEvents::default(),
                    last_seen: now,
                    final_at: None,
                    finalized_at: None,
                    emitted: FastSet::default(),
                    seen: IdSet::default(),
                    context: None,
                    attrs: attrs.clone(),
                    pending_joins: false,
                    first_seen: now,
                    pruned: IdSet::default(),
                    dirty: false,
                    last_partial: None,
                })
            });
            exec.last_seen = now;
            if !attrs.is_empty() {
                exec.attrs = attrs.clone();
            }
            let mut reserved = false;
            for (i, e) in events.by_ref().take(run).enumerate() {
                self.stats.events += 1;
                if !exec.seen.insert(e.id) {
                    self.stats.duplicate_events += 1;
                    continue;
                }
                if !reserved {
                    // At the first new event: a redelivered run of
                    // duplicates must not leave room behind in a retained
                    // execution.
                    exec.events.reserve(run - i);
                    reserved = true;
                }
                if exec.finalized_at.is_some() {
                    // Reopened by a straggler: re-finalize after the grace.
                    self.stats.late_events += 1;
                    exec.final_at = Some(now + grace);
                } else if e.kind.is_execution_terminal() && exec.final_at.is_none() {
                    exec.final_at = Some(now + grace);
                }
                if joins::is_join_event(&e) && !exec.pending_joins {
                    exec.pending_joins = true;
                    joins_touched.push(e.execution_arn.clone());
                }
                exec.dirty = true;
                exec.events.insert(e);
            }
        }
        // Register children before any of them can finalize.
        for arn in joins_touched {
            if let Some(exec) = self.execs.get_mut(&arn) {
                exec.pending_joins = !joins::register_children(&exec.events, &arn, &self.joins);
            }
        }
        self.enforce_bound().await;
    }

    /// Flushes the longest-idle open executions past the bound, as incomplete.
    /// It frees a tenth of the bound at once, so the scan is rare.
    async fn enforce_bound(&mut self) {
        if self.open <= self.max_open {
            return;
        }
        let open = self.open;
        let target = self.max_open - self.max_open / 10;
        let mut idle: Vec<(Instant, Arc<str>)> = self
            .execs
            .iter()
            .filter(|(_, e)| e.finalized_at.is_none())
            .map(|(k, e)| (e.last_seen, k.clone()))
            .collect();
        idle.sort();
        for (_, arn) in idle.into_iter().take(open - target) {
            self.stats.evictions += 1;
            metrics::counter!(names::STITCH_EVICTIONS).increment(1);
            self.finalize(&arn, true).await;
            breathe().await;
        }
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        let mut gone = Vec::new();
        for (arn, e) in &self.execs {
            match (e.final_at, e.finalized_at) {
                (Some(at), _) if at <= now => due.push((arn.clone(), false)),
                (None, None) if now.duration_since(e.last_seen) >= self.cfg.idle_timeout => {
                    due.push((arn.clone(), true))
                }
                (None, Some(done))
                    if now.duration_since(done.max(e.last_seen)) >= self.cfg.retention =>
                {
                    gone.push(arn.clone())
                }
                _ => {}
            }
        }
        for (arn, evict) in due {
            self.finalize(&arn, evict).await;
            breathe().await;
        }
        let every = self.cfg.incremental_interval;
        if !every.is_zero() {
            let running: Vec<Arc<str>> = self
                .execs
                .iter()
                .filter(|(_, e)| {
                    // Quiet for the grace: stragglers of what closed are in,
                    // as they would be for the final emission.
                    e.dirty
                        && e.final_at.is_none()
                        && e.finalized_at.is_none()
                        && now.duration_since(e.last_seen) >= self.cfg.finalize_grace
                        && now.duration_since(e.last_partial.unwrap_or(e.first_seen)) >= every
                })
                .map(|(k, _)| k.clone())
                .collect();
            for arn in running {
                self.emit_closed(&arn).await;
                breathe().await;
            }
        }
        for arn in gone {
            self.execs.remove(&arn);
        }
        // Bound the retained set too: forget the oldest past the bound.
        let retained = self
            .execs
            .values()
            .filter(|e| e.finalized_at.is_some() && e.final_at.is_none())
            .count();
        if retained > self.max_open {
            let mut old: Vec<(Instant, Arc<str>)> = self
                .execs
                .iter()
                .filter_map(|(k, e)| {
                    e.finalized_at
                        .filter(|_| e.final_at.is_none())
                        .map(|t| (t, k.clone()))
                })
                .collect();
            old.sort();
            for (_, arn) in old.into_iter().take(retained - self.max_open) {
                self.execs.remove(&arn);
            }
        }
    }

    async fn flush_all(&mut self) {
        let arns: Vec<Arc<str>> = self
            .execs
            .iter()
            .filter(|(_, e)| e.finalized_at.is_none() || e.final_at.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for arn in arns {
            // Shutdown and tests: everything out, redrive running or not.
            self.finalize(&arn, true).await;
            breathe().await;
        }
    }

    /// While the execution runs: emits its finished spans and releases the
    /// payloads they captured. Nothing is emitted before the trace context
    /// is known (ExecutionStarted, or a parent's join).
    async fn emit_closed(&mut self, arn: &Arc<str>) {
        let Some(exec) = self.execs.get_mut(arn) else {
            return;
        };
        exec.dirty = false;
        exec.last_partial = Some(Instant::now());
        let ctx = match exec.context.clone() {
            Some(c) => Some(c),
            None => joins::resolve(&exec.events, arn, &self.joins),
        };
        let has_start = exec
            .events
            .values()
            .any(|e| e.kind == crate::events::EventKind::ExecutionStarted);
        if ctx.is_none() && !has_start {
            return;
        }
        let cfg = span_config(&self.cfg.spans, &exec.attrs);
        let built = build_closed_spans(
            exec.events.values().collect(),
            &cfg,
            ctx.as_ref(),
            &exec.pruned,
            &mut self.tag_sets,
        );
        for id in &built.released {
            if let Some(e) = exec.events.get_mut(*id) {
                e.details.release_payloads();
            }
        }
        let fresh: Vec<Span> = built
            .spans
            .into_iter()
            .filter(|s| exec.emitted.insert(s.span_id))
            .collect();
        let emission = assemble(
            fresh,
            built.samples,
            &built.owners,
            exec.events.values(),
            self.cfg.forward_logs,
            &built.tags,
        );
        // Every span of a prunable event is emitted by now (now or before).
        let prunable: IdSet = built.prunable.into_iter().collect();
        exec.events.remove_all(&prunable);
        for id in prunable.iter() {
            exec.pruned.insert(id);
        }
        if emission.spans.is_empty() {
            return;
        }
        let n = emission.spans.len() as u64;
        self.stats.incremental_spans += n;
        self.stats.spans_emitted += n;
        metrics::counter!(names::SPANS_EMITTED).increment(n);
        let emission = Emission {
            shard: self.index,
            ..emission
        };
        let _ = self.out.send(StitchOut::Emission(emission)).await;
    }

    /// Builds the execution's spans, emits those not emitted before, and
    /// drops the events.
    async fn finalize(&mut self, arn: &Arc<str>, force: bool) {
        let Some(exec) = self.execs.get_mut(arn) else {
            return;
        };
        // A redrive started after the last terminal event: the execution
        // runs on. Emit what is final (the first run included) and keep the
        // events; it finalizes at the redrive's own terminal event.
        let last_terminal = exec
            .events
            .values()
            .filter(|e| e.kind.is_execution_terminal())
            .map(|e| e.id)
            .max();
        let last_redrive = exec
            .events
            .values()
            .filter(|e| e.kind == crate::events::EventKind::ExecutionRedriven)
            .map(|e| e.id)
            .max();
        if !force && last_redrive.is_some() && last_redrive > last_terminal {
            exec.final_at = None;
            self.emit_closed(arn).await;
            return;
        }
        if exec.pending_joins {
            joins::register_children(&exec.events, arn, &self.joins);
            exec.pending_joins = false;
        }
        // Retained context (stragglers), else the input's, else a parent's join.
        let ctx = match exec.context.clone() {
            Some(c) => Some(c),
            None => joins::resolve(&exec.events, arn, &self.joins),
        };
        let has_start = exec
            .events
            .values()
            .any(|e| e.kind == crate::events::EventKind::ExecutionStarted);
        let events: Vec<Event> = exec.events.take_all();
        let cfg = span_config(&self.cfg.spans, &exec.attrs);
        let built = build_full(
            events.iter().collect(),
            &cfg,
            ctx.as_ref(),
            &exec.pruned,
            &mut self.tag_sets,
        );
        let spans = built.spans;
        if exec.context.is_none() && has_start {
            exec.context = spans
                .iter()
                .find(|s| s.name == op::EXECUTION && !s.meta.contains_key("redrive"))
                .map(|root| TraceContext {
                    trace_id: root.trace_id,
                    tid: root.meta.get("_dd.p.tid").map(|t| t.to_string()),
                    parent_id: root.parent_id,
                    source: "retained",
                });
        }
        let complete = events.iter().any(|e| e.kind.is_execution_terminal());
        let fresh: Vec<Span> = spans
            .into_iter()
            .filter(|s| exec.emitted.insert(s.span_id))
            .collect();
        exec.final_at = None;
        if exec.finalized_at.is_none() {
            self.open -= 1;
        }
        exec.finalized_at = Some(Instant::now());
        if complete {
            self.stats.executions_finalized += 1;
        } else {
            self.stats.executions_incomplete += 1;
            metrics::counter!(names::STITCH_INCOMPLETE).increment(1);
        }
        if let Some(root) = fresh.iter().find(|s| s.meta.contains_key("_dd.p.tid")) {
            self.stats.orphaned_events += root
                .metrics
                .get("step_function.orphaned_events")
                .copied()
                .unwrap_or(0.0) as u64;
        }
        if fresh.is_empty() {
            return;
        }
        let emission = assemble(
            fresh,
            built.samples,
            &built.owners,
            events.iter(),
            self.cfg.forward_logs,
            &built.tags,
        );
        let n = emission.spans.len() as u64;
        self.stats.spans_emitted += n;
        metrics::counter!(names::SPANS_EMITTED).increment(n);
        // Bounded: a slow exporter stalls this shard, then the hand-off.
        let emission = Emission {
            shard: self.index,
            ..emission
        };
        let _ = self.out.send(StitchOut::Emission(emission)).await;
    }
}

/// The spans emitted now, with the metric samples and log events that
/// belong to them (each goes out exactly once, with its span).
fn assemble<'e>(
    fresh: Vec<Span>,
    samples: Vec<(u64, MetricSample)>,
    owners: &[(u64, u64)],
    events: impl Iterator<Item = &'e Event>,
    forward: ForwardLogs,
    tags: &[String],
) -> Emission {
    let ids: FastMap<u64, usize> = fresh
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i))
        .collect();
    let (metric_owners, metrics): (Vec<u64>, Vec<MetricSample>) = samples
        .into_iter()
        .filter(|(owner, _)| ids.contains_key(owner))
        .unzip();
    let mut logs = Vec::new();
    if forward != ForwardLogs::None && !owners.is_empty() {
        let owner_of: FastMap<u64, u64> = owners.iter().copied().collect();
        for e in events {
            if forward == ForwardLogs::Errors && !LogRecord::is_error_event(&e.kind) {
                continue;
            }
            let Some(&i) = owner_of.get(&e.id).and_then(|o| ids.get(o)) else {
                continue;
            };
            logs.push((e.id, LogRecord::from_event(e, &fresh[i], tags)));
        }
        logs.sort_by_key(|(id, _)| *id);
    }
    Emission {
        shard: 0,
        spans: fresh,
        metrics,
        metric_owners,
        logs: logs.into_iter().map(|(_, l)| l).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventKind, Payload};
    use crate::stitch::builder::build_spans;
    use std::collections::HashSet;

    const ARN: &str = "arn:aws:states:us-east-1:418295736021:execution:Slow:run-1";

    fn ev(arn: &str, id: u64, prev: u64, kind: EventKind, name: Option<&str>, ms: i64) -> Event {
        let details = match (name, kind.details_shape()) {
            (Some(n), crate::events::DetailsShape::StateEntered) => Details::StateEntered {
                name: n.into(),
                input: Some(Payload {
                    text: "{}".into(),
                    aws_truncated: false,
                }),
            },
            (Some(n), crate::events::DetailsShape::StateExited) => Details::StateExited {
                name: n.into(),
                output: None,
                assigned_variables: vec![],
                assigned_variables_aws_truncated: false,
            },
            _ => Details::None,
        };
        Event {
            execution_arn: arn.into(),
            id,
            previous_event_id: prev,
            timestamp_ms: ms,
            redrive_count: 0,
            kind,
            details,
            source: None,
        }
    }
    use crate::events::Details;

    /// A Standard execution with two Wait states, ten minutes apart.
    fn slow_execution(arn: &str) -> Vec<Event> {
        let t = 1_780_000_000_000;
        let min = 60_000;
        vec![
            ev(arn, 1, 0, EventKind::ExecutionStarted, None, t),
            ev(arn, 2, 0, EventKind::WaitStateEntered, Some("W1"), t + 1),
            ev(
                arn,
                3,
                2,
                EventKind::WaitStateExited,
                Some("W1"),
                t + 10 * min,
            ),
            ev(
                arn,
                4,
                3,
                EventKind::WaitStateEntered,
                Some("W2"),
                t + 10 * min + 1,
            ),
            ev(
                arn,
                5,
                4,
                EventKind::WaitStateExited,
                Some("W2"),
                t + 20 * min,
            ),
            ev(
                arn,
                6,
                5,
                EventKind::ExecutionSucceeded,
                None,
                t + 20 * min + 1,
            ),
        ]
    }

    fn cfg() -> StitchConfig {
        StitchConfig {
            shards: 2,
            finalize_grace: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15 * 60),
            retention: Duration::from_secs(120),
            tick: Duration::from_millis(100),
            // These tests are about the end of executions; see incremental_tests.
            incremental_interval: Duration::ZERO,
            ..StitchConfig::default()
        }
    }

    async fn drain(rx: &mut mpsc::Receiver<StitchOut>) -> Vec<Span> {
        let mut all = Vec::new();
        while let Ok(StitchOut::Emission(batch)) = rx.try_recv() {
            all.extend(batch.spans);
        }
        all
    }

    fn none_attrs() -> Arc<CommonAttributes> {
        Arc::new(CommonAttributes::default())
    }

    /// Answers checkpoint markers as the hub does (no outbox here) and
    /// collects the emitted spans.
    fn fake_hub(mut rx: mpsc::Receiver<StitchOut>) -> tokio::task::JoinHandle<Vec<Span>> {
        tokio::spawn(async move {
            let mut spans = Vec::new();
            while let Some(out) = rx.recv().await {
                match out {
                    StitchOut::Emission(e) => spans.extend(e.spans),
                    StitchOut::Checkpoint(m) => {
                        let _ = m.reply.try_send(Part {
                            shard: m.shard,
                            outbox: vec![],
                        });
                    }
                }
            }
            spans
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_checkpoint_streams_every_execution_in_batches_and_restores_whole() {
        let arns: Vec<String> = (0..1000).map(|i| format!("{ARN}-{i}")).collect();
        let (tx, rx) = mpsc::channel(64);
        let (h, _) = StitcherHandle::spawn(cfg(), tx);
        let _hub = fake_hub(rx);
        for arn in &arns {
            let first = slow_execution(arn)[0..2].to_vec();
            h.send(first, none_attrs(), None).await.unwrap();
        }
        // A slow reader: the shards wait for it rather than pile up batches.
        let (etx, mut erx) = mpsc::channel::<Vec<ExecState>>(1);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            while let Some(batch) = erx.recv().await {
                assert!(!batch.is_empty() && batch.len() <= EXPORT_BATCH);
                tokio::time::sleep(Duration::from_millis(5)).await;
                all.extend(batch);
            }
            all
        });
        let parts = h.checkpoint(etx).await.unwrap();
        assert_eq!(parts.len(), 2);
        let execs = reader.await.unwrap();
        let got: HashSet<&str> = execs.iter().map(|e| e.arn.as_str()).collect();
        assert_eq!(got.len(), 1000);
        assert!(arns.iter().all(|a| got.contains(a.as_str())));
        assert!(execs
            .iter()
            .all(|e| e.events.len() == 2 && e.seen == [1, 2]));

        // Restored elsewhere, the executions go on from where they were.
        let (tx2, rx2) = mpsc::channel(64);
        let (h2, _) = StitcherHandle::spawn(cfg(), tx2);
        let hub2 = fake_hub(rx2);
        h2.restore(execs).await.unwrap();
        assert_eq!(h2.snapshot().await.unwrap().open_executions, 1000);
        let rest = slow_execution(&arns[7])[2..].to_vec();
        h2.send(rest, none_attrs(), None).await.unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(h2.snapshot().await.unwrap().open_executions, 999);
        h2.stop().await.unwrap();
        drop(h2);
        let spans = hub2.await.unwrap();
        let of_7: Vec<Span> = spans
            .into_iter()
            .filter(|s| s.meta["step_function.execution_arn"] == arns[7])
            .collect();
        assert_eq!(
            of_7,
            build_spans(&slow_execution(&arns[7]), &SpanConfig::default(), None)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn spread_out_execution_is_emitted_once_after_terminal_plus_grace() {
        let (tx, mut rx) = mpsc::channel(64);
        let (h, _) = StitcherHandle::spawn(cfg(), tx);
        let events = slow_execution(ARN);
        // Events arrive as they happen: 10 minutes apart, under the idle timeout.
        for chunk in [&events[0..2], &events[2..4], &events[4..5]] {
            h.send(chunk.to_vec(), none_attrs(), None).await.unwrap();
            tokio::time::sleep(Duration::from_secs(600)).await;
            assert!(
                drain(&mut rx).await.is_empty(),
                "nothing before the terminal event"
            );
        }
        h.send(events[5..].to_vec(), none_attrs(), None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(drain(&mut rx).await.is_empty(), "not before the grace");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let spans = drain(&mut rx).await;
        assert_eq!(spans, build_spans(&events, &SpanConfig::default(), None));
        assert!(spans
            .iter()
            .all(|s| !s.meta.contains_key("step_function.incomplete")));
        let snap = h.snapshot().await.unwrap();
        assert_eq!(snap.executions_finalized, 1);
        assert_eq!(snap.open_executions, 0);
        assert_eq!(snap.retained_executions, 1);
        // After the retention window it is forgotten.
        tokio::time::sleep(Duration::from_secs(121)).await;
        assert_eq!(h.snapshot().await.unwrap().retained_executions, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn no_terminal_event_is_emitted_incomplete_after_the_idle_timeout() {
        let (tx, mut rx) = mpsc::channel(64);
        let (h, _) = StitcherHandle::spawn(cfg(), tx);
        let events = slow_execution(ARN);
        h.send(events[..4].to_vec(), none_attrs(), None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(14 * 60)).await;
        assert!(drain(&mut rx).await.is_empty());
        tokio::time::sleep(Duration::from_secs(61)).await;
        let spans = drain(&mut rx).await;
        assert_eq!(spans.len(), 3, "execution, W1, W2 (open)");
        assert!(spans
            .iter()
            .all(|s| s.meta["step_function.incomplete"] == "true"));
        let w2 = spans.iter().find(|s| s.resource == "W2").unwrap();
        assert_eq!(
            w2.start + w2.duration,
            events[3].timestamp_ms * 1_000_000,
            "closed at the last seen event"
        );
        assert_eq!(h.snapshot().await.unwrap().executions_incomplete, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn duplicates_and_late_events_never_duplicate_spans() {
        let (tx, mut rx) = mpsc::channel(64);
        let (h, _) = StitcherHandle::spawn(cfg(), tx);
        let events = slow_execution(ARN);
        let mut first = events.clone();
        first.remove(4); // W2's exit arrives late
        first.extend(events[..3].iter().cloned()); // and some duplicates
        h.send(first, none_attrs(), None).await.unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
        let early = drain(&mut rx).await;
        assert_eq!(early.len(), 3);
        h.send(
            vec![events[4].clone(), events[1].clone()],
            none_attrs(),
            None,
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
        let late = drain(&mut rx).await;
        let ids: HashSet<u64> = early.iter().map(|s| s.span_id).collect();
        assert!(
            late.iter().all(|s| !ids.contains(&s.span_id)),
            "a span was emitted twice"
        );
        let snap = h.snapshot().await.unwrap();
        assert_eq!(snap.duplicate_events, 3 + 1);
        assert_eq!(snap.late_events, 1);
        // Stragglers still land in the right trace.
        assert!(late.iter().all(|s| s.trace_id == early[0].trace_id));
    }

    #[tokio::test(start_paused = true)]
    async fn memory_bound_evicts_the_longest_idle() {
        let (tx, mut rx) = mpsc::channel(1024);
        let config = StitchConfig {
            shards: 1,
            max_open_executions: 3,
            ..cfg()
        };
        let (h, _) = StitcherHandle::spawn(config, tx);
        for i in 0..5 {
            let arn = format!("arn:aws:states:us-east-1:418295736021:execution:Slow:run-{i}");
            h.send(slow_execution(&arn)[..2].to_vec(), none_attrs(), None)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let snap = h.snapshot().await.unwrap();
        assert_eq!(snap.open_executions, 3);
        assert_eq!(snap.evictions, 2);
        let spans = drain(&mut rx).await;
        let evicted: HashSet<&str> = spans
            .iter()
            .map(|s| s.meta["step_function.execution_name"].as_str())
            .collect();
        assert_eq!(evicted, HashSet::from(["run-0", "run-1"]));
    }

    #[tokio::test(start_paused = true)]
    async fn stream_parameters_set_service_env_and_tags() {
        let (tx, mut rx) = mpsc::channel(64);
        let (h, _) = StitcherHandle::spawn(cfg(), tx);
        let attrs = CommonAttributes::parse(br#"{"commonAttributes":{"service":"billing","env":"staging","team":"core","region":"mars-1"}}"#)
            .unwrap()
            .attributes;
        h.send(slow_execution(ARN), Arc::new(attrs), None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
        let spans = drain(&mut rx).await;
        assert!(!spans.is_empty());
        for s in &spans {
            assert_eq!(s.service, "billing");
            assert_eq!(s.meta["env"], "staging");
            assert_eq!(s.meta["team"], "core");
            assert_eq!(
                s.meta["region"], "us-east-1",
                "AWS facts win over stream parameters"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stop_flushes_open_executions() {
        let (tx, mut rx) = mpsc::channel(64);
        let (h, tasks) = StitcherHandle::spawn(cfg(), tx);
        h.send(slow_execution(ARN)[..3].to_vec(), none_attrs(), None)
            .await
            .unwrap();
        h.stop().await.unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(drain(&mut rx).await.len(), 2);
        assert!(rx.recv().await.is_none(), "span output closed after stop");
    }
}

#[cfg(test)]
mod incremental_tests {
    use super::*;
    use crate::events::{Details, EventKind, Payload};
    use crate::stitch::builder::build_spans;
    use std::collections::HashSet;

    /// A Standard execution running three hours: a Task, then hour-long Waits.
    fn long_running(arn: &str) -> Vec<Event> {
        let t = 1_780_000_000_000i64;
        let hour = 3_600_000;
        let big = "x".repeat(10_000);
        let mut v = Vec::new();
        let mut push = |id: u64, prev: u64, kind: EventKind, details: Details, ms: i64| {
            v.push(Event {
                execution_arn: arn.into(),
                id,
                previous_event_id: prev,
                timestamp_ms: t + ms,
                redrive_count: 0,
                kind,
                details,
                source: None,
            });
        };
        let input = |s: &str| {
            Some(Payload {
                text: format!("{{\"v\":\"{s}\"}}").into(),
                aws_truncated: false,
            })
        };
        push(
            1,
            0,
            EventKind::ExecutionStarted,
            Details::ExecutionStarted {
                input: input("start"),
                role_arn: None,
                state_machine_alias_arn: None,
                state_machine_version_arn: None,
            },
            0,
        );
        push(
            2,
            0,
            EventKind::PassStateEntered,
            Details::StateEntered {
                name: "Prepare".into(),
                input: input(&big),
            },
            1,
        );
        push(
            3,
            2,
            EventKind::PassStateExited,
            Details::StateExited {
                name: "Prepare".into(),
                output: input(&big),
                assigned_variables: vec![],
                assigned_variables_aws_truncated: false,
            },
            2,
        );
        for (i, w) in ["W1", "W2", "W3"].iter().enumerate() {
            let base = 3 + 2 * i as u64;
            push(
                base + 1,
                base,
                EventKind::WaitStateEntered,
                Details::StateEntered {
                    name: (*w).into(),
                    input: input(&big),
                },
                (i as i64) * hour + 3,
            );
            push(
                base + 2,
                base + 1,
                EventKind::WaitStateExited,
                Details::StateExited {
                    name: (*w).into(),
                    output: input(&big),
                    assigned_variables: vec![],
                    assigned_variables_aws_truncated: false,
                },
                (i as i64 + 1) * hour,
            );
        }
        push(
            10,
            9,
            EventKind::ExecutionSucceeded,
            Details::Output {
                output: input("done"),
            },
            3 * hour + 1,
        );
        v
    }

    #[tokio::test(start_paused = true)]
    async fn finished_spans_are_emitted_while_running_and_payloads_released() {
        let arn = "arn:aws:states:us-east-1:418295736021:execution:Long:run-1";
        let events = long_running(arn);
        let (tx, mut rx) = mpsc::channel(64);
        let cfg = StitchConfig {
            shards: 1,
            idle_timeout: Duration::from_secs(2 * 3600),
            incremental_interval: Duration::from_secs(60),
            tick: Duration::from_secs(1),
            ..StitchConfig::default()
        };
        let (h, _) = StitcherHandle::spawn(cfg, tx);
        let attrs = Arc::new(CommonAttributes::default());
        let mut emitted: Vec<Span> = Vec::new();
        // Events arrive as they happen: at 0h, 1h, 2h, 3h.
        let arrivals: [&[u64]; 4] = [&[1, 2, 3, 4], &[5, 6], &[7, 8], &[9, 10]];
        for (hour, ids) in arrivals.iter().enumerate() {
            let batch: Vec<Event> = events
                .iter()
                .filter(|e| ids.contains(&e.id))
                .cloned()
                .collect();
            h.send(batch, attrs.clone(), None).await.unwrap();
            tokio::time::sleep(Duration::from_secs(120)).await;
            while let Ok(StitchOut::Emission(b)) = rx.try_recv() {
                emitted.extend(b.spans);
            }
            let names: HashSet<&str> = emitted.iter().map(|s| s.resource.as_str()).collect();
            let snap = h.deep_snapshot().await.unwrap();
            match hour {
                0 => {
                    assert!(
                        names.contains("Prepare") && !names.contains("W1"),
                        "{names:?}"
                    );
                    // Prepare's 20 KB of payload were released; W1's input is still held.
                    assert!(
                        snap.held_payload_bytes < 11_000,
                        "{}",
                        snap.held_payload_bytes
                    );
                }
                1 => assert!(names.contains("W1") && !names.contains("W2")),
                2 => assert!(names.contains("W2") && !names.contains("W3")),
                _ => {}
            }
            tokio::time::sleep(Duration::from_secs(3600 - 120)).await;
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        while let Ok(StitchOut::Emission(b)) = rx.try_recv() {
            emitted.extend(b.spans);
        }
        // Emitted once each, and exactly what one final build makes.
        let ids: HashSet<u64> = emitted.iter().map(|s| s.span_id).collect();
        assert_eq!(ids.len(), emitted.len(), "a span was emitted twice");
        let mut want = build_spans(&events, &SpanConfig::default(), None);
        want.sort_by_key(|s| s.span_id);
        emitted.sort_by_key(|s| s.span_id);
        assert_eq!(emitted, want);
        let snap = h.snapshot().await.unwrap();
        assert!(snap.incremental_spans >= 3, "{snap:?}");
        assert_eq!(snap.executions_finalized, 1);
    }
}
