//! OTLP on the test side: reading what an OTLP receiver got back into
//! Datadog spans (independently of the exporter's own mapping, from the
//! contract in spec/interfaces.md), and a fake OTLP/HTTP receiver for the
//! answers the real one never gives (503 with Retry-After, partial
//! success, 500). The fake checks every request against the OTLP/HTTP
//! spec: `Content-Type: application/x-protobuf`, gzip or no encoding, a
//! body that decodes as the signal's `Export*ServiceRequest`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Attributes the exporter adds from semantic conventions (not in the
/// Datadog span), kept apart when mapping back.
pub const SEMCONV: [&str; 3] = [
    "faas.invoked_name",
    "faas.invoked_provider",
    "faas.invoked_region",
];

fn b64_u64s(v: &Value) -> Vec<u64> {
    let Some(s) = v.as_str() else {
        return Vec::new();
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64 id");
    bytes
        .chunks(8)
        .map(|c| u64::from_be_bytes(c.try_into().expect("8-byte words")))
        .collect()
}

fn num(v: &Value) -> u64 {
    v.as_str()
        .map(|s| s.parse().unwrap())
        .or_else(|| v.as_u64())
        .unwrap_or(0)
}

/// `[{key, value: {string_value | double_value | int_value}}]` as a map.
pub fn attributes(v: &Value) -> BTreeMap<String, Value> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let val = &a["value"];
            let x = val
                .get("string_value")
                .or(val.get("double_value"))
                .or(val.get("int_value"))
                .or(val.get("bool_value"))
                .cloned()
                .unwrap_or(Value::Null);
            (a["key"].as_str().unwrap().to_owned(), x)
        })
        .collect()
}

/// One received OTLP span, read back.
#[derive(Debug, Clone)]
pub struct Received {
    /// The Datadog span (the jsonl `S`).
    pub span: Value,
    pub trace_id_high: u64,
    pub kind: String,
    pub resource: BTreeMap<String, Value>,
    pub semconv: BTreeMap<String, Value>,
    pub events: Vec<Value>,
    pub links: Vec<(u64, u64, u64)>,
    pub status_message: Option<String>,
}

/// Every span of the receiver's `/test/session/traces` answer.
pub fn spans(requests: &[Value]) -> Vec<Received> {
    let mut out = Vec::new();
    for req in requests {
        for rs in req["resource_spans"].as_array().into_iter().flatten() {
            let resource = attributes(&rs["resource"]["attributes"]);
            for ss in rs["scope_spans"].as_array().into_iter().flatten() {
                assert_eq!(ss["scope"]["name"], "stepstitch");
                for sp in ss["spans"].as_array().into_iter().flatten() {
                    out.push(read_span(sp, &resource));
                }
            }
        }
    }
    out
}

fn read_span(sp: &Value, resource: &BTreeMap<String, Value>) -> Received {
    let tid = b64_u64s(&sp["trace_id"]);
    assert_eq!(tid.len(), 2, "16-byte trace id: {sp}");
    let mut attrs = attributes(&sp["attributes"]);
    let take = |a: &mut BTreeMap<String, Value>, k: &str| {
        a.remove(k)
            .unwrap_or_else(|| panic!("{k} missing: {sp}"))
            .as_str()
            .unwrap()
            .to_owned()
    };
    let name = take(&mut attrs, "operation.name");
    let resource_name = take(&mut attrs, "resource.name");
    let span_type = take(&mut attrs, "span.type");
    assert_eq!(sp["name"], resource_name.as_str(), "name = resource");
    let semconv: BTreeMap<String, Value> = SEMCONV
        .iter()
        .filter_map(|k| attrs.remove(*k).map(|v| (k.to_string(), v)))
        .collect();
    let (mut meta, mut metrics) = (Map::new(), Map::new());
    for (k, v) in attrs {
        if v.is_string() {
            meta.insert(k, v);
        } else {
            metrics.insert(k, v);
        }
    }
    let start = num(&sp["start_time_unix_nano"]);
    let end = num(&sp["end_time_unix_nano"]);
    let error = sp["status"]["code"] == "STATUS_CODE_ERROR";
    let span = json!({
        "trace_id": tid[1],
        "span_id": b64_u64s(&sp["span_id"])[0],
        "parent_id": b64_u64s(&sp["parent_span_id"]).first().copied().unwrap_or(0),
        "name": name,
        "resource": resource_name,
        "service": resource["service.name"],
        "type": span_type,
        "start": start,
        "duration": end - start,
        "error": i32::from(error),
        "meta": meta,
        "metrics": metrics,
    });
    Received {
        span,
        trace_id_high: tid[0],
        kind: sp["kind"]
            .as_str()
            .unwrap_or("SPAN_KIND_UNSPECIFIED")
            .to_owned(),
        resource: resource.clone(),
        semconv,
        events: sp["events"].as_array().cloned().unwrap_or_default(),
        links: sp["links"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| {
                let t = b64_u64s(&l["trace_id"]);
                (t[0], t[1], b64_u64s(&l["span_id"])[0])
            })
            .collect(),
        status_message: sp["status"]["message"].as_str().map(str::to_owned),
    }
}

/// One log record read back: `(trace id high, low, span id, severity, body, attributes)`.
pub type Log = (u64, u64, u64, String, String, BTreeMap<String, Value>);

pub fn logs(requests: &[Value]) -> Vec<Log> {
    let mut out = Vec::new();
    for req in requests {
        for rl in req["resource_logs"].as_array().into_iter().flatten() {
            for sl in rl["scope_logs"].as_array().into_iter().flatten() {
                for r in sl["log_records"].as_array().into_iter().flatten() {
                    let t = b64_u64s(&r["trace_id"]);
                    out.push((
                        t[0],
                        t[1],
                        b64_u64s(&r["span_id"])[0],
                        r["severity_text"].as_str().unwrap().to_owned(),
                        r["body"]["string_value"].as_str().unwrap().to_owned(),
                        attributes(&r["attributes"]),
                    ));
                }
            }
        }
    }
    out
}

/// One data point read back: `(metric name, kind, sorted "k:v" tags, point)`.
pub type Point = (String, String, Vec<String>, Value);

pub fn points(requests: &[Value]) -> Vec<Point> {
    let mut out = Vec::new();
    for req in requests {
        for rm in req["resource_metrics"].as_array().into_iter().flatten() {
            for sm in rm["scope_metrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    for kind in ["sum", "gauge", "exponential_histogram"] {
                        for p in m[kind]["data_points"].as_array().into_iter().flatten() {
                            let mut tags: Vec<String> = attributes(&p["attributes"])
                                .into_iter()
                                .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap()))
                                .collect();
                            tags.sort();
                            let mut p = p.clone();
                            p["temporality"] = m[kind]["aggregation_temporality"].clone();
                            p["monotonic"] = m[kind]["is_monotonic"].clone();
                            p["unit"] = m["unit"].clone();
                            out.push((
                                m["name"].as_str().unwrap().to_owned(),
                                kind.to_owned(),
                                tags,
                                p,
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

/// An answer the fake gives.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Vec<u8>,
}

/// What the fake received on one route.
#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    pub headers: HeaderMap,
    pub traces: Option<ExportTraceServiceRequest>,
    pub metrics: Option<ExportMetricsServiceRequest>,
    pub logs: Option<ExportLogsServiceRequest>,
}

#[derive(Default)]
pub struct Inner {
    /// Every request gets 503 (counted in `refused`, not recorded).
    pub down: bool,
    pub refused: usize,
    pub requests: Vec<(String, Request)>,
    pub violations: Vec<String>,
    pub script: HashMap<String, VecDeque<Answer>>,
}

pub struct FakeOtlp {
    pub addr: SocketAddr,
    pub inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOtlp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State((inner, path)): State<(Arc<Mutex<Inner>>, &'static str)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut st = inner.lock().unwrap();
    if st.down {
        st.refused += 1;
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct != "application/x-protobuf" {
        st.violations.push(format!("{path}: content-type {ct:?}"));
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let raw = match headers
        .get("content-encoding")
        .map(|v| v.to_str().unwrap_or(""))
    {
        None | Some("identity") => body.to_vec(),
        Some("gzip") => {
            let mut out = Vec::new();
            if flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .is_err()
            {
                st.violations.push(format!("{path}: bad gzip"));
                return StatusCode::BAD_REQUEST.into_response();
            }
            out
        }
        Some(other) => {
            st.violations
                .push(format!("{path}: content-encoding {other}"));
            return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
        }
    };
    let mut req = Request {
        at: Instant::now(),
        headers: headers.clone(),
        traces: None,
        metrics: None,
        logs: None,
    };
    let ok = match path {
        "/v1/traces" => ExportTraceServiceRequest::decode(&raw[..]).map(|r| req.traces = Some(r)),
        "/v1/metrics" => {
            ExportMetricsServiceRequest::decode(&raw[..]).map(|r| req.metrics = Some(r))
        }
        _ => ExportLogsServiceRequest::decode(&raw[..]).map(|r| req.logs = Some(r)),
    };
    if let Err(e) = ok {
        st.violations.push(format!("{path}: does not decode: {e}"));
        return StatusCode::BAD_REQUEST.into_response();
    }
    st.requests.push((path.to_owned(), req));
    let answer = st.script.get_mut(path).and_then(VecDeque::pop_front);
    drop(st);
    match answer {
        None => (
            [("content-type", "application/x-protobuf")],
            Vec::<u8>::new(),
        )
            .into_response(),
        Some(a) => {
            let mut r = (
                StatusCode::from_u16(a.status).unwrap(),
                [("content-type", "application/x-protobuf")],
                a.body,
            )
                .into_response();
            if let Some(ra) = a.retry_after {
                r.headers_mut().insert("retry-after", ra.parse().unwrap());
            }
            r
        }
    }
}

impl FakeOtlp {
    pub async fn start() -> FakeOtlp {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let mut app = Router::new();
        for path in ["/v1/traces", "/v1/metrics", "/v1/logs"] {
            app = app.route(path, post(handle).with_state((inner.clone(), path)));
        }
        let app = app.layer(axum::extract::DefaultBodyLimit::max(64 << 20));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeOtlp { addr, inner, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next answers on `path`, in order; afterwards 200.
    pub fn script(&self, path: &str, answers: Vec<Answer>) {
        self.inner
            .lock()
            .unwrap()
            .script
            .entry(path.to_owned())
            .or_default()
            .extend(answers);
    }

    pub fn requests(&self, path: &str) -> Vec<Request> {
        self.inner
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, r)| r.clone())
            .collect()
    }

    pub fn set_down(&self, down: bool) {
        self.inner.lock().unwrap().down = down;
    }

    pub fn violations(&self) -> Vec<String> {
        self.inner.lock().unwrap().violations.clone()
    }
}
