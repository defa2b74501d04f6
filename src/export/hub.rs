//! The fan-out between the stitcher and the exporters: spans and logs go to
//! every exporter as they come; metric samples are aggregated into 10-second
//! windows and flushed on a timer. Each exporter is awaited in turn, so the
//! slowest one sets the pace (nothing is dropped to let another run ahead)
//! and its backpressure reaches the stitcher, then the hand-off, then
//! Firehose as 503s.
//!
//! Durability: every emission is held in the outbox until each exporter
//! acknowledged its spans and logs (receipts); acknowledgements go to the
//! ledger; after a restart, what the ledger says an exporter already has is
//! not sent to it again. Checkpoint markers from the shards pick up each
//! shard's outbox here, behind the emissions that preceded them.

use super::aggregate::Aggregator;
use super::item::ExportItem;
use super::receipt::{Outbox, Receipt};
use super::Exporter;
use crate::clock::Clock;
use crate::durable::ledger::{AckLog, Delivered, Signal};
use crate::stitch::output::Part;
use crate::stitch::output::{Emission, LogRecord, StitchOut};
use crate::stitch::span::Span;
use crate::telemetry::names;
use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// The hub's share of durability.
pub struct HubDurability {
    pub ledger: Arc<dyn AckLog>,
    pub outbox: Arc<Outbox>,
    /// Acknowledged before the last restart (since the snapshot); in
    /// cluster mode, also what earlier owners of a partition this replica
    /// took over acknowledged (added when it takes it).
    pub delivered: Arc<RwLock<Delivered>>,
}

pub struct Hub {
    pub exporters: Vec<Exporter>,
    pub aggregator: Aggregator,
    pub clock: Arc<dyn Clock>,
    pub metrics_interval: Duration,
    pub durability: Option<HubDurability>,
}

impl Hub {
    async fn fan_out(&self, item: ExportItem) {
        if item.is_empty() {
            return;
        }
        for e in &self.exporters {
            e.accept(&item, None).await;
        }
    }

    async fn flush_metrics(&mut self) {
        let points = self.aggregator.flush(self.clock.now_ms());
        if !points.is_empty() {
            self.fan_out(ExportItem::Metrics(Arc::new(points))).await;
        }
    }

    /// What exporter `i` still needs of `all` (after a restart, its ledger
    /// may already hold some).
    fn unsent<T: Clone>(
        &self,
        i: usize,
        signal: Signal,
        all: &Arc<Vec<T>>,
        id: impl Fn(&T) -> u64,
    ) -> Arc<Vec<T>> {
        let Some(d) = self.durability.as_ref() else {
            return all.clone();
        };
        let delivered = d.delivered.read().unwrap_or_else(|e| e.into_inner());
        let Some(done) = delivered.get(&(i as u8, signal)) else {
            return all.clone();
        };
        if !all.iter().any(|x| done.contains(&id(x))) {
            return all.clone();
        }
        let left: Vec<T> = all
            .iter()
            .filter(|x| !done.contains(&id(x)))
            .cloned()
            .collect();
        let skipped = all.len() - left.len();
        metrics::counter!(names::EXPORT_DEDUPLICATED,
            "exporter" => self.exporters[i].label(),
            "signal" => if signal == Signal::Spans { "traces" } else { "logs" })
        .increment(skipped as u64);
        Arc::new(left)
    }

    /// Sends one emission's spans and logs to every exporter, with receipts.
    pub async fn dispatch(&self, shard: usize, spans: Arc<Vec<Span>>, logs: Arc<Vec<LogRecord>>) {
        let mut plan: Vec<(usize, Signal, ExportItem, Vec<u64>)> = Vec::new();
        for i in 0..self.exporters.len() {
            let s = self.unsent(i, Signal::Spans, &spans, |s| s.span_id);
            if !s.is_empty() {
                let ids = s.iter().map(|s| s.span_id).collect();
                plan.push((i, Signal::Spans, ExportItem::Spans(s), ids));
            }
            let l = self.unsent(i, Signal::Logs, &logs, |l| l.span_id);
            if !l.is_empty() {
                let ids: HashSet<u64> = l.iter().map(|l| l.span_id).collect();
                plan.push((
                    i,
                    Signal::Logs,
                    ExportItem::Logs(l),
                    ids.into_iter().collect(),
                ));
            }
        }
        if plan.is_empty() {
            return;
        }
        let Some(d) = &self.durability else {
            for (i, _, item, _) in plan {
                self.exporters[i].accept(&item, None).await;
            }
            return;
        };
        let entry = d.outbox.register(shard, spans, logs, plan.len());
        for (i, signal, item, ids) in plan {
            let r = Receipt::new(
                (shard, i as u8),
                signal,
                ids,
                d.ledger.clone(),
                d.outbox.clone(),
                entry,
            );
            self.exporters[i].accept(&item, Some(r)).await;
        }
    }

    fn complete(&self, marker: crate::stitch::output::Marker) {
        let outbox = self
            .durability
            .as_ref()
            .map(|d| d.outbox.of_shard(marker.shard))
            .unwrap_or_default();
        let _ = marker.reply.try_send(Part {
            shard: marker.shard,
            outbox,
        });
    }

    /// Runs until the stitcher's senders are gone; then flushes the metric
    /// windows and closes the exporters (which drain their lanes).
    pub async fn run(mut self, mut rx: mpsc::Receiver<StitchOut>) {
        let mut tick = tokio::time::interval(self.metrics_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(StitchOut::Emission(em)) => self.accept(em).await,
                    Some(StitchOut::Checkpoint(m)) => self.complete(m),
                    None => break,
                },
                _ = tick.tick() => self.flush_metrics().await,
            }
        }
        self.flush_metrics().await;
        for e in self.exporters {
            e.close().await;
        }
    }

    async fn accept(&mut self, em: Emission) {
        let now = self.clock.now_ms();
        // A span an exporter had before a restart brings no samples again:
        // distributions and DogStatsD counts add up, they would double.
        {
            let delivered = self
                .durability
                .as_ref()
                .map(|d| d.delivered.read().unwrap_or_else(|e| e.into_inner()));
            let known = |owner: &u64| {
                delivered.as_ref().is_some_and(|d| {
                    d.iter()
                        .any(|((_, sig), ids)| *sig == Signal::Spans && ids.contains(owner))
                })
            };
            let owners = em
                .metric_owners
                .iter()
                .map(Some)
                .chain(std::iter::repeat(None));
            for (m, owner) in em.metrics.into_iter().zip(owners) {
                if owner.is_some_and(known) {
                    continue;
                }
                self.aggregator.add(m, now);
            }
        }
        self.dispatch(em.shard, Arc::new(em.spans), Arc::new(em.logs))
            .await;
    }
}
