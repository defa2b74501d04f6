//! The store and the UI's JSON API against the real binary: every fixture
//! logged at level ALL goes in through Firehose; what the API answers is
//! checked against figures computed here from the fixtures' index and
//! histories, and against the jsonl exporter's spans.

mod common;

use common::firehose::send_lines;
use common::fixtures::{self, Fixture};
use common::Server;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const WINDOW: &str = "from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z";

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn all_level() -> Vec<Fixture> {
    fixtures::all()
        .into_iter()
        .filter(|f| f.meta["logging"]["level"] == "ALL")
        .collect()
}

async fn get(s: &Server, path: &str) -> (u16, Value) {
    let r = s.client.get(s.admin_url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Every stored execution (following the cursor).
async fn list(s: &Server, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (st, v) = get(
            s,
            &format!("/api/v1/executions?{query}&limit=100&cursor={cursor}"),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        out.extend(v["executions"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => return out,
        }
    }
}

/// Waits until the store holds `n` finished executions.
async fn stored(s: &Server, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = list(s, WINDOW).await;
        if all.len() >= n && all.iter().all(|e| e["status"] != "RUNNING") {
            return all;
        }
        if Instant::now() > deadline {
            panic!(
                "store holds {} of {n}; dropped {}, failed writes {}",
                all.len(),
                s.metric("stepstitch_store_dropped_total{signal=\"traces\"}")
                    .await,
                s.metric("stepstitch_store_writes_total{outcome=\"error\"}")
                    .await
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for the first failed store write; the store is then down.
async fn a_store_write_fails(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while s
        .metric("stepstitch_store_writes_total{outcome=\"error\"}")
        .await
        < 1.0
    {
        assert!(Instant::now() < deadline, "no failed store write seen");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(s.metric("stepstitch_store_up").await, 0.0);
}

fn nearest_rank(mut v: Vec<i64>, p: f64) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    v.sort();
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    Value::from(v[rank - 1])
}

fn start_server(dir: &std::path::Path, extra: &[&str]) -> Server {
    let out = dir.join("spans.jsonl");
    let export = format!("jsonl:{}", out.display());
    let data = dir.join("data");
    let mut args = vec![
        "--export",
        &export,
        "--data-dir",
        data.to_str().unwrap(),
        "--finalize-grace",
        "1s",
        "--forward-logs",
        "all",
        // The fixtures ran months ago: the default 14 days would prune them.
        "--store-retention",
        "3650d",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[tokio::test]
async fn api_figures_spans_and_maps_match_the_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), &[]);
    let fs = all_level();
    send_lines(&s, &fixtures::lines_of(&fs), 40, "ui").await;
    check_api(&s, &fs, &[dir.path().join("spans.jsonl")]).await;
}

/// Two replicas on one PostgreSQL store, each sent half the executions:
/// either one's API answers for all of them, exactly as one server would.
#[tokio::test]
async fn a_postgres_store_is_shared_by_two_replicas() {
    let Some(url) = common::postgres::fresh_database("ui_api") else {
        return;
    };
    let fs = all_level();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = ["--store", url.as_str()];
    let sa = start_server(a.path(), &store);
    let sb = start_server(b.path(), &store);
    let half = |r: usize| -> Vec<Fixture> { fs.iter().skip(r).step_by(2).cloned().collect() };
    let (half_a, half_b) = (half(0), half(1));
    send_lines(&sa, &fixtures::lines_of(&half_a), 40, "pg-a").await;
    send_lines(&sb, &fixtures::lines_of(&half_b), 40, "pg-b").await;
    let jsonl = [a.path().join("spans.jsonl"), b.path().join("spans.jsonl")];
    check_api(&sb, &fs, &jsonl).await;
    assert!(sa
        .logs()
        .iter()
        .any(|l| l.contains("execution store connected")));
    assert!(
        !sa.logs()
            .iter()
            .chain(sb.logs().iter())
            .any(|l| l.contains(&url)),
        "the store URL is never logged"
    );
}

/// Everything the API says about `fs` (sent to the server or to others
/// sharing its store) against the fixtures and the jsonl exports.
async fn check_api(s: &Server, fs: &[Fixture], jsonl: &[std::path::PathBuf]) {
    let stored = stored(s, fs.len()).await;
    assert_eq!(stored.len(), fs.len());

    // Per state machine: counts and nearest-rank percentiles from the
    // index (outcome, duration), not from anything the server computed.
    let mut by_sm: BTreeMap<String, Vec<&Fixture>> = BTreeMap::new();
    for f in fs {
        by_sm
            .entry(f.meta["state_machine_arn"].as_str().unwrap().to_owned())
            .or_default()
            .push(f);
    }
    let (st, v) = get(s, &format!("/api/v1/state-machines?{WINDOW}")).await;
    assert_eq!(st, 200);
    let got: BTreeMap<String, Value> = v["state_machines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["arn"].as_str().unwrap().to_owned(), m.clone()))
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        by_sm.keys().collect::<Vec<_>>()
    );
    for (arn, list) in &by_sm {
        let m = &got[arn];
        let count = |o: &str| list.iter().filter(|f| f.meta["outcome"] == o).count() as u64;
        assert_eq!(m["executions"], list.len() as u64, "{arn}");
        assert_eq!(m["succeeded"], count("SUCCEEDED"), "{arn}");
        assert_eq!(m["failed"], count("FAILED"), "{arn}");
        assert_eq!(m["timed_out"], count("TIMED_OUT"), "{arn}");
        assert_eq!(m["aborted"], count("ABORTED"), "{arn}");
        assert_eq!(m["running"], 0, "{arn}");
        let d: Vec<i64> = list
            .iter()
            .map(|f| f.meta["duration_ms"].as_i64().unwrap())
            .collect();
        for p in [50.0, 95.0, 99.0] {
            assert_eq!(
                m[format!("p{p}_ms")],
                nearest_rank(d.clone(), p),
                "{arn} p{p}"
            );
        }
    }

    // Each execution: its spans are exactly the jsonl exporter's.
    let jsonl: String = jsonl
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let mut exported: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in jsonl.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if let Some(span) = v.get("span") {
            let arn = span["meta"]["step_function.execution_arn"]
                .as_str()
                .unwrap()
                .to_owned();
            exported.entry(arn).or_default().insert(span.to_string());
        }
    }
    for f in fs {
        let arn = f.execution_arn();
        let (st, e) = get(s, &format!("/api/v1/executions/{}", enc(arn))).await;
        assert_eq!(st, 200, "{arn}");
        assert_eq!(e["status"], f.meta["outcome"], "{arn}");
        let spans: BTreeSet<String> = e["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(Value::to_string)
            .collect();
        assert_eq!(Some(&spans), exported.get(arn), "{}", f.name);
        assert!(
            !e["logs"].as_array().unwrap().is_empty(),
            "{}: log events",
            f.name
        );

        // The map: visited states are exactly the states entered.
        let history: Value = serde_json::from_str(&f.history()).unwrap();
        let entered: BTreeSet<String> = history["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"].as_str().unwrap().ends_with("StateEntered"))
            .map(|e| {
                e["stateEnteredEventDetails"]["name"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let (st, map) = get(s, &format!("/api/v1/executions/{}/map", enc(arn))).await;
        assert_eq!(st, 200);
        let visited: BTreeSet<String> = map["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["visited"] == true && n["type"] != "Branch")
            .map(|n| n["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(visited, entered, "{}", f.name);
    }

    // Filters and pages: FAILED only, newest first, every page disjoint.
    let failed = list(s, &format!("{WINDOW}&status=FAILED")).await;
    assert_eq!(
        failed.len(),
        fs.iter().filter(|f| f.meta["outcome"] == "FAILED").count()
    );
    assert!(failed.iter().all(|e| e["status"] == "FAILED"));
    let starts: Vec<&str> = stored
        .iter()
        .map(|e| e["start"].as_str().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let (st, v) = get(s, "/api/v1/executions?status=BROKEN").await;
    assert_eq!(st, 400);
    assert!(v["error"].as_str().unwrap().contains("FAILED"));
}

#[tokio::test]
async fn store_survives_restart_definitions_draw_the_map_and_tokens_guard_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::load("moto_parallel_branch_failure");
    let arn = f.execution_arn().to_owned();
    let sm = f.meta["state_machine_arn"].as_str().unwrap().to_owned();
    let token_args = ["--admin-listen", "0.0.0.0:0", "--api-tokens", "tok-1"];
    let before = {
        let mut s = start_server(dir.path(), &token_args);
        send_lines(&s, &fixtures::lines_of(std::slice::from_ref(&f)), 10, "r").await;
        // Off loopback every read needs the token.
        let (st, v) = get(&s, "/api/v1/state-machines").await;
        assert_eq!(st, 401, "{v}");
        let (st, _) = get(&s, "/").await;
        assert_eq!(st, 401);
        let authed = |path: &str| s.client.get(s.admin_url(path)).bearer_auth("tok-1").send();
        let deadline = Instant::now() + Duration::from_secs(30);
        let summary = loop {
            let r = authed(&format!("/api/v1/executions/{}", enc(&arn)))
                .await
                .unwrap();
            if r.status() == 200 {
                break r.json::<Value>().await.unwrap();
            }
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        s.sigterm();
        assert!(s.wait_exit(Duration::from_secs(30)).success());
        summary
    };
    let s = start_server(dir.path(), &[]);
    let (st, after) = get(&s, &format!("/api/v1/executions/{}", enc(&arn))).await;
    assert_eq!(st, 200);
    assert_eq!(
        after, before,
        "the store kept the execution across the restart"
    );

    // Mutations need a token even on loopback, and never cross-site.
    let definition = f.meta["definition"].to_string();
    let put = |s: &Server, token: Option<&str>, origin: Option<&str>| {
        let mut rq = s
            .client
            .put(s.admin_url(&format!("/api/v1/state-machines/{}/definition", enc(&sm))))
            .body(definition.clone());
        if let Some(t) = token {
            rq = rq.bearer_auth(t);
        }
        if let Some(o) = origin {
            rq = rq.header("origin", o);
        }
        rq.send()
    };
    assert_eq!(
        put(&s, Some("tok-1"), None).await.unwrap().status(),
        401,
        "no tokens configured on this start"
    );
    drop(s);
    let s = start_server(dir.path(), &["--api-tokens", "tok-1"]);
    assert_eq!(put(&s, None, None).await.unwrap().status(), 401);
    assert_eq!(
        put(&s, Some("tok-1"), Some("https://evil.example"))
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(put(&s, Some("tok-1"), None).await.unwrap().status(), 200);
    let (_, map) = get(&s, &format!("/api/v1/executions/{}/map", enc(&arn))).await;
    assert_eq!(map["source"], "definition");
    let def_states: BTreeSet<String> = f.meta["definition"]["States"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let top: BTreeSet<String> = map["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["parent"].is_null())
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(top, def_states);
    // The definition's states the failed run never reached are drawn too.
    let unvisited: Vec<&Value> = map["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["visited"] == false)
        .collect();
    assert!(unvisited.iter().any(|n| n["id"] == "Done"), "{map}");
    assert!(map["edges"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["taken"] == false));
    let retry = s
        .client
        .post(s.admin_url(&format!("/api/v1/executions/{}/retry", enc(&arn))))
        .header("origin", "https://evil.example")
        .bearer_auth("tok-1")
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 403);
}

#[tokio::test]
async fn a_locked_store_does_not_stop_ingestion() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), &[]);
    let fs: Vec<Fixture> = all_level().into_iter().take(30).collect();
    let (first, second) = fs.split_at(15);
    // Another process holds the database's write lock throughout.
    let db = rusqlite::Connection::open(dir.path().join("data/store.sqlite")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    send_lines(&s, &fixtures::lines_of(first), 20, "a").await;
    a_store_write_fails(&s).await;
    db.execute_batch("ROLLBACK").unwrap();
    send_lines(&s, &fixtures::lines_of(second), 20, "b").await;
    stored(&s, second.len()).await;
    // Every span was exported, stored or not.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jsonl = std::fs::read_to_string(dir.path().join("spans.jsonl")).unwrap_or_default();
        let arns: BTreeSet<String> = jsonl
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| {
                v["span"]["meta"]["step_function.execution_arn"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        if fs.iter().all(|f| arns.contains(f.execution_arn())) {
            break;
        }
        assert!(Instant::now() < deadline, "spans missing from the export");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(s.metric("stepstitch_store_up").await, 1.0);
}

/// A PostgreSQL store that is not there (here: its database does not exist
/// yet) pauses the store alone: Firehose is answered, every span exported,
/// the API says why; once the database exists the store fills again.
#[tokio::test]
async fn a_missing_postgres_store_does_not_stop_ingestion() {
    let Some(admin) = common::postgres::admin() else {
        return;
    };
    let name = format!("late_{}", std::process::id());
    let url = common::postgres::url_of(&admin, &name);
    let dir = tempfile::tempdir().unwrap();
    let s = start_server(dir.path(), &["--store", &url]);
    let fs: Vec<Fixture> = all_level().into_iter().take(20).collect();
    let (first, second) = fs.split_at(10);
    send_lines(&s, &fixtures::lines_of(first), 20, "a").await;
    a_store_write_fails(&s).await;
    let (st, v) = get(&s, &format!("/api/v1/executions?{WINDOW}")).await;
    assert_eq!(st, 503, "{v}");
    assert!(v["error"].as_str().unwrap().contains("database"), "{v}");
    common::postgres::create(&admin, &name);
    // Reads come back within the reconnect interval.
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&s, &format!("/api/v1/executions?{WINDOW}")).await.0 != 200 {
        assert!(Instant::now() < deadline, "the store never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    send_lines(&s, &fixtures::lines_of(second), 20, "b").await;
    stored(&s, second.len()).await;
    let jsonl = std::fs::read_to_string(dir.path().join("spans.jsonl")).unwrap();
    for f in &fs {
        assert!(jsonl.contains(f.execution_arn()), "{} exported", f.name);
    }
}
