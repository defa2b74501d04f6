//! The stitcher hosted as the service runs it: handle, shards and core
//! together, on a paused runtime clock. The core's own rules are tested
//! without a runtime in `core/tests.rs`.

use super::builder::SpanConfig;
use super::checkpoint::{ExecState, EXPORT_BATCH};
use super::config::StitchConfig;
use super::handle::StitcherHandle;
use super::output::{Part, StitchOut};
use super::span::Span;
use crate::events::{Event, StreamParams};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

mod lifecycle {
    use super::*;
    use crate::stitch::builder::build_spans;
    use crate::stitch::testkit::{slow_execution, ARN};
    use std::collections::HashSet;

    fn cfg() -> StitchConfig {
        StitchConfig {
            shards: 2,
            finalize_grace: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15 * 60),
            retention: Duration::from_secs(120),
            tick: Duration::from_millis(100),
            // These tests are about the end of executions; see incremental_tests.
            incremental_interval: Duration::ZERO,
            ..StitchConfig::default()
        }
    }

    async fn drain(rx: &mut mpsc::Receiver<StitchOut>) -> Vec<Span> {
        let mut all = Vec::new();
        while let Ok(StitchOut::Emission(batch)) = rx.try_recv() {
            all.extend(batch.spans);
        }
        all
    }

    fn none_attrs() -> Arc<StreamParams> {
        Arc::new(StreamParams::default())
    }

    /// Answers checkpoint markers as the hub does (no outbox here) and
    /// collects the emitted spans.
    fn fake_hub(mut rx: mpsc::Receiver<StitchOut>) -> tokio::task::JoinHandle<Vec<Span>> {
        tokio::spawn(async move {
            let mut spans = Vec::new();
            while let Some(out) = rx.recv().await {
                match out {
                    StitchOut::Emission(e) => spans.extend(e.spans),
                    StitchOut::Checkpoint(m) => {
                        let _ = m.reply.try_send(Part {
                            shard: m.shard,
                            outbox: vec![],
                        });
                    }
                }
            }
            spans
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_checkpoint_streams_every_execution_in_batches_and_restores_whole() {
        let arns: Vec<String> = (0..1000).map(|i| format!("{ARN}-{i}")).collect();
        let (tx, rx) = mpsc::channel(64);
        let (h, _) = StitcherHandle::spawn(cfg(), tx);
        let _hub = fake_hub(rx);
        for arn in &arns {
            let first = slow_execution(arn)[0..2].to_vec();
            h.send(first, none_attrs(), None).await.unwrap();
        }
        // A slow reader: the shards wait for it rather than pile up batches.
        let (etx, mut erx) = mpsc::channel::<Vec<ExecState>>(1);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            while let Some(batch) = erx.recv().await {
                assert!(!batch.is_empty() && batch.len() <= EXPORT_BATCH);
                tokio::time::sleep(Duration::from_millis(5)).await;
                all.extend(batch);
            }
            all
        });
        let parts = h.checkpoint(etx).await.unwrap();
        assert_eq!(parts.len(), 2);
        let execs = reader.await.unwrap();
        let got: HashSet<&str> = execs.iter().map(|e| e.arn.as_str()).collect();
        assert_eq!(got.len(), 1000);
        assert!(arns.iter().all(|a| got.contains(a.as_str())));
        assert!(execs
            .iter()
            .all(|e| e.events.len() == 2 && e.seen == [1, 2]));

        // Restored elsewhere, the executions go on from where they were.
        let (tx2, rx2) = mpsc::channel(64);
        let (h2, _) = StitcherHandle::spawn(cfg(), tx2);
        let hub2 = fake_hub(rx2);
        h2.restore(execs).await.unwrap();
        assert_eq!(h2.snapshot().await.unwrap().open_executions, 1000);
        let rest = slow_execution(&arns[7])[2..].to_vec();
        h2.send(rest, none_attrs(), None).await.unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(h2.snapshot().await.unwrap().open_executions, 999);
        h2.stop().await.unwrap();
        drop(h2);
        let spans = hub2.await.unwrap();
        let of_7: Vec<Span> = spans
            .into_iter()
            .filter(|s| s.meta["step_function.execution_arn"] == arns[7])
            .collect();
        assert_eq!(
            of_7,
            build_spans(&slow_execution(&arns[7]), &SpanConfig::default(), None)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn spread_out_execution_is_emitted_once_after_terminal_plus_grace() {
        let (tx, mut rx) = mpsc::channel(64);
        let (h, _) = StitcherHandle::spawn(cfg(), tx);
        let events = slow_execution(ARN);
        // Events arrive as they happen: 10 minutes apart, under the idle timeout.
        for chunk in [&events[0..2], &events[2..4], &events[4..5]] {
            h.send(chunk.to_vec(), none_attrs(), None).await.unwrap();
            tokio::time::sleep(Duration::from_secs(600)).await;
            assert!(
                drain(&mut rx).await.is_empty(),
                "nothing before the terminal event"
            );
        }
        h.send(events[5..].to_vec(), none_attrs(), None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(drain(&mut rx).await.is_empty(), "not before the grace");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let spans = drain(&mut rx).await;
        assert_eq!(spans, build_spans(&events, &SpanConfig::default(), None));
        assert!(spans
            .iter()
            .all(|s| !s.meta.contains_key("step_function.incomplete")));
        let snap = h.snapshot().await.unwrap();
        assert_eq!(snap.executions_finalized, 1);
        assert_eq!(snap.open_executions, 0);
        assert_eq!(snap.retained_executions, 1);
        // After the retention window it is forgotten.
        tokio::time::sleep(Duration::from_secs(121)).await;
        assert_eq!(h.snapshot().await.unwrap().retained_executions, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn no_terminal_event_is_emitted_incomplete_after_the_idle_timeout() {
        let (tx, mut rx) = mpsc::channel(64);
        let (h, _) = StitcherHandle::spawn(cfg(), tx);
        let events = slow_execution(ARN);
        h.send(events[..4].to_vec(), none_attrs(), None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(14 * 60)).await;
        assert!(drain(&mut rx).await.is_empty());
        tokio::time::sleep(Duration::from_secs(61)).await;
        let spans = drain(&mut rx).await;
        assert_eq!(spans.len(), 3, "execution, W1, W2 (open)");
        assert!(spans
            .iter()
            .all(|s| s.meta["step_function.incomplete"] == "true"));
        let w2 = spans.iter().find(|s| s.resource == "W2").unwrap();
        assert_eq!(
            w2.start + w2.duration,
            events[3].timestamp_ms * 1_000_000,
            "closed at the last seen event"
        );
        assert_eq!(h.snapshot().await.unwrap().executions_incomplete, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn duplicates_and_late_events_never_duplicate_spans() {
        let (tx, mut rx) = mpsc::channel(64);
        let (h, _) = StitcherHandle::spawn(cfg(), tx);
        let events = slow_execution(ARN);
        let mut first = events.clone();
        first.remove(4); // W2's exit arrives late
        first.extend(events[..3].iter().cloned()); // and some duplicates
        h.send(first, none_attrs(), None).await.unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
        let early = drain(&mut rx).await;
        assert_eq!(early.len(), 3);
        h.send(
            vec![events[4].clone(), events[1].clone()],
            none_attrs(),
            None,
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
        let late = drain(&mut rx).await;
        let ids: HashSet<u64> = early.iter().map(|s| s.span_id).collect();
        assert!(
            late.iter().all(|s| !ids.contains(&s.span_id)),
            "a span was emitted twice"
        );
        let snap = h.snapshot().await.unwrap();
        assert_eq!(snap.duplicate_events, 3 + 1);
        assert_eq!(snap.late_events, 1);
        // Stragglers still land in the right trace.
        assert!(late.iter().all(|s| s.trace_id == early[0].trace_id));
    }

    #[tokio::test(start_paused = true)]
    async fn memory_bound_evicts_the_longest_idle() {
        let (tx, mut rx) = mpsc::channel(1024);
        let config = StitchConfig {
            shards: 1,
            max_open_executions: 3,
            ..cfg()
        };
        let (h, _) = StitcherHandle::spawn(config, tx);
        for i in 0..5 {
            let arn = format!("arn:aws:states:us-east-1:418295736021:execution:Slow:run-{i}");
            h.send(slow_execution(&arn)[..2].to_vec(), none_attrs(), None)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let snap = h.snapshot().await.unwrap();
        assert_eq!(snap.open_executions, 3);
        assert_eq!(snap.evictions, 2);
        let spans = drain(&mut rx).await;
        let evicted: HashSet<&str> = spans
            .iter()
            .map(|s| s.meta["step_function.execution_name"].as_str())
            .collect();
        assert_eq!(evicted, HashSet::from(["run-0", "run-1"]));
    }

    #[tokio::test(start_paused = true)]
    async fn stream_parameters_set_service_env_and_tags() {
        let (tx, mut rx) = mpsc::channel(64);
        let (h, _) = StitcherHandle::spawn(cfg(), tx);
        let attrs = StreamParams::from_pairs(
            [
                ("service", "billing"),
                ("env", "staging"),
                ("team", "core"),
                ("region", "mars-1"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        h.send(slow_execution(ARN), Arc::new(attrs), None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
        let spans = drain(&mut rx).await;
        assert!(!spans.is_empty());
        for s in &spans {
            assert_eq!(s.service, "billing");
            assert_eq!(s.meta["env"], "staging");
            assert_eq!(s.meta["team"], "core");
            assert_eq!(
                s.meta["region"], "us-east-1",
                "AWS facts win over stream parameters"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stop_flushes_open_executions() {
        let (tx, mut rx) = mpsc::channel(64);
        let (h, tasks) = StitcherHandle::spawn(cfg(), tx);
        h.send(slow_execution(ARN)[..3].to_vec(), none_attrs(), None)
            .await
            .unwrap();
        h.stop().await.unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(drain(&mut rx).await.len(), 2);
        assert!(rx.recv().await.is_none(), "span output closed after stop");
    }
}

mod incremental {
    use super::*;
    use crate::events::{Details, EventKind, Payload};
    use crate::stitch::builder::build_spans;
    use std::collections::HashSet;

    /// A Standard execution running three hours: a Task, then hour-long Waits.
    fn long_running(arn: &str) -> Vec<Event> {
        let t = 1_780_000_000_000i64;
        let hour = 3_600_000;
        let big = "x".repeat(10_000);
        let mut v = Vec::new();
        let mut push = |id: u64, prev: u64, kind: EventKind, details: Details, ms: i64| {
            v.push(Event {
                execution_arn: arn.into(),
                id,
                previous_event_id: prev,
                timestamp_ms: t + ms,
                redrive_count: 0,
                kind,
                details,
                source: None,
            });
        };
        let input = |s: &str| {
            Some(Payload {
                text: format!("{{\"v\":\"{s}\"}}").into(),
                aws_truncated: false,
            })
        };
        push(
            1,
            0,
            EventKind::ExecutionStarted,
            Details::ExecutionStarted {
                input: input("start"),
                role_arn: None,
                state_machine_alias_arn: None,
                state_machine_version_arn: None,
            },
            0,
        );
        push(
            2,
            0,
            EventKind::PassStateEntered,
            Details::StateEntered {
                name: "Prepare".into(),
                input: input(&big),
            },
            1,
        );
        push(
            3,
            2,
            EventKind::PassStateExited,
            Details::StateExited {
                name: "Prepare".into(),
                output: input(&big),
                assigned_variables: vec![],
                assigned_variables_aws_truncated: false,
            },
            2,
        );
        for (i, w) in ["W1", "W2", "W3"].iter().enumerate() {
            let base = 3 + 2 * i as u64;
            push(
                base + 1,
                base,
                EventKind::WaitStateEntered,
                Details::StateEntered {
                    name: (*w).into(),
                    input: input(&big),
                },
                (i as i64) * hour + 3,
            );
            push(
                base + 2,
                base + 1,
                EventKind::WaitStateExited,
                Details::StateExited {
                    name: (*w).into(),
                    output: input(&big),
                    assigned_variables: vec![],
                    assigned_variables_aws_truncated: false,
                },
                (i as i64 + 1) * hour,
            );
        }
        push(
            10,
            9,
            EventKind::ExecutionSucceeded,
            Details::Output {
                output: input("done"),
            },
            3 * hour + 1,
        );
        v
    }

    #[tokio::test(start_paused = true)]
    async fn finished_spans_are_emitted_while_running_and_payloads_released() {
        let arn = "arn:aws:states:us-east-1:418295736021:execution:Long:run-1";
        let events = long_running(arn);
        let (tx, mut rx) = mpsc::channel(64);
        let cfg = StitchConfig {
            shards: 1,
            idle_timeout: Duration::from_secs(2 * 3600),
            incremental_interval: Duration::from_secs(60),
            tick: Duration::from_secs(1),
            ..StitchConfig::default()
        };
        let (h, _) = StitcherHandle::spawn(cfg, tx);
        let attrs = Arc::new(StreamParams::default());
        let mut emitted: Vec<Span> = Vec::new();
        // Events arrive as they happen: at 0h, 1h, 2h, 3h.
        let arrivals: [&[u64]; 4] = [&[1, 2, 3, 4], &[5, 6], &[7, 8], &[9, 10]];
        for (hour, ids) in arrivals.iter().enumerate() {
            let batch: Vec<Event> = events
                .iter()
                .filter(|e| ids.contains(&e.id))
                .cloned()
                .collect();
            h.send(batch, attrs.clone(), None).await.unwrap();
            tokio::time::sleep(Duration::from_secs(120)).await;
            while let Ok(StitchOut::Emission(b)) = rx.try_recv() {
                emitted.extend(b.spans);
            }
            let names: HashSet<&str> = emitted.iter().map(|s| s.resource.as_str()).collect();
            let snap = h.deep_snapshot().await.unwrap();
            match hour {
                0 => {
                    assert!(
                        names.contains("Prepare") && !names.contains("W1"),
                        "{names:?}"
                    );
                    // Prepare's 20 KB of payload were released; W1's input is still held.
                    assert!(
                        snap.held_payload_bytes < 11_000,
                        "{}",
                        snap.held_payload_bytes
                    );
                }
                1 => assert!(names.contains("W1") && !names.contains("W2")),
                2 => assert!(names.contains("W2") && !names.contains("W3")),
                _ => {}
            }
            tokio::time::sleep(Duration::from_secs(3600 - 120)).await;
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        while let Ok(StitchOut::Emission(b)) = rx.try_recv() {
            emitted.extend(b.spans);
        }
        // Emitted once each, and exactly what one final build makes.
        let ids: HashSet<u64> = emitted.iter().map(|s| s.span_id).collect();
        assert_eq!(ids.len(), emitted.len(), "a span was emitted twice");
        let mut want = build_spans(&events, &SpanConfig::default(), None);
        want.sort_by_key(|s| s.span_id);
        emitted.sort_by_key(|s| s.span_id);
        assert_eq!(emitted, want);
        let snap = h.snapshot().await.unwrap();
        assert!(snap.incremental_spans >= 3, "{snap:?}");
        assert_eq!(snap.executions_finalized, 1);
    }
}
