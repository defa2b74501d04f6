//! Partition ownership: a lease per partition in a JetStream KV bucket
//! whose entries expire unless renewed (`max_age` = the lease TTL). A
//! replica takes a free partition with `create` (fails if anyone holds
//! it), keeps it with `update` at the revision it holds (fails if it lost
//! it), and gives it back with a delete at that revision. Compare-and-set
//! on the revision is what makes a partition owned by one replica at a
//! time; the heartbeats bucket says which replicas are alive, and
//! `assign` says which of them should own what.

use super::assign;
use super::nats::{js_error, Cluster, ClusterError};
use async_nats::jetstream::kv;
use futures_util::StreamExt;
use std::collections::BTreeMap;

fn key(partition: u32) -> String {
    format!("p{partition}")
}

/// A change in what this replica owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Acquired(u32),
    /// Found lost (expired and taken, or deleted): stop at once.
    Lost(u32),
    /// Another live replica should own it: checkpoint, then `release`.
    HandOver(u32),
}

impl Cluster {
    /// Takes a free partition: its lease revision, or `None` if held.
    pub async fn acquire(&self, partition: u32) -> Result<Option<u64>, ClusterError> {
        match self
            .leases
            .create(key(partition), self.cfg.node.clone().into())
            .await
        {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
            Err(e) => Err(js_error(e)),
        }
    }

    /// Renews a lease held at `revision`: the new revision, or `None` if
    /// it was lost (expired and taken, or deleted).
    pub async fn renew(&self, partition: u32, revision: u64) -> Result<Option<u64>, ClusterError> {
        match self
            .leases
            .update(key(partition), self.cfg.node.clone().into(), revision)
            .await
        {
            Ok(rev) => Ok(Some(rev)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
            Err(e) => Err(js_error(e)),
        }
    }

    /// Gives a lease back (only if still held at `revision`).
    pub async fn release(&self, partition: u32, revision: u64) -> Result<(), ClusterError> {
        // A lease lost meanwhile is someone else's now: nothing to do.
        let _ = self
            .leases
            .delete_expect_revision(key(partition), Some(revision))
            .await;
        Ok(())
    }

    /// Who holds a partition's lease, if anyone.
    pub async fn holder(&self, partition: u32) -> Result<Option<String>, ClusterError> {
        let e = self.leases.entry(key(partition)).await.map_err(js_error)?;
        Ok(e.filter(|e| e.operation == kv::Operation::Put)
            .map(|e| String::from_utf8_lossy(&e.value).into_owned()))
    }

    /// Says this replica is alive (until the TTL passes without another).
    pub async fn heartbeat(&self) -> Result<(), ClusterError> {
        self.members
            .put(&self.cfg.node, "alive".into())
            .await
            .map_err(js_error)?;
        Ok(())
    }

    /// The replicas alive now, sorted.
    pub async fn live_members(&self) -> Result<Vec<String>, ClusterError> {
        let mut keys = self.members.keys().await.map_err(js_error)?;
        let mut out = Vec::new();
        while let Some(k) = keys.next().await {
            out.push(k.map_err(js_error)?);
        }
        out.sort();
        Ok(out)
    }
}

/// One replica's side of ownership: call `step` every third of the TTL.
#[derive(Debug)]
pub struct Coordinator {
    pub cluster: Cluster,
    /// Partition → the lease revision this replica holds.
    held: BTreeMap<u32, u64>,
    /// What this replica should own, as of the last step.
    want: Vec<u32>,
}

impl Coordinator {
    pub fn new(cluster: Cluster) -> Self {
        Self {
            cluster,
            held: BTreeMap::new(),
            want: Vec::new(),
        }
    }

    /// Owns exactly what it should (as of the last step).
    pub fn settled(&self) -> bool {
        self.held.keys().copied().eq(self.want.iter().copied())
    }

    pub fn owned(&self) -> Vec<u32> {
        self.held.keys().copied().collect()
    }

    /// Heartbeat, renew what is held (also what should be handed over:
    /// kept until its owner checkpointed and called `release`), take what
    /// this one should own and is free.
    pub async fn step(&mut self) -> Result<Vec<Change>, ClusterError> {
        let c = &self.cluster;
        c.heartbeat().await?;
        let members = c.live_members().await?;
        let nodes: Vec<&str> = members.iter().map(String::as_str).collect();
        let want: Vec<u32> = assign::desired(&c.cfg.node, &nodes, c.cfg.partitions);
        let mut changes = self.renew_held().await?;
        changes.extend(
            self.held
                .keys()
                .filter(|p| !want.contains(p))
                .map(|p| Change::HandOver(*p)),
        );
        self.want = want.clone();
        for p in want {
            if self.held.contains_key(&p) {
                continue;
            }
            if let Some(rev) = self.cluster.acquire(p).await? {
                self.held.insert(p, rev);
                changes.push(Change::Acquired(p));
            }
        }
        Ok(changes)
    }

    /// Renews what is held and nothing else (`step`'s first half; alone
    /// while stopping: the owners finish their last checkpoints under
    /// their leases).
    pub async fn renew_held(&mut self) -> Result<Vec<Change>, ClusterError> {
        let mut changes = Vec::new();
        for (p, rev) in std::mem::take(&mut self.held) {
            match self.cluster.renew(p, rev).await? {
                Some(r) => {
                    self.held.insert(p, r);
                }
                None => changes.push(Change::Lost(p)),
            }
        }
        Ok(changes)
    }

    /// Stops heartbeating as a member: the others plan without this
    /// replica and take each partition once its lease is given back.
    pub async fn leave(&mut self) {
        self.want.clear();
        let _ = self.cluster.members.delete(&self.cluster.cfg.node).await;
    }

    /// Gives one lease back (its runner checkpointed).
    pub async fn release(&mut self, partition: u32) -> Result<(), ClusterError> {
        if let Some(rev) = self.held.remove(&partition) {
            self.cluster.release(partition, rev).await?;
        }
        Ok(())
    }

    /// Gives every lease back (a clean shutdown: others take over at once
    /// instead of after the TTL).
    pub async fn release_all(&mut self) -> Result<Vec<Change>, ClusterError> {
        let mut changes = Vec::new();
        for (p, rev) in std::mem::take(&mut self.held) {
            self.cluster.release(p, rev).await?;
            changes.push(Change::Lost(p));
        }
        let _ = self.cluster.members.delete(&self.cluster.cfg.node).await;
        Ok(changes)
    }
}
