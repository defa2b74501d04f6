//! A fake of Datadog's direct intake (nothing real can be run here; see
//! reference/test-peers.md): an in-process axum server on loopback that
//! decodes and checks every request the way the intake documents it, and
//! records what it accepted. Failures can be scripted per route.
//!
//! Checks (a broken one is recorded in `violations` and answered like the
//! intake would):
//! - `DD-API-KEY` is the expected key (403 otherwise);
//! - `Content-Encoding` is one the route documents (gzip, deflate; 415
//!   otherwise) and the body decompresses;
//! - traces: `application/x-protobuf`, an `AgentPayload` that decodes, at
//!   most 3.2 MB uncompressed;
//! - series / distribution points: JSON `{"series": [...]}`, at most 512,000
//!   bytes as sent and 5 MiB uncompressed, documented types and fields;
//! - logs: a JSON array of at most 1,000 entries, 5 MB, 1 MB per entry, each
//!   with `message`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use libdd_trace_protobuf::pb;
use prost::Message;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub const TRACES: &str = "/api/v0.2/traces";
pub const SERIES: &str = "/api/v2/series";
pub const DISTRIBUTIONS: &str = "/api/v1/distribution_points";
pub const LOGS: &str = "/api/v2/logs";

#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub status: u16,
    pub bytes: usize,
    pub items: usize,
}

#[derive(Debug, Default)]
pub struct Received {
    pub traces: Vec<pb::AgentPayload>,
    pub series: Vec<Value>,
    pub distributions: Vec<Value>,
    pub logs: Vec<Value>,
    pub requests: Vec<Seen>,
    pub violations: Vec<String>,
}

impl Received {
    pub fn spans(&self) -> Vec<(i32, pb::Span)> {
        self.traces
            .iter()
            .flat_map(|p| p.tracer_payloads.iter())
            .flat_map(|t| t.chunks.iter())
            .flat_map(|c| c.spans.iter().map(move |s| (c.priority, s.clone())))
            .collect()
    }
}

/// Scripted answers.
#[derive(Debug, Default)]
pub struct Script {
    /// Every request gets 503.
    pub down: bool,
    /// Statuses answered to the next requests of a route, in order.
    pub next: HashMap<&'static str, VecDeque<(u16, Option<u64>)>>,
    /// A route that always answers this status.
    pub always: HashMap<&'static str, u16>,
    /// Trace payloads with more chunks than this get 413.
    pub max_trace_chunks: Option<usize>,
}

pub struct FakeIntake {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Received>>,
    pub script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIntake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct St {
    key: String,
    received: Arc<Mutex<Received>>,
    script: Arc<Mutex<Script>>,
}

impl FakeIntake {
    pub async fn start(api_key: &str) -> FakeIntake {
        let received = Arc::new(Mutex::new(Received::default()));
        let script = Arc::new(Mutex::new(Script::default()));
        let st = St {
            key: api_key.to_owned(),
            received: received.clone(),
            script: script.clone(),
        };
        let app = Router::new()
            .route(TRACES, post(|s, h, b| handle(s, TRACES, h, b)))
            .route(SERIES, post(|s, h, b| handle(s, SERIES, h, b)))
            .route(
                DISTRIBUTIONS,
                post(|s, h, b| handle(s, DISTRIBUTIONS, h, b)),
            )
            .route(LOGS, post(|s, h, b| handle(s, LOGS, h, b)))
            .with_state(st)
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeIntake {
            addr,
            received,
            script,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The env that points a server's `datadog` exporter here.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DD_APM_DD_URL", self.url()),
            ("DD_DD_URL", self.url()),
            ("DD_LOGS_CONFIG_LOGS_DD_URL", self.url()),
        ]
    }

    pub fn violations(&self) -> Vec<String> {
        self.received.lock().unwrap().violations.clone()
    }
}

fn decompress(encoding: Option<&str>, body: &[u8], cap: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let r = match encoding {
        Some("gzip") => flate2::read::GzDecoder::new(body)
            .take(cap as u64 + 1)
            .read_to_end(&mut out),
        Some("deflate") => flate2::read::ZlibDecoder::new(body)
            .take(cap as u64 + 1)
            .read_to_end(&mut out),
        None | Some("identity") => {
            out.extend_from_slice(body);
            Ok(out.len())
        }
        Some(other) => return Err(format!("unsupported Content-Encoding {other}")),
    };
    r.map_err(|e| format!("body does not decompress: {e}"))?;
    Ok(out)
}

async fn handle(State(st): State<St>, path: &'static str, h: HeaderMap, body: Bytes) -> Response {
    let header = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let record = |status: u16, items: usize, violation: Option<String>| {
        let mut r = st.received.lock().unwrap();
        r.requests.push(Seen {
            path: path.to_owned(),
            status,
            bytes: body.len(),
            items,
        });
        if let Some(v) = violation {
            r.violations.push(format!("{path}: {v}"));
        }
    };
    if header("dd-api-key").as_deref() != Some(st.key.as_str()) {
        record(403, 0, Some("missing or wrong DD-API-KEY".into()));
        return (StatusCode::FORBIDDEN, "Forbidden").into_response();
    }
    let scripted = {
        let mut s = st.script.lock().unwrap();
        if s.down {
            Some((503, None))
        } else if let Some(n) = s.next.get_mut(path).and_then(|q| q.pop_front()) {
            Some(n)
        } else {
            s.always.get(path).map(|c| (*c, None))
        }
    };
    if let Some((code, retry_after)) = scripted {
        record(code, 0, None);
        let mut resp = (StatusCode::from_u16(code).unwrap(), "scripted").into_response();
        if let Some(ra) = retry_after {
            resp.headers_mut()
                .insert("retry-after", ra.to_string().parse().unwrap());
        }
        return resp;
    }
    let encoding = header("content-encoding");
    let allowed: &[&str] = match path {
        DISTRIBUTIONS => &["deflate", "gzip"],
        _ => &["gzip", "deflate"],
    };
    if !encoding.as_deref().is_some_and(|e| allowed.contains(&e)) {
        record(415, 0, Some(format!("Content-Encoding {encoding:?}")));
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let cap = match path {
        TRACES => 3_200_000,
        LOGS => 5_000_000,
        _ => 5 << 20,
    };
    let raw = match decompress(encoding.as_deref(), &body, cap) {
        Ok(r) if r.len() > cap => {
            record(413, 0, Some(format!("{} bytes uncompressed", r.len())));
            return StatusCode::PAYLOAD_TOO_LARGE.into_response();
        }
        Ok(r) => r,
        Err(e) => {
            record(400, 0, Some(e));
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    match path {
        TRACES => {
            if header("content-type").as_deref() != Some("application/x-protobuf") {
                record(400, 0, Some("content-type".into()));
                return StatusCode::BAD_REQUEST.into_response();
            }
            let p = match pb::AgentPayload::decode(&raw[..]) {
                Ok(p) => p,
                Err(e) => {
                    record(400, 0, Some(format!("AgentPayload: {e}")));
                    return StatusCode::BAD_REQUEST.into_response();
                }
            };
            let chunks: usize = p.tracer_payloads.iter().map(|t| t.chunks.len()).sum();
            let max = st.script.lock().unwrap().max_trace_chunks;
            if max.is_some_and(|m| chunks > m) {
                record(413, chunks, None);
                return StatusCode::PAYLOAD_TOO_LARGE.into_response();
            }
            for t in &p.tracer_payloads {
                for c in &t.chunks {
                    let ids: std::collections::HashSet<u64> =
                        c.spans.iter().map(|s| s.trace_id).collect();
                    if ids.len() != 1 {
                        record(400, 0, Some("a chunk mixes trace ids".into()));
                        return StatusCode::BAD_REQUEST.into_response();
                    }
                }
            }
            record(202, chunks, None);
            st.received.lock().unwrap().traces.push(p);
        }
        SERIES | DISTRIBUTIONS => {
            if body.len() > 512_000 {
                record(413, 0, Some(format!("{} bytes as sent", body.len())));
                return StatusCode::PAYLOAD_TOO_LARGE.into_response();
            }
            let v: Value = match serde_json::from_slice(&raw) {
                Ok(v) => v,
                Err(e) => {
                    record(400, 0, Some(format!("JSON: {e}")));
                    return StatusCode::BAD_REQUEST.into_response();
                }
            };
            let Some(series) = v["series"].as_array() else {
                record(400, 0, Some("no series array".into()));
                return StatusCode::BAD_REQUEST.into_response();
            };
            for s in series {
                let problem = if path == SERIES {
                    check_series(s)
                } else {
                    check_distribution(s)
                };
                if let Some(p) = problem {
                    record(400, 0, Some(p));
                    return StatusCode::BAD_REQUEST.into_response();
                }
            }
            record(202, series.len(), None);
            let mut r = st.received.lock().unwrap();
            let target = if path == SERIES {
                &mut r.series
            } else {
                &mut r.distributions
            };
            target.extend(series.iter().cloned());
        }
        LOGS => {
            let v: Value = match serde_json::from_slice(&raw) {
                Ok(v) => v,
                Err(e) => {
                    record(400, 0, Some(format!("JSON: {e}")));
                    return StatusCode::BAD_REQUEST.into_response();
                }
            };
            let Some(entries) = v.as_array() else {
                record(400, 0, Some("not an array".into()));
                return StatusCode::BAD_REQUEST.into_response();
            };
            if entries.len() > 1000 {
                record(413, entries.len(), Some("more than 1000 entries".into()));
                return StatusCode::PAYLOAD_TOO_LARGE.into_response();
            }
            for e in entries {
                let size = serde_json::to_vec(e).unwrap().len();
                if size > 1_000_000 || !e["message"].is_string() {
                    record(400, 0, Some(format!("bad entry ({size} bytes)")));
                    return StatusCode::BAD_REQUEST.into_response();
                }
            }
            record(202, entries.len(), None);
            st.received
                .lock()
                .unwrap()
                .logs
                .extend(entries.iter().cloned());
        }
        _ => unreachable!(),
    }
    (StatusCode::ACCEPTED, "{\"errors\":[]}").into_response()
}

fn check_series(s: &Value) -> Option<String> {
    let ty = s["type"].as_i64();
    if !matches!(ty, Some(1) | Some(3)) {
        return Some(format!("type {ty:?} is not count (1) or gauge (3)"));
    }
    if ty == Some(1) && s["interval"].as_i64().is_none() {
        return Some("a count without interval".into());
    }
    if !s["metric"].is_string() || !s["tags"].is_array() {
        return Some("metric or tags missing".into());
    }
    let Some(points) = s["points"].as_array() else {
        return Some("no points".into());
    };
    if points.is_empty()
        || points
            .iter()
            .any(|p| p["timestamp"].as_i64().is_none() || p["value"].as_f64().is_none())
    {
        return Some("bad points".into());
    }
    None
}

fn check_distribution(s: &Value) -> Option<String> {
    if s["type"] != "distribution" || !s["metric"].is_string() {
        return Some("not a distribution series".into());
    }
    let Some(points) = s["points"].as_array() else {
        return Some("no points".into());
    };
    let ok = points.iter().all(|p| {
        p[0].as_i64().is_some()
            && p[1]
                .as_array()
                .is_some_and(|v| v.iter().all(Value::is_number))
    });
    (!ok).then(|| "bad points".into())
}
