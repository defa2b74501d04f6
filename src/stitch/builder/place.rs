//! Placement: every event of an execution gets a context `(frame, state)`
//! by following `previous_event_id`, never arrival order. The frame is the
//! container the event runs in (the execution, a redrive, a Map iteration,
//! a Parallel branch) and the state is the state span it belongs to, if
//! any. Close events whose `previous_event_id` points deep into a child
//! (AWS links `ParallelStateExited` to the last event of a branch,
//! `MapIterationStarted` n+1 to the last event of iteration n) are matched
//! by walking up the frames to the state or iteration they name.

use super::SpanConfig;
use crate::events::{Details, Event, EventKind, ExecutionArn, Failure};
use crate::stitch::held::IdSet;
use crate::stitch::ids;

pub(super) type FrameIdx = usize;
pub(super) type StateIdx = usize;

#[derive(Debug)]
pub(super) enum FrameKind {
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
pub(super) struct Frame {
    pub(super) kind: FrameKind,
    /// The state span this frame runs inside (Map or Parallel), if any.
    pub(super) parent_state: Option<StateIdx>,
    /// The frame enclosing this one.
    pub(super) parent_frame: Option<FrameIdx>,
    /// Span id of this frame's own span (the execution, redrive, iteration or branch).
    pub(super) span_id: u64,
}

#[derive(Debug, Default)]
pub(super) struct Attempt {
    pub(super) scheduled: usize,
    pub(super) end: Option<usize>,
    pub(super) failure: Option<Failure>,
}

#[derive(Debug)]
pub(super) struct StateRec {
    pub(super) frame: FrameIdx,
    pub(super) name: String,
    pub(super) state_type: &'static str,
    pub(super) entered: usize,
    pub(super) exited: Option<usize>,
    /// `*StateAborted`, or the container's own Failed/Aborted event.
    pub(super) closed_by: Option<usize>,
    pub(super) last: usize,
    pub(super) failure: Option<Failure>,
    pub(super) attempts: Vec<Attempt>,
    pub(super) resource_type: Option<String>,
    pub(super) resource: Option<String>,
    pub(super) function_arn: Option<String>,
    pub(super) map_runs: Vec<(usize, Option<usize>)>,
    pub(super) orphaned: bool,
    pub(super) span_id: u64,
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

pub(super) struct Builder<'a> {
    /// The execution's events, deduplicated and in id order (borrowed: a
    /// build never copies events or their payloads).
    pub(super) events: &'a [&'a Event],
    pub(super) cfg: &'a SpanConfig,
    pub(super) arn: &'a str,
    pub(super) frames: Vec<Frame>,
    pub(super) states: Vec<StateRec>,
    /// Where each event (by position) was placed; looked up by the id of
    /// the event that caused the next one.
    pub(super) ctx: Vec<Option<(FrameIdx, Option<StateIdx>)>>,
    pub(super) orphans: usize,
    /// Events already emitted and dropped (closed top-level states of a
    /// running execution): a link to one is known, at the execution level.
    pub(super) pruned: &'a IdSet,
}

impl<'a> Builder<'a> {
    pub(super) fn ev(&self, i: usize) -> &'a Event {
        self.events[i]
    }

    /// The state named `name` (any type when `None`), walking up from a context.
    pub(super) fn find_state(
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

    pub(super) fn find_frame(
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
    pub(super) fn exited_ancestor(&self, s: StateIdx) -> Option<StateIdx> {
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
    pub(super) fn state_final(&self, s: StateIdx) -> bool {
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

    pub(super) fn place(&mut self) {
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
    pub(super) fn position(&self, id: u64) -> Option<usize> {
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
                let name: Option<&str> = match &e.details {
                    Details::MapIteration { name: Some(n), .. } => Some(n),
                    _ => None,
                };
                // Index and Map name: an iteration of an enclosing Map can
                // have the same index (found by tests/stitch_generated.rs).
                let open_iteration = |f: &Frame| {
                    matches!(&f.kind, FrameKind::Iteration { index, end: None, name: n, .. }
                        if idx.is_none_or(|x| x == *index) && name.is_none_or(|m| m == n))
                };
                // An aborted iteration's event points at the sibling whose
                // failure aborted it: not up from there, but a sibling.
                let found = self.find_frame(base, open_iteration).or_else(|| {
                    // The Map it names (the latest entered), else the one around.
                    let named = name.and_then(|n| {
                        (0..self.states.len()).rev().find(|&s| {
                            let st = &self.states[s];
                            st.state_type == "Map" && st.name == n && st.exited.is_none()
                        })
                    });
                    let map = named.or_else(|| self.find_state(base, |s| s.state_type == "Map"))?;
                    (0..self.frames.len()).rev().find(|&f| {
                        self.frames[f].parent_state == Some(map) && open_iteration(&self.frames[f])
                    })
                });
                let Some(f) = found else { return base };
                if let FrameKind::Iteration { end, .. } = &mut self.frames[f].kind {
                    *end = Some(i);
                }
                if e.kind != MapIterationAborted {
                    // The iteration ends with what it points at.
                    return base;
                }
                // An abort points at a sibling's failure, which must not
                // seem to last until here: placed in the Map.
                let fr = &self.frames[f];
                (fr.parent_frame.unwrap_or(0), fr.parent_state)
            }
            ParallelStateSucceeded
            | ParallelStateFailed
            | ParallelStateAborted
            | ParallelStateStarted => self.close_container(i, base, "Parallel"),
            MapStateSucceeded | MapStateFailed | MapStateAborted | MapStateStarted => {
                self.close_container(i, base, "Map")
            }
            // A redriven Map Run runs again under the re-entered Map state.
            MapRunStarted | MapRunRedriven => {
                if let Some(m) = self.find_state(base, |s| s.state_type == "Map") {
                    self.states[m].map_runs.push((i, None));
                }
                base
            }
            MapRunSucceeded | MapRunFailed | MapRunAborted => {
                if let Some(m) = self.find_state(base, |s| s.state_type == "Map") {
                    if let Some(f) = e.details.failure() {
                        // What the Map state fails with next (MapStateFailed).
                        self.states[m].failure.get_or_insert(f.clone());
                    }
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
                match self.aborted_state(i, base, want) {
                    Some(s) => {
                        self.abort(s, i, base);
                        (self.states[s].frame, Some(s))
                    }
                    None => base,
                }
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

    /// The states whose span encloses event context `ctx`: its state and
    /// every Map or Parallel state around it.
    fn chain(&self, ctx: (FrameIdx, Option<StateIdx>)) -> Vec<StateIdx> {
        let mut out: Vec<StateIdx> = ctx.1.into_iter().collect();
        let mut frame = Some(ctx.0);
        while let Some(f) = frame {
            out.extend(self.frames[f].parent_state);
            frame = self.frames[f].parent_frame;
        }
        out
    }

    /// Whether container state `c` encloses state `s`.
    fn inside(&self, s: StateIdx, c: StateIdx) -> bool {
        self.chain((self.states[s].frame, None)).contains(&c)
    }

    /// The state a `{Task,Wait,Map,Parallel}StateAborted` at `i` closes.
    /// When it points at a failure, it closes either the failing state
    /// itself (a Task that fails inside a branch is logged as aborted) or
    /// sibling work the failure aborted (AWS links every abort of a failing
    /// Map's or Parallel's other iterations and branches to the first
    /// failure): an open state of that type inside the innermost container
    /// around the failure, not on the failure's own path, the earliest
    /// entered first (the aborts of one failure share their moment, so
    /// which of two equal candidates an abort closes moves an end by
    /// milliseconds at most). The failing state is meant when the aborts of
    /// this type pointing at the failure outnumber the siblings. Otherwise
    /// the abort points into its own state's work: walk up from there.
    fn aborted_state(
        &self,
        i: usize,
        base: (FrameIdx, Option<StateIdx>),
        ty: &str,
    ) -> Option<StateIdx> {
        let open = |s: &StateRec| s.state_type == ty && s.exited.is_none() && s.closed_by.is_none();
        let e = self.ev(i);
        let prev = self
            .position(e.previous_event_id)
            .map(|p| self.ev(p).kind.as_str());
        let after_failure = prev.is_some_and(|k| k.ends_with("Failed") || k.ends_with("TimedOut"));
        if !after_failure {
            return self.find_state(base, open);
        }
        let chain = self.chain(base);
        let siblings: Vec<StateIdx> = chain
            .iter()
            .copied()
            .filter(|&c| matches!(self.states[c].state_type, "Map" | "Parallel"))
            .map(|c| {
                (0..self.states.len())
                    .filter(|&s| {
                        open(&self.states[s])
                            && self.states[s].entered < i
                            && !chain.contains(&s)
                            // Over already: inside a container that exited
                            // (found by tests/stitch_generated.rs).
                            && self.exited_ancestor(s).is_none()
                            && self.inside(s, c)
                    })
                    .collect::<Vec<_>>()
            })
            .find(|found| !found.is_empty())
            .unwrap_or_default();
        let own = base.1.filter(|&x| open(&self.states[x]));
        if let Some(x) = own {
            let aborts = self
                .events
                .iter()
                .filter(|a| a.previous_event_id == e.previous_event_id && a.kind == e.kind)
                .count();
            if aborts > siblings.len() {
                return Some(x);
            }
        }
        siblings.into_iter().min_by_key(|&s| self.states[s].entered)
    }

    /// Closes state `s` at abort event `i`, failed with `States.Aborted`
    /// and, as the cause, the failure that aborted it when `base` is one.
    fn abort(&mut self, s: StateIdx, i: usize, base: (FrameIdx, Option<StateIdx>)) {
        let kind = self.ev(i).kind.as_str();
        let why = base
            .1
            .filter(|&f| f != s)
            .and_then(|f| {
                let st = &self.states[f];
                let error = st.failure.as_ref()?.error.as_deref().unwrap_or("a failure");
                Some(format!("{kind}: {} failed ({error})", st.name))
            })
            .unwrap_or_else(|| kind.to_owned());
        let st = &mut self.states[s];
        st.closed_by.get_or_insert(i);
        st.failure.get_or_insert(Failure {
            error: Some("States.Aborted".into()),
            cause: Some(why.into()),
        });
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
        let aborted = matches!(
            e.kind,
            EventKind::ParallelStateAborted | EventKind::MapStateAborted
        );
        if aborted {
            if let Some(s) = self.aborted_state(i, base, ty) {
                self.abort(s, i, base);
                return (self.states[s].frame, Some(s));
            }
            return base;
        }
        match self.find_state(base, |s| s.state_type == ty && s.exited.is_none()) {
            Some(s) => {
                let failed = matches!(
                    e.kind,
                    EventKind::ParallelStateFailed | EventKind::MapStateFailed
                );
                if failed {
                    self.states[s].closed_by.get_or_insert(i);
                    if self.states[s].failure.is_none() {
                        // Inherit the failure of what failed inside, when it says.
                        let inner = base.1.and_then(|c| self.states[c].failure.clone());
                        let what = if ty == "Parallel" {
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
