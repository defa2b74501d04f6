//! Nested executions and Distributed Map children join their parent's trace
//! without injected context, also when they land on different shards.

mod common;

use common::fixtures::Fixture;
use std::sync::Arc;
use std::time::Duration;
use stepstitch::events::{load_history, Details, Event, EventKind, Payload};
use stepstitch::firehose::attributes::CommonAttributes;
use stepstitch::stitch::builder::{build_spans, SpanConfig};
use stepstitch::stitch::ids;
use stepstitch::stitch::service::{StitchConfig, StitcherHandle};
use stepstitch::stitch::span::{op, Span};
use tokio::sync::mpsc;

fn child(arn: &str, input: &str, t: i64) -> Vec<Event> {
    let ev = |id, prev, kind, details| Event {
        execution_arn: arn.into(),
        id,
        previous_event_id: prev,
        timestamp_ms: t + id as i64,
        redrive_count: 0,
        kind,
        details,
        source: None,
    };
    vec![
        ev(
            1,
            0,
            EventKind::ExecutionStarted,
            Details::ExecutionStarted {
                input: Some(Payload {
                    text: input.into(),
                    aws_truncated: false,
                }),
                role_arn: None,
                state_machine_alias_arn: None,
                state_machine_version_arn: None,
            },
        ),
        ev(
            2,
            0,
            EventKind::PassStateEntered,
            Details::StateEntered {
                name: "Inner".into(),
                input: None,
            },
        ),
        ev(
            3,
            2,
            EventKind::PassStateExited,
            Details::StateExited {
                name: "Inner".into(),
                output: None,
                assigned_variables: vec![],
                assigned_variables_aws_truncated: false,
            },
        ),
        ev(
            4,
            3,
            EventKind::ExecutionSucceeded,
            Details::Output { output: None },
        ),
    ]
}

async fn run(batches: Vec<Vec<Event>>) -> Vec<Span> {
    let (tx, mut rx) = mpsc::channel(64);
    let cfg = StitchConfig {
        shards: 8,
        finalize_grace: Duration::from_secs(2),
        tick: Duration::from_millis(50),
        ..StitchConfig::default()
    };
    let (h, _) = StitcherHandle::spawn(cfg, tx);
    for b in batches {
        h.send(b, Arc::new(CommonAttributes::default()))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut spans = Vec::new();
    while let Ok(b) = rx.try_recv() {
        spans.extend(b);
    }
    spans
}

#[tokio::test(start_paused = true)]
async fn start_execution_sync_child_hangs_under_the_parent_task() {
    let parent = Fixture::load(
        "cross_account_states_start_sync_execution__sfn_start_execution_sync_role_arn_path_context",
    );
    let parent_events = load_history(&parent.history(), parent.execution_arn()).unwrap();
    let child_arn = "arn:aws:states:us-east-1:905126487340:execution:CrossAccountStatesStartSyncExecution:TestTaskTargetWithCredentials";
    let t = parent_events[4].timestamp_ms;
    // The child's events arrive first; the parent's right after.
    let spans = run(vec![
        child(child_arn, "\"InputFromTrustedAccount\"", t),
        parent_events.clone(),
    ])
    .await;

    let parent_root = spans
        .iter()
        .find(|s| s.parent_id == 0)
        .expect("parent root");
    assert_eq!(parent_root.trace_id, ids::trace_id(parent.execution_arn()));
    let run_task = spans.iter().find(|s| s.resource == "RunTask").unwrap();
    let entered = parent_events
        .iter()
        .find(|e| e.kind == EventKind::TaskStateEntered)
        .unwrap();
    assert_eq!(
        run_task.span_id,
        ids::state_span_id(
            parent.execution_arn(),
            "RunTask",
            entered.timestamp_ms,
            0,
            0
        )
    );
    let child_root = spans
        .iter()
        .find(|s| s.name == op::EXECUTION && s.meta["step_function.execution_arn"] == child_arn)
        .expect("child root");
    assert_eq!(child_root.trace_id, parent_root.trace_id, "one trace");
    assert_eq!(
        child_root.parent_id, run_task.span_id,
        "under the parent's Task span"
    );
    assert_eq!(
        child_root.meta["step_function.context_source"],
        "parent_task"
    );
    assert_eq!(child_root.meta["_dd.p.tid"], parent_root.meta["_dd.p.tid"]);
    let inner = spans.iter().find(|s| s.resource == "Inner").unwrap();
    assert_eq!(inner.trace_id, parent_root.trace_id);
    assert_eq!(inner.parent_id, child_root.span_id);
}

#[tokio::test(start_paused = true)]
async fn injected_context_wins_over_the_join() {
    let parent = Fixture::load(
        "cross_account_states_start_sync_execution__sfn_start_execution_sync_role_arn_path_context",
    );
    let parent_events = load_history(&parent.history(), parent.execution_arn()).unwrap();
    let child_arn = "arn:aws:states:us-east-1:905126487340:execution:CrossAccountStatesStartSyncExecution:TestTaskTargetWithCredentials";
    let input = r#"{"_datadog":{"x-datadog-trace-id":"777","x-datadog-parent-id":"888"}}"#;
    let spans = run(vec![
        parent_events,
        child(child_arn, input, 1_780_000_000_000),
    ])
    .await;
    let child_root = spans
        .iter()
        .find(|s| s.name == op::EXECUTION && s.meta["step_function.execution_arn"] == child_arn)
        .unwrap();
    assert_eq!((child_root.trace_id, child_root.parent_id), (777, 888));
}

#[tokio::test(start_paused = true)]
async fn distributed_map_children_hang_under_the_map_run() {
    let parent = Fixture::load("map_item_reader_base_csv_headers_decl");
    let parent_events = load_history(&parent.history(), parent.execution_arn()).unwrap();
    let run_started = parent_events
        .iter()
        .find(|e| e.kind == EventKind::MapRunStarted)
        .unwrap();
    let Details::MapRunStarted {
        map_run_arn: Some(map_run),
    } = &run_started.details
    else {
        panic!()
    };
    // arn:...:mapRun:<sm>/<map>:<run> → child arn:...:execution:<sm>/<map>:<run>:<name>
    let child_arns: Vec<String> = (0..3)
        .map(|i| format!("{}:child-{i}", map_run.replace(":mapRun:", ":execution:")))
        .collect();
    let mut batches = vec![parent_events.clone()];
    for a in &child_arns {
        batches.push(child(a, "{}", run_started.timestamp_ms + 10));
    }
    let spans = run(batches).await;
    let map_run_span = spans.iter().find(|s| s.name == op::MAP_RUN).unwrap();
    for a in &child_arns {
        let root = spans
            .iter()
            .find(|s| s.name == op::EXECUTION && &s.meta["step_function.execution_arn"] == a)
            .unwrap();
        assert_eq!(root.parent_id, map_run_span.span_id, "{a}");
        assert_eq!(root.trace_id, map_run_span.trace_id);
        assert_eq!(root.meta["step_function.context_source"], "map_run");
    }
    // Without the registry (one execution alone) the child is its own root.
    let alone = build_spans(
        &child(&child_arns[0], "{}", 1),
        &SpanConfig::default(),
        None,
    );
    assert_eq!(
        alone
            .iter()
            .find(|s| s.name == op::EXECUTION)
            .unwrap()
            .parent_id,
        0
    );
}

mod lifecycle_properties {
    use super::*;
    use proptest::prelude::*;

    fn fixtures_events() -> &'static Vec<Vec<Event>> {
        static ALL: std::sync::OnceLock<Vec<Vec<Event>>> = std::sync::OnceLock::new();
        ALL.get_or_init(|| {
            common::fixtures::all()
                .iter()
                .map(|f| load_history(&f.history(), f.execution_arn()).unwrap())
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 120, ..ProptestConfig::default() })]
        /// Through the stitcher service: any permutation of an execution's
        /// events, with duplicates, split into any number of batches
        /// (Firehose requests), yields exactly the in-order spans.
        #[test]
        fn any_order_duplicates_and_split(pick in 0usize..486, order in any::<u64>(), dups in prop::collection::vec(any::<prop::sample::Index>(), 0..8), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10)) {
            let all = fixtures_events();
            let events = &all[pick % all.len()];
            let want = build_spans(events, &SpanConfig::default(), None);
            let mut shuffled = events.clone();
            let mut x = order | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            for d in &dups {
                let e = events[d.index(events.len())].clone();
                shuffled.insert(d.index(shuffled.len() + 1), e);
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(shuffled.len() + 1)).collect();
            points.push(0);
            points.push(shuffled.len());
            points.sort();
            points.dedup();
            let batches: Vec<Vec<Event>> = points.windows(2).map(|w| shuffled[w[0]..w[1]].to_vec()).collect();
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            let mut got = rt.block_on(run(batches));
            let mut want = want;
            prop_assert!(!got.is_empty());
            got.sort_by_key(|s| s.span_id);
            want.sort_by_key(|s| s.span_id);
            prop_assert_eq!(got, want);
        }
    }
}
