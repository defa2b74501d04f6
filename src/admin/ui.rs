//! The web UI: one page and its script and style, embedded in the binary
//! (no CDN, no build step, no runtime npm). The page routes itself from
//! the path; the server answers every UI path with the same page, after
//! the same read check as the API.

use super::access;
use super::api::{Api, ApiError};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

const PAGE: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

pub fn routes(api: Arc<Api>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/state-machines/{arn}", get(page))
        .route("/executions/{arn}", get(page))
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .with_state(api)
}

fn asset(kind: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

async fn page(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    access::read(&api.access, &headers)?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page runs only its own script and talks only to its origin.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        PAGE,
    ))
}
