//! Joining child executions to their parent's trace without injected
//! context (trace-model.md §4, last paragraph).
//!
//! - A parent Task calling `states:startExecution[.sync[:2]]` names the
//!   child in its `TaskSubmitted` / `TaskSucceeded` output (`ExecutionArn`):
//!   the child takes the parent's trace and hangs under that Task's span.
//! - A Distributed Map's `MapRunStarted` names the Map Run; its child
//!   executions' ARNs carry `<stateMachine>/<mapState>:<runId>`: they hang
//!   under the Map Run span.
//!
//! Parent and child may live on different shards, so the registry is shared
//! (a mutex touched only on these events and at finalization). It is
//! bounded: the oldest entries go first.

use super::context::{self, TraceContext};
use super::held::HeldEvents;
use super::ids;
use crate::events::{Details, Event, EventKind, ExecutionArn};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

#[derive(Debug)]
pub struct JoinRegistry {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_key: HashMap<String, TraceContext>,
    order: VecDeque<String>,
    cap: usize,
    /// Registrations made here since the last `take_shared`, when they are
    /// shared with other processes (cluster mode); at most `cap`.
    journal: Option<VecDeque<(String, TraceContext)>>,
}

impl JoinRegistry {
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                cap: cap.max(1),
                ..Inner::default()
            }),
        }
    }

    /// A registry whose own registrations are also kept for `take_shared`
    /// (cluster mode: a parent and its child may live on two replicas).
    pub fn shared(cap: usize) -> Self {
        let r = Self::new(cap);
        r.inner.lock().unwrap_or_else(|e| e.into_inner()).journal = Some(VecDeque::new());
        r
    }

    /// The registrations made here since the last call.
    pub fn take_shared(&self) -> Vec<(String, TraceContext)> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.journal
            .as_mut()
            .map(|j| j.drain(..).collect())
            .unwrap_or_default()
    }

    /// A registration made elsewhere (not shared again).
    pub fn insert_shared(&self, key: String, ctx: TraceContext) {
        self.insert(key, ctx, false);
    }

    pub fn register(&self, key: String, ctx: TraceContext) {
        self.insert(key, ctx, true);
    }

    fn insert(&self, key: String, ctx: TraceContext, own: bool) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let cap = g.cap;
        if own && g.by_key.get(&key) != Some(&ctx) {
            if let Some(j) = g.journal.as_mut() {
                j.push_back((key.clone(), ctx.clone()));
                if j.len() > cap {
                    j.pop_front();
                }
            }
        }
        if g.by_key.insert(key.clone(), ctx).is_none() {
            g.order.push_back(key);
            while g.order.len() > g.cap {
                if let Some(old) = g.order.pop_front() {
                    g.by_key.remove(&old);
                }
            }
        }
    }

    pub fn lookup(&self, key: &str) -> Option<TraceContext> {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_key
            .get(key)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_key
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The registry key under which an execution finds its parent.
pub fn child_key(execution_arn: &str) -> String {
    match ExecutionArn::parse(execution_arn) {
        Ok(a) if a.map_run.is_some() => {
            let (map_state, run) = a.map_run.unwrap_or_default();
            format!(
                "maprun:{}:{}:{}/{}:{}",
                a.region, a.account_id, a.state_machine_name, map_state, run
            )
        }
        _ => format!("exec:{execution_arn}"),
    }
}

/// The key a `MapRunStarted` map run ARN registers under.
fn map_run_key(map_run_arn: &str) -> Option<String> {
    let (region, account, rest) = crate::events::arn::parse_map_run_arn(map_run_arn)?;
    Some(format!("maprun:{region}:{account}:{rest}"))
}

/// Whether this event may name a child execution or map run.
pub fn is_join_event(e: &Event) -> bool {
    match (&e.kind, &e.details) {
        (
            EventKind::TaskSubmitted | EventKind::TaskSucceeded,
            Details::TaskOutput { resource, .. },
        ) => {
            resource.resource_type.as_deref() == Some("states")
                && resource
                    .resource
                    .as_deref()
                    .is_some_and(|r| r.starts_with("startExecution"))
        }
        (EventKind::MapRunStarted, _) => true,
        _ => false,
    }
}

/// The trace context of an execution: its own input's, else what a parent
/// registered for it, else its own ARN.
pub fn resolve(events: &HeldEvents, arn: &str, registry: &JoinRegistry) -> Option<TraceContext> {
    let started = events
        .values()
        .find(|e| e.kind == EventKind::ExecutionStarted);
    if let Some(ctx) = started
        .and_then(|e| e.details.input())
        .and_then(|p| context::from_input(&p.text))
    {
        return Some(ctx);
    }
    registry.lookup(&child_key(arn))
}

/// Registers every child this execution's events name. Returns false when
/// some could not be resolved yet (their Task's entered event is missing).
pub fn register_children(events: &HeldEvents, arn: &str, registry: &JoinRegistry) -> bool {
    let joins: Vec<&Event> = events.values().filter(|e| is_join_event(e)).collect();
    if joins.is_empty() {
        return true;
    }
    let own = resolve(events, arn, registry).unwrap_or_else(|| TraceContext::own(arn));
    let mut all = true;
    for e in joins {
        match &e.details {
            Details::MapRunStarted {
                map_run_arn: Some(m),
            } => {
                if let Some(key) = map_run_key(m) {
                    let parent_id = ids::derived_span_id(arn, "maprun", &[&e.id]);
                    registry.register(
                        key,
                        TraceContext {
                            parent_id,
                            source: "map_run",
                            ..own.clone()
                        },
                    );
                }
            }
            Details::TaskOutput {
                output: Some(out), ..
            } => {
                let Some(child) = out.top_level_str("ExecutionArn") else {
                    continue;
                };
                // Walk back to the Task's entered event for its span id.
                let mut cur = events.get(e.previous_event_id);
                let mut hops = 0;
                while let Some(c) = cur {
                    if c.kind == EventKind::TaskStateEntered || hops > 64 {
                        break;
                    }
                    cur = events.get(c.previous_event_id);
                    hops += 1;
                }
                match cur.filter(|c| c.kind == EventKind::TaskStateEntered) {
                    Some(entered) => {
                        let name = entered.details.state_name().unwrap_or_default();
                        let parent_id = ids::state_span_id(
                            arn,
                            name,
                            entered.timestamp_ms,
                            0,
                            entered.redrive_count,
                        );
                        registry.register(
                            format!("exec:{child}"),
                            TraceContext {
                                parent_id,
                                source: "parent_task",
                                ..own.clone()
                            },
                        );
                    }
                    None => all = false,
                }
            }
            _ => {}
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(
            child_key("arn:aws:states:us-east-1:1:execution:Outer/Map:run-9:child-3"),
            "maprun:us-east-1:1:Outer/Map:run-9"
        );
        assert_eq!(
            map_run_key("arn:aws:states:us-east-1:1:mapRun:Outer/Map:run-9").as_deref(),
            Some("maprun:us-east-1:1:Outer/Map:run-9")
        );
        assert_eq!(
            child_key("arn:aws:states:us-east-1:1:execution:Sm:e"),
            "exec:arn:aws:states:us-east-1:1:execution:Sm:e"
        );
    }

    #[test]
    fn registry_is_bounded() {
        let r = JoinRegistry::new(2);
        for i in 0..3 {
            r.register(
                format!("k{i}"),
                TraceContext::own("arn:aws:states:us-east-1:1:execution:S:e"),
            );
        }
        assert_eq!(r.len(), 2);
        assert!(r.lookup("k0").is_none() && r.lookup("k2").is_some());
    }
}
