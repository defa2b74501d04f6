//! The core's rules, driven by hand with made-up instants: no runtime.

use super::*;
use crate::stitch::builder::{build_spans, SpanConfig};
use crate::stitch::testkit::{ev, slow_execution, ARN};
use std::collections::HashSet;

fn config() -> StitchConfig {
    StitchConfig {
        finalize_grace: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(15 * 60),
        retention: Duration::from_secs(120),
        incremental_interval: Duration::ZERO,
        ..StitchConfig::default()
    }
}

fn core_with(cfg: StitchConfig, max_open: usize) -> StitcherCore {
    StitcherCore::new(Arc::new(cfg), max_open, Arc::new(JoinRegistry::new(1024)))
}

fn core() -> StitcherCore {
    core_with(config(), 1000)
}

fn params() -> Arc<StreamParams> {
    Arc::default()
}

fn secs(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

fn spans(emissions: Emissions<'_>) -> Vec<Span> {
    emissions.flat_map(|e| e.spans).collect()
}

#[test]
fn an_execution_is_emitted_once_at_its_terminal_event_plus_the_grace() {
    let t0 = Instant::now();
    let mut c = core();
    let events = slow_execution(ARN);
    assert!(spans(c.apply(events[..5].to_vec(), &params(), t0)).is_empty());
    assert_eq!(c.phase(ARN), Some(Phase::Open));
    assert!(spans(c.tick(secs(t0, 600))).is_empty(), "no terminal yet");
    let t1 = secs(t0, 600);
    assert!(spans(c.apply(events[5..].to_vec(), &params(), t1)).is_empty());
    assert_eq!(c.phase(ARN), Some(Phase::Closing { at: secs(t1, 5) }));
    assert!(
        spans(c.tick(secs(t1, 4))).is_empty(),
        "not before the grace"
    );
    let out = spans(c.tick(secs(t1, 5)));
    assert_eq!(out, build_spans(&events, &SpanConfig::default(), None));
    assert_eq!(c.phase(ARN), Some(Phase::Finalized { at: secs(t1, 5) }));
    assert!(spans(c.tick(secs(t1, 10))).is_empty(), "emitted once");
    let s = c.stats(true);
    assert_eq!((s.open_executions, s.retained_executions), (0, 1));
    assert_eq!(s.executions_finalized, 1);
    assert_eq!(s.spans_emitted, out.len() as u64);
    assert_eq!(s.held_events, 0, "events dropped once emitted");
    // Forgotten after the retention window, not before.
    c.tick(secs(t1, 5 + 119)).for_each(drop);
    assert_eq!(c.len(), 1);
    c.tick(secs(t1, 5 + 120)).for_each(drop);
    assert!(c.is_empty());
}

#[test]
fn without_a_terminal_event_it_is_emitted_incomplete_after_the_idle_timeout() {
    let t0 = Instant::now();
    let mut c = core();
    let events = slow_execution(ARN);
    c.apply(events[..4].to_vec(), &params(), t0).for_each(drop);
    assert!(spans(c.tick(secs(t0, 15 * 60 - 1))).is_empty());
    let out = spans(c.tick(secs(t0, 15 * 60)));
    assert_eq!(out.len(), 3, "execution, W1, W2 (open)");
    assert!(out
        .iter()
        .all(|s| s.meta["step_function.incomplete"] == "true"));
    assert_eq!(c.stats(false).executions_incomplete, 1);
}

#[test]
fn duplicates_are_counted_and_late_events_add_only_new_spans() {
    let t0 = Instant::now();
    let mut c = core();
    let events = slow_execution(ARN);
    let mut first = events.clone();
    first.remove(4); // W2's exit arrives late
    first.extend(events[..3].iter().cloned()); // and some duplicates
    c.apply(first, &params(), t0).for_each(drop);
    let early = spans(c.tick(secs(t0, 5)));
    assert_eq!(early.len(), 3);
    let t1 = secs(t0, 30);
    c.apply(vec![events[4].clone(), events[1].clone()], &params(), t1)
        .for_each(drop);
    assert_eq!(
        c.phase(ARN),
        Some(Phase::Reopened {
            finalized: secs(t0, 5),
            at: secs(t1, 5)
        })
    );
    let late = spans(c.tick(secs(t1, 5)));
    let ids: HashSet<u64> = early.iter().map(|s| s.span_id).collect();
    assert!(late.iter().all(|s| !ids.contains(&s.span_id)));
    assert!(late.iter().all(|s| s.trace_id == early[0].trace_id));
    let s = c.stats(false);
    assert_eq!((s.duplicate_events, s.late_events), (4, 1));
    assert_eq!(s.open_executions, 0);
}

#[test]
fn the_bound_flushes_the_longest_idle_once_even_if_emissions_wait() {
    let t0 = Instant::now();
    let mut c = core_with(config(), 10);
    for i in 0..11u64 {
        let arn = format!("{ARN}-{i}");
        // Emissions not pulled: the work stays queued.
        let _ = c.apply(slow_execution(&arn)[..2].to_vec(), &params(), secs(t0, i));
    }
    assert_eq!(c.stats(false).evictions, 2, "down to 9 = 10 - 10/10");
    // One more before the queue is drained: the queued two are not counted
    // again, nor are others picked in their place.
    let _ = c.apply(
        slow_execution(&format!("{ARN}-11"))[..2].to_vec(),
        &params(),
        secs(t0, 11),
    );
    let out = spans(c.tick(secs(t0, 12)));
    let flushed: HashSet<&str> = out
        .iter()
        .map(|s| s.meta["step_function.execution_name"].as_str())
        .collect();
    assert_eq!(flushed, HashSet::from(["run-1-0", "run-1-1"]));
    let s = c.stats(true);
    assert_eq!((s.evictions, s.open_executions), (2, 10));
}

#[test]
fn drain_emits_every_open_execution_and_keeps_what_was_emitted() {
    let t0 = Instant::now();
    let mut c = core();
    c.apply(
        slow_execution(&format!("{ARN}-a"))[..3].to_vec(),
        &params(),
        t0,
    )
    .for_each(drop);
    c.apply(slow_execution(ARN), &params(), t0).for_each(drop);
    let emitted = c.drain(t0).count();
    assert_eq!(emitted, 2);
    assert_eq!(c.drain(t0).count(), 0, "nothing twice");
    assert_eq!(c.stats(false).open_executions, 0);
}

#[test]
fn export_and_import_carry_phases_and_clocks() {
    let t0 = Instant::now();
    let mut c = core();
    let events = slow_execution(ARN);
    c.apply(events[..3].to_vec(), &params(), t0).for_each(drop);
    let b_arn = format!("{ARN}-b");
    c.apply(slow_execution(&b_arn), &params(), t0)
        .for_each(drop);
    let t1 = secs(t0, 60);
    let states: Vec<ExecState> = c.export(t1).collect();
    assert_eq!(states.len(), 2);
    let a = states.iter().find(|s| s.arn == ARN).unwrap();
    assert_eq!(
        (a.finalized, a.final_pending, a.idle_ms),
        (false, false, 60_000)
    );
    let b = states.iter().find(|s| s.arn == b_arn).unwrap();
    assert!(b.final_pending && !b.finalized);

    let t2 = secs(t0, 1000);
    let mut d = core();
    d.import(states, t2);
    assert_eq!(d.phase(ARN), Some(Phase::Open));
    assert_eq!(d.phase(&b_arn), Some(Phase::Closing { at: secs(t2, 5) }));
    assert_eq!(d.stats(true).held_events, 3 + 6);
    // The rest arrives; the restored execution ends as if never moved.
    d.apply(events[3..].to_vec(), &params(), t2).for_each(drop);
    let out = spans(d.tick(secs(t2, 5)));
    let of_a: Vec<Span> = out
        .into_iter()
        .filter(|s| s.meta["step_function.execution_arn"] == ARN)
        .collect();
    assert_eq!(of_a, build_spans(&events, &SpanConfig::default(), None));
}

/// Started, failed, redriven later, succeeded: one ARN, two runs.
fn redriven(arn: &str) -> Vec<Event> {
    let t = 1_780_000_000_000;
    let mut v = vec![
        ev(arn, 1, 0, EventKind::ExecutionStarted, None, t),
        ev(arn, 2, 1, EventKind::WaitStateEntered, Some("W1"), t + 1),
        ev(arn, 3, 2, EventKind::WaitStateExited, Some("W1"), t + 2),
        ev(arn, 4, 3, EventKind::ExecutionFailed, None, t + 3),
        ev(arn, 5, 4, EventKind::ExecutionRedriven, None, t + 3_600_000),
        ev(
            arn,
            6,
            5,
            EventKind::WaitStateEntered,
            Some("W2"),
            t + 3_600_001,
        ),
        ev(
            arn,
            7,
            6,
            EventKind::WaitStateExited,
            Some("W2"),
            t + 7_200_000,
        ),
        ev(
            arn,
            8,
            7,
            EventKind::ExecutionSucceeded,
            None,
            t + 7_200_001,
        ),
    ];
    for e in &mut v[4..] {
        e.redrive_count = 1;
    }
    v
}

#[test]
fn a_redrive_after_emission_reopens_the_execution_until_its_own_end() {
    let t0 = Instant::now();
    let mut c = core();
    let events = redriven(ARN);
    c.apply(events[..4].to_vec(), &params(), t0).for_each(drop);
    let first = spans(c.tick(secs(t0, 5)));
    assert!(!first.is_empty());
    // An hour later the redrive starts: the execution runs again, counted
    // as open, and is not forgotten while its redrive waits.
    let t1 = secs(t0, 3600);
    c.apply(events[4..6].to_vec(), &params(), t1).for_each(drop);
    let mut later = spans(c.tick(secs(t1, 5)));
    assert_eq!(c.phase(ARN), Some(Phase::Open));
    assert_eq!(c.stats(false).open_executions, 1);
    later.extend(spans(c.tick(secs(t1, 5 + 600))));
    assert_eq!(c.phase(ARN), Some(Phase::Open), "kept past the retention");
    let t2 = secs(t1, 3600);
    c.apply(events[6..].to_vec(), &params(), t2).for_each(drop);
    later.extend(spans(c.tick(secs(t2, 5))));
    assert!(matches!(c.phase(ARN), Some(Phase::Finalized { .. })));
    let mut got: Vec<u64> = first.iter().chain(&later).map(|s| s.span_id).collect();
    let n = got.len();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), n, "a span was emitted twice");
    let mut want: Vec<u64> = build_spans(&events, &SpanConfig::default(), None)
        .iter()
        .map(|s| s.span_id)
        .collect();
    want.sort_unstable();
    assert_eq!(got, want);
}

#[test]
fn running_executions_emit_their_finished_spans_and_release_payloads() {
    let t0 = Instant::now();
    let mut c = core_with(
        StitchConfig {
            incremental_interval: Duration::from_secs(60),
            ..config()
        },
        1000,
    );
    let events = slow_execution(ARN);
    c.apply(events[..3].to_vec(), &params(), t0).for_each(drop);
    assert!(
        spans(c.tick(secs(t0, 59))).is_empty(),
        "not before the interval"
    );
    let partial = spans(c.tick(secs(t0, 60)));
    assert_eq!(
        partial
            .iter()
            .map(|s| s.resource.as_str())
            .collect::<Vec<_>>(),
        ["W1"]
    );
    assert!(
        spans(c.tick(secs(t0, 200))).is_empty(),
        "nothing new arrived"
    );
    assert_eq!(c.stats(false).incremental_spans, 1);
}

/// A task that fails the execution, redriven twice: it fails again, then
/// succeeds (tests/aws_actions.rs runs this in moto).
fn failing_task_redriven_twice(arn: &str) -> Vec<Event> {
    use EventKind as K;
    let t = 1_780_000_000_000;
    let mut v = vec![
        ev(arn, 1, 0, K::ExecutionStarted, None, t),
        ev(arn, 2, 0, K::TaskStateEntered, Some("Fetch"), t + 1),
        ev(arn, 3, 2, K::TaskScheduled, None, t + 2),
        ev(arn, 4, 3, K::TaskStarted, None, t + 3),
        ev(arn, 5, 4, K::TaskFailed, None, t + 4),
        ev(arn, 6, 5, K::ExecutionFailed, None, t + 5),
    ];
    for (run, at) in [(1u32, t + 10_000), (2, t + 20_000)] {
        let base = v.len() as u64;
        let mut more = vec![
            ev(arn, base + 1, base, K::ExecutionRedriven, None, at),
            ev(
                arn,
                base + 2,
                base + 1,
                K::TaskStateEntered,
                Some("Fetch"),
                at + 1,
            ),
            ev(arn, base + 3, base + 2, K::TaskScheduled, None, at + 2),
            ev(arn, base + 4, base + 3, K::TaskStarted, None, at + 3),
        ];
        if run == 1 {
            more.push(ev(arn, base + 5, base + 4, K::TaskFailed, None, at + 4));
            more.push(ev(
                arn,
                base + 6,
                base + 5,
                K::ExecutionFailed,
                None,
                at + 5,
            ));
        } else {
            more.push(ev(arn, base + 5, base + 4, K::TaskSucceeded, None, at + 4));
            more.push(ev(
                arn,
                base + 6,
                base + 5,
                K::TaskStateExited,
                Some("Fetch"),
                at + 5,
            ));
            more.push(ev(
                arn,
                base + 7,
                base + 6,
                K::ExecutionSucceeded,
                None,
                at + 6,
            ));
        }
        for e in &mut more {
            e.redrive_count = run;
        }
        v.extend(more);
    }
    v
}

/// Each metric sample goes out once, with its span, however often the
/// execution is reopened: a redriven execution counts each state visit
/// once (the live and backfilled metrics must agree).
#[test]
fn a_redriven_execution_emits_each_metric_sample_once() {
    let t0 = Instant::now();
    let mut c = core();
    let events = redriven(ARN);
    let mut samples = Vec::new();
    let mut take = |em: Emissions<'_>| {
        for e in em {
            samples.extend(e.metrics.into_iter().map(|m| m.name));
        }
    };
    c.apply(events[..4].to_vec(), &params(), t0).for_each(drop);
    take(c.tick(secs(t0, 5)));
    let t1 = secs(t0, 3600);
    c.apply(events[4..6].to_vec(), &params(), t1).for_each(drop);
    take(c.tick(secs(t1, 5)));
    let t2 = secs(t1, 3600);
    c.apply(events[6..].to_vec(), &params(), t2).for_each(drop);
    take(c.tick(secs(t2, 5)));
    let count = |name: &str| samples.iter().filter(|n| **n == name).count();
    assert_eq!(
        count(crate::stitch::output::metric::STATE_INVOCATION_COUNT),
        2,
        "{samples:?}"
    );
    assert_eq!(
        count(crate::stitch::output::metric::EXECUTION_FAILED),
        1,
        "{samples:?}"
    );
    assert_eq!(
        count(crate::stitch::output::metric::EXECUTION_SUCCEEDED),
        1,
        "{samples:?}"
    );
}

#[test]
fn a_task_failing_twice_then_redriven_counts_each_attempt_once() {
    use crate::stitch::output::metric;
    let events = failing_task_redriven_twice(ARN);
    let whole = |name: &str| {
        let mut c = core();
        let t0 = Instant::now();
        c.apply(events.clone(), &params(), t0).for_each(drop);
        c.tick(secs(t0, 5))
            .flat_map(|e| e.metrics)
            .filter(|m| m.name == name)
            .count()
    };
    let t0 = Instant::now();
    let mut c = core();
    let mut names = Vec::new();
    let mut at = t0;
    for range in [0..6, 6..12, 12..events.len()] {
        c.apply(events[range].to_vec(), &params(), at)
            .for_each(drop);
        for e in c.tick(secs(at, 5)) {
            names.extend(e.metrics.into_iter().map(|m| m.name));
        }
        at = secs(at, 60);
    }
    for name in [
        metric::TASKS_STARTED,
        metric::TASKS_FAILED,
        metric::STATE_INVOCATION_COUNT,
        metric::EXECUTION_FAILED,
    ] {
        let live = names.iter().filter(|n| **n == name).count();
        assert_eq!(live, whole(name), "{name}: {names:?}");
    }
    assert_eq!(whole(metric::TASKS_STARTED), 3);
}
