//! Metric points → `POST /api/v2/series` (counts and gauges, JSON, gzip) and
//! `POST /api/v1/distribution_points` (distributions, JSON, deflate), the
//! public endpoints (datadog-intake.md §2). Items are serialized once when
//! queued, so batch sizes are exact.

use super::super::delivery::{BatchLimits, EncodeError, Encoder, Request};
use super::super::item::MetricPoint;
use crate::export::aggregate::WINDOW_SECS;
use crate::export::compress::{deflate, gzip};
use crate::stitch::output::MetricKind;
use serde::Serialize;

/// Uncompressed bytes per request: the documented 500 KB payload cap holds
/// whatever the compression ratio.
pub const MAX_METRICS_PAYLOAD_BYTES: usize = 500_000;
pub const MAX_SERIES_PER_PAYLOAD: usize = 1000;

/// `MetricIntakeType`: 1 count, 3 gauge.
const TYPE_COUNT: u8 = 1;
const TYPE_GAUGE: u8 = 3;

#[derive(Serialize)]
struct Point {
    timestamp: i64,
    value: f64,
}

#[derive(Serialize)]
struct SeriesWire<'a> {
    metric: &'a str,
    #[serde(rename = "type")]
    kind: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<i64>,
    points: [Point; 1],
    tags: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    unit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<[Resource<'a>; 1]>,
}

#[derive(Serialize)]
struct Resource<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct DistributionWire<'a> {
    metric: &'a str,
    points: [(i64, &'a [f64]); 1],
    tags: &'a [String],
    #[serde(rename = "type")]
    kind: &'static str,
}

fn unit_of(name: &str) -> Option<&'static str> {
    (name.ends_with("duration") || name.ends_with("execution_time")).then_some("nanosecond")
}

/// A count or gauge point as one `MetricSeries` JSON object. `host` names
/// the series' host resource (the replica in cluster mode: Datadog keeps
/// the last point per series and timestamp, so two replicas' totals of one
/// window must be two series; queries sum them).
pub fn series_item(p: &MetricPoint, host: Option<&str>) -> Option<Vec<u8>> {
    let (kind, interval) = match p.kind {
        MetricKind::Count => (TYPE_COUNT, Some(WINDOW_SECS)),
        MetricKind::Gauge => (TYPE_GAUGE, None),
        MetricKind::Distribution => return None,
    };
    serde_json::to_vec(&SeriesWire {
        metric: p.name,
        kind,
        interval,
        // Counts carry the window's total: re-sending a window replaces it.
        points: [Point {
            timestamp: p.timestamp,
            value: p.value,
        }],
        tags: &p.tags,
        unit: unit_of(p.name),
        resources: host.map(|name| [Resource { name, kind: "host" }]),
    })
    .ok()
}

/// A distribution point's new values as one `DistributionPointsSeries`.
pub fn distribution_item(p: &MetricPoint) -> Option<Vec<u8>> {
    if p.kind != MetricKind::Distribution || p.values.is_empty() {
        return None;
    }
    serde_json::to_vec(&DistributionWire {
        metric: p.name,
        points: [(p.timestamp, &p.values)],
        tags: &p.tags,
        kind: "distribution",
    })
    .ok()
}

fn join(items: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + items.iter().map(|i| i.len() + 1).sum::<usize>());
    body.extend_from_slice(b"{\"series\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    body
}

fn limits() -> BatchLimits {
    BatchLimits {
        max_items: MAX_SERIES_PER_PAYLOAD,
        max_bytes: MAX_METRICS_PAYLOAD_BYTES - 64,
    }
}

pub struct Series {
    pub url: String,
    pub api_key: String,
}

impl Encoder for Series {
    type Item = Vec<u8>;

    fn signal(&self) -> &'static str {
        "series"
    }

    fn size(&self, item: &Vec<u8>) -> usize {
        item.len() + 1
    }

    fn limits(&self) -> BatchLimits {
        limits()
    }

    fn encode(&self, items: &[Vec<u8>]) -> Result<Request, EncodeError> {
        let body = gzip(&join(items)).map_err(|e| EncodeError {
            signal: "series",
            reason: e.to_string(),
        })?;
        Ok(Request::new(self.url.clone(), body)
            .header("dd-api-key", &self.api_key)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip"))
    }
}

pub struct Distributions {
    pub url: String,
    pub api_key: String,
}

impl Encoder for Distributions {
    type Item = Vec<u8>;

    fn signal(&self) -> &'static str {
        "distributions"
    }

    fn size(&self, item: &Vec<u8>) -> usize {
        item.len() + 1
    }

    fn limits(&self) -> BatchLimits {
        limits()
    }

    fn encode(&self, items: &[Vec<u8>]) -> Result<Request, EncodeError> {
        // `deflate` (zlib) is the only encoding this endpoint documents.
        let body = deflate(&join(items)).map_err(|e| EncodeError {
            signal: "distributions",
            reason: e.to_string(),
        })?;
        Ok(Request::new(self.url.clone(), body)
            .header("dd-api-key", &self.api_key)
            .header("content-type", "application/json")
            .header("content-encoding", "deflate"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn point(kind: MetricKind, value: f64, values: Vec<f64>) -> MetricPoint {
        MetricPoint {
            name: "aws.states.enhanced.state.duration",
            kind,
            timestamp: 1_800_000_000,
            tags: Arc::from(vec!["env:prod".to_string()]),
            value,
            delta: value,
            values,
        }
    }

    #[test]
    fn series_items_have_the_documented_types() {
        let c: serde_json::Value = serde_json::from_slice(
            &series_item(&point(MetricKind::Count, 3.0, vec![]), None).unwrap(),
        )
        .unwrap();
        assert_eq!(c["type"], 1);
        assert_eq!(c["interval"], 10);
        assert_eq!(c["points"][0]["value"], 3.0);
        assert!(c.get("resources").is_none());
        let g: serde_json::Value = serde_json::from_slice(
            &series_item(&point(MetricKind::Gauge, 5.0, vec![]), Some("replica-1")).unwrap(),
        )
        .unwrap();
        assert_eq!(g["type"], 3);
        assert_eq!(
            g["resources"],
            serde_json::json!([{"name": "replica-1", "type": "host"}])
        );
        assert!(g.get("interval").is_none());
        assert_eq!(g["unit"], "nanosecond");
        assert!(series_item(&point(MetricKind::Distribution, 0.0, vec![1.0]), None).is_none());
        let d: serde_json::Value = serde_json::from_slice(
            &distribution_item(&point(MetricKind::Distribution, 0.0, vec![1.0, 2.0])).unwrap(),
        )
        .unwrap();
        assert_eq!(d["points"][0][0], 1_800_000_000);
        assert_eq!(d["points"][0][1], serde_json::json!([1.0, 2.0]));
        assert_eq!(d["type"], "distribution");
    }
}
