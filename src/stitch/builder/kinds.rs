//! One function per span kind (trace-model.md §2–§3): the execution, a
//! redrive, a Map iteration, a Parallel branch, a state, a retry attempt, a
//! Map Run. Each returns its span with a flag saying whether it is final
//! already (a running execution emits only final spans).

use super::dress::{Capture, Dress};
use super::place::{Builder, Frame, FrameKind, StateIdx};
use crate::events::{Details, EventKind, Failure};
use crate::stitch::ids;
use crate::stitch::span::{op, Span};
use smol_str::SmolStr;

/// A span and whether it is final.
pub(super) type Built = (Span, bool);

/// `span.kind` (Datadog's and OpenTelemetry's vocabulary): an execution
/// serves its caller, a Task that invokes a Lambda function or starts an
/// execution is a client of it, the rest is internal work (the default,
/// among the tags every span of an execution shares: replacing one tag on
/// the few others is cheaper than adding one to every span).
pub(super) mod kind {
    pub const SERVER: &str = "server";
    pub const CLIENT: &str = "client";
    pub const INTERNAL: &str = "internal";
}

/// Whether a Task calls a Lambda function or starts an execution (whose
/// spans then hang under it).
fn calls_out(st: &super::place::StateRec) -> bool {
    let rt = st.resource_type.as_deref().unwrap_or("");
    let r = st.resource.as_deref().unwrap_or("");
    let lambda = rt == "lambda" || (rt == "aws-sdk:lambda" && r == "invoke");
    let start = (rt == "states" || rt == "aws-sdk:sfn") && r.starts_with("startExecution");
    lambda || start || st.function_arn.is_some()
}

/// How an execution run ended, as `DescribeExecution` names it (the store
/// and UI read it; absent while running or when no terminal event came).
const STATUS: &str = "step_function.status";

fn status(terminal: &EventKind) -> &'static str {
    match terminal {
        EventKind::ExecutionSucceeded => "SUCCEEDED",
        EventKind::ExecutionTimedOut => "TIMED_OUT",
        EventKind::ExecutionAborted => "ABORTED",
        _ => "FAILED",
    }
}

/// The execution span: `ExecutionStarted` (or the first event seen) to the
/// first terminal event. `None` for a build of a redrive segment alone (the
/// original run was emitted and forgotten long ago): its span must not be
/// emitted a second time.
pub(super) fn execution(d: &Dress<'_, '_>) -> Option<Built> {
    let b = d.b;
    let ev = b.events;
    let start = d.started.unwrap_or(0);
    let end = d.first_terminal.unwrap_or(d.last);
    let mut exec = d.span(
        d.exec_id,
        d.trace.parent_id,
        op::EXECUTION,
        &d.sm_name,
        start,
        end,
        ev[start].redrive_count,
    );
    if let Some(tid) = &d.trace.tid {
        exec.meta.insert("_dd.p.tid", tid.as_str());
    }
    exec.meta
        .insert("span.kind", SmolStr::new_static(kind::SERVER));
    if d.trace.source != "own" {
        exec.meta
            .insert("step_function.context_source", d.trace.source);
    }
    d.capture(
        &mut exec,
        Capture::Input,
        d.started.and_then(|s| ev[s].details.input()),
    );
    if let Some(t) = d.first_terminal {
        d.capture(&mut exec, Capture::Output, ev[t].details.output());
        exec.meta
            .insert(STATUS, SmolStr::new_static(status(&ev[t].kind)));
        if ev[t].kind != EventKind::ExecutionSucceeded {
            Dress::set_error(&mut exec, ev[t].details.failure());
        }
    }
    if b.orphans > 0 {
        exec.metrics
            .insert("step_function.orphaned_events", b.orphans as f64);
    }
    let redrive_segment =
        d.started.is_none() && ev.iter().any(|e| e.kind == EventKind::ExecutionRedriven);
    // Final once the first run ended: the span stops at its first terminal.
    (!redrive_segment).then_some((exec, d.first_terminal.is_some()))
}

/// Per frame: its latest end (its own states' and nested frames'), and
/// whether one of its own states failed without being caught.
pub(super) struct FrameEnds {
    end: Vec<Option<usize>>,
    failed: Vec<bool>,
}

pub(super) fn frame_ends(d: &Dress<'_, '_>) -> FrameEnds {
    let b = d.b;
    let mut end: Vec<Option<usize>> = vec![None; b.frames.len()];
    let mut failed = vec![false; b.frames.len()];
    for (si, st) in b.states.iter().enumerate() {
        let e = d.end_of_state(si);
        // Stopped with the execution: open, inside nothing that exited.
        let stopped = st.exited.is_none()
            && st.closed_by.is_none()
            && b.exited_ancestor(si).is_none()
            && d.failed_terminal_after(st.entered).is_some();
        if st.state_type == "Fail" || (st.exited.is_none() && st.failure.is_some()) || stopped {
            failed[st.frame] = true;
        }
        let mut f = Some(st.frame);
        while let Some(i) = f {
            end[i] = Some(end[i].map_or(e, |x| x.max(e)));
            f = b.frames[i].parent_frame;
        }
    }
    FrameEnds { end, failed }
}

/// The span a frame hangs under: its Map or Parallel state, else its
/// enclosing frame's span, else the execution's.
fn frame_parent(d: &Dress<'_, '_>, f: &Frame) -> u64 {
    match f.parent_state {
        Some(s) => d.b.states[s].span_id,
        None => f
            .parent_frame
            .map(|p| d.b.frames[p].span_id)
            .unwrap_or(d.exec_id),
    }
}

/// The span of frame `fi` (a redrive, an iteration or a branch).
pub(super) fn frame(d: &Dress<'_, '_>, fi: usize, ends: &FrameEnds) -> Option<Built> {
    let f = &d.b.frames[fi];
    match &f.kind {
        FrameKind::Redrive { event, end } => Some(redrive(d, f, *event, *end)),
        FrameKind::Iteration {
            name,
            index,
            start,
            end,
        } => Some(iteration(d, f, (name, *index), *start, *end, ends.end[fi])),
        FrameKind::Branch { first_state } => {
            Some(branch(d, f, *first_state, ends.end[fi], ends.failed[fi]))
        }
        FrameKind::Execution => None,
    }
}

/// A redrive: `ExecutionRedriven` to the terminal event that closed it
/// (or the last event seen), tagged `redrive:true`.
fn redrive(d: &Dress<'_, '_>, f: &Frame, event: usize, end: Option<usize>) -> Built {
    let ev = d.b.events;
    let mut s = d.span(
        f.span_id,
        frame_parent(d, f),
        op::EXECUTION,
        &d.sm_name,
        event,
        end.unwrap_or(d.last),
        ev[event].redrive_count,
    );
    s.meta.insert("redrive", "true");
    if let Some(e) = end {
        s.meta
            .insert(STATUS, SmolStr::new_static(status(&ev[e].kind)));
        if ev[e].kind != EventKind::ExecutionSucceeded {
            Dress::set_error(&mut s, ev[e].details.failure());
        }
    }
    (s, end.is_some())
}

/// A Map iteration, `name[index]`: `MapIterationStarted` to its own end
/// event, or to the last event of what ran inside it.
fn iteration(
    d: &Dress<'_, '_>,
    f: &Frame,
    (name, index): (&str, u64),
    start: usize,
    own_end: Option<usize>,
    contained_end: Option<usize>,
) -> Built {
    let b = d.b;
    let ev = b.events;
    let end = own_end.unwrap_or(contained_end.unwrap_or(start).max(start));
    let mut s = d.span(
        f.span_id,
        frame_parent(d, f),
        op::MAP_ITERATION,
        &format!("{name}[{index}]"),
        start,
        end,
        ev[start].redrive_count,
    );
    s.metrics
        .insert("step_function.map.iteration_index", index as f64);
    let map_open = f
        .parent_state
        .is_some_and(|p| b.states[p].exited.or(b.states[p].closed_by).is_none());
    if own_end.is_none() && map_open {
        // Still running when the execution stopped, timed out or failed.
        if let Some(t) = d.failed_terminal_after(start) {
            Dress::set_error(&mut s, ev[t].details.failure());
        }
    }
    if let Some(e) = own_end {
        if matches!(
            ev[e].kind,
            EventKind::MapIterationFailed | EventKind::MapIterationAborted
        ) {
            let failure = (ev[e].kind == EventKind::MapIterationAborted).then(|| Failure {
                error: Some("States.Aborted".into()),
                cause: None,
            });
            Dress::set_error(&mut s, failure.as_ref());
        }
    }
    let done = own_end.is_some() || f.parent_state.is_some_and(|p| b.state_final(p));
    (s, done)
}

/// A Parallel branch, named by its first state: that state's entry to the
/// last event of what ran inside it; failed when one of its own states
/// failed without being caught.
fn branch(
    d: &Dress<'_, '_>,
    f: &Frame,
    first_state: StateIdx,
    end: Option<usize>,
    failed: bool,
) -> Built {
    let b = d.b;
    let first = &b.states[first_state];
    let mut s = d.span(
        f.span_id,
        frame_parent(d, f),
        op::PARALLEL_BRANCH,
        &first.name,
        first.entered,
        end.unwrap_or(first.entered),
        b.events[first.entered].redrive_count,
    );
    if failed {
        Dress::set_error(&mut s, None);
    }
    let done = f
        .parent_state
        .is_some_and(|p| b.states[p].exited.or(b.states[p].closed_by).is_some());
    (s, done)
}

/// A state: entered to `end` (its exit, or where `end_of_state` says),
/// with its type, resource, payloads, retry count and error.
pub(super) fn state(d: &Dress<'_, '_>, si: StateIdx, end: usize) -> Built {
    let b = d.b;
    let ev = b.events;
    let st = &b.states[si];
    let e_in = ev[st.entered];
    let mut s = d.span(
        st.span_id,
        // A state hangs under the span of the frame it runs in.
        b.frames[st.frame].span_id,
        op::STATE,
        &st.name,
        st.entered,
        end,
        e_in.redrive_count,
    );
    s.meta.insert("step_function.state_name", st.name.as_str());
    s.meta.insert("step_function.state_type", st.state_type);
    if calls_out(st) {
        s.meta
            .insert("span.kind", SmolStr::new_static(kind::CLIENT));
    }
    let retries = st.attempts.len().saturating_sub(1);
    s.metrics
        .insert("step_function.retry_count", retries as f64);
    d.capture(&mut s, Capture::Input, e_in.details.input());
    d.capture(
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
        Dress::set_error(&mut s, st.failure.as_ref());
    } else if st.state_type == "Fail" || terminal_failure.is_some() {
        Dress::set_error(
            &mut s,
            terminal_failure.and_then(|t| ev[t].details.failure()),
        );
    }
    (s, b.state_final(si))
}

/// The span id of a state's `n`th attempt (the first is the state's own).
pub(super) fn attempt_span_id(b: &Builder<'_>, si: StateIdx, n: usize) -> u64 {
    let st = &b.states[si];
    let e_in = b.events[st.entered];
    ids::state_span_id(
        b.arn,
        &st.name,
        e_in.timestamp_ms,
        n as u32,
        e_in.redrive_count,
    )
}

/// The span id of the Map Run that started at event `start`.
pub(super) fn map_run_span_id(b: &Builder<'_>, start: usize) -> u64 {
    ids::derived_span_id(b.arn, "maprun", &[&b.events[start].id])
}

/// Retries: one span per attempt after the first, under the state's span,
/// from its scheduling to its end (or the state's).
pub(super) fn attempts(d: &Dress<'_, '_>, si: StateIdx, state_end: usize) -> Vec<Built> {
    let b = d.b;
    let st = &b.states[si];
    let e_in = b.events[st.entered];
    let mut out = Vec::new();
    for (n, a) in st.attempts.iter().enumerate().skip(1) {
        let mut sa = d.span(
            attempt_span_id(b, si, n),
            st.span_id,
            op::STATE,
            &st.name,
            a.scheduled,
            a.end.unwrap_or(state_end),
            e_in.redrive_count,
        );
        sa.meta.insert("step_function.state_name", st.name.as_str());
        sa.meta.insert("step_function.state_type", st.state_type);
        sa.meta.insert("step_function.attempt", n.to_string());
        if calls_out(st) {
            sa.meta
                .insert("span.kind", SmolStr::new_static(kind::CLIENT));
        }
        sa.metrics.insert("step_function.retry_count", n as f64);
        if let Some(rt) = &st.resource_type {
            sa.meta.insert("step_function.resource_type", rt.as_str());
        }
        if let Some(r) = &st.resource {
            sa.meta.insert("step_function.resource", r.as_str());
        }
        if let Some(f) = &a.failure {
            Dress::set_error(&mut sa, Some(f));
        }
        out.push((sa, a.end.is_some() || b.state_final(si)));
    }
    out
}

/// Distributed Map: one span per Map Run under the Map state's span.
pub(super) fn map_runs(d: &Dress<'_, '_>, si: StateIdx, state_end: usize) -> Vec<Built> {
    let b = d.b;
    let ev = b.events;
    let st = &b.states[si];
    let mut out = Vec::new();
    for (start, end) in &st.map_runs {
        let mut sr = d.span(
            map_run_span_id(b, *start),
            st.span_id,
            op::MAP_RUN,
            &st.name,
            *start,
            end.unwrap_or(state_end),
            ev[*start].redrive_count,
        );
        if let Details::MapRunStarted {
            map_run_arn: Some(m),
        }
        | Details::MapRunRedriven {
            map_run_arn: Some(m),
            ..
        } = &ev[*start].details
        {
            sr.meta.insert("step_function.map_run_arn", &**m);
        }
        if let Some(e) = end {
            match ev[*e].kind {
                EventKind::MapRunSucceeded => {}
                EventKind::MapRunAborted => Dress::set_error(
                    &mut sr,
                    Some(&Failure {
                        error: Some("States.Aborted".into()),
                        cause: None,
                    }),
                ),
                _ => Dress::set_error(&mut sr, ev[*e].details.failure()),
            }
        }
        out.push((sr, end.is_some() || b.state_final(si)));
    }
    out
}
