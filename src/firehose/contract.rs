//! The response contract, enforced at the edge of the route: every answer is
//! JSON `{"requestId", "timestamp", "errorMessage"?}` with
//! `Content-Type: application/json` and no content encoding — including
//! answers produced by tower layers (timeout, body limit) and panics, which
//! Firehose would otherwise treat as malformed (firehose-protocol.md §1.4).

use super::errors::FirehoseError;
use super::models::{cap_chars, headers, FirehoseResponse, MAX_ERROR_MESSAGE_CHARS};
use crate::clock::Clock;
use crate::telemetry::names;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tracing::Instrument;

/// Marks a response that already follows the contract.
#[derive(Debug, Clone, Copy)]
struct Contract;

/// The request id Firehose sent in the header ("" when missing).
pub fn header_request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(headers::REQUEST_ID)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .filter(|s| !s.is_empty())
}

/// Builds a contract response.
pub fn contract_response(
    status: StatusCode,
    request_id: &str,
    timestamp_ms: i64,
    error_message: Option<&str>,
) -> Response {
    let body = serde_json::to_vec(&FirehoseResponse {
        request_id,
        timestamp: timestamp_ms,
        error_message: error_message.map(|m| cap_chars(m, MAX_ERROR_MESSAGE_CHARS)),
    })
    .expect("response serialises");
    let mut resp = Response::new(Body::from(body.clone()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    resp.extensions_mut().insert(Contract);
    resp
}

/// The contract response for an error.
pub fn error_response(err: &FirehoseError, request_id: &str, timestamp_ms: i64) -> Response {
    metrics::counter!(names::FIREHOSE_REJECTIONS, "reason" => err.reason()).increment(1);
    contract_response(
        err.status(),
        request_id,
        timestamp_ms,
        Some(&err.to_string()),
    )
}

/// Middleware: request-id span, panic catching, reshaping of non-contract
/// answers, and the request counters.
pub async fn enforce_contract(
    State(clock): State<Arc<dyn Clock>>,
    req: Request,
    next: Next,
) -> Response {
    let started = tokio::time::Instant::now();
    let request_id = header_request_id(req.headers()).unwrap_or_default();
    let span = tracing::info_span!("firehose", request_id = %request_id);
    let outcome = AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .instrument(span.clone())
        .await;
    let resp = match outcome {
        Ok(resp) if resp.extensions().get::<Contract>().is_some() => resp,
        Ok(resp) => {
            reshape(resp, &request_id, clock.now_ms())
                .instrument(span.clone())
                .await
        }
        Err(panic) => {
            let what = panic_message(&panic);
            span.in_scope(|| tracing::error!(panic = %what, "Firehose handler panicked"));
            error_response(
                &FirehoseError::Internal("request handler failed".into()),
                &request_id,
                clock.now_ms(),
            )
        }
    };
    let status = resp.status();
    metrics::counter!(names::FIREHOSE_REQUESTS, "status" => status.as_str().to_owned())
        .increment(1);
    metrics::histogram!(names::FIREHOSE_REQUEST_DURATION).record(started.elapsed().as_secs_f64());
    resp
}

/// Rewrites a response produced outside our handler (tower layers, axum's
/// own rejections) into the contract, keeping its status.
async fn reshape(resp: Response, request_id: &str, now_ms: i64) -> Response {
    let status = resp.status();
    let text = match axum::body::to_bytes(resp.into_body(), 4096).await {
        Ok(b) if !b.is_empty() => String::from_utf8_lossy(&b).trim().to_owned(),
        _ => String::new(),
    };
    let message = match (status, text.is_empty()) {
        (StatusCode::PAYLOAD_TOO_LARGE, _) => "request body too large".to_owned(),
        (StatusCode::SERVICE_UNAVAILABLE | StatusCode::REQUEST_TIMEOUT, true) => {
            "request timed out, retry later".to_owned()
        }
        (_, true) => status.canonical_reason().unwrap_or("error").to_owned(),
        (_, false) => text,
    };
    // A 2xx that is not 200 counts as failure for Firehose; no layer of ours
    // makes one, but never let one through as if it were success.
    let status = if status.is_success() && status != StatusCode::OK {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        status
    };
    tracing::warn!(status = status.as_u16(), error = %message, "request refused before the handler");
    metrics::counter!(names::FIREHOSE_REJECTIONS, "reason" => "layer").increment(1);
    contract_response(status, request_id, now_ms, Some(&message))
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use axum::routing::post;
    use axum::Router;
    use std::time::Duration;
    use tower::ServiceExt;

    fn app(router: Router<()>) -> Router {
        let clock: Arc<dyn Clock> = Arc::new(FixedClock(1_700_000_000_123));
        router.layer(axum::middleware::from_fn_with_state(
            clock,
            enforce_contract,
        ))
    }

    async fn call(app: Router, body: &'static str) -> (StatusCode, HeaderMap, serde_json::Value) {
        let req = Request::post("/firehose")
            .header(headers::REQUEST_ID, "rid-1")
            .body(Body::from(body))
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let h = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, h, serde_json::from_slice(&bytes).unwrap())
    }

    fn assert_contract(h: &HeaderMap, v: &serde_json::Value) {
        assert_eq!(h[header::CONTENT_TYPE], "application/json");
        assert!(h.get(header::CONTENT_ENCODING).is_none());
        assert_eq!(v["requestId"], "rid-1");
        assert_eq!(v["timestamp"], 1_700_000_000_123i64);
        assert!(v["errorMessage"].is_string());
    }

    #[tokio::test]
    async fn panic_becomes_500_in_contract_form() {
        async fn boom() -> &'static str {
            panic!("injected")
        }
        let (status, h, v) = call(app(Router::new().route("/firehose", post(boom))), "{}").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_contract(&h, &v);
    }

    /// The same over a real loopback socket: the connection survives the
    /// panic and answers the next request.
    #[tokio::test]
    async fn panic_over_a_socket_keeps_the_connection() {
        async fn maybe_boom(body: String) -> &'static str {
            if body == "boom" {
                panic!("injected");
            }
            "fine"
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = app(Router::new().route("/firehose", post(maybe_boom)));
        tokio::spawn(async move { axum::serve(listener, router).await });
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = |body: &str| {
            format!(
                "POST /firehose HTTP/1.1\r\nHost: x\r\nX-Amz-Firehose-Request-Id: rid-1\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        c.write_all(req("boom").as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = c.read(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(text.starts_with("HTTP/1.1 500"), "{text}");
        assert!(text.contains("content-type: application/json"), "{text}");
        assert!(text.contains(r#""requestId":"rid-1""#), "{text}");
        c.write_all(req("ok").as_bytes()).await.unwrap();
        let n = c.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn body_limit_layer_rejection_is_reshaped() {
        async fn read(body: Body) -> StatusCode {
            match axum::body::to_bytes(body, usize::MAX).await {
                Ok(_) => StatusCode::OK,
                Err(_) => StatusCode::PAYLOAD_TOO_LARGE,
            }
        }
        let r = Router::new().route(
            "/firehose",
            post(read).layer(tower_http::limit::RequestBodyLimitLayer::new(4)),
        );
        let (status, h, v) = call(app(r), "0123456789").await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_contract(&h, &v);
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_layer_rejection_is_reshaped() {
        async fn slow() -> &'static str {
            tokio::time::sleep(Duration::from_secs(600)).await;
            "late"
        }
        let r = Router::new().route(
            "/firehose",
            post(slow).layer(tower_http::timeout::TimeoutLayer::with_status_code(
                StatusCode::SERVICE_UNAVAILABLE,
                Duration::from_secs(1),
            )),
        );
        let (status, h, v) = call(app(r), "{}").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_contract(&h, &v);
    }

    #[tokio::test]
    async fn other_2xx_never_passes_as_success() {
        async fn accepted() -> StatusCode {
            StatusCode::ACCEPTED
        }
        let (status, h, v) =
            call(app(Router::new().route("/firehose", post(accepted))), "{}").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_contract(&h, &v);
    }

    #[test]
    fn error_message_is_capped() {
        let long = "é".repeat(10_000);
        let resp = contract_response(StatusCode::BAD_REQUEST, "r", 1, Some(&long));
        let len: usize = resp.headers()[header::CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(len < 8192 * 2 + 100);
    }
}
