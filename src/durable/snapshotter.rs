//! Takes snapshots on a timer (and sooner when the log passes half its
//! bound), then reclaims the log segments, ledger generations and older
//! snapshots the new one covers.

use super::ledger::Ledger;
use super::recovery::Paths;
use super::snapshot::{self, OutboxState, Snapshot};
use super::wal::Wal;
use crate::clock::Clock;
use crate::stitch::checkpoint::SpanState;
use crate::stitch::service::StitcherHandle;
use crate::telemetry::names;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub struct Snapshotter {
    pub paths: Paths,
    pub wal: Wal,
    pub ledger: Arc<Ledger>,
    pub stitcher: StitcherHandle,
    pub clock: Arc<dyn Clock>,
    /// The number the next snapshot file gets.
    pub next: u64,
    pub max_bytes: u64,
}

impl Snapshotter {
    /// One snapshot: frontier first (what is applied now is covered), then
    /// a new ledger generation, then the shards' states through the hub.
    pub async fn take(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let frontier = self.wal.pins().frontier();
        let generation = self.ledger.rotate()?;
        let parts = self
            .stitcher
            .checkpoint()
            .await
            .map_err(|_| anyhow::anyhow!("the stitcher stopped"))?;
        let mut shards = Vec::with_capacity(parts.len());
        let mut outbox = Vec::new();
        for p in parts {
            shards.push(p.state);
            for (spans, logs) in p.outbox {
                outbox.push(OutboxState {
                    spans: spans.iter().map(SpanState::from).collect(),
                    logs: logs.to_vec(),
                });
            }
        }
        let snap = Snapshot::new(frontier, generation, self.clock.now_ms(), shards, outbox);
        let seq = self.next;
        self.next += 1;
        let dir = self.paths.snapshots.clone();
        let bytes =
            tokio::task::spawn_blocking(move || snapshot::write(&dir, seq, &snap)).await??;
        let freed = self.wal.reclaim(frontier)?;
        self.ledger.remove_before(generation)?;
        snapshot::remove_before(&self.paths.snapshots, seq)?;
        metrics::counter!(names::SNAPSHOTS, "outcome" => "ok").increment(1);
        metrics::gauge!(names::SNAPSHOT_BYTES).set(bytes as f64);
        tracing::info!(
            snapshot = seq,
            frontier,
            bytes,
            wal_freed_bytes = freed,
            wal_bytes = self.wal.bytes(),
            took_ms = started.elapsed().as_millis() as u64,
            "snapshot written"
        );
        Ok(())
    }

    pub async fn run(mut self, every: Duration, mut stop: watch::Receiver<bool>) -> Self {
        let mut last = Instant::now();
        let mut check = tokio::time::interval(Duration::from_millis(250));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = check.tick() => {}
                _ = stop.wait_for(|s| *s) => return self,
            }
            metrics::gauge!(names::SNAPSHOT_AGE).set(last.elapsed().as_secs_f64());
            let pressed = self.wal.bytes() > self.max_bytes / 2;
            if last.elapsed() < every && !(pressed && last.elapsed() >= Duration::from_secs(1)) {
                continue;
            }
            if let Err(e) = self.take().await {
                metrics::counter!(names::SNAPSHOTS, "outcome" => "error").increment(1);
                tracing::error!(error = %e, "snapshot failed; the log is kept until one succeeds");
            }
            last = Instant::now();
        }
    }
}
