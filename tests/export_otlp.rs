//! The `otlp` exporter through the real binary: to the OTLP/HTTP receiver
//! of Datadog's APM test agent (a real one, common::agent) for every
//! ALL-level fixture, and to a fake receiver (common::otlp) for what the
//! real one never answers: 503 with Retry-After, partial success, 500, an
//! outage long enough to fill the export buffer.

mod common;

use common::agent::{agent_bin, TestAgent};
use common::firehose::{bodies, resend_until_accepted, send_lines, send_once};
use common::fixtures::{self, Fixture};
use common::otlp::{self as otlp, Answer, FakeOtlp};
use common::Server;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};
use stepstitch::stitch::builder::{build_spans, SpanConfig};
use stepstitch::stitch::output::MetricKind;

fn all_level() -> Vec<Fixture> {
    fixtures::all()
        .into_iter()
        .filter(|f| f.meta["logging"]["level"] == "ALL")
        .collect()
}

/// Lines of the jsonl output with the given top-level key.
fn jsonl(path: &Path, key: &str) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get(key).cloned())
        .collect()
}

async fn wait_for<T>(what: &str, secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn as_f64(v: &Value) -> f64 {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_reaches_a_real_otlp_receiver_once_and_maps_back_to_its_jsonl_span() {
    let Some(bin) = agent_bin() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(&bin, &work.path().join("agent.log")).await;
    let out = work.path().join("out.jsonl");
    let fs = all_level();
    let mut want_spans = 0;
    let mut counts: BTreeMap<(String, Vec<String>), f64> = BTreeMap::new();
    let mut dists: BTreeMap<(String, Vec<String>), (u64, f64)> = BTreeMap::new();
    let mut gauges: HashSet<(String, Vec<String>)> = HashSet::new();
    for f in &fs {
        let b = f.build();
        want_spans += b.spans.len();
        for (_, m) in b.samples {
            let key = (m.name.to_owned(), m.tags.to_vec());
            match m.kind {
                MetricKind::Count => *counts.entry(key).or_default() += m.value,
                MetricKind::Gauge => {
                    gauges.insert(key);
                }
                MetricKind::Distribution => {
                    let d = dists.entry(key).or_default();
                    d.0 += 1;
                    d.1 += m.value;
                }
            }
        }
    }
    // Only OpenTelemetry's variable names the receiver.
    let export = format!("jsonl:{},otlp", out.display());
    let s = Server::start_with_env(
        &[
            "--finalize-grace",
            "1s",
            "--export-flush-interval",
            "200ms",
            "--metrics-flush-interval",
            "300ms",
        ],
        &[
            ("STEPSTITCH_EXPORT", &export),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &agent.otlp_url),
            ("STEPSTITCH_FORWARD_LOGS", "all"),
        ],
    );
    send_lines(&s, &fixtures::lines_of(&fs), 300, "otlp").await;

    let got = wait_for("every span at the receiver", 120, async || {
        let got = otlp::spans(&agent.otlp("traces").await);
        (got.len() >= want_spans && jsonl(&out, "span").len() >= want_spans).then_some(got)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_again = otlp::spans(&agent.otlp("traces").await);
    assert_eq!(got_again.len(), got.len(), "nothing arrives late, twice");
    let written: HashMap<u64, Value> = jsonl(&out, "span")
        .into_iter()
        .map(|v| (v["span_id"].as_u64().unwrap(), v))
        .collect();
    assert_eq!(written.len(), want_spans);
    let mut seen = HashSet::new();
    let tids: HashMap<u64, u64> = written
        .values()
        .filter_map(|v| {
            let tid = v["meta"]["_dd.p.tid"].as_str()?;
            Some((
                v["trace_id"].as_u64().unwrap(),
                u64::from_str_radix(tid, 16).unwrap(),
            ))
        })
        .collect();
    let (mut clients, mut errors, mut redrives) = (0, 0, 0);
    for r in &got {
        let id = r.span["span_id"].as_u64().unwrap();
        assert!(seen.insert(id), "span {id} arrived twice");
        let jl = written
            .get(&id)
            .unwrap_or_else(|| panic!("unexpected span {}", r.span));
        assert_eq!(
            &r.span, jl,
            "span {id} mapped back differs from its jsonl line"
        );
        // 128-bit id: the upper half is the root's _dd.p.tid.
        let trace = jl["trace_id"].as_u64().unwrap();
        if let Some(hi) = tids.get(&trace) {
            assert_eq!(r.trace_id_high, *hi, "span {id}");
        }
        let meta = &jl["meta"];
        assert_eq!(r.resource["service.name"], jl["service"]);
        assert_eq!(r.resource["cloud.provider"], "aws");
        assert_eq!(r.resource["cloud.region"], meta["region"]);
        assert_eq!(r.resource["cloud.account.id"], meta["account_id"]);
        assert_eq!(
            r.resource["aws.step_functions.state_machine.arn"],
            meta["step_function.state_machine_arn"]
        );
        if jl["parent_id"] == 0 {
            assert_eq!(r.kind, "SPAN_KIND_SERVER", "a root is SERVER");
        }
        if let Some(f) = meta["function_arn"].as_str() {
            clients += 1;
            assert_eq!(r.kind, "SPAN_KIND_CLIENT");
            let name = f.split(':').nth(6).unwrap();
            assert_eq!(r.semconv["faas.invoked_name"], name);
        } else {
            assert!(r.semconv.is_empty());
        }
        if jl["error"] == 1 {
            errors += 1;
            assert_eq!(
                r.status_message.as_deref(),
                meta["error.message"]
                    .as_str()
                    .or(Some(""))
                    .filter(|m| !m.is_empty())
            );
            if meta.get("error.type").is_some() || meta.get("error.message").is_some() {
                assert_eq!(r.events.len(), 1);
                assert_eq!(r.events[0]["name"], "exception");
            }
        } else {
            assert!(r.events.is_empty());
        }
        if meta.get("redrive").is_some() {
            redrives += 1;
            assert_eq!(
                r.links,
                vec![(r.trace_id_high, trace, jl["parent_id"].as_u64().unwrap())]
            );
        } else {
            assert!(r.links.is_empty());
        }
    }
    assert_eq!(seen.len(), want_spans);
    assert!(
        clients > 0 && errors > 0 && redrives > 0,
        "{clients} {errors} {redrives}"
    );

    // Logs: one record per forwarded event, on the span the jsonl line names.
    let written_logs = jsonl(&out, "log");
    let logs = wait_for("every log record", 60, async || {
        let l = otlp::logs(&agent.otlp("logs").await);
        (l.len() >= written_logs.len()).then_some(l)
    })
    .await;
    assert_eq!(logs.len(), written_logs.len());
    let by_span: HashMap<u64, &otlp::Received> = got
        .iter()
        .map(|r| (r.span["span_id"].as_u64().unwrap(), r))
        .collect();
    let mut want_logs: Vec<(u64, String, String)> = written_logs
        .iter()
        .map(|l| {
            (
                l["span_id"].as_u64().unwrap(),
                l["message"].as_str().unwrap().to_owned(),
                if l["status"] == "error" {
                    "ERROR"
                } else {
                    "INFO"
                }
                .to_owned(),
            )
        })
        .collect();
    let mut got_logs = Vec::new();
    for (hi, lo, span, severity, body, attrs) in &logs {
        let sp = by_span[span];
        assert_eq!(
            (*hi, *lo),
            (sp.trace_id_high, sp.span["trace_id"].as_u64().unwrap()),
            "a log joins its span's trace"
        );
        assert!(attrs.contains_key("statemachinearn"));
        got_logs.push((*span, body.clone(), severity.clone()));
    }
    want_logs.sort();
    got_logs.sort();
    assert_eq!(got_logs, want_logs);

    // Metrics: counts add up, every distribution value is in a histogram,
    // gauges exist for the same series.
    let points = wait_for("every metric", 60, async || {
        let p = otlp::points(&agent.otlp("metrics").await);
        let mut c: BTreeMap<(String, Vec<String>), f64> = BTreeMap::new();
        for (name, kind, tags, p) in &p {
            if kind == "sum" {
                let v = p.get("as_int").or(p.get("as_double")).unwrap();
                *c.entry((name.clone(), tags.clone())).or_default() += as_f64(v);
            }
        }
        (c == counts).then_some(p)
    })
    .await;
    let mut got_dists: BTreeMap<(String, Vec<String>), (u64, f64)> = BTreeMap::new();
    let mut got_gauges = HashSet::new();
    for (name, kind, tags, p) in points {
        match kind.as_str() {
            "sum" => {
                assert_eq!(p["temporality"], "AGGREGATION_TEMPORALITY_DELTA");
                assert_eq!(p["monotonic"], true);
            }
            "gauge" => {
                got_gauges.insert((name, tags));
            }
            _ => {
                assert_eq!(p["temporality"], "AGGREGATION_TEMPORALITY_DELTA");
                assert_eq!(p["unit"], "ns");
                let n = as_f64(&p["count"]) as u64;
                let in_buckets: u64 = p["positive"]["bucket_counts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| as_f64(c) as u64)
                    .sum::<u64>()
                    + p.get("zero_count").map_or(0, |z| as_f64(z) as u64);
                assert_eq!(in_buckets, n, "{p}");
                let d = got_dists.entry((name, tags)).or_default();
                d.0 += n;
                d.1 += as_f64(&p["sum"]);
            }
        }
    }
    assert_eq!(
        got_dists.keys().collect::<Vec<_>>(),
        dists.keys().collect::<Vec<_>>()
    );
    for (k, (n, sum)) in &dists {
        let (gn, gsum) = got_dists[k];
        assert_eq!(gn, *n, "{k:?}");
        assert!(
            (gsum - sum).abs() <= sum.abs() * 1e-9,
            "{k:?}: {gsum} vs {sum}"
        );
    }
    assert_eq!(got_gauges, gauges);
    assert!(
        s.logs().iter().all(|l| !l.contains("\"level\":\"ERROR\"")),
        "{:?}",
        s.logs()
    );
}

fn fake_server(fake: &FakeOtlp, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let url = fake.url();
    let mut all = vec![
        ("STEPSTITCH_EXPORT", "otlp"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", url.as_str()),
    ];
    all.extend_from_slice(env);
    let mut args = vec![
        "--finalize-grace",
        "1s",
        "--export-flush-interval",
        "200ms",
        "--metrics-flush-interval",
        "300ms",
        "--export-max-backoff",
        "2s",
    ];
    args.extend_from_slice(extra);
    Server::start_with_env(&args, &all)
}

fn partial_success(rejected: i64, message: &str) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceResponse,
    };
    use prost::Message;
    ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: rejected,
            error_message: message.into(),
        }),
    }
    .encode_to_vec()
}

#[tokio::test]
async fn retries_follow_otlp_rules_headers_are_sent_and_partial_success_is_counted() {
    let fake = FakeOtlp::start().await;
    fake.script(
        "/v1/traces",
        vec![
            Answer {
                status: 503,
                retry_after: Some("1".into()),
                body: Vec::new(),
            },
            Answer {
                status: 200,
                retry_after: None,
                body: partial_success(1, "1 span had an empty name"),
            },
        ],
    );
    // A 500 is final in OTLP (Datadog's intake retries it).
    fake.script(
        "/v1/logs",
        vec![Answer {
            status: 500,
            retry_after: None,
            body: b"store down".to_vec(),
        }],
    );
    let s = fake_server(
        &fake,
        &[],
        &[
            ("STEPSTITCH_FORWARD_LOGS", "all"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "x-scope-orgid=tenant-1,authorization=Bearer%20s3cret",
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "team=payments,cloud.region=nowhere",
            ),
        ],
    );
    let f = all_level()
        .into_iter()
        .find(|f| f.lines.len() >= 8)
        .unwrap();
    let n = build_spans(&f.events(), &SpanConfig::default(), None).len();
    send_lines(&s, &fixtures::lines_of(std::slice::from_ref(&f)), 1000, "r").await;
    wait_for("the retried trace request", 30, async || {
        (fake.requests("/v1/traces").len() >= 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let traces = fake.requests("/v1/traces");
    assert_eq!(traces.len(), 2, "one 503, one retry");
    assert!(
        traces[1].at - traces[0].at >= Duration::from_millis(950),
        "Retry-After honoured: {:?}",
        traces[1].at - traces[0].at
    );
    assert_eq!(traces[0].traces, traces[1].traces, "the same batch again");
    let spans: usize = traces[1]
        .traces
        .as_ref()
        .unwrap()
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    assert_eq!(spans, n);
    let h = &traces[1].headers;
    assert_eq!(h["x-scope-orgid"], "tenant-1");
    assert_eq!(h["authorization"], "Bearer s3cret");
    assert!(h.get("content-encoding").is_none(), "compression none");
    let resource = traces[1].traces.as_ref().unwrap().resource_spans[0]
        .resource
        .clone()
        .unwrap();
    let attr = |k: &str| {
        resource
            .attributes
            .iter()
            .find(|a| a.key == k)
            .map(|a| format!("{:?}", a.value))
    };
    assert!(attr("team").unwrap().contains("payments"));
    assert!(!attr("cloud.region").unwrap().contains("nowhere"));
    let m = |series: &str| {
        let s = &s;
        let series = series.to_owned();
        async move { s.metric(&series).await }
    };
    assert_eq!(
        m("stepstitch_export_items_dropped_total{exporter=\"otlp\",signal=\"traces\",reason=\"partial_success\"}").await,
        1.0
    );
    assert_eq!(
        m("stepstitch_export_requests_total{exporter=\"otlp\",signal=\"traces\",outcome=\"retry\"}").await,
        1.0
    );
    let logs = fake.requests("/v1/logs");
    assert_eq!(logs.len(), 1, "a 500 is not retried");
    assert!(m("stepstitch_export_items_dropped_total{exporter=\"otlp\",signal=\"logs\",reason=\"rejected\"}").await >= 1.0);
    let server_logs = s.logs().join("\n");
    assert!(
        server_logs.contains("store down"),
        "the receiver's answer is logged"
    );
    assert!(server_logs.contains("1 span had an empty name"));
    assert!(
        !server_logs.contains("s3cret"),
        "header values are never logged"
    );
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[tokio::test]
async fn a_receiver_outage_turns_into_503s_for_firehose_and_loses_nothing() {
    let fake = FakeOtlp::start().await;
    fake.set_down(true);
    let template = all_level()
        .into_iter()
        .max_by_key(|f| f.lines.len().min(60))
        .unwrap();
    let per_exec = build_spans(&template.events(), &SpanConfig::default(), None).len();
    let s = fake_server(
        &fake,
        &[
            "--export-buffer-bytes",
            "4MiB",
            "--queue-capacity-events",
            "20000",
            "--decode-queue-bytes",
            "1MiB",
            "--handoff-wait",
            "100ms",
        ],
        &[],
    );
    let pending = bodies(&template.copies(3000), 400, "outage");
    let refused = send_once(&s, pending).await;
    assert!(
        !refused.is_empty(),
        "a receiver that stays down must turn into 503s"
    );
    let rss = s.peak_rss();
    assert!(rss < 400 << 20, "memory bounded during the outage: {rss}");
    fake.set_down(false);
    resend_until_accepted(&s, refused).await;
    let total = 3000 * per_exec;
    let ids = wait_for("every span after recovery", 120, async || {
        let ids: Vec<Vec<u8>> = fake
            .requests("/v1/traces")
            .iter()
            .flat_map(|r| r.traces.clone().unwrap().resource_spans)
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .map(|s| s.span_id)
            .collect();
        (ids.len() >= total).then_some(ids)
    })
    .await;
    let unique: HashSet<&Vec<u8>> = ids.iter().collect();
    assert_eq!(unique.len(), total, "nothing lost");
    assert_eq!(ids.len(), total, "nothing twice");
    assert!(fake.inner.lock().unwrap().refused > 0);
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[test]
fn otlp_without_an_endpoint_with_grpc_or_without_a_logs_endpoint_for_forwarded_logs_stops_startup()
{
    let (status, out) = common::run_to_exit(&["serve", "--export", "otlp"], &[]);
    assert!(!status.success());
    assert!(out.contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{out}");
    let (status, out) = common::run_to_exit(
        &["serve", "--export", "otlp"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ],
    );
    assert!(!status.success());
    assert!(out.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{out}");
    // Forwarded logs need an exporter that takes them (or the store).
    let (status, out) = common::run_to_exit(
        &[
            "serve",
            "--export",
            "otlp",
            "--forward-logs",
            "errors",
            "--store",
            "off",
        ],
        &[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://127.0.0.1:4318/v1/traces",
        )],
    );
    assert!(!status.success());
    assert!(
        out.contains("STEPSTITCH_FORWARD_LOGS") && out.contains("logs endpoint"),
        "{out}"
    );
}
