//! Log events → `POST /api/v2/logs` (JSON array, gzip; datadog-intake.md §3):
//! at most 1,000 entries and 5 MB per request, 1 MB per entry. `dd.trace_id`
//! and `dd.span_id` (decimal, the span's 64-bit ids) link each entry to its
//! span; `service` matches the span's so Datadog pairs them.

use super::super::delivery::{BatchLimits, EncodeError, Encoder, Request};
use crate::export::compress::gzip;
use crate::stitch::builder::cut_utf8;
use crate::stitch::output::LogRecord;
use serde::Serialize;

pub const MAX_LOGS_PER_PAYLOAD: usize = 1000;
pub const MAX_LOGS_PAYLOAD_BYTES: usize = 5_000_000;
/// Per entry, with room for the envelope under the 1 MB limit.
pub const MAX_MESSAGE_BYTES: usize = 1_000_000 - 16 * 1024;

#[derive(Serialize)]
struct Correlation {
    trace_id: String,
    span_id: String,
}

#[derive(Serialize)]
struct LogWire<'a> {
    message: &'a str,
    ddsource: &'static str,
    service: &'a str,
    ddtags: String,
    status: &'static str,
    timestamp: i64,
    dd: Correlation,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

/// One entry as JSON, its message cut to fit the per-log limit.
pub fn log_item(r: &LogRecord) -> Vec<u8> {
    let (message, truncated) = cut_utf8(&r.message, MAX_MESSAGE_BYTES);
    serde_json::to_vec(&LogWire {
        message,
        ddsource: "stepfunction",
        service: &r.service,
        ddtags: r.tags.join(","),
        status: if r.error { "error" } else { "info" },
        timestamp: r.timestamp_ms,
        dd: Correlation {
            trace_id: r.trace_id.to_string(),
            span_id: r.span_id.to_string(),
        },
        truncated,
    })
    .unwrap_or_default()
}

pub struct Logs {
    pub url: String,
    pub api_key: String,
}

impl Encoder for Logs {
    type Item = Vec<u8>;

    fn signal(&self) -> &'static str {
        "logs"
    }

    fn size(&self, item: &Vec<u8>) -> usize {
        item.len() + 1
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_items: MAX_LOGS_PER_PAYLOAD,
            max_bytes: MAX_LOGS_PAYLOAD_BYTES,
        }
    }

    fn encode(&self, items: &[Vec<u8>]) -> Result<Request, EncodeError> {
        let mut body = Vec::with_capacity(2 + items.iter().map(|i| i.len() + 1).sum::<usize>());
        body.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(item);
        }
        body.push(b']');
        let body = gzip(&body).map_err(|e| EncodeError {
            signal: "logs",
            reason: e.to_string(),
        })?;
        Ok(Request::new(self.url.clone(), body)
            .header("dd-api-key", &self.api_key)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_carry_correlation_and_are_cut_to_the_per_log_limit() {
        let r = LogRecord {
            timestamp_ms: 1_700_000_000_123,
            error: true,
            message: "é".repeat(600_000),
            trace_id: 42,
            trace_id_high: 0,
            span_id: 7,
            service: "orders".into(),
            tags: vec!["env:prod".into(), "team:core".into()],
        };
        let item = log_item(&r);
        assert!(item.len() < 1_000_000);
        let v: serde_json::Value = serde_json::from_slice(&item).unwrap();
        assert_eq!(v["dd"]["trace_id"], "42");
        assert_eq!(v["dd"]["span_id"], "7");
        assert_eq!(v["status"], "error");
        assert_eq!(v["ddsource"], "stepfunction");
        assert_eq!(v["ddtags"], "env:prod,team:core");
        assert_eq!(v["truncated"], true);
    }
}
