//! The AWS side against a real Step Functions API peer (moto, with the
//! redrive it lacks added in tests/peers/moto_sfn.py and checked against
//! botocore's service model): retry, redrive and stop from the API and the
//! browser, the map drawn from DescribeStateMachineForExecution, and the
//! backfill, whose traces must equal the live ones delivered through
//! moto's Firehose, and which adds nothing when run again.
//!
//! Needs the moto virtualenv (and chromedriver for the browser part) that
//! scripts/test.sh installs; skipped without them locally, failing in CI.

mod common;

use common::browser::{driver_path, Browser};
use common::moto::Moto;
use common::Server;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "act-token-123";
const KEY: &str = "firehose-key";

fn enc(arn: &str) -> String {
    percent_encoding::utf8_percent_encode(arn, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn post(
    s: &Server,
    arn: &str,
    action: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = s
        .client
        .post(s.admin_url(&format!("/api/v1/executions/{}/{action}", enc(arn))))
        .json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn act(s: &Server, arn: &str, action: &str, body: Value) -> (u16, Value) {
    post(
        s,
        arn,
        action,
        body,
        &[("authorization", &format!("Bearer {TOKEN}"))],
    )
    .await
}

/// Waits until the stored execution satisfies `ok`; returns it.
async fn stored(s: &Server, arn: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = s
            .client
            .get(s.admin_url(&format!("/api/v1/executions/{}", enc(arn))))
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{arn}: never {what}: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The spans of a jsonl export, by span id (the last version of each: a
/// redriven execution is emitted again when its redrive ends).
fn spans(path: &Path) -> BTreeMap<u64, Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        if let Some(span) = v.get("span") {
            out.insert(span["span_id"].as_u64().unwrap(), span.clone());
        }
    }
    out
}

/// The enhanced metrics of a jsonl export for `machine`, as Datadog's
/// intake would hold them per (name, tags, 10 s window): a count is re-sent
/// with the window's full total when it grows (the last one stands),
/// distributions' values add up. (Gauges keep the window's last value,
/// which depends on the order executions end in; they are left out.)
fn metrics(path: &Path, machine: &str) -> BTreeMap<String, Vec<i64>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let Some(m) = v.get("metric") else { continue };
        let tags = m["tags"].to_string();
        if !tags.contains(&format!("statemachinename:{machine}\"")) {
            continue;
        }
        let key = format!("{} {} {tags}", m["name"], m["timestamp"]);
        match m["type"].as_str().unwrap() {
            "count" => {
                out.insert(key, vec![m["value"].as_f64().unwrap() as i64]);
            }
            "distribution" => out.entry(key).or_default().extend(
                m["values"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as i64),
            ),
            _ => {}
        }
    }
    for values in out.values_mut() {
        values.sort();
    }
    out
}

fn of_machine(spans: &BTreeMap<u64, Value>, machine: &str) -> BTreeMap<u64, Value> {
    spans
        .iter()
        .filter(|(_, s)| {
            s["meta"]["step_function.execution_arn"]
                .as_str()
                .is_some_and(|a| a.contains(&format!(":{machine}:")))
        })
        .map(|(k, v)| (*k, v.clone()))
        .collect()
}

/// `stepstitch backfill ARGS` with the peer's AWS settings.
fn backfill(moto: &Moto, args: &[&str], cwd: &Path) -> (i32, String, String) {
    let mut cmd = Command::new(common::bin());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("STEPSTITCH_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .current_dir(cwd)
        .arg("backfill")
        .args(args)
        .envs(moto.aws_env())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits until a jsonl export holds `n` spans of `machine`.
async fn exported(path: &Path, machine: &str, n: usize) -> BTreeMap<u64, Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = of_machine(&spans(path), machine);
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{machine}: {} of {n} spans exported",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_redrive_stop_definitions_and_backfill_against_moto() {
    let work = tempfile::tempdir().unwrap();
    let Some(moto) = Moto::start(work.path()).await else {
        return;
    };
    let live_out = work.path().join("live.jsonl");
    let export = format!("jsonl:{}", live_out.display());
    let env: Vec<(&str, String)> = moto.aws_env();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Server::start_with_env(
        &[
            "--access-key",
            KEY,
            "--api-tokens",
            TOKEN,
            "--aws",
            "actions",
            "--export",
            &export,
            "--finalize-grace",
            "1s",
            // A running execution is stored (and stoppable in the UI) at
            // its first incremental emission.
            "--incremental-interval",
            "1s",
            "--metrics-flush-interval",
            "1s",
        ],
        &env_refs,
    );
    let setup = work.path().join("setup.json");
    let sink = s.url("/firehose");
    moto.script(
        "actions.py",
        &["setup", &moto.url, &sink, KEY, setup.to_str().unwrap()],
    )
    .await;
    let setup: Value = serde_json::from_str(&std::fs::read_to_string(&setup).unwrap()).unwrap();
    let failed = setup["failed"].as_str().unwrap().to_owned();
    let waiting = setup["waiting"].as_str().unwrap().to_owned();
    let machine = |k: &str| {
        setup[k]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned()
    };

    // The failure arrived through Firehose; the map is AWS's definition,
    // the branch never taken included.
    let e = stored(&s, &failed, "FAILED", |v| v["status"] == "FAILED").await;
    assert_eq!(e["actions"], json!(["redrive", "retry"]));
    let map = s
        .admin_json(&format!("/api/v1/executions/{}/map", enc(&failed)))
        .await;
    assert_eq!(map["source"], "definition", "{map}");
    let node = |id: &str| {
        map["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .unwrap_or_else(|| panic!("no node {id}: {map}"))
            .clone()
    };
    assert_eq!(node("Rare")["visited"], false);
    assert_eq!(node("Fetch")["status"], "FAILED");
    assert_eq!(node("Done")["visited"], false);
    assert_eq!(
        s.metric(
            r#"stepstitch_aws_calls_total{call="DescribeStateMachineForExecution",outcome="ok"}"#
        )
        .await,
        1.0
    );
    // Asked once per execution: a second view is served from the cache.
    s.admin_json(&format!("/api/v1/executions/{}/map", enc(&failed)))
        .await;
    assert_eq!(
        s.metric(
            r#"stepstitch_aws_calls_total{call="DescribeStateMachineForExecution",outcome="ok"}"#
        )
        .await,
        1.0
    );

    // Refused before AWS is asked: no token, another site, no such action.
    let (st, _) = post(&s, &failed, "redrive", json!({}), &[]).await;
    assert_eq!(st, 401);
    let (st, _) = post(
        &s,
        &failed,
        "redrive",
        json!({}),
        &[
            ("authorization", &format!("Bearer {TOKEN}")),
            ("origin", "http://evil.example"),
        ],
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = act(&s, &failed, "explode", json!({})).await;
    assert_eq!(st, 404);
    // AWS's refusals as messages a person can act on.
    let missing = failed.replace(":order-1", ":no-such-order");
    let (st, body) = act(&s, &missing, "retry", json!({})).await;
    assert_eq!(st, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("not found in AWS"),
        "{body}"
    );
    let (st, body) = act(&s, &waiting, "redrive", json!({})).await;
    assert_eq!(st, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("RUNNING and cannot be redriven"),
        "AWS's redriveStatusReason: {body}"
    );

    // Redrive while the bucket is still missing: it fails again, in the
    // same trace; the same request twice redrives once.
    let (st, first) = act(&s, &failed, "redrive", json!({"request_id": "click-1"})).await;
    assert_eq!(st, 200, "{first}");
    assert_eq!(
        first,
        json!({"execution_arn": failed, "action": "redrive", "result": "redriven", "redrive_count": 1})
    );
    let (st, again) = act(&s, &failed, "redrive", json!({"request_id": "click-1"})).await;
    assert_eq!((st, &again), (200, &first));
    assert_eq!(
        s.metric(r#"stepstitch_aws_actions_total{action="redrive",result="replayed"}"#)
            .await,
        1.0
    );
    stored(&s, &failed, "failed again after redrive 1", |v| {
        v["status"] == "FAILED" && v["redrive_count"] == 1
    })
    .await;

    moto.script(
        "actions.py",
        &["fix", &moto.url, setup["bucket"].as_str().unwrap()],
    )
    .await;

    // The same from the browser: a double click on Confirm redrives once.
    let browser = match driver_path() {
        Some(d) => Some(Browser::start(&d).await),
        None => {
            assert!(std::env::var("CI").is_err(), "chromedriver missing in CI");
            eprintln!("browser part skipped: no chromedriver");
            None
        }
    };
    let shots = std::env::var("STEPSTITCH_SCREENSHOTS")
        .ok()
        .map(std::path::PathBuf::from);
    if let Some(b) = &browser {
        b.goto(&s.admin_url(&format!("/executions/{}", enc(&failed))))
            .await;
        b.until(
            "the redrive button",
            "return document.querySelector('#action-redrive')",
        )
        .await;
        b.click("#action-redrive").await;
        b.until("the dialog", "return !document.getElementById('panel').hidden && document.querySelector('#action-confirm')").await;
        b.eval(&format!(
            "document.querySelector('#panel input[type=password]').value = '{TOKEN}'; return 1"
        ))
        .await;
        // Two submits in a row, as fast as a double click.
        b.eval("const f = document.querySelector('#panel form'); f.requestSubmit(); document.querySelector('#action-confirm').disabled = false; f.requestSubmit(); return 1").await;
        b.until(
            "the answer",
            "return document.querySelector('#action-result .notice')",
        )
        .await;
        let answer = b.text("#action-result").await;
        assert!(answer.contains("Redriven (redrive 2)"), "{answer}");
        if let Some(d) = &shots {
            b.screenshot(&d.join("action-redrive.png")).await;
        }
    } else {
        let (st, body) = act(&s, &failed, "redrive", json!({"request_id": "click-2"})).await;
        assert_eq!(st, 200, "{body}");
    }
    let out = moto
        .script("actions.py", &["describe", &moto.url, &failed])
        .await;
    let described: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(described["redriveCount"], 2, "{described}");
    let e = stored(&s, &failed, "SUCCEEDED after redrive 2", |v| {
        v["status"] == "SUCCEEDED" && v["redrive_count"] == 2
    })
    .await;
    assert_eq!(e["actions"], json!(["retry"]));

    // Retry: the same input, a name derived from the request; again with
    // the same request id is the same execution.
    let (st, retried) = act(&s, &failed, "retry", json!({"request_id": "r-1"})).await;
    assert_eq!(st, 200, "{retried}");
    assert_eq!(retried["result"], "started");
    assert_eq!(retried["source_execution_arn"], failed.as_str());
    let new_arn = retried["execution_arn"].as_str().unwrap().to_owned();
    assert!(new_arn.contains(":order-1-retry-"), "{new_arn}");
    let (_, again) = act(&s, &failed, "retry", json!({"request_id": "r-1"})).await;
    assert_eq!(again, retried);
    let out = moto
        .script("actions.py", &["wait", &moto.url, &new_arn, "SUCCEEDED"])
        .await;
    let described: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(described["input"].as_str().unwrap()).unwrap(),
        json!({"order": 1})
    );
    stored(&s, &new_arn, "the retry stored", |v| {
        v["status"] == "SUCCEEDED"
    })
    .await;

    // Stop, with the error and cause typed in the browser.
    let e = stored(&s, &waiting, "RUNNING", |v| v["status"] == "RUNNING").await;
    assert_eq!(e["actions"], json!(["stop"]));
    if let Some(b) = &browser {
        b.goto(&s.admin_url(&format!("/executions/{}", enc(&waiting))))
            .await;
        b.until(
            "the stop button",
            "return document.querySelector('#action-stop')",
        )
        .await;
        b.click("#action-stop").await;
        b.until(
            "the dialog",
            "return document.querySelector('#panel textarea')",
        )
        .await;
        b.eval("document.querySelector('#panel input[aria-label=error]').value = 'Manual'; document.querySelector('#panel textarea').value = 'stopped from the UI test'; return 1").await;
        b.click("#action-confirm").await;
        b.until(
            "the answer",
            "return document.querySelector('#action-result .notice')",
        )
        .await;
        assert!(b.text("#action-result").await.contains("Stopped."));
    } else {
        let (st, body) = act(
            &s,
            &waiting,
            "stop",
            json!({"error": "Manual", "cause": "stopped from the UI test"}),
        )
        .await;
        assert_eq!(st, 200, "{body}");
    }
    let e = stored(&s, &waiting, "ABORTED", |v| v["status"] == "ABORTED").await;
    assert_eq!(e["error"], "Manual");
    assert_eq!(e["cause"], "stopped from the UI test");
    if let Some(b) = browser {
        b.quit().await;
    }

    // Every action attempt is an audit line naming who (a fingerprint of
    // the token, never the token), what, which ARN and the result.
    let logs = s.logs();
    let audit: Vec<Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "stepstitch::audit")
        .collect();
    assert!(audit.len() >= 8, "{audit:?}");
    assert!(audit
        .iter()
        .all(|a| a["who"].as_str().unwrap().starts_with("token:")));
    assert!(audit.iter().any(|a| a["action"] == "stop"
        && a["execution_arn"] == waiting.as_str()
        && a["result"] == "stopped"));
    assert!(
        logs.iter().all(|l| !l.contains(TOKEN)),
        "the token is never logged"
    );

    // Backfill into a second server: the same spans as live delivery, for
    // every execution (the redriven one, the retry, the stopped one).
    let live_flaky = exported(&live_out, &machine("flaky"), 14).await;
    let live_waiter = exported(&live_out, &machine("waiter"), 3).await;
    let second_out = work.path().join("backfilled.jsonl");
    let export2 = format!("jsonl:{}", second_out.display());
    let s2 = Server::start(&[
        "--access-key",
        "other-key",
        "--export",
        &export2,
        "--finalize-grace",
        "1s",
        "--metrics-flush-interval",
        "1s",
    ]);
    let target = s2.url("/firehose");
    for key in ["flaky", "waiter"] {
        let (code, out, err) = backfill(
            &moto,
            &[
                "--state-machine",
                setup[key].as_str().unwrap(),
                "--since",
                "1h",
                "--target",
                &target,
                "--access-key",
                "other-key",
            ],
            work.path(),
        );
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(err.contains("executions, "), "progress shown: {err}");
    }
    let back_flaky = exported(&second_out, &machine("flaky"), live_flaky.len()).await;
    let back_waiter = exported(&second_out, &machine("waiter"), live_waiter.len()).await;
    assert_eq!(back_flaky, live_flaky);
    assert_eq!(back_waiter, live_waiter);
    // And the same enhanced metrics (once the hubs flushed them).
    let deadline = Instant::now() + Duration::from_secs(30);
    for m in [machine("flaky"), machine("waiter")] {
        loop {
            let (live, back) = (metrics(&live_out, &m), metrics(&second_out, &m));
            if !live.is_empty() && live == back {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{m}: metrics differ\nlive {live:#?}\nbackfilled {back:#?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // Again, into both servers: nothing new anywhere.
    let lines = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("{\"span\""))
            .count()
    };
    let (before_live, before_second) = (lines(&live_out), lines(&second_out));
    for (t, k) in [(target.as_str(), "other-key"), (sink.as_str(), KEY)] {
        let (code, out, err) = backfill(
            &moto,
            &[
                "--state-machine",
                setup["flaky"].as_str().unwrap(),
                "--target",
                t,
                "--access-key",
                k,
            ],
            work.path(),
        );
        assert_eq!(code, 0, "{out}\n{err}");
        assert!(out.contains("2 executions found, 2 sent"), "{out}");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        (lines(&live_out), lines(&second_out)),
        (before_live, before_second)
    );
    assert!(s.metric("stepstitch_backfill_skipped_events_total").await > 0.0);
    assert!(s2.metric("stepstitch_backfill_skipped_events_total").await > 0.0);

    // In this process: the serve settings' exporters get the same spans.
    let third_out = work.path().join("in-process.jsonl");
    let (code, out, err) = backfill(
        &moto,
        &[
            "--state-machine",
            setup["flaky"].as_str().unwrap(),
            "--status",
            "SUCCEEDED",
            "--export",
            &format!("jsonl:{}", third_out.display()),
            "--data-dir",
            work.path().join("in-process").to_str().unwrap(),
            "--finalize-grace",
            "1s",
        ],
        work.path(),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("2 executions found"), "{out}");
    assert_eq!(
        of_machine(&spans(&third_out), &machine("flaky")),
        live_flaky
    );

    // Express workflows have no history to read: said so, nothing sent.
    let (code, out, err) = backfill(
        &moto,
        &[
            "--state-machine",
            setup["express"].as_str().unwrap(),
            "--target",
            &target,
            "--access-key",
            "other-key",
        ],
        work.path(),
    );
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("Express state machines keep no execution history"),
        "{err}"
    );

    // In cluster mode a pipeline of its own would join the cluster: the
    // backfill asks for a replica to send to instead.
    let (code, out, err) = backfill(
        &moto,
        &[
            "--state-machine",
            setup["flaky"].as_str().unwrap(),
            "--cluster-nats-url",
            "nats://127.0.0.1:4222",
        ],
        work.path(),
    );
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(err.contains("--target"), "{err}");
}

#[test]
fn actions_without_api_tokens_stop_startup() {
    let (status, err) = common::run_to_exit(&["--aws", "actions"], &[("AWS_REGION", "us-east-1")]);
    assert!(!status.success());
    assert!(
        err.contains("STEPSTITCH_AWS") && err.contains("STEPSTITCH_API_TOKENS"),
        "{err}"
    );
}

#[test]
fn aws_calls_need_a_region() {
    let (status, err) = common::run_to_exit(
        &[
            "--aws",
            "read",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--store",
            "off",
        ],
        &[
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ],
    );
    assert!(!status.success());
    assert!(
        err.contains("STEPSTITCH_AWS") && err.contains("AWS_REGION"),
        "{err}"
    );
}
