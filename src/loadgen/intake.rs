//! A minimal Datadog intake and OTLP/HTTP receiver for load tests
//! (`loadgen --fake-intake`): it accepts what the agentless and `otlp`
//! exporters send, decodes the trace payloads (gzip + protobuf
//! `AgentPayload`, or `ExportTraceServiceRequest` on `/v1/traces`) and
//! counts the spans, so a load run measures the real export path and
//! checks that every span arrived. It does not validate like the test
//! suite's fakes (tests/common/); it only has to keep up.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::Router;
use libdd_trace_protobuf::pb;
use prost::Message;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct IntakeCounts {
    pub spans: AtomicU64,
    pub trace_requests: AtomicU64,
    pub metric_requests: AtomicU64,
    pub log_requests: AtomicU64,
    pub bytes: AtomicU64,
    /// Trace payloads that did not decode (a bug in the exporter).
    pub bad_payloads: AtomicU64,
}

/// Starts the intake on `addr`; it runs until the process ends.
pub async fn start(addr: std::net::SocketAddr) -> std::io::Result<Arc<IntakeCounts>> {
    let counts = Arc::new(IntakeCounts::default());
    let app = Router::new().fallback(accept).with_state(counts.clone());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(counts)
}

async fn accept(
    State(counts): State<Arc<IntakeCounts>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    counts.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
    let path = uri.path();
    let otlp = path.ends_with("/v1/traces");
    if otlp || path.ends_with("/api/v0.2/traces") {
        counts.trace_requests.fetch_add(1, Ordering::Relaxed);
        let gzipped = headers
            .get("content-encoding")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
        let spans = tokio::task::spawn_blocking(move || count_spans(&body, gzipped, otlp))
            .await
            .ok()
            .flatten();
        match spans {
            Some(n) => {
                counts.spans.fetch_add(n, Ordering::Relaxed);
            }
            None => {
                counts.bad_payloads.fetch_add(1, Ordering::Relaxed);
                return StatusCode::BAD_REQUEST;
            }
        }
    } else if path.contains("/logs") || path.starts_with("/api/v2/logs") {
        counts.log_requests.fetch_add(1, Ordering::Relaxed);
    } else {
        counts.metric_requests.fetch_add(1, Ordering::Relaxed);
    }
    StatusCode::ACCEPTED
}

fn count_spans(body: &[u8], gzipped: bool, otlp: bool) -> Option<u64> {
    let mut plain = Vec::new();
    let bytes: &[u8] = if gzipped {
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut plain)
            .ok()?;
        &plain
    } else {
        body
    };
    if otlp {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        let req = ExportTraceServiceRequest::decode(bytes).ok()?;
        return Some(
            req.resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len() as u64)
                .sum(),
        );
    }
    let payload = pb::AgentPayload::decode(bytes).ok()?;
    Some(
        payload
            .tracer_payloads
            .iter()
            .flat_map(|t| &t.chunks)
            .map(|c| c.spans.len() as u64)
            .sum(),
    )
}
