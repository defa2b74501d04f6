//! Fixture → Firehose requests → server → `jsonl` output.
//!
//! Every fixture execution's log lines are shuffled, partly duplicated and
//! split over many Firehose requests; the spans the server writes must equal
//! the spans built directly from the same log lines in order (and, for
//! executions logged at level ALL with data, from the API history, whose
//! trees `tests/stitch_model.rs` checks against the histories).

mod common;

use common::firehose::{body, cwl_record, Post};
use common::fixtures;
use common::Server;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use stepstitch::events::{parse_log_line, Event, StringCache};
use stepstitch::stitch::builder::{build_spans, SpanConfig};

/// One text per span regardless of key order.
fn canonical(v: &Value) -> String {
    serde_json::to_string(v).unwrap()
}

/// The span lines (metric lines are checked in tests/export_metrics.rs).
fn read_spans(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v.get("metric").is_none())
        .collect()
}

#[tokio::test]
async fn every_fixture_through_the_server_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spans.jsonl");
    let export = format!("jsonl:{}", out.display());
    // The grace covers the whole delivery (a few seconds), so every event is
    // in before its execution is final. Executions logged at level ERROR or
    // FATAL have no terminal event: they come out incomplete after the idle
    // timeout, the same as `build_spans` makes them from their lines.
    let s = Server::start(&[
        "--export",
        &export,
        "--finalize-grace",
        "8s",
        "--idle-timeout",
        "10s",
    ]);
    let started = Instant::now();

    let all = fixtures::all();
    let mut expected: BTreeSet<String> = BTreeSet::new();
    let mut lines: Vec<(String, String)> = Vec::new();
    for f in &all {
        let mut arns = StringCache::default();
        let events: Vec<Event> = f
            .lines
            .iter()
            .map(|l| parse_log_line(l, &mut arns).unwrap())
            .collect();
        for span in build_spans(&events, &SpanConfig::default(), None) {
            expected.insert(canonical(&serde_json::to_value(&span).unwrap()));
        }
        if f.include_execution_data() && f.meta["logging"]["level"] == "ALL" {
            let history =
                stepstitch::events::load_history(&f.history(), f.execution_arn()).unwrap();
            let from_history: BTreeSet<String> =
                build_spans(&history, &SpanConfig::default(), None)
                    .iter()
                    .map(|s| serde_json::to_string(s).unwrap())
                    .collect();
            let from_logs: BTreeSet<String> = build_spans(&events, &SpanConfig::default(), None)
                .iter()
                .map(|s| serde_json::to_string(s).unwrap())
                .collect();
            assert_eq!(from_logs, from_history, "{}", f.name);
        }
        lines.extend(
            f.lines
                .iter()
                .map(|l| (f.state_machine().to_owned(), l.clone())),
        );
    }
    // Shuffle deterministically, duplicate every ninth line, send in 40-line requests.
    let n = lines.len();
    let mut order: Vec<(String, String)> = (0..n).map(|i| lines[(i * 7907) % n].clone()).collect();
    assert!(!n.is_multiple_of(7907));
    order.extend(lines.iter().step_by(9).cloned());
    for (i, chunk) in order.chunks(40).enumerate() {
        let mut by_sm: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (sm, l) in chunk {
            by_sm.entry(sm).or_default().push(l.clone());
        }
        let records: Vec<String> = by_sm.iter().map(|(sm, ls)| cwl_record(ls, sm)).collect();
        let id = format!("golden-{i}");
        let a = Post::new(&s, &id).send(body(&id, &records)).await;
        assert_eq!(a.status, 200);
    }

    assert!(
        started.elapsed() < Duration::from_secs(7),
        "delivery outlasted the grace: {:?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let spans = read_spans(&out);
        if spans.len() >= expected.len() || Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Wait a little longer: nothing more (no duplicates) may follow.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got = if read_spans(&out).len() > got.len() {
        read_spans(&out)
    } else {
        got
    };
    let got_set: BTreeSet<String> = got
        .iter()
        .map(|line| {
            let keys: Vec<&String> = line.as_object().unwrap().keys().collect();
            assert_eq!(keys, vec!["span"], "a span line is {{\"span\": S}}");
            canonical(&line["span"])
        })
        .collect();
    assert_eq!(got.len(), got_set.len(), "a span was written twice");
    let missing: Vec<&String> = expected.difference(&got_set).take(3).collect();
    let extra: Vec<&String> = got_set.difference(&expected).take(3).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} spans expected, {} written\nmissing: {missing:#?}\nextra: {extra:#?}",
        expected.len(),
        got_set.len()
    );
    assert_eq!(
        s.metric("stepstitch_spans_emitted_total").await as usize,
        expected.len()
    );
    assert_eq!(
        s.metric(r#"stepstitch_spans_exported_total{exporter="jsonl"}"#)
            .await as usize,
        expected.len()
    );
    assert!(s.metric("stepstitch_stitch_duplicate_events").await >= (lines.len() / 9) as f64);
}

#[tokio::test]
async fn span_lines_have_exactly_the_datadog_v04_fields() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spans.jsonl");
    let export = format!("jsonl:{}", out.display());
    let s = Server::start(&[
        "--export",
        &export,
        "--finalize-grace",
        "100ms",
        "--dd-env",
        "prod",
        "--dd-tags",
        "team:core",
    ]);
    let f = fixtures::Fixture::load("redrive_task_failure");
    let a = Post::new(&s, "fields")
        .send(body("fields", &[cwl_record(&f.lines, f.state_machine())]))
        .await;
    assert_eq!(a.status, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while read_spans(&out).len() < 9 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for line in read_spans(&out) {
        let span = line["span"].as_object().unwrap();
        let keys: BTreeSet<&str> = span.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "trace_id",
                "span_id",
                "parent_id",
                "name",
                "resource",
                "service",
                "type",
                "start",
                "duration",
                "error",
                "meta",
                "metrics"
            ])
        );
        for k in ["trace_id", "span_id", "parent_id", "start", "duration"] {
            assert!(span[k].is_u64() || span[k].is_i64(), "{k} is an integer");
        }
        assert!(span["meta"]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_string));
        assert!(span["metrics"]
            .as_object()
            .unwrap()
            .values()
            .all(Value::is_number));
        assert_eq!(span["meta"]["env"], "prod");
        assert_eq!(span["meta"]["team"], "core");
    }
}

#[test]
fn an_agent_url_on_a_unix_socket_is_refused_naming_the_setting() {
    let (status, stderr) = common::run_to_exit(
        &["serve", "--export", "datadog-agent"],
        &[("DD_TRACE_AGENT_URL", "unix:///var/run/datadog/apm.socket")],
    );
    assert!(!status.success());
    assert!(stderr.contains("DD_TRACE_AGENT_URL"), "{stderr}");
}
