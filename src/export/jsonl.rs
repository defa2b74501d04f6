//! `jsonl:PATH` (`jsonl:-` = stdout): one `{"span": S}` line per span, where
//! `S` has exactly the fields of a Datadog v0.4 JSON span; flushed per batch.
//! Runs on its own thread so slow disks or pipes never stall async workers;
//! its input is bounded, so a stuck output backs up to Firehose as 503s.

use crate::stitch::span::{Span, SpanLine};
use crate::telemetry::names;
use std::io::Write;
use tokio::sync::mpsc;

pub fn spawn_jsonl_exporter(
    mut rx: mpsc::Receiver<Vec<Span>>,
    mut outputs: Vec<Box<dyn Write + Send>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("stepstitch-jsonl".into())
        .spawn(move || {
            let mut line = Vec::with_capacity(4096);
            while let Some(batch) = rx.blocking_recv() {
                for out in outputs.iter_mut() {
                    if let Err(e) = write_batch(out, &batch, &mut line) {
                        metrics::counter!(names::EXPORT_ERRORS, "exporter" => "jsonl").increment(1);
                        tracing::error!(error = %e, spans = batch.len(), "jsonl export failed");
                    }
                }
                metrics::counter!(names::SPANS_EXPORTED, "exporter" => "jsonl")
                    .increment(batch.len() as u64);
            }
            for out in outputs.iter_mut() {
                let _ = out.flush();
            }
        })
}

fn write_batch(
    out: &mut Box<dyn Write + Send>,
    batch: &[Span],
    line: &mut Vec<u8>,
) -> std::io::Result<()> {
    for span in batch {
        line.clear();
        serde_json::to_writer(&mut *line, &SpanLine { span })?;
        line.push(b'\n');
        out.write_all(line)?;
    }
    out.flush()
}
