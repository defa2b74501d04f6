//! The UI API's latency over a full store: fills SQLite with executions
//! (default 1,000,000 under `cargo bench`, 10,000 as a smoke run under
//! `cargo test --benches`; `STEPSTITCH_BENCH_EXECUTIONS` overrides), spread
//! over 14 days (the default retention) and 50 state machines, each with
//! an execution span and four state spans; then calls each route through
//! the real axum handlers and prints p50/p99 per route.
//!
//! `cargo bench --bench store`; with `STEPSTITCH_BENCH_STORE` set to the
//! URL of an empty PostgreSQL database, the same over PostgreSQL.

use axum::body::Body;
use axum::http::Request;
use std::sync::Arc;
use std::time::Instant;
use stepstitch::admin::access::Access;
use stepstitch::admin::api::{self, Api};
use stepstitch::clock::{Clock, SystemClock};
use stepstitch::firehose::auth::AccessKeys;
use stepstitch::store::chunks::ChunkWriter;
use stepstitch::store::digest::{ExecutionUpdate, RunEnd, WriteBatch};
use stepstitch::store::postgres::{PostgresStore, Target};
use stepstitch::store::sqlite::SqliteStore;
use stepstitch::store::{Status, Store};
use tower::ServiceExt;

const MACHINES: usize = 50;
const DAY_MS: i64 = 86_400_000;

fn status(i: usize) -> Status {
    match i % 100 {
        0..=6 => Status::Failed,
        7 => Status::TimedOut,
        8 => Status::Aborted,
        9 => Status::Running,
        _ => Status::Succeeded,
    }
}

fn sm(m: usize) -> String {
    format!("arn:aws:states:eu-west-1:123456789012:stateMachine:Machine{m:02}")
}

fn exec_arn(i: usize) -> String {
    format!(
        "arn:aws:states:eu-west-1:123456789012:execution:Machine{:02}:run-{i:08}",
        i % MACHINES
    )
}

/// A span as the jsonl exporter writes it (the meta the UI reads).
fn span(
    arn: &str,
    id: u64,
    parent: u64,
    name: &str,
    start_ms: i64,
    dur_ms: i64,
    err: bool,
) -> String {
    let op = if parent == 0 {
        "aws.stepfunctions"
    } else {
        "aws.stepfunctions.state"
    };
    format!(
        r#"{{"trace_id":{id},"span_id":{id},"parent_id":{parent},"name":"{op}","resource":"{name}","service":"svc","type":"serverless","start":{},"duration":{},"error":{},"meta":{{"step_function.execution_arn":"{arn}","step_function.state_type":"Task"}},"metrics":{{}}}}"#,
        start_ms * 1_000_000,
        dur_ms * 1_000_000,
        err as i32
    )
}

fn fill(store: &dyn Store, n: usize, now: i64) {
    let started = Instant::now();
    let per_batch = 5_000;
    let mut i = 0;
    while i < n {
        let mut b = WriteBatch::default();
        for k in i..(i + per_batch).min(n) {
            let arn = exec_arn(k);
            // Oldest first, evenly over 14 days.
            let start = now - 14 * DAY_MS + (k as i64 * 14 * DAY_MS) / n as i64;
            let st = status(k);
            let dur = 200 + (k as i64 * 7919) % 5_000;
            let root = k as u64 * 8 + 1;
            let mut spans = vec![span(&arn, root, 0, "Machine", start, dur, st.is_failure())];
            for (j, name) in ["Validate", "Charge", "Ship", "Notify"].iter().enumerate() {
                let s0 = start + j as i64 * dur / 4;
                let fail = st.is_failure() && j == 3;
                spans.push(span(
                    &arn,
                    root + 1 + j as u64,
                    root,
                    name,
                    s0,
                    dur / 4,
                    fail,
                ));
            }
            b.executions.push(ExecutionUpdate {
                arn: arn.clone(),
                name: format!("run-{k:08}"),
                state_machine_arn: sm(k % MACHINES),
                state_machine_name: format!("Machine{:02}", k % MACHINES),
                start_ms: start,
                end: (st != Status::Running).then(|| RunEnd {
                    redrive_count: 0,
                    status: st,
                    stop_ms: start + dur,
                    error: st.is_failure().then(|| "States.TaskFailed".into()),
                    cause: None,
                }),
                spans: {
                    let mut c = ChunkWriter::default();
                    for s in &spans {
                        c.push_raw(s);
                    }
                    c
                },
            });
        }
        store.write(&b).unwrap();
        i += per_batch;
        if i % 100_000 == 0 || i >= n {
            eprintln!(
                "filled {}/{n} executions ({:.0} s)",
                i.min(n),
                started.elapsed().as_secs_f64()
            );
        }
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank - 1]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("STEPSTITCH_BENCH_EXECUTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 1_000_000 } else { 10_000 });
    let rounds = if full { 30 } else { 3 };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.sqlite");
    let store: Arc<dyn Store> = match std::env::var("STEPSTITCH_BENCH_STORE") {
        Ok(url) => {
            let st = PostgresStore::new(Target::parse(&url).unwrap());
            st.connect().unwrap();
            Arc::new(st)
        }
        Err(_) => Arc::new(SqliteStore::open(&path).unwrap()),
    };
    let now = SystemClock.now_ms();
    fill(&*store, n, now);
    if let Ok(url) = std::env::var("STEPSTITCH_BENCH_STORE") {
        // What autovacuum does some time after a bulk load: statistics for
        // the planner, the visibility map for index-only scans.
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute("VACUUM ANALYZE").unwrap();
    }
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "store: {n} executions, {} spans, {:.0} MB on disk (SQLite; 0: PostgreSQL)",
        n * 5,
        bytes as f64 / 1e6
    );
    let api = Arc::new(Api {
        store: Some(store),
        access: Access {
            tokens: Arc::new(AccessKeys::new(&[], None).unwrap()),
            open_reads: true,
        },
        clock: Arc::new(SystemClock),
        datadog_app: None,
        aws: None,
    });
    let router = api::routes(api);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let week = api::rfc3339(now - 7 * DAY_MS);
    let newest = exec_arn(n - 1);
    let failed_newest = (0..n)
        .rev()
        .find(|k| status(*k) == Status::Failed)
        .map(exec_arn)
        .unwrap();
    let routes: Vec<(&str, String)> = vec![
        ("state machines, 24 h", "/api/v1/state-machines".into()),
        (
            "state machines, 7 d",
            format!("/api/v1/state-machines?from={week}"),
        ),
        (
            "executions, newest 50",
            "/api/v1/executions?limit=50".into(),
        ),
        (
            "executions, FAILED",
            "/api/v1/executions?status=FAILED&limit=50".into(),
        ),
        (
            "executions, one machine, FAILED",
            format!(
                "/api/v1/executions?state_machine={}&status=FAILED&limit=50",
                enc(&sm(3))
            ),
        ),
        (
            "execution + spans",
            format!("/api/v1/executions/{}", enc(&newest)),
        ),
        (
            "execution map",
            format!("/api/v1/executions/{}/map", enc(&failed_newest)),
        ),
        (
            "state machine map, 24 h",
            format!("/api/v1/state-machines/{}/map", enc(&sm(7))),
        ),
    ];
    println!(
        "{:<34} {:>10} {:>10} {:>8}",
        "route", "p50 ms", "p99 ms", "bytes"
    );
    for (label, uri) in routes {
        let mut times = Vec::with_capacity(rounds);
        let mut size = 0;
        for _ in 0..rounds {
            let req = Request::get(&uri).body(Body::empty()).unwrap();
            let t = Instant::now();
            let resp = rt.block_on(router.clone().oneshot(req)).unwrap();
            assert!(resp.status().is_success(), "{uri}: {}", resp.status());
            let body = rt
                .block_on(axum::body::to_bytes(resp.into_body(), usize::MAX))
                .unwrap();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            size = body.len();
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{label:<34} {:>10.1} {:>10.1} {size:>8}",
            pct(&times, 50.0),
            pct(&times, 99.0)
        );
    }
}
