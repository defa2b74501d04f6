//! The admin listener: `/health` (alive), `/ready` (accepting Firehose
//! traffic), `/metrics` (Prometheus text), the web UI (`ui`) and its JSON
//! API (`api`, guarded by `access`). Bound to loopback by default.

pub mod access;
pub mod api;
pub mod settings;
pub mod ui;

use crate::firehose::auth::AccessKeys;
use crate::lifecycle::Lifecycle;
use crate::pipeline::HandoffGauge;
use crate::telemetry::names;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct AdminState {
    pub lifecycle: Arc<Lifecycle>,
    pub prometheus: PrometheusHandle,
    pub handoff: HandoffGauge,
    pub decode_queue: crate::pipeline::QueueGauge,
    pub keys: Arc<AccessKeys>,
    pub stitcher: Option<crate::stitch::StitcherHandle>,
    pub api: Arc<api::Api>,
}

pub fn router(state: AdminState) -> Router {
    let api = state.api.clone();
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .with_state(state)
        .merge(api::routes(api.clone()))
        .merge(ui::routes(api))
}

async fn ready(State(st): State<AdminState>) -> impl IntoResponse {
    if st.lifecycle.is_ready() {
        (StatusCode::OK, "ready\n")
    } else if st.lifecycle.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn render_metrics(State(st): State<AdminState>) -> impl IntoResponse {
    // Gauges that are cheaper to read at scrape time than to keep current.
    metrics::gauge!(names::HANDOFF_QUEUED_EVENTS).set(st.handoff.queued_events() as f64);
    metrics::gauge!(names::HANDOFF_CAPACITY_EVENTS).set(st.handoff.capacity_events() as f64);
    metrics::gauge!(names::DECODE_QUEUE_BYTES).set(st.decode_queue.queued_bytes() as f64);
    metrics::gauge!(names::DECODE_QUEUE_CAPACITY_BYTES)
        .set(st.decode_queue.capacity_bytes() as f64);
    metrics::gauge!(names::ACCESS_KEYS_ACTIVE).set(st.keys.active_count() as f64);
    metrics::gauge!(names::READY).set(if st.lifecycle.is_ready() { 1.0 } else { 0.0 });
    if let Some(stitcher) = &st.stitcher {
        let snap =
            tokio::time::timeout(std::time::Duration::from_secs(2), stitcher.snapshot()).await;
        if let Ok(Ok(s)) = snap {
            metrics::gauge!(names::STITCH_OPEN_EXECUTIONS).set(s.open_executions as f64);
            metrics::gauge!(names::STITCH_RETAINED_EXECUTIONS).set(s.retained_executions as f64);
            metrics::gauge!(names::STITCH_DUPLICATE_EVENTS).set(s.duplicate_events as f64);
            metrics::gauge!(names::STITCH_LATE_EVENTS).set(s.late_events as f64);
            metrics::gauge!(names::STITCH_ORPHANED_EVENTS).set(s.orphaned_events as f64);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.prometheus.render(),
    )
}
