//! From built spans to one emission: the spans not emitted before, with
//! the metric samples and log events that belong to them, and the span
//! settings an execution's stream parameters make.

use crate::events::{Event, StreamParams};
use crate::hashing::FastMap;
use crate::stitch::builder::SpanConfig;
use crate::stitch::output::{Emission, ForwardLogs, LogRecord, MetricSample};
use crate::stitch::span::Span;

/// The span settings for one execution: stream parameters (`service`,
/// `env`, `version`, other non-reserved keys as tags) over the global ones.
pub fn span_config<'a>(
    base: &'a SpanConfig,
    params: &StreamParams,
) -> std::borrow::Cow<'a, SpanConfig> {
    if params.is_empty() {
        return std::borrow::Cow::Borrowed(base);
    }
    let mut cfg = base.clone();
    for (k, v) in params.tags() {
        match k {
            "service" => cfg.service = Some(v.to_owned()),
            "env" => cfg.env = Some(v.to_owned()),
            "version" => cfg.version = Some(v.to_owned()),
            "DD_ENHANCED_METRICS" => cfg.enhanced_metrics = !v.trim().eq_ignore_ascii_case("false"),
            k if k.starts_with("DD_") => {}
            k => cfg.tags.push((k.to_owned(), v.to_owned())),
        }
    }
    std::borrow::Cow::Owned(cfg)
}

/// The spans emitted now, with the metric samples and log events that
/// belong to them (each goes out exactly once, with its span).
pub fn assemble<'e>(
    fresh: Vec<Span>,
    samples: Vec<(u64, MetricSample)>,
    owners: &[(u64, u64)],
    events: impl Iterator<Item = &'e Event>,
    forward: ForwardLogs,
    tags: &[String],
) -> Emission {
    let ids: FastMap<u64, usize> = fresh
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i))
        .collect();
    let (metric_owners, metrics): (Vec<u64>, Vec<MetricSample>) = samples
        .into_iter()
        .filter(|(owner, _)| ids.contains_key(owner))
        .unzip();
    let mut logs = Vec::new();
    if forward != ForwardLogs::None && !owners.is_empty() {
        let owner_of: FastMap<u64, u64> = owners.iter().copied().collect();
        for e in events {
            if forward == ForwardLogs::Errors && !LogRecord::is_error_event(&e.kind) {
                continue;
            }
            let Some(&i) = owner_of.get(&e.id).and_then(|o| ids.get(o)) else {
                continue;
            };
            logs.push((e.id, LogRecord::from_event(e, &fresh[i], tags)));
        }
        logs.sort_by_key(|(id, _)| *id);
    }
    Emission {
        shard: 0,
        spans: fresh,
        metrics,
        metric_owners,
        logs: logs.into_iter().map(|(_, l)| l).collect(),
    }
}
