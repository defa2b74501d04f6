//! Builds Firehose HTTP requests the way AWS does (firehose-protocol.md §1–§2).

use base64::Engine;
use flate2::{write::GzEncoder, Compression};
use serde_json::{json, Value};
use std::io::Write;

pub const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::new(6));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn b64(data: &[u8]) -> String {
    B64.encode(data)
}

/// A CloudWatch Logs DATA_MESSAGE envelope around Step Functions log lines.
pub fn envelope(lines: &[String], state_machine: &str) -> Vec<u8> {
    let events: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let ts: i64 = serde_json::from_str::<Value>(l)
                .ok()
                .and_then(|v| v["event_timestamp"].as_str().and_then(|s| s.parse().ok()))
                .unwrap_or(1_700_000_000_000);
            json!({"id": format!("{:056}", 37_000_000_000u64 + i as u64), "timestamp": ts, "message": l})
        })
        .collect();
    serde_json::to_vec(&json!({
        "messageType": "DATA_MESSAGE",
        "owner": "418295736021",
        "logGroup": format!("/aws/vendedlogs/states/{state_machine}-Logs"),
        "logStream": format!("states/{state_machine}/2026-11-24-10-00/1a2b3c4d"),
        "subscriptionFilters": ["to-stepstitch"],
        "logEvents": events,
    }))
    .unwrap()
}

/// The health-check envelope CloudWatch Logs sends when a subscription is created.
pub fn control_envelope() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "messageType": "CONTROL_MESSAGE",
        "owner": "CloudwatchLogs",
        "logGroup": "",
        "logStream": "",
        "subscriptionFilters": [],
        "logEvents": [{"id": "", "timestamp": 1_700_000_000_000i64,
                        "message": "CWL CONTROL MESSAGE: Checking health of destination Firehose."}]
    }))
    .unwrap()
}

/// Default record form: base64(gzip(envelope)).
pub fn cwl_record(lines: &[String], state_machine: &str) -> String {
    b64(&gz(&envelope(lines, state_machine)))
}

pub fn body(request_id: &str, records: &[String]) -> Vec<u8> {
    let recs: Vec<Value> = records.iter().map(|d| json!({ "data": d })).collect();
    serde_json::to_vec(
        &json!({"requestId": request_id, "timestamp": 1_700_000_000_000i64, "records": recs}),
    )
    .unwrap()
}

/// What the endpoint answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
    pub raw: Vec<u8>,
}

impl Answer {
    /// Checks the response contract of firehose-protocol.md §1.4.
    pub fn assert_contract(&self, request_id: &str) {
        assert_eq!(self.headers["content-type"], "application/json", "{self:?}");
        assert!(self.headers.get("content-encoding").is_none());
        let len: usize = self.headers["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(len, self.raw.len());
        assert_eq!(self.json["requestId"], request_id, "{self:?}");
        let ts = self.json["timestamp"]
            .as_i64()
            .expect("timestamp is an integer");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!((now - ts).abs() < 60_000, "timestamp {ts} is not now in ms");
        let keys: Vec<&String> = self.json.as_object().unwrap().keys().collect();
        if self.status == 200 {
            assert_eq!(
                keys.len(),
                2,
                "success has exactly requestId and timestamp: {keys:?}"
            );
        } else {
            let msg = self.json["errorMessage"]
                .as_str()
                .expect("errorMessage on errors");
            assert!(!msg.is_empty() && msg.chars().count() <= 8192);
        }
    }
}

/// A Firehose-shaped POST with the usual headers.
pub struct Post<'a> {
    pub server: &'a super::Server,
    pub request_id: Option<String>,
    pub access_key: Option<String>,
    pub extra: Vec<(String, String)>,
    pub gzip_body: bool,
    pub path: &'a str,
}

impl<'a> Post<'a> {
    pub fn new(server: &'a super::Server, request_id: &str) -> Self {
        Post {
            server,
            request_id: Some(request_id.to_owned()),
            access_key: None,
            extra: Vec::new(),
            gzip_body: false,
            path: "/firehose",
        }
    }

    pub fn key(mut self, k: &str) -> Self {
        self.access_key = Some(k.to_owned());
        self
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.extra.push((k.to_owned(), v.to_owned()));
        self
    }

    pub fn gzip(mut self) -> Self {
        self.gzip_body = true;
        self
    }

    pub async fn send(self, body: Vec<u8>) -> Answer {
        self.send_result(body).await.expect("request")
    }

    /// Like `send`, but a connection error is returned instead of panicking.
    pub async fn send_result(self, body: Vec<u8>) -> Result<Answer, reqwest::Error> {
        let mut req = self
            .server
            .client
            .post(self.server.url(self.path))
            .header("content-type", "application/json")
            .header("x-amz-firehose-protocol-version", "1.0")
            .header(
                "x-amz-firehose-source-arn",
                "arn:aws:firehose:eu-west-1:418295736021:deliverystream/sfn-logs",
            )
            .header("user-agent", "Amazon Kinesis Data Firehose Agent/1.0");
        if let Some(id) = &self.request_id {
            req = req.header("x-amz-firehose-request-id", id);
        }
        if let Some(k) = &self.access_key {
            req = req.header("x-amz-firehose-access-key", k);
        }
        let body = if self.gzip_body {
            req = req.header("content-encoding", "gzip");
            gz(&body)
        } else {
            body
        };
        let mut built = req.body(body).build().expect("request");
        for (k, v) in &self.extra {
            // Replace, so a test can override the defaults above.
            built.headers_mut().insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let resp = self.server.client.execute(built).await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let raw = resp.bytes().await?.to_vec();
        let json = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            headers,
            json,
            raw,
        })
    }
}

/// `(request id, body)` for `(state machine, log line)` pairs in requests
/// of `per_request` lines, one record per state machine per request.
pub fn bodies(
    lines: &[(String, String)],
    per_request: usize,
    id_prefix: &str,
) -> Vec<(String, Vec<u8>)> {
    lines
        .chunks(per_request)
        .enumerate()
        .map(|(i, chunk)| {
            let mut by_sm: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
            for (sm, l) in chunk {
                by_sm.entry(sm).or_default().push(l.clone());
            }
            let records: Vec<String> = by_sm.iter().map(|(sm, ls)| cwl_record(ls, sm)).collect();
            let id = format!("{id_prefix}-{i}");
            let b = body(&id, &records);
            (id, b)
        })
        .collect()
}

/// Sends `(state machine, log line)` pairs in requests of `per_request`
/// lines (one record per state machine per request); every answer must be 200.
pub async fn send_lines(
    server: &super::Server,
    lines: &[(String, String)],
    per_request: usize,
    id_prefix: &str,
) {
    for (id, b) in bodies(lines, per_request, id_prefix) {
        let a = Post::new(server, &id).send(b).await;
        assert_eq!(a.status, 200, "{id}: {}", a.json);
    }
}

/// Sends each request once; returns those answered 503 (anything but 200
/// or 503 fails the test).
pub async fn send_once(
    server: &super::Server,
    requests: Vec<(String, Vec<u8>)>,
) -> Vec<(String, Vec<u8>)> {
    let mut refused = Vec::new();
    for (id, b) in requests {
        let a = Post::new(server, &id).send(b.clone()).await;
        match a.status {
            200 => {}
            503 => refused.push((id, b)),
            other => panic!("{id}: unexpected {other}"),
        }
    }
    refused
}

/// Retries each request as Firehose does, unchanged, until it gets a 200
/// (only 503s on the way; at most a minute each).
pub async fn resend_until_accepted(server: &super::Server, requests: Vec<(String, Vec<u8>)>) {
    for (id, b) in requests {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let a = Post::new(server, &id).send(b.clone()).await;
            if a.status == 200 {
                break;
            }
            assert_eq!(a.status, 503);
            assert!(std::time::Instant::now() < deadline, "{id} never accepted");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}
