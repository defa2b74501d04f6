//! The stitcher's handle: cheap to clone, routes each batch's events to
//! the shard that owns their execution (a fixed hash of the ARN) and asks
//! the shards for checkpoints, counters and flushes. Every mailbox is
//! bounded: a full one makes the sender wait.

use super::checkpoint::ExecState;
use super::config::StitchConfig;
use super::core::StitchSnapshot;
use super::joins::JoinRegistry;
use super::output::{Part, StitchOut};
use super::shard::{Guard, Shard, ShardMsg};
use crate::events::{Event, StreamParams};
use std::hash::BuildHasher;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Cheap to clone; routes events to their shard.
#[derive(Debug, Clone)]
pub struct StitcherHandle {
    shards: Vec<mpsc::Sender<ShardMsg>>,
}

fn shard_of(arn: &str, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    // Fixed seed: the same execution lands on the same shard in every run.
    let h = foldhash::fast::FixedState::with_seed(0x5354_4954_4348).hash_one(arn);
    (h % n as u64) as usize
}

/// `items` by the shard their execution ARN belongs to.
fn partition<T>(items: Vec<T>, n: usize, arn: impl Fn(&T) -> &str) -> Vec<Vec<T>> {
    if n <= 1 {
        return vec![items];
    }
    let mut parts: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
    for item in items {
        let i = shard_of(arn(&item), n);
        parts[i].push(item);
    }
    parts
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

    /// Each shard's part of a batch, as the messages to send (none for a
    /// shard with no events).
    fn batches(
        &self,
        events: Vec<Event>,
        params: Arc<StreamParams>,
        guard: Option<Guard>,
    ) -> impl Iterator<Item = (&mpsc::Sender<ShardMsg>, ShardMsg)> {
        let parts = partition(events, self.shards.len(), |e| &e.execution_arn);
        self.shards
            .iter()
            .zip(parts)
            .filter(|(_, part)| !part.is_empty())
            .map(move |(shard, part)| {
                let msg = ShardMsg::Events {
                    events: part,
                    params: params.clone(),
                    guard: guard.clone(),
                };
                (shard, msg)
            })
    }

    /// Routes events (and their stream's common attributes) to their shards;
    /// waits while a mailbox is full.
    pub async fn send(
        &self,
        events: Vec<Event>,
        params: Arc<StreamParams>,
        guard: Option<Guard>,
    ) -> Result<(), Stopped> {
        for (shard, msg) in self.batches(events, params, guard) {
            shard.send(msg).await.map_err(|_| Stopped)?;
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
            s.send(ShardMsg::Checkpoint {
                execs: execs.clone(),
                reply: tx.clone(),
            })
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
        let parts = partition(execs, self.shards.len(), |e| &e.arn);
        for (s, part) in self.shards.iter().zip(parts) {
            let (tx, rx) = oneshot::channel();
            s.send(ShardMsg::Restore {
                execs: part,
                done: tx,
            })
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
        params: Arc<StreamParams>,
        guard: Option<Guard>,
    ) -> Result<(), Stopped> {
        for (shard, msg) in self.batches(events, params, guard) {
            shard.blocking_send(msg).map_err(|_| Stopped)?;
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
            s.send(ShardMsg::Snapshot { reply: tx, deep })
                .await
                .map_err(|_| Stopped)?;
            total.add(&rx.await.map_err(|_| Stopped)?);
        }
        Ok(total)
    }

    /// Finalizes every open execution now (complete or not).
    pub async fn flush_all(&self) -> Result<(), Stopped> {
        self.each_until_done(|done| ShardMsg::FlushAll { done })
            .await
    }

    /// Emits everything still open and stops the shards: their span
    /// senders close, so the exporters drain and end.
    pub async fn stop(&self) -> Result<(), Stopped> {
        self.each_until_done(|done| ShardMsg::Stop { done }).await
    }

    /// Sends `msg` to each shard in turn and waits until it is done.
    async fn each_until_done(
        &self,
        msg: impl Fn(oneshot::Sender<()>) -> ShardMsg,
    ) -> Result<(), Stopped> {
        for s in &self.shards {
            let (tx, rx) = oneshot::channel();
            s.send(msg(tx)).await.map_err(|_| Stopped)?;
            rx.await.map_err(|_| Stopped)?;
        }
        Ok(())
    }
}
