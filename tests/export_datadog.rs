//! The agentless `datadog` exporter against the fake intake
//! (tests/common/intake.rs), end to end: Firehose → server → intake.

mod common;

use common::firehose::{bodies, resend_until_accepted, send_lines, send_once};
use common::fixtures::{self, lines_of, Fixture};
use common::intake::{FakeIntake, DISTRIBUTIONS, LOGS, SERIES, TRACES};
use common::Server;
use libdd_trace_protobuf::pb;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use stepstitch::stitch::builder::{build_spans, SpanConfig};
use stepstitch::stitch::span::Span;

const KEY: &str = "0123456789abcdef0123456789abcdef";

/// The Datadog-only keys the exporter adds (checked separately).
const DRESSING: &[&str] = &[
    "_sampling_priority_v1",
    "_dd.measured",
    "_top_level",
    "_dd.compute_stats",
];

/// A received span back in the exporter-neutral form, minus the dressing.
fn neutral(s: &pb::Span) -> (u64, String) {
    let meta: BTreeMap<&String, &String> = s
        .meta
        .iter()
        .filter(|(k, _)| !DRESSING.contains(&k.as_str()))
        .collect();
    let metrics: BTreeMap<&String, &f64> = s
        .metrics
        .iter()
        .filter(|(k, _)| !DRESSING.contains(&k.as_str()))
        .collect();
    let v = serde_json::json!({
        "trace_id": s.trace_id, "span_id": s.span_id, "parent_id": s.parent_id,
        "name": s.name, "resource": s.resource, "service": s.service, "type": s.r#type,
        "start": s.start, "duration": s.duration, "error": s.error,
        "meta": meta, "metrics": metrics,
    });
    (s.span_id, v.to_string())
}

fn expected(s: &Span) -> (u64, String) {
    (s.span_id, serde_json::to_value(s).unwrap().to_string())
}

fn server(intake: &FakeIntake, extra: &[&str], extra_env: &[(&str, &str)]) -> Server {
    let mut args = vec![
        "--export",
        "datadog",
        "--finalize-grace",
        "1s",
        "--export-flush-interval",
        "200ms",
        "--metrics-flush-interval",
        "300ms",
        "--export-max-backoff",
        "500ms",
    ];
    args.extend_from_slice(extra);
    let env_owned = intake.env();
    let mut env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("DD_API_KEY", KEY));
    env.extend_from_slice(extra_env);
    Server::start_with_env(&args, &env)
}

async fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn traces_metrics_and_logs_arrive_decoded_and_correlated() {
    let intake = FakeIntake::start(KEY).await;
    let fs: Vec<Fixture> = fixtures::all()
        .into_iter()
        .filter(|f| f.meta["logging"]["level"] == "ALL")
        .step_by(6)
        .collect();
    let mut want: HashMap<u64, String> = HashMap::new();
    let mut n_events = 0usize;
    let mut entered_names: HashMap<(u64, u64), String> = HashMap::new();
    for f in &fs {
        let ev = f.events();
        n_events += ev.len();
        for s in build_spans(&ev, &SpanConfig::default(), None) {
            if s.name == "aws.stepfunctions.state" && !s.meta.contains_key("step_function.attempt")
            {
                entered_names.insert((s.trace_id, s.span_id), s.resource.to_string());
            }
            let (id, text) = expected(&s);
            assert!(want.insert(id, text).is_none());
        }
    }
    let s = server(&intake, &["--forward-logs", "all"], &[]);
    send_lines(&s, &lines_of(&fs), 150, "dd").await;

    let spans = wait_for("every span", 60, || {
        let got = intake.received.lock().unwrap().spans();
        (got.len() >= want.len()).then_some(got)
    })
    .await;
    // Exactly the expected spans, once each, with the dressing on the right ones.
    let mut seen = HashSet::new();
    for (priority, sp) in &spans {
        assert_eq!(*priority, 1, "chunks are kept (auto keep)");
        assert!(seen.insert(sp.span_id), "span {} sent twice", sp.span_id);
        let (id, text) = neutral(sp);
        assert_eq!(want.get(&id), Some(&text), "span {id}");
        assert_eq!(sp.meta["_dd.compute_stats"], "1");
        assert_eq!(sp.metrics["_sampling_priority_v1"], 1.0);
        let entry = sp.name == "aws.stepfunctions" && !sp.meta.contains_key("redrive");
        assert_eq!(sp.metrics.contains_key("_top_level"), entry, "{}", sp.name);
        assert_eq!(
            sp.metrics.contains_key("_dd.measured"),
            sp.name == "aws.stepfunctions.state"
        );
    }
    assert_eq!(seen.len(), want.len());
    let payloads = intake.received.lock().unwrap().traces.clone();
    for p in &payloads {
        assert_eq!(p.tracer_payloads.len(), 1);
        assert!(p.tracer_payloads[0]
            .chunks
            .iter()
            .all(|c| !c.spans.is_empty()));
    }

    // Logs: one per event, each pointing at a received span of its trace.
    let by_id: HashMap<u64, &pb::Span> = spans.iter().map(|(_, s)| (s.span_id, s)).collect();
    let logs = wait_for("every log", 30, || {
        let l = intake.received.lock().unwrap().logs.clone();
        (l.len() >= n_events).then_some(l)
    })
    .await;
    assert_eq!(logs.len(), n_events);
    let mut entered_checked = 0;
    for l in &logs {
        assert_eq!(l["ddsource"], "stepfunction");
        let span_id: u64 = l["dd"]["span_id"].as_str().unwrap().parse().unwrap();
        let trace_id: u64 = l["dd"]["trace_id"].as_str().unwrap().parse().unwrap();
        let sp = by_id.get(&span_id).expect("a log points at a sent span");
        assert_eq!(sp.trace_id, trace_id);
        assert_eq!(l["service"], sp.service.as_str());
        let msg: Value = serde_json::from_str(l["message"].as_str().unwrap()).unwrap();
        let ty = msg["type"].as_str().unwrap();
        let error = ty.ends_with("Failed") || ty.ends_with("TimedOut") || ty.ends_with("Aborted");
        assert_eq!(l["status"], if error { "error" } else { "info" });
        if ty == "ExecutionStarted" {
            assert_eq!(sp.name, "aws.stepfunctions");
        }
        if ty.ends_with("StateEntered") {
            // The state's own span: same trace, named after the state.
            assert_eq!(
                entered_names.get(&(trace_id, span_id)),
                msg["details"]["name"].as_str().map(str::to_owned).as_ref(),
                "{msg}"
            );
            entered_checked += 1;
        }
        assert!(l["ddtags"].as_str().unwrap().contains("statemachinename:"));
    }
    assert!(entered_checked > 50);

    // Metrics: counts as type 1 with interval, gauges as 3, distributions.
    let n_exec = fs.len() as f64;
    wait_for("execution.started", 30, || {
        let r = intake.received.lock().unwrap();
        let mut last: HashMap<(String, i64), f64> = HashMap::new();
        for s in r
            .series
            .iter()
            .filter(|s| s["metric"] == "aws.states.enhanced.execution.started")
        {
            last.insert(
                (
                    s["tags"].to_string(),
                    s["points"][0]["timestamp"].as_i64().unwrap(),
                ),
                s["points"][0]["value"].as_f64().unwrap(),
            );
        }
        let exec_times: usize = r
            .distributions
            .iter()
            .filter(|d| d["metric"] == "aws.states.enhanced.execution.execution_time")
            .map(|d| d["points"][0][1].as_array().unwrap().len())
            .sum();
        (last.values().sum::<f64>() == n_exec && exec_times >= fs.len()).then_some(())
    })
    .await;
    let r = intake.received.lock().unwrap();
    assert!(r
        .series
        .iter()
        .any(|s| s["metric"] == "aws.states.enhanced.state.duration" && s["type"] == 3));
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    for path in [TRACES, SERIES, DISTRIBUTIONS, LOGS] {
        assert!(
            r.requests.iter().any(|q| q.path == path && q.status == 202),
            "{path}"
        );
    }
}

#[tokio::test]
async fn retries_split_on_413_and_drop_rejected_batches_with_a_count() {
    let intake = FakeIntake::start(KEY).await;
    {
        let mut s = intake.script.lock().unwrap();
        s.next.insert(
            TRACES,
            [(503, None), (500, None), (429, Some(1)), (408, None)].into(),
        );
        s.max_trace_chunks = Some(3);
        s.always.insert(SERIES, 400);
    }
    let fs: Vec<Fixture> = fixtures::all().into_iter().take(12).collect();
    let want: HashSet<u64> = fs
        .iter()
        .flat_map(|f| build_spans(&f.events(), &SpanConfig::default(), None))
        .map(|s| s.span_id)
        .collect();
    let s = server(&intake, &[], &[]);
    // One request: every execution final at once, so one batch of 12 traces.
    send_lines(&s, &lines_of(&fs), 100_000, "r").await;
    let spans = wait_for("every span", 60, || {
        let got = intake.received.lock().unwrap().spans();
        (got.len() >= want.len()).then_some(got)
    })
    .await;
    let ids: Vec<u64> = spans.iter().map(|(_, s)| s.span_id).collect();
    assert_eq!(ids.len(), want.len(), "no span twice");
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), want);
    let traces: Vec<(u16, usize)> = intake
        .received
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|q| q.path == TRACES)
        .map(|q| (q.status, q.items))
        .collect();
    assert_eq!(
        traces[..4].iter().map(|t| t.0).collect::<Vec<_>>(),
        [503, 500, 429, 408]
    );
    assert!(traces.iter().any(|t| t.0 == 413), "{traces:?}");
    assert!(traces
        .iter()
        .filter(|t| t.0 == 202)
        .all(|t| t.1 <= 3 && t.1 > 0));
    wait_for("the rejected series to be counted", 20, || {
        let logs = s.logs().join("\n");
        logs.contains("intake rejected a batch").then_some(())
    })
    .await;
    let dropped = s
        .metric(
            "stepstitch_export_items_dropped_total{exporter=\"datadog\",signal=\"series\",reason=\"rejected\"}",
        )
        .await;
    assert!(dropped > 0.0, "rejected series are counted");
    assert!(
        !s.logs().join("\n").contains(KEY),
        "the API key never appears in logs"
    );
    assert!(intake.violations().is_empty(), "{:?}", intake.violations());
}

#[tokio::test]
async fn an_intake_outage_turns_into_503s_with_bounded_memory_and_loses_nothing() {
    let intake = FakeIntake::start(KEY).await;
    intake.script.lock().unwrap().down = true;
    let template = fixtures::all()
        .into_iter()
        .filter(|f| f.meta["logging"]["level"] == "ALL")
        .max_by_key(|f| f.lines.len().min(60))
        .unwrap();
    let per_exec = build_spans(&template.events(), &SpanConfig::default(), None).len();
    let s = server(
        &intake,
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
    // Firehose's view: a request answered 503 is retried later, as is.
    let pending = bodies(&template.copies(3000), 400, "outage");
    let sent = pending.len();
    let refused = send_once(&s, pending).await;
    assert!(
        !refused.is_empty(),
        "a sink that stays down must turn into 503s"
    );
    let rss = s.peak_rss();
    println!(
        "outage: {} requests acknowledged, {} refused, peak RSS {} MiB",
        sent - refused.len(),
        refused.len(),
        rss >> 20
    );
    assert!(rss < 400 << 20, "memory bounded during the outage: {rss}");
    // The intake comes back; Firehose retries what was refused.
    intake.script.lock().unwrap().down = false;
    resend_until_accepted(&s, refused).await;
    let total = 3000 * per_exec;
    let spans = wait_for("every span after recovery", 120, || {
        let got = intake.received.lock().unwrap().spans();
        (got.len() >= total).then_some(got)
    })
    .await;
    let ids: HashSet<u64> = spans.iter().map(|(_, s)| s.span_id).collect();
    assert_eq!(ids.len(), total, "nothing lost");
    assert_eq!(spans.len(), total, "nothing twice");
    let r = intake.received.lock().unwrap();
    assert!(r.requests.iter().any(|q| q.status == 503));
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}

#[tokio::test]
async fn a_bad_api_key_is_rejected_not_retried_and_counted() {
    let intake = FakeIntake::start("another-key").await;
    let fs: Vec<Fixture> = fixtures::all().into_iter().take(3).collect();
    let s = server(&intake, &[], &[]);
    send_lines(&s, &lines_of(&fs), 1000, "k").await;
    wait_for("the 403 to be counted", 30, || {
        let r = intake.received.lock().unwrap();
        r.requests
            .iter()
            .any(|q| q.path == TRACES && q.status == 403)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let trace_requests = intake
        .received
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|q| q.path == TRACES)
        .count();
    assert_eq!(trace_requests, 1, "a 403 is not retried");
    let dropped = s
        .metric(
            "stepstitch_export_items_dropped_total{exporter=\"datadog\",signal=\"traces\",reason=\"rejected\"}",
        )
        .await;
    assert!(dropped >= 1.0);
}
