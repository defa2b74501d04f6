//! Stage: events → spans (trace-model.md): ids, the span tree builder,
//! trace context, the lifecycle core, and the shards that host it.
//!
//! `core` decides everything about an execution's life and owns no I/O;
//! `shard` is its async shell (mailbox → core → bounded output) and
//! `handle` routes batches to shards.

pub mod builder;
pub mod checkpoint;
pub mod config;
pub mod context;
pub mod core;
pub mod handle;
pub mod held;
pub mod ids;
pub mod joins;
pub mod output;
pub mod settings;
mod shard;
pub mod span;
pub mod tags;
pub mod tagsets;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

pub use config::StitchConfig;
pub use handle::{StitcherHandle, Stopped};
pub use shard::Guard;
use span::Span;

/// An indented outline of spans, for docs, tests and debugging:
/// `name resource [+start_ms, duration_ms] error`.
pub fn render_tree(spans: &[Span]) -> String {
    fn walk(out: &mut String, spans: &[Span], parent: u64, depth: usize, t0: i64) {
        let mut kids: Vec<&Span> = spans.iter().filter(|s| s.parent_id == parent).collect();
        kids.sort_by_key(|s| (s.start, s.span_id));
        for s in kids {
            let err = match (s.error, s.meta.get("error.type")) {
                (1, Some(t)) => format!(" ERROR {t}"),
                (1, None) => " ERROR".to_owned(),
                _ => String::new(),
            };
            out.push_str(&format!(
                "{}{} {} [+{}ms {}ms]{}\n",
                "  ".repeat(depth),
                s.name,
                s.resource,
                (s.start - t0) / 1_000_000,
                s.duration / 1_000_000,
                err
            ));
            walk(out, spans, s.span_id, depth + 1, t0);
        }
    }
    let ids: std::collections::HashSet<u64> = spans.iter().map(|s| s.span_id).collect();
    let t0 = spans.iter().map(|s| s.start).min().unwrap_or(0);
    let mut out = String::new();
    let mut roots: Vec<u64> = spans
        .iter()
        .filter(|s| !ids.contains(&s.parent_id))
        .map(|s| s.parent_id)
        .collect();
    roots.dedup();
    for r in roots {
        walk(&mut out, spans, r, 0, t0);
    }
    out
}
