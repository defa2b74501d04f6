//! firehose-protocol.md §5.2 "Step Functions decoding", over a real socket.
//!
//! The strongest check: every fixture execution's log lines, sent through
//! Firehose in every record form, decode to exactly the events that the
//! same execution's `GetExecutionHistory` document loads to (two
//! independent wire shapes, one domain model).

mod common;

use common::firehose::{b64, body, cwl_record, envelope, Post};
use common::fixtures::{self, Fixture};
use common::Server;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The fields `includeExecutionData: false` removes from log lines.
const DATA_FIELDS: &[&str] = &[
    "input",
    "output",
    "parameters",
    "assigned_variables",
    "assigned_variables_aws_truncated",
];

fn strip_execution_data(v: &mut Value) {
    if let Some(d) = v.get_mut("details").and_then(Value::as_object_mut) {
        for f in DATA_FIELDS {
            d.remove(*f);
        }
    }
}

fn record_for(i: usize, f: &Fixture) -> String {
    match i % 3 {
        0 => cwl_record(&f.lines, f.state_machine()),
        1 => b64(&envelope(&f.lines, f.state_machine())),
        _ => b64(f.lines.join("\n").as_bytes()),
    }
}

#[tokio::test]
async fn every_fixture_decodes_to_its_history() {
    let s = Server::start(&[]);
    let all = fixtures::all();
    assert!(all.len() >= 480, "fixtures missing");
    let mut expected_events = 0;
    for (n, chunk) in all.chunks(25).enumerate() {
        let records: Vec<String> = chunk
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.lines.is_empty())
            .map(|(i, f)| record_for(n + i, f))
            .collect();
        expected_events += chunk.iter().map(|f| f.lines.len()).sum::<usize>();
        let id = format!("fixtures-{n}");
        let mut post = Post::new(&s, &id);
        if n % 2 == 1 {
            post = post.gzip();
        }
        let a = post.send(body(&id, &records)).await;
        assert_eq!(a.status, 200, "{:?}", a.json);
        a.assert_contract(&id);
    }
    let decoded = s.events(expected_events).await;
    assert_eq!(decoded.len(), expected_events);
    assert_eq!(
        s.metric("stepstitch_decode_failures_total{reason=\"json\"}")
            .await,
        0.0
    );

    let mut by_arn: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for mut e in decoded {
        e.as_object_mut().unwrap().remove("source");
        by_arn
            .entry(e["execution_arn"].as_str().unwrap().to_owned())
            .or_default()
            .push(e);
    }
    let mut types_seen = std::collections::BTreeSet::new();
    for f in &all {
        if f.lines.is_empty() {
            continue;
        }
        let got = by_arn
            .remove(f.execution_arn())
            .unwrap_or_else(|| panic!("{}: no events", f.name));
        let history = stepstitch::events::load_history(&f.history(), f.execution_arn()).unwrap();
        let mut want: BTreeMap<u64, Value> = history
            .iter()
            .map(|e| (e.id, serde_json::to_value(e).unwrap()))
            .collect();
        assert_eq!(got.len(), f.lines.len(), "{}", f.name);
        for mut g in got {
            let id = g["id"].as_u64().unwrap();
            let mut w = want
                .remove(&id)
                .unwrap_or_else(|| panic!("{}: event {id} not in history", f.name));
            if !f.include_execution_data() {
                strip_execution_data(&mut w);
                strip_execution_data(&mut g);
            }
            assert_eq!(g, w, "{}: event {id}", f.name);
            types_seen.insert(g["type"].as_str().unwrap().to_owned());
        }
    }
    assert!(
        by_arn.is_empty(),
        "events of unknown executions: {:?}",
        by_arn.keys()
    );
    assert!(types_seen.len() >= 50, "{} types", types_seen.len());
}

/// Lines for the event types no fixture contains, built from the API reference.
fn synthesized() -> Vec<(Value, Value)> {
    let arn = "arn:aws:states:us-east-1:418295736021:execution:Synth:0f7c";
    let line = |id: u64, ty: &str, details: Value| {
        json!({"details": details, "redrive_count": "0", "id": id.to_string(), "type": ty,
               "previous_event_id": (id - 1).to_string(), "event_timestamp": (1_780_000_000_000u64 + id).to_string(),
               "execution_arn": arn})
    };
    let fail = json!({"error": "States.Timeout", "cause": "{\"errorMessage\":\"boom\"}"});
    vec![
        (
            line(2, "ActivityFailed", fail.clone()),
            json!({"error": "States.Timeout", "cause": "{\"errorMessage\":\"boom\"}"}),
        ),
        (
            line(
                3,
                "ActivityScheduleFailed",
                json!({"error": "E", "cause": "C"}),
            ),
            json!({"error": "E", "cause": "C"}),
        ),
        (
            line(
                4,
                "LambdaFunctionScheduleFailed",
                json!({"error": "Lambda.Unknown", "cause": "x"}),
            ),
            json!({"error": "Lambda.Unknown", "cause": "x"}),
        ),
        (
            line(
                5,
                "LambdaFunctionStartFailed",
                json!({"error": "Lambda.ServiceException"}),
            ),
            json!({"error": "Lambda.ServiceException"}),
        ),
        (
            line(6, "MapIterationAborted", json!({"name": "Map", "index": 3})),
            json!({"name": "Map", "index": 3}),
        ),
        (line(7, "MapRunAborted", json!({})), Value::Null),
        (
            line(
                8,
                "MapRunRedriven",
                json!({"mapRunArn": "arn:aws:states:us-east-1:418295736021:mapRun:Synth/Map:r1", "redriveCount": "1"}),
            ),
            json!({"map_run_arn": "arn:aws:states:us-east-1:418295736021:mapRun:Synth/Map:r1", "redrive_count": 1}),
        ),
        (line(9, "MapStateAborted", json!({})), Value::Null),
        (line(10, "ParallelStateAborted", json!({})), Value::Null),
        (
            line(
                11,
                "TaskStartFailed",
                json!({"resourceType": "lambda", "resource": "invoke", "error": "Lambda.AccessDenied", "cause": "no"}),
            ),
            json!({"resource_type": "lambda", "resource": "invoke", "error": "Lambda.AccessDenied", "cause": "no"}),
        ),
        (
            line(
                12,
                "TaskSubmitFailed",
                json!({"resourceType": "batch", "resource": "submitJob.sync", "error": "Batch.Client", "cause": "bad"}),
            ),
            json!({"resource_type": "batch", "resource": "submitJob.sync", "error": "Batch.Client", "cause": "bad"}),
        ),
        (line(13, "WaitStateAborted", json!({})), Value::Null),
        // A type from the future passes through with the fields we know.
        (
            line(
                14,
                "QuantumStateEntangled",
                json!({"name": "Q", "error": "Spooky", "novel": {"x": 1}}),
            ),
            json!({"name": "Q", "error": "Spooky"}),
        ),
    ]
}

#[tokio::test]
async fn the_twelve_types_without_fixtures_and_unknown_types() {
    let s = Server::start(&[]);
    let cases = synthesized();
    let lines: Vec<String> = cases.iter().map(|(l, _)| l.to_string()).collect();
    let a = Post::new(&s, "synth")
        .send(body("synth", &[cwl_record(&lines, "Synth")]))
        .await;
    assert_eq!(a.status, 200);
    let events = s.events(cases.len()).await;
    assert_eq!(events.len(), cases.len());
    for (e, (line, want)) in events.iter().zip(&cases) {
        assert_eq!(e["type"], line["type"]);
        let got = e.get("details").cloned().unwrap_or(Value::Null);
        assert_eq!(&got, want, "{}", line["type"]);
    }
}

#[tokio::test]
async fn lenient_scalars_truncation_and_missing_fields() {
    let s = Server::start(&[]);
    let arn = "arn:aws:states:eu-west-1:418295736021:express:Lenient:5e1d:9a8b7c6d";
    let lines = vec![
        // Numbers as numbers, no redrive_count (pre-2023 lines), keys in 2022 order.
        json!({"id": 1, "type": "ExecutionStarted", "details": {"input": "{\"a\":1}", "inputDetails": {"truncated": false}},
               "previous_event_id": 0, "event_timestamp": 1780000000000u64, "execution_arn": arn}).to_string(),
        // AWS cut the input: not valid JSON, flagged.
        json!({"details": {"name": "Big", "input": "{\"items\":[1,2,", "inputDetails": {"truncated": true}},
               "id": "2", "type": "PassStateEntered", "previous_event_id": "0", "event_timestamp": "1780000000001",
               "execution_arn": arn, "redrive_count": "0"}).to_string(),
        // includeExecutionData=false: no input/output at all.
        json!({"details": {"name": "Big"}, "id": "3", "type": "PassStateExited", "previous_event_id": "2",
               "event_timestamp": "1780000000002", "execution_arn": arn}).to_string(),
        // ISO-8601 timestamp (LocalStack's form) and a redrive count.
        json!({"details": {}, "id": "4", "type": "ExecutionSucceeded", "previous_event_id": "3",
               "event_timestamp": "2026-05-28T20:26:40.003Z", "execution_arn": arn, "redrive_count": "2"}).to_string(),
        // Broken lines (no id; not an execution ARN): skipped and counted, the rest kept.
        json!({"type": "PassStateEntered", "event_timestamp": "1", "execution_arn": arn}).to_string(),
        json!({"id": "6", "type": "PassStateEntered", "event_timestamp": "1", "execution_arn": "arn:aws:lambda:x"}).to_string(),
    ];
    let a = Post::new(&s, "lenient")
        .send(body("lenient", &[cwl_record(&lines, "Lenient")]))
        .await;
    assert_eq!(a.status, 200);
    let e = s.events(4).await;
    assert_eq!(e.len(), 4);
    assert_eq!(e[0]["id"], 1);
    assert_eq!(e[0]["redrive_count"], 0);
    assert_eq!(e[1]["details"]["input"]["text"], "{\"items\":[1,2,");
    assert_eq!(e[1]["details"]["input"]["aws_truncated"], true);
    assert_eq!(e[2]["details"], json!({"name": "Big"}));
    assert_eq!(e[3]["timestamp_ms"], 1780000000003i64);
    assert_eq!(e[3]["redrive_count"], 2);
    // The events can be out before the decoder publishes its counters.
    s.settled().await;
    assert_eq!(
        s.metric("stepstitch_decode_failures_total{reason=\"invalid_event\"}")
            .await,
        2.0
    );
}

/// Decoding does not depend on order: lines of executions with Map, Distributed
/// Map, Parallel, retries and a redrive, shuffled, duplicated and spread over
/// many requests (sent newest first), yield the same events as in order.
#[tokio::test]
async fn out_of_order_and_duplicated_across_requests() {
    let s = Server::start(&[]);
    let picked: Vec<Fixture> = fixtures::all()
        .into_iter()
        .filter(|f| {
            let feats: Vec<&str> = f.meta["features"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            [
                "distributed_map",
                "parallel",
                "redrive",
                "retry_catch",
                "map_iteration_failure",
            ]
            .iter()
            .any(|x| feats.contains(x))
        })
        .take(30)
        .collect();
    assert!(picked.len() >= 20);
    // A deterministic shuffle (no RNG dependency): multiplicative stride.
    let mut lines: Vec<(String, String)> = picked
        .iter()
        .flat_map(|f| {
            f.lines
                .iter()
                .map(move |l| (f.state_machine().to_owned(), l.clone()))
        })
        .collect();
    let n = lines.len();
    let mut shuffled: Vec<(String, String)> =
        (0..n).map(|i| lines[(i * 7919) % n].clone()).collect();
    assert!(
        !n.is_multiple_of(7919),
        "the stride must be coprime with n (7919 is prime)"
    );
    shuffled.extend(lines.drain(..).step_by(5)); // duplicates
    let total = shuffled.len();
    let chunks: Vec<Vec<(String, String)>> = shuffled.chunks(17).map(|c| c.to_vec()).collect();
    for (i, chunk) in chunks.iter().enumerate().rev() {
        let recs: Vec<String> = chunk
            .iter()
            .map(|(sm, l)| cwl_record(std::slice::from_ref(l), sm))
            .collect();
        let id = format!("ooo-{i}");
        assert_eq!(Post::new(&s, &id).send(body(&id, &recs)).await.status, 200);
    }
    let decoded = s.events(total).await;
    let mut got: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for mut e in decoded {
        e.as_object_mut().unwrap().remove("source");
        got.insert(e.to_string());
    }
    let mut want = std::collections::BTreeSet::new();
    for f in &picked {
        let ids: std::collections::BTreeSet<u64> = f
            .lines
            .iter()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        for e in stepstitch::events::load_history(&f.history(), f.execution_arn()).unwrap() {
            if ids.contains(&e.id) {
                want.insert(serde_json::to_value(&e).unwrap().to_string());
            }
        }
    }
    assert_eq!(got, want);
}

#[test]
fn standard_and_express_arns() {
    use stepstitch::events::{ExecutionArn, WorkflowType};
    let mut kinds = std::collections::BTreeMap::new();
    for f in fixtures::all() {
        let a =
            ExecutionArn::parse(f.execution_arn()).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert_eq!(a.region, f.meta["region"].as_str().unwrap());
        assert_eq!(
            a.state_machine_arn(),
            f.meta["state_machine_arn"].as_str().unwrap()
        );
        let wt = match a.workflow_type {
            WorkflowType::Standard => "STANDARD",
            WorkflowType::Express => "EXPRESS",
        };
        assert_eq!(wt, f.meta["workflow_type"].as_str().unwrap(), "{}", f.name);
        *kinds.entry(wt).or_insert(0) += 1;
    }
    assert!(
        kinds["EXPRESS"] >= 40 && kinds["STANDARD"] >= 400,
        "{kinds:?}"
    );
}

#[test]
fn payload_validity_is_reported_on_demand() {
    let f = Fixture::load("redrive_task_failure");
    let events = stepstitch::events::load_history(&f.history(), f.execution_arn()).unwrap();
    let input = events[0].details.input().unwrap();
    assert!(input.is_valid_json());
    assert_eq!(input.json().unwrap()["merchantId"], "m-7781");
    let cut = stepstitch::events::Payload {
        text: "{\"a\":[1,".into(),
        aws_truncated: true,
    };
    assert!(!cut.is_valid_json() && cut.json().is_none());
}

/// Every fixture event written back as a log line (`event_line`: durable
/// snapshots and forwarded logs use it) reads back to an equal event, and
/// its details use AWS's member names.
#[test]
fn events_written_back_as_log_lines_read_back_equal() {
    use stepstitch::events::{parse_log_line, StringCache};
    use stepstitch::stitch::output::event_line;
    let mut n = 0;
    for f in fixtures::all() {
        let mut arns = StringCache::default();
        for l in &f.lines {
            let mut e = parse_log_line(l, &mut arns).unwrap();
            e.source = None;
            let line = event_line(&e);
            let back = parse_log_line(&line, &mut arns).unwrap();
            assert_eq!(back, e, "{line}");
            let v: Value = serde_json::from_str(&line).unwrap();
            let orig: Value = serde_json::from_str(l).unwrap();
            // Members we model come back under the names AWS used.
            for key in v["details"].as_object().unwrap().keys() {
                assert!(
                    orig["details"].get(key).is_some(),
                    "{key} not in the original line {l}"
                );
            }
            n += 1;
        }
    }
    assert!(n > 3000);
}

/// The backfill's converter: every fixture logged at level ALL with
/// execution data, its history written as log lines, gives exactly the
/// lines AWS wrote (byte for byte: key order, strings, sorted details).
#[test]
fn history_written_as_log_lines_equals_what_aws_logged() {
    let mut checked = 0;
    for f in fixtures::all() {
        if f.meta["logging"]["level"] != "ALL" || !f.include_execution_data() || f.lines.is_empty()
        {
            continue;
        }
        let lines =
            stepstitch::events::log_line::history_to_log_lines(&f.history(), f.execution_arn())
                .unwrap();
        assert_eq!(lines, f.lines, "{}", f.name);
        checked += 1;
    }
    assert!(
        checked > 300,
        "only {checked} fixtures at level ALL with data"
    );
}
