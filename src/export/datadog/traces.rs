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
        .insert("_sampling_priority_v1", PRIORITY_AUTO_KEEP as f64);
    if s.name == op::STATE {
        s.metrics.insert("_dd.measured", 1.0);
    }
    match mode {
        Mode::Agentless => {
            s.meta.insert("_dd.compute_stats", "1");
            if is_service_entry(&s) {
                s.metrics.insert("_top_level", 1.0);
            }
        }
        Mode::Agent => {
            if is_service_entry(&s) {
                s.metrics.insert("_dd.top_level", 1.0);
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
        service: s.service.into(),
        name: s.name.to_owned(),
        resource: s.resource.into(),
        trace_id: s.trace_id,
        span_id: s.span_id,
        parent_id: s.parent_id,
        start: s.start,
        duration: s.duration,
        error: s.error,
        meta: s
            .meta
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        metrics: s.metrics.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        r#type: s.span_type.to_owned(),
        ..Default::default()
    }
}

/// The reference form of a chunk (prost types); the exporter sends
/// [`encoded_chunk`], which must decode equal to it (tested).
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

/// One trace chunk as protobuf `TraceChunk` bytes, encoded once when the
/// spans are handed to the exporter. Encoding by hand from the span (no
/// clone, no `HashMap` per span, no repeated `encoded_len` walks over
/// nested messages, no copy of the batch at send time) made agentless
/// encoding ~4x cheaper (BENCHMARKS.md).
///
/// The bytes are the chunk as a whole `TracerPayload.chunks` field (key and
/// length first), so a request is the payload's head and then the chunks
/// streamed into gzip as they are: no copy into a tracer payload and again
/// into an agent payload (two copies of every batch were 3 % of the server's
/// main thread).
#[derive(Debug, Clone)]
pub struct EncodedChunk {
    bytes: Vec<u8>,
    /// Where the field starts: room for its key and length is reserved in
    /// front and filled once the chunk's length is known.
    start: usize,
}

/// Key (one byte) and length (a varint of at most 5 bytes for a `u32`).
const FIELD_PREFIX_ROOM: usize = 6;

impl EncodedChunk {
    /// The `TracerPayload.chunks` field: key, length, `TraceChunk` message.
    fn field(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    /// The `TraceChunk` message alone.
    #[cfg(test)]
    fn message(&self) -> &[u8] {
        &self.bytes[FIELD_PREFIX_ROOM..]
    }
}

mod wire {
    //! Field numbers of datadog-agent's `pb` messages (libdd-trace-protobuf).
    pub const CHUNK_PRIORITY: u32 = 1;
    pub const CHUNK_SPANS: u32 = 3;
    pub const SPAN_SERVICE: u32 = 1;
    pub const SPAN_NAME: u32 = 2;
    pub const SPAN_RESOURCE: u32 = 3;
    pub const SPAN_TRACE_ID: u32 = 4;
    pub const SPAN_SPAN_ID: u32 = 5;
    pub const SPAN_PARENT_ID: u32 = 6;
    pub const SPAN_START: u32 = 7;
    pub const SPAN_DURATION: u32 = 8;
    pub const SPAN_ERROR: u32 = 9;
    pub const SPAN_META: u32 = 10;
    pub const SPAN_METRICS: u32 = 11;
    pub const SPAN_TYPE: u32 = 12;
    pub const TRACER_PAYLOAD_CHUNKS: u32 = 6;
    pub const AGENT_PAYLOAD_TRACER_PAYLOADS: u32 = 5;
}

fn put_len_delimited(tag: u32, body: &[u8], buf: &mut Vec<u8>) {
    use prost::encoding::{encode_key, encode_varint, WireType};
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(body.len() as u64, buf);
    buf.extend_from_slice(body);
}

/// One `meta` map entry (a small message: key = 1, value = 2).
fn put_meta(k: &str, v: &str, buf: &mut Vec<u8>) {
    use prost::encoding::{encode_key, encode_varint, WireType};
    encode_key(wire::SPAN_META, WireType::LengthDelimited, buf);
    encode_varint((key_len(k) + key_len(v)) as u64, buf);
    put_str(1, k, buf);
    put_str(2, v, buf);
}

/// Bytes of a string field with its key (always written, even when empty:
/// map entries are small messages and decode the same either way).
fn key_len(v: &str) -> usize {
    1 + prost::encoding::encoded_len_varint(v.len() as u64) + v.len()
}

fn put_str(tag: u32, v: &str, buf: &mut Vec<u8>) {
    use prost::encoding::{encode_key, encode_varint, WireType};
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(v.len() as u64, buf);
    buf.extend_from_slice(v.as_bytes());
}

/// One `metrics` map entry (key = 1, value = 2 as a 64-bit double).
fn put_metric(k: &str, v: f64, buf: &mut Vec<u8>) {
    use prost::encoding::{encode_key, encode_varint, WireType};
    encode_key(wire::SPAN_METRICS, WireType::LengthDelimited, buf);
    encode_varint((key_len(k) + 9) as u64, buf);
    put_str(1, k, buf);
    encode_key(2, WireType::SixtyFourBit, buf);
    buf.extend_from_slice(&v.to_le_bytes());
}

/// A dressed (agentless) span's `pb.Span` fields, straight from the span.
fn put_span(s: &Span, buf: &mut Vec<u8>) {
    use prost::encoding::{int32, int64, uint64};
    let nonempty = |tag, v: &str, buf: &mut Vec<u8>| {
        if !v.is_empty() {
            put_str(tag, v, buf)
        }
    };
    nonempty(wire::SPAN_SERVICE, &s.service, buf);
    nonempty(wire::SPAN_NAME, s.name, buf);
    nonempty(wire::SPAN_RESOURCE, &s.resource, buf);
    uint64::encode(wire::SPAN_TRACE_ID, &s.trace_id, buf);
    uint64::encode(wire::SPAN_SPAN_ID, &s.span_id, buf);
    if s.parent_id != 0 {
        uint64::encode(wire::SPAN_PARENT_ID, &s.parent_id, buf);
    }
    int64::encode(wire::SPAN_START, &s.start, buf);
    int64::encode(wire::SPAN_DURATION, &s.duration, buf);
    if s.error != 0 {
        int32::encode(wire::SPAN_ERROR, &s.error, buf);
    }
    // The dressing of `dress(.., Mode::Agentless)`, without cloning the span:
    // its keys replace the span's own.
    const COMPUTE_STATS: &str = "_dd.compute_stats";
    for (k, v) in &s.meta {
        if k != COMPUTE_STATS {
            put_meta(k, v, buf);
        }
    }
    put_meta(COMPUTE_STATS, "1", buf);
    let measured = s.name == op::STATE;
    let top_level = is_service_entry(s);
    let dressed = |k: &str| {
        k == "_sampling_priority_v1"
            || (measured && k == "_dd.measured")
            || (top_level && k == "_top_level")
    };
    for (k, v) in &s.metrics {
        if !dressed(k) {
            put_metric(k, *v, buf);
        }
    }
    put_metric("_sampling_priority_v1", PRIORITY_AUTO_KEEP as f64, buf);
    if measured {
        put_metric("_dd.measured", 1.0, buf);
    }
    if top_level {
        put_metric("_top_level", 1.0, buf);
    }
    nonempty(wire::SPAN_TYPE, s.span_type, buf);
}

/// One trace's spans as an encoded `TraceChunk` (priority auto keep).
pub fn encoded_chunk(spans: Vec<&Span>) -> EncodedChunk {
    use prost::encoding::{encode_key, encode_varint, WireType};
    let n = spans.len();
    let mut bytes = Vec::with_capacity(FIELD_PREFIX_ROOM + 3 + n * 640);
    bytes.resize(FIELD_PREFIX_ROOM, 0);
    prost::encoding::int32::encode(wire::CHUNK_PRIORITY, &PRIORITY_AUTO_KEEP, &mut bytes);
    let mut scratch = Vec::with_capacity(1024);
    for (i, s) in spans.into_iter().enumerate() {
        scratch.clear();
        put_span(s, &mut scratch);
        if i == 0 {
            // Spans of one execution are alike in size (captured payloads
            // make them ~1 KiB, not the guess above): one growth at most.
            bytes.reserve((scratch.len() + 4) * n);
        }
        put_len_delimited(wire::CHUNK_SPANS, &scratch, &mut bytes);
    }
    let mut prefix = Vec::with_capacity(FIELD_PREFIX_ROOM);
    encode_key(
        wire::TRACER_PAYLOAD_CHUNKS,
        WireType::LengthDelimited,
        &mut prefix,
    );
    encode_varint((bytes.len() - FIELD_PREFIX_ROOM) as u64, &mut prefix);
    let start = FIELD_PREFIX_ROOM - prefix.len();
    bytes[start..FIELD_PREFIX_ROOM].copy_from_slice(&prefix);
    EncodedChunk { bytes, start }
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
    type Item = EncodedChunk;

    fn signal(&self) -> &'static str {
        "traces"
    }

    fn size(&self, item: &EncodedChunk) -> usize {
        item.field().len()
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_items: 10_000,
            max_bytes: MAX_TRACE_PAYLOAD_BYTES,
        }
    }

    fn encode(&self, items: &[EncodedChunk]) -> Result<Request, EncodeError> {
        use prost::encoding::{encode_key, encode_varint, WireType};
        // Protobuf fields may come in any order and repeated ones are just
        // repeated: the small fields go through prost, the chunks follow as
        // they are, straight into gzip.
        let tracer_head = pb::TracerPayload {
            language_name: "rust".into(),
            tracer_version: env!("CARGO_PKG_VERSION").into(),
            runtime_id: self.runtime_id.clone(),
            env: self.env.clone(),
            app_version: self.app_version.clone(),
            ..Default::default()
        }
        .encode_to_vec();
        let chunks: usize = items.iter().map(|c| self.size(c)).sum();
        let mut head = pb::AgentPayload {
            env: self.env.clone(),
            agent_version: concat!("stepstitch/", env!("CARGO_PKG_VERSION")).into(),
            target_tps: 10.0,
            error_tps: 10.0,
            ..Default::default()
        }
        .encode_to_vec();
        encode_key(
            wire::AGENT_PAYLOAD_TRACER_PAYLOADS,
            WireType::LengthDelimited,
            &mut head,
        );
        encode_varint((tracer_head.len() + chunks) as u64, &mut head);
        head.extend_from_slice(&tracer_head);
        let parts = std::iter::once(&head[..]).chain(items.iter().map(EncodedChunk::field));
        let body =
            crate::export::compress::gzip_parts(parts, head.len() + chunks).map_err(|e| {
                EncodeError {
                    signal: "traces",
                    reason: e.to_string(),
                }
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

    fn span(trace: u64, id: u64, parent: u64, name: &'static str) -> Span {
        Span {
            trace_id: trace,
            trace_id_high: 0,
            span_id: id,
            parent_id: parent,
            name,
            resource: "r".into(),
            service: "svc".into(),
            span_type: "serverless",
            start: 1,
            duration: 2,
            error: 0,
            meta: Default::default(),
            metrics: Default::default(),
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
        r.meta.insert("redrive", "true");
        assert!(!dress(r, Mode::Agent).metrics.contains_key("_dd.top_level"));
    }

    #[test]
    fn intake_payload_round_trips_through_protobuf_and_gzip() {
        let mut spans = vec![
            span(1, 1, 0, op::EXECUTION),
            span(2, 5, 0, op::EXECUTION),
            span(1, 2, 1, op::STATE),
        ];
        // A chunk over 16 KiB: its length takes three varint bytes of the
        // room reserved in front (the small ones take one).
        spans.extend((10..400).map(|i| span(3, i, 1, op::STATE)));
        let reference: Vec<pb::TraceChunk> = by_trace(&spans).into_iter().map(chunk).collect();
        let chunks: Vec<EncodedChunk> = by_trace(&spans).into_iter().map(encoded_chunk).collect();
        assert_eq!(chunks.len(), 3);
        assert!(chunks[2].message().len() >= 1 << 14);
        assert_eq!(chunks[2].start, FIELD_PREFIX_ROOM - 4);
        for c in &chunks {
            let len = prost::encoding::encoded_len_varint(c.message().len() as u64);
            assert_eq!(c.start, FIELD_PREFIX_ROOM - 1 - len);
        }
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
        assert_eq!(c, &reference);
        assert_eq!(p.tracer_payloads[0].runtime_id, "r");
        assert_eq!(p.env, "prod");
        assert_eq!(c[0].spans.len(), 2);
        assert_eq!(c[0].priority, 1);
        assert_eq!(c[1].spans[0].trace_id, 2);
        assert_eq!(req.headers["dd-api-key"], "k");
    }

    /// The hand encoding decodes to exactly what prost makes of the dressed
    /// span, for real spans (every tag the builder writes) and for spans
    /// that already carry the keys the dressing sets.
    #[test]
    fn hand_encoded_chunks_decode_equal_to_the_reference() {
        use crate::decode::{Limits, RequestDecoder};
        use crate::loadgen::traffic::{execution, record, Shape};
        use crate::stitch::builder::{build_spans, SpanConfig};
        let shape = Shape {
            map_fanout: 3,
            ..Shape::default()
        };
        let mut spans: Vec<Span> = (0..3)
            .flat_map(|n| {
                let lines = execution(&shape, "us-east-1", "123456789012", n, 1_780_000_000_000);
                let mut d = RequestDecoder::new(Limits::default());
                d.decode_record(&record(&lines, "123456789012", 1_780_000_000_000));
                build_spans(&d.finish().0, &SpanConfig::default(), None)
            })
            .collect();
        assert!(spans.len() > 30);
        let mut odd = span(9, 9, 0, op::EXECUTION);
        odd.meta.insert("_dd.compute_stats", "0");
        odd.metrics.insert("_sampling_priority_v1", 2.0);
        odd.metrics.insert("_top_level", 0.0);
        odd.error = 1;
        odd.service = Default::default();
        spans.push(odd);
        for t in by_trace(&spans) {
            let reference = chunk(t.clone());
            let decoded = pb::TraceChunk::decode(encoded_chunk(t).message()).unwrap();
            assert_eq!(decoded, reference);
        }
    }
}
