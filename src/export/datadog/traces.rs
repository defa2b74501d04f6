//! Spans → Datadog trace payloads: protobuf `AgentPayload` for the intake
//! (agentless), msgpack v0.4 for an Agent. Both carry the same dressing:
//! - `_sampling_priority_v1 = 1` (auto keep) on every span, and chunk
//!   priority 1: a trace arrives in several chunks (states are emitted while
//!   the execution runs), so no chunk may depend on another for its priority;
//! - the execution span is the service entry (`_top_level` for the intake,
//!   `_dd.top_level` with `Datadog-Client-Computed-Top-Level` for an Agent)
//!   and state spans are `_dd.measured`, so trace metrics exist per state;
//! - agentless only: `_dd.compute_stats = "1"`, so the backend computes
//!   trace metrics for spans that no Agent saw (datadog-intake.md §1.7).

use super::super::delivery::{BatchLimits, EncodeError, Encoder, Request};
use super::gzip;
use crate::stitch::span::{op, Span};
use libdd_trace_protobuf::pb;
use prost::Message;
use std::collections::HashMap;

pub const PRIORITY_AUTO_KEEP: i32 = 1;
/// Uncompressed bytes per trace request: under the intake's 3.2 MB.
pub const MAX_TRACE_PAYLOAD_BYTES: usize = 3_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Agentless,
    Agent,
}

fn is_service_entry(s: &Span) -> bool {
    s.name == op::EXECUTION && !s.meta.contains_key("redrive")
}

/// The span with the Datadog-only keys added (see the module docs).
pub fn dress(mut s: Span, mode: Mode) -> Span {
    s.metrics
        .insert("_sampling_priority_v1".into(), PRIORITY_AUTO_KEEP as f64);
    if s.name == op::STATE {
        s.metrics.insert("_dd.measured".into(), 1.0);
    }
    match mode {
        Mode::Agentless => {
            s.meta.insert("_dd.compute_stats".into(), "1".into());
            if is_service_entry(&s) {
                s.metrics.insert("_top_level".into(), 1.0);
            }
        }
        Mode::Agent => {
            if is_service_entry(&s) {
                s.metrics.insert("_dd.top_level".into(), 1.0);
            }
        }
    }
    s
}

/// Spans grouped into one chunk per trace, in first-seen order.
pub fn by_trace(spans: &[Span]) -> Vec<Vec<&Span>> {
    let mut order: Vec<u64> = Vec::new();
    let mut groups: HashMap<u64, Vec<&Span>> = HashMap::new();
    for s in spans {
        groups
            .entry(s.trace_id)
            .or_insert_with(|| {
                order.push(s.trace_id);
                Vec::new()
            })
            .push(s);
    }
    order
        .into_iter()
        .filter_map(|t| groups.remove(&t))
        .collect()
}

pub fn to_pb(s: Span) -> pb::Span {
    pb::Span {
        service: s.service,
        name: s.name.to_owned(),
        resource: s.resource,
        trace_id: s.trace_id,
        span_id: s.span_id,
        parent_id: s.parent_id,
        start: s.start,
        duration: s.duration,
        error: s.error,
        meta: s.meta.into_iter().collect(),
        metrics: s.metrics.into_iter().collect(),
        r#type: s.span_type.to_owned(),
        ..Default::default()
    }
}

pub fn chunk(spans: Vec<&Span>) -> pb::TraceChunk {
    pb::TraceChunk {
        priority: PRIORITY_AUTO_KEEP,
        spans: spans
            .into_iter()
            .map(|s| to_pb(dress(s.clone(), Mode::Agentless)))
            .collect(),
        ..Default::default()
    }
}

/// Agentless: chunks → `AgentPayload` (protobuf, gzip) → `/api/v0.2/traces`.
pub struct IntakeTraces {
    pub url: String,
    pub api_key: String,
    pub env: String,
    pub app_version: String,
    pub runtime_id: String,
}

impl Encoder for IntakeTraces {
    type Item = pb::TraceChunk;

    fn signal(&self) -> &'static str {
        "traces"
    }

    fn size(&self, item: &pb::TraceChunk) -> usize {
        item.encoded_len() + 4
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_items: 10_000,
            max_bytes: MAX_TRACE_PAYLOAD_BYTES,
        }
    }

    fn encode(&self, items: &[pb::TraceChunk]) -> Result<Request, EncodeError> {
        let payload = pb::AgentPayload {
            env: self.env.clone(),
            agent_version: concat!("stepstitch/", env!("CARGO_PKG_VERSION")).into(),
            target_tps: 10.0,
            error_tps: 10.0,
            tracer_payloads: vec![pb::TracerPayload {
                language_name: "rust".into(),
                tracer_version: env!("CARGO_PKG_VERSION").into(),
                runtime_id: self.runtime_id.clone(),
                chunks: items.to_vec(),
                env: self.env.clone(),
                app_version: self.app_version.clone(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let body = gzip(&payload.encode_to_vec()).map_err(|e| EncodeError {
            signal: "traces",
            reason: e.to_string(),
        })?;
        Ok(Request::new(self.url.clone(), body)
            .header("dd-api-key", &self.api_key)
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "gzip")
            .header("x-datadog-reported-languages", "rust"))
    }
}

/// One trace's spans, msgpack-encoded as a v0.4 trace (an array of spans).
pub struct AgentTrace {
    bytes: Vec<u8>,
}

impl AgentTrace {
    pub fn new(spans: Vec<&Span>) -> Result<Self, rmp_serde::encode::Error> {
        let dressed: Vec<Span> = spans
            .into_iter()
            .map(|s| dress(s.clone(), Mode::Agent))
            .collect();
        Ok(Self {
            bytes: rmp_serde::to_vec_named(&dressed)?,
        })
    }
}

/// Agent mode: traces → msgpack v0.4 → `{DD_TRACE_AGENT_URL}/v0.4/traces`.
pub struct AgentTraces {
    pub url: String,
}

impl Encoder for AgentTraces {
    type Item = AgentTrace;

    fn signal(&self) -> &'static str {
        "traces"
    }

    fn size(&self, item: &AgentTrace) -> usize {
        item.bytes.len()
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_items: 10_000,
            max_bytes: MAX_TRACE_PAYLOAD_BYTES,
        }
    }

    fn encode(&self, items: &[AgentTrace]) -> Result<Request, EncodeError> {
        // A v0.4 payload is an array of traces; each trace is already encoded.
        let mut body = Vec::with_capacity(5 + items.iter().map(|t| t.bytes.len()).sum::<usize>());
        rmp::encode::write_array_len(&mut body, items.len() as u32).map_err(|e| EncodeError {
            signal: "traces",
            reason: e.to_string(),
        })?;
        for t in items {
            body.extend_from_slice(&t.bytes);
        }
        Ok(Request::new(self.url.clone(), body)
            .header("content-type", "application/msgpack")
            .header("x-datadog-trace-count", &items.len().to_string())
            .header("datadog-meta-lang", "rust")
            .header("datadog-meta-tracer-version", env!("CARGO_PKG_VERSION"))
            .header("datadog-client-computed-top-level", "yes")
            .header("datadog-send-real-http-status", "1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn span(trace: u64, id: u64, parent: u64, name: &'static str) -> Span {
        Span {
            trace_id: trace,
            span_id: id,
            parent_id: parent,
            name,
            resource: "r".into(),
            service: "svc".into(),
            span_type: "serverless",
            start: 1,
            duration: 2,
            error: 0,
            meta: BTreeMap::new(),
            metrics: BTreeMap::new(),
        }
    }

    #[test]
    fn dressing_marks_entries_measured_states_and_priority() {
        let e = dress(span(1, 1, 0, op::EXECUTION), Mode::Agentless);
        assert_eq!(e.metrics["_top_level"], 1.0);
        assert_eq!(e.metrics["_sampling_priority_v1"], 1.0);
        assert_eq!(e.meta["_dd.compute_stats"], "1");
        let s = dress(span(1, 2, 1, op::STATE), Mode::Agent);
        assert_eq!(s.metrics["_dd.measured"], 1.0);
        assert!(!s.metrics.contains_key("_dd.top_level"));
        assert!(!s.meta.contains_key("_dd.compute_stats"));
        let mut r = span(1, 3, 1, op::EXECUTION);
        r.meta.insert("redrive".into(), "true".into());
        assert!(!dress(r, Mode::Agent).metrics.contains_key("_dd.top_level"));
    }

    #[test]
    fn intake_payload_round_trips_through_protobuf_and_gzip() {
        let spans = vec![
            span(1, 1, 0, op::EXECUTION),
            span(2, 5, 0, op::EXECUTION),
            span(1, 2, 1, op::STATE),
        ];
        let chunks: Vec<pb::TraceChunk> = by_trace(&spans).into_iter().map(chunk).collect();
        assert_eq!(chunks.len(), 2);
        let enc = IntakeTraces {
            url: "http://x/api/v0.2/traces".into(),
            api_key: "k".into(),
            env: "prod".into(),
            app_version: String::new(),
            runtime_id: "r".into(),
        };
        let req = enc.encode(&chunks).unwrap();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&req.body[..]), &mut raw)
            .unwrap();
        let p = pb::AgentPayload::decode(&raw[..]).unwrap();
        let c = &p.tracer_payloads[0].chunks;
        assert_eq!(c[0].spans.len(), 2);
        assert_eq!(c[0].priority, 1);
        assert_eq!(c[1].spans[0].trace_id, 2);
        assert_eq!(req.headers["dd-api-key"], "k");
    }
}
