//! Nothing acknowledged is lost, nothing is exported twice: crashes
//! (SIGKILL at random moments), a torn log tail, the disk bound, Firehose
//! retries before and after restarts. Real process, real disk, loopback.

mod common;

use common::firehose::{body, cwl_record, Post};
use common::fixtures::{self, Fixture};
use common::Server;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stepstitch::stitch::builder::{build_spans, SpanConfig};

/// Executions logged at level ALL: each ends with a terminal event.
fn complete_fixtures() -> Vec<Fixture> {
    fixtures::all()
        .into_iter()
        .filter(|f| f.meta["logging"]["level"] == "ALL")
        .collect()
}

fn expected_spans(fs: &[Fixture]) -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    for f in fs {
        let ev = f.events();
        for s in build_spans(&ev, &SpanConfig::default(), None) {
            out.insert(s.span_id, serde_json::to_value(&s).unwrap().to_string());
        }
    }
    out
}

/// Span lines written so far, in order (duplicates kept).
fn exported(path: &Path) -> Vec<(u64, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("span").cloned())
        .map(|s| (s["span_id"].as_u64().unwrap(), s.to_string()))
        .collect()
}

/// `extra` is flag/value pairs that replace the defaults.
fn start(data: &Path, out: &Path, extra: &[&str]) -> Server {
    start_with_otlp(data, out, extra, None)
}

/// Also exporting over OTLP to `otlp` (a receiver's base URL) when given.
fn start_with_otlp(data: &Path, out: &Path, extra: &[&str], otlp: Option<&str>) -> Server {
    let export = match otlp {
        Some(_) => format!("jsonl:{},otlp", out.display()),
        None => format!("jsonl:{}", out.display()),
    };
    let data = data.display().to_string();
    let mut flags: Vec<(&str, &str)> = vec![
        ("--data-dir", &data),
        ("--export", &export),
        ("--finalize-grace", "1s"),
        ("--snapshot-interval", "300ms"),
        ("--wal-segment-bytes", "64KiB"),
    ];
    for pair in extra.chunks(2) {
        match flags.iter_mut().find(|(f, _)| *f == pair[0]) {
            Some(slot) => slot.1 = pair[1],
            None => flags.push((pair[0], pair[1])),
        }
    }
    let args: Vec<&str> = flags.iter().flat_map(|(f, v)| [*f, *v]).collect();
    match otlp {
        Some(url) => Server::start_with_env(&args, &[("OTEL_EXPORTER_OTLP_ENDPOINT", url)]),
        None => Server::start(&args),
    }
}

/// The body for one request: the fixture's whole execution.
fn request(f: &Fixture, id: &str) -> Vec<u8> {
    body(id, &[cwl_record(&f.lines, f.state_machine())])
}

fn assert_exactly_once(out: &Path, want: &BTreeMap<u64, String>) {
    let got = exported(out);
    let mut seen = HashSet::new();
    for (id, text) in &got {
        assert!(seen.insert(*id), "span {id} exported twice");
        assert_eq!(
            want.get(id),
            Some(text),
            "span {id} differs or is unexpected"
        );
    }
    let missing: Vec<&u64> = want.keys().filter(|id| !seen.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} spans never exported, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

async fn wait_exported(out: &Path, n: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while exported(out).len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("spans.jsonl");
    // Exported to jsonl and, over OTLP, to a real receiver that outlives
    // the crashes (the test agent; skipped only where it is not installed).
    let agent = match common::agent::agent_bin() {
        Some(bin) => {
            Some(common::agent::TestAgent::start(&bin, &dir.path().join("agent.log")).await)
        }
        None => None,
    };
    let otlp_url = agent.as_ref().map(|a| a.otlp_url.clone());
    let start = |data: &Path, out: &Path, extra: &[&str]| {
        start_with_otlp(data, out, extra, otlp_url.as_deref())
    };
    let fs = complete_fixtures();
    let want = expected_spans(&fs);
    let bodies: Vec<(String, Vec<u8>)> = fs
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let id = format!("req-{i}");
            let b = request(f, &id);
            (id, b)
        })
        .collect();

    let server = Arc::new(Mutex::new(start(&data, &out, &[])));
    let url = Arc::new(Mutex::new(server.lock().unwrap().url("/firehose")));
    let acked = Arc::new(Mutex::new(HashSet::<usize>::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    // Senders act like Firehose: a request is retried until it gets a 200.
    let mut workers = Vec::new();
    for _ in 0..3 {
        let (url, acked, next, client) = (url.clone(), acked.clone(), next.clone(), client.clone());
        let bodies = bodies.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some((id, b)) = bodies.get(i) else { return };
                loop {
                    let u = url.lock().unwrap().clone();
                    let r = client
                        .post(&u)
                        .header("X-Amz-Firehose-Request-Id", id)
                        .header("Content-Type", "application/json")
                        .body(b.clone())
                        .send()
                        .await;
                    if matches!(&r, Ok(a) if a.status() == 200) {
                        acked.lock().unwrap().insert(i);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                // Paced so the kills land mid-stream.
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }));
    }
    // Kill and restart at pseudo-random moments while traffic flows.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rounds = 0;
    while next.load(std::sync::atomic::Ordering::SeqCst) < bodies.len() && rounds < 8 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(150 + seed % 700)).await;
        let mut s = server.lock().unwrap();
        s.kill9();
        *s = start(&data, &out, &[]);
        *url.lock().unwrap() = s.url("/firehose");
        rounds += 1;
    }
    for w in workers {
        w.await.unwrap();
    }
    assert!(
        rounds >= 3,
        "only {rounds} kills happened during the traffic"
    );
    assert_eq!(acked.lock().unwrap().len(), bodies.len());
    // One more crash after everything was acknowledged, before it was all exported.
    {
        let mut s = server.lock().unwrap();
        s.kill9();
        *s = start(&data, &out, &[]);
    }
    wait_exported(&out, want.len(), 60).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_exactly_once(&out, &want);
    if let Some(agent) = &agent {
        let deadline = Instant::now() + Duration::from_secs(60);
        let got = loop {
            let got = common::otlp::spans(&agent.otlp("traces").await);
            if got.len() >= want.len() || Instant::now() > deadline {
                break got;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let mut seen = HashSet::new();
        for r in &got {
            let id = r.span["span_id"].as_u64().unwrap();
            assert!(seen.insert(id), "span {id} exported twice over OTLP");
            assert_eq!(
                want.get(&id),
                Some(&r.span.to_string()),
                "OTLP span {id} differs or is unexpected"
            );
        }
        assert_eq!(seen.len(), want.len(), "spans never exported over OTLP");
        println!("otlp: {} spans, each once", seen.len());
    }
    // Metrics are never counted twice (a crash may lose the open window's).
    {
        let mut s = server.lock().unwrap();
        s.sigterm();
        assert!(s.wait_exit(Duration::from_secs(30)).success());
    }
    let exec_times: usize = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["metric"]["name"] == "aws.states.enhanced.execution.execution_time")
        .map(|v| v["metric"]["values"].as_array().map_or(0, Vec::len))
        .sum();
    let expected_times: usize = fs
        .iter()
        .map(|f| {
            f.build()
                .samples
                .iter()
                .filter(|(_, m)| m.name == "aws.states.enhanced.execution.execution_time")
                .count()
        })
        .sum();
    assert!(
        exec_times <= expected_times,
        "{exec_times} execution times, {expected_times} expected at most"
    );
    assert!(exec_times > 0);
}

#[tokio::test]
async fn a_retry_of_an_acknowledged_request_adds_nothing_before_or_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("spans.jsonl");
    let fs: Vec<Fixture> = complete_fixtures().into_iter().take(5).collect();
    let want = expected_spans(&fs);
    let mut s = start(&data, &out, &[]);
    for (i, f) in fs.iter().enumerate() {
        let id = format!("r{i}");
        assert_eq!(Post::new(&s, &id).send(request(f, &id)).await.status, 200);
    }
    wait_exported(&out, want.len(), 30).await;
    // The same requests again: same id, then a new id.
    for (i, f) in fs.iter().enumerate() {
        for id in [format!("r{i}"), format!("again-{i}")] {
            assert_eq!(Post::new(&s, &id).send(request(f, &id)).await.status, 200);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_exactly_once(&out, &want);
    // After a crash (snapshots included) and once more.
    s.kill9();
    let s = start(&data, &out, &[]);
    for (i, f) in fs.iter().enumerate() {
        let id = format!("after-{i}");
        assert_eq!(Post::new(&s, &id).send(request(f, &id)).await.status, 200);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_exactly_once(&out, &want);
}

fn segments(data: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_torn_log_tail_keeps_what_precedes_it_and_says_what_it_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("spans.jsonl");
    let fs: Vec<Fixture> = complete_fixtures().into_iter().take(4).collect();
    let want = expected_spans(&fs);
    // No snapshot during the test: everything is replayed from the log.
    let mut s = start(
        &data,
        &out,
        &["--snapshot-interval", "1h", "--finalize-grace", "1h"],
    );
    for (i, f) in fs.iter().enumerate() {
        let id = format!("t{i}");
        assert_eq!(Post::new(&s, &id).send(request(f, &id)).await.status, 200);
    }
    s.kill9();
    // A crash mid-write: half a record of garbage after the last good one.
    let last = segments(&data).pop().unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    std::io::Write::write_all(&mut f, &[0x31, 0x57, 0x53, 0x53, 200, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(f);
    let s = start(&data, &out, &[]);
    let logs = s.logs().join("\n");
    assert!(logs.contains("cut a torn or corrupt tail"), "{logs}");
    assert!(logs.contains("\"dropped_bytes\":11"), "{logs}");
    wait_exported(&out, want.len(), 30).await;
    assert_exactly_once(&out, &want);
    assert_eq!(s.metric("stepstitch_recovery_records_total").await, 4.0);
}

#[tokio::test]
async fn over_the_disk_bound_firehose_gets_503_until_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("spans.jsonl");
    let fs: Vec<Fixture> = complete_fixtures().into_iter().take(120).collect();
    let want = expected_spans(&fs);
    // A tiny bound and no snapshot for a while: the log fills up.
    let s = start(
        &data,
        &out,
        &[
            "--data-max-bytes",
            "64KiB",
            "--wal-segment-bytes",
            "8KiB",
            "--snapshot-interval",
            "3s",
        ],
    );
    let mut refused = 0;
    let mut pending: Vec<usize> = (0..fs.len()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} requests never accepted",
            pending.len()
        );
        let mut left = Vec::new();
        for i in pending {
            let id = format!("d{i}");
            let a = Post::new(&s, &id).send(request(&fs[i], &id)).await;
            match a.status {
                200 => {}
                503 => {
                    refused += 1;
                    assert!(
                        a.json["errorMessage"].as_str().unwrap().contains("durable"),
                        "{}",
                        a.json
                    );
                    left.push(i);
                }
                other => panic!("status {other}"),
            }
        }
        pending = left;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(refused > 0, "the bound was never reached");
    assert!(
        s.logs()
            .join("\n")
            .contains("the data directory is over its bound"),
        "a log line says why"
    );
    assert!(
        s.metric("stepstitch_wal_refused_total{reason=\"disk_bound\"}")
            .await
            > 0.0
    );
    assert!(s.metric("stepstitch_wal_bytes").await <= 64.0 * 1024.0);
    wait_exported(&out, want.len(), 30).await;
    assert_exactly_once(&out, &want);
}
