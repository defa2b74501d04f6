//! Synthetic Step Functions traffic shaped like AWS's: each execution's
//! events as CloudWatch log lines (the same members AWS writes), wrapped in
//! gzip'd CloudWatch Logs envelopes, packed into Firehose requests. Every
//! execution gets a fresh ARN; timestamps advance from the generator's start.

use base64::Engine;
use flate2::{write::GzEncoder, Compression};
use serde_json::{json, Value};
use std::io::Write;

/// The shape of generated executions and requests.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Task states per execution (each 5 events).
    pub states: usize,
    /// Iterations of one inline Map state per execution (each 4 events); 0 = no Map.
    pub map_fanout: usize,
    /// Bytes of JSON payload per state input/output.
    pub payload_bytes: usize,
    /// Log events per CloudWatch envelope (record).
    pub events_per_record: usize,
    pub records_per_request: usize,
    /// A request is closed before it passes this many bytes (base64 records).
    pub request_bytes: usize,
    /// `Content-Encoding: gzip` on the request body.
    pub gzip: bool,
    /// Leave out the terminal event: executions stay open (memory tests).
    pub leave_open: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            states: 8,
            map_fanout: 0,
            payload_bytes: 256,
            events_per_record: 100,
            records_per_request: 500,
            request_bytes: 5 << 20,
            gzip: true,
            leave_open: false,
        }
    }
}

impl Shape {
    /// Events of one execution.
    pub fn events_per_execution(&self) -> usize {
        let map = if self.map_fanout > 0 {
            4 + 4 * self.map_fanout
        } else {
            0
        };
        2 + 5 * self.states + map - usize::from(self.leave_open)
    }

    /// Spans of one complete execution: the root, one per task state, and
    /// for the Map its state span plus, per iteration, the iteration and
    /// its Pass state.
    pub fn spans_per_execution(&self) -> usize {
        let map = if self.map_fanout > 0 {
            1 + 2 * self.map_fanout
        } else {
            0
        };
        1 + self.states + map
    }
}

/// One Firehose request, ready to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub id: String,
    pub body: Vec<u8>,
    pub events: usize,
    /// Bytes of log lines (what the server decodes).
    pub decoded_bytes: usize,
}

fn payload(bytes: usize, seed: u64) -> String {
    let filler = "x".repeat(bytes.saturating_sub(40));
    json!({"order": seed, "status": "ok", "blob": filler}).to_string()
}

struct Lines {
    arn: String,
    t: i64,
    id: u64,
    out: Vec<String>,
}

impl Lines {
    /// Appends an event; returns its id.
    fn push(&mut self, kind: &str, prev: u64, details: Value) -> u64 {
        self.id += 1;
        self.t += 3;
        self.out.push(
            json!({
                "id": self.id.to_string(),
                "type": kind,
                "details": details,
                "previous_event_id": prev.to_string(),
                "event_timestamp": self.t.to_string(),
                "execution_arn": self.arn,
                "redrive_count": "0",
            })
            .to_string(),
        );
        self.id
    }
}

/// The log lines of one execution.
pub fn execution(shape: &Shape, region: &str, account: &str, n: u64, start_ms: i64) -> Vec<String> {
    let sm = "LoadTest";
    let mut l = Lines {
        arn: format!("arn:aws:states:{region}:{account}:execution:{sm}:run-{n:012}"),
        t: start_ms,
        id: 0,
        out: Vec::with_capacity(shape.events_per_execution()),
    };
    let p = |k| payload(shape.payload_bytes, n * 1000 + k);
    let truncated = json!({"truncated": false});
    let mut prev = l.push(
        "ExecutionStarted",
        0,
        json!({"input": p(0), "inputDetails": truncated, "roleArn": format!("arn:aws:iam::{account}:role/sfn")}),
    );
    let fn_arn = format!("arn:aws:lambda:{region}:{account}:function:work");
    for s in 0..shape.states {
        let name = format!("Step{s}");
        let entered = l.push(
            "TaskStateEntered",
            prev,
            json!({"name": name, "input": p(s as u64 + 1), "inputDetails": truncated}),
        );
        let sched = l.push(
            "TaskScheduled",
            entered,
            json!({"resourceType": "lambda", "resource": "invoke", "region": region,
                   "parameters": json!({"FunctionName": fn_arn, "Payload": {"step": s}}).to_string()}),
        );
        let started = l.push(
            "TaskStarted",
            sched,
            json!({"resourceType": "lambda", "resource": "invoke"}),
        );
        let done = l.push(
            "TaskSucceeded",
            started,
            json!({"resourceType": "lambda", "resource": "invoke", "output": p(s as u64 + 100), "outputDetails": truncated}),
        );
        prev = l.push(
            "TaskStateExited",
            done,
            json!({"name": name, "output": p(s as u64 + 200), "outputDetails": truncated}),
        );
    }
    if shape.map_fanout > 0 {
        let entered = l.push(
            "MapStateEntered",
            prev,
            json!({"name": "Fan", "input": "[]", "inputDetails": truncated}),
        );
        let started = l.push(
            "MapStateStarted",
            entered,
            json!({"length": shape.map_fanout}),
        );
        let mut last = started;
        for i in 0..shape.map_fanout {
            let it = l.push(
                "MapIterationStarted",
                last,
                json!({"name": "Fan", "index": i}),
            );
            let e = l.push(
                "PassStateEntered",
                it,
                json!({"name": "Item", "input": "{}", "inputDetails": truncated}),
            );
            let x = l.push(
                "PassStateExited",
                e,
                json!({"name": "Item", "output": "{}", "outputDetails": truncated}),
            );
            last = l.push(
                "MapIterationSucceeded",
                x,
                json!({"name": "Fan", "index": i}),
            );
        }
        let ok = l.push("MapStateSucceeded", last, json!({}));
        prev = l.push(
            "MapStateExited",
            ok,
            json!({"name": "Fan", "output": "[]", "outputDetails": truncated}),
        );
    }
    if !shape.leave_open {
        l.push(
            "ExecutionSucceeded",
            prev,
            json!({"output": p(999), "outputDetails": truncated}),
        );
    }
    l.out
}

/// One CloudWatch Logs subscription record (gzip'd envelope, base64).
pub fn record(lines: &[String], account: &str, first_ms: i64) -> String {
    let events: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"id": format!("{:056}", first_ms as u64 * 1000 + i as u64), "timestamp": first_ms, "message": m}))
        .collect();
    let env = json!({
        "messageType": "DATA_MESSAGE", "owner": account,
        "logGroup": "/aws/vendedlogs/states/LoadTest-Logs",
        "logStream": "states/LoadTest/2026-11-24-10-00/1a2b3c4d",
        "subscriptionFilters": ["stepstitch"], "logEvents": events,
    });
    let mut gz = GzEncoder::new(Vec::new(), Compression::new(6));
    gz.write_all(&serde_json::to_vec(&env).expect("json"))
        .expect("gzip");
    base64::engine::general_purpose::STANDARD.encode(gz.finish().expect("gzip"))
}

/// Builds requests from a stream of executions until `max_events` events.
pub fn requests(
    shape: &Shape,
    first_execution: u64,
    max_events: usize,
    start_ms: i64,
) -> Vec<Request> {
    let account = "123456789012";
    let region = "us-east-1";
    let mut out = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    let mut records: Vec<String> = Vec::new();
    let mut record_bytes = 0usize;
    let (mut events, mut decoded, mut total) = (0usize, 0usize, 0usize);
    let mut n = first_execution;
    let flush = |records: &mut Vec<String>,
                 record_bytes: &mut usize,
                 events: &mut usize,
                 decoded: &mut usize,
                 out: &mut Vec<Request>| {
        if records.is_empty() {
            return;
        }
        let id = format!("loadgen-{:08}-{}", out.len(), first_execution);
        let recs: Vec<Value> = records.drain(..).map(|d| json!({ "data": d })).collect();
        let raw =
            serde_json::to_vec(&json!({"requestId": id, "timestamp": start_ms, "records": recs}))
                .expect("json");
        let body = if shape.gzip {
            let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
            gz.write_all(&raw).expect("gzip");
            gz.finish().expect("gzip")
        } else {
            raw
        };
        out.push(Request {
            id,
            body,
            events: *events,
            decoded_bytes: *decoded,
        });
        *record_bytes = 0;
        *events = 0;
        *decoded = 0;
    };
    while total < max_events {
        let lines = execution(
            shape,
            region,
            account,
            n,
            start_ms + (n - first_execution) as i64,
        );
        n += 1;
        total += lines.len();
        pending.extend(lines);
        while pending.len() >= shape.events_per_record
            || (total >= max_events && !pending.is_empty())
        {
            let take = pending.len().min(shape.events_per_record);
            let chunk: Vec<String> = pending.drain(..take).collect();
            let rec = record(&chunk, account, start_ms);
            if !records.is_empty()
                && (record_bytes + rec.len() > shape.request_bytes
                    || records.len() >= shape.records_per_request)
            {
                flush(
                    &mut records,
                    &mut record_bytes,
                    &mut events,
                    &mut decoded,
                    &mut out,
                );
            }
            events += chunk.len();
            decoded += chunk.iter().map(String::len).sum::<usize>();
            record_bytes += rec.len();
            records.push(rec);
        }
    }
    flush(
        &mut records,
        &mut record_bytes,
        &mut events,
        &mut decoded,
        &mut out,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Limits, RequestDecoder};

    #[test]
    fn generated_lines_decode_and_stitch_into_one_complete_trace_each() {
        let shape = Shape {
            states: 3,
            map_fanout: 4,
            ..Shape::default()
        };
        let lines = execution(&shape, "us-east-1", "123456789012", 7, 1_780_000_000_000);
        assert_eq!(lines.len(), shape.events_per_execution());
        let mut d = RequestDecoder::new(Limits::default());
        d.decode_record(&record(&lines, "123456789012", 1_780_000_000_000));
        let (events, stats) = d.finish();
        assert_eq!(stats.total_failures(), 0);
        assert_eq!(events.len(), lines.len());
        let spans = crate::stitch::builder::build_spans(&events, &Default::default(), None);
        // Execution, 3 tasks, the Map state, 4 iterations with a Pass each.
        assert_eq!(spans.len(), 1 + 3 + 1 + 4 * 2);
        assert!(spans
            .iter()
            .all(|s| s.error == 0 && !s.meta.contains_key("step_function.incomplete")));
        assert_eq!(spans.iter().filter(|s| s.parent_id == 0).count(), 1);
    }

    #[test]
    fn requests_respect_the_size_and_count_limits() {
        let shape = Shape {
            records_per_request: 3,
            events_per_record: 10,
            request_bytes: 1 << 20,
            ..Shape::default()
        };
        let reqs = requests(&shape, 0, 1000, 1_780_000_000_000);
        assert!(reqs.len() > 1);
        assert!(reqs.iter().map(|r| r.events).sum::<usize>() >= 1000);
        let mut ids: Vec<&str> = reqs.iter().map(|r| r.id.as_str()).collect();
        ids.dedup();
        assert_eq!(ids.len(), reqs.len());
    }
}

#[cfg(test)]
mod count_check {
    use super::*;
    /// Requests decode back to the executions generated, open ones included.
    #[test]
    fn open_executions_have_no_terminal_event_and_distinct_arns() {
        let shape = Shape {
            states: 1,
            payload_bytes: 0,
            leave_open: true,
            ..Shape::default()
        };
        let reqs = requests(&shape, 5_000_000, 60_000, 1_780_000_000_000);
        let mut arns = std::collections::HashSet::new();
        let mut n = 0;
        for r in &reqs {
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&r.body[..]), &mut plain)
                .unwrap();
            let body = bytes::Bytes::from(plain);
            let d = crate::decode::body::decode_body(
                body,
                crate::decode::BodyLimits {
                    max_body_bytes: 80 << 20,
                    decode: Default::default(),
                },
            )
            .unwrap();
            n += d.events.len();
            for e in d.events {
                assert!(!e.kind.is_execution_terminal());
                arns.insert(e.execution_arn.to_string());
            }
        }
        assert_eq!(n, 60_000);
        assert_eq!(arns.len(), 10_000);
    }
}
