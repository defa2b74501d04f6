//! The stitcher against generated executions (issue 16 §4). A small
//! ASL-like generator writes an execution as the CloudWatch log lines AWS
//! would (with AWS's `previous_event_id` quirks: the next iteration points
//! at the last event of the one before, branch closers point at the last
//! event of the last branch, every abort of a failing Map's other
//! iterations points at the first failure, a retry's `TaskScheduled` at
//! the failure before it) and, while it writes them, the spans the
//! documented model (trace-model.md §2–3, docs/traces.md) says they make:
//! kind, name, parent, start, end, error. That expectation is derived here,
//! not by the builder. The stitcher core then gets the lines shuffled,
//! partly duplicated and split into batches, with time passing between
//! them (so running executions emit incrementally), and must emit exactly
//! the expected spans, each once.
//!
//! Constructs: Pass, Wait, Choice loops (a state entered again), Task with
//! retries and a Catch, inline Map (sequential; or concurrent with a
//! failing item that aborts the others), Parallel (or with a failing branch
//! that aborts the other), Distributed Map, an uncaught failure followed by
//! a redrive, a Task that starts a nested execution (joined under it).

use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stepstitch::events::{parse_log_line, Event, StreamParams, StringCache};
use stepstitch::stitch::config::StitchConfig;
use stepstitch::stitch::core::StitcherCore;
use stepstitch::stitch::joins::JoinRegistry;
use stepstitch::stitch::span::{op, Span};

const ARN: &str = "arn:aws:states:eu-west-1:418295736021:execution:Generated:run";
const T0: i64 = 1_785_600_000_000;

/// A span the model expects: kind, name, parent (index), times (ms), error.
#[derive(Debug, Clone)]
struct Exp {
    op: &'static str,
    resource: String,
    parent: Option<usize>,
    start: i64,
    end: i64,
    error: bool,
}

/// What a generated state sequence left behind.
struct Ended {
    /// The id the next event points at.
    last: u64,
    /// An uncaught failure: its event id and time.
    failed: Option<(u64, i64)>,
}

/// A tiny deterministic random source (proptest gives the seed).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Gen {
    rng: Rng,
    lines: Vec<Value>,
    /// Lines of nested executions (their own ARNs and ids).
    children: Vec<Value>,
    spans: Vec<Exp>,
    t: i64,
    redrive: u32,
    names: usize,
}

impl Gen {
    /// Appends an event `dt` ms after the last; returns its id and time.
    fn event(&mut self, prev: u64, kind: &str, details: Value, dt: i64) -> (u64, i64) {
        self.t += dt;
        let id = self.lines.len() as u64 + 1;
        self.lines.push(json!({
            "details": details, "redrive_count": self.redrive.to_string(), "id": id.to_string(),
            "type": kind, "previous_event_id": prev.to_string(),
            "event_timestamp": self.t.to_string(), "execution_arn": ARN,
        }));
        (id, self.t)
    }

    fn step(&mut self) -> i64 {
        1 + self.rng.below(40) as i64
    }

    fn name(&mut self, base: &str) -> String {
        self.names += 1;
        format!("{base}{}", self.names)
    }

    fn span(&mut self, op: &'static str, resource: &str, parent: usize, start: i64) -> usize {
        self.spans.push(Exp {
            op,
            resource: resource.to_owned(),
            parent: Some(parent),
            start,
            end: start,
            error: false,
        });
        self.spans.len() - 1
    }

    fn entered(&mut self, prev: u64, ty: &str, name: &str, parent: usize) -> (u64, usize) {
        let dt = self.step();
        let (id, t) = self.event(
            prev,
            &format!("{ty}StateEntered"),
            json!({"name": name, "input": "{}"}),
            dt,
        );
        (id, self.span(op::STATE, name, parent, t))
    }

    fn exited(&mut self, prev: u64, ty: &str, name: &str, span: usize) -> u64 {
        let dt = self.step();
        let (id, t) = self.event(
            prev,
            &format!("{ty}StateExited"),
            json!({"name": name, "output": "{}"}),
            dt,
        );
        self.spans[span].end = t;
        id
    }

    /// A sequence of states in the frame whose span is `parent`.
    fn seq(&mut self, prev: u64, parent: usize, depth: u32, may_fail: bool) -> Ended {
        let n = 1 + self.rng.below(3);
        let mut last = prev;
        for i in 0..n {
            let fail_here = may_fail && i == n - 1;
            let e = self.state(last, parent, depth, fail_here);
            if e.failed.is_some() {
                return e;
            }
            last = e.last;
        }
        Ended { last, failed: None }
    }

    fn state(&mut self, prev: u64, parent: usize, depth: u32, fail: bool) -> Ended {
        let choice = if fail {
            3
        } else if depth >= 2 {
            self.rng.below(4)
        } else {
            self.rng.below(10)
        };
        match choice {
            0 => self.simple(prev, parent, "Pass"),
            1 => self.simple(prev, parent, "Wait"),
            2 => self.choice_loop(prev, parent),
            3 => self.task(prev, parent, fail),
            4 => self.map(prev, parent, depth),
            5 => self.parallel(prev, parent, depth),
            6 => self.distributed_map(prev, parent),
            7 => self.aborting_map(prev, parent),
            8 => self.aborting_parallel(prev, parent),
            _ => self.start_execution(prev, parent),
        }
    }

    fn simple(&mut self, prev: u64, parent: usize, ty: &str) -> Ended {
        let name = self.name(ty);
        let (e, s) = self.entered(prev, ty, &name, parent);
        let last = self.exited(e, ty, &name, s);
        Ended { last, failed: None }
    }

    /// A Choice that sends the execution through the same Pass twice.
    fn choice_loop(&mut self, prev: u64, parent: usize) -> Ended {
        let choice = self.name("Choice");
        let body = self.name("Again");
        let mut last = prev;
        for _ in 0..2 {
            let (e, s) = self.entered(last, "Choice", &choice, parent);
            last = self.exited(e, "Choice", &choice, s);
            let (e, s) = self.entered(last, "Pass", &body, parent);
            last = self.exited(e, "Pass", &body, s);
        }
        Ended { last, failed: None }
    }

    /// A Lambda Task: `retries` failed attempts (retried), then success,
    /// or a last failure that a Catch handles or that fails the frame.
    fn task(&mut self, prev: u64, parent: usize, fail: bool) -> Ended {
        let name = self.name("Task");
        let (entered, state) = self.entered(prev, "Task", &name, parent);
        let retries = self.rng.below(3) as usize;
        let caught = !fail && self.rng.below(3) == 0;
        let mut prev = entered;
        let attempts = retries + 1;
        for a in 0..attempts {
            let dt = self.step();
            let (sched, t_sched) = self.event(
                prev,
                "TaskScheduled",
                json!({"resourceType": "lambda", "resource": "invoke", "region": "eu-west-1",
                       "parameters": "{\"FunctionName\":\"f\"}"}),
                dt,
            );
            let dt = self.step();
            let (started, _) = self.event(
                sched,
                "TaskStarted",
                json!({"resourceType": "lambda", "resource": "invoke"}),
                dt,
            );
            let last_attempt = a == attempts - 1;
            let fails = !last_attempt || fail || caught;
            let dt = self.step();
            let (end, t_end) = if fails {
                self.event(started, "TaskFailed", json!({"resourceType": "lambda", "resource": "invoke", "error": "Boom", "cause": "x"}), dt)
            } else {
                self.event(
                    started,
                    "TaskSucceeded",
                    json!({"resourceType": "lambda", "resource": "invoke", "output": "{}"}),
                    dt,
                )
            };
            if a > 0 {
                let s = self.span(op::STATE, &name, state, t_sched);
                self.spans[s].end = t_end;
                self.spans[s].error = fails;
            }
            prev = end;
            if last_attempt {
                self.spans[state].error = fails;
                self.spans[state].end = t_end;
                if fail {
                    return Ended {
                        last: end,
                        failed: Some((end, t_end)),
                    };
                }
            }
        }
        let last = self.exited(prev, "Task", &name, state);
        Ended { last, failed: None }
    }

    /// An inline Map run one item after another.
    fn map(&mut self, prev: u64, parent: usize, depth: u32) -> Ended {
        let name = self.name("Map");
        let (entered, state) = self.entered(prev, "Map", &name, parent);
        let dt = self.step();
        let (started, _) = self.event(entered, "MapStateStarted", json!({"length": 2}), dt);
        let mut last = started;
        for i in 0..(1 + self.rng.below(3)) {
            let dt = self.step();
            let (it, t) = self.event(
                last,
                "MapIterationStarted",
                json!({"name": name, "index": i}),
                dt,
            );
            let span = self.span(op::MAP_ITERATION, &format!("{name}[{i}]"), state, t);
            let body = self.seq(it, span, depth + 1, false);
            let dt = self.step();
            let (_, t_end) = self.event(
                body.last,
                "MapIterationSucceeded",
                json!({"name": name, "index": i}),
                dt,
            );
            self.spans[span].end = t_end;
            // AWS: the next iteration points at this one's last state event.
            last = body.last;
        }
        let dt = self.step();
        let (ok, _) = self.event(last, "MapStateSucceeded", json!({}), dt);
        let _ = ok;
        let last = self.exited(last, "Map", &name, state);
        Ended { last, failed: None }
    }

    /// Two concurrent items: item 0's Task fails, item 1's Wait is
    /// aborted; the Map fails and a Catch moves on.
    fn aborting_map(&mut self, prev: u64, parent: usize) -> Ended {
        let name = self.name("Fan");
        let (entered, state) = self.entered(prev, "Map", &name, parent);
        let dt = self.step();
        let (started, _) = self.event(entered, "MapStateStarted", json!({"length": 2}), dt);
        let mut its = Vec::new();
        for i in 0..2u64 {
            let dt = self.step();
            let (it, t) = self.event(
                started,
                "MapIterationStarted",
                json!({"name": name, "index": i}),
                dt,
            );
            its.push((
                it,
                self.span(op::MAP_ITERATION, &format!("{name}[{i}]"), state, t),
            ));
        }
        let task = self.name("Item");
        let wait = self.name("Hold");
        let (te, ts) = self.entered(its[0].0, "Task", &task, its[0].1);
        let (_, ws) = self.entered(its[1].0, "Wait", &wait, its[1].1);
        let dt = self.step();
        let (sched, _) = self.event(te, "TaskScheduled", json!({"resourceType": "sqs", "resource": "sendMessage", "region": "eu-west-1", "parameters": "{}"}), dt);
        let dt = self.step();
        let (failed, _) = self.event(
            sched,
            "TaskFailed",
            json!({"resourceType": "sqs", "resource": "sendMessage", "error": "Boom"}),
            dt,
        );
        let dt = self.step();
        let (_, t_itf) = self.event(
            failed,
            "MapIterationFailed",
            json!({"name": name, "index": 0}),
            dt,
        );
        // The failing state ends with the iteration it fails.
        self.spans[ts].end = t_itf;
        self.spans[ts].error = true;
        self.spans[its[0].1].end = t_itf;
        self.spans[its[0].1].error = true;
        let dt = self.step();
        let (_, t_wa) = self.event(failed, "WaitStateAborted", json!({}), dt);
        self.spans[ws].end = t_wa;
        self.spans[ws].error = true;
        let dt = self.step();
        let (_, t_ia) = self.event(
            failed,
            "MapIterationAborted",
            json!({"name": name, "index": 1}),
            dt,
        );
        self.spans[its[1].1].end = t_ia;
        self.spans[its[1].1].error = true;
        let dt = self.step();
        let (mf, _) = self.event(failed, "MapStateFailed", json!({}), dt);
        self.spans[state].error = true;
        // Caught: the Map exits (and ends) after its failure.
        let last = self.exited(mf, "Map", &name, state);
        Ended { last, failed: None }
    }

    /// Two branches: the first's Task fails (and, as AWS logs a failing
    /// branch, is itself aborted), the second's Wait is aborted; the
    /// Parallel fails and a Catch moves on.
    fn aborting_parallel(&mut self, prev: u64, parent: usize) -> Ended {
        let name = self.name("Split");
        let (entered, state) = self.entered(prev, "Parallel", &name, parent);
        let dt = self.step();
        let (started, _) = self.event(entered, "ParallelStateStarted", json!({}), dt);
        let task = self.name("Left");
        let wait = self.name("Right");
        let ba = self.span(op::PARALLEL_BRANCH, &task, state, 0);
        let (te, ts) = self.entered(started, "Task", &task, ba);
        let bb = self.span(op::PARALLEL_BRANCH, &wait, state, 0);
        let (_, ws) = self.entered(started, "Wait", &wait, bb);
        let dt = self.step();
        let (sched, _) = self.event(te, "TaskScheduled", json!({"resourceType": "sqs", "resource": "sendMessage", "region": "eu-west-1", "parameters": "{}"}), dt);
        let dt = self.step();
        let (failed, _) = self.event(
            sched,
            "TaskFailed",
            json!({"resourceType": "sqs", "resource": "sendMessage", "error": "Boom"}),
            dt,
        );
        let dt = self.step();
        let (_, t_ta) = self.event(failed, "TaskStateAborted", json!({}), dt);
        let dt = self.step();
        let (_, t_wa) = self.event(failed, "WaitStateAborted", json!({}), dt);
        let dt = self.step();
        let (pf, _) = self.event(failed, "ParallelStateFailed", json!({}), dt);
        for (b, st, end) in [(ba, ts, t_ta), (bb, ws, t_wa)] {
            self.spans[st].end = end;
            self.spans[st].error = true;
            self.spans[b].start = self.spans[st].start;
            self.spans[b].end = end;
            self.spans[b].error = true;
        }
        self.spans[state].error = true;
        let last = self.exited(pf, "Parallel", &name, state);
        Ended { last, failed: None }
    }

    /// A Task that starts a nested execution and waits for it
    /// (`startExecution.sync:2`), the child's input carrying the context
    /// Datadog's JSONata/JSONPath snippet injects: the child's execution
    /// span hangs under the Task's state span, in the parent's trace.
    fn start_execution(&mut self, prev: u64, parent: usize) -> Ended {
        let name = self.name("Start");
        let (entered, state) = self.entered(prev, "Task", &name, parent);
        let entered_ms = self.t;
        let dt = self.step();
        let (sched, _) = self.event(entered, "TaskScheduled", json!({"resourceType": "states", "resource": "startExecution.sync:2", "region": "eu-west-1", "parameters": "{}"}), dt);
        let dt = self.step();
        let (started, _) = self.event(
            sched,
            "TaskStarted",
            json!({"resourceType": "states", "resource": "startExecution.sync:2"}),
            dt,
        );
        let child = format!("arn:aws:states:eu-west-1:418295736021:execution:Child:{name}");
        let iso = humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + Duration::from_millis(entered_ms as u64),
        )
        .to_string();
        // In a redrive the context object says so ($$.Execution.RedriveCount).
        let input = json!({"_datadog": {"Execution": {"Id": ARN, "RedriveCount": self.redrive},
                                        "State": {"Name": name, "EnteredTime": iso, "RetryCount": 0},
                                        "RootExecutionId": ARN, "serverless-version": "v1"}});
        let t = self.t;
        let line = |id: u64, prev: u64, kind: &str, details: Value, ms: i64| {
            json!({"details": details, "redrive_count": "0", "id": id.to_string(), "type": kind,
                   "previous_event_id": prev.to_string(), "event_timestamp": (t + ms).to_string(), "execution_arn": child})
        };
        self.children.push(line(
            1,
            0,
            "ExecutionStarted",
            json!({"input": input.to_string()}),
            5,
        ));
        self.children.push(line(
            2,
            0,
            "PassStateEntered",
            json!({"name": "Inner", "input": "{}"}),
            7,
        ));
        self.children.push(line(
            3,
            2,
            "PassStateExited",
            json!({"name": "Inner", "output": "{}"}),
            9,
        ));
        self.children.push(line(
            4,
            3,
            "ExecutionSucceeded",
            json!({"output": "{}"}),
            12,
        ));
        let exec = self.span(op::EXECUTION, "Child", state, t + 5);
        self.spans[exec].end = t + 12;
        let inner = self.span(op::STATE, "Inner", exec, t + 7);
        self.spans[inner].end = t + 9;
        let (done, _) = self.event(
            started,
            "TaskSucceeded",
            json!({"resourceType": "states", "resource": "startExecution.sync:2", "output": "{}"}),
            20,
        );
        let last = self.exited(done, "Task", &name, state);
        Ended { last, failed: None }
    }

    fn parallel(&mut self, prev: u64, parent: usize, depth: u32) -> Ended {
        let name = self.name("Par");
        let (entered, state) = self.entered(prev, "Parallel", &name, parent);
        let dt = self.step();
        let (started, _) = self.event(entered, "ParallelStateStarted", json!({}), dt);
        let mut last = started;
        for _ in 0..2 {
            // A branch is named by its first state and ends with its last.
            let first = self.spans.len();
            let branch = self.span(op::PARALLEL_BRANCH, "?", state, 0);
            let body = self.seq(started, branch, depth + 1, false);
            let states: Vec<usize> = (first + 1..self.spans.len())
                .filter(|&s| self.spans[s].parent == Some(branch))
                .collect();
            let s0 = states[0];
            self.spans[branch].resource = self.spans[s0].resource.clone();
            self.spans[branch].start = self.spans[s0].start;
            self.spans[branch].end = states.iter().map(|&s| self.spans[s].end).max().unwrap();
            last = body.last;
        }
        let dt = self.step();
        self.event(last, "ParallelStateSucceeded", json!({}), dt);
        let last = self.exited(last, "Parallel", &name, state);
        Ended { last, failed: None }
    }

    fn distributed_map(&mut self, prev: u64, parent: usize) -> Ended {
        let name = self.name("Dist");
        let (entered, state) = self.entered(prev, "Map", &name, parent);
        let dt = self.step();
        let (started, _) = self.event(entered, "MapStateStarted", json!({"length": 0}), dt);
        let dt = self.step();
        let arn = format!("arn:aws:states:eu-west-1:418295736021:mapRun:Generated/{name}:r");
        let (run, t_run) = self.event(started, "MapRunStarted", json!({"mapRunArn": arn}), dt);
        let run_span = self.span(op::MAP_RUN, &name, state, t_run);
        let dt = 100 + self.step();
        let (done, t_done) = self.event(run, "MapRunSucceeded", json!({}), dt);
        self.spans[run_span].end = t_done;
        let dt = self.step();
        let (ok, _) = self.event(done, "MapStateSucceeded", json!({}), dt);
        let last = self.exited(ok, "Map", &name, state);
        Ended { last, failed: None }
    }
}

/// An execution: states, then success; or an uncaught Task failure that
/// fails it, then (maybe) a redrive that re-runs the failed Task.
fn generate(seed: u64) -> (Vec<String>, Vec<Exp>) {
    let mut g = Gen {
        rng: Rng(seed | 1),
        lines: Vec::new(),
        children: Vec::new(),
        spans: Vec::new(),
        t: T0,
        redrive: 0,
        names: 0,
    };
    let (start, t) = g.event(0, "ExecutionStarted", json!({"input": "{}"}), 0);
    g.spans.push(Exp {
        op: op::EXECUTION,
        resource: "Generated".into(),
        parent: None,
        start: t,
        end: t,
        error: false,
    });
    let fail = g.rng.below(3) == 0;
    // The first state points at 0, as AWS logs it.
    let body = g.seq(0, 0, 0, fail);
    let _ = start;
    match body.failed {
        None => {
            let dt = g.step();
            let (_, t_end) = g.event(body.last, "ExecutionSucceeded", json!({"output": "{}"}), dt);
            g.spans[0].end = t_end;
        }
        Some((failure, t_fail)) => {
            // The failure propagates at once: the failed state ends there too.
            let (failed, t_end) = g.event(
                failure,
                "ExecutionFailed",
                json!({"error": "Boom", "cause": "x"}),
                0,
            );
            assert_eq!(t_end, t_fail);
            g.spans[0].end = t_end;
            g.spans[0].error = true;
            if g.rng.below(2) == 0 {
                g.redrive = 1;
                let (redriven, t_r) = g.event(
                    failed,
                    "ExecutionRedriven",
                    json!({"redriveCount": 1}),
                    60_000,
                );
                g.spans.push(Exp {
                    op: op::EXECUTION,
                    resource: "Generated".into(),
                    parent: Some(0),
                    start: t_r,
                    end: t_r,
                    error: false,
                });
                let frame = g.spans.len() - 1;
                let body = g.seq(redriven, frame, 1, false);
                let dt = g.step();
                let (_, t_end) =
                    g.event(body.last, "ExecutionSucceeded", json!({"output": "{}"}), dt);
                g.spans[frame].end = t_end;
            }
        }
    }
    let lines = g
        .lines
        .iter()
        .chain(&g.children)
        .map(Value::to_string)
        .collect();
    (lines, g.spans)
}

type Key = (
    String,
    String,
    i64,
    i64,
    bool,
    Option<(String, String, i64)>,
);

fn expected_keys(spans: &[Exp]) -> Vec<Key> {
    let mut keys: Vec<Key> = spans
        .iter()
        .map(|s| {
            let parent = s.parent.map(|p| {
                let p = &spans[p];
                (p.op.to_owned(), p.resource.clone(), p.start)
            });
            (
                s.op.to_owned(),
                s.resource.clone(),
                s.start,
                s.end,
                s.error,
                parent,
            )
        })
        .collect();
    keys.sort();
    keys
}

fn got_keys(spans: &[Span]) -> Vec<Key> {
    let by_id: HashMap<u64, &Span> = spans.iter().map(|s| (s.span_id, s)).collect();
    let ms = |ns: i64| ns / 1_000_000;
    let mut keys: Vec<Key> = spans
        .iter()
        .map(|s| {
            let parent = by_id
                .get(&s.parent_id)
                .map(|p| (p.name.to_owned(), p.resource.to_string(), ms(p.start)));
            (
                s.name.to_owned(),
                s.resource.to_string(),
                ms(s.start),
                ms(s.start + s.duration),
                s.error == 1,
                parent,
            )
        })
        .collect();
    keys.sort();
    keys
}

/// The core fed `lines` shuffled, with every `dup`-th line again, in
/// batches, time passing between them; everything it emits.
fn stitch(lines: &[String], seed: u64, dup: usize, batch: usize) -> Vec<Span> {
    let mut cache = StringCache::default();
    let mut events: Vec<Event> = lines
        .iter()
        .map(|l| parse_log_line(l, &mut cache).unwrap())
        .collect();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    for i in (1..events.len()).rev() {
        events.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let again: Vec<Event> = events.iter().step_by(dup).cloned().collect();
    events.extend(again);
    let cfg = StitchConfig {
        finalize_grace: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(3600),
        retention: Duration::from_secs(3600),
        incremental_interval: Duration::from_millis(1),
        ..StitchConfig::default()
    };
    let mut core = StitcherCore::new(Arc::new(cfg), 1000, Arc::new(JoinRegistry::new(64)));
    let params = Arc::new(StreamParams::default());
    let t0 = Instant::now();
    let mut out = Vec::new();
    for (k, chunk) in events.chunks(batch).enumerate() {
        let now = t0 + Duration::from_millis(10 * k as u64);
        out.extend(
            core.apply(chunk.to_vec(), &params, now)
                .flat_map(|e| e.spans),
        );
        out.extend(core.tick(now).flat_map(|e| e.spans));
    }
    let end = t0 + Duration::from_secs(60);
    out.extend(core.tick(end).flat_map(|e| e.spans));
    out.extend(core.drain(end).flat_map(|e| e.spans));
    out
}

proptest! {
    // Bounded for CI: each case is a few dozen events.
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn the_stitcher_emits_the_model_spans_once_whatever_the_delivery(
        seed in any::<u64>(), shuffle in any::<u64>(), dup in 2usize..12, batch in 1usize..30,
    ) {
        let (lines, expected) = generate(seed);
        let spans = stitch(&lines, shuffle, dup, batch);
        let mut ids = BTreeMap::new();
        for s in &spans {
            prop_assert!(ids.insert(s.span_id, ()).is_none(), "span {} {} emitted twice", s.name, s.resource);
        }
        let want = expected_keys(&expected);
        let got = got_keys(&spans);
        let missing: Vec<&Key> = want.iter().filter(|k| !got.contains(k)).collect();
        let extra: Vec<&Key> = got.iter().filter(|k| !want.contains(k)).collect();
        prop_assert!(
            missing.is_empty() && extra.is_empty() && got.len() == want.len(),
            "{} spans expected, {} emitted\nmissing: {:?}\nextra: {:?}\nlines:\n{}",
            want.len(), got.len(), missing, extra, lines.join("\n")
        );
    }
}

/// The generator reaches every construct it claims within the cases CI runs.
#[test]
fn the_generator_covers_every_construct() {
    let mut seen = std::collections::HashSet::new();
    for seed in 0..300u64 {
        let (lines, _) = generate(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for l in &lines {
            let v: Value = serde_json::from_str(l).unwrap();
            seen.insert(v["type"].as_str().unwrap().to_owned());
            if v["type"] == "ExecutionStarted"
                && v["details"]["input"].as_str().unwrap().contains("_datadog")
            {
                seen.insert("nested".to_owned());
            }
        }
    }
    for t in [
        "PassStateEntered",
        "WaitStateEntered",
        "ChoiceStateEntered",
        "TaskFailed",
        "TaskStateExited",
        "MapIterationStarted",
        "MapIterationAborted",
        "WaitStateAborted",
        "TaskStateAborted",
        "ParallelStateFailed",
        "ParallelStateSucceeded",
        "MapRunStarted",
        "ExecutionFailed",
        "ExecutionRedriven",
        "nested",
    ] {
        assert!(seen.contains(t), "never generated: {t}");
    }
}
