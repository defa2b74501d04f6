//! `stepstitch loadgen` against the real server: every request is
//! acknowledged, the report adds up, and the generated executions come out
//! as complete traces.

mod common;

use common::Server;
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_traffic_is_acknowledged_and_stitched() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spans.jsonl");
    let export = format!("jsonl:{}", out.display());
    let s = Server::start(&["--export", &export, "--finalize-grace", "500ms"]);
    let report = tokio::task::spawn_blocking({
        let target = s.url("/firehose");
        let pid = s.pid().to_string();
        move || {
            Command::new(common::bin())
                .args([
                    "loadgen", "--target", &target, "--events", "6000", "--states", "3",
                ])
                .args([
                    "--map-fanout",
                    "5",
                    "--events-per-record",
                    "40",
                    "--records-per-request",
                    "10",
                ])
                .args([
                    "--concurrency",
                    "2",
                    "--duration",
                    "60s",
                    "--json",
                    "--server-pid",
                    &pid,
                ])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let r: Value = serde_json::from_slice(&report.stdout).unwrap();
    // 3 tasks (5 events each) + a Map of 5 (4 + 4×5) + start and end = 41 events.
    let per_exec = 41;
    let execs = 6000usize.div_ceil(per_exec);
    assert_eq!(
        r["events_acked"].as_u64().unwrap() as usize,
        execs * per_exec,
        "{r}"
    );
    assert_eq!(r["failures"], 0);
    assert!(r["requests"].as_u64().unwrap() > 10);
    assert!(r["latency_ms_p99"].as_f64().unwrap() >= r["latency_ms_p50"].as_f64().unwrap());
    assert!(r["server_peak_rss_mib"].as_f64().unwrap() > 1.0);
    // Each execution: root, 3 tasks, the Map state, 5 iterations with a Pass each.
    let want = execs * (1 + 3 + 1 + 5 * 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let spans: Vec<Value> = std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v.get("span").cloned())
            .collect();
        if spans.len() >= want || Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(spans.len(), want);
    assert!(spans
        .iter()
        .all(|s| s["error"] == 0 && s["meta"].get("step_function.incomplete").is_none()));
}

#[test]
fn a_remote_target_is_refused_unless_allowed() {
    let out = Command::new(common::bin())
        .args([
            "loadgen",
            "--target",
            "https://example.com/firehose",
            "--events",
            "10",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not on loopback"));
}
