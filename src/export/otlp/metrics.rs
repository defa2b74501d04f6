//! Enhanced metrics → `ExportMetricsServiceRequest`: the same names and
//! attributes (every `key:value` tag) as the Datadog series; counts as
//! monotonic delta sums over their 10-second window, gauges as gauges,
//! distributions as delta exponential histograms of the values observed
//! since the previous point. Durations are nanoseconds (unit `ns`), as in
//! Datadog's metadata for these metrics.

use super::expo::{histogram, MAX_BUCKETS};
use super::resource::{by_resource, scope, ResourceKey, Resources};
use super::wire::tag_attributes;
use crate::export::aggregate::WINDOW_SECS;
use crate::export::delivery::{BatchLimits, EncodeError, Encoder, Outcome, Request};
use crate::export::item::MetricPoint;
use crate::stitch::output::MetricKind;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::{
    self as pb, exponential_histogram_data_point::Buckets, metric::Data, number_data_point::Value,
    AggregationTemporality,
};
use prost::Message;

pub const MAX_METRIC_REQUEST_BYTES: usize = 3_500_000;
pub const MAX_POINTS_PER_REQUEST: usize = 8192;

/// One metric with one data point, and its resource.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricItem {
    pub resource: ResourceKey,
    pub metric: pb::Metric,
}

fn secs_to_nanos(s: i64) -> u64 {
    (s.max(0) as u64).saturating_mul(1_000_000_000)
}

/// A count as an integer when it is one (they always are; the aggregator
/// keeps them as floats).
fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        Value::AsInt(v as i64)
    } else {
        Value::AsDouble(v)
    }
}

fn unit(name: &str) -> &'static str {
    if name.ends_with("duration") || name.ends_with("execution_time") {
        "ns"
    } else {
        ""
    }
}

/// The OTLP metric of a point; `None` when it carries nothing new (a
/// count that did not change, a distribution without values).
pub fn to_metric(p: &MetricPoint) -> Option<pb::Metric> {
    let attributes = tag_attributes(&p.tags);
    let start = secs_to_nanos(p.timestamp);
    let end = secs_to_nanos(p.timestamp + WINDOW_SECS);
    let data = match p.kind {
        MetricKind::Count => {
            if p.delta == 0.0 {
                return None;
            }
            Data::Sum(pb::Sum {
                data_points: vec![pb::NumberDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: end,
                    value: Some(number(p.delta)),
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Delta as i32,
                is_monotonic: true,
            })
        }
        MetricKind::Gauge => Data::Gauge(pb::Gauge {
            data_points: vec![pb::NumberDataPoint {
                attributes,
                time_unix_nano: start,
                value: Some(Value::AsDouble(p.value)),
                ..Default::default()
            }],
        }),
        MetricKind::Distribution => {
            let h = histogram(&p.values, MAX_BUCKETS)?;
            let buckets = |b: super::expo::Buckets| {
                (!b.counts.is_empty()).then_some(Buckets {
                    offset: b.offset,
                    bucket_counts: b.counts,
                })
            };
            Data::ExponentialHistogram(pb::ExponentialHistogram {
                data_points: vec![pb::ExponentialHistogramDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: end,
                    count: h.count,
                    sum: Some(h.sum),
                    scale: h.scale,
                    zero_count: h.zero_count,
                    positive: buckets(h.positive),
                    negative: buckets(h.negative),
                    min: Some(h.min),
                    max: Some(h.max),
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Delta as i32,
            })
        }
    };
    Some(pb::Metric {
        name: p.name.to_owned(),
        unit: unit(p.name).to_owned(),
        data: Some(data),
        ..Default::default()
    })
}

pub fn items(points: &[MetricPoint]) -> Vec<MetricItem> {
    points
        .iter()
        .filter_map(|p| {
            Some(MetricItem {
                resource: ResourceKey::of_tags(p.tags.iter().map(String::as_str)),
                metric: to_metric(p)?,
            })
        })
        .collect()
}

fn points_of(d: &mut Data) -> usize {
    match d {
        Data::Sum(s) => s.data_points.len(),
        Data::Gauge(g) => g.data_points.len(),
        Data::ExponentialHistogram(h) => h.data_points.len(),
        Data::Histogram(h) => h.data_points.len(),
        Data::Summary(s) => s.data_points.len(),
    }
}

/// Moves `from`'s data points into `into` (same name, so same type).
fn merge(into: &mut Data, from: Data) {
    match (into, from) {
        (Data::Sum(a), Data::Sum(b)) => a.data_points.extend(b.data_points),
        (Data::Gauge(a), Data::Gauge(b)) => a.data_points.extend(b.data_points),
        (Data::ExponentialHistogram(a), Data::ExponentialHistogram(b)) => {
            a.data_points.extend(b.data_points)
        }
        (a, b) => debug_assert!(false, "{a:?} and {b:?} share a name"),
    }
}

/// One `ResourceMetrics` per resource, one `Metric` per name in it.
pub fn request(items: &[MetricItem], resources: &Resources) -> ExportMetricsServiceRequest {
    let resource_metrics = by_resource(items, |i| &i.resource)
        .into_iter()
        .map(|(key, group)| {
            let mut metrics: Vec<pb::Metric> = Vec::new();
            for item in group {
                let m = item.metric.clone();
                match metrics.iter_mut().find(|x| x.name == m.name) {
                    Some(x) => {
                        if let (Some(into), Some(from)) = (x.data.as_mut(), m.data) {
                            merge(into, from);
                        }
                    }
                    None => metrics.push(m),
                }
            }
            debug_assert!(metrics
                .iter_mut()
                .all(|m| m.data.as_mut().is_some_and(|d| points_of(d) > 0)));
            pb::ResourceMetrics {
                resource: Some(resources.resource(key)),
                scope_metrics: vec![pb::ScopeMetrics {
                    scope: Some(scope()),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }
}

pub struct Metrics {
    pub url: String,
    pub out: super::Out,
    pub resources: Resources,
}

impl Encoder for Metrics {
    type Item = MetricItem;

    fn signal(&self) -> &'static str {
        "metrics"
    }

    fn size(&self, item: &MetricItem) -> usize {
        item.metric.encoded_len() + 64
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_items: MAX_POINTS_PER_REQUEST,
            max_bytes: MAX_METRIC_REQUEST_BYTES,
        }
    }

    fn encode(&self, items: &[MetricItem]) -> Result<Request, EncodeError> {
        let body = request(items, &self.resources).encode_to_vec();
        self.out.request(&self.url, body, "metrics")
    }

    fn review(&self, outcome: Outcome, items: usize) -> Outcome {
        super::answer::review(outcome, items, "metrics", |b| {
            ExportMetricsServiceResponse::decode(b)
                .ok()
                .and_then(|r| r.partial_success)
                .map(|p| (p.rejected_data_points, p.error_message))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn point(name: &'static str, kind: MetricKind, delta: f64, values: Vec<f64>) -> MetricPoint {
        MetricPoint {
            name,
            kind,
            timestamp: 1_700_000_000,
            tags: Arc::from(vec![
                "service:orders".to_string(),
                "statemachinearn:arn:aws:states:eu-west-1:1:stateMachine:Orders".to_string(),
            ]),
            value: delta + 5.0,
            delta,
            values,
        }
    }

    #[test]
    fn counts_are_delta_sums_over_their_window() {
        let m = to_metric(&point(
            "aws.states.enhanced.execution.started",
            MetricKind::Count,
            3.0,
            vec![],
        ))
        .unwrap();
        let Some(Data::Sum(s)) = m.data else { panic!() };
        assert!(s.is_monotonic);
        assert_eq!(
            s.aggregation_temporality,
            AggregationTemporality::Delta as i32
        );
        let p = &s.data_points[0];
        assert_eq!(
            p.value,
            Some(Value::AsInt(3)),
            "what was added, not the window's total"
        );
        assert_eq!(p.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(p.time_unix_nano, 1_700_000_010_000_000_000);
        assert_eq!(p.attributes.len(), 2);
        assert_eq!(p.attributes[0].key, "service");
        assert!(to_metric(&point("c", MetricKind::Count, 0.0, vec![])).is_none());
    }

    #[test]
    fn gauges_and_distributions() {
        let g = to_metric(&point(
            "aws.states.enhanced.state.duration",
            MetricKind::Gauge,
            2.0,
            vec![],
        ))
        .unwrap();
        assert_eq!(g.unit, "ns");
        let Some(Data::Gauge(g)) = g.data else {
            panic!()
        };
        assert_eq!(g.data_points[0].value, Some(Value::AsDouble(7.0)));
        let d = to_metric(&point(
            "aws.states.enhanced.execution.execution_time",
            MetricKind::Distribution,
            0.0,
            vec![1.0e9, 2.0e9, 0.0],
        ))
        .unwrap();
        let Some(Data::ExponentialHistogram(h)) = d.data else {
            panic!()
        };
        let p = &h.data_points[0];
        assert_eq!(
            h.aggregation_temporality,
            AggregationTemporality::Delta as i32
        );
        assert_eq!(
            (p.count, p.zero_count, p.sum, p.min, p.max),
            (3, 1, Some(3.0e9), Some(0.0), Some(2.0e9))
        );
        assert_eq!(
            p.positive
                .as_ref()
                .unwrap()
                .bucket_counts
                .iter()
                .sum::<u64>(),
            2
        );
        assert!(to_metric(&point("d", MetricKind::Distribution, 0.0, vec![])).is_none());
    }

    #[test]
    fn a_request_has_one_metric_per_name_per_resource() {
        let a = point(
            "aws.states.enhanced.execution.started",
            MetricKind::Count,
            1.0,
            vec![],
        );
        let mut b = a.clone();
        b.tags = Arc::from(vec![
            "service:orders".to_string(),
            "statemachinearn:arn:aws:states:eu-west-1:1:stateMachine:Orders".to_string(),
            "x:y".to_string(),
        ]);
        let mut c = a.clone();
        c.tags = Arc::from(vec!["service:billing".to_string()]);
        let req = request(&items(&[a, b, c]), &Resources::default());
        assert_eq!(req.resource_metrics.len(), 2);
        let first = &req.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(first.len(), 1);
        let Some(Data::Sum(s)) = &first[0].data else {
            panic!()
        };
        assert_eq!(s.data_points.len(), 2);
    }
}
