//! Sends the test fixtures' CloudWatch log lines to a running stepstitch as
//! Firehose requests, so the web UI has real-shaped data:
//! `cargo run --example send_fixtures -- [URL] [--as-recorded]`.
//!
//! By default each execution is moved in time so that they spread over
//! the last six hours (the UI's default window is 24 h); `--as-recorded`
//! keeps the recorded timestamps.
use base64::Engine;
use flate2::{write::GzEncoder, Compression};
use serde_json::{json, Value};
use std::io::Write;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8080/firehose".into());
    let shift = !args.iter().any(|a| a == "--as-recorded");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let index: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/index.json")).unwrap())
            .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let client = reqwest::Client::new();
    let total = index.len();
    let (mut sent, mut lines_sent) = (0, 0);
    for (k, meta) in index.iter().enumerate() {
        let name = meta["name"].as_str().unwrap();
        let text = std::fs::read_to_string(format!("{dir}/executions/{name}.logs.jsonl")).unwrap();
        let mut lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.is_empty() {
            continue;
        }
        let ts = |l: &Value| -> i64 {
            l["event_timestamp"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        };
        if shift {
            let first = lines.iter().map(ts).min().unwrap_or(0);
            let start = now - 6 * 3600 * 1000 + (k as i64 * 6 * 3600 * 1000) / total as i64;
            for l in &mut lines {
                let t = ts(l) - first + start;
                l["event_timestamp"] = json!(t.to_string());
            }
        }
        let sm = meta["state_machine_arn"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap();
        let events: Vec<Value> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| json!({"id": format!("{:056}", i), "timestamp": ts(l), "message": l.to_string()}))
            .collect();
        let envelope = json!({
            "messageType": "DATA_MESSAGE", "owner": "123456789012",
            "logGroup": format!("/aws/vendedlogs/states/{sm}-Logs"),
            "logStream": format!("states/{sm}/stream"), "subscriptionFilters": ["stepstitch"],
            "logEvents": events,
        });
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(envelope.to_string().as_bytes()).unwrap();
        let data = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
        let body = json!({"requestId": format!("fixture-{k}"), "timestamp": now, "records": [{"data": data}]});
        let r = client
            .post(&url)
            .header("content-type", "application/json")
            .header("x-amz-firehose-request-id", format!("fixture-{k}"))
            .body(body.to_string())
            .send()
            .await
            .expect("stepstitch is not answering: start it with `cargo run --release`");
        assert!(r.status().is_success(), "{name}: {}", r.status());
        sent += 1;
        lines_sent += lines.len();
        if sent % 50 == 0 || k + 1 == total {
            eprintln!("sent {sent}/{total} executions ({lines_sent} log lines)");
        }
    }
    eprintln!("done: open http://127.0.0.1:9090/ (executions appear a few seconds after their last event)");
}
