//! The span model against the fixtures (trace-model.md §1–§3).
//!
//! 1. Reviewed outlines (`tests/golden/*.tree`): hand-checked against each
//!    history — see `tests/golden/README.md`.
//! 2. For every fixture execution, properties read independently off the
//!    history: one state span per `*StateEntered` with the Datadog id
//!    formula, right parent kind, start and duration in ns from the event
//!    timestamps, errors from the failure events, one iteration per
//!    `MapIterationStarted`, one attempt span per retry, a connected tree.
//! 3. Any permutation and duplication of the events gives the same spans.

mod common;

use common::fixtures::{self, Fixture};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use stepstitch::events::{load_history, Details, Event, EventKind};
use stepstitch::stitch::builder::{build_spans, SpanConfig};
use stepstitch::stitch::ids;
use stepstitch::stitch::span::{op, Span};

fn cfg() -> SpanConfig {
    SpanConfig {
        max_payload_bytes: 0,
        ..SpanConfig::default()
    }
}

fn events_of(f: &Fixture) -> Vec<Event> {
    load_history(&f.history(), f.execution_arn()).unwrap()
}

#[test]
fn reviewed_outlines() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut n = 0;
    let mut covered: HashSet<String> = HashSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("tree") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap();
        let f = Fixture::load(name);
        covered.extend(events_of(&f).iter().map(|e| e.kind.as_str().to_owned()));
        let got = stepstitch::stitch::render_tree(&build_spans(&events_of(&f), &cfg(), None));
        let want = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            got, want,
            "{name}: outline changed; review it against the history before updating"
        );
        n += 1;
    }
    assert!(n >= 25, "a reviewed outline went missing: {n}");
    // Every one of the 62 event types occurs in an execution with a
    // reviewed outline.
    let missing: Vec<&str> = EventKind::KNOWN
        .iter()
        .map(EventKind::as_str)
        .filter(|k| !covered.contains(*k))
        .collect();
    assert!(missing.is_empty(), "no reviewed outline shows {missing:?}");
}

fn by_id(spans: &[Span]) -> HashMap<u64, &Span> {
    spans.iter().map(|s| (s.span_id, s)).collect()
}

#[test]
fn every_fixture_has_a_correct_tree() {
    let mut checked = 0;
    for f in fixtures::all() {
        let events = events_of(&f);
        let arn = f.execution_arn();
        let spans = build_spans(&events, &cfg(), None);
        let ids_map = by_id(&spans);
        let name = &f.name;
        assert_eq!(ids_map.len(), spans.len(), "{name}: duplicate span ids");

        // One trace, one root: the execution span.
        let trace = ids::trace_id(arn);
        assert!(spans.iter().all(|s| s.trace_id == trace), "{name}");
        let roots: Vec<&Span> = spans.iter().filter(|s| s.parent_id == 0).collect();
        assert_eq!(roots.len(), 1, "{name}");
        let root = roots[0];
        assert_eq!(root.name, op::EXECUTION);
        assert_eq!(root.meta["_dd.p.tid"], ids::trace_id_high_tag(arn));
        assert_eq!(root.resource, f.state_machine());
        for s in &spans {
            assert!(
                s.parent_id == 0 || ids_map.contains_key(&s.parent_id),
                "{name}: dangling parent"
            );
            assert!(s.duration >= 0, "{name}");
            assert_eq!(s.span_type, "serverless");
            assert_eq!(s.meta["trace_type"], "stepfunctions");
            assert_eq!(s.meta["step_function.execution_arn"], arn);
            assert_eq!(s.service, f.state_machine());
        }

        // Execution span timing and outcome.
        let start = events
            .iter()
            .find(|e| e.kind == EventKind::ExecutionStarted)
            .unwrap();
        assert_eq!(root.start, start.timestamp_ms * 1_000_000, "{name}");
        let terminal = events
            .iter()
            .find(|e| e.kind.is_execution_terminal())
            .unwrap();
        assert_eq!(
            root.start + root.duration,
            terminal.timestamp_ms * 1_000_000,
            "{name}"
        );
        let failed = terminal.kind != EventKind::ExecutionSucceeded;
        assert_eq!(root.error, failed as i32, "{name}");
        if let Some(err) = terminal.details.failure().and_then(|f| f.error.as_deref()) {
            assert_eq!(root.meta["error.type"], err, "{name}");
        }

        // One state span per *StateEntered, with Datadog's id.
        let state_spans: HashMap<u64, &Span> = spans
            .iter()
            .filter(|s| s.name == op::STATE && !s.meta.contains_key("step_function.attempt"))
            .map(|s| (s.span_id, s))
            .collect();
        let entered: Vec<&Event> = events
            .iter()
            .filter(|e| e.kind.as_str().ends_with("StateEntered"))
            .collect();
        assert_eq!(state_spans.len(), entered.len(), "{name}");
        let by_event: HashMap<u64, &Event> = events.iter().map(|e| (e.id, e)).collect();
        for e in &entered {
            let state = e.details.state_name().unwrap();
            let id = ids::state_span_id(arn, state, e.timestamp_ms, 0, e.redrive_count);
            let s = state_spans
                .get(&id)
                .unwrap_or_else(|| panic!("{name}: no span for {state} #{}", e.id));
            assert_eq!(s.resource, state);
            assert_eq!(s.start, e.timestamp_ms * 1_000_000);
            assert_eq!(
                s.meta["step_function.state_type"],
                e.kind.as_str().trim_end_matches("StateEntered")
            );
            // Its parent is a container span, never another plain state.
            let parent = ids_map[&s.parent_id];
            let prev = by_event.get(&e.previous_event_id).map(|p| &p.kind);
            if prev == Some(&EventKind::ParallelStateStarted) {
                assert_eq!(
                    parent.name,
                    op::PARALLEL_BRANCH,
                    "{name}: {state} starts a branch"
                );
                assert_eq!(parent.resource, state);
            } else if prev == Some(&EventKind::MapIterationStarted) {
                assert_eq!(
                    parent.name,
                    op::MAP_ITERATION,
                    "{name}: {state} starts an iteration"
                );
            } else {
                assert!(
                    [op::EXECUTION, op::MAP_ITERATION, op::PARALLEL_BRANCH].contains(&parent.name),
                    "{name}: {state} under {}",
                    parent.name
                );
            }
            // A state that exited normally ends exactly at one of its exits.
            let end = s.start + s.duration;
            let exits: Vec<i64> = events
                .iter()
                .filter(|x| {
                    x.id > e.id
                        && x.kind.as_str().ends_with("StateExited")
                        && x.details.state_name() == Some(state)
                })
                .map(|x| x.timestamp_ms * 1_000_000)
                .collect();
            if s.error == 0 && !exits.is_empty() {
                assert!(
                    exits.contains(&end),
                    "{name}: {state} #{} ends at no exit of its own",
                    e.id
                );
            }
        }

        // Map iterations and retry attempts.
        let iterations = events
            .iter()
            .filter(|e| e.kind == EventKind::MapIterationStarted)
            .count();
        assert_eq!(
            spans.iter().filter(|s| s.name == op::MAP_ITERATION).count(),
            iterations,
            "{name}"
        );
        for s in spans.iter().filter(|s| s.name == op::MAP_ITERATION) {
            assert_eq!(
                ids_map[&s.parent_id].meta["step_function.state_type"], "Map",
                "{name}"
            );
        }
        let schedules: BTreeMap<u64, usize> = {
            // attempts per Task state entry: schedules between entered and next entered of the same state
            let mut m = BTreeMap::new();
            let mut current: HashMap<u64, u64> = HashMap::new(); // event id → owning TaskStateEntered
            for e in &events {
                let owner = if e.kind == EventKind::TaskStateEntered {
                    Some(e.id)
                } else {
                    current.get(&e.previous_event_id).copied()
                };
                if let Some(o) = owner {
                    current.insert(e.id, o);
                    if matches!(
                        e.kind,
                        EventKind::TaskScheduled
                            | EventKind::LambdaFunctionScheduled
                            | EventKind::ActivityScheduled
                    ) {
                        *m.entry(o).or_insert(0) += 1;
                    }
                }
            }
            m
        };
        let retries: usize = schedules.values().map(|n| n.saturating_sub(1)).sum();
        let attempt_spans = spans
            .iter()
            .filter(|s| s.meta.contains_key("step_function.attempt"))
            .count();
        assert_eq!(attempt_spans, retries, "{name}: one span per retry attempt");

        // Distributed Map runs: one per run started or redriven.
        let runs = events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::MapRunStarted | EventKind::MapRunRedriven))
            .count();
        assert_eq!(
            spans.iter().filter(|s| s.name == op::MAP_RUN).count(),
            runs,
            "{name}"
        );

        // A failure event of a Task marks an attempt (or the state) as an error.
        for e in events.iter().filter(|e| {
            matches!(
                e.kind,
                EventKind::TaskFailed | EventKind::LambdaFunctionFailed | EventKind::TaskTimedOut
            )
        }) {
            let err = e.details.failure().and_then(|f| f.error.as_deref());
            assert!(
                spans.iter().any(|s| s.error == 1
                    && s.name == op::STATE
                    && s.meta.get("error.type").map(|t| t.as_str()) == err),
                "{name}: failure {err:?} of event {} not on any state span",
                e.id
            );
        }
        checked += 1;
    }
    assert!(checked >= 480);
}

#[test]
fn redrive_spans() {
    let f = Fixture::load("redrive_task_failure");
    let events = events_of(&f);
    let spans = build_spans(&events, &cfg(), None);
    let redrive: Vec<&Span> = spans
        .iter()
        .filter(|s| s.meta.get("redrive").map(|t| t.as_str()) == Some("true"))
        .collect();
    assert_eq!(redrive.len(), 1);
    let r = redrive[0];
    assert_eq!(r.name, op::EXECUTION);
    assert_eq!(r.error, 0, "the redrive succeeded");
    assert_eq!(r.metrics["step_function.redrive_count"], 1.0);
    let root = spans.iter().find(|s| s.parent_id == 0).unwrap();
    assert_eq!(r.parent_id, root.span_id);
    // States re-run by the redrive hang under it and use redrive_count 1 in their ids.
    let settle: Vec<&Span> = spans
        .iter()
        .filter(|s| s.resource == "SettlePayment" && s.parent_id == r.span_id)
        .collect();
    assert_eq!(settle.len(), 1);
    let entered = events.iter().find(|e| e.id == 16).unwrap();
    assert_eq!(
        settle[0].span_id,
        ids::state_span_id(
            f.execution_arn(),
            "SettlePayment",
            entered.timestamp_ms,
            0,
            1
        )
    );
}

#[test]
fn tags_payloads_and_redaction() {
    let f = Fixture::load("redrive_task_failure");
    let events = events_of(&f);
    let cfg = SpanConfig {
        service: Some("payments".into()),
        env: Some("prod".into()),
        version: Some("1.2.3".into()),
        tags: vec![("team".into(), "core".into())],
        max_payload_bytes: 1000,
        redact_keys: vec!["merchantId".into()],
        ..SpanConfig::default()
    };
    let spans = build_spans(&events, &cfg, None);
    let root = spans.iter().find(|s| s.parent_id == 0).unwrap();
    assert_eq!(root.service, "payments");
    for k in [
        "env",
        "version",
        "team",
        "region",
        "account_id",
        "step_function.state_machine_arn",
        "step_function.execution_name",
    ] {
        assert!(root.meta.contains_key(k), "{k}");
    }
    assert_eq!(root.meta["region"], "eu-west-1");
    let input = &root.meta["step_function.input"];
    assert!(
        input.contains(r#""merchantId":"[redacted]""#) && !input.contains("m-7781"),
        "{input}"
    );
    assert!(
        input.contains("stl-20260611-0042"),
        "other keys are kept: {input}"
    );
    assert!(!root.meta.contains_key("step_function.input_truncated"));
    let task = spans
        .iter()
        .find(|s| s.resource == "SettlePayment")
        .unwrap();
    assert_eq!(task.meta["step_function.resource_type"], "lambda");
    assert_eq!(task.meta["step_function.resource"], "invoke");
    assert!(
        task.meta["function_arn"].starts_with("arn:aws:lambda:eu-west-1:418295736021:function:"),
        "{:?}",
        task.meta
    );
    assert_eq!(task.metrics["step_function.retry_count"], 2.0);
    // Capture off.
    let off = build_spans(
        &events,
        &SpanConfig {
            max_payload_bytes: 0,
            ..SpanConfig::default()
        },
        None,
    );
    assert!(off
        .iter()
        .all(|s| !s.meta.contains_key("step_function.input")));
    // Neither redacted nor cut: the span holds the event's own text, not a
    // copy; redacted (above) or cut, it holds its own.
    let plain = build_spans(&events, &SpanConfig::default(), None);
    let root = plain.iter().find(|s| s.parent_id == 0).unwrap();
    let Details::ExecutionStarted { input: Some(p), .. } = &events[0].details else {
        panic!("the fixture starts with its input");
    };
    let captured = &root.meta["step_function.input"];
    assert!(captured.len() > 23, "long enough to be held, not inlined");
    assert_eq!(captured.as_str(), &*p.text);
    assert_eq!(captured.as_ptr(), p.text.as_ptr());
    let redacted = &spans.iter().find(|s| s.parent_id == 0).unwrap().meta["step_function.input"];
    assert_ne!(redacted.as_ptr(), p.text.as_ptr());
}

#[test]
fn payload_cut_at_utf8_boundary_and_aws_flag() {
    let (cut, t) = stepstitch::stitch::builder::cut_utf8("aé€😀", 4);
    assert_eq!((cut, t), ("aé", true));
    let f = Fixture::load("redrive_task_failure");
    let mut events = events_of(&f);
    if let Details::ExecutionStarted { input: Some(p), .. } = &mut events[0].details {
        p.text = "{\"k\":\"€€€€€€€€€€€€\"}".into();
        p.aws_truncated = true;
    }
    let spans = build_spans(
        &events,
        &SpanConfig {
            max_payload_bytes: 10,
            ..SpanConfig::default()
        },
        None,
    );
    let root = spans.iter().find(|s| s.parent_id == 0).unwrap();
    assert_eq!(root.meta["step_function.input"], "{\"k\":\"€");
    assert_eq!(root.meta["step_function.input_aws_truncated"], "true");
}

#[test]
fn missing_terminal_is_incomplete() {
    let f = Fixture::load("moto_map_nested_parallel");
    let mut events = events_of(&f);
    events.truncate(30);
    let spans = build_spans(&events, &cfg(), None);
    assert!(spans
        .iter()
        .all(|s| s.meta["step_function.incomplete"] == "true"));
    let last_ns = events.last().unwrap().timestamp_ms * 1_000_000;
    let root = spans.iter().find(|s| s.parent_id == 0).unwrap();
    assert_eq!(root.start + root.duration, last_ns);
    assert!(spans.iter().all(|s| s.start + s.duration <= last_ns));
}

#[test]
fn missing_parents_become_orphans_under_the_execution() {
    // ERROR-level logging drops most events: ids have gaps.
    let f = Fixture::load("redrive_task_failure");
    let events: Vec<Event> = events_of(&f)
        .into_iter()
        .filter(|e| e.id != 3 && e.id != 4)
        .collect();
    let spans = build_spans(&events, &cfg(), None);
    let root = spans.iter().find(|s| s.parent_id == 0).unwrap();
    assert!(root.metrics["step_function.orphaned_events"] >= 1.0);
    assert!(spans
        .iter()
        .all(|s| s.parent_id == 0 || spans.iter().any(|p| p.span_id == s.parent_id)));
}

fn shuffled(events: &[Event], seed: u64, dup_every: usize) -> Vec<Event> {
    let mut v: Vec<Event> = events.to_vec();
    let mut x = seed | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let dups: Vec<Event> = v.iter().step_by(dup_every.max(1)).cloned().collect();
    v.extend(dups);
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn any_order_and_duplication_gives_the_same_spans(pick in 0usize..486, seed in any::<u64>(), dup in 1usize..6) {
        let all = fixtures::all();
        let f = &all[pick % all.len()];
        let events = events_of(f);
        let want = build_spans(&events, &cfg(), None);
        let got = build_spans(&shuffled(&events, seed, dup), &cfg(), None);
        prop_assert_eq!(got, want);
    }
}

#[test]
fn span_ids_unique_across_all_fixtures() {
    let mut seen = HashSet::new();
    for f in fixtures::all() {
        for s in build_spans(&events_of(&f), &cfg(), None) {
            assert!(seen.insert(s.span_id), "{}: span id collision", f.name);
        }
    }
}

/// What docs/traces.md's comparison with Datadog says every span carries,
/// checked on every fixture's spans.
#[test]
fn spans_carry_what_the_datadog_comparison_table_says() {
    let mut kinds = HashSet::new();
    for f in fixtures::all() {
        let spans = build_spans(&events_of(&f), &cfg(), None);
        for s in &spans {
            let what = format!("{} {} {}", f.name, s.name, s.resource);
            assert_eq!(s.meta["trace_type"], "stepfunctions", "{what}");
            assert_eq!(s.span_type, "serverless", "{what}");
            assert!(!s.meta.contains_key("_dd.origin"), "{what}");
            let redrive = s.meta.contains_key("redrive");
            if redrive {
                assert_eq!(s.meta["redrive"], "true");
                assert_eq!(s.name, op::EXECUTION);
            }
            let calls_out = s.name == op::STATE
                && (s.meta.contains_key("function_arn")
                    || s.meta
                        .get("step_function.resource_type")
                        .map(|t| t.as_str())
                        == Some("lambda")
                    || s.meta
                        .get("step_function.resource")
                        .is_some_and(|r| r.starts_with("startExecution")));
            let want = if s.name == op::EXECUTION && !redrive {
                "server"
            } else if calls_out {
                "client"
            } else {
                "internal"
            };
            assert_eq!(s.meta["span.kind"], want, "{what}");
            kinds.insert(want);
        }
        let roots: Vec<_> = spans
            .iter()
            .filter(|s| s.name == op::EXECUTION && !s.meta.contains_key("redrive"))
            .collect();
        for r in roots {
            // An upstream 64-bit context has no upper half to carry.
            let upstream = r
                .meta
                .get("step_function.context_source")
                .map(|c| c.as_str())
                == Some("upstream");
            assert!(
                upstream || r.meta.contains_key("_dd.p.tid"),
                "{}: the execution span carries _dd.p.tid",
                f.name
            );
        }
    }
    assert_eq!(kinds.len(), 3, "{kinds:?}");
}
