//! Enhanced metric samples → one point per series per 10-second window.
//!
//! Samples are stamped at event time. Datadog's series intake keeps the last
//! value per {metric, tags, timestamp}, so a window that gets more samples
//! after it was flushed (events arrive minutes late through Firehose) is sent
//! again with its full total, which replaces the earlier point instead of
//! adding a second one. Windows are therefore remembered for `LOOKBACK`;
//! samples older than that (or implausibly far in the future) are restamped
//! to the current window, because the intake rejects points more than an
//! hour old. Distributions need none of this: the intake merges them.

use super::item::MetricPoint;
use crate::stitch::output::{MetricKind, MetricSample};
use crate::telemetry::names;
use std::collections::BTreeMap;
use std::sync::Arc;

pub const WINDOW_SECS: i64 = 10;
/// Windows kept for late samples: inside the series intake's one-hour limit
/// with room for delivery retries.
pub const LOOKBACK_SECS: i64 = 50 * 60;
/// The series intake refuses points more than 10 minutes ahead.
pub const MAX_FUTURE_SECS: i64 = 9 * 60;
/// Addresses remembered by `Aggregator::intern` (see `by_addr`).
const MAX_ADDRESSES: usize = 65_536;

type Key = (&'static str, MetricKind, Interned);

/// A tag set compared and hashed by address: every set goes through
/// `Aggregator::intern` first, so equal sets are one allocation, and a
/// sample costs one content hash at most (the per-sample SipHash and
/// foldhash of every tag string were 9 % of the server's profile).
#[derive(Debug, Clone)]
struct Interned(Arc<[String]>);

impl PartialEq for Interned {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Interned {}

impl std::hash::Hash for Interned {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.0) as *const String as usize).hash(state);
    }
}

#[derive(Debug, Default)]
struct Series {
    value: f64,
    /// Event time (ms) of the gauge value held, so the latest event wins
    /// whatever order samples arrive in.
    gauge_ts: Option<i64>,
    delta: f64,
    values: Vec<f64>,
    dirty: bool,
}

#[derive(Debug)]
pub struct Aggregator {
    windows: BTreeMap<i64, crate::hashing::FastMap<Key, Series>>,
    /// Interned tag sets: one allocation per distinct set.
    tag_sets: crate::hashing::FastSet<Arc<[String]>>,
    /// Sets as they arrived, by address: the stitcher shares one `Arc` per
    /// state machine and state (`stitch::tagsets`), so most samples cost
    /// an address lookup here. Each is held, so its address cannot be
    /// reused by another set while the entry exists.
    by_addr: crate::hashing::FastMap<usize, (Arc<[String]>, Interned)>,
    series: usize,
    max_series: usize,
    pub restamped: u64,
}

impl Aggregator {
    pub fn new(max_series: usize) -> Self {
        Self {
            windows: BTreeMap::new(),
            tag_sets: Default::default(),
            by_addr: Default::default(),
            series: 0,
            max_series: max_series.max(1),
            restamped: 0,
        }
    }

    fn window_of(ts_s: i64) -> i64 {
        ts_s.div_euclid(WINDOW_SECS) * WINDOW_SECS
    }

    pub fn add(&mut self, s: MetricSample, now_ms: i64) {
        let now_s = now_ms.div_euclid(1000);
        let ts_s = s.timestamp_ms.div_euclid(1000);
        let oldest = self.windows.keys().next().copied();
        let in_range = ts_s >= now_s - LOOKBACK_SECS && ts_s <= now_s + MAX_FUTURE_SECS;
        // A window forgotten to respect the memory bound cannot be re-sent
        // with a correct total: such samples go to the current window too.
        let forgotten =
            oldest.is_some_and(|o| Self::window_of(ts_s) < o) && self.series >= self.max_series;
        let window = if in_range && !forgotten {
            Self::window_of(ts_s)
        } else {
            self.restamped += 1;
            metrics::counter!(names::METRICS_RESTAMPED).increment(1);
            Self::window_of(now_s)
        };
        let tags = self.intern(s.tags);
        let w = self.windows.entry(window).or_default();
        let entry = w.entry((s.name, s.kind, tags)).or_insert_with(|| {
            self.series += 1;
            Series::default()
        });
        entry.dirty = true;
        match s.kind {
            MetricKind::Count => {
                entry.value += s.value;
                entry.delta += s.value;
            }
            MetricKind::Gauge => {
                if entry.gauge_ts.is_none_or(|t| s.timestamp_ms >= t) {
                    entry.value = s.value;
                    entry.gauge_ts = Some(s.timestamp_ms);
                }
            }
            MetricKind::Distribution => entry.values.push(s.value),
        }
        self.enforce_bound();
    }

    /// One copy of each tag set, shared by its series.
    fn intern(&mut self, tags: Arc<[String]>) -> Interned {
        let addr = Arc::as_ptr(&tags) as *const String as usize;
        if let Some((_, interned)) = self.by_addr.get(&addr) {
            return interned.clone();
        }
        let interned = match self.tag_sets.get(&*tags) {
            Some(t) => Interned(t.clone()),
            None => {
                self.tag_sets.insert(tags.clone());
                Interned(tags.clone())
            }
        };
        if self.by_addr.len() >= MAX_ADDRESSES {
            // Sets made per sample (not shared upstream): start over rather
            // than hold every one of them.
            self.by_addr.clear();
        }
        self.by_addr.insert(addr, (tags, interned.clone()));
        interned
    }

    fn enforce_bound(&mut self) {
        while self.series > self.max_series && self.windows.len() > 1 {
            let Some((_, w)) = self.windows.pop_first() else {
                break;
            };
            // Unflushed data in it is lost: count it.
            let unflushed = w.values().filter(|s| s.dirty).count();
            if unflushed > 0 {
                metrics::counter!(names::METRICS_DROPPED).increment(unflushed as u64);
            }
            self.series -= w.len();
        }
    }

    /// Points of every series that changed since the last flush; forgets
    /// windows past the lookback.
    pub fn flush(&mut self, now_ms: i64) -> Vec<MetricPoint> {
        let now_s = now_ms.div_euclid(1000);
        let mut out = Vec::new();
        for (&ts, w) in self.windows.iter_mut() {
            for ((name, kind, tags), s) in w.iter_mut() {
                if !s.dirty {
                    continue;
                }
                out.push(MetricPoint {
                    name,
                    kind: *kind,
                    timestamp: ts,
                    tags: tags.0.clone(),
                    value: s.value,
                    delta: if *kind == MetricKind::Gauge {
                        s.value
                    } else {
                        s.delta
                    },
                    values: std::mem::take(&mut s.values),
                });
                s.delta = 0.0;
                s.dirty = false;
            }
        }
        let keep_from = Self::window_of(now_s - LOOKBACK_SECS);
        while let Some((&ts, _)) = self.windows.first_key_value() {
            if ts >= keep_from {
                break;
            }
            if let Some((_, w)) = self.windows.pop_first() {
                self.series -= w.len();
            }
        }
        if self.windows.is_empty() {
            self.tag_sets.clear();
            self.by_addr.clear();
        }
        // Deterministic order for outputs and tests.
        out.sort_by(|a, b| {
            (a.timestamp, a.name, &a.tags, a.kind).cmp(&(b.timestamp, b.name, &b.tags, b.kind))
        });
        out
    }

    pub fn series(&self) -> usize {
        self.series
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn sample(
        name: &'static str,
        kind: MetricKind,
        v: f64,
        ts: i64,
        tags: &[&str],
    ) -> MetricSample {
        MetricSample {
            name,
            kind,
            value: v,
            timestamp_ms: ts,
            tags: tags
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .into(),
        }
    }

    #[test]
    fn counts_sum_per_window_and_late_samples_resend_the_full_total() {
        let mut a = Aggregator::new(1000);
        a.add(
            sample("c", MetricKind::Count, 1.0, NOW - 61_000, &["a:1"]),
            NOW,
        );
        a.add(
            sample("c", MetricKind::Count, 1.0, NOW - 65_000, &["a:1"]),
            NOW,
        );
        a.add(
            sample("c", MetricKind::Count, 1.0, NOW - 5_000, &["a:1"]),
            NOW,
        );
        let p = a.flush(NOW);
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].timestamp, p[0].value, p[0].delta),
            ((NOW - 70_000) / 1000, 2.0, 2.0)
        );
        assert_eq!((p[1].value, p[1].delta), (1.0, 1.0));
        assert!(a.flush(NOW).is_empty(), "nothing changed");
        // A straggler for the first window: its point comes again with the total.
        a.add(
            sample("c", MetricKind::Count, 1.0, NOW - 62_000, &["a:1"]),
            NOW + 1000,
        );
        let p = a.flush(NOW + 1000);
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].timestamp, p[0].value, p[0].delta),
            ((NOW - 70_000) / 1000, 3.0, 1.0)
        );
    }

    #[test]
    fn equal_tag_sets_share_a_series_whichever_allocation_they_come_in() {
        let mut a = Aggregator::new(1000);
        let shared: Arc<[String]> = vec!["a:1".to_string()].into();
        let with = |tags: &Arc<[String]>| MetricSample {
            tags: tags.clone(),
            ..sample("c", MetricKind::Count, 1.0, NOW - 1000, &[])
        };
        a.add(with(&shared), NOW);
        a.add(with(&shared), NOW);
        a.add(
            sample("c", MetricKind::Count, 1.0, NOW - 1000, &["a:2"]),
            NOW,
        );
        a.add(
            sample("c", MetricKind::Count, 1.0, NOW - 1000, &["a:1"]),
            NOW,
        );
        a.add(with(&shared), NOW);
        let p = a.flush(NOW);
        let total = |t: &str| {
            p.iter()
                .filter(|p| p.tags.iter().map(String::as_str).eq([t]))
                .map(|p| p.value)
                .collect::<Vec<_>>()
        };
        assert_eq!(total("a:1"), vec![4.0]);
        assert_eq!(total("a:2"), vec![1.0]);
        assert_eq!(a.series(), 2);
    }

    /// Sets are found by address: a set freed upstream and another made
    /// (possibly at the same address) must still be told apart, also once
    /// the address table starts over.
    #[test]
    fn a_new_set_at_a_freed_address_is_not_taken_for_the_old_one() {
        let mut a = Aggregator::new(1_000_000);
        let n = MAX_ADDRESSES + 100;
        for i in 0..n {
            // Each set is dropped by the caller right after: only the
            // aggregator's hold keeps its address from being reused.
            a.add(
                sample(
                    "c",
                    MetricKind::Count,
                    1.0,
                    NOW - 1000,
                    &[&format!("i:{}", i % 5000)],
                ),
                NOW,
            );
        }
        let p = a.flush(NOW);
        assert_eq!(p.len(), 5000);
        for point in &p {
            let i: usize = point.tags[0][2..].parse().unwrap();
            let want = (n / 5000 + usize::from(i < n % 5000)) as f64;
            assert_eq!(point.value, want, "{:?}", point.tags);
        }
    }

    #[test]
    fn gauges_keep_the_latest_event_and_distributions_their_new_values() {
        let mut a = Aggregator::new(1000);
        a.add(sample("g", MetricKind::Gauge, 7.0, NOW - 2000, &[]), NOW);
        a.add(sample("g", MetricKind::Gauge, 3.0, NOW - 3000, &[]), NOW);
        a.add(
            sample("d", MetricKind::Distribution, 1.0, NOW - 2000, &[]),
            NOW,
        );
        a.add(
            sample("d", MetricKind::Distribution, 2.0, NOW - 2000, &[]),
            NOW,
        );
        let p = a.flush(NOW);
        let g = p.iter().find(|p| p.name == "g").unwrap();
        assert_eq!(g.value, 7.0);
        let d = p.iter().find(|p| p.name == "d").unwrap();
        assert_eq!(d.values, vec![1.0, 2.0]);
        a.add(
            sample("d", MetricKind::Distribution, 5.0, NOW - 2000, &[]),
            NOW,
        );
        let p = a.flush(NOW);
        assert_eq!(p[0].values, vec![5.0], "only what is new");
    }

    #[test]
    fn samples_outside_the_intake_window_are_restamped_to_now() {
        let mut a = Aggregator::new(1000);
        a.add(
            sample("c", MetricKind::Count, 1.0, NOW - 2 * 3600 * 1000, &[]),
            NOW,
        );
        a.add(
            sample("c", MetricKind::Count, 1.0, NOW + 3600 * 1000, &[]),
            NOW,
        );
        let p = a.flush(NOW);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].timestamp, p[0].value), (NOW / 1000 / 10 * 10, 2.0));
        assert_eq!(a.restamped, 2);
    }

    #[test]
    fn old_windows_are_forgotten_and_the_series_bound_holds() {
        let mut a = Aggregator::new(3);
        for i in 0..10 {
            a.add(
                sample("c", MetricKind::Count, 1.0, NOW - (60 - i) * 10_000, &[]),
                NOW,
            );
            assert!(a.series() <= 3);
        }
        a.flush(NOW);
        let later = NOW + (LOOKBACK_SECS + 120) * 1000;
        a.flush(later);
        assert_eq!(a.series(), 0);
    }
}
