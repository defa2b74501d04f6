//! Nested executions and Distributed Map children join their parent's trace
//! without injected context, also when they land on different shards.

mod common;

use common::fixtures::Fixture;
use std::sync::Arc;
use std::time::Duration;
use stepstitch::events::StreamParams;
use stepstitch::events::{load_history, Details, Event, EventKind, Payload};
use stepstitch::stitch::builder::{build_spans, SpanConfig};
use stepstitch::stitch::ids;
use stepstitch::stitch::span::{op, Span};
use stepstitch::stitch::{StitchConfig, StitcherHandle};
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
        h.send(b, Arc::new(StreamParams::default()), None)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut spans = Vec::new();
    while let Ok(stepstitch::stitch::output::StitchOut::Emission(b)) = rx.try_recv() {
        spans.extend(b.spans);
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
            .find(|s| s.name == op::EXECUTION && s.meta["step_function.execution_arn"] == a)
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

/// Every fixture delivered in three chronological phases with quiet gaps, so
/// incremental emission and pruning run mid-execution: the spans emitted
/// over time are exactly the spans of one build over all events.
#[tokio::test(start_paused = true)]
async fn incremental_emission_and_pruning_over_every_fixture() {
    let all: Vec<Vec<Event>> = common::fixtures::all()
        .iter()
        .map(|f| load_history(&f.history(), f.execution_arn()).unwrap())
        .collect();
    let (tx, mut rx) = mpsc::channel(100_000);
    let cfg = StitchConfig {
        shards: 4,
        finalize_grace: Duration::from_secs(5),
        incremental_interval: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(3600),
        tick: Duration::from_secs(1),
        ..StitchConfig::default()
    };
    let (h, _) = StitcherHandle::spawn(cfg, tx);
    let attrs = Arc::new(StreamParams::default());
    for phase in 0..3 {
        for events in &all {
            let n = events.len();
            let part: Vec<Event> = events[phase * n / 3..(phase + 1) * n / 3].to_vec();
            if !part.is_empty() {
                h.send(part, attrs.clone(), None).await.unwrap();
            }
        }
        // Quiet for longer than grace + interval: running executions emit and prune.
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let snap = h.snapshot().await.unwrap();
    assert!(snap.incremental_spans > 100, "{snap:?}");
    let mut got: Vec<Span> = Vec::new();
    while let Ok(stepstitch::stitch::output::StitchOut::Emission(b)) = rx.try_recv() {
        got.extend(b.spans);
    }
    let mut want: Vec<Span> = all
        .iter()
        .flat_map(|e| build_spans(e, &SpanConfig::default(), None))
        .collect();
    got.sort_by_key(|s| s.span_id);
    want.sort_by_key(|s| s.span_id);
    let got_ids: std::collections::HashSet<u64> = got.iter().map(|s| s.span_id).collect();
    let missing: Vec<String> = want
        .iter()
        .filter(|s| !got_ids.contains(&s.span_id))
        .map(|s| {
            format!(
                "{} {} {}",
                s.meta["step_function.execution_arn"], s.name, s.resource
            )
        })
        .collect();
    assert!(missing.is_empty(), "missing: {missing:#?}");
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "{}", w.meta["step_function.execution_arn"]);
    }
}

/// A redrive long after the first run was emitted and forgotten: the
/// execution span is not emitted again, and the re-run states hang under
/// the redrive span, which hangs under the original execution span.
#[tokio::test(start_paused = true)]
async fn redrive_after_retention_adds_only_the_redrive() {
    let f = Fixture::load("redrive_task_failure");
    let events = load_history(&f.history(), f.execution_arn()).unwrap();
    let (tx, mut rx) = mpsc::channel(1000);
    let cfg = StitchConfig {
        shards: 2,
        finalize_grace: Duration::from_secs(5),
        retention: Duration::from_secs(120),
        tick: Duration::from_secs(1),
        ..StitchConfig::default()
    };
    let (h, _) = StitcherHandle::spawn(cfg, tx);
    let attrs = Arc::new(StreamParams::default());
    let redriven = events
        .iter()
        .position(|e| e.kind == EventKind::ExecutionRedriven)
        .unwrap();
    h.send(events[..redriven].to_vec(), attrs.clone(), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(47 * 60)).await;
    assert_eq!(
        h.snapshot().await.unwrap().retained_executions,
        0,
        "forgotten"
    );
    h.send(events[redriven..].to_vec(), attrs, None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut got: Vec<Span> = Vec::new();
    while let Ok(stepstitch::stitch::output::StitchOut::Emission(b)) = rx.try_recv() {
        got.extend(b.spans);
    }
    let ids: std::collections::HashSet<u64> = got.iter().map(|s| s.span_id).collect();
    assert_eq!(ids.len(), got.len(), "a span was emitted twice");
    let mut want = build_spans(&events, &SpanConfig::default(), None);
    want.sort_by_key(|s| s.span_id);
    got.sort_by_key(|s| s.span_id);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(
            (
                g.span_id,
                g.parent_id,
                g.trace_id,
                g.start,
                g.duration,
                g.error
            ),
            (
                w.span_id,
                w.parent_id,
                w.trace_id,
                w.start,
                w.duration,
                w.error
            ),
            "{}",
            w.resource
        );
    }
}
