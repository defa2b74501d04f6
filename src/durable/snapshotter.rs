//! Takes snapshots on a timer (and sooner when the log passes half its
//! bound), then reclaims the log segments, ledger generations and older
//! snapshots the new one covers.

use super::ledger::Ledger;
use super::recovery::Paths;
use super::snapshot::{self, OutboxState};
use super::wal::Wal;
use crate::clock::Clock;
use crate::stitch::checkpoint::{ExecState, SpanState};
use crate::stitch::StitcherHandle;
use crate::telemetry::names;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Runs the snapshot writer below the request path's priority (nice +10):
/// on a small machine its compression competed with the Firehose handler
/// for the core, and acknowledgements at half load waited 150–290 ms (p99)
/// while a snapshot was written, 40 ms without. A starved writer only
/// slows the snapshot: the shards wait for it, so stitching pauses, the
/// hand-off fills, and the core frees up for it. Best effort.
fn background_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 10) {
        tracing::debug!(error = %e, "could not lower the snapshot writer's priority");
    }
}

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
    /// a new ledger generation, then the shards' states, streamed to the
    /// file, and their outboxes through the hub.
    pub async fn take(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let frontier = self.wal.pins().frontier();
        let generation = self.ledger.rotate()?;
        let header = snapshot::Header {
            frontier,
            ledger_generation: generation,
            created_ms: self.clock.now_ms(),
        };
        let seq = self.next;
        self.next += 1;
        let dir = self.paths.snapshots.clone();
        // The writer streams executions out as the shards export them (a
        // few batches in flight), then the outbox once the hub added it.
        let (execs_tx, execs_rx) = mpsc::channel::<Vec<ExecState>>(4);
        let (outbox_tx, outbox_rx) = oneshot::channel::<Vec<OutboxState>>();
        let (done_tx, writer) = oneshot::channel();
        std::thread::Builder::new()
            .name("stepstitch-snap".into())
            .spawn(move || {
                background_priority();
                let _ = done_tx.send(snapshot::write_streamed(
                    &dir, seq, header, execs_rx, outbox_rx,
                ));
            })?;
        let parts = match self.stitcher.checkpoint(execs_tx).await {
            Ok(p) => p,
            Err(_) => {
                drop(outbox_tx);
                let _ = writer.await;
                anyhow::bail!("the stitcher stopped");
            }
        };
        let outbox = parts
            .into_iter()
            .flat_map(|p| p.outbox)
            .map(|(spans, logs)| OutboxState {
                spans: spans.iter().map(SpanState::from).collect(),
                logs: logs.to_vec(),
            })
            .collect();
        let _ = outbox_tx.send(outbox);
        let (bytes, executions) = writer
            .await
            .map_err(|_| anyhow::anyhow!("the snapshot writer died"))??;
        let freed = self.wal.reclaim(frontier)?;
        self.ledger.remove_before(generation)?;
        snapshot::remove_before(&self.paths.snapshots, seq)?;
        metrics::counter!(names::SNAPSHOTS, "outcome" => "ok").increment(1);
        metrics::gauge!(names::SNAPSHOT_BYTES).set(bytes as f64);
        tracing::info!(
            snapshot = seq,
            frontier,
            executions,
            bytes,
            wal_freed_bytes = freed,
            wal_bytes = self.wal.bytes(),
            took_ms = started.elapsed().as_millis() as u64,
            "snapshot written"
        );
        Ok(())
    }

    pub async fn run(mut self, every: Duration, stop: CancellationToken) -> Self {
        let mut last = Instant::now();
        let mut check = tokio::time::interval(Duration::from_millis(250));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = check.tick() => {}
                _ = stop.cancelled() => return self,
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
