//! One test per span kind, each on a small execution written as the
//! CloudWatch log lines AWS produces (so the decoder's reading is part of
//! what is checked), and the partial mode.

use super::*;
use crate::events::{parse_log_line, StringCache};
use crate::stitch::span::op;
use serde_json::{json, Value};

const ARN: &str = "arn:aws:states:eu-west-1:418295736021:execution:Orders:run-7";
const T0: i64 = 1_785_426_761_000;

/// Events from `(id, previous, type, details, ms after T0, redrive count)`.
fn events(rows: &[(u64, u64, &str, Value, i64, u32)]) -> Vec<Event> {
    let mut cache = StringCache::default();
    rows.iter()
        .map(|(id, prev, kind, details, ms, redrive)| {
            let line = json!({
                "id": id.to_string(),
                "type": kind,
                "details": details,
                "previous_event_id": prev.to_string(),
                "event_timestamp": (T0 + ms).to_string(),
                "execution_arn": ARN,
                "redrive_count": redrive.to_string(),
            });
            parse_log_line(&line.to_string(), &mut cache).unwrap()
        })
        .collect()
}

fn entered(name: &str) -> Value {
    json!({"name": name, "input": "{\"k\":1}", "inputDetails": {"truncated": false}})
}

fn exited(name: &str) -> Value {
    json!({"name": name, "output": "{\"k\":2}", "outputDetails": {"truncated": false}})
}

fn started() -> Value {
    json!({"input": "{\"order\":42}", "inputDetails": {"truncated": false}})
}

fn spans(ev: &[Event]) -> Vec<Span> {
    build_spans(ev, &SpanConfig::default(), None)
}

fn one<'s>(spans: &'s [Span], name: &str, resource: &str) -> &'s Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == name && s.resource == resource)
        .collect();
    assert_eq!(found.len(), 1, "{name} {resource}: {spans:#?}");
    found[0]
}

fn ms(s: &Span) -> (i64, i64) {
    ((s.start / 1_000_000) - T0, s.duration / 1_000_000)
}

#[test]
fn execution_span_from_start_to_its_first_terminal() {
    let ev = events(&[
        (1, 0, "ExecutionStarted", started(), 0, 0),
        (2, 0, "PassStateEntered", entered("P"), 1, 0),
        (3, 2, "PassStateExited", exited("P"), 2, 0),
        (
            4,
            3,
            "ExecutionFailed",
            json!({"error": "Boom", "cause": "it broke"}),
            10,
            0,
        ),
    ]);
    let s = spans(&ev);
    let exec = one(&s, op::EXECUTION, "Orders");
    assert_eq!(exec.parent_id, 0, "its own trace: no parent");
    assert_eq!(ms(exec), (0, 10));
    assert_eq!(exec.error, 1);
    assert_eq!(exec.meta["error.type"], "Boom");
    assert_eq!(exec.meta["error.message"], "it broke");
    assert_eq!(exec.meta["step_function.input"], "{\"order\":42}");
    assert_eq!(exec.meta["trace_type"], "stepfunctions");
    assert!(exec.meta.contains_key("_dd.p.tid"));
    assert_eq!(exec.meta["step_function.execution_name"], "run-7");
    assert_eq!(exec.service, "Orders");
    // Every span knows the trace id's upper half, the root's `_dd.p.tid`.
    let tid = u64::from_str_radix(&exec.meta["_dd.p.tid"], 16).unwrap();
    assert_eq!(tid, crate::stitch::ids::hi(ARN));
    assert!(s.iter().all(|x| x.trace_id_high == tid), "{s:#?}");
}

#[test]
fn an_upstream_context_without_tid_leaves_the_upper_half_zero() {
    let input = r#"{"_datadog":{"x-datadog-trace-id":"1234567890","x-datadog-parent-id":"987"}}"#;
    let ev = events(&[
        (
            1,
            0,
            "ExecutionStarted",
            json!({"input": input, "inputDetails": {"truncated": false}}),
            0,
            0,
        ),
        (2, 1, "ExecutionSucceeded", json!({"output": "{}"}), 3, 0),
    ]);
    let s = spans(&ev);
    assert_eq!(s[0].trace_id, 1_234_567_890);
    assert!(s.iter().all(|x| x.trace_id_high == 0));
}

#[test]
fn redrive_span_under_the_execution_and_a_redrive_segment_alone_has_no_execution_span() {
    let rows = [
        (1, 0, "ExecutionStarted", started(), 0, 0),
        (2, 0, "TaskStateEntered", entered("T"), 1, 0),
        (3, 2, "ExecutionFailed", json!({"error": "E"}), 5, 0),
        (
            4,
            3,
            "ExecutionRedriven",
            json!({"redriveCount": 1}),
            1000,
            1,
        ),
        (5, 4, "TaskStateEntered", entered("T"), 1001, 1),
        (6, 5, "TaskStateExited", exited("T"), 1005, 1),
        (7, 6, "ExecutionSucceeded", json!({"output": "{}"}), 1006, 1),
    ];
    let s = spans(&events(&rows));
    let execs: Vec<&Span> = s.iter().filter(|s| s.name == op::EXECUTION).collect();
    assert_eq!(execs.len(), 2);
    let root = execs
        .iter()
        .find(|s| !s.meta.contains_key("redrive"))
        .unwrap();
    let redrive = execs
        .iter()
        .find(|s| s.meta.contains_key("redrive"))
        .unwrap();
    assert_eq!(ms(root), (0, 5), "the first run ends at its failure");
    assert_eq!(redrive.parent_id, root.span_id);
    assert_eq!(ms(redrive), (1000, 6));
    assert_eq!(redrive.error, 0);
    assert_eq!(redrive.metrics["step_function.redrive_count"], 1.0);
    // Two T states: one per run, with different ids.
    let ts: Vec<&Span> = s.iter().filter(|s| s.resource == "T").collect();
    assert_eq!(ts.len(), 2);
    assert_ne!(ts[0].span_id, ts[1].span_id);

    let segment = spans(&events(&rows[3..]));
    assert!(segment
        .iter()
        .all(|s| s.name != op::EXECUTION || s.meta.contains_key("redrive")));
}

#[test]
fn map_iterations_by_index_with_failure_and_abort() {
    let it = |i: u64| json!({"name": "M", "index": i});
    let ev = events(&[
        (1, 0, "ExecutionStarted", started(), 0, 0),
        (2, 0, "MapStateEntered", entered("M"), 1, 0),
        (3, 2, "MapStateStarted", json!({"length": 2}), 2, 0),
        (4, 3, "MapIterationStarted", it(0), 3, 0),
        (5, 4, "PassStateEntered", entered("Item"), 4, 0),
        (6, 5, "PassStateExited", exited("Item"), 5, 0),
        (7, 6, "MapIterationFailed", it(0), 6, 0),
        (8, 6, "MapIterationStarted", it(1), 3, 0),
        (9, 8, "MapIterationAborted", it(1), 9, 0),
        (10, 9, "MapStateFailed", json!({}), 10, 0),
        (
            11,
            10,
            "ExecutionFailed",
            json!({"error": "States.ItemFailed"}),
            11,
            0,
        ),
    ]);
    let s = spans(&ev);
    let map = one(&s, op::STATE, "M");
    let i0 = one(&s, op::MAP_ITERATION, "M[0]");
    let i1 = one(&s, op::MAP_ITERATION, "M[1]");
    for (i, span) in [i0, i1].iter().enumerate() {
        assert_eq!(span.parent_id, map.span_id);
        assert_eq!(span.metrics["step_function.map.iteration_index"], i as f64);
        assert_eq!(span.error, 1);
    }
    assert_eq!(ms(i0), (3, 3));
    assert_eq!(ms(i1), (3, 6), "ends at its own abort");
    assert_eq!(i1.meta["error.type"], "States.Aborted");
    let item = one(&s, op::STATE, "Item");
    assert_eq!(item.parent_id, i0.span_id);
    assert_eq!(map.error, 1);
    assert_eq!(ms(map), (1, 9));
}

#[test]
fn parallel_branches_named_by_their_first_state_failed_when_a_state_failed() {
    let ev = events(&[
        (1, 0, "ExecutionStarted", started(), 0, 0),
        (2, 0, "ParallelStateEntered", entered("Par"), 1, 0),
        (3, 2, "ParallelStateStarted", json!({}), 2, 0),
        (4, 3, "PassStateEntered", entered("A"), 3, 0),
        (5, 4, "PassStateExited", exited("A"), 4, 0),
        (6, 3, "FailStateEntered", entered("B"), 3, 0),
        (7, 6, "ParallelStateFailed", json!({}), 7, 0),
        (
            8,
            7,
            "ExecutionFailed",
            json!({"error": "States.BranchFailed"}),
            8,
            0,
        ),
    ]);
    let s = spans(&ev);
    let par = one(&s, op::STATE, "Par");
    let a = one(&s, op::PARALLEL_BRANCH, "A");
    let b = one(&s, op::PARALLEL_BRANCH, "B");
    assert_eq!((a.parent_id, b.parent_id), (par.span_id, par.span_id));
    assert_eq!((a.error, b.error), (0, 1));
    assert_eq!(ms(a), (3, 1));
    assert_eq!(one(&s, op::STATE, "A").parent_id, a.span_id);
    assert_eq!(one(&s, op::STATE, "B").parent_id, b.span_id);
    assert_eq!(par.meta["error.type"], "States.BranchFailed");
}

/// A Lambda Task tried twice: failed, then succeeded.
fn retried_task() -> Vec<Event> {
    let sched = json!({
        "resourceType": "lambda", "resource": "invoke", "region": "eu-west-1",
        "parameters": "{\"FunctionName\":\"charge\",\"Payload\":{}}"
    });
    let res = json!({"resourceType": "lambda", "resource": "invoke"});
    let failed = json!({"resourceType": "lambda", "resource": "invoke", "error": "Lambda.ServiceException", "cause": "503"});
    let ok = json!({"resourceType": "lambda", "resource": "invoke", "output": "{}", "outputDetails": {"truncated": false}});
    events(&[
        (1, 0, "ExecutionStarted", started(), 0, 0),
        (2, 0, "TaskStateEntered", entered("Charge"), 1, 0),
        (3, 2, "TaskScheduled", sched.clone(), 2, 0),
        (4, 3, "TaskStarted", res.clone(), 3, 0),
        (5, 4, "TaskFailed", failed, 4, 0),
        (6, 5, "TaskScheduled", sched, 104, 0),
        (7, 6, "TaskStarted", res, 105, 0),
        (8, 7, "TaskSucceeded", ok, 110, 0),
        (9, 8, "TaskStateExited", exited("Charge"), 111, 0),
        (10, 9, "ExecutionSucceeded", json!({"output": "{}"}), 112, 0),
    ])
}

#[test]
fn state_span_carries_type_resource_function_and_retry_count() {
    let s = spans(&retried_task());
    let exec = one(&s, op::EXECUTION, "Orders");
    let charge: Vec<&Span> = s.iter().filter(|s| s.resource == "Charge").collect();
    let state = charge.iter().find(|s| s.parent_id == exec.span_id).unwrap();
    assert_eq!(ms(state), (1, 110));
    assert_eq!(state.meta["step_function.state_type"], "Task");
    assert_eq!(state.meta["step_function.resource_type"], "lambda");
    assert_eq!(state.meta["step_function.resource"], "invoke");
    assert_eq!(
        state.meta["function_arn"],
        "arn:aws:lambda:eu-west-1:418295736021:function:charge"
    );
    assert_eq!(state.metrics["step_function.retry_count"], 1.0);
    assert_eq!(state.meta["step_function.input"], "{\"k\":1}");
    assert_eq!(state.meta["step_function.output"], "{\"k\":2}");
    assert_eq!(state.error, 0, "the last attempt succeeded");
    // It calls a Lambda function; the execution serves its caller.
    assert_eq!(state.meta["span.kind"], "client");
    assert_eq!(exec.meta["span.kind"], "server");
    let attempt = charge
        .iter()
        .find(|s| s.parent_id == state.span_id)
        .unwrap();
    assert_eq!(attempt.meta["span.kind"], "client");
}

#[test]
fn span_kind_is_internal_for_work_that_calls_nothing() {
    let s = spans(&map_with_a_failing_iteration());
    for x in &s {
        let want = match (x.name, x.resource.as_str()) {
            (op::EXECUTION, _) => "server",
            (op::STATE, "Work") => "client",
            _ => "internal",
        };
        assert_eq!(x.meta["span.kind"], want, "{} {}", x.name, x.resource);
    }
}

#[test]
fn each_retry_is_an_attempt_span_under_its_state() {
    let s = spans(&retried_task());
    let attempts: Vec<&Span> = s
        .iter()
        .filter(|s| s.meta.contains_key("step_function.attempt"))
        .collect();
    assert_eq!(
        attempts.len(),
        1,
        "the first attempt is the state span itself"
    );
    let a = attempts[0];
    let state = s
        .iter()
        .find(|x| x.resource == "Charge" && !x.meta.contains_key("step_function.attempt"))
        .unwrap();
    assert_eq!(a.parent_id, state.span_id);
    assert_eq!(a.meta["step_function.attempt"], "1");
    assert_eq!(ms(a), (104, 6));
    assert_eq!(a.error, 0);
    // Ids do not depend on the order events arrive in.
    let mut shuffled = retried_task();
    shuffled.reverse();
    let again = spans(&shuffled);
    assert_eq!(again, s);
}

#[test]
fn map_run_span_for_a_distributed_map() {
    let run_arn = "arn:aws:states:eu-west-1:418295736021:mapRun:Orders/M:4b8e";
    let ev = events(&[
        (1, 0, "ExecutionStarted", started(), 0, 0),
        (2, 0, "MapStateEntered", entered("M"), 1, 0),
        (3, 2, "MapStateStarted", json!({"length": 100}), 2, 0),
        (4, 3, "MapRunStarted", json!({"mapRunArn": run_arn}), 3, 0),
        (
            5,
            4,
            "MapRunFailed",
            json!({"error": "States.ExceedToleratedFailureThreshold"}),
            50,
            0,
        ),
        (6, 5, "MapStateFailed", json!({}), 51, 0),
        (7, 6, "ExecutionFailed", json!({}), 52, 0),
    ]);
    let s = spans(&ev);
    let map = one(&s, op::STATE, "M");
    let run = one(&s, op::MAP_RUN, "M");
    assert_eq!(run.parent_id, map.span_id);
    assert_eq!(run.meta["step_function.map_run_arn"], run_arn);
    assert_eq!(ms(run), (3, 47));
    assert_eq!(run.error, 1);
    assert_eq!(
        run.meta["error.type"],
        "States.ExceedToleratedFailureThreshold"
    );
}

#[test]
fn a_partial_build_emits_only_final_spans_and_says_what_can_go() {
    let all = retried_task();
    // Running: Charge exited, a Wait entered, no terminal event yet.
    let mut ev = all[..9].to_vec();
    ev.extend(events(&[(10, 9, "WaitStateEntered", entered("W"), 120, 0)]));
    let build_mode = |ev: &[Event], mode| {
        build(
            ev.iter().collect(),
            &SpanConfig::default(),
            None,
            &IdSet::default(),
            &mut TagSets::default(),
            mode,
        )
    };
    let partial = build_mode(&ev, Mode::Partial);
    let names: Vec<&str> = partial.spans.iter().map(|s| s.resource.as_str()).collect();
    assert!(names.iter().all(|n| *n == "Charge"), "{names:?}");
    assert_eq!(partial.spans.len(), 2, "the state and its attempt");
    assert!(partial
        .spans
        .iter()
        .all(|s| !s.meta.contains_key("step_function.incomplete")));
    // Charge's events can go (its exit stays as the anchor W links to).
    assert_eq!(partial.prunable, (2..=8).collect::<Vec<u64>>());
    assert!(partial.released.contains(&9));
    // Flushed now, the rest is marked incomplete.
    let flushed = build_mode(&ev, Mode::Final);
    assert!(flushed
        .spans
        .iter()
        .all(|s| s.meta["step_function.incomplete"] == "true"));
    assert!(flushed.released.is_empty() && flushed.prunable.is_empty());
    // Once the execution ends, its final build makes the same spans.
    ev.extend(events(&[
        (11, 10, "WaitStateExited", exited("W"), 130, 0),
        (
            12,
            11,
            "ExecutionSucceeded",
            json!({"output": "{}"}),
            131,
            0,
        ),
    ]));
    let done = build_mode(&ev, Mode::Final);
    for s in &partial.spans {
        assert!(done.spans.contains(s), "{s:#?}");
    }
}

/// A concurrent Map as AWS logs it when iteration 0's Task fails: every
/// abort of the other iterations, and `MapStateFailed`, point at the
/// failure (fixtures README §2.2), not into their own iteration.
fn map_with_a_failing_iteration() -> Vec<Event> {
    let it = |i: u64| json!({"name": "M", "index": i});
    events(&[
        (1, 0, "ExecutionStarted", started(), 0, 0),
        (2, 0, "MapStateEntered", entered("M"), 1, 0),
        (3, 2, "MapStateStarted", json!({"length": 3}), 2, 0),
        (4, 3, "MapIterationStarted", it(0), 3, 0),
        (5, 3, "MapIterationStarted", it(1), 3, 0),
        (6, 3, "MapIterationStarted", it(2), 3, 0),
        (7, 4, "TaskStateEntered", entered("Work"), 4, 0),
        (8, 5, "TaskStateEntered", entered("Work"), 5, 0),
        (9, 6, "WaitStateEntered", entered("Pause"), 6, 0),
        (
            10,
            7,
            "TaskScheduled",
            json!({"resourceType": "lambda", "resource": "invoke", "region": "eu-west-1", "parameters": "{}"}),
            7,
            0,
        ),
        (
            11,
            8,
            "TaskScheduled",
            json!({"resourceType": "lambda", "resource": "invoke", "region": "eu-west-1", "parameters": "{}"}),
            8,
            0,
        ),
        (
            12,
            10,
            "TaskFailed",
            json!({"error": "Boom", "cause": "bad item"}),
            20,
            0,
        ),
        (13, 12, "MapIterationFailed", it(0), 21, 0),
        (14, 12, "TaskStateAborted", json!({}), 22, 0),
        (15, 12, "MapIterationAborted", it(1), 23, 0),
        (16, 12, "WaitStateAborted", json!({}), 24, 0),
        (17, 12, "MapIterationAborted", it(2), 25, 0),
        (18, 12, "MapStateFailed", json!({}), 26, 0),
        (
            19,
            18,
            "ExecutionFailed",
            json!({"error": "States.ItemFailed"}),
            27,
            0,
        ),
    ])
}

#[test]
fn aborted_iterations_and_states_end_at_their_own_abort_events() {
    let s = spans(&map_with_a_failing_iteration());
    let map = one(&s, op::STATE, "M");
    assert_eq!(ms(map), (1, 25), "the Map ends at MapStateFailed");
    let i0 = one(&s, op::MAP_ITERATION, "M[0]");
    let i1 = one(&s, op::MAP_ITERATION, "M[1]");
    let i2 = one(&s, op::MAP_ITERATION, "M[2]");
    assert_eq!(ms(i0), (3, 18), "ends at its MapIterationFailed");
    assert_eq!(ms(i1), (3, 20), "ends at its own MapIterationAborted");
    assert_eq!(ms(i2), (3, 22));
    for i in [i1, i2] {
        assert_eq!(i.error, 1);
        assert_eq!(i.meta["error.type"], "States.Aborted");
        assert_eq!(i.parent_id, map.span_id);
    }
    let works: Vec<&Span> = s.iter().filter(|x| x.resource == "Work").collect();
    let failed = works.iter().find(|w| w.parent_id == i0.span_id).unwrap();
    let aborted = works.iter().find(|w| w.parent_id == i1.span_id).unwrap();
    assert_eq!(
        ms(failed),
        (4, 17),
        "the failure ends with the iteration it fails"
    );
    assert_eq!(failed.meta["error.type"], "Boom");
    assert_eq!(
        ms(aborted),
        (5, 17),
        "ends at TaskStateAborted, not at the failure"
    );
    assert_eq!(aborted.error, 1);
    assert_eq!(aborted.meta["error.type"], "States.Aborted");
    assert_eq!(
        aborted.meta["error.message"],
        "TaskStateAborted: Work failed (Boom)"
    );
    let pause = one(&s, op::STATE, "Pause");
    assert_eq!(pause.parent_id, i2.span_id);
    assert_eq!(ms(pause), (6, 18), "ends at WaitStateAborted");
    assert_eq!(pause.meta["error.type"], "States.Aborted");
}

#[test]
fn a_failing_branch_aborts_the_other_and_the_parallel_ends_at_its_failure() {
    let ev = events(&[
        (1, 0, "ExecutionStarted", started(), 0, 0),
        (2, 0, "ParallelStateEntered", entered("P"), 1, 0),
        (3, 2, "ParallelStateStarted", json!({}), 2, 0),
        (4, 3, "TaskStateEntered", entered("A"), 3, 0),
        (5, 3, "ParallelStateEntered", entered("Inner"), 4, 0),
        (6, 5, "ParallelStateStarted", json!({}), 5, 0),
        (7, 6, "WaitStateEntered", entered("W"), 6, 0),
        (
            8,
            4,
            "TaskScheduled",
            json!({"resourceType": "sqs", "resource": "sendMessage", "region": "eu-west-1", "parameters": "{}"}),
            7,
            0,
        ),
        (9, 8, "TaskFailed", json!({"error": "SQS.Boom"}), 30, 0),
        // The failing Task itself is logged as aborted, as AWS does in a branch.
        (10, 9, "TaskStateAborted", json!({}), 31, 0),
        (11, 9, "WaitStateAborted", json!({}), 31, 0),
        (12, 9, "ParallelStateAborted", json!({}), 32, 0),
        (13, 9, "ParallelStateFailed", json!({}), 33, 0),
        (
            14,
            13,
            "ExecutionFailed",
            json!({"error": "SQS.Boom"}),
            34,
            0,
        ),
    ]);
    let s = spans(&ev);
    let p = one(&s, op::STATE, "P");
    assert_eq!(ms(p), (1, 32), "the Parallel ends at ParallelStateFailed");
    assert_eq!(p.meta["error.type"], "SQS.Boom");
    let inner = one(&s, op::STATE, "Inner");
    assert_eq!(
        ms(inner),
        (4, 28),
        "the nested Parallel ends at its own abort"
    );
    assert_eq!(inner.meta["error.type"], "States.Aborted");
    let w = one(&s, op::STATE, "W");
    assert_eq!(ms(w), (6, 25));
    assert_eq!(w.meta["error.type"], "States.Aborted");
    let a = one(&s, op::STATE, "A");
    assert_eq!(ms(a), (3, 28), "the failing Task ends at its own abort");
    assert_eq!(a.meta["error.type"], "SQS.Boom", "and keeps its failure");
    let b = one(&s, op::PARALLEL_BRANCH, "Inner");
    assert_eq!(
        ms(b),
        (4, 28),
        "the aborted branch ends with its last state"
    );
}
