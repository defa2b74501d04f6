//! The in-process path against its floor, over the same request bytes:
//! - `floor/decode`: base64 + gunzip + JSON parse into typed events (decoding
//!   alone, the practical limit);
//! - `e2e/in_process`: decode → write-ahead log (fsync'd, real disk) →
//!   stitcher shards → spans → protobuf encoding for the intake.
//!
//! It ends by printing e2e throughput as a share of the floor, measured in
//! the same run. `cargo bench --bench pipeline`.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stepstitch::decode::body::decode_body;
use stepstitch::decode::BodyLimits;
use stepstitch::decode::Limits;
use stepstitch::durable::record::RequestRecord;
use stepstitch::durable::wal::WalPayload;
use stepstitch::durable::wal::{Wal, WalConfig};
use stepstitch::events::StreamParams;
use stepstitch::export::datadog::traces::{self, IntakeTraces};
use stepstitch::export::delivery::Encoder;
use stepstitch::loadgen::traffic::{requests, Request, Shape};
use stepstitch::stitch::output::StitchOut;
use stepstitch::stitch::{Guard, StitchConfig, StitcherHandle};

fn limits() -> BodyLimits {
    BodyLimits {
        max_body_bytes: 80 << 20,
        decode: Limits::default(),
    }
}

fn floor(reqs: &[Request]) -> usize {
    reqs.iter()
        .map(|r| {
            decode_body(Bytes::from(r.body.clone()), limits())
                .unwrap()
                .events
                .len()
        })
        .sum()
}

struct E2e {
    rt: tokio::runtime::Runtime,
    wal: Wal,
    _dir: tempfile::TempDir,
}

impl E2e {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = rt
            .block_on(async {
                Wal::open(
                    WalConfig {
                        dir: dir.path().join("wal"),
                        segment_bytes: 64 << 20,
                        max_bytes: 64 << 30,
                        fsync: true,
                    },
                    1,
                )
            })
            .unwrap();
        Self { rt, wal, _dir: dir }
    }

    /// Runs every request through; returns the spans encoded.
    fn run(&self, reqs: &[Request]) -> usize {
        let wal = self.wal.clone();
        let n = self.rt.block_on(async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            let cfg = StitchConfig {
                shards: 1,
                finalize_grace: Duration::from_millis(1),
                tick: Duration::from_millis(10),
                ..StitchConfig::default()
            };
            let (stitcher, tasks) = StitcherHandle::spawn(cfg, tx);
            let encoder = tokio::spawn(async move {
                let intake = IntakeTraces {
                    url: "http://127.0.0.1:1/api/v0.2/traces".into(),
                    api_key: "k".into(),
                    env: "bench".into(),
                    app_version: "1".into(),
                    runtime_id: "r".into(),
                };
                let mut spans = 0;
                while let Some(out) = rx.recv().await {
                    if let StitchOut::Emission(em) = out {
                        let chunks: Vec<_> = traces::by_trace(&em.spans)
                            .into_iter()
                            .map(traces::encoded_chunk)
                            .collect();
                        if !chunks.is_empty() {
                            intake.encode(&chunks).unwrap();
                        }
                        spans += em.spans.len();
                    }
                }
                spans
            });
            let attrs = Arc::new(StreamParams::default());
            for r in reqs {
                let body = Bytes::from(r.body.clone());
                let rec = RequestRecord {
                    request_id: r.id.as_str().into(),
                    received_at_ms: 0,
                    source_arn: None,
                    attributes: b"[]".as_slice().into(),
                    body: body.as_ref().into(),
                }
                .encode_head();
                let payload = WalPayload {
                    head: rec,
                    body: body.clone(),
                };
                let pin = wal.append(payload).await.unwrap();
                let events = tokio::task::block_in_place(|| decode_body(body, limits()))
                    .unwrap()
                    .events;
                stitcher
                    .send(events, attrs.clone(), Some(Arc::new(pin) as Guard))
                    .await
                    .unwrap();
            }
            stitcher.stop().await.unwrap();
            drop(stitcher);
            for t in tasks {
                t.await.unwrap();
            }
            encoder.await.unwrap()
        });
        let _ = self.wal.reclaim(self.wal.pins().frontier());
        n
    }
}

fn bench(c: &mut Criterion) {
    // As the server does (src/main.rs).
    stepstitch::disable_huge_pages();
    let shape = Shape::default();
    let reqs = requests(&shape, 0, 100_000, 1_780_000_000_000);
    let events: usize = reqs.iter().map(|r| r.events).sum();
    let wire: usize = reqs.iter().map(|r| r.body.len()).sum();
    let e2e = E2e::new();
    assert_eq!(floor(&reqs), events);
    let spans_per_run = e2e.run(&reqs);
    assert!(spans_per_run > 0);

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(events as u64));
    g.sample_size(10);
    g.bench_function("floor/decode", |b| b.iter(|| floor(&reqs)));
    g.bench_function("e2e/in_process", |b| b.iter(|| e2e.run(&reqs)));
    g.finish();

    // The ratio, from the same bytes in the same run (median of a few).
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full { 5 } else { 1 };
    let median = |f: &dyn Fn() -> usize| {
        let mut t: Vec<f64> = (0..rounds)
            .map(|_| {
                let s = Instant::now();
                f();
                s.elapsed().as_secs_f64()
            })
            .collect();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    let tf = median(&|| floor(&reqs));
    let te = median(&|| e2e.run(&reqs));
    println!(
        "pipeline/summary: {} events in {} requests ({:.1} MB on the wire): floor {:.0} events/s ({:.1} MB/s), e2e {:.0} events/s ({:.1} MB/s); e2e = {:.0}% of the floor",
        events,
        reqs.len(),
        wire as f64 / 1e6,
        events as f64 / tf,
        wire as f64 / tf / 1e6,
        events as f64 / te,
        wire as f64 / te / 1e6,
        100.0 * tf / te
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);

// The server's allocator (src/main.rs), so the numbers are the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
