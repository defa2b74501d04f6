//! The store's domain types (the API's wire types live in `admin::api`).

use serde::{Deserialize, Serialize};

/// An execution's status, as `DescribeExecution` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
    PendingRedrive,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Running,
        Status::Succeeded,
        Status::Failed,
        Status::TimedOut,
        Status::Aborted,
        Status::PendingRedrive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::TimedOut => "TIMED_OUT",
            Status::Aborted => "ABORTED",
            Status::PendingRedrive => "PENDING_REDRIVE",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Self::parse_bytes(s.as_bytes())
    }

    pub fn parse_bytes(s: &[u8]) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str().as_bytes() == s)
    }

    /// Counted as a failure in the health figures.
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Failed | Status::TimedOut | Status::Aborted)
    }
}

/// One execution's summary (times in milliseconds since the epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionSummary {
    pub arn: String,
    pub name: String,
    pub state_machine_arn: String,
    pub status: Status,
    pub start_ms: i64,
    pub stop_ms: Option<i64>,
    pub redrive_count: u32,
    pub error: Option<String>,
    pub cause: Option<String>,
}

impl ExecutionSummary {
    pub fn duration_ms(&self) -> Option<i64> {
        self.stop_ms.map(|s| (s - self.start_ms).max(0))
    }
}

/// A time window `[from_ms, to_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
}

/// Where a page of executions continues: after this (start, ARN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub start_ms: i64,
    pub arn: String,
}

impl Cursor {
    /// Opaque to clients: `start.arn`, base64url.
    pub fn encode(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}.{}", self.start_ms, self.arn))
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (start, arn) = text.split_once('.')?;
        Some(Cursor {
            start_ms: start.parse().ok()?,
            arn: arn.to_owned(),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionQuery {
    pub state_machine: Option<String>,
    pub status: Option<Status>,
    pub window: Window,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub executions: Vec<ExecutionSummary>,
    pub next: Option<Cursor>,
}

impl Page {
    /// From up to `limit + 1` rows, newest first (backends fetch one more
    /// than the page to know whether another follows).
    pub fn from_rows(mut executions: Vec<ExecutionSummary>, limit: usize) -> Page {
        let next = (executions.len() > limit).then(|| {
            executions.truncate(limit);
            let last = &executions[limit - 1];
            Cursor {
                start_ms: last.start_ms,
                arn: last.arn.clone(),
            }
        });
        Page { executions, next }
    }
}

/// A state's span as the map needs it (attempts and containers apart).
#[derive(Debug, Clone, PartialEq)]
pub struct StateSpan {
    pub execution_arn: String,
    pub span_id: u64,
    pub parent_id: u64,
    /// The operation (`aws.stepfunctions.state`, `...map.iteration`, ...).
    pub op: String,
    /// State name (or `Map[3]`, a branch's first state).
    pub resource: String,
    pub state_type: Option<String>,
    pub start_ns: i64,
    pub duration_ns: i64,
    pub error: bool,
    /// A retry attempt (n ≥ 1) of a Task, a child of the state's span.
    pub attempt: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredLog {
    pub timestamp_ms: i64,
    pub span_id: u64,
    pub error: bool,
    /// The event as JSON (as in the CloudWatch line).
    pub message: String,
}

/// A state machine's ASL definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub state_machine_arn: String,
    pub definition: String,
    /// `file` (loaded through the API) or `aws`.
    pub source: String,
    pub loaded_ms: i64,
}

impl StateSpan {
    /// From a stored span's JSON (the jsonl `S`).
    pub fn from_json(execution_arn: &str, json: &str) -> Option<StateSpan> {
        #[derive(Deserialize)]
        struct Raw {
            span_id: u64,
            parent_id: u64,
            name: String,
            resource: String,
            start: i64,
            duration: i64,
            error: i32,
            meta: std::collections::HashMap<String, String>,
        }
        let r: Raw = serde_json::from_str(json).ok()?;
        Some(StateSpan {
            execution_arn: execution_arn.to_owned(),
            span_id: r.span_id,
            parent_id: r.parent_id,
            op: r.name,
            resource: r.resource,
            state_type: r.meta.get("step_function.state_type").cloned(),
            start_ns: r.start,
            duration_ns: r.duration,
            error: r.error != 0,
            attempt: r.meta.contains_key("step_function.attempt"),
        })
    }
}
