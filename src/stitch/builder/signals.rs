//! Two things read off a placed execution besides its spans: which span each
//! event belongs to (log ↔ trace correlation) and the enhanced metric
//! samples each span carries (trace-model.md §6). A child module of the
//! builder so it reads the placement instead of re-deriving it; samples hang
//! on span ids so the stitcher emits them exactly once, with their span.

use super::dress::ms_to_ns;
use super::kinds::{attempt_span_id, map_run_span_id};
use super::place::{Builder, FrameKind};
use crate::events::{EventKind, ExecutionArn};
use crate::hashing::FastMap;
use crate::stitch::output::{metric, MetricKind, MetricSample};
use crate::stitch::span::Span;
use crate::stitch::tagsets::{BaseParts, ExecTags, TagSet, TagSets};

/// Events of a task attempt (as opposed to the state's own events).
fn is_task_event(kind: &EventKind) -> bool {
    let k = kind.as_str();
    (k.starts_with("Task") || k.starts_with("LambdaFunction") || k.starts_with("Activity"))
        && !k.contains("State")
}

fn is_task_started(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::TaskStarted | EventKind::LambdaFunctionStarted | EventKind::ActivityStarted
    )
}

/// `(event id, span id)` for every event: the state, attempt, iteration,
/// branch, Map run, redrive or execution span it is part of.
pub(super) fn event_owners(b: &Builder<'_>, exec_id: u64) -> Vec<(u64, u64)> {
    let ev = b.events;
    let mut owner: Vec<u64> = b
        .ctx
        .iter()
        .map(|c| match *c {
            Some((_, Some(s))) => b.states[s].span_id,
            Some((f, None)) => b.frames[f].span_id,
            None => exec_id,
        })
        .collect();
    // Execution start and terminal events describe the execution, whatever
    // state they link to; a redrive's own events override below.
    for (i, e) in ev.iter().enumerate() {
        if e.kind == EventKind::ExecutionStarted || e.kind.is_execution_terminal() {
            owner[i] = exec_id;
        }
    }
    for f in &b.frames {
        let (start, end) = match &f.kind {
            FrameKind::Redrive { event, end } => (*event, *end),
            FrameKind::Iteration { start, end, .. } => (*start, *end),
            _ => continue,
        };
        owner[start] = f.span_id;
        if let Some(e) = end {
            owner[e] = f.span_id;
        }
    }
    for (si, st) in b.states.iter().enumerate() {
        owner[st.entered] = st.span_id;
        for x in [st.exited, st.closed_by].into_iter().flatten() {
            owner[x] = st.span_id;
        }
        for (n, a) in st.attempts.iter().enumerate().skip(1) {
            let id = attempt_span_id(b, si, n);
            for j in a.scheduled..=a.end.unwrap_or(a.scheduled) {
                let in_state = b.ctx[j].is_some_and(|c| c.1 == Some(si));
                if (in_state || j == a.scheduled) && is_task_event(&ev[j].kind) {
                    owner[j] = id;
                }
            }
        }
        for (start, end) in &st.map_runs {
            let id = map_run_span_id(b, *start);
            owner[*start] = id;
            if let Some(e) = end {
                owner[*e] = id;
            }
        }
    }
    ev.iter().map(|e| e.id).zip(owner).collect()
}

/// The tags every enhanced metric of this execution carries, sorted, and
/// its states' sets, from the shard's cache.
pub(super) fn exec_tags<'s>(
    b: &Builder<'_>,
    service: &str,
    arn: Option<&ExecutionArn<'_>>,
    sets: &'s mut TagSets,
) -> ExecTags<'s> {
    let parts = BaseParts {
        arn,
        service,
        env: b.cfg.env.as_deref(),
        version: b.cfg.version.as_deref(),
        tags: &b.cfg.tags,
    };
    sets.execution(&parts, || base_tags(b, service, arn))
}

fn base_tags(b: &Builder<'_>, service: &str, arn: Option<&ExecutionArn<'_>>) -> Vec<String> {
    let mut tags = Vec::with_capacity(8 + b.cfg.tags.len());
    if let Some(a) = arn {
        tags.push(format!("statemachinename:{}", a.state_machine_name));
        tags.push(format!("statemachinearn:{}", a.state_machine_arn()));
        tags.push(format!("region:{}", a.region));
        tags.push(format!("account_id:{}", a.account_id));
    }
    if let Some(env) = &b.cfg.env {
        tags.push(format!("env:{env}"));
    }
    tags.push(format!("service:{service}"));
    if let Some(v) = &b.cfg.version {
        tags.push(format!("version:{v}"));
    }
    for (k, v) in &b.cfg.tags {
        if !tags.iter().any(|t| t.split(':').next() == Some(k.as_str())) {
            tags.push(format!("{k}:{v}"));
        }
    }
    tags.sort();
    tags
}

/// Whether this execution's state machine emits enhanced metrics.
pub(super) fn enabled(b: &Builder<'_>) -> bool {
    if !b.cfg.enhanced_metrics {
        return false;
    }
    if b.cfg.enhanced_metrics_exclude.is_empty() {
        return true;
    }
    let Ok(a) = ExecutionArn::parse(b.arn) else {
        return true;
    };
    let sm_arn = a.state_machine_arn();
    !b.cfg
        .enhanced_metrics_exclude
        .iter()
        .any(|x| x == a.state_machine_name || *x == sm_arn)
}

struct Out {
    samples: Vec<(u64, MetricSample)>,
    base: TagSet,
}

impl Out {
    fn push(
        &mut self,
        owner: u64,
        name: &'static str,
        kind: MetricKind,
        value: f64,
        ts: i64,
        tags: Option<&TagSet>,
    ) {
        self.samples.push((
            owner,
            MetricSample {
                name,
                kind,
                value,
                timestamp_ms: ts,
                tags: tags.unwrap_or(&self.base).clone(),
            },
        ));
    }
}

/// Enhanced metric samples, each keyed by the span it is emitted with.
pub(super) fn enhanced_samples(
    b: &Builder<'_>,
    spans: &[(Span, bool)],
    exec_id: u64,
    sets: &mut ExecTags<'_>,
) -> Vec<(u64, MetricSample)> {
    use MetricKind::*;
    let ev = b.events;
    let by_id: FastMap<u64, &Span> = spans.iter().map(|(s, _)| (s.span_id, s)).collect();
    let end_ms = |s: &Span| (s.start + s.duration) / 1_000_000;
    let mut out = Out {
        samples: Vec::with_capacity(3 + 8 * b.states.len()),
        base: sets.base().clone(),
    };

    // The execution and its redrives.
    if let Some(exec) = by_id.get(&exec_id) {
        if let Some(start) = ev.iter().find(|e| e.kind == EventKind::ExecutionStarted) {
            let ts = start.timestamp_ms;
            out.push(exec_id, metric::EXECUTION_STARTED, Count, 1.0, ts, None);
        }
        if let Some(t) = ev.iter().find(|e| e.kind.is_execution_terminal()) {
            execution_outcome(&mut out, exec, t.kind == EventKind::ExecutionSucceeded);
        }
    }
    for f in &b.frames {
        if let FrameKind::Redrive { end: Some(e), .. } = f.kind {
            if let Some(s) = by_id.get(&f.span_id) {
                execution_outcome(&mut out, s, ev[e].kind == EventKind::ExecutionSucceeded);
            }
        }
    }

    for (si, st) in b.states.iter().enumerate() {
        let Some(span) = by_id.get(&st.span_id) else {
            continue;
        };
        let state_tags = sets.state(&st.name, st.state_type);
        let state_tags = Some(&state_tags);
        let entered = ev[st.entered].timestamp_ms;
        let id = st.span_id;
        out.push(
            id,
            metric::STATE_INVOCATION_COUNT,
            Count,
            1.0,
            entered,
            state_tags,
        );
        let ended = span.error == 1 || st.exited.or(st.closed_by).is_some() || b.state_final(si);
        if ended {
            let ts = end_ms(span);
            let outcome = if span.error == 1 {
                metric::STATE_FAILED
            } else {
                metric::STATE_SUCCEEDED
            };
            out.push(id, outcome, Count, 1.0, ts, state_tags);
            let duration = span.duration as f64;
            let run = st
                .attempts
                .last()
                .and_then(|a| a.end.map(|e| (a.scheduled, e)))
                .map(|(s, e)| ms_to_ns((ev[e].timestamp_ms - ev[s].timestamp_ms).max(0)) as f64)
                .unwrap_or(duration);
            let retries = st.attempts.len().saturating_sub(1) as f64;
            out.push(id, metric::STATE_DURATION, Gauge, duration, ts, state_tags);
            out.push(id, metric::STATE_RUN_DURATION, Gauge, run, ts, state_tags);
            out.push(
                id,
                metric::STATE_RETRY_COUNT,
                Gauge,
                retries,
                ts,
                state_tags,
            );
        }
        for (n, a) in st.attempts.iter().enumerate() {
            let owner = if n == 0 {
                id
            } else {
                attempt_span_id(b, si, n)
            };
            let last = a.end.unwrap_or(a.scheduled);
            let started = (a.scheduled..=last)
                .find(|&j| is_task_started(&ev[j].kind))
                .unwrap_or(a.scheduled);
            let ts = ev[started].timestamp_ms;
            out.push(owner, metric::TASKS_STARTED, Count, 1.0, ts, None);
            let Some(e) = a.end else { continue };
            let k = ev[e].kind.as_str();
            let outcome = if k.ends_with("Succeeded") {
                metric::TASKS_SUCCEEDED
            } else if k.ends_with("TimedOut") {
                metric::TASKS_TIMED_OUT
            } else {
                metric::TASKS_FAILED
            };
            let ts = ev[e].timestamp_ms;
            out.push(owner, outcome, Count, 1.0, ts, None);
            let took = ms_to_ns((ts - ev[started].timestamp_ms).max(0)) as f64;
            out.push(owner, metric::TASK_DURATION, Distribution, took, ts, None);
        }
    }
    out.samples
}

fn execution_outcome(out: &mut Out, span: &Span, succeeded: bool) {
    let ts = (span.start + span.duration) / 1_000_000;
    let name = if succeeded {
        metric::EXECUTION_SUCCEEDED
    } else {
        metric::EXECUTION_FAILED
    };
    out.push(span.span_id, name, MetricKind::Count, 1.0, ts, None);
    out.push(
        span.span_id,
        metric::EXECUTION_TIME,
        MetricKind::Distribution,
        span.duration as f64,
        ts,
        None,
    );
}
