//! Span encoding: the spans of generated executions as the agentless
//! intake's protobuf `AgentPayload` (gzip'd), as the Agent's msgpack v0.4,
//! and as an OTLP `ExportTraceServiceRequest` (gzip'd, and plain), in
//! spans/s and bytes/s. `cargo bench --bench encode`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use stepstitch::decode::{Limits, RequestDecoder};
use stepstitch::export::datadog::traces::{self, AgentTrace, AgentTraces, IntakeTraces};
use stepstitch::export::delivery::Encoder;
use stepstitch::export::otlp::resource::Resources;
use stepstitch::export::otlp::settings::Compression;
use stepstitch::export::otlp::{spans as otlp_spans, Out};
use stepstitch::loadgen::traffic::{execution, record, Shape};
use stepstitch::stitch::builder::{build_spans, SpanConfig};
use stepstitch::stitch::span::Span;

fn spans(executions: u64) -> Vec<Span> {
    let shape = Shape::default();
    (0..executions)
        .flat_map(|n| {
            let lines = execution(&shape, "us-east-1", "123456789012", n, 1_780_000_000_000);
            let mut d = RequestDecoder::new(Limits::default());
            d.decode_record(&record(&lines, "123456789012", 1_780_000_000_000));
            build_spans(&d.finish().0, &SpanConfig::default(), None)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let spans = spans(200);
    let intake = IntakeTraces {
        url: "http://127.0.0.1:1/api/v0.2/traces".into(),
        api_key: "k".into(),
        env: "bench".into(),
        app_version: "1".into(),
        runtime_id: "r".into(),
    };
    let agent = AgentTraces {
        url: "http://127.0.0.1:1/v0.4/traces".into(),
    };
    let protobuf = |spans: &[Span]| {
        let chunks: Vec<_> = traces::by_trace(spans)
            .into_iter()
            .map(traces::encoded_chunk)
            .collect();
        intake.encode(&chunks).unwrap().body.len()
    };
    let msgpack = |spans: &[Span]| {
        let items: Vec<AgentTrace> = traces::by_trace(spans)
            .into_iter()
            .map(|t| AgentTrace::new(t).unwrap())
            .collect();
        agent.encode(&items).unwrap().body.len()
    };
    // As the exporter does: each span encoded when handed over, the
    // request framed and compressed when the batch goes.
    let otlp = |compression| {
        let enc = otlp_spans::Traces {
            url: "http://127.0.0.1:1/v1/traces".into(),
            out: Out {
                headers: Default::default(),
                compression,
            },
            resources: Resources::default(),
        };
        move |spans: &[Span]| {
            let items = otlp_spans::encode_spans(spans);
            enc.encode(&items).unwrap().body.len()
        }
    };
    let otlp_gzip = otlp(Compression::Gzip);
    let otlp_plain = otlp(Compression::None);
    for (name, f) in [
        ("protobuf_gzip", &protobuf as &dyn Fn(&[Span]) -> usize),
        ("msgpack", &msgpack),
        ("otlp_gzip", &otlp_gzip),
        ("otlp", &otlp_plain),
    ] {
        let bytes = f(&spans);
        let mut g = c.benchmark_group(format!("encode/{name}"));
        g.throughput(Throughput::Elements(spans.len() as u64));
        g.bench_function("spans", |b| b.iter(|| f(&spans)));
        g.throughput(Throughput::Bytes(bytes as u64));
        g.bench_function("bytes_out", |b| b.iter(|| f(&spans)));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
