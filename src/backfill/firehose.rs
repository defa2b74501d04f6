//! Log lines as Firehose HTTP endpoint requests, the way AWS delivers them:
//! CloudWatch Logs subscription envelopes, gzipped, base64 records, the
//! protocol's headers. Pure: bodies and ids are built here, sent by `send`.

use base64::Engine;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};
use std::io::Write;

/// Log events per CloudWatch Logs record (AWS packs up to 10,000).
const LINES_PER_RECORD: usize = 500;
/// A request's body at most (Firehose sends up to ~64 MiB; servers limit
/// it, stepstitch to 64 MiB by default): small requests retry cheaply.
const REQUEST_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct Request {
    pub id: String,
    pub body: Vec<u8>,
    pub lines: usize,
}

/// The log lines of one execution as CloudWatch Logs records.
pub fn records(lines: &[String], account: &str, state_machine: &str) -> Vec<String> {
    lines
        .chunks(LINES_PER_RECORD)
        .map(|chunk| {
            let events: Vec<Value> = chunk
                .iter()
                .map(|m| {
                    let ms: i64 = serde_json::from_str::<Value>(m)
                        .ok()
                        .and_then(|v| v["event_timestamp"].as_str()?.parse().ok())
                        .unwrap_or_default();
                    json!({"id": format!("{ms:056}"), "timestamp": ms, "message": m})
                })
                .collect();
            let env = json!({
                "messageType": "DATA_MESSAGE",
                "owner": account,
                "logGroup": format!("/aws/vendedlogs/states/{state_machine}-backfill"),
                "logStream": "stepstitch-backfill",
                "subscriptionFilters": ["stepstitch-backfill"],
                "logEvents": events,
            });
            let mut gz = GzEncoder::new(Vec::new(), Compression::new(6));
            gz.write_all(env.to_string().as_bytes())
                .expect("gzip to memory");
            base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("gzip to memory"))
        })
        .collect()
}

/// Packs records (with their line counts) into requests under the size bound.
pub fn requests(
    records: Vec<(String, usize)>,
    now_ms: i64,
    mut next_id: impl FnMut() -> String,
) -> Vec<Request> {
    let mut out = Vec::new();
    let mut batch: Vec<Value> = Vec::new();
    let (mut bytes, mut lines) = (0usize, 0usize);
    let mut flush = |batch: &mut Vec<Value>, lines: &mut usize, bytes: &mut usize| {
        if batch.is_empty() {
            return;
        }
        let id = next_id();
        let body = json!({"requestId": id, "timestamp": now_ms, "records": std::mem::take(batch)});
        out.push(Request {
            id,
            body: body.to_string().into_bytes(),
            lines: *lines,
        });
        *lines = 0;
        *bytes = 0;
    };
    for (data, n) in records {
        if !batch.is_empty() && bytes + data.len() > REQUEST_BYTES {
            flush(&mut batch, &mut lines, &mut bytes);
        }
        bytes += data.len() + 16;
        lines += n;
        batch.push(json!({ "data": data }));
    }
    flush(&mut batch, &mut lines, &mut bytes);
    out
}

/// A fresh id (32 hex digits): Firehose request ids, a throwaway key.
/// Unique, not secret-grade random: SHA-256 of the time, the process and a
/// counter.
pub fn fresh_id() -> String {
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let d = Sha256::new()
        .chain_update(t.to_le_bytes())
        .chain_update(std::process::id().to_le_bytes())
        .chain_update(N.fetch_add(1, Ordering::Relaxed).to_le_bytes())
        .finalize();
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The common attributes header: the stream's attributes and our mark.
pub fn attributes_header(attributes: &[(String, String)]) -> String {
    let mut map = serde_json::Map::new();
    for (k, v) in attributes {
        map.insert(k.clone(), Value::String(v.clone()));
    }
    map.insert(
        crate::pipeline::backfill::MARK.to_owned(),
        Value::String("1".into()),
    );
    json!({ "commonAttributes": map }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    fn line(i: usize) -> String {
        format!(
            r#"{{"details":{{}},"redrive_count":"0","id":"{i}","type":"PassStateExited","previous_event_id":"0","event_timestamp":"{}","execution_arn":"arn:aws:states:us-east-1:1:execution:Sm:e"}}"#,
            1000 + i
        )
    }

    #[test]
    fn records_hold_every_line_in_order_as_cloudwatch_sends_them() {
        let lines: Vec<String> = (1..=1201).map(line).collect();
        let recs = records(&lines, "1", "Sm");
        assert_eq!(recs.len(), 3);
        let mut back = Vec::new();
        for r in &recs {
            let gz = base64::engine::general_purpose::STANDARD.decode(r).unwrap();
            let mut text = String::new();
            GzDecoder::new(&gz[..]).read_to_string(&mut text).unwrap();
            let env: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(env["messageType"], "DATA_MESSAGE");
            for e in env["logEvents"].as_array().unwrap() {
                let m = e["message"].as_str().unwrap().to_owned();
                let ts: Value = serde_json::from_str(&m).unwrap();
                assert_eq!(
                    e["timestamp"].to_string(),
                    ts["event_timestamp"].as_str().unwrap()
                );
                back.push(m);
            }
        }
        assert_eq!(back, lines);
    }

    #[test]
    fn requests_stay_under_the_bound_and_lose_nothing() {
        let big = "x".repeat(400_000);
        let recs: Vec<(String, usize)> = (0..7).map(|i| (big.clone(), i + 1)).collect();
        let mut n = 0;
        let reqs = requests(recs, 5, || {
            n += 1;
            format!("r{n}")
        });
        assert_eq!(reqs.len(), 4);
        assert!(reqs.iter().all(|r| r.body.len() < 2 * REQUEST_BYTES));
        assert_eq!(reqs.iter().map(|r| r.lines).sum::<usize>(), 28);
        let first: Value = serde_json::from_slice(&reqs[0].body).unwrap();
        assert_eq!(first["requestId"], "r1");
        assert_eq!(first["timestamp"], 5);
    }

    #[test]
    fn the_mark_is_added_to_the_streams_attributes() {
        let h: Value =
            serde_json::from_str(&attributes_header(&[("service".into(), "orders".into())]))
                .unwrap();
        assert_eq!(h["commonAttributes"]["service"], "orders");
        assert_eq!(h["commonAttributes"]["stepstitch.backfill"], "1");
    }
}
