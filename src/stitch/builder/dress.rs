//! What every span of one build shares: the trace it belongs to, its
//! service and common tags, how a span is cut from two events, how errors
//! and payloads are written on it, and where a state ends.

use super::place::{Builder, StateIdx};
use super::MAX_ERROR_MESSAGE_BYTES;
use crate::events::{EventKind, ExecutionArn, Failure, Payload};
use crate::stitch::context::{self, TraceContext};
use crate::stitch::span::Span;
use crate::stitch::tags::{Meta, Metrics};
use smol_str::SmolStr;

pub(super) fn ms_to_ns(ms: i64) -> i64 {
    ms.saturating_mul(1_000_000)
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

/// Which payload a span captures, and its tag keys.
#[derive(Clone, Copy)]
pub(super) enum Capture {
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

/// One build's shared dressing.
pub(super) struct Dress<'b, 'a> {
    pub b: &'b Builder<'a>,
    pub trace: TraceContext,
    /// `trace.high_bits()`, read once per build.
    trace_hi: u64,
    pub parsed: Option<ExecutionArn<'a>>,
    pub sm_name: String,
    pub service: SmolStr,
    common: Meta,
    /// Position of `ExecutionStarted` and of the first terminal event.
    pub started: Option<usize>,
    pub first_terminal: Option<usize>,
    /// A terminal event was seen.
    pub complete: bool,
    /// Position of the last event.
    pub last: usize,
    /// The execution span's id (the root frame's).
    pub exec_id: u64,
}

impl<'b, 'a> Dress<'b, 'a> {
    /// `partial`: the execution still runs, so a missing terminal event
    /// does not make spans incomplete.
    pub fn new(b: &'b Builder<'a>, ctx_override: Option<&TraceContext>, partial: bool) -> Self {
        let ev = b.events;
        let arn = b.arn;
        let parsed = ExecutionArn::parse(arn).ok();
        let started = ev
            .iter()
            .position(|e| e.kind == EventKind::ExecutionStarted);
        let first_terminal = ev.iter().position(|e| e.kind.is_execution_terminal());
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
        // Replaced on executions and on Tasks that call out (kinds.rs).
        common.insert(
            "span.kind",
            SmolStr::new_static(super::kinds::kind::INTERNAL),
        );
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
        Dress {
            b,
            trace_hi: trace.high_bits(),
            trace,
            parsed,
            sm_name,
            service,
            common,
            started,
            first_terminal,
            complete,
            last: ev.len() - 1,
            exec_id: b.frames[0].span_id,
        }
    }

    /// A span from event `start` to event `end`, with the common tags.
    // Inlined as the closure it replaced was: it is called once per span.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn span(
        &self,
        id: u64,
        parent: u64,
        name: &'static str,
        resource: &str,
        start: usize,
        end: usize,
        redrive: u32,
    ) -> Span {
        let ev = self.b.events;
        let mut metrics = Metrics::with_capacity(4);
        metrics.insert("step_function.redrive_count", redrive as f64);
        Span {
            trace_id: self.trace.trace_id,
            trace_id_high: self.trace_hi,
            span_id: id,
            parent_id: parent,
            name,
            resource: SmolStr::new(resource),
            service: self.service.clone(),
            span_type: "serverless",
            start: ms_to_ns(ev[start].timestamp_ms),
            duration: ms_to_ns((ev[end].timestamp_ms - ev[start].timestamp_ms).max(0)),
            error: 0,
            meta: self.common.clone_with_room(8),
            metrics,
        }
    }

    /// Marks the span failed, with the failure's type and cause when known.
    pub fn set_error(s: &mut Span, f: Option<&Failure>) {
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
    }

    /// Writes a payload on the span: redacted, cut to the capture limit,
    /// with its truncation flags.
    pub fn capture(&self, s: &mut Span, key: Capture, p: Option<&Payload>) {
        let cfg = self.b.cfg;
        let Some(p) = p else { return };
        if cfg.max_payload_bytes == 0 {
            return;
        }
        let redacted = if cfg.redact_keys.is_empty() {
            None
        } else {
            redact(&p.text, &cfg.redact_keys)
        };
        let text = redacted.as_deref().unwrap_or(&p.text);
        let (cut, truncated) = cut_utf8(text, cfg.max_payload_bytes);
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
    }

    /// The first terminal event after position `from`, when the execution
    /// (or its redrive) ended other than by succeeding: what stopped the
    /// work still open then.
    pub fn failed_terminal_after(&self, from: usize) -> Option<usize> {
        let ev = self.b.events;
        (from..ev.len())
            .find(|&j| ev[j].kind.is_execution_terminal())
            .filter(|&t| ev[t].kind != EventKind::ExecutionSucceeded)
    }

    /// The position of the event a state's span ends at.
    pub fn end_of_state(&self, si: StateIdx) -> usize {
        let b = self.b;
        let ev = b.events;
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
        // failure it triggered), unless that event says work was still
        // going on (a task started, a child entered): then, as when nothing
        // followed from it, it ran until the execution or redrive ended
        // (stopped, timed out); with no terminal at all, at the last event
        // seen.
        if s.last > s.entered && !in_progress(&ev[s.last].kind) {
            return s.last;
        }
        let terminal = (s.entered..ev.len()).find(|&j| ev[j].kind.is_execution_terminal());
        match terminal {
            Some(t) => t,
            None if self.complete => s.last,
            None => self.last,
        }
    }
}

/// An event after which the work it belongs to goes on.
fn in_progress(kind: &EventKind) -> bool {
    use EventKind::*;
    matches!(
        kind,
        TaskScheduled
            | TaskStarted
            | TaskSubmitted
            | ActivityScheduled
            | ActivityStarted
            | LambdaFunctionScheduled
            | LambdaFunctionStarted
            | MapStateStarted
            | MapIterationStarted
            | MapRunStarted
            | MapRunRedriven
            | ParallelStateStarted
    ) || kind.as_str().ends_with("StateEntered")
}
