//! Stage 0: the Firehose HTTP endpoint protocol v1.0.

pub mod attributes;
pub mod auth;
pub mod contract;
pub mod errors;
pub mod handler;
pub mod models;
pub mod settings;

pub use handler::IngestState;

use crate::clock::Clock;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

/// The ingest listener's routes: `POST /firehose` and `GET /health` (for load
/// balancer checks, so they never hit the Firehose path).
pub fn router(state: Arc<IngestState>, request_timeout: Duration) -> Router {
    let clock: Arc<dyn Clock> = state.clock.clone();
    let max_body = state.limits.max_body_bytes;
    let firehose = post(handler::firehose)
        // Content-Length pre-check; the handler also caps streamed bodies.
        .layer::<_, Infallible>(RequestBodyLimitLayer::new(max_body))
        // Answer well inside Firehose's 3-minute deadline.
        .layer::<_, Infallible>(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        .layer::<_, Infallible>(axum::middleware::from_fn_with_state(
            clock,
            contract::enforce_contract,
        ));
    Router::new()
        .route("/firehose", firehose)
        .route("/health", get(|| async { "ok\n" }))
        .with_state(state)
}
