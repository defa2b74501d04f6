//! Spans → `ExportTraceServiceRequest` (spec/interfaces.md "OTLP exporter"):
//! the Datadog span mapped field by field, so the same trace reaches any
//! OTLP backend and Datadog's OTLP intake joins it with the Lambda traces.
//!
//! Each span is encoded once, with the `opentelemetry-proto` types, when
//! the hub hands it over; a request is then those bytes framed by hand in
//! their resource and scope (no second walk over the span messages). A
//! test decodes a request and compares it with one built from the types.

use super::resource::{by_resource, scope, ResourceKey, Resources};
use super::wire::{
    double_value, field_head, field_len, kv, put_double_attribute, put_string_attribute, span_id,
    string_value, trace_id, unix_nanos,
};
use crate::export::delivery::{BatchLimits, EncodeError, Request};
use crate::stitch::span::{op, Span};
use opentelemetry_proto::tonic::trace::v1::{self as pb, span::SpanKind, status::StatusCode};
use prost::Message;
use std::sync::Arc;

/// Uncompressed bytes per request: well under the 4 MiB that gRPC-based
/// receivers (Tempo, Jaeger) take by default, which also bounds what an
/// OpenTelemetry Collector forwards on.
pub const MAX_TRACE_REQUEST_BYTES: usize = 3_500_000;
pub const MAX_SPANS_PER_REQUEST: usize = 8192;

/// Span attributes from OpenTelemetry's semantic conventions that the
/// Datadog span does not have (everything else maps back to it).
pub const SEMCONV_SPAN_ATTRIBUTES: [&str; 3] = [
    "faas.invoked_name",
    "faas.invoked_provider",
    "faas.invoked_region",
];

/// The span's `span.kind` (the builder decides it: `server` for an
/// execution, the root and a nested one under the Task that started it;
/// `client` for a Task that invokes a Lambda function or starts an
/// execution; `internal` otherwise).
pub fn kind(s: &Span) -> SpanKind {
    match s.meta.get("span.kind").map(|k| k.as_str()) {
        Some("server") => SpanKind::Server,
        Some("client") => SpanKind::Client,
        Some("producer") => SpanKind::Producer,
        Some("consumer") => SpanKind::Consumer,
        Some(_) => SpanKind::Internal,
        // A span restored from a snapshot written before span.kind.
        None if s.name == op::EXECUTION && !s.meta.contains_key("redrive") => SpanKind::Server,
        None => SpanKind::Internal,
    }
}

/// `faas.*` for a Task whose Lambda function is known:
/// `arn:aws:lambda:{region}:{account}:function:{name}[:{qualifier}]`.
fn faas_attributes(s: &Span) -> Option<[(&'static str, &str); 3]> {
    let arn = s.meta.get("function_arn")?;
    let mut parts = arn.split(':');
    let (_, _, service, region, _, kind, name) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if service != "lambda" || kind != "function" {
        return None;
    }
    Some([
        ("faas.invoked_name", name),
        ("faas.invoked_provider", "aws"),
        ("faas.invoked_region", region),
    ])
}

/// A span's attribute value.
enum Attr<'a> {
    Str(&'a str),
    Double(f64),
}

/// The attributes, in order: `operation.name`, `resource.name`,
/// `span.type`, every meta entry, every metric, then `faas.*`.
fn attributes(s: &Span) -> impl Iterator<Item = (&str, Attr<'_>)> {
    [
        ("operation.name", Attr::Str(s.name)),
        ("resource.name", Attr::Str(&s.resource)),
        ("span.type", Attr::Str(s.span_type)),
    ]
    .into_iter()
    .chain(s.meta.iter().map(|(k, v)| (k, Attr::Str(v))))
    .chain(s.metrics.iter().map(|(k, v)| (k, Attr::Double(*v))))
    .chain(
        faas_attributes(s)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k, Attr::Str(v))),
    )
}

/// The OTLP span of a Datadog span: the reference form (prost types).
/// The exporter writes [`encode_span`], which decodes equal to it (tested).
pub fn to_otlp(s: &Span) -> pb::Span {
    let mut span = skeleton(s);
    span.attributes = attributes(s)
        .map(|(k, v)| match v {
            Attr::Str(v) => kv(k, string_value(v)),
            Attr::Double(v) => kv(k, double_value(v)),
        })
        .collect();
    span
}

/// `Span.attributes`.
const ATTRIBUTES: u32 = 9;

/// The span's `Span` message. Everything but the attributes goes through
/// the prost type; the attributes (two dozen per span, most of the
/// message) are written straight from the span's tags: a `KeyValue` with
/// two owned strings each made the typed encoder 2-3x slower
/// (BENCHMARKS.md). Fields may come in any order on the wire.
pub fn encode_span(s: &Span, buf: &mut Vec<u8>) {
    skeleton(s).encode_raw(buf);
    for (k, v) in attributes(s) {
        match v {
            Attr::Str(v) => put_string_attribute(ATTRIBUTES, k, v, buf),
            Attr::Double(v) => put_double_attribute(ATTRIBUTES, k, v, buf),
        }
    }
}

/// Everything of the OTLP span but its attributes.
fn skeleton(s: &Span) -> pb::Span {
    let tid = trace_id(s.trace_id_high, s.trace_id);
    let start = unix_nanos(s.start);
    let end = unix_nanos(s.start.saturating_add(s.duration));
    let message = s.meta.get("error.message").map(|m| m.to_string());
    let mut events = Vec::new();
    let mut status = None;
    if s.error != 0 {
        let mut exception = Vec::new();
        if let Some(t) = s.meta.get("error.type") {
            exception.push(kv("exception.type", string_value(t)));
        }
        if let Some(m) = &message {
            exception.push(kv("exception.message", string_value(m)));
        }
        if !exception.is_empty() {
            events.push(pb::span::Event {
                time_unix_nano: end,
                name: "exception".into(),
                attributes: exception,
                ..Default::default()
            });
        }
        status = Some(pb::Status {
            code: StatusCode::Error as i32,
            message: message.unwrap_or_default(),
        });
    }
    // A redrive continues the first run: link it to that run's span.
    let links = if s.meta.contains_key("redrive") && s.parent_id != 0 {
        vec![pb::span::Link {
            trace_id: tid.clone(),
            span_id: span_id(s.parent_id),
            ..Default::default()
        }]
    } else {
        Vec::new()
    };
    pb::Span {
        trace_id: tid,
        span_id: span_id(s.span_id),
        parent_span_id: span_id(s.parent_id),
        name: s.resource.to_string(),
        kind: kind(s) as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        events,
        links,
        status,
        ..Default::default()
    }
}

/// One span, encoded, with the resource it belongs to.
#[derive(Debug, Clone)]
pub struct EncodedSpan {
    pub resource: Arc<ResourceKey>,
    /// The `Span` message (without a field key).
    pub bytes: Vec<u8>,
}

/// Encodes a hand-over's spans; spans of one execution share a resource.
pub fn encode_spans(spans: &[Span]) -> Vec<EncodedSpan> {
    let mut last: Option<Arc<ResourceKey>> = None;
    spans
        .iter()
        .map(|s| {
            let key = ResourceKey::of_span(s);
            let resource = match &last {
                Some(k) if **k == key => k.clone(),
                _ => {
                    let k = Arc::new(key);
                    last = Some(k.clone());
                    k
                }
            };
            let mut bytes = Vec::with_capacity(1024);
            encode_span(s, &mut bytes);
            EncodedSpan { resource, bytes }
        })
        .collect()
}

/// The request body: `ExportTraceServiceRequest` (field 1, `ResourceSpans`
/// = resource 1, scope_spans 2; `ScopeSpans` = scope 1, spans 2).
pub fn request_body(items: &[EncodedSpan], resources: &Resources) -> Vec<u8> {
    let scope = scope().encode_to_vec();
    let total: usize = items.iter().map(|i| i.bytes.len() + 8).sum();
    let mut body = Vec::with_capacity(total + 256);
    for (key, group) in by_resource(items, |i| &i.resource) {
        let resource = resources.resource(key).encode_to_vec();
        let spans: usize = group.iter().map(|i| field_len(2, i.bytes.len())).sum();
        let scope_spans = field_len(1, scope.len()) + spans;
        let resource_spans = field_len(1, resource.len()) + field_len(2, scope_spans);
        field_head(1, resource_spans, &mut body);
        field_head(1, resource.len(), &mut body);
        body.extend_from_slice(&resource);
        field_head(2, scope_spans, &mut body);
        field_head(1, scope.len(), &mut body);
        body.extend_from_slice(&scope);
        for i in group {
            field_head(2, i.bytes.len(), &mut body);
            body.extend_from_slice(&i.bytes);
        }
    }
    body
}

/// The traces lane's encoder.
pub struct Traces {
    pub url: String,
    pub out: super::Out,
    pub resources: Resources,
}

impl crate::export::delivery::Encoder for Traces {
    type Item = EncodedSpan;

    fn signal(&self) -> &'static str {
        "traces"
    }

    fn size(&self, item: &EncodedSpan) -> usize {
        item.bytes.len() + 8
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_items: MAX_SPANS_PER_REQUEST,
            max_bytes: MAX_TRACE_REQUEST_BYTES,
        }
    }

    fn encode(&self, items: &[EncodedSpan]) -> Result<Request, EncodeError> {
        self.out
            .request(&self.url, request_body(items, &self.resources), "traces")
    }

    fn review(
        &self,
        outcome: crate::export::delivery::Outcome,
        items: usize,
    ) -> crate::export::delivery::Outcome {
        super::answer::review(outcome, items, "traces", |b| {
            use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse as R;
            R::decode(b)
                .ok()
                .and_then(|r| r.partial_success)
                .map(|p| (p.rejected_spans, p.error_message))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stitch::tags::{Meta, Metrics};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    fn span(name: &'static str, meta: &[(&str, &str)]) -> Span {
        let mut m = Meta::new();
        for (k, v) in meta {
            m.insert(k.to_string(), *v);
        }
        let mut metrics = Metrics::new();
        metrics.insert("step_function.retry_count", 2.0);
        Span {
            trace_id: 42,
            trace_id_high: 0x66bc_b5eb_0000_0000,
            span_id: 7,
            parent_id: 3,
            name,
            resource: "Charge".into(),
            service: "orders".into(),
            span_type: "serverless",
            start: 1_700_000_000_000_000_000,
            duration: 5_000_000,
            error: 0,
            meta: m,
            metrics,
        }
    }

    fn attr<'a>(s: &'a pb::Span, k: &str) -> Option<&'a Value> {
        s.attributes
            .iter()
            .find(|a| a.key == k)
            .and_then(|a| a.value.as_ref()?.value.as_ref())
    }

    #[test]
    fn a_span_maps_field_by_field() {
        let s = span(op::STATE, &[("step_function.state_name", "Charge")]);
        let o = to_otlp(&s);
        assert_eq!(o.trace_id, trace_id(0x66bc_b5eb_0000_0000, 42));
        assert_eq!(o.span_id, 7u64.to_be_bytes());
        assert_eq!(o.parent_span_id, 3u64.to_be_bytes());
        assert_eq!(o.name, "Charge");
        assert_eq!(o.start_time_unix_nano, 1_700_000_000_000_000_000);
        assert_eq!(o.end_time_unix_nano, 1_700_000_000_005_000_000);
        assert_eq!(
            attr(&o, "operation.name"),
            Some(&Value::StringValue(op::STATE.into()))
        );
        assert_eq!(
            attr(&o, "resource.name"),
            Some(&Value::StringValue("Charge".into()))
        );
        assert_eq!(
            attr(&o, "span.type"),
            Some(&Value::StringValue("serverless".into()))
        );
        assert_eq!(
            attr(&o, "step_function.state_name"),
            Some(&Value::StringValue("Charge".into()))
        );
        assert_eq!(
            attr(&o, "step_function.retry_count"),
            Some(&Value::DoubleValue(2.0))
        );
        assert_eq!(o.kind, SpanKind::Internal as i32);
        assert!(o.status.is_none(), "UNSET");
        assert!(o.events.is_empty() && o.links.is_empty());
    }

    #[test]
    fn the_kind_is_the_span_kind_tag() {
        for (tag, want) in [
            ("server", SpanKind::Server),
            ("client", SpanKind::Client),
            ("internal", SpanKind::Internal),
        ] {
            assert_eq!(kind(&span(op::STATE, &[("span.kind", tag)])), want);
        }
        // Restored from an older snapshot: an execution is still SERVER.
        assert_eq!(kind(&span(op::EXECUTION, &[])), SpanKind::Server);
        assert_eq!(
            kind(&span(op::EXECUTION, &[("redrive", "true")])),
            SpanKind::Internal
        );
        assert_eq!(kind(&span(op::MAP_ITERATION, &[])), SpanKind::Internal);
    }

    #[test]
    fn errors_set_the_status_and_an_exception_event() {
        let mut s = span(
            op::STATE,
            &[
                ("error.type", "States.Timeout"),
                ("error.message", "too slow"),
            ],
        );
        s.error = 1;
        let o = to_otlp(&s);
        let st = o.status.unwrap();
        assert_eq!(st.code, StatusCode::Error as i32);
        assert_eq!(st.message, "too slow");
        assert_eq!(o.events.len(), 1);
        let e = &o.events[0];
        assert_eq!(e.name, "exception");
        assert_eq!(e.time_unix_nano, o.end_time_unix_nano);
        let ev: Vec<(&str, &Value)> = e
            .attributes
            .iter()
            .map(|a| {
                (
                    a.key.as_str(),
                    a.value.as_ref().unwrap().value.as_ref().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            ev,
            [
                (
                    "exception.type",
                    &Value::StringValue("States.Timeout".into())
                ),
                ("exception.message", &Value::StringValue("too slow".into()))
            ]
        );
    }

    #[test]
    fn lambda_tasks_get_faas_attributes_and_a_redrive_links_to_its_first_run() {
        let s = span(
            op::STATE,
            &[
                (
                    "function_arn",
                    "arn:aws:lambda:eu-west-1:123456789012:function:charge:live",
                ),
                ("span.kind", "client"),
            ],
        );
        let o = to_otlp(&s);
        assert_eq!(o.kind, SpanKind::Client as i32);
        assert_eq!(
            attr(&o, "faas.invoked_name"),
            Some(&Value::StringValue("charge".into()))
        );
        assert_eq!(
            attr(&o, "faas.invoked_region"),
            Some(&Value::StringValue("eu-west-1".into()))
        );
        assert_eq!(
            attr(&o, "faas.invoked_provider"),
            Some(&Value::StringValue("aws".into()))
        );
        let r = to_otlp(&span(op::EXECUTION, &[("redrive", "true")]));
        assert_eq!(r.links.len(), 1);
        assert_eq!(r.links[0].span_id, 3u64.to_be_bytes());
        assert_eq!(r.links[0].trace_id, r.trace_id);
    }

    #[test]
    fn the_written_span_decodes_equal_to_the_typed_one() {
        let mut failed = span(
            op::STATE,
            &[
                ("error.type", "E"),
                ("error.message", "é".repeat(200).as_str()),
                ("function_arn", "arn:aws:lambda:eu-west-1:1:function:f"),
            ],
        );
        failed.error = 1;
        let mut root = span(op::EXECUTION, &[]);
        root.parent_id = 0;
        for s in [failed, root, span(op::EXECUTION, &[("redrive", "true")])] {
            let mut buf = Vec::new();
            encode_span(&s, &mut buf);
            assert_eq!(pb::Span::decode(buf.as_slice()).unwrap(), to_otlp(&s));
        }
    }

    #[test]
    fn the_hand_framed_request_decodes_equal_to_one_built_from_the_types() {
        let a = span(
            op::STATE,
            &[
                ("step_function.state_machine_arn", "arn:a"),
                ("region", "eu-west-1"),
            ],
        );
        let mut b = a.clone();
        b.span_id = 8;
        let mut c = a.clone();
        c.service = "billing".into();
        c.span_id = 9;
        let spans = vec![a.clone(), c.clone(), b.clone()];
        let resources = Resources::default();
        let body = request_body(&encode_spans(&spans), &resources);
        let got = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        let group = |ss: Vec<&Span>| pb::ResourceSpans {
            resource: Some(resources.resource(&ResourceKey::of_span(ss[0]))),
            scope_spans: vec![pb::ScopeSpans {
                scope: Some(scope()),
                spans: ss.into_iter().map(to_otlp).collect(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let want = ExportTraceServiceRequest {
            resource_spans: vec![group(vec![&a, &b]), group(vec![&c])],
        };
        assert_eq!(got, want);
    }
}
