//! End to end with a real Step Functions interpreter: moto executes a state
//! machine (Pass, Choice, Wait, Parallel, Map, Lambda tasks, a failing
//! aws-sdk task with Retry and Catch, Fail/Succeed), writes CloudWatch log
//! lines, and its patched Firehose posts them to our endpoint
//! (the project's own peer in tests/peers/, see its README). The events we
//! decode must equal the executions' GetExecutionHistory.
//!
//! Needs the moto virtualenv that `scripts/test.sh` installs. Without it the
//! test is skipped locally and fails under CI (`CI` set).

mod common;

use common::moto::Moto;
use common::Server;
use serde_json::Value;
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_state_machine_through_firehose() {
    let work = tempfile::tempdir().unwrap();
    let Some(moto) = Moto::start(work.path()).await else {
        return;
    };
    let s = Server::start(&["--access-key", "secret-key"]);

    let out = work.path().join("histories.json");
    let sink = s.url("/firehose");
    moto.script(
        "scenario.py",
        &[&moto.url, &sink, "secret-key", out.to_str().unwrap()],
    )
    .await;

    let histories: BTreeMap<String, Vec<Value>> =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(histories.len(), 2, "runs ok and fail");
    let total: usize = histories.values().map(Vec::len).sum();
    assert!(total >= 100, "expected about 109 events, got {total}");

    let mut decoded: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for mut e in s.events(total).await {
        e.as_object_mut().unwrap().remove("source");
        let arn = e["execution_arn"].as_str().unwrap().to_owned();
        decoded.entry(arn).or_default().push(e);
    }
    assert_eq!(decoded.len(), 2, "{:?}", decoded.keys());
    for (run, history) in &histories {
        let (arn, got) = decoded
            .iter_mut()
            .find(|(arn, _)| arn.ends_with(&format!(":{run}")))
            .unwrap_or_else(|| panic!("no execution for run {run}"));
        got.sort_by_key(|e| e["id"].as_u64());
        let want = stepstitch::events::load_history(&serde_json::to_string(history).unwrap(), arn)
            .unwrap();
        assert_eq!(got.len(), want.len(), "{run}");
        for (g, w) in got.iter().zip(&want) {
            let w = serde_json::to_value(w).unwrap();
            assert_eq!(g, &w, "{run}: event {}", w["id"]);
        }
        let types: std::collections::BTreeSet<&str> =
            got.iter().map(|e| e["type"].as_str().unwrap()).collect();
        for t in [
            "ParallelStateStarted",
            "MapIterationStarted",
            "TaskFailed",
            "LambdaFunctionSucceeded",
            "ChoiceStateEntered",
        ] {
            assert!(types.contains(t), "{run}: no {t}");
        }
        let terminal = if run == "ok" {
            "ExecutionSucceeded"
        } else {
            "ExecutionFailed"
        };
        assert!(types.contains(terminal), "{run}: no {terminal}");
    }

    // One POST per log event, all authenticated with the stream's key.
    assert_eq!(
        s.metric(r#"stepstitch_firehose_requests_total{status="200"}"#)
            .await as usize,
        total
    );
    // The scenario's direct PutRecord of plain text is a bad record: refused so Firehose keeps it.
    assert_eq!(
        s.metric(r#"stepstitch_firehose_rejections_total{reason="all_records_invalid"}"#)
            .await,
        1.0
    );
    assert!(s.logs().iter().all(|l| !l.contains("secret-key")));
}
