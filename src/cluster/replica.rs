//! One replica's loop in cluster mode: the coordinator keeps its share of
//! the partitions; each owned partition gets a task that loads the
//! checkpoint, loads the earlier owners' acknowledgements, sends the
//! checkpoint's undelivered emissions again, then applies the partition's
//! messages in stream order and sends what its core emits to the hub
//! (the same outbox, receipts and exporters as single-process mode, with
//! the partition as the shard). Checkpoints are taken on a timer and when
//! a partition is handed over; a partition found lost is dropped at once.
//!
//! Join hints registered by this replica's cores are shared through a KV
//! bucket, and the other replicas' are added to this replica's registry.

use super::acks::AckStream;
use super::lease::{Change, Coordinator};
use super::nats::{js_error, Cluster, ClusterError};
use super::partition::subject;
use super::runner::Runner;
use crate::durable::ledger::Delivered;
use crate::durable::snapshot::OutboxState;
use crate::export::receipt::Outbox;
use crate::lifecycle::Lifecycle;
use crate::stitch::checkpoint::SpanState;
use crate::stitch::context::TraceContext;
use crate::stitch::core::StitchSnapshot;
use crate::stitch::joins::JoinRegistry;
use crate::stitch::output::{Emission, Marker, StitchOut};
use crate::stitch::StitchConfig;
use crate::telemetry::names;
use futures_util::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often an owner lets time pass for its core (executions past their
/// grace are emitted) and checks whether a checkpoint is due.
const TICK: Duration = Duration::from_millis(250);
/// How long a hand-over waits for the partition's emissions to be
/// delivered before its last checkpoint keeps them as undelivered (an
/// exporter that is down delays a hand-over this long at most; what it
/// delivers after that the new owner may send again).
const HANDOVER_WAIT: Duration = Duration::from_secs(15);
/// How often join hints are shared.
const HINTS_EVERY: Duration = Duration::from_millis(100);

/// Everything an owned partition's task needs.
#[derive(Clone)]
pub struct Shared {
    pub cluster: Cluster,
    pub stitch: Arc<StitchConfig>,
    pub emissions: mpsc::Sender<StitchOut>,
    pub outbox: Arc<Outbox>,
    pub delivered: Arc<RwLock<Delivered>>,
    pub acks: Arc<AckStream>,
    pub joins: Arc<JoinRegistry>,
    pub checkpoint_interval: Duration,
    /// Each owned partition's core counters, summed into the stitcher's
    /// gauges (the single-process names).
    pub stats: Arc<std::sync::Mutex<BTreeMap<u32, StitchSnapshot>>>,
}

impl Shared {
    fn set_stats(&self, p: u32, s: Option<StitchSnapshot>) {
        let mut all = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        match s {
            Some(s) => all.insert(p, s),
            None => all.remove(&p),
        };
        let mut sum = StitchSnapshot::default();
        for s in all.values() {
            sum.add(s);
        }
        drop(all);
        metrics::gauge!(names::STITCH_OPEN_EXECUTIONS).set(sum.open_executions as f64);
        metrics::gauge!(names::STITCH_RETAINED_EXECUTIONS).set(sum.retained_executions as f64);
        metrics::gauge!(names::STITCH_DUPLICATE_EVENTS).set(sum.duplicate_events as f64);
        metrics::gauge!(names::STITCH_LATE_EVENTS).set(sum.late_events as f64);
        metrics::gauge!(names::STITCH_ORPHANED_EVENTS).set(sum.orphaned_events as f64);
    }
}

pub struct Replica {
    pub shared: Shared,
    pub lifecycle: Arc<Lifecycle>,
}

struct Owned {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// A partition being handed over: its owner writes the last checkpoint
/// while the lease is still renewed, then says so on `done`.
struct Handing {
    abort: tokio::task::AbortHandle,
}

impl Owned {
    /// Stops the owner (a last checkpoint follows); `done` hears the
    /// partition once it is written.
    fn hand_over(self, p: u32, done: &mpsc::Sender<u32>) -> Handing {
        self.stop.cancel();
        let abort = self.task.abort_handle();
        let done = done.clone();
        tokio::spawn(async move {
            let _ = self.task.await;
            let _ = done.send(p).await;
        });
        Handing { abort }
    }
}

impl Replica {
    /// Runs until `stop`; then hands every partition over (checkpoints,
    /// leases given back) and returns.
    pub async fn run(self, stop: CancellationToken) {
        let s = self.shared;
        let mut coordinator = Coordinator::new(s.cluster.clone());
        let ttl = s.cluster.cfg.lease_ttl;
        let acks_stop = CancellationToken::new();
        let acks_thread = match s
            .acks
            .spawn_thread(s.cluster.cfg.clone(), acks_stop.clone(), ttl)
        {
            Ok(t) => Some(t),
            Err(e) => {
                // Without it nothing is recorded: after a failover the
                // next owner sends again what this one delivered.
                tracing::error!(error = %e, "cannot start the acknowledgements thread");
                None
            }
        };
        // What a killed process of this replica delivered without storing
        // the acknowledgements (its journal) is stored before this one
        // heartbeats: before anyone opens the partitions it held.
        if !s.acks.flush(ttl).await {
            tracing::warn!("acknowledgements from the journal not stored yet; carrying on");
        }
        let hints_stop = CancellationToken::new();
        let hints_task = tokio::spawn(share_hints(
            s.cluster.clone(),
            s.joins.clone(),
            hints_stop.clone(),
        ));
        let mut owned: HashMap<u32, Owned> = HashMap::new();
        let mut handing: HashMap<u32, Handing> = HashMap::new();
        let (done_tx, mut done_rx) = mpsc::channel::<u32>(64);
        let mut every = tokio::time::interval(ttl / 3);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                Some(p) = done_rx.recv() => {
                    if handing.remove(&p).is_some() {
                        give_back(&s, &mut coordinator, p).await;
                    }
                    continue;
                }
                _ = stop.cancelled() => break,
            }
            match coordinator.step().await {
                Ok(changes) => {
                    for c in changes {
                        match c {
                            Change::Acquired(p) => {
                                metrics::counter!(names::CLUSTER_LEASE_CHANGES, "change" => "acquired").increment(1);
                                tracing::info!(partition = p, "partition acquired");
                                owned.insert(p, spawn_owner(&s, p));
                            }
                            Change::Lost(p) => {
                                if let Some(o) = owned.remove(&p) {
                                    o.task.abort();
                                }
                                if let Some(h) = handing.remove(&p) {
                                    h.abort.abort();
                                }
                                lost(&s, p);
                            }
                            // Renewed while its owner finishes: the lease
                            // is given back once the checkpoint is written.
                            Change::HandOver(p) => {
                                if let Some(o) = owned.remove(&p) {
                                    handing.insert(p, o.hand_over(p, &done_tx));
                                }
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot renew partition leases; retrying"),
            }
            // An owner that failed (NATS gone for long) starts over from
            // its checkpoint while the lease is held.
            let failed: Vec<u32> = owned
                .iter()
                .filter(|(_, o)| o.task.is_finished())
                .map(|(p, _)| *p)
                .collect();
            for p in failed {
                if coordinator.owned().contains(&p) {
                    owned.insert(p, spawn_owner(&s, p));
                }
            }
            metrics::gauge!(names::CLUSTER_OWNED_PARTITIONS).set(owned.len() as f64);
            if coordinator.settled() && !self.lifecycle.is_ready() && !stop.is_cancelled() {
                tracing::info!(partitions = ?coordinator.owned(), "partitions settled");
                self.lifecycle.set_ready(true);
                metrics::gauge!(names::READY).set(1.0);
            }
        }
        // A clean stop: the others plan without this replica; every owner
        // writes its last checkpoint under a renewed lease, and each lease
        // goes back as soon as its checkpoint is written, so the others
        // take over at once instead of after the TTL.
        let n = owned.len() + handing.len();
        coordinator.leave().await;
        for (p, o) in owned.drain() {
            handing.insert(p, o.hand_over(p, &done_tx));
        }
        while !handing.is_empty() {
            tokio::select! {
                Some(p) = done_rx.recv() => {
                    if handing.remove(&p).is_some() {
                        give_back(&s, &mut coordinator, p).await;
                    }
                }
                _ = every.tick() => match coordinator.renew_held().await {
                    Ok(changes) => {
                        for c in changes {
                            if let Change::Lost(p) = c {
                                if let Some(h) = handing.remove(&p) {
                                    h.abort.abort();
                                }
                                lost(&s, p);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot renew partition leases while stopping; retrying"),
                },
            }
        }
        if let Err(e) = coordinator.release_all().await {
            tracing::warn!(error = %e, "cannot give leases back; they expire");
        }
        metrics::gauge!(names::CLUSTER_OWNED_PARTITIONS).set(0.0);
        tracing::info!(partitions = n, "partitions handed over");
        hints_stop.cancel();
        let _ = hints_task.await;
        acks_stop.cancel();
        if let Some(t) = acks_thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// A partition found lost (its lease expired and was taken): its owner
/// was stopped at once; the new owner carries on from the checkpoint.
fn lost(s: &Shared, p: u32) {
    metrics::counter!(names::CLUSTER_LEASE_CHANGES, "change" => "lost").increment(1);
    tracing::warn!(
        partition = p,
        "partition lease lost; its new owner carries on from the last checkpoint"
    );
    s.set_stats(p, None);
    metrics::gauge!(names::CLUSTER_PARTITION_LAG, "partition" => p.to_string()).set(0.0);
}

/// A hand-over's last checkpoint is written: the lease goes back.
async fn give_back(s: &Shared, coordinator: &mut Coordinator, p: u32) {
    s.set_stats(p, None);
    if let Err(e) = coordinator.release(p).await {
        tracing::warn!(partition = p, error = %e, "cannot give the lease back; it expires");
    }
    metrics::counter!(names::CLUSTER_LEASE_CHANGES, "change" => "released").increment(1);
    metrics::gauge!(names::CLUSTER_PARTITION_LAG, "partition" => p.to_string()).set(0.0);
    tracing::info!(partition = p, "partition handed over");
}

fn spawn_owner(s: &Shared, partition: u32) -> Owned {
    let stop = CancellationToken::new();
    let task = tokio::spawn(own(s.clone(), partition, stop.clone()));
    Owned { stop, task }
}

/// An owned partition, from its checkpoint until `stop` (then a last
/// checkpoint) or a failure (logged; the replica starts it again).
async fn own(s: Shared, p: u32, stop: CancellationToken) {
    let started = Instant::now();
    let (mut runner, opened) = loop {
        match open(&s, p).await {
            Ok(r) => break r,
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "cannot open the partition; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    };
    let (runner_acks, resent) = opened;
    tracing::info!(
        partition = p,
        from_sequence = runner.applied,
        acknowledgements = runner_acks,
        resent_emissions = resent,
        took_ms = started.elapsed().as_millis() as u64,
        "partition opened; applying its messages"
    );
    let mut last_checkpoint = Instant::now();
    let mut acks_from = runner.acks_from;
    // The checkpoint before the last one: what may be purged.
    let mut behind = (runner.applied, runner.acks_from);
    loop {
        match follow(
            &s,
            &mut runner,
            &stop,
            &mut last_checkpoint,
            &mut acks_from,
            &mut behind,
        )
        .await
        {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "reading the partition failed; resuming");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = stop.cancelled() => break,
                }
            }
        }
    }
    // Handing over: what was emitted is delivered first when it can be,
    // its acknowledgements stored, then the last checkpoint (the lease is
    // renewed meanwhile).
    if let Err(e) = checkpoint(
        &s,
        &runner,
        &mut acks_from,
        &mut behind,
        HANDOVER_WAIT,
        true,
    )
    .await
    {
        metrics::counter!(names::CLUSTER_CHECKPOINTS, "outcome" => "error").increment(1);
        tracing::error!(partition = p, error = %e, "last checkpoint failed; the next owner replays from the one before");
    }
}

/// Loads the checkpoint and the earlier owners' acknowledgements, and
/// sends the checkpoint's undelivered emissions again.
/// Returns the runner, the acknowledgement records loaded and the
/// emissions sent again.
async fn open(s: &Shared, p: u32) -> Result<(Runner, (usize, usize)), ClusterError> {
    // This replica may have owned it a moment ago (a lease lost while NATS
    // was away, then taken again): what that owner still had in flight is
    // delivered and acknowledged first, or it would be sent twice.
    let within = s.cluster.cfg.lease_ttl;
    let deadline = tokio::time::Instant::now() + within;
    while !s.outbox.shard_is_empty(p as usize) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if !s.acks.flush(within).await {
        return Err(js_error("earlier acknowledgements are not stored yet"));
    }
    let (runner, restored) = Runner::open(
        &s.cluster,
        p,
        s.stitch.clone(),
        s.stitch.max_open_executions,
        s.joins.clone(),
    )
    .await?;
    let (acked, records) = s.cluster.acks_after(p, restored.acks_from).await?;
    metrics::counter!(names::CLUSTER_ACKS_LOADED).increment(records as u64);
    {
        let mut d = s.delivered.write().unwrap_or_else(|e| e.into_inner());
        for (k, ids) in acked {
            d.entry(k).or_default().extend(ids);
        }
    }
    let resent = restored.outbox.len();
    for o in restored.outbox {
        let em = Emission {
            shard: p as usize,
            spans: o.spans.into_iter().map(Into::into).collect(),
            metrics: Vec::new(),
            metric_owners: Vec::new(),
            logs: o.logs,
        };
        s.emissions
            .send(StitchOut::Emission(em))
            .await
            .map_err(|_| js_error("the exporters stopped"))?;
    }
    Ok((runner, (records, resent)))
}

/// Applies the partition's messages as they come until `stop`.
async fn follow(
    s: &Shared,
    runner: &mut Runner,
    stop: &CancellationToken,
    last_checkpoint: &mut Instant,
    acks_from: &mut u64,
    behind: &mut (u64, u64),
) -> Result<(), ClusterError> {
    let p = runner.partition;
    let lag = metrics::gauge!(names::CLUSTER_PARTITION_LAG, "partition" => p.to_string());
    let mut messages = runner.messages(&s.cluster).await?;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut out = Vec::new();
    let mut checkpointed = runner.applied;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(()),
            m = messages.next() => {
                let m = m.ok_or_else(|| js_error("the partition's consumer ended"))?.map_err(js_error)?;
                runner.apply(&m, &mut out)?;
                lag.set(m.info().map_err(js_error)?.pending as f64);
                metrics::counter!(names::CLUSTER_APPLIED).increment(1);
            }
            _ = tick.tick() => {
                runner.tick(Instant::now(), &mut out);
                s.set_stats(p, Some(runner.stats()));
            }
        }
        send(s, p, &mut out).await?;
        if last_checkpoint.elapsed() >= s.checkpoint_interval && runner.applied > checkpointed {
            // The partition waits while its outbox empties (bounded): then
            // the acknowledgements before the checkpoint can go.
            let within = s.checkpoint_interval.min(Duration::from_secs(5));
            match checkpoint(s, runner, acks_from, behind, within, false).await {
                Ok(()) => checkpointed = runner.applied,
                Err(e) => {
                    metrics::counter!(names::CLUSTER_CHECKPOINTS, "outcome" => "error")
                        .increment(1);
                    tracing::warn!(partition = p, error = %e, "checkpoint failed; retrying at the next interval");
                }
            }
            *last_checkpoint = Instant::now();
        }
    }
}

async fn send(s: &Shared, p: u32, out: &mut Vec<Emission>) -> Result<(), ClusterError> {
    for mut em in out.drain(..) {
        if em.is_empty() {
            continue;
        }
        em.shard = p as usize;
        s.emissions
            .send(StitchOut::Emission(em))
            .await
            .map_err(|_| js_error("the exporters stopped"))?;
    }
    Ok(())
}

/// A checkpoint: the core's state, what is not delivered yet, and the
/// acknowledgements' position. That position moves on only when nothing
/// of the partition is waiting for an exporter (a partly delivered
/// emission's acknowledgements must stay with it).
///
/// Purging trails by one checkpoint (`behind`): a replica that lost its
/// lease without knowing yet (stalled past the TTL) may still write one,
/// and must not purge messages a new owner, opened from the checkpoint
/// before, has yet to read. The last checkpoint before a hand-over purges
/// all it covers once the lease is found still held after writing it:
/// the lease is released only after it.
async fn checkpoint(
    s: &Shared,
    runner: &Runner,
    acks_from: &mut u64,
    behind: &mut (u64, u64),
    within: Duration,
    last: bool,
) -> Result<(), ClusterError> {
    let p = runner.partition;
    let deadline = tokio::time::Instant::now() + within;
    while !s.outbox.shard_is_empty(p as usize) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // One deadline for both waits.
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let _ = s.acks.flush(left.max(Duration::from_millis(100))).await;
    let position = s.cluster.acks_position().await?;
    let (reply, mut rx) = mpsc::channel(1);
    s.emissions
        .send(StitchOut::Checkpoint(Marker {
            shard: p as usize,
            reply,
        }))
        .await
        .map_err(|_| js_error("the exporters stopped"))?;
    let part = rx
        .recv()
        .await
        .ok_or_else(|| js_error("the exporters stopped"))?;
    // Fencing, narrowed: a replica that lost the lease without knowing yet
    // must not overwrite the new owner's checkpoint.
    if s.cluster.holder(p).await?.as_deref() != Some(s.cluster.cfg.node.as_str()) {
        return Err(js_error("the lease is no longer held"));
    }
    let next_acks_from = if part.outbox.is_empty() {
        position
    } else {
        *acks_from
    };
    let outbox: Vec<OutboxState> = part
        .outbox
        .into_iter()
        .map(|(spans, logs)| OutboxState {
            spans: spans.iter().map(SpanState::from).collect(),
            logs: logs.to_vec(),
        })
        .collect();
    let bytes = runner
        .checkpoint(&s.cluster, next_acks_from, outbox)
        .await?;
    metrics::counter!(names::CLUSTER_CHECKPOINTS, "outcome" => "ok").increment(1);
    tracing::debug!(
        partition = p,
        sequence = runner.applied,
        bytes,
        "checkpoint written"
    );
    // The last one purges all it covers only if the lease is still ours
    // after it is written: whoever takes the partition later opens from
    // it. (A lease that expired meanwhile may have a new owner that
    // opened from the checkpoint before: purge only what that one covers.)
    let still_ours =
        last && s.cluster.holder(p).await?.as_deref() == Some(s.cluster.cfg.node.as_str());
    let (seq, acks) = if still_ours {
        (runner.applied, next_acks_from)
    } else {
        *behind
    };
    *behind = (runner.applied, next_acks_from);
    *acks_from = next_acks_from;
    // Covered by a checkpoint every owner opens from or after.
    if seq > 0 {
        s.cluster.purge_partition(p, seq).await?;
    }
    if acks > 0 {
        s.cluster.purge_acks(p, acks).await?;
    }
    Ok(())
}

impl Cluster {
    /// Drops a partition's messages up to `sequence` (a checkpoint covers
    /// them): the stream's retention is bounded by the checkpoints.
    pub async fn purge_partition(&self, partition: u32, sequence: u64) -> Result<(), ClusterError> {
        let stream = self.js.get_stream(&self.cfg.name).await.map_err(js_error)?;
        stream
            .purge()
            .filter(subject(&self.cfg.subjects_prefix(), partition))
            .sequence(sequence + 1)
            .await
            .map_err(js_error)?;
        Ok(())
    }
}

/// A join hint as stored: the registry key is kept in the value (the KV
/// key is a hash of it: registry keys hold characters KV keys may not).
#[derive(serde::Serialize, serde::Deserialize)]
struct Hint {
    key: String,
    trace_id: u64,
    tid: Option<String>,
    parent_id: u64,
    source: String,
}

fn hint_key(key: &str) -> String {
    format!("h{:016x}", super::partition::fnv1a64(key.as_bytes()))
}

fn source_of(s: &str) -> &'static str {
    match s {
        "map_run" => "map_run",
        _ => "parent_task",
    }
}

/// Shares this replica's join hints and adds the others' to its registry.
async fn share_hints(cluster: Cluster, joins: Arc<JoinRegistry>, stop: CancellationToken) {
    let mut watch = loop {
        match cluster.joins.watch_with_history(">").await {
            Ok(w) => break w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch join hints; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    };
    let mut every = tokio::time::interval(HINTS_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {
                for (key, ctx) in joins.take_shared() {
                    let h = Hint {
                        key: key.clone(),
                        trace_id: ctx.trace_id,
                        tid: ctx.tid.clone(),
                        parent_id: ctx.parent_id,
                        source: ctx.source.to_owned(),
                    };
                    let body = serde_json::to_vec(&h).unwrap_or_default();
                    match cluster.joins.put(hint_key(&key), body.into()).await {
                        Ok(_) => metrics::counter!(names::CLUSTER_JOIN_HINTS, "direction" => "sent").increment(1),
                        Err(e) => tracing::warn!(error = %e, "cannot share a join hint; a child on another replica may start its own trace"),
                    }
                }
            }
            e = watch.next() => {
                let Some(Ok(e)) = e else {
                    // The watch ended (NATS restarted): watch again.
                    match cluster.joins.watch_with_history(">").await {
                        Ok(w) => watch = w,
                        Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                    }
                    continue;
                };
                if e.operation != async_nats::jetstream::kv::Operation::Put {
                    continue;
                }
                if let Ok(h) = serde_json::from_slice::<Hint>(&e.value) {
                    if hint_key(&h.key) == e.key {
                        joins.insert_shared(h.key, TraceContext {
                            trace_id: h.trace_id,
                            tid: h.tid,
                            parent_id: h.parent_id,
                            source: source_of(&h.source),
                        });
                        metrics::counter!(names::CLUSTER_JOIN_HINTS, "direction" => "received").increment(1);
                    }
                }
            }
        }
    }
}
