//! The fan-out between the stitcher and the exporters: spans and logs go to
//! every exporter as they come; metric samples are aggregated into 10-second
//! windows and flushed on a timer. Each exporter is awaited in turn, so the
//! slowest one sets the pace (nothing is dropped to let another run ahead)
//! and its backpressure reaches the stitcher, then the hand-off, then
//! Firehose as 503s.

use super::aggregate::Aggregator;
use super::item::ExportItem;
use super::Exporter;
use crate::clock::Clock;
use crate::stitch::output::Emission;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

pub struct Hub {
    pub exporters: Vec<Exporter>,
    pub aggregator: Aggregator,
    pub clock: Arc<dyn Clock>,
    pub metrics_interval: Duration,
}

impl Hub {
    async fn fan_out(&self, item: ExportItem) {
        if item.is_empty() {
            return;
        }
        for e in &self.exporters {
            e.accept(&item).await;
        }
    }

    async fn flush_metrics(&mut self) {
        let points = self.aggregator.flush(self.clock.now_ms());
        if !points.is_empty() {
            self.fan_out(ExportItem::Metrics(Arc::new(points))).await;
        }
    }

    /// Runs until the stitcher's senders are gone; then flushes the metric
    /// windows and closes the exporters (which drain their lanes).
    pub async fn run(mut self, mut rx: mpsc::Receiver<Emission>) {
        let mut tick = tokio::time::interval(self.metrics_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                em = rx.recv() => match em {
                    Some(em) => {
                        let now = self.clock.now_ms();
                        for m in em.metrics {
                            self.aggregator.add(m, now);
                        }
                        self.fan_out(ExportItem::Spans(Arc::new(em.spans))).await;
                        self.fan_out(ExportItem::Logs(Arc::new(em.logs))).await;
                    }
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
}
