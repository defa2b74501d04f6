//! Stitching throughput: fixture executions' events → spans, in events/s.
//! `cargo bench --bench stitch`; `cargo test --benches` runs it once.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use stepstitch::events::{load_history, Event};
use stepstitch::stitch::builder::{build_spans, SpanConfig};

fn executions() -> Vec<Vec<Event>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/index.json")).unwrap())
            .unwrap();
    index
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let name = m["name"].as_str().unwrap();
            let text =
                std::fs::read_to_string(format!("{dir}/executions/{name}.history.json")).unwrap();
            load_history(&text, m["execution_arn"].as_str().unwrap()).unwrap()
        })
        .collect()
}

/// A Map with `n` iterations of three states each, for the fan-out curve.
fn wide_map(n: u64) -> Vec<Event> {
    use stepstitch::events::{Details, EventKind};
    let arn: std::sync::Arc<str> =
        "arn:aws:states:us-east-1:418295736021:execution:Wide:run".into();
    let mut v = Vec::new();
    let mut id = 0u64;
    let mut push = |prev: u64, kind: EventKind, details: Details| {
        id += 1;
        v.push(Event {
            execution_arn: arn.clone(),
            id,
            previous_event_id: prev,
            timestamp_ms: 1_780_000_000_000 + id as i64,
            redrive_count: 0,
            kind,
            details,
            source: None,
        });
        id
    };
    let entered = |name: &str| Details::StateEntered {
        name: name.into(),
        input: None,
    };
    let exited = |name: &str| Details::StateExited {
        name: name.into(),
        output: None,
        assigned_variables: vec![],
        assigned_variables_aws_truncated: false,
    };
    push(0, EventKind::ExecutionStarted, Details::None);
    let m = push(0, EventKind::MapStateEntered, entered("Fan"));
    let started = push(
        m,
        EventKind::MapStateStarted,
        Details::MapStateStarted { length: Some(n) },
    );
    let mut last = started;
    for i in 0..n {
        let it = push(
            started,
            EventKind::MapIterationStarted,
            Details::MapIteration {
                name: Some("Fan".into()),
                index: Some(i),
            },
        );
        let mut p = it;
        for s in ["A", "B", "C"] {
            let e = push(p, EventKind::PassStateEntered, entered(s));
            p = push(e, EventKind::PassStateExited, exited(s));
        }
        last = push(
            p,
            EventKind::MapIterationSucceeded,
            Details::MapIteration {
                name: Some("Fan".into()),
                index: Some(i),
            },
        );
    }
    let s = push(last, EventKind::MapStateSucceeded, Details::None);
    let x = push(s, EventKind::MapStateExited, exited("Fan"));
    push(x, EventKind::ExecutionSucceeded, Details::None);
    v
}

fn bench(c: &mut Criterion) {
    let execs = executions();
    let cfg = SpanConfig::default();
    let events: usize = execs.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("stitch/fixtures");
    g.throughput(Throughput::Elements(events as u64));
    g.bench_function("build_spans", |b| {
        b.iter(|| {
            execs
                .iter()
                .map(|e| build_spans(e, &cfg, None).len())
                .sum::<usize>()
        })
    });
    g.finish();
    for n in [10u64, 100, 1000] {
        let e = wide_map(n);
        let mut g = c.benchmark_group(format!("stitch/map_fanout_{n}"));
        g.throughput(Throughput::Elements(e.len() as u64));
        g.bench_function("build_spans", |b| {
            b.iter(|| build_spans(&e, &cfg, None).len())
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
