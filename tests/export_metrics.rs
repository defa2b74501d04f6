//! Enhanced metrics (trace-model.md §6) for every fixture execution logged at
//! level ALL, end to end: Firehose → server → `jsonl` metric lines. Every
//! expected value is read independently off the log events (counts of event
//! types, timestamps along `previous_event_id` chains), not from spans.

mod common;

use common::firehose::send_lines;
use common::fixtures::{self, Fixture};
use common::Server;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use stepstitch::events::{Event, EventKind};

const P: &str = "aws.states.enhanced.";

fn base_tags(f: &Fixture) -> Vec<String> {
    let sm_arn = f.meta["state_machine_arn"].as_str().unwrap();
    let parts: Vec<&str> = sm_arn.split(':').collect();
    let mut t = vec![
        format!("statemachinename:{}", f.state_machine()),
        format!("statemachinearn:{sm_arn}"),
        format!("region:{}", parts[3]),
        format!("account_id:{}", parts[4]),
        format!("service:{}", f.state_machine()),
        "env:test".to_string(),
        "version:1.0".to_string(),
        "team:core".to_string(),
    ];
    t.sort();
    t
}

fn with_state(base: &[String], name: &str, ty: &str) -> Vec<String> {
    let mut t = base.to_vec();
    t.push(format!("statename:{name}"));
    t.push(format!("statetype:{ty}"));
    t.sort();
    t
}

fn kind(e: &Event) -> &str {
    e.kind.as_str()
}

fn is_task_start(k: &str) -> bool {
    matches!(
        k,
        "TaskScheduled" | "LambdaFunctionScheduled" | "ActivityScheduled"
    )
}

fn task_outcome(k: &str) -> Option<&'static str> {
    match k {
        "TaskSucceeded" | "LambdaFunctionSucceeded" | "ActivitySucceeded" => {
            Some("task.execution.tasks_succeeded")
        }
        "TaskTimedOut" | "LambdaFunctionTimedOut" | "ActivityTimedOut" => {
            Some("task.execution.tasks_timed_out")
        }
        "TaskFailed"
        | "TaskStartFailed"
        | "TaskSubmitFailed"
        | "LambdaFunctionFailed"
        | "LambdaFunctionStartFailed"
        | "LambdaFunctionScheduleFailed"
        | "ActivityFailed"
        | "ActivityScheduleFailed" => Some("task.execution.tasks_failed"),
        _ => None,
    }
}

#[derive(Default)]
struct Expected {
    counts: BTreeMap<(String, Vec<String>), f64>,
    dists: BTreeMap<(String, Vec<String>), Vec<i64>>,
}

impl Expected {
    fn count(&mut self, name: &str, tags: &[String]) {
        *self
            .counts
            .entry((format!("{P}{name}"), tags.to_vec()))
            .or_default() += 1.0;
    }
    fn dist(&mut self, name: &str, tags: &[String], v: i64) {
        self.dists
            .entry((format!("{P}{name}"), tags.to_vec()))
            .or_default()
            .push(v);
    }
}

fn expect(f: &Fixture, exp: &mut Expected) {
    let ev = f.events();
    let by_id: HashMap<u64, &Event> = ev.iter().map(|e| (e.id, e)).collect();
    let base = base_tags(f);
    let ms = 1_000_000i64;
    let started = ev.iter().find(|e| e.kind == EventKind::ExecutionStarted);
    if started.is_some() {
        exp.count("execution.started", &base);
    }
    // Runs: start → first terminal, each redrive → the next terminal.
    let mut run_start = started.map(|e| e.timestamp_ms);
    for e in &ev {
        if e.kind == EventKind::ExecutionRedriven {
            run_start = Some(e.timestamp_ms);
        }
        if e.kind.is_execution_terminal() {
            let ok = e.kind == EventKind::ExecutionSucceeded;
            exp.count(
                if ok {
                    "execution.succeeded"
                } else {
                    "execution.failed"
                },
                &base,
            );
            if let Some(s) = run_start.take() {
                exp.dist("execution.execution_time", &base, (e.timestamp_ms - s) * ms);
            }
        }
    }
    for e in &ev {
        let k = kind(e);
        if let Some(ty) = k.strip_suffix("StateEntered") {
            let name = e.details.state_name().unwrap().to_owned();
            exp.count("state.invocation_count", &with_state(&base, &name, ty));
        }
        if is_task_start(k) {
            exp.count("task.execution.tasks_started", &base);
        }
        if let Some(outcome) = task_outcome(k) {
            exp.count(outcome, &base);
            // Walk back to the attempt's start; TaskStarted (if any) starts the clock.
            let mut cur = e.previous_event_id;
            let mut from = None;
            while let Some(p) = by_id.get(&cur) {
                let pk = kind(p);
                if matches!(
                    pk,
                    "TaskStarted" | "LambdaFunctionStarted" | "ActivityStarted"
                ) {
                    from = Some(p.timestamp_ms);
                }
                if is_task_start(pk) {
                    from = from.or(Some(p.timestamp_ms));
                    break;
                }
                cur = p.previous_event_id;
            }
            let from = from.expect("an ended attempt has its start event at level ALL");
            exp.dist(
                "task.execution.task_duration",
                &base,
                (e.timestamp_ms - from) * ms,
            );
        }
    }
}

/// `{"metric": M}` lines → counts (last line per name, tags and timestamp,
/// summed over timestamps), distribution values, gauge values, and types.
struct Got {
    counts: BTreeMap<(String, Vec<String>), f64>,
    dists: BTreeMap<(String, Vec<String>), Vec<i64>>,
    gauges: BTreeMap<(String, Vec<String>), Vec<f64>>,
    types: BTreeMap<String, String>,
}

fn read_metrics(path: &std::path::Path) -> Got {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut last: BTreeMap<(String, Vec<String>, i64), f64> = BTreeMap::new();
    let mut got = Got {
        counts: BTreeMap::new(),
        dists: BTreeMap::new(),
        gauges: BTreeMap::new(),
        types: BTreeMap::new(),
    };
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let Some(m) = v.get("metric") else { continue };
        let keys: Vec<&String> = m.as_object().unwrap().keys().collect();
        let name = m["name"].as_str().unwrap().to_owned();
        let ty = m["type"].as_str().unwrap().to_owned();
        let tags: Vec<String> = m["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect();
        let ts = m["timestamp"].as_i64().unwrap();
        assert_eq!(ts % 10, 0, "windows start on 10 s boundaries");
        if let Some(old) = got.types.insert(name.clone(), ty.clone()) {
            assert_eq!(old, ty, "{name} changed type");
        }
        match ty.as_str() {
            "count" => {
                assert_eq!(keys, ["name", "tags", "timestamp", "type", "value"]);
                last.insert((name, tags, ts), m["value"].as_f64().unwrap());
            }
            "gauge" => got
                .gauges
                .entry((name, tags))
                .or_default()
                .push(m["value"].as_f64().unwrap()),
            "distribution" => {
                assert_eq!(keys, ["name", "tags", "timestamp", "type", "values"]);
                got.dists.entry((name, tags)).or_default().extend(
                    m["values"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap() as i64),
                )
            }
            other => panic!("unknown metric type {other}"),
        }
    }
    for ((name, tags, _), v) in last {
        *got.counts.entry((name, tags)).or_default() += v;
    }
    for v in got.dists.values_mut() {
        v.sort();
    }
    got
}

#[tokio::test]
async fn enhanced_metrics_for_every_fixture_have_exact_names_types_values_and_tags() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let export = format!("jsonl:{}", out.display());
    let all: Vec<Fixture> = fixtures::all()
        .into_iter()
        .filter(|f| f.meta["logging"]["level"] == "ALL")
        .collect();
    let mut exp = Expected::default();
    let mut lines = Vec::new();
    for f in &all {
        expect(f, &mut exp);
        lines.extend(
            f.lines
                .iter()
                .map(|l| (f.state_machine().to_owned(), l.clone())),
        );
    }
    for v in exp.dists.values_mut() {
        v.sort();
    }
    let mut s = Server::start_with_env(
        &[
            "--export",
            &export,
            "--finalize-grace",
            "1s",
            "--metrics-flush-interval",
            "500ms",
        ],
        &[
            ("DD_ENV", "test"),
            ("DD_VERSION", "1.0"),
            ("DD_TAGS", "team:core"),
        ],
    );
    send_lines(&s, &lines, 200, "metrics").await;
    // Spans, then metrics: wait until every execution's trace is out, then
    // stop the server, which flushes the last windows.
    let n_exec = exp
        .counts
        .iter()
        .filter(|((n, _), _)| n.ends_with("execution.started"))
        .map(|(_, v)| *v as usize)
        .sum::<usize>();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let roots = std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains("\"parent_id\":")
                    && l.contains("\"name\":\"aws.stepfunctions\"")
                    && !l.contains("\"redrive\"")
            })
            .count();
        if roots >= n_exec {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.sigterm();
    assert!(s.wait_exit(Duration::from_secs(30)).success());
    let got = read_metrics(&out);

    // Types.
    let want_types = [
        ("execution.started", "count"),
        ("execution.succeeded", "count"),
        ("execution.failed", "count"),
        ("task.execution.tasks_started", "count"),
        ("task.execution.tasks_succeeded", "count"),
        ("task.execution.tasks_failed", "count"),
        ("state.invocation_count", "count"),
        ("state.succeeded", "count"),
        ("state.failed", "count"),
        ("execution.execution_time", "distribution"),
        ("task.execution.task_duration", "distribution"),
        ("state.run_duration", "gauge"),
        ("state.duration", "gauge"),
        ("state.retry_count", "gauge"),
    ];
    for (name, ty) in want_types {
        assert_eq!(
            got.types.get(&format!("{P}{name}")).map(String::as_str),
            Some(ty),
            "{name}"
        );
    }
    for name in got.types.keys() {
        assert!(
            want_types.iter().any(|(n, _)| format!("{P}{n}") == *name)
                || name == &format!("{P}task.execution.tasks_timed_out"),
            "unexpected metric {name}"
        );
    }
    // Counts and distributions, exactly (names, tags and values).
    let got_counts: BTreeMap<_, _> = got
        .counts
        .iter()
        .filter(|((n, _), _)| !n.ends_with("state.succeeded") && !n.ends_with("state.failed"))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    if got_counts != exp.counts {
        for (k, v) in &exp.counts {
            let g = got_counts.get(k);
            if g != Some(v) {
                panic!("{k:?}: expected {v}, got {g:?}");
            }
        }
        for (k, v) in &got_counts {
            if !exp.counts.contains_key(k) {
                panic!("unexpected {k:?} = {v}");
            }
        }
    }
    assert_eq!(got.dists, exp.dists);
    // Every state invocation ends as succeeded or failed (all these
    // executions are complete); state gauges exist for each state.
    for ((name, tags), n) in exp
        .counts
        .iter()
        .filter(|((n, _), _)| n.ends_with("state.invocation_count"))
    {
        let ok = got
            .counts
            .get(&(format!("{P}state.succeeded"), tags.clone()))
            .copied()
            .unwrap_or(0.0);
        let failed = got
            .counts
            .get(&(format!("{P}state.failed"), tags.clone()))
            .copied()
            .unwrap_or(0.0);
        assert_eq!(ok + failed, *n, "{name} {tags:?}");
        for g in ["state.duration", "state.run_duration", "state.retry_count"] {
            let vals = got.gauges.get(&(format!("{P}{g}"), tags.clone()));
            assert!(
                vals.is_some_and(|v| v.iter().all(|x| *x >= 0.0)),
                "{g} {tags:?}"
            );
        }
    }
    assert!(
        got.counts
            .iter()
            .any(|((n, _), v)| n.ends_with("state.failed") && *v > 0.0),
        "the fixtures include failing states"
    );
}
