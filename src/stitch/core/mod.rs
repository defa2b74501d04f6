//! The stitcher core: a synchronous state machine that owns a set of
//! executions and turns their events into emissions (trace-model.md §5).
//! No runtime, no channels, no clock: time is passed in.
//!
//! - Events arrive at least once, in any order: each execution keeps its
//!   events deduplicated by id; spans are built from the whole set, so the
//!   result does not depend on arrival.
//! - An execution is final at its first terminal event plus the grace; late
//!   events reopen it for another grace and produce only spans not emitted
//!   before (ids are deterministic).
//! - No terminal event within the idle timeout: emitted as incomplete.
//! - Past the open-execution bound, the longest-idle executions are flushed
//!   as incomplete and counted.
//!
//! Inputs (`apply`, `tick`, `drain`) queue work; the emissions come out of
//! the returned [`Emissions`] one execution at a time, so a shell can pace
//! them (yield, wait for room downstream) between two. Work not pulled stays
//! queued for the next call. The state exports to and imports from
//! [`ExecState`]s: what snapshots hold, and what a cluster partition's new
//! owner loads.

mod assemble;
mod exec;
#[cfg(test)]
mod tests;

pub use exec::Phase;

use self::assemble::{assemble, span_config};
use self::exec::Exec;
use super::builder::{build, Mode};
use super::checkpoint::{ContextState, ExecState};
use super::config::StitchConfig;
use super::context::TraceContext;
use super::held::{HeldEvents, IdSet};
use super::joins::{self, JoinRegistry};
use super::output::Emission;
use super::span::{op, Span};
use super::tagsets::TagSets;
use crate::events::{Event, EventKind, StreamParams};
use crate::hashing::{FastMap, FastSet};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The core's counters (summed over shards by the handle).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StitchSnapshot {
    pub open_executions: usize,
    pub retained_executions: usize,
    pub events: u64,
    pub duplicate_events: u64,
    pub late_events: u64,
    pub spans_emitted: u64,
    pub executions_finalized: u64,
    pub executions_incomplete: u64,
    pub evictions: u64,
    pub orphaned_events: u64,
    /// Spans emitted while their execution was still running.
    pub incremental_spans: u64,
    /// Events and payload bytes held by open executions now.
    pub held_events: usize,
    pub held_payload_bytes: usize,
}

impl StitchSnapshot {
    pub fn add(&mut self, o: &StitchSnapshot) {
        self.open_executions += o.open_executions;
        self.retained_executions += o.retained_executions;
        self.events += o.events;
        self.duplicate_events += o.duplicate_events;
        self.late_events += o.late_events;
        self.spans_emitted += o.spans_emitted;
        self.executions_finalized += o.executions_finalized;
        self.executions_incomplete += o.executions_incomplete;
        self.evictions += o.evictions;
        self.orphaned_events += o.orphaned_events;
        self.incremental_spans += o.incremental_spans;
        self.held_events += o.held_events;
        self.held_payload_bytes += o.held_payload_bytes;
    }
}

/// One unit of queued work: at most one execution's emission each.
#[derive(Debug)]
enum Work {
    /// Emit the execution's spans; `force` also ends one whose redrive runs
    /// on (idle timeout, bound, shutdown).
    Finalize { arn: Arc<str>, force: bool },
    /// Emit the finished spans of a running execution.
    EmitClosed(Arc<str>),
    /// Forget executions retained past the window, then past the bound.
    Forget(Vec<Arc<str>>),
}

pub struct StitcherCore {
    cfg: Arc<StitchConfig>,
    joins: Arc<JoinRegistry>,
    /// Boxed: the table keeps empty buckets (up to half of it after it
    /// grows), and an empty bucket should cost a pointer, not an `Exec`.
    execs: FastMap<Arc<str>, Box<Exec>>,
    /// Executions whose phase is open (kept as a count: the bound is
    /// checked per batch).
    open: usize,
    /// Of those, queued to be flushed for the bound and not flushed yet.
    evicting: usize,
    max_open: usize,
    stats: StitchSnapshot,
    tag_sets: TagSets,
    work: VecDeque<Work>,
}

/// The emissions of queued work, made as they are pulled.
pub struct Emissions<'a> {
    core: &'a mut StitcherCore,
    now: Instant,
}

impl Iterator for Emissions<'_> {
    type Item = Emission;

    fn next(&mut self) -> Option<Emission> {
        while let Some(w) = self.core.work.pop_front() {
            if let Some(e) = self.core.perform(w, self.now) {
                return Some(e);
            }
        }
        None
    }
}

impl StitcherCore {
    /// A core holding at most `max_open` open executions; `joins` is shared
    /// by every core that may hold a parent or child of its executions.
    pub fn new(cfg: Arc<StitchConfig>, max_open: usize, joins: Arc<JoinRegistry>) -> Self {
        Self {
            cfg,
            joins,
            execs: FastMap::default(),
            open: 0,
            evicting: 0,
            max_open: max_open.max(1),
            stats: StitchSnapshot::default(),
            tag_sets: TagSets::default(),
            work: VecDeque::new(),
        }
    }

    /// Takes a batch of events (of one stream, with its parameters).
    /// Emits only when the open-execution bound forces executions out.
    pub fn apply(
        &mut self,
        events: Vec<Event>,
        params: &Arc<StreamParams>,
        now: Instant,
    ) -> Emissions<'_> {
        self.ingest(events, params, now);
        self.enforce_bound();
        Emissions { core: self, now }
    }

    /// What time alone makes due: executions past their grace or idle
    /// timeout, incremental emissions of running ones, and forgetting
    /// those retained past the window.
    pub fn tick(&mut self, now: Instant) -> Emissions<'_> {
        self.schedule_due(now);
        Emissions { core: self, now }
    }

    /// Every execution not emitted yet, now, complete or not (shutdown,
    /// tests). Retained executions stay for late events.
    pub fn drain(&mut self, now: Instant) -> Emissions<'_> {
        for (arn, e) in &self.execs {
            if e.phase.is_open() || e.phase.due_at().is_some() {
                self.work.push_back(Work::Finalize {
                    arn: arn.clone(),
                    force: true,
                });
            }
        }
        Emissions { core: self, now }
    }

    /// Counters, in constant time; `deep` adds the held events and payload
    /// bytes, which walk every held event.
    pub fn stats(&self, deep: bool) -> StitchSnapshot {
        let mut s = self.stats.clone();
        s.open_executions = self.open;
        s.retained_executions = self.execs.len() - self.open;
        if !deep {
            return s;
        }
        debug_assert_eq!(
            self.execs.values().filter(|e| e.phase.is_open()).count(),
            self.open,
            "open-execution count drifted"
        );
        s.held_events = self.execs.values().map(|e| e.events.len()).sum();
        s.held_payload_bytes = self
            .execs
            .values()
            .flat_map(|e| e.events.values())
            .map(|e| e.details.payload_bytes())
            .sum();
        s
    }

    pub fn len(&self) -> usize {
        self.execs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.execs.is_empty()
    }

    /// The phase of one execution (tests, diagnostics).
    pub fn phase(&self, arn: &str) -> Option<Phase> {
        self.execs.get(arn).map(|e| e.phase)
    }

    /// Everything held, one execution at a time, for a snapshot; clocks
    /// become ages relative to `now`.
    pub fn export(&self, now: Instant) -> impl Iterator<Item = ExecState> + '_ {
        let sorted = |set: &FastSet<u64>| {
            let mut v: Vec<u64> = set.iter().copied().collect();
            v.sort_unstable();
            v
        };
        self.execs.iter().map(move |(arn, e)| ExecState {
            arn: arn.to_string(),
            attrs: e
                .params
                .pairs()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            events: e.events.values().map(super::output::event_line).collect(),
            seen: e.seen.iter().collect(),
            pruned: e.pruned.iter().collect(),
            emitted: sorted(&e.emitted),
            context: e.context.as_ref().map(|c| ContextState {
                trace_id: c.trace_id,
                tid: c.tid.clone(),
                parent_id: c.parent_id,
            }),
            finalized: e.phase.finalized_at().is_some(),
            final_pending: e.phase.due_at().is_some(),
            idle_ms: now.saturating_duration_since(e.last_seen).as_millis() as u64,
            dirty: e.dirty,
        })
    }

    /// Takes executions back from a snapshot; their clocks restart at `now`
    /// minus the idle time they had.
    pub fn import(&mut self, execs: Vec<ExecState>, now: Instant) {
        let mut strings = crate::events::StringCache::default();
        for st in execs {
            let arn: Arc<str> = Arc::from(st.arn.as_str());
            let mut events = HeldEvents::default();
            let mut ids = IdSet::default();
            for line in &st.events {
                match crate::events::parse_log_line(line, &mut strings) {
                    Ok(e) => {
                        if ids.insert(e.id) {
                            events.insert(e);
                        }
                    }
                    Err(err) => {
                        tracing::error!(execution_arn = %arn, error = %err, "snapshot event unreadable; skipped")
                    }
                }
            }
            let last_seen = now
                .checked_sub(Duration::from_millis(st.idle_ms))
                .unwrap_or(now);
            let phase = Phase::restored(
                st.finalized,
                st.final_pending,
                now,
                now + self.cfg.finalize_grace,
            );
            let mut exec = Exec::new(last_seen, Arc::new(StreamParams::from_pairs(st.attrs)));
            exec.pending_joins = events.values().any(joins::is_join_event);
            exec.events = events;
            exec.phase = phase;
            exec.emitted = st.emitted.into_iter().collect();
            exec.seen = st.seen.into_iter().collect();
            exec.pruned = st.pruned.into_iter().collect();
            exec.dirty = st.dirty;
            exec.context = st.context.map(|c| TraceContext {
                trace_id: c.trace_id,
                tid: c.tid,
                parent_id: c.parent_id,
                source: "retained",
            });
            if exec.pending_joins {
                joins::register_children(&exec.events, &arn, &self.joins);
            }
            if phase.is_open() {
                self.open += 1;
            }
            if let Some(old) = self.execs.insert(arn, Box::new(exec)) {
                if old.phase.is_open() {
                    self.open -= 1;
                }
            }
        }
    }

    fn ingest(&mut self, events: Vec<Event>, params: &Arc<StreamParams>, now: Instant) {
        let grace_end = now + self.cfg.finalize_grace;
        let mut joins_touched: Vec<Arc<str>> = Vec::new();
        let mut events = events.into_iter();
        while let Some(first) = events.as_slice().first() {
            // A run of one execution's events (the decoder gives the events
            // of one ARN one shared `Arc`): one lookup and one reservation
            // for the run instead of a hash and a possible growth per event.
            let arn = first.execution_arn.clone();
            let run = events
                .as_slice()
                .iter()
                .take_while(|e| Arc::ptr_eq(&e.execution_arn, &arn))
                .count();
            let open = &mut self.open;
            let exec = self.execs.entry(arn).or_insert_with(|| {
                *open += 1;
                Box::new(Exec::new(now, params.clone()))
            });
            exec.last_seen = now;
            if !params.is_empty() {
                exec.params = params.clone();
            }
            let mut reserved = false;
            for (i, e) in events.by_ref().take(run).enumerate() {
                self.stats.events += 1;
                if !exec.seen.insert(e.id) {
                    self.stats.duplicate_events += 1;
                    continue;
                }
                if !reserved {
                    // At the first new event: a redelivered run of
                    // duplicates must not leave room behind in a retained
                    // execution.
                    exec.events.reserve(run - i);
                    reserved = true;
                }
                if exec.on_new_event(e.kind.is_execution_terminal(), grace_end) {
                    self.stats.late_events += 1;
                }
                if joins::is_join_event(&e) && !exec.pending_joins {
                    exec.pending_joins = true;
                    joins_touched.push(e.execution_arn.clone());
                }
                exec.dirty = true;
                exec.events.insert(e);
            }
        }
        // Register children before any of them can finalize.
        for arn in joins_touched {
            if let Some(exec) = self.execs.get_mut(&arn) {
                exec.pending_joins = !joins::register_children(&exec.events, &arn, &self.joins);
            }
        }
    }

    /// Queues the longest-idle open executions past the bound, to be
    /// flushed as incomplete. It frees a tenth of the bound at once, so the
    /// scan is rare.
    fn enforce_bound(&mut self) {
        let open = self.open - self.evicting;
        if open <= self.max_open {
            return;
        }
        let target = self.max_open - self.max_open / 10;
        let mut idle: Vec<(Instant, Arc<str>)> = self
            .execs
            .iter()
            .filter(|(_, e)| e.phase.is_open() && !e.evicting)
            .map(|(k, e)| (e.last_seen, k.clone()))
            .collect();
        idle.sort();
        for (_, arn) in idle.into_iter().take(open - target) {
            if let Some(e) = self.execs.get_mut(&arn) {
                e.evicting = true;
            }
            self.evicting += 1;
            self.stats.evictions += 1;
            self.work.push_back(Work::Finalize { arn, force: true });
        }
    }

    fn schedule_due(&mut self, now: Instant) {
        let cfg = &self.cfg;
        let mut gone = Vec::new();
        for (arn, e) in &self.execs {
            match e.phase {
                Phase::Closing { at } | Phase::Reopened { at, .. } if at <= now => {
                    self.work.push_back(Work::Finalize {
                        arn: arn.clone(),
                        force: false,
                    })
                }
                Phase::Open if now.saturating_duration_since(e.last_seen) >= cfg.idle_timeout => {
                    self.work.push_back(Work::Finalize {
                        arn: arn.clone(),
                        force: true,
                    })
                }
                Phase::Finalized { at }
                    if now.saturating_duration_since(at.max(e.last_seen)) >= cfg.retention =>
                {
                    gone.push(arn.clone())
                }
                _ => {}
            }
        }
        let every = cfg.incremental_interval;
        if !every.is_zero() {
            for (arn, e) in &self.execs {
                // Quiet for the grace: stragglers of what closed are in, as
                // they would be for the final emission.
                if e.dirty
                    && e.phase == Phase::Open
                    && now.saturating_duration_since(e.last_seen) >= cfg.finalize_grace
                    && now.saturating_duration_since(e.last_partial.unwrap_or(e.first_seen))
                        >= every
                {
                    self.work.push_back(Work::EmitClosed(arn.clone()));
                }
            }
        }
        self.work.push_back(Work::Forget(gone));
    }

    fn perform(&mut self, work: Work, now: Instant) -> Option<Emission> {
        match work {
            Work::Finalize { arn, force } => self.finalize(&arn, force, now),
            Work::EmitClosed(arn) => self.emit_closed(&arn, now),
            Work::Forget(gone) => {
                self.forget(gone);
                None
            }
        }
    }

    fn forget(&mut self, gone: Vec<Arc<str>>) {
        for arn in gone {
            // Reopened since it was found gone: it stays.
            if matches!(
                self.execs.get(&arn).map(|e| e.phase),
                Some(Phase::Finalized { .. })
            ) {
                self.execs.remove(&arn);
            }
        }
        // Bound the retained set too: forget the oldest past the bound.
        let retained = self
            .execs
            .values()
            .filter(|e| matches!(e.phase, Phase::Finalized { .. }))
            .count();
        if retained > self.max_open {
            let mut old: Vec<(Instant, Arc<str>)> = self
                .execs
                .iter()
                .filter_map(|(k, e)| match e.phase {
                    Phase::Finalized { at } => Some((at, k.clone())),
                    _ => None,
                })
                .collect();
            old.sort();
            for (_, arn) in old.into_iter().take(retained - self.max_open) {
                self.execs.remove(&arn);
            }
        }
    }

    /// The execution's trace context: retained (stragglers), else from its
    /// input, else a parent's join; `None` with no start seen either means
    /// nothing can be emitted yet.
    fn context_of(exec: &Exec, arn: &str, joins: &JoinRegistry) -> (Option<TraceContext>, bool) {
        let ctx = match exec.context.clone() {
            Some(c) => Some(c),
            None => joins::resolve(&exec.events, arn, joins),
        };
        let has_start = exec
            .events
            .values()
            .any(|e| e.kind == EventKind::ExecutionStarted);
        (ctx, has_start)
    }

    /// While the execution runs: emits its finished spans and releases the
    /// payloads they captured. Nothing is emitted before the trace context
    /// is known (ExecutionStarted, or a parent's join).
    fn emit_closed(&mut self, arn: &Arc<str>, now: Instant) -> Option<Emission> {
        let exec = self.execs.get_mut(arn)?;
        exec.dirty = false;
        exec.last_partial = Some(now);
        let (ctx, has_start) = Self::context_of(exec, arn, &self.joins);
        if ctx.is_none() && !has_start {
            return None;
        }
        let cfg = span_config(&self.cfg.spans, &exec.params);
        let built = build(
            exec.events.values().collect(),
            &cfg,
            ctx.as_ref(),
            &exec.pruned,
            &mut self.tag_sets,
            Mode::Partial,
        );
        for id in &built.released {
            if let Some(e) = exec.events.get_mut(*id) {
                e.details.release_payloads();
            }
        }
        let fresh: Vec<Span> = built
            .spans
            .into_iter()
            .filter(|s| exec.emitted.insert(s.span_id))
            .collect();
        let emission = assemble(
            fresh,
            built.samples,
            &built.owners,
            exec.events.values(),
            self.cfg.forward_logs,
            &built.tags,
        );
        // Every span of a prunable event is emitted by now (now or before).
        let prunable: IdSet = built.prunable.into_iter().collect();
        exec.events.remove_all(&prunable);
        for id in prunable.iter() {
            exec.pruned.insert(id);
        }
        if emission.spans.is_empty() {
            return None;
        }
        let n = emission.spans.len() as u64;
        self.stats.incremental_spans += n;
        self.stats.spans_emitted += n;
        Some(emission)
    }

    /// Builds the execution's spans, emits those not emitted before, and
    /// drops the events.
    fn finalize(&mut self, arn: &Arc<str>, force: bool, now: Instant) -> Option<Emission> {
        let exec = self.execs.get_mut(arn)?;
        if exec.evicting {
            exec.evicting = false;
            self.evicting -= 1;
        }
        // Queued twice (a tick, a drain, the bound): only what is still
        // waiting is done.
        let waiting = if force {
            exec.phase.is_open() || exec.phase.due_at().is_some()
        } else {
            exec.phase.due_at().is_some()
        };
        if !waiting {
            return None;
        }
        // A redrive started after the last terminal event: the execution
        // runs on. Emit what is final (the first run included) and keep the
        // events; it finalizes at the redrive's own terminal event.
        let last_terminal = exec
            .events
            .values()
            .filter(|e| e.kind.is_execution_terminal())
            .map(|e| e.id)
            .max();
        let last_redrive = exec
            .events
            .values()
            .filter(|e| e.kind == EventKind::ExecutionRedriven)
            .map(|e| e.id)
            .max();
        if !force && last_redrive.is_some() && last_redrive > last_terminal {
            if !exec.phase.is_open() {
                self.open += 1;
            }
            exec.phase = Phase::Open;
            return self.emit_closed(arn, now);
        }
        let was_open = exec.phase.is_open();
        if exec.pending_joins {
            joins::register_children(&exec.events, arn, &self.joins);
            exec.pending_joins = false;
        }
        let (ctx, has_start) = Self::context_of(exec, arn, &self.joins);
        let events: Vec<Event> = exec.events.take_all();
        let cfg = span_config(&self.cfg.spans, &exec.params);
        let built = build(
            events.iter().collect(),
            &cfg,
            ctx.as_ref(),
            &exec.pruned,
            &mut self.tag_sets,
            Mode::Final,
        );
        let spans = built.spans;
        if exec.context.is_none() && has_start {
            exec.context = spans
                .iter()
                .find(|s| s.name == op::EXECUTION && !s.meta.contains_key("redrive"))
                .map(|root| TraceContext {
                    trace_id: root.trace_id,
                    tid: root.meta.get("_dd.p.tid").map(|t| t.to_string()),
                    parent_id: root.parent_id,
                    source: "retained",
                });
        }
        let complete = events.iter().any(|e| e.kind.is_execution_terminal());
        let fresh: Vec<Span> = spans
            .into_iter()
            .filter(|s| exec.emitted.insert(s.span_id))
            .collect();
        exec.phase = Phase::Finalized { at: now };
        if was_open {
            self.open -= 1;
        }
        if complete {
            self.stats.executions_finalized += 1;
        } else {
            self.stats.executions_incomplete += 1;
        }
        if let Some(root) = fresh.iter().find(|s| s.meta.contains_key("_dd.p.tid")) {
            self.stats.orphaned_events += root
                .metrics
                .get("step_function.orphaned_events")
                .copied()
                .unwrap_or(0.0) as u64;
        }
        if fresh.is_empty() {
            return None;
        }
        let n = fresh.len() as u64;
        self.stats.spans_emitted += n;
        Some(assemble(
            fresh,
            built.samples,
            &built.owners,
            events.iter(),
            self.cfg.forward_logs,
            &built.tags,
        ))
    }
}
