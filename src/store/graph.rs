//! The state machine's map (pure): its graph from the definition or from
//! the transitions observed across executions, with one execution's path
//! laid over it, or the figures of many executions.
//!
//! A node's id is its state's name (unique in a state machine); a Parallel
//! branch is a container node `{parallel}/{first state}`; a Map's states
//! have the Map as their parent.

use super::model::StateSpan;
use super::stats::percentile;
use crate::stitch::span::op;
use std::collections::{HashMap, HashSet};

/// A branch of a Parallel is a container node `{parallel}/{branch's StartAt}`
/// (the same id from a definition and from spans: a branch span's resource
/// is its first state's name).
pub fn branch_id(parallel: &str, first_state: &str) -> String {
    format!("{parallel}/{first_state}")
}

#[derive(Debug, Clone, PartialEq)]
pub struct SkeletonNode {
    pub id: String,
    pub name: String,
    /// The ASL `Type` (`Task`, `Map`, ...) or `Branch`.
    pub kind: String,
    pub parent: Option<String>,
    /// The first state of the state machine or of its scope.
    pub start: bool,
}

/// Nodes (in flow order, containers before what they hold) and edges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Skeleton {
    pub nodes: Vec<SkeletonNode>,
    pub edges: Vec<(String, String)>,
}

impl Skeleton {
    pub fn add_edge(&mut self, from: &str, to: &str) {
        if !self.edges.iter().any(|(a, b)| a == from && b == to) {
            self.edges.push((from.to_owned(), to.to_owned()));
        }
    }

    fn has(&self, id: &str) -> bool {
        self.nodes.iter().any(|n| n.id == id)
    }

    /// Adds what `other` has that this lacks (observed states missing from
    /// an older definition, say).
    pub fn merge(&mut self, other: Skeleton) {
        for n in other.nodes {
            if !self.has(&n.id) {
                self.nodes.push(n);
            }
        }
        for (a, b) in other.edges {
            self.add_edge(&a, &b);
        }
    }
}

/// A state visit: its node and span.
struct Visit<'a> {
    node: String,
    span: &'a StateSpan,
}

/// The node each state and branch span stands for, and the transitions
/// (consecutive states under one parent span) of one execution.
fn walk<'a>(spans: &[&'a StateSpan]) -> (Skeleton, Vec<Visit<'a>>) {
    let by_id: HashMap<u64, &'a StateSpan> = spans.iter().map(|s| (s.span_id, *s)).collect();
    // The container node a span's parent stands for.
    let container = |parent: u64| -> Option<String> {
        let p = by_id.get(&parent)?;
        match p.op.as_str() {
            op::STATE => Some(p.resource.clone()),
            op::MAP_ITERATION => by_id.get(&p.parent_id).map(|m| m.resource.clone()),
            op::PARALLEL_BRANCH => by_id
                .get(&p.parent_id)
                .map(|par| branch_id(&par.resource, &p.resource)),
            _ => None,
        }
    };
    let mut g = Skeleton::default();
    let mut visits = Vec::new();
    let mut sorted: Vec<&'a StateSpan> = spans.to_vec();
    sorted.sort_by_key(|s| (s.start_ns, s.span_id));
    let mut last_in: HashMap<u64, String> = HashMap::new();
    for s in sorted {
        let node = match s.op.as_str() {
            op::STATE if !s.attempt => s.resource.clone(),
            op::PARALLEL_BRANCH => match by_id.get(&s.parent_id) {
                Some(par) => branch_id(&par.resource, &s.resource),
                None => continue,
            },
            _ => continue,
        };
        if !g.has(&node) {
            let is_branch = s.op == op::PARALLEL_BRANCH;
            g.nodes.push(SkeletonNode {
                id: node.clone(),
                name: s.resource.clone(),
                kind: if is_branch {
                    "Branch".into()
                } else {
                    s.state_type.clone().unwrap_or_else(|| "Unknown".into())
                },
                parent: if is_branch {
                    by_id.get(&s.parent_id).map(|p| p.resource.clone())
                } else {
                    container(s.parent_id)
                },
                start: false,
            });
        }
        if s.op == op::STATE {
            match last_in.insert(s.parent_id, node.clone()) {
                Some(prev) => g.add_edge(&prev, &node),
                None => {
                    if let Some(n) = g.nodes.iter_mut().find(|n| n.id == node) {
                        n.start = true;
                    }
                }
            }
        }
        visits.push(Visit { node, span: s });
    }
    (g, visits)
}

/// The graph observed across executions' state spans.
pub fn observed(spans: &[StateSpan]) -> Skeleton {
    let mut per_exec: HashMap<&str, Vec<&StateSpan>> = HashMap::new();
    for s in spans {
        per_exec.entry(&s.execution_arn).or_default().push(s);
    }
    let mut execs: Vec<_> = per_exec.into_iter().collect();
    execs.sort_by(|a, b| a.0.cmp(b.0));
    let mut g = Skeleton::default();
    for (_, spans) in execs {
        g.merge(walk(&spans).0);
    }
    g
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeFigures {
    pub visits: u64,
    pub failures: u64,
    /// Retry attempts (n ≥ 1) under its spans.
    pub retries: u64,
    pub durations_ms: Vec<i64>,
}

impl NodeFigures {
    /// The longest visit (one execution) or the p95 (many).
    pub fn max_ms(&self) -> Option<i64> {
        self.durations_ms.iter().copied().max()
    }

    pub fn p95_ms(&self) -> Option<i64> {
        let mut d = self.durations_ms.clone();
        d.sort_unstable();
        percentile(&d, 95.0)
    }
}

/// The graph with figures per node and which edges were taken.
#[derive(Debug, Clone, PartialEq)]
pub struct Laid {
    pub skeleton: Skeleton,
    pub figures: HashMap<String, NodeFigures>,
    pub taken: HashSet<(String, String)>,
}

/// Lays the state spans of one or many executions over a skeleton; a
/// state or transition the skeleton lacks is added.
pub fn lay(mut skeleton: Skeleton, spans: &[StateSpan]) -> Laid {
    let mut per_exec: HashMap<&str, Vec<&StateSpan>> = HashMap::new();
    for s in spans {
        per_exec.entry(&s.execution_arn).or_default().push(s);
    }
    let mut figures: HashMap<String, NodeFigures> = HashMap::new();
    let mut taken = HashSet::new();
    let mut execs: Vec<_> = per_exec.into_iter().collect();
    execs.sort_by(|a, b| a.0.cmp(b.0));
    for (_, spans) in execs {
        let attempts: HashMap<u64, u64> =
            spans
                .iter()
                .filter(|s| s.attempt)
                .fold(HashMap::new(), |mut m, s| {
                    *m.entry(s.parent_id).or_default() += 1;
                    m
                });
        let (seen, visits) = walk(&spans);
        for (a, b) in &seen.edges {
            taken.insert((a.clone(), b.clone()));
        }
        skeleton.merge(seen);
        for v in visits {
            let f = figures.entry(v.node).or_default();
            f.visits += 1;
            f.failures += v.span.error as u64;
            f.retries += attempts.get(&v.span.span_id).copied().unwrap_or(0);
            f.durations_ms.push(v.span.duration_ns / 1_000_000);
        }
    }
    Laid {
        skeleton,
        figures,
        taken,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: u64, parent: u64, op: &str, res: &str, start: i64, err: bool) -> StateSpan {
        StateSpan {
            execution_arn: "e".into(),
            span_id: id,
            parent_id: parent,
            op: op.into(),
            resource: res.into(),
            state_type: Some(if op == op::STATE { "Task" } else { "" }.into()),
            start_ns: start * 1_000_000,
            duration_ns: 5_000_000,
            error: err,
            attempt: false,
        }
    }

    #[test]
    fn path_with_map_parallel_and_retries() {
        let mut retry = span(9, 3, op::STATE, "Work", 4, true);
        retry.attempt = true;
        let spans = vec![
            span(1, 0, op::EXECUTION, "SM", 0, false),
            span(2, 1, op::STATE, "First", 1, false),
            span(3, 1, op::STATE, "Fan", 2, false),
            span(4, 3, op::PARALLEL_BRANCH, "A", 3, false),
            span(5, 4, op::STATE, "A", 3, false),
            span(6, 1, op::STATE, "Each", 7, true),
            span(7, 6, op::MAP_ITERATION, "Each[0]", 8, true),
            span(8, 7, op::STATE, "Item", 8, true),
            retry,
        ];
        let laid = lay(Skeleton::default(), &spans);
        let node = |id: &str| {
            laid.skeleton
                .nodes
                .iter()
                .find(|n| n.id == id)
                .unwrap()
                .clone()
        };
        assert_eq!(node("Fan/A").parent.as_deref(), Some("Fan"));
        assert_eq!(node("A").parent.as_deref(), Some("Fan/A"));
        assert_eq!(node("Item").parent.as_deref(), Some("Each"));
        assert!(node("First").start && !node("Fan").start);
        assert!(laid.taken.contains(&("First".into(), "Fan".into())));
        assert!(laid.taken.contains(&("Fan".into(), "Each".into())));
        assert_eq!(laid.taken.len(), 2);
        assert_eq!(laid.figures["Each"].failures, 1);
        assert_eq!(laid.figures["Fan"].retries, 1);
        assert!(!laid.figures.contains_key("SM"));
    }
}
