//! Events of one execution → its spans (trace-model.md §2–§3).
//!
//! A pure function of the execution's deduplicated event set: events are
//! walked in id order and placed by the `previous_event_id` graph
//! (`place`), never by arrival order, so any permutation or duplication of
//! the input yields the same spans with the same ids. Each span kind is
//! built by its own function (`kinds`) from the placement and the build's
//! shared dressing (`dress`); `signals` reads the enhanced metric samples
//! and each event's owning span off the same placement.

mod dress;
mod kinds;
mod place;
mod signals;
#[cfg(test)]
mod tests;

pub use dress::cut_utf8;

use self::dress::Dress;
use self::kinds::Built;
use self::place::{Builder, FrameKind, StateIdx};
use super::context::TraceContext;
use super::held::IdSet;
use super::output::MetricSample;
use super::span::Span;
use super::tagsets::{TagSet, TagSets};
use crate::events::Event;

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

/// What a build is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The execution is over (or flushed): every span. Without a terminal
    /// event, open spans close at the last seen event and carry
    /// `step_function.incomplete:true`.
    Final,
    /// The execution still runs: only the spans that are final already
    /// (exited states, ended attempts, iterations, Map runs, redrives,
    /// branches of a closed Parallel), identical to what the final build
    /// will make, plus what their emission lets the caller forget.
    Partial,
}

/// Everything one build produces.
#[derive(Debug, Default)]
pub struct Build {
    pub spans: Vec<Span>,
    /// Enhanced metric samples, each with the id of the span it belongs to
    /// (for every span built: the caller keeps those of the spans it emits).
    pub samples: Vec<(u64, MetricSample)>,
    /// `(event id, span id)` when `SpanConfig::event_owners` is on.
    pub owners: Vec<(u64, u64)>,
    /// The execution's metric and log tags (`statemachinename:...`, ...), sorted.
    pub tags: TagSet,
    /// Partial builds: events whose payloads the emitted spans captured.
    pub released: Vec<u64>,
    /// Partial builds: events of exited top-level states, which no later
    /// event needs (the state's exit event stays as the anchor the next
    /// state links to).
    pub prunable: Vec<u64>,
}

/// Builds one execution's spans. `events` must be one execution's events,
/// deduplicated by id (order does not matter); `pruned` names events
/// dropped after an earlier partial build; tag sets come from (and go into)
/// `sets`, one per stitcher core.
pub fn build(
    events: Vec<&Event>,
    cfg: &SpanConfig,
    ctx_override: Option<&TraceContext>,
    pruned: &IdSet,
    sets: &mut TagSets,
    mode: Mode,
) -> Build {
    let mut sorted = events;
    if sorted.is_empty() {
        return Build::default();
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
    let partial = mode == Mode::Partial;
    let d = Dress::new(&b, ctx_override, partial);
    let spans = all_spans(&d);
    let want_samples = signals::enabled(&b);
    let (tags, samples) = if want_samples || cfg.event_owners {
        let mut exec_tags = signals::exec_tags(&b, &d.service, d.parsed.as_ref(), sets);
        let samples = if want_samples {
            signals::enhanced_samples(&b, &spans, d.exec_id, &mut exec_tags)
        } else {
            Vec::new()
        };
        (exec_tags.base().clone(), samples)
    } else {
        (TagSet::from([]), Vec::new())
    };
    let owners = if cfg.event_owners {
        signals::event_owners(&b, d.exec_id)
    } else {
        Vec::new()
    };
    let (spans, released, prunable) = if partial {
        let closed = spans
            .into_iter()
            .filter(|(_, c)| *c)
            .map(|(s, _)| s)
            .collect();
        (closed, released(&b), prunable(&b))
    } else {
        let all = spans.into_iter().map(|(s, _)| s).collect();
        (all, Vec::new(), Vec::new())
    };
    Build {
        spans,
        samples,
        owners,
        tags,
        released,
        prunable,
    }
}

/// Every span of a finished execution, with the default settings for what
/// a stream does not say (tests, tools, benches).
pub fn build_spans(
    events: &[Event],
    cfg: &SpanConfig,
    ctx_override: Option<&TraceContext>,
) -> Vec<Span> {
    build(
        events.iter().collect(),
        cfg,
        ctx_override,
        &IdSet::default(),
        &mut TagSets::default(),
        Mode::Final,
    )
    .spans
}

/// Every span, each with whether it is final: the execution, then the
/// frames (redrives, iterations, branches), then each state with its
/// attempts and Map runs.
fn all_spans(d: &Dress<'_, '_>) -> Vec<Built> {
    let b = d.b;
    let mut spans = Vec::new();
    spans.extend(kinds::execution(d));
    let ends = kinds::frame_ends(d);
    for fi in 1..b.frames.len() {
        spans.extend(kinds::frame(d, fi, &ends));
    }
    for si in 0..b.states.len() {
        let end = d.end_of_state(si);
        spans.push(kinds::state(d, si, end));
        spans.extend(kinds::attempts(d, si, end));
        spans.extend(kinds::map_runs(d, si, end));
    }
    spans
}

/// Events whose payloads closed states have consumed (a partial build's
/// spans captured them).
fn released(b: &Builder<'_>) -> Vec<u64> {
    let ev = b.events;
    let closed: Vec<bool> = b
        .states
        .iter()
        .map(|st| st.exited.or(st.closed_by).is_some())
        .collect();
    let mut done: Vec<u64> = b
        .ctx
        .iter()
        .zip(ev)
        .filter(|(c, _)| c.and_then(|c| c.1).is_some_and(|s| closed[s]))
        .map(|(_, e)| e.id)
        .collect();
    done.extend(b.states.iter().filter_map(|st| st.exited.map(|x| ev[x].id)));
    done
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
