//! The UI's JSON API (spec/interfaces.md "Web UI and HTTP API"): wire
//! types here, figures from `store::stats` and `store::graph`, rows from
//! the store (on the blocking pool: SQLite calls block).

use super::access::{self, Access, Denied};
use crate::aws::{self, Aws, AwsError};
use crate::clock::Clock;
use crate::store::graph::{self, Laid, Skeleton};
use crate::store::stats::{self, Health};
use crate::store::{
    asl, Cursor, Definition, ExecutionQuery, ExecutionSummary, StateSpan, Status, Store,
    StoreError, Window,
};
use crate::telemetry::names;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::sync::Arc;

const DAY_MS: i64 = 24 * 3600 * 1000;
/// Executions whose spans draw a state machine's map at most.
const MAP_EXECUTIONS: usize = 500;
/// Executions whose paths make an observed graph.
const OBSERVED_EXECUTIONS: usize = 50;
const LOGS_PER_EXECUTION: usize = 2000;

pub struct Api {
    pub store: Option<Arc<dyn Store>>,
    pub access: Access,
    pub clock: Arc<dyn Clock>,
    /// `https://app.datadoghq.com` when Datadog export is on: trace links.
    pub datadog_app: Option<String>,
    /// Step Functions calls (`STEPSTITCH_AWS`): definitions, actions.
    pub aws: Option<Arc<Aws>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("store", &self.store.is_some())
            .field("access", &self.access)
            .field("aws", &self.aws.as_ref().map(|a| a.mode))
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error("the execution store is off (STEPSTITCH_STORE=off) or could not be opened; see the service log")]
    NoStore,
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Aws(#[from] AwsError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Denied(Denied::CrossSite) => StatusCode::FORBIDDEN,
            ApiError::Denied(_) => StatusCode::UNAUTHORIZED,
            ApiError::NoStore | ApiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Aws(e) => match e {
                AwsError::NotFound(_) => StatusCode::NOT_FOUND,
                AwsError::NotRedrivable(_) | AwsError::AlreadyExists(_) => StatusCode::CONFLICT,
                AwsError::Invalid(_) => StatusCode::BAD_REQUEST,
                AwsError::Throttled { .. } | AwsError::Budget(_) => StatusCode::TOO_MANY_REQUESTS,
                AwsError::Off { .. } => StatusCode::NOT_IMPLEMENTED,
                // AWS (or the way to it) refused: not our caller's fault.
                _ => StatusCode::BAD_GATEWAY,
            },
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if let ApiError::Denied(d) = &self {
            metrics::counter!(names::API_REQUESTS, "outcome" => d.reason()).increment(1);
        }
        if let ApiError::Store(e) = &self {
            tracing::error!(error = %e, "store read failed");
        }
        let mut r = (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        r
    }
}

type Shared = Arc<Api>;
type Answer<T> = Result<Json<T>, ApiError>;

pub fn routes(api: Shared) -> Router {
    Router::new()
        .route("/api/v1/state-machines", get(state_machines))
        .route("/api/v1/state-machines/{arn}/map", get(state_machine_map))
        .route(
            "/api/v1/state-machines/{arn}/definition",
            put(put_definition),
        )
        .route("/api/v1/executions", get(executions))
        .route("/api/v1/executions/{arn}", get(execution))
        .route("/api/v1/executions/{arn}/map", get(execution_map))
        .route("/api/v1/executions/{arn}/{action}", post(action))
        .with_state(api)
}

impl Api {
    /// Runs a store call on the blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = self.store.clone().ok_or(ApiError::NoStore)?;
        tokio::task::spawn_blocking(move || f(&*store))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
    }

    fn window(
        &self,
        from: &Option<String>,
        to: &Option<String>,
        default_ms: i64,
    ) -> Result<Window, ApiError> {
        let now = self.clock.now_ms();
        let to_ms = match to {
            Some(t) => time(t, "to")?,
            None => now + 1,
        };
        let from_ms = match from {
            Some(f) => time(f, "from")?,
            None => to_ms.saturating_sub(default_ms),
        };
        if from_ms >= to_ms {
            return Err(ApiError::BadRequest("from must be before to".into()));
        }
        Ok(Window { from_ms, to_ms })
    }
}

fn time(v: &str, name: &str) -> Result<i64, ApiError> {
    let t = humantime::parse_rfc3339_weak(v).map_err(|_| {
        ApiError::BadRequest(format!(
            "{name}: not an RFC 3339 time: {v:?} (e.g. 2026-12-06T15:00:00Z)"
        ))
    })?;
    Ok(t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64))
}

pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[derive(Deserialize)]
pub struct WindowQuery {
    from: Option<String>,
    to: Option<String>,
    /// Sparkline slices (default 24, at most 200).
    buckets: Option<usize>,
}

#[derive(Serialize)]
struct Sparkline {
    executions: Vec<u64>,
    errors: Vec<u64>,
}

#[derive(Serialize)]
struct StateMachineJson {
    arn: String,
    name: String,
    executions: u64,
    succeeded: u64,
    failed: u64,
    timed_out: u64,
    aborted: u64,
    running: u64,
    pending_redrive: u64,
    failure_rate: f64,
    p50_ms: Option<i64>,
    p95_ms: Option<i64>,
    p99_ms: Option<i64>,
    last_execution_at: Option<String>,
    last_failure_at: Option<String>,
    sparkline: Sparkline,
}

impl From<Health> for StateMachineJson {
    fn from(h: Health) -> Self {
        StateMachineJson {
            failure_rate: if h.executions == 0 {
                0.0
            } else {
                h.failures() as f64 / h.executions as f64
            },
            sparkline: Sparkline {
                executions: h.buckets.iter().map(|b| b.0).collect(),
                errors: h.buckets.iter().map(|b| b.1).collect(),
            },
            arn: h.arn,
            name: h.name,
            executions: h.executions,
            succeeded: h.succeeded,
            failed: h.failed,
            timed_out: h.timed_out,
            aborted: h.aborted,
            running: h.running,
            pending_redrive: h.pending_redrive,
            p50_ms: h.p50_ms,
            p95_ms: h.p95_ms,
            p99_ms: h.p99_ms,
            last_execution_at: h.last_execution_ms.map(rfc3339),
            last_failure_at: h.last_failure_ms.map(rfc3339),
        }
    }
}

#[derive(Serialize)]
struct StateMachines {
    from: String,
    to: String,
    state_machines: Vec<StateMachineJson>,
}

async fn state_machines(
    State(api): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<WindowQuery>,
) -> Answer<StateMachines> {
    access::read(&api.access, &headers)?;
    let w = api.window(&q.from, &q.to, DAY_MS)?;
    let buckets = q.buckets.unwrap_or(24).min(200);
    let started = api.with(move |s| Ok(s.state_machines(w)?)).await?;
    Ok(Json(StateMachines {
        from: rfc3339(w.from_ms),
        to: rfc3339(w.to_ms),
        state_machines: started
            .iter()
            .map(|s| stats::health(s, w, buckets).into())
            .collect(),
    }))
}

#[derive(Serialize)]
pub struct ExecutionJson {
    arn: String,
    name: String,
    state_machine_arn: String,
    status: Status,
    start: String,
    stop: Option<String>,
    duration_ms: Option<i64>,
    redrive_count: u32,
    error: Option<String>,
    cause: Option<String>,
}

impl From<ExecutionSummary> for ExecutionJson {
    fn from(e: ExecutionSummary) -> Self {
        ExecutionJson {
            duration_ms: e.duration_ms(),
            start: rfc3339(e.start_ms),
            stop: e.stop_ms.map(rfc3339),
            arn: e.arn,
            name: e.name,
            state_machine_arn: e.state_machine_arn,
            status: e.status,
            redrive_count: e.redrive_count,
            error: e.error,
            cause: e.cause,
        }
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    state_machine: Option<String>,
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct Executions {
    executions: Vec<ExecutionJson>,
    next_cursor: Option<String>,
}

async fn executions(
    State(api): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Answer<Executions> {
    access::read(&api.access, &headers)?;
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "status: {s:?} is not one of RUNNING SUCCEEDED FAILED TIMED_OUT ABORTED PENDING_REDRIVE"
            ))
        })?),
    };
    let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(
            Cursor::decode(c)
                .ok_or_else(|| ApiError::BadRequest("cursor: not one this API gave".into()))?,
        ),
    };
    let window = match (&q.from, &q.to) {
        (None, None) => Window {
            from_ms: i64::MIN,
            to_ms: i64::MAX,
        },
        _ => api.window(&q.from, &q.to, DAY_MS)?,
    };
    let query = ExecutionQuery {
        state_machine: q.state_machine.filter(|s| !s.is_empty()),
        status,
        window,
        limit: q.limit.unwrap_or(50).clamp(1, 500),
        cursor,
    };
    let page = api.with(move |s| Ok(s.executions(&query)?)).await?;
    Ok(Json(Executions {
        executions: page.executions.into_iter().map(Into::into).collect(),
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

#[derive(Serialize)]
struct LogJson {
    timestamp: String,
    span_id: u64,
    error: bool,
    event: Box<RawValue>,
}

#[derive(Serialize)]
struct Links {
    datadog_trace: Option<String>,
}

#[derive(Serialize)]
struct ExecutionDetail {
    #[serde(flatten)]
    summary: ExecutionJson,
    spans: Vec<Box<RawValue>>,
    logs: Vec<LogJson>,
    links: Links,
    /// The AWS actions this server may take (STEPSTITCH_AWS=actions) and
    /// that fit the execution's status; the UI shows one button each.
    actions: Vec<&'static str>,
}

/// Which actions make sense for an execution in `status`.
fn actions_for(status: Status) -> Vec<&'static str> {
    match status {
        Status::Running => vec!["stop"],
        Status::Failed | Status::TimedOut | Status::Aborted => vec!["redrive", "retry"],
        Status::Succeeded => vec!["retry"],
        Status::PendingRedrive => vec![],
    }
}

async fn execution(
    State(api): State<Shared>,
    headers: HeaderMap,
    Path(arn): Path<String>,
) -> Answer<ExecutionDetail> {
    access::read(&api.access, &headers)?;
    let (summary, spans, logs) = api
        .with(move |s| {
            let e = s.execution(&arn)?.ok_or(ApiError::NotFound(arn.clone()))?;
            Ok((e, s.spans(&arn)?, s.logs(&arn, LOGS_PER_EXECUTION)?))
        })
        .await?;
    let spans: Vec<Box<RawValue>> = spans
        .into_iter()
        .filter_map(|j| RawValue::from_string(j).ok())
        .collect();
    let root_trace = spans.iter().find_map(|s| {
        #[derive(Deserialize)]
        struct Ids {
            trace_id: u64,
            parent_id: u64,
        }
        let ids: Ids = serde_json::from_str(s.get()).ok()?;
        (ids.parent_id == 0).then_some(ids.trace_id)
    });
    let actions = match &api.aws {
        Some(a) if a.mode == aws::AwsMode::Actions => actions_for(summary.status),
        _ => Vec::new(),
    };
    Ok(Json(ExecutionDetail {
        actions,
        links: Links {
            datadog_trace: api
                .datadog_app
                .as_ref()
                .zip(root_trace)
                .map(|(app, t)| format!("{app}/apm/trace/{t}")),
        },
        summary: summary.into(),
        spans,
        logs: logs
            .into_iter()
            .filter_map(|l| {
                Some(LogJson {
                    timestamp: rfc3339(l.timestamp_ms),
                    span_id: l.span_id,
                    error: l.error,
                    event: RawValue::from_string(l.message).ok()?,
                })
            })
            .collect(),
    }))
}

#[derive(Serialize)]
struct NodeJson {
    id: String,
    name: String,
    #[serde(rename = "type")]
    kind: String,
    parent: Option<String>,
    start: bool,
    visited: bool,
    /// This execution: SUCCEEDED or FAILED (a state that failed on one of
    /// its visits); a state machine's map: none.
    status: Option<&'static str>,
    /// This execution: the longest visit; a state machine: the p95.
    duration_ms: Option<i64>,
    retries: u64,
    visits: u64,
    failures: u64,
}

#[derive(Serialize)]
struct EdgeJson {
    from: String,
    to: String,
    taken: bool,
}

#[derive(Serialize)]
struct MapJson {
    source: &'static str,
    nodes: Vec<NodeJson>,
    edges: Vec<EdgeJson>,
}

fn map_json(source: &'static str, laid: Laid, one_execution: bool) -> MapJson {
    let Laid {
        skeleton,
        figures,
        taken,
    } = laid;
    let none = graph::NodeFigures::default();
    MapJson {
        source,
        nodes: skeleton
            .nodes
            .into_iter()
            .map(|n| {
                let f = figures.get(&n.id).unwrap_or(&none);
                let visited = f.visits > 0;
                NodeJson {
                    visited,
                    status: (one_execution && visited).then_some(if f.failures > 0 {
                        "FAILED"
                    } else {
                        "SUCCEEDED"
                    }),
                    duration_ms: if one_execution {
                        f.max_ms()
                    } else {
                        f.p95_ms()
                    },
                    retries: f.retries,
                    visits: f.visits,
                    failures: f.failures,
                    id: n.id,
                    name: n.name,
                    kind: n.kind,
                    parent: n.parent,
                    start: n.start,
                }
            })
            .collect(),
        edges: skeleton
            .edges
            .into_iter()
            .map(|(from, to)| EdgeJson {
                taken: taken.contains(&(from.clone(), to.clone())),
                from,
                to,
            })
            .collect(),
    }
}

/// The definition's graph when the store has one, else the graph observed
/// over the state machine's newest executions.
fn skeleton(s: &dyn Store, sm: &str) -> Result<(&'static str, Skeleton), ApiError> {
    if let Some(d) = s.definition(sm)? {
        match asl::parse(&d.definition) {
            Ok(g) => return Ok(("definition", g)),
            Err(e) => tracing::warn!(error = %e, "stored definition unreadable; using observed"),
        }
    }
    let all = Window {
        from_ms: i64::MIN,
        to_ms: i64::MAX,
    };
    Ok((
        "observed",
        graph::observed(&s.state_spans(sm, all, OBSERVED_EXECUTIONS)?),
    ))
}

async fn execution_map(
    State(api): State<Shared>,
    headers: HeaderMap,
    Path(arn): Path<String>,
) -> Answer<MapJson> {
    access::read(&api.access, &headers)?;
    let fetched = api.definition_for(&arn).await;
    let (source, laid) = api
        .with(move |s| {
            let e = s.execution(&arn)?.ok_or(ApiError::NotFound(arn.clone()))?;
            let spans: Vec<StateSpan> = s
                .spans(&arn)?
                .iter()
                .filter_map(|j| StateSpan::from_json(&arn, j))
                .collect();
            let (source, g) = match fetched.as_ref().map(|d| asl::parse(d)) {
                Some(Ok(g)) => ("definition", g),
                _ => skeleton(s, &e.state_machine_arn)?,
            };
            Ok((source, graph::lay(g, &spans)))
        })
        .await?;
    Ok(Json(map_json(source, laid, true)))
}

impl Api {
    /// The definition an execution ran, from AWS (`STEPSTITCH_AWS` read or
    /// actions), stored by state machine ARN (latest) and by ARN +
    /// revision; `None` when AWS is off or says no (logged, counted): the
    /// map then uses a stored or observed graph.
    async fn definition_for(&self, execution_arn: &str) -> Option<String> {
        let aws = self.aws.as_ref()?;
        let d = aws.definitions.for_execution(&aws.sfn, execution_arn).await;
        self.kept(execution_arn, d).await
    }

    /// A state machine's current definition from AWS, as `definition_for`.
    async fn current_definition(&self, state_machine_arn: &str) -> Option<String> {
        let aws = self.aws.as_ref()?;
        let d = aws.definitions.current(&aws.sfn, state_machine_arn).await;
        self.kept(state_machine_arn, d).await
    }

    /// AWS's answer for `arn`: stored and its text, or logged and `None`.
    async fn kept(
        &self,
        arn: &str,
        d: Result<Arc<aws::DefinitionInfo>, AwsError>,
    ) -> Option<String> {
        match d {
            Ok(d) => Some(self.keep_definition(d).await),
            Err(e) => {
                tracing::info!(arn, error = %e, "no definition from AWS");
                None
            }
        }
    }

    /// Stores a definition from AWS unless the store has that revision.
    async fn keep_definition(&self, d: Arc<aws::DefinitionInfo>) -> String {
        let source = format!("aws:{}", d.revision);
        let at = self.clock.now_ms();
        let text = d.definition.clone();
        let stored = self
            .with(move |s| {
                let current = s.definition(&d.state_machine_arn)?;
                if current.as_ref().map(|c| c.source.as_str()) == Some(source.as_str()) {
                    return Ok(());
                }
                for key in [
                    d.state_machine_arn.clone(),
                    format!("{}@{}", d.state_machine_arn, d.revision),
                ] {
                    s.put_definition(&Definition {
                        state_machine_arn: key,
                        definition: d.definition.clone(),
                        source: source.clone(),
                        loaded_ms: at,
                    })?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = stored {
            tracing::warn!(error = %e, "storing a definition failed");
        }
        text
    }
}

async fn state_machine_map(
    State(api): State<Shared>,
    headers: HeaderMap,
    Path(arn): Path<String>,
    Query(q): Query<WindowQuery>,
) -> Answer<MapJson> {
    access::read(&api.access, &headers)?;
    let w = api.window(&q.from, &q.to, DAY_MS)?;
    let fetched = api.current_definition(&arn).await;
    let (source, laid) = api
        .with(move |s| {
            let (source, g) = match fetched.as_ref().map(|d| asl::parse(d)) {
                Some(Ok(g)) => ("definition", g),
                _ => skeleton(s, &arn)?,
            };
            Ok((
                source,
                graph::lay(g, &s.state_spans(&arn, w, MAP_EXECUTIONS)?),
            ))
        })
        .await?;
    Ok(Json(map_json(source, laid, false)))
}

#[derive(Serialize)]
struct DefinitionStored {
    state_machine_arn: String,
    states: usize,
}

/// Loads a state machine's ASL definition (the body) for its map.
async fn put_definition(
    State(api): State<Shared>,
    headers: HeaderMap,
    Path(arn): Path<String>,
    body: String,
) -> Answer<DefinitionStored> {
    access::mutate(&api.access, &headers)?;
    let g = asl::parse(&body).map_err(|e| ApiError::BadRequest(format!("definition: {e}")))?;
    let states = g.nodes.iter().filter(|n| n.kind != "Branch").count();
    let d = Definition {
        state_machine_arn: arn.clone(),
        definition: body,
        source: "file".into(),
        loaded_ms: api.clock.now_ms(),
    };
    api.with(move |s| Ok(s.put_definition(&d)?)).await?;
    tracing::info!(state_machine_arn = %arn, states, "definition loaded");
    Ok(Json(DefinitionStored {
        state_machine_arn: arn,
        states,
    }))
}

/// The body of an action (all optional): `request_id` makes a repeat of
/// the same request answer the same (the UI sends one per dialog), `error`
/// and `cause` are what a stop records.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    request_id: Option<String>,
    error: Option<String>,
    cause: Option<String>,
}

/// retry / redrive / stop: a token, the UI's own origin, AWS actions on;
/// every attempt is an audit line and a count, whatever its result.
async fn action(
    State(api): State<Shared>,
    headers: HeaderMap,
    Path((arn, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<aws::Outcome>, ApiError> {
    let Some(act) = aws::Action::parse(&action) else {
        return Err(ApiError::NotFound(format!("action {action:?}")));
    };
    access::mutate(&api.access, &headers)?;
    let who = access::who(&headers);
    let b: ActionBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActionBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("action body: {e}")))?
    };
    if b.request_id.as_ref().is_some_and(|r| r.len() > 128) {
        return Err(ApiError::BadRequest(
            "request_id: at most 128 characters".into(),
        ));
    }
    let (answer, replayed) = match &api.aws {
        Some(aws) => {
            let req = aws::Request {
                request_id: b.request_id.unwrap_or_default(),
                error: b.error,
                cause: b.cause,
            };
            aws.act(act, &arn, req).await
        }
        None => {
            let off = AwsError::Off {
                call: act.name(),
                needed: "actions",
            };
            (Err(off), false)
        }
    };
    let result = match &answer {
        Ok(o) => o.result,
        Err(e) => e.outcome(),
    };
    let result = if replayed { "replayed" } else { result };
    metrics::counter!(names::AWS_ACTIONS, "action" => act.name(), "result" => result).increment(1);
    match &answer {
        Ok(o) => tracing::info!(
            target: "stepstitch::audit",
            who,
            action = act.name(),
            execution_arn = %arn,
            result,
            new_execution_arn = o.source_execution_arn.as_ref().map(|_| o.execution_arn.as_str()),
            "AWS action"
        ),
        Err(e) => tracing::warn!(
            target: "stepstitch::audit",
            who,
            action = act.name(),
            execution_arn = %arn,
            result,
            error = %e,
            "AWS action refused"
        ),
    }
    Ok(Json(answer?))
}
