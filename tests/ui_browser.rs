//! The web UI in headless Chromium (Debian's chromium and chromedriver,
//! installed by scripts/test.sh): a person's path from the serverless view
//! to a failed execution and one of its spans. With
//! `STEPSTITCH_SCREENSHOTS=DIR` it also saves each page (docs/ui/*.png).

mod common;

use common::browser::{driver_path, Browser};
use common::firehose::send_lines;
use common::fixtures::Fixture;
use common::Server;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The fixtures' lines moved so each execution started in the last hours
/// (the UI's windows are 1 h, 24 h, 7 d).
fn recent(fs: &[Fixture]) -> Vec<(String, String)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut out = Vec::new();
    for (k, f) in fs.iter().enumerate() {
        let mut lines: Vec<Value> = f
            .lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let ts = |l: &Value| {
            l["event_timestamp"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap()
        };
        let first = lines.iter().map(ts).min().unwrap();
        let start = now - 3 * 3600 * 1000 + k as i64 * 60_000;
        for l in &mut lines {
            l["event_timestamp"] = Value::from((ts(l) - first + start).to_string());
        }
        out.extend(
            lines
                .iter()
                .map(|l| (f.state_machine().to_owned(), l.to_string())),
        );
    }
    out
}

#[tokio::test]
async fn from_the_serverless_view_to_a_failed_span() {
    let Some(driver) = driver_path() else {
        assert!(std::env::var("CI").is_err(), "chromedriver missing in CI");
        eprintln!("skipped: no chromedriver (scripts/test.sh installs it)");
        return;
    };
    let shots = std::env::var("STEPSTITCH_SCREENSHOTS")
        .ok()
        .map(std::path::PathBuf::from);
    let s = Server::start(&[
        "--export",
        "jsonl:/dev/null",
        "--finalize-grace",
        "1s",
        "--forward-logs",
        "all",
    ]);
    let names = [
        "map_catch_error__map_catch_error_output_with_retry",
        "moto_map_nested_parallel",
        "moto_parallel_branch_failure",
        "redrive_task_failure",
        "moto_wait_seconds",
        "synth_map_sibling_failure_aborts_iterations",
    ];
    let fs: Vec<Fixture> = names.iter().map(|n| Fixture::load(n)).collect();
    send_lines(&s, &recent(&fs), 30, "ui").await;
    // Stored once the API lists them all.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = s.admin_json("/api/v1/executions?limit=100").await;
        if v["executions"].as_array().unwrap().len() == fs.len() {
            break;
        }
        assert!(Instant::now() < deadline, "not stored: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let b = Browser::start(&driver).await;
    b.goto(&s.admin_url("/")).await;
    b.until("the serverless view", "return document.body.dataset.page === 'serverless' && document.querySelectorAll('#state-machines tbody tr').length").await;
    let rows = b.eval("return [...document.querySelectorAll('#state-machines tbody tr')].map(r => r.innerText)").await;
    assert_eq!(rows.as_array().unwrap().len(), 6, "{rows}");
    let table = b.text("#state-machines").await;
    assert!(
        table.contains("MapCatchError") && table.contains("100.0 %"),
        "{table}"
    );
    // Sorted by failures by default: a failing state machine comes first.
    let first = b.text("#state-machines tbody tr").await;
    assert!(first.contains("100.0 %"), "{first}");
    // The filter narrows the list.
    b.eval("const i = document.querySelector('input[type=search]'); i.value = 'mapcatch'; i.dispatchEvent(new Event('input')); return 1").await;
    assert_eq!(
        b.eval("return document.querySelectorAll('#state-machines tbody tr').length")
            .await,
        1
    );
    if let Some(d) = &shots {
        b.eval("const i = document.querySelector('input[type=search]'); i.value = ''; i.dispatchEvent(new Event('input')); return 1").await;
        b.screenshot(&d.join("serverless.png")).await;
    }

    // To the state machine, its map and its executions; Failed filter.
    b.click("#state-machines tbody tr[data-arn*='MapCatchError'] a")
        .await;
    b.until("the state machine page", "return document.body.dataset.page === 'state-machines' && document.querySelector('#executions tbody tr')").await;
    b.until(
        "map edges",
        "return document.querySelectorAll('#map path[data-edge]').length",
    )
    .await;
    let map = b.text("#map").await;
    assert!(
        map.contains("ProcessItems") && map.contains("ProcessItem") && map.contains("Fallback"),
        "{map}"
    );
    b.click(".filters button[data-status=FAILED]").await;
    b.until("failed executions", "return location.search.includes('status=FAILED') && document.querySelector('#executions tbody tr .pill')").await;
    let pills = b.eval("return [...document.querySelectorAll('#executions tbody .pill')].map(p => p.innerText)").await;
    assert!(
        pills.as_array().unwrap().iter().all(|p| p == "FAILED"),
        "{pills}"
    );
    if let Some(d) = &shots {
        b.screenshot(&d.join("state-machine.png")).await;
    }

    // To the failed execution: status, error, path, waterfall.
    b.click("#executions tbody tr a").await;
    b.until("the execution page", "return document.body.dataset.page === 'executions' && document.querySelector('#waterfall')").await;
    let error = b.text("#execution-error").await;
    assert!(error.contains("States.QueryEvaluationError"), "{error}");
    let failed_nodes = b.eval("return [...document.querySelectorAll('#map .node.FAILED')].map(n => n.dataset.id).sort()").await;
    assert_eq!(
        failed_nodes,
        serde_json::json!(["Fallback", "ProcessItem", "ProcessItems"])
    );
    b.until(
        "the taken edge",
        "return document.querySelector('#map path[data-edge=\"ProcessItem>Fallback\"]')",
    )
    .await;
    let rows = b.eval("return [...document.querySelectorAll('#waterfall .wf-row')].map(r => r.dataset.resource)").await;
    assert_eq!(
        rows,
        serde_json::json!([
            "MapCatchError",
            "ProcessItems",
            "ProcessItems[0]",
            "ProcessItem",
            "ProcessItem",
            "Fallback"
        ])
    );
    assert!(b.text("#waterfall").await.contains("retry 1"));
    // Bars are drawn to scale: the execution's spans the whole track.
    let widths = b.eval("return [...document.querySelectorAll('#waterfall .wf-bar')].map(b => b.getBoundingClientRect().width)").await;
    let w: Vec<f64> = widths
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(w[0] > 300.0 && w[5] < w[0] / 10.0, "{w:?}");

    // A span's panel: its input, error and tags.
    b.click("#waterfall .wf-row[data-resource=Fallback]").await;
    b.until(
        "the span panel",
        "return !document.getElementById('panel').hidden",
    )
    .await;
    let panel = b.text("#panel").await;
    assert!(
        panel.contains("Fallback") && panel.contains("States.QueryEvaluationError"),
        "{panel}"
    );
    assert!(
        panel.contains("Input") && panel.contains("\"stateInput\": 1"),
        "pretty-printed input: {panel}"
    );
    assert!(panel.contains("step_function.state_type"));
    // Ids are u64: shown exactly, not rounded through a JS number.
    let enc = |arn: &str| {
        percent_encoding::utf8_percent_encode(arn, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let api = s
        .admin_json(&format!(
            "/api/v1/executions/{}",
            enc(fs[0].execution_arn())
        ))
        .await;
    let text = serde_json::to_string(&api).unwrap();
    let fallback: Value = api["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["resource"] == "Fallback")
        .unwrap()
        .clone();
    assert!(text.contains(&fallback["span_id"].to_string()));
    assert!(
        panel.contains(&format!("span {}", fallback["span_id"])),
        "{panel}"
    );
    assert!(!b.text("#main").await.contains("null"));
    let logs = b.text(".logs").await;
    assert!(logs.contains("ExecutionFailed"), "{logs}");
    if let Some(d) = &shots {
        b.screenshot(&d.join("execution.png")).await;
        // A Parallel inside a Map, for the map's nesting.
        b.goto(&s.admin_url(&format!("/executions/{}", enc(fs[1].execution_arn()))))
            .await;
        b.until("the nested execution", "return document.querySelector('#waterfall') && document.querySelectorAll('#map path[data-edge]').length").await;
        b.screenshot(&d.join("execution-nested.png")).await;
    }
    b.quit().await;
}
