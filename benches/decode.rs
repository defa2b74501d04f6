//! Record decoding throughput: base64 + gunzip + JSON parse of CloudWatch
//! Logs envelopes built from the fixtures, in events/s and bytes/s.
//! `cargo bench --bench decode`; `cargo test --benches` runs it once.

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use flate2::{write::GzEncoder, Compression};
use std::io::Write;
use stepstitch::decode::{Limits, RequestDecoder};

fn fixture_lines() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/executions");
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".logs.jsonl"))
        .collect();
    names.sort();
    names
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Records of `per_record` log events each, gzip'd at CloudWatch's level 6.
fn records(lines: &[String], per_record: usize, gzip: bool) -> Vec<String> {
    lines
        .chunks(per_record)
        .map(|chunk| {
            let events: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| serde_json::json!({"id": i.to_string(), "timestamp": 1_780_000_000_000i64, "message": m}))
                .collect();
            let env = serde_json::to_vec(&serde_json::json!({
                "messageType": "DATA_MESSAGE", "owner": "418295736021",
                "logGroup": "/aws/vendedlogs/states/Bench-Logs", "logStream": "states/Bench/2026-11-24-10-00/1a2b3c4d",
                "subscriptionFilters": ["to-stepstitch"], "logEvents": events,
            }))
            .unwrap();
            let data = if gzip {
                let mut e = GzEncoder::new(Vec::new(), Compression::new(6));
                e.write_all(&env).unwrap();
                e.finish().unwrap()
            } else {
                env
            };
            base64::engine::general_purpose::STANDARD.encode(data)
        })
        .collect()
}

fn decode_all(records: &[String]) -> usize {
    let mut d = RequestDecoder::new(Limits::default());
    for r in records {
        d.decode_record(r);
    }
    d.finish().0.len()
}

fn bench(c: &mut Criterion) {
    let lines = fixture_lines();
    for (name, per_record, gzip) in [
        ("gzip_envelopes_x50", 50, true),
        ("plain_envelopes_x50", 50, false),
        ("gzip_envelopes_x1", 1, true),
    ] {
        let recs = records(&lines, per_record, gzip);
        let events = decode_all(&recs);
        assert_eq!(events, lines.len());
        let bytes: usize = recs.iter().map(String::len).sum();
        let mut g = c.benchmark_group(format!("decode/{name}"));
        g.throughput(Throughput::Elements(events as u64));
        g.bench_function("events", |b| b.iter(|| decode_all(&recs)));
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function("base64_bytes", |b| b.iter(|| decode_all(&recs)));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
