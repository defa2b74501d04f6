//! Events of one execution → its spans (trace-model.md §2–§3).
//!
//! A pure function of the execution's deduplicated event set: events are
//! walked in id order and placed by the `previous_event_id` graph, never by
//! arrival order, so any permutation or duplication of the input yields the
//! same spans with the same ids.
//!
//! Placement keeps, for every event, a context `(frame, state)`: the frame
//! is the container the event runs in (the execution, a redrive, a Map
//! iteration, a Parallel branch) and the state is the state span it belongs
//! to, if any. Close events whose `previous_event_id` points deep into a
//! child (AWS links `ParallelStateExited` to the last event of a branch,
//! `MapIterationStarted` n+1 to the last event of iteration n) are matched by
//! walking up the frames to the state or iteration they name.

use super::context::{self, TraceContext};
use super::held::IdSet;
use super::ids;
use super::output::MetricSample;
use super::span::{op, Span};
use super::tags::{Meta, Metrics};
use super::tagsets::{TagSet, TagSets};
use crate::events::{Details, Event, EventKind, ExecutionArn, Failure, Payload};
use smol_str::SmolStr;

// A child of this module so it can read the placement's private parts.
#[path = "signals.rs"]
mod signals;

/// How spans are dressed: service, tags, payload capture.
#[derive(Debug, Clone)]
pub struct SpanConfig {
    /// Overrides the default service (the state machine name).
    pub service: Option<String>,
    pub env: Option<String>,
    pub version: Option<String>,
    /// Static `key:value` tags added to every span.
    pub tags: Vec<(String, String)>,
    /// Payload capture limit per value in bytes; 0 = no capture.
    pub max_payload_bytes: usize,
    /// JSON object keys whose values are replaced by `"[redacted]"` in captured payloads.
    pub redact_keys: Vec<String>,
    /// Produce enhanced metric samples (trace-model.md §6).
    pub enhanced_metrics: bool,
    /// State machine names or ARNs that never produce enhanced metrics.
    pub enhanced_metrics_exclude: Vec<String>,
    /// Work out which span each event belongs to (needed to forward logs).
    pub event_owners: bool,
}

impl Default for SpanConfig {
    fn default() -> Self {
        Self {
            service: None,
            env: None,
            version: None,
            tags: Vec::new(),
            max_payload_bytes: 16 * 1024,
            redact_keys: Vec::new(),
            enhanced_metrics: true,
            enhanced_metrics_exclude: Vec::new(),
            event_owners: false,
        }
    }
}

/// `error.message` is cut to this many bytes.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 4096;

type FrameIdx = usize;
type StateIdx = usize;

#[derive(Debug)]
enum FrameKind {
    Execution,
    Redrive {
        event: usize,
        end: Option<usize>,
    },
    Iteration {
        name: String,
        index: u64,
        start: usize,
        end: Option<usize>,
    },
    Branch {
        first_state: StateIdx,
    },
}

#[derive(Debug)]
struct Frame {
    kind: FrameKind,
    /// The state span this frame runs inside (Map or Parallel), if any.
    parent_state: Option<StateIdx>,
    /// The frame enclosing this one.
    parent_frame: Option<FrameIdx>,
    /// Span id of this frame's own span (the execution, redrive, iteration or branch).
    span_id: u64,
}

#[derive(Debug, Default)]
struct Attempt {
    scheduled: usize,
    end: Option<usize>,
    failure: Option<Failure>,
}

#[derive(Debug)]
struct StateRec {
    frame: FrameIdx,
    name: String,
    state_type: &'static str,
    entered: usize,
    exited: Option<usize>,
    /// `*StateAborted`, or the container's own Failed/Aborted event.
    closed_by: Option<usize>,
    last: usize,
    failure: Option<Failure>,
    attempts: Vec<Attempt>,
    resource_type: Option<String>,
    resource: Option<String>,
    function_arn: Option<String>,
    map_runs: Vec<(usize, Option<usize>)>,
    orphaned: bool,
    span_id: u64,
}

fn state_type(kind: &EventKind) -> &'static str {
    use EventKind::*;
    match kind {
        TaskStateEntered => "Task",
        MapStateEntered => "Map",
        ParallelStateEntered => "Parallel",
        ChoiceStateEntered => "Choice",
        WaitStateEntered => "Wait",
        PassStateEntered => "Pass",
        SucceedStateEntered => "Succeed",
        FailStateEntered => "Fail",
        _ => "Unknown",
    }
}

fn is_state_entered(kind: &EventKind) -> bool {
    kind.as_str().ends_with("StateEntered")
}

fn is_state_exited(kind: &EventKind) -> bool {
    kind.as_str().ends_with("StateExited")
}

fn is_attempt_start(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::TaskScheduled
            | EventKind::LambdaFunctionScheduled
            | EventKind::ActivityScheduled
    )
}

fn is_attempt_end(kind: &EventKind) -> bool {
    use EventKind::*;
    matches!(
        kind,
        TaskSucceeded
            | TaskFailed
            | TaskTimedOut
            | TaskStartFailed
            | TaskSubmitFailed
            | LambdaFunctionSucceeded
            | LambdaFunctionFailed
            | LambdaFunctionTimedOut
            | LambdaFunctionScheduleFailed
            | LambdaFunctionStartFailed
            | ActivitySucceeded
            | ActivityFailed
            | ActivityTimedOut
            | ActivityScheduleFailed
    )
}

/// Cuts `s` to at most `max` bytes at a UTF-8 boundary.
pub fn cut_utf8(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

fn redact(text: &str, keys: &[String]) -> Option<String> {
    fn walk(v: &mut serde_json::Value, keys: &[String]) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, val) in m.iter_mut() {
                    if keys.iter().any(|r| r == k) {
                        *val = serde_json::Value::String("[redacted]".into());
                    } else {
                        walk(val, keys);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| walk(x, keys)),
            _ => {}
        }
    }
    let mut v: serde_json::Value = serde_json::from_str(text).ok()?;
    walk(&mut v, keys);
    Some(v.to_string())
}

struct Builder<'a> {
    /// The execution's events, deduplicated and in id order (borrowed: a
    /// build never copies events or their payloads).
    events: &'a [&'a Event],
    cfg: &'a SpanConfig,
    arn: &'a str,
    frames: Vec<Frame>,
    states: Vec<StateRec>,
    /// Where each event (by position) was placed; looked up by the id of
    /// the event that caused the next one.
    ctx: Vec<Option<(FrameIdx, Option<StateIdx>)>>,
    orphans: usize,
    /// Events already emitted and dropped (closed top-level states of a
    /// running execution): a link to one is known, at the execution level.
    pruned: &'a IdSet,
}

impl<'a> Builder<'a> {
    fn ev(&self, i: usize) -> &'a Event {
        self.events[i]
    }

    /// The state named `name` (any type when `None`), walking up from a context.
    fn find_state(
        &self,
        ctx: (FrameIdx, Option<StateIdx>),
        pred: impl Fn(&StateRec) -> bool,
    ) -> Option<StateIdx> {
        if let Some(s) = ctx.1 {
            if pred(&self.states[s]) {
                return Some(s);
            }
        }
        let mut frame = Some(ctx.0);
        while let Some(f) = frame {
            if let Some(s) = self.frames[f].parent_state {
                if pred(&self.states[s]) {
                    return Some(s);
                }
            }
            frame = self.frames[f].parent_frame;
        }
        None
    }

    fn find_frame(
        &self,
        ctx: (FrameIdx, Option<StateIdx>),
        pred: impl Fn(&Frame) -> bool,
    ) -> Option<FrameIdx> {
        let mut frame = Some(ctx.0);
        while let Some(f) = frame {
            if pred(&self.frames[f]) {
                return Some(f);
            }
            frame = self.frames[f].parent_frame;
        }
        None
    }

    /// The nearest enclosing container state (not `s` itself) that exited:
    /// everything inside it is over, whatever the execution does later.
    fn exited_ancestor(&self, s: StateIdx) -> Option<StateIdx> {
        let mut f = self.states[s].frame;
        while f != 0 {
            match self.frames[f].parent_state {
                Some(p) if self.states[p].exited.is_some() => return Some(p),
                Some(p) => f = self.states[p].frame,
                None => f = self.frames[f].parent_frame.unwrap_or(0),
            }
        }
        None
    }

    /// Final already: closed itself, or inside an exited container.
    fn state_final(&self, s: StateIdx) -> bool {
        let st = &self.states[s];
        st.exited.or(st.closed_by).is_some() || self.exited_ancestor(s).is_some()
    }

    fn touch(&mut self, ctx: (FrameIdx, Option<StateIdx>), i: usize) {
        // An event extends the state it belongs to and every enclosing state.
        if let Some(s) = ctx.1 {
            self.states[s].last = self.states[s].last.max(i);
        }
        let mut frame = Some(ctx.0);
        while let Some(f) = frame {
            if let Some(s) = self.frames[f].parent_state {
                self.states[s].last = self.states[s].last.max(i);
            }
            frame = self.frames[f].parent_frame;
        }
    }

    fn place(&mut self) {
        let root_frame_span = ids::derived_span_id(self.arn, "execution", &[]);
        self.frames.push(Frame {
            kind: FrameKind::Execution,
            parent_state: None,
            parent_frame: None,
            span_id: root_frame_span,
        });
        self.ctx = vec![None; self.events.len()];
        for i in 0..self.events.len() {
            let e = self.ev(i);
            let known = e.previous_event_id == 0 || self.pruned.contains(e.previous_event_id);
            let prev = self.position(e.previous_event_id);
            let base = match prev.and_then(|p| self.ctx[p]) {
                Some(c) => c,
                None if known => (0, None),
                None => {
                    self.orphans += 1;
                    (0, None)
                }
            };
            let orphaned = !known && prev.is_none();
            let ctx = self.place_event(i, base, orphaned);
            self.touch(ctx, i);
            self.ctx[i] = Some(ctx);
        }
    }

    /// The position of event `id` (events are sorted by id and unique: a
    /// binary search beats hashing, which was a visible part of builds).
    fn position(&self, id: u64) -> Option<usize> {
        self.events.binary_search_by_key(&id, |e| e.id).ok()
    }

    fn place_event(
        &mut self,
        i: usize,
        base: (FrameIdx, Option<StateIdx>),
        orphaned: bool,
    ) -> (FrameIdx, Option<StateIdx>) {
        use EventKind::*;
        let e = self.ev(i);
        match &e.kind {
            ExecutionStarted => (0, None),
            ExecutionRedriven => {
                let span_id = ids::derived_span_id(self.arn, "redrive", &[&e.id]);
                self.frames.push(Frame {
                    kind: FrameKind::Redrive {
                        event: i,
                        end: None,
                    },
                    parent_state: None,
                    parent_frame: Some(0),
                    span_id,
                });
                (self.frames.len() - 1, None)
            }
            k if k.is_execution_terminal() => {
                // Closes the latest open redrive; the execution span itself
                // ends at its first terminal event (see `finish`).
                if let Some(f) = (0..self.frames.len()).rev().find(|&f| {
                    matches!(self.frames[f].kind, FrameKind::Redrive { event, end: None } if event < i)
                }) {
                    if let FrameKind::Redrive { end, .. } = &mut self.frames[f].kind {
                        *end = Some(i);
                    }
                }
                base
            }
            k if is_state_entered(k) => {
                let name = e.details.state_name().unwrap_or_default().to_owned();
                let prev_kind = self.position(e.previous_event_id).map(|p| &self.ev(p).kind);
                let frame = if prev_kind == Some(&ParallelStateStarted) {
                    let parallel = base.1;
                    let span_id = ids::derived_span_id(self.arn, "branch", &[&e.id]);
                    self.frames.push(Frame {
                        kind: FrameKind::Branch {
                            first_state: self.states.len(),
                        },
                        parent_state: parallel,
                        parent_frame: Some(base.0),
                        span_id,
                    });
                    self.frames.len() - 1
                } else {
                    base.0
                };
                let span_id =
                    ids::state_span_id(self.arn, &name, e.timestamp_ms, 0, e.redrive_count);
                self.states.push(StateRec {
                    frame,
                    name,
                    state_type: state_type(k),
                    entered: i,
                    exited: None,
                    closed_by: None,
                    last: i,
                    failure: None,
                    attempts: Vec::new(),
                    resource_type: None,
                    resource: None,
                    function_arn: None,
                    map_runs: Vec::new(),
                    orphaned,
                    span_id,
                });
                (frame, Some(self.states.len() - 1))
            }
            k if is_state_exited(k) => {
                let name = e.details.state_name().unwrap_or_default();
                match self.find_state(base, |s| s.name == name && s.exited.is_none()) {
                    Some(s) => {
                        self.states[s].exited = Some(i);
                        (self.states[s].frame, None)
                    }
                    None => base,
                }
            }
            MapIterationStarted => {
                let (name, index) = match &e.details {
                    Details::MapIteration { name, index } => (
                        name.as_deref().unwrap_or_default().to_owned(),
                        index.unwrap_or(0),
                    ),
                    _ => (String::new(), 0),
                };
                let map = self.find_state(base, |s| {
                    s.state_type == "Map" && (name.is_empty() || s.name == name)
                });
                let parent_frame = map.map(|m| self.states[m].frame).unwrap_or(base.0);
                let span_id = ids::derived_span_id(self.arn, "iteration", &[&e.id]);
                self.frames.push(Frame {
                    kind: FrameKind::Iteration {
                        name,
                        index,
                        start: i,
                        end: None,
                    },
                    parent_state: map,
                    parent_frame: Some(parent_frame),
                    span_id,
                });
                (self.frames.len() - 1, None)
            }
            MapIterationSucceeded | MapIterationFailed | MapIterationAborted => {
                let idx = match &e.details {
                    Details::MapIteration { index, .. } => *index,
                    _ => None,
                };
                let found = self.find_frame(base, |f| {
                    matches!(&f.kind, FrameKind::Iteration { index, end: None, .. } if idx.is_none_or(|x| x == *index))
                });
                if let Some(f) = found {
                    if let FrameKind::Iteration { end, .. } = &mut self.frames[f].kind {
                        *end = Some(i);
                    }
                }
                base
            }
            ParallelStateSucceeded
            | ParallelStateFailed
            | ParallelStateAborted
            | ParallelStateStarted => self.close_container(i, base, "Parallel"),
            MapStateSucceeded | MapStateFailed | MapStateAborted | MapStateStarted => {
                self.close_container(i, base, "Map")
            }
            MapRunStarted => {
                if let Some(m) = self.find_state(base, |s| s.state_type == "Map") {
                    self.states[m].map_runs.push((i, None));
                }
                base
            }
            MapRunSucceeded | MapRunFailed | MapRunAborted => {
                if let Some(m) = self.find_state(base, |s| s.state_type == "Map") {
                    if let Some(run) = self.states[m]
                        .map_runs
                        .iter_mut()
                        .rev()
                        .find(|r| r.1.is_none())
                    {
                        run.1 = Some(i);
                    }
                }
                base
            }
            TaskStateAborted | WaitStateAborted => {
                let want = if e.kind == TaskStateAborted {
                    "Task"
                } else {
                    "Wait"
                };
                if let Some(s) =
                    self.find_state(base, |s| s.state_type == want && s.exited.is_none())
                {
                    self.states[s].closed_by.get_or_insert(i);
                }
                base
            }
            EvaluationFailed => {
                let target = match &e.details {
                    Details::EvaluationFailed {
                        state: Some(st), ..
                    } => {
                        let st = st.to_string();
                        self.find_state(base, move |s| s.name == st)
                    }
                    _ => base.1,
                };
                if let (Some(s), Some(f)) = (target, e.details.failure()) {
                    self.states[s].failure.get_or_insert(f.clone());
                }
                base
            }
            k if is_attempt_start(k) => {
                if let Some(s) = self.find_state(base, |s| s.state_type == "Task") {
                    let st = &mut self.states[s];
                    st.attempts.push(Attempt {
                        scheduled: i,
                        ..Attempt::default()
                    });
                    if st.resource.is_none() {
                        let (rt, r, farn) = task_target(e, self.arn);
                        st.resource_type = rt;
                        st.resource = r;
                        st.function_arn = farn;
                    }
                }
                base
            }
            k if is_attempt_end(k) => {
                if let Some(s) = self.find_state(base, |s| s.state_type == "Task") {
                    let failure = e.details.failure().cloned();
                    let st = &mut self.states[s];
                    if st.attempts.is_empty() {
                        // Its Scheduled event was not logged (ERROR level).
                        st.attempts.push(Attempt {
                            scheduled: i,
                            ..Attempt::default()
                        });
                    }
                    let a = st.attempts.last_mut().unwrap();
                    a.end = Some(i);
                    a.failure = failure.clone();
                    st.failure = failure;
                }
                base
            }
            _ => base,
        }
    }

    /// `Parallel`/`Map` Started/Succeeded/Failed/Aborted: the nearest
    /// enclosing state of that type, whatever branch the event points into.
    fn close_container(
        &mut self,
        i: usize,
        base: (FrameIdx, Option<StateIdx>),
        ty: &str,
    ) -> (FrameIdx, Option<StateIdx>) {
        let e = self.ev(i);
        match self.find_state(base, |s| s.state_type == ty && s.exited.is_none()) {
            Some(s) => {
                let failed = matches!(
                    e.kind,
                    EventKind::ParallelStateFailed
                        | EventKind::ParallelStateAborted
                        | EventKind::MapStateFailed
                        | EventKind::MapStateAborted
                );
                if failed {
                    self.states[s].closed_by.get_or_insert(i);
                    if self.states[s].failure.is_none() {
                        // Inherit the failure of what failed inside, when it says.
                        let inner = base.1.and_then(|c| self.states[c].failure.clone());
                        let what = if matches!(
                            e.kind,
                            EventKind::ParallelStateAborted | EventKind::MapStateAborted
                        ) {
                            "States.Aborted"
                        } else if ty == "Parallel" {
                            "States.BranchFailed"
                        } else {
                            "States.ItemFailed"
                        };
                        self.states[s].failure = Some(inner.unwrap_or(Failure {
                            error: Some(what.into()),
                            cause: None,
                        }));
                    }
                } else if matches!(
                    e.kind,
                    EventKind::ParallelStateStarted | EventKind::MapStateStarted
                ) {
                    // A retried container starts again: it is no longer failed.
                    self.states[s].closed_by = None;
                    self.states[s].failure = None;
                }
                (self.states[s].frame, Some(s))
            }
            None => base,
        }
    }
}

/// `resource_type`, `resource` and the Lambda function ARN a Task targets.
fn task_target(e: &Event, execution_arn: &str) -> (Option<String>, Option<String>, Option<String>) {
    match &e.details {
        Details::TaskScheduled(t) => {
            let (resource, parameters, region) = (&t.resource, &t.parameters, &t.region);
            let rt = resource.resource_type.as_deref().map(str::to_owned);
            let r = resource.resource.as_deref().map(str::to_owned);
            let farn = if rt.as_deref() == Some("lambda") {
                parameters.as_ref().and_then(|p| {
                    let name = p.top_level_str("FunctionName")?;
                    if name.starts_with("arn:") {
                        Some(name)
                    } else {
                        let a = ExecutionArn::parse(execution_arn).ok()?;
                        let region = region.as_deref().unwrap_or(a.region);
                        Some(format!(
                            "arn:{}:lambda:{}:{}:function:{}",
                            a.partition, region, a.account_id, name
                        ))
                    }
                })
            } else {
                None
            };
            (rt, r, farn)
        }
        Details::LambdaScheduled { resource, .. } => (
            Some("lambda".into()),
            Some("invoke".into()),
            resource.as_deref().map(str::to_owned),
        ),
        Details::ActivityScheduled { resource, .. } => (
            Some("activity".into()),
            resource.as_deref().map(str::to_owned),
            None,
        ),
        _ => (None, None, None),
    }
}

fn ms_to_ns(ms: i64) -> i64 {
    ms.saturating_mul(1_000_000)
}

/// Builds every span of one execution. `events` must be one execution's
/// events, deduplicated by id (order does not matter). `complete` is false
/// when the execution is flushed without a terminal event (idle timeout,
/// eviction): open spans then close at the last seen event and carry
/// `step_function.incomplete:true`.
pub fn build_spans(
    events: &[Event],
    cfg: &SpanConfig,
    ctx_override: Option<&TraceContext>,
) -> Vec<Span> {
    build_spans_pruned(
        events.iter().collect(),
        cfg,
        ctx_override,
        &IdSet::default(),
    )
}

/// `build_spans` for an execution some of whose events were pruned after
/// incremental emission (see `build_closed_spans`).
pub fn build_spans_pruned(
    events: Vec<&Event>,
    cfg: &SpanConfig,
    ctx_override: Option<&TraceContext>,
    pruned: &IdSet,
) -> Vec<Span> {
    build_full(events, cfg, ctx_override, pruned, &mut TagSets::default()).spans
}

/// Everything a finished execution produces: its spans plus, keyed by span
/// id, its enhanced metric samples and (when `event_owners` is on) the span
/// each event belongs to.
#[derive(Debug, Default)]
pub struct Build {
    pub spans: Vec<Span>,
    pub samples: Vec<(u64, MetricSample)>,
    /// `(event id, span id)`.
    pub owners: Vec<(u64, u64)>,
    /// The execution's metric and log tags (`statemachinename:...`, ...), sorted.
    pub tags: TagSet,
}

/// `build_spans_pruned` with the metric samples and event owners; tag sets
/// come from (and go into) `sets`, one per stitcher shard.
pub fn build_full(
    events: Vec<&Event>,
    cfg: &SpanConfig,
    ctx_override: Option<&TraceContext>,
    pruned: &IdSet,
    sets: &mut TagSets,
) -> Build {
    with_placed(events, cfg, pruned, |b| {
        let f = finish(b, ctx_override, false, sets);
        Build {
            spans: f.spans.into_iter().map(|(s, _)| s).collect(),
            samples: f.samples,
            owners: f.owners,
            tags: f.tags,
        }
    })
    .unwrap_or_default()
}

/// Sorts and deduplicates the events, places them, and hands the builder to `f`.
fn with_placed<R>(
    mut sorted: Vec<&Event>,
    cfg: &SpanConfig,
    pruned: &IdSet,
    f: impl FnOnce(&Builder<'_>) -> R,
) -> Option<R> {
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by_key(|e| e.id);
    sorted.dedup_by_key(|e| e.id);
    let arn = sorted[0].execution_arn.clone();
    let mut b = Builder {
        events: &sorted,
        cfg,
        arn: &arn,
        frames: Vec::new(),
        states: Vec::new(),
        ctx: Vec::new(),
        orphans: 0,
        pruned,
    };
    b.place();
    Some(f(&b))
}

/// What a running execution can already emit and forget.
#[derive(Debug, Default)]
pub struct ClosedBuild {
    /// Spans that are final (exited states, ended attempts, iterations, Map
    /// runs, redrives, branches of a closed Parallel), identical to what the
    /// final build will make.
    pub spans: Vec<Span>,
    /// Events whose payloads those spans have captured.
    pub released: Vec<u64>,
    /// Events of exited top-level states, which no later event needs: the
    /// state's exit event stays as the anchor the next state links to.
    pub prunable: Vec<u64>,
    /// As in `Build` (for every span, closed or not: the caller keeps those
    /// of the spans it emits).
    pub samples: Vec<(u64, MetricSample)>,
    pub owners: Vec<(u64, u64)>,
    pub tags: TagSet,
}

/// For an execution still running: see `ClosedBuild`.
pub fn build_closed_spans(
    events: Vec<&Event>,
    cfg: &SpanConfig,
    ctx_override: Option<&TraceContext>,
    pruned: &IdSet,
    sets: &mut TagSets,
) -> ClosedBuild {
    with_placed(events, cfg, pruned, |b| {
        let f = finish(b, ctx_override, true, sets);
        ClosedBuild {
            spans: f
                .spans
                .into_iter()
                .filter(|(_, closed)| *closed)
                .map(|(s, _)| s)
                .collect(),
            released: f.released,
            prunable: prunable(b),
            samples: f.samples,
            owners: f.owners,
            tags: f.tags,
        }
    })
    .unwrap_or_default()
}

/// Events owned by exited top-level states. Kept simple on purpose: nothing
/// is pruned once a redrive exists (states then live in the redrive frame).
fn prunable(b: &Builder<'_>) -> Vec<u64> {
    if b.frames
        .iter()
        .any(|f| matches!(f.kind, FrameKind::Redrive { .. }))
    {
        return Vec::new();
    }
    // The top-level state each state runs under.
    let top = |mut s: StateIdx| -> StateIdx {
        loop {
            let f = b.states[s].frame;
            match b.frames[f].parent_state {
                Some(p) if f != 0 => s = p,
                _ => return s,
            }
        }
    };
    let done = |s: StateIdx| b.states[s].frame == 0 && b.states[s].exited.is_some();
    b.ctx
        .iter()
        .zip(b.events)
        .filter_map(|(c, e)| {
            let (frame, state) = (*c)?;
            let owner = match state {
                Some(s) => Some(top(s)),
                None if frame != 0 => b.frames[frame].parent_state.map(top),
                None => None,
            };
            owner.filter(|&o| done(o)).map(|_| e.id)
        })
        .collect()
}

/// Which payload a span captures, and its tag keys.
#[derive(Clone, Copy)]
enum Capture {
    Input,
    Output,
}

impl Capture {
    /// The value, `_truncated` and `_aws_truncated` keys.
    fn keys(self) -> [&'static str; 3] {
        match self {
            Capture::Input => [
                "step_function.input",
                "step_function.input_truncated",
                "step_function.input_aws_truncated",
            ],
            Capture::Output => [
                "step_function.output",
                "step_function.output_truncated",
                "step_function.output_aws_truncated",
            ],
        }
    }
}

/// Builds every span with a flag saying whether it is final already; in
/// `partial` mode (execution still running) the missing terminal event does
/// not mark spans incomplete. Also returns the events consumed by closed states.
fn finish(
    b: &Builder<'_>,
    ctx_override: Option<&TraceContext>,
    partial: bool,
    sets: &mut TagSets,
) -> Finished {
    let ev = b.events;
    let arn = b.arn;
    let parsed = ExecutionArn::parse(arn).ok();
    let started = ev
        .iter()
        .position(|e| e.kind == EventKind::ExecutionStarted);
    let first_terminal = ev.iter().position(|e| e.kind.is_execution_terminal());
    let last = ev.len() - 1;
    let complete = first_terminal.is_some();
    let trace = ctx_override.cloned().unwrap_or_else(|| {
        started
            .and_then(|s| ev[s].details.input())
            .and_then(|p| context::from_input(&p.text))
            .unwrap_or_else(|| TraceContext::own(arn))
    });
    let sm_name = parsed
        .as_ref()
        .map(|a| a.state_machine_name.to_owned())
        .unwrap_or_default();
    let service: SmolStr = b.cfg.service.as_deref().unwrap_or(&sm_name).into();

    let mut common = Meta::with_capacity(12 + b.cfg.tags.len());
    common.insert("trace_type", "stepfunctions");
    common.insert("step_function.execution_arn", arn);
    if let Some(a) = &parsed {
        common.insert("step_function.execution_name", a.execution_name);
        common.insert("step_function.state_machine_arn", a.state_machine_arn());
        common.insert("step_function.state_machine_name", a.state_machine_name);
        common.insert("region", a.region);
        common.insert("account_id", a.account_id);
    }
    for (k, v) in &b.cfg.tags {
        common.insert_if_absent(k.clone(), v.as_str());
    }
    if let Some(env) = &b.cfg.env {
        common.insert("env", env.as_str());
    }
    if let Some(version) = &b.cfg.version {
        common.insert("version", version.as_str());
    }
    if !complete && !partial {
        common.insert("step_function.incomplete", "true");
    }

    let mut spans = Vec::new();
    let mk = |id: u64,
              parent: u64,
              name: &'static str,
              resource: &str,
              start: usize,
              end: usize,
              redrive: u32| {
        let mut metrics = Metrics::with_capacity(4);
        metrics.insert("step_function.redrive_count", redrive as f64);
        Span {
            trace_id: trace.trace_id,
            span_id: id,
            parent_id: parent,
            name,
            resource: SmolStr::new(resource),
            service: service.clone(),
            span_type: "serverless",
            start: ms_to_ns(ev[start].timestamp_ms),
            duration: ms_to_ns((ev[end].timestamp_ms - ev[start].timestamp_ms).max(0)),
            error: 0,
            meta: common.clone_with_room(8),
            metrics,
        }
    };
    let set_error = |s: &mut Span, f: Option<&Failure>| {
        s.error = 1;
        if let Some(f) = f {
            if let Some(t) = &f.error {
                s.meta.insert("error.type", &**t);
            }
            if let Some(c) = &f.cause {
                s.meta
                    .insert("error.message", cut_utf8(c, MAX_ERROR_MESSAGE_BYTES).0);
            }
        }
    };
    let capture = |s: &mut Span, key: Capture, p: Option<&Payload>| {
        let Some(p) = p else { return };
        if b.cfg.max_payload_bytes == 0 {
            return;
        }
        let redacted = if b.cfg.redact_keys.is_empty() {
            None
        } else {
            redact(&p.text, &b.cfg.redact_keys)
        };
        let text = redacted.as_deref().unwrap_or(&p.text);
        let (cut, truncated) = cut_utf8(text, b.cfg.max_payload_bytes);
        let [value, truncated_key, aws_truncated_key] = key.keys();
        if redacted.is_none() && !truncated {
            // The event's own text, shared rather than copied (copying
            // every input and output was ~3 % of the stitcher's thread).
            s.meta.insert(value, SmolStr::from(p.text.clone()));
        } else {
            s.meta.insert(value, cut);
        }
        if truncated {
            s.meta.insert(truncated_key, "true");
        }
        if p.aws_truncated {
            s.meta.insert(aws_truncated_key, "true");
        }
    };

    // The execution span: ExecutionStarted (or the first event seen) → first terminal.
    let exec_start = started.unwrap_or(0);
    let exec_end = first_terminal.unwrap_or(last);
    let exec_id = b.frames[0].span_id;
    let redrive0 = ev[exec_start].redrive_count;
    let mut exec = mk(
        exec_id,
        trace.parent_id,
        op::EXECUTION,
        &sm_name,
        exec_start,
        exec_end,
        redrive0,
    );
    if let Some(tid) = &trace.tid {
        exec.meta.insert("_dd.p.tid", tid.as_str());
    }
    if trace.source != "own" {
        exec.meta
            .insert("step_function.context_source", trace.source);
    }
    capture(
        &mut exec,
        Capture::Input,
        started.and_then(|s| ev[s].details.input()),
    );
    if let Some(t) = first_terminal {
        capture(&mut exec, Capture::Output, ev[t].details.output());
        if ev[t].kind != EventKind::ExecutionSucceeded {
            set_error(&mut exec, ev[t].details.failure());
        }
    }
    if b.orphans > 0 {
        exec.metrics
            .insert("step_function.orphaned_events", b.orphans as f64);
    }
    // A build of a redrive segment alone (the original run was emitted and
    // forgotten long ago) must not emit the execution span a second time.
    let redrive_segment =
        started.is_none() && ev.iter().any(|e| e.kind == EventKind::ExecutionRedriven);
    if !redrive_segment {
        // Final once the first run ended: the span stops at its first terminal.
        spans.push((exec, first_terminal.is_some()));
    }

    // Frames: redrives, iterations, branches.
    let frame_parent_span = |f: &Frame| -> u64 {
        match f.parent_state {
            Some(s) => b.states[s].span_id,
            None => f
                .parent_frame
                .map(|p| b.frames[p].span_id)
                .unwrap_or(exec_id),
        }
    };
    let end_of_state = |si: StateIdx| -> usize {
        let s = &b.states[si];
        if let Some(x) = s.exited.or(s.closed_by) {
            return x;
        }
        // Left open inside a container that exited (a caught failure): it
        // ends when that container failed (or exited), at the latest.
        if let Some(a) = b.exited_ancestor(si) {
            let a = &b.states[a];
            return if s.last > s.entered {
                s.last
            } else {
                a.closed_by.or(a.exited).unwrap_or(s.last)
            };
        }
        // Left open: it ends at the last event it caused (a Fail state at the
        // failure it triggered); when nothing followed from it (an abort),
        // where the execution or redrive ended; with no terminal at all, at
        // the last event seen.
        if s.last > s.entered {
            return s.last;
        }
        let terminal = (s.entered..ev.len()).find(|&j| ev[j].kind.is_execution_terminal());
        match terminal {
            Some(t) => t,
            None if complete => s.last,
            None => last,
        }
    };
    // One pass over the states: each frame's latest end (its own states and
    // nested frames'), and whether one of its own states failed uncaught.
    let mut frame_end: Vec<Option<usize>> = vec![None; b.frames.len()];
    let mut frame_failed = vec![false; b.frames.len()];
    for (si, st) in b.states.iter().enumerate() {
        let end = end_of_state(si);
        if st.state_type == "Fail" || (st.exited.is_none() && st.failure.is_some()) {
            frame_failed[st.frame] = true;
        }
        let mut f = Some(st.frame);
        while let Some(i) = f {
            frame_end[i] = Some(frame_end[i].map_or(end, |e| e.max(end)));
            f = b.frames[i].parent_frame;
        }
    }
    for (fi, f) in b.frames.iter().enumerate().skip(1) {
        let parent = frame_parent_span(f);
        match &f.kind {
            FrameKind::Redrive { event, end } => {
                let end_i = end.unwrap_or(last);
                let mut s = mk(
                    f.span_id,
                    parent,
                    op::EXECUTION,
                    &sm_name,
                    *event,
                    end_i,
                    ev[*event].redrive_count,
                );
                s.meta.insert("redrive", "true");
                if let Some(e) = end {
                    if ev[*e].kind != EventKind::ExecutionSucceeded {
                        set_error(&mut s, ev[*e].details.failure());
                    }
                }
                spans.push((s, end.is_some()));
            }
            FrameKind::Iteration {
                name,
                index,
                start,
                end,
            } => {
                let contained_end = frame_end[fi].unwrap_or(*start);
                let end_i = end.unwrap_or(contained_end.max(*start));
                let mut s = mk(
                    f.span_id,
                    parent,
                    op::MAP_ITERATION,
                    &format!("{name}[{index}]"),
                    *start,
                    end_i,
                    ev[*start].redrive_count,
                );
                s.metrics
                    .insert("step_function.map.iteration_index", *index as f64);
                if let Some(e) = end {
                    if matches!(
                        ev[*e].kind,
                        EventKind::MapIterationFailed | EventKind::MapIterationAborted
                    ) {
                        let failure =
                            (ev[*e].kind == EventKind::MapIterationAborted).then(|| Failure {
                                error: Some("States.Aborted".into()),
                                cause: None,
                            });
                        set_error(&mut s, failure.as_ref());
                    }
                }
                spans.push((
                    s,
                    end.is_some() || f.parent_state.is_some_and(|p| b.state_final(p)),
                ));
            }
            FrameKind::Branch { first_state } => {
                let first = &b.states[*first_state];
                let end_i = frame_end[fi].unwrap_or(first.entered);
                let mut s = mk(
                    f.span_id,
                    parent,
                    op::PARALLEL_BRANCH,
                    &first.name,
                    first.entered,
                    end_i,
                    ev[first.entered].redrive_count,
                );
                // A branch failed when one of its own states failed without being caught.
                let failed = b.states.iter().filter(|st| st.frame == fi).any(|st| {
                    st.state_type == "Fail" || (st.exited.is_none() && st.failure.is_some())
                });
                if failed {
                    set_error(&mut s, None);
                }
                spans.push((
                    s,
                    f.parent_state
                        .is_some_and(|p| b.states[p].exited.or(b.states[p].closed_by).is_some()),
                ));
            }
            FrameKind::Execution => {}
        }
    }

    // States, their retry attempts and map runs.
    for (si, st) in b.states.iter().enumerate() {
        // A state hangs under the span of the frame it runs in.
        let parent = b.frames[st.frame].span_id;
        let end_i = end_of_state(si);
        let e_in = &ev[st.entered];
        let mut s = mk(
            st.span_id,
            parent,
            op::STATE,
            &st.name,
            st.entered,
            end_i,
            e_in.redrive_count,
        );
        s.meta.insert("step_function.state_name", st.name.as_str());
        s.meta.insert("step_function.state_type", st.state_type);
        let retries = st.attempts.len().saturating_sub(1);
        s.metrics
            .insert("step_function.retry_count", retries as f64);
        capture(&mut s, Capture::Input, e_in.details.input());
        capture(
            &mut s,
            Capture::Output,
            st.exited.and_then(|x| ev[x].details.output()),
        );
        if let Some(rt) = &st.resource_type {
            s.meta.insert("step_function.resource_type", rt.as_str());
        }
        if let Some(r) = &st.resource {
            s.meta.insert("step_function.resource", r.as_str());
        }
        if let Some(f) = &st.function_arn {
            s.meta.insert("function_arn", f.as_str());
        }
        if st.orphaned {
            s.meta.insert("step_function.orphaned", "true");
        }
        // The execution's failure explains a state it left open, unless a
        // Catch closed the state's container first (then it is unrelated).
        let open = st.exited.is_none() && st.closed_by.is_none() && b.exited_ancestor(si).is_none();
        let terminal_failure = open
            .then(|| (st.entered..ev.len()).find(|&j| ev[j].kind.is_execution_terminal()))
            .flatten()
            .filter(|&t| ev[t].kind != EventKind::ExecutionSucceeded);
        if st.failure.is_some() || st.closed_by.is_some() {
            set_error(&mut s, st.failure.as_ref());
        } else if st.state_type == "Fail" || terminal_failure.is_some() {
            set_error(
                &mut s,
                terminal_failure.and_then(|t| ev[t].details.failure()),
            );
        }
        spans.push((s, b.state_final(si)));

        for (n, a) in st.attempts.iter().enumerate().skip(1) {
            let id = ids::state_span_id(
                arn,
                &st.name,
                e_in.timestamp_ms,
                n as u32,
                e_in.redrive_count,
            );
            let end_a = a.end.unwrap_or(end_i);
            let mut sa = mk(
                id,
                st.span_id,
                op::STATE,
                &st.name,
                a.scheduled,
                end_a,
                e_in.redrive_count,
            );
            sa.meta.insert("step_function.state_name", st.name.as_str());
            sa.meta.insert("step_function.state_type", st.state_type);
            sa.meta.insert("step_function.attempt", n.to_string());
            sa.metrics.insert("step_function.retry_count", n as f64);
            if let Some(rt) = &st.resource_type {
                sa.meta.insert("step_function.resource_type", rt.as_str());
            }
            if let Some(r) = &st.resource {
                sa.meta.insert("step_function.resource", r.as_str());
            }
            if let Some(f) = &a.failure {
                set_error(&mut sa, Some(f));
            }
            spans.push((sa, a.end.is_some() || b.state_final(si)));
        }
        for (start, end) in &st.map_runs {
            let id = ids::derived_span_id(arn, "maprun", &[&ev[*start].id]);
            let end_r = end.unwrap_or(end_i);
            let mut sr = mk(
                id,
                st.span_id,
                op::MAP_RUN,
                &st.name,
                *start,
                end_r,
                ev[*start].redrive_count,
            );
            if let Details::MapRunStarted {
                map_run_arn: Some(m),
            } = &ev[*start].details
            {
                sr.meta.insert("step_function.map_run_arn", &**m);
            }
            if let Some(e) = end {
                if ev[*e].kind != EventKind::MapRunSucceeded {
                    set_error(&mut sr, ev[*e].details.failure());
                }
            }
            spans.push((sr, end.is_some() || b.state_final(si)));
        }
    }
    // Events whose payloads closed states have consumed.
    let mut done = Vec::new();
    if partial {
        let closed: Vec<bool> = b
            .states
            .iter()
            .map(|st| st.exited.or(st.closed_by).is_some())
            .collect();
        for (c, e) in b.ctx.iter().zip(ev) {
            if c.and_then(|c| c.1).is_some_and(|s| closed[s]) {
                done.push(e.id);
            }
        }
        done.extend(b.states.iter().filter_map(|st| st.exited.map(|x| ev[x].id)));
    }
    let want_samples = signals::enabled(b);
    let (tags, samples) = if want_samples || b.cfg.event_owners {
        let mut sets = signals::exec_tags(b, &service, parsed.as_ref(), sets);
        let samples = if want_samples {
            signals::enhanced_samples(b, &spans, exec_id, &mut sets)
        } else {
            Vec::new()
        };
        (sets.base().clone(), samples)
    } else {
        (TagSet::from([]), Vec::new())
    };
    let owners = if b.cfg.event_owners {
        signals::event_owners(b, exec_id)
    } else {
        Vec::new()
    };
    Finished {
        spans,
        released: done,
        samples,
        owners,
        tags,
    }
}

struct Finished {
    spans: Vec<(Span, bool)>,
    released: Vec<u64>,
    samples: Vec<(u64, MetricSample)>,
    owners: Vec<(u64, u64)>,
    tags: TagSet,
}
