//! Span chunks, written and read back (pure, shared by the backends). A
//! chunk is one execution's spans from one write batch:
//!
//! `{"meta":{shared tags},"spans":[spans without them],"whole":[spans]}`
//!
//! The tags every span of an execution carries with the same value (its
//! ARN, name, state machine, account, region: ~350 bytes a span) are
//! written once per chunk, not per span; a span whose values differ is
//! kept whole. That was a third of the bytes the store wrote, and writing
//! them was most of its cost (BENCHMARKS.md). The text is stored
//! compressed (`pack`: LZ4, ~4× smaller, for less than writing the bytes
//! saved costs). Chunks of the first format (a plain JSON array of whole
//! spans, as text) are still read. A span written
//! again (a replay after a restart) appears in two chunks and is read once.

use super::model::StateSpan;
use crate::stitch::span::Span;
use crate::stitch::tags::{Meta, Metrics};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;
use smol_str::SmolStr;
use std::borrow::Cow;
use std::collections::HashSet;

/// Tags written once per chunk when the first span has them.
const SHARED: [&str; 9] = [
    "account_id",
    "env",
    "region",
    "step_function.execution_arn",
    "step_function.execution_name",
    "step_function.state_machine_arn",
    "step_function.state_machine_name",
    "trace_type",
    "version",
];

/// One chunk being written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChunkWriter {
    /// From the first span: the shared tags it has, in key order.
    shared: Vec<(SmolStr, SmolStr)>,
    spans: Vec<u8>,
    whole: Vec<u8>,
}

/// A span as the jsonl line has it, less the shared tags (same fields in
/// the same order as `Span`'s derive; a test holds them together).
#[derive(serde::Serialize)]
struct Compact<'a> {
    trace_id: u64,
    span_id: u64,
    parent_id: u64,
    name: &'a str,
    resource: &'a str,
    service: &'a str,
    #[serde(rename = "type")]
    span_type: &'a str,
    start: i64,
    duration: i64,
    error: i32,
    meta: Unshared<'a>,
    metrics: &'a Metrics,
}

struct Unshared<'a>(&'a Meta);

impl Serialize for Unshared<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (k, v) in self.0 {
            if !SHARED.contains(&k) {
                m.serialize_entry(k, v)?;
            }
        }
        m.end()
    }
}

fn push_json(buf: &mut Vec<u8>, v: &impl Serialize) {
    if !buf.is_empty() {
        buf.push(b',');
    }
    // Spans hold strings and numbers only: serialising cannot fail.
    let _ = serde_json::to_writer(&mut *buf, v);
}

impl ChunkWriter {
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty() && self.whole.is_empty()
    }

    /// Bytes held (the size bound counts them).
    pub fn len(&self) -> usize {
        self.spans.len() + self.whole.len()
    }

    pub fn push(&mut self, s: &Span) {
        if self.is_empty() {
            self.shared = s
                .meta
                .iter()
                .filter(|(k, _)| SHARED.contains(k))
                .map(|(k, v)| (SmolStr::new(k), v.clone()))
                .collect();
        }
        let present = s.meta.iter().filter(|(k, _)| SHARED.contains(k)).count();
        let same = present == self.shared.len()
            && self
                .shared
                .iter()
                .all(|(k, v)| s.meta.get(k).is_some_and(|x| x == v));
        if same {
            push_json(
                &mut self.spans,
                &Compact {
                    trace_id: s.trace_id,
                    span_id: s.span_id,
                    parent_id: s.parent_id,
                    name: s.name,
                    resource: &s.resource,
                    service: &s.service,
                    span_type: s.span_type,
                    start: s.start,
                    duration: s.duration,
                    error: s.error,
                    meta: Unshared(&s.meta),
                    metrics: &s.metrics,
                },
            );
        } else {
            push_json(&mut self.whole, s);
        }
    }

    /// Whole spans' JSON as given (tests, and spans from elsewhere).
    pub fn push_raw(&mut self, json: &str) {
        if !self.whole.is_empty() {
            self.whole.push(b',');
        }
        self.whole.extend_from_slice(json.as_bytes());
    }

    /// The chunk's text.
    pub fn finish(&self) -> String {
        let mut out = Vec::with_capacity(self.len() + 512);
        out.extend_from_slice(b"{\"meta\":");
        let shared: Meta = self.shared.iter().cloned().collect();
        let _ = serde_json::to_writer(&mut out, &shared);
        out.extend_from_slice(b",\"spans\":[");
        out.extend_from_slice(&self.spans);
        out.extend_from_slice(b"],\"whole\":[");
        out.extend_from_slice(&self.whole);
        out.extend_from_slice(b"]}");
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A chunk as stored: LZ4 block, its length first.
pub fn pack(text: &str) -> Vec<u8> {
    lz4_flex::compress_prepend_size(text.as_bytes())
}

/// A stored chunk's text; None if damaged. The length it claims is
/// checked first so a damaged row cannot ask for gigabytes.
pub fn unpack(bytes: &[u8]) -> Option<String> {
    const MAX: usize = 256 << 20;
    let claimed = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    if claimed > MAX {
        return None;
    }
    String::from_utf8(lz4_flex::decompress_size_prepended(bytes).ok()?).ok()
}

#[derive(serde::Deserialize)]
struct Stored<'a> {
    #[serde(borrow)]
    meta: &'a RawValue,
    #[serde(borrow)]
    spans: Vec<&'a RawValue>,
    #[serde(borrow)]
    whole: Vec<&'a RawValue>,
}

/// A chunk's spans: (JSON without the shared tags, or whole; the shared
/// tags' JSON object to put back, when without). A chunk that does not
/// parse has none: it cannot happen short of a damaged database, and one
/// execution must not break a page.
fn split(chunk: &str) -> (Vec<&RawValue>, Vec<&RawValue>, Option<&RawValue>) {
    if chunk.starts_with('[') {
        return (
            vec![],
            serde_json::from_str(chunk).unwrap_or_default(),
            None,
        );
    }
    match serde_json::from_str::<Stored>(chunk) {
        Ok(c) => (c.spans, c.whole, Some(c.meta)),
        Err(_) => (vec![], vec![], None),
    }
}

/// A chunk's shared tags, parsed once for all its spans.
fn shared_tags(shared: Option<&RawValue>) -> Option<serde_json::Map<String, serde_json::Value>> {
    serde_json::from_str(shared?.get()).ok()
}

/// A span without the shared tags made whole again.
fn restore<'a>(
    span: &'a RawValue,
    tags: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Cow<'a, str> {
    let Some(tags) = tags else {
        return Cow::Borrowed(span.get());
    };
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(span.get()) else {
        return Cow::Borrowed(span.get());
    };
    if let Some(serde_json::Value::Object(meta)) = v.get_mut("meta") {
        meta.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Cow::Owned(v.to_string())
}

#[derive(serde::Deserialize)]
struct SpanKey {
    span_id: u64,
    start: i64,
}

/// One execution's spans from its chunks, each once, by start then id.
pub fn merge_spans<I: IntoIterator<Item = String>>(chunks: I) -> Vec<String> {
    let mut spans: Vec<(i64, u64, String)> = Vec::new();
    let mut seen = HashSet::new();
    for chunk in chunks {
        let (compact, whole, shared) = split(&chunk);
        let tags = shared_tags(shared);
        let all = compact
            .into_iter()
            .map(|s| (s, tags.as_ref()))
            .chain(whole.into_iter().map(|s| (s, None)));
        for (raw, tags) in all {
            let Ok(k) = serde_json::from_str::<SpanKey>(raw.get()) else {
                continue;
            };
            if seen.insert(k.span_id) {
                spans.push((k.start, k.span_id, restore(raw, tags).into_owned()));
            }
        }
    }
    spans.sort_unstable_by_key(|s| (s.0, s.1));
    spans.into_iter().map(|s| s.2).collect()
}

/// State spans from (execution ARN, chunk) rows, each span once.
#[derive(Default)]
pub struct StateSpans {
    seen: HashSet<(String, u64)>,
    pub out: Vec<StateSpan>,
}

impl StateSpans {
    /// The map reads no shared tag: spans are not made whole for it.
    pub fn add(&mut self, arn: &str, chunk: &str) {
        let (compact, whole, _) = split(chunk);
        for raw in compact.into_iter().chain(whole) {
            if let Some(s) = StateSpan::from_json(arn, raw.get()) {
                if self.seen.insert((arn.to_owned(), s.span_id)) {
                    self.out.push(s);
                }
            }
        }
    }
}

/// A stable key for a log event (replays write the same row again).
pub fn log_key(message: &str) -> i64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(message.as_bytes());
    i64::from_le_bytes(d[..8].try_into().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stitch::span::op;

    fn span(id: u64, arn: &str, extra: &[(&'static str, &str)]) -> Span {
        let mut meta: Meta = [
            ("account_id", "123456789012"),
            ("region", "eu-west-1"),
            ("step_function.execution_arn", arn),
            ("step_function.execution_name", "run-1"),
            (
                "step_function.state_machine_arn",
                "arn:aws:states:eu-west-1:123456789012:stateMachine:M",
            ),
            ("step_function.state_machine_name", "M"),
            ("step_function.input", "{\"x\":\"\\u0000 é\"}"),
            ("trace_type", "stepfunctions"),
        ]
        .into_iter()
        .collect();
        for (k, v) in extra {
            meta.insert(*k, *v);
        }
        Span {
            trace_id: u64::MAX,
            trace_id_high: 7,
            span_id: id,
            parent_id: id.saturating_sub(1),
            name: op::STATE,
            resource: "A".into(),
            service: "M".into(),
            span_type: "serverless",
            start: 1_700_000_000_000_000_000 + id as i64,
            duration: 5,
            error: 1,
            meta,
            metrics: [("step_function.retry_count", 2.0)].into_iter().collect(),
        }
    }

    /// Written compactly and read back, every span is exactly the jsonl
    /// exporter's (this also holds `Compact` to `Span`'s fields).
    #[test]
    fn spans_come_back_whole_and_equal_to_the_jsonl_ones() {
        let arn = "arn:aws:states:eu-west-1:123456789012:execution:M:run-1";
        let spans = [
            span(1, arn, &[("_dd.p.tid", "abc")]),
            span(2, arn, &[("step_function.state_type", "Task")]),
            // Differs in a shared tag, lacks one: kept whole.
            span(3, arn, &[("region", "us-east-1")]),
            {
                let mut s = span(4, arn, &[]);
                s.meta.remove("account_id");
                s
            },
        ];
        let mut w = ChunkWriter::default();
        for s in &spans {
            w.push(s);
        }
        let text = unpack(&pack(&w.finish())).unwrap();
        assert!(unpack(&[0xff, 0xff, 0xff, 0x7f, 1, 2]).is_none());
        assert!(unpack(b"{").is_none());
        // Once shared, then in each of the two whole spans.
        assert_eq!(text.matches("123456789012:execution").count(), 3, "{text}");
        let back = merge_spans([text]);
        assert_eq!(back.len(), spans.len());
        for (got, want) in back.iter().zip(&spans) {
            let got: serde_json::Value = serde_json::from_str(got).unwrap();
            assert_eq!(got, serde_json::to_value(want).unwrap());
        }
        let mut state = StateSpans::default();
        state.add(arn, &w.finish());
        assert_eq!(state.out.len(), 4);
        assert_eq!(state.out[1].state_type.as_deref(), Some("Task"));
    }

    #[test]
    fn spans_repeated_across_chunks_are_read_once_in_start_order() {
        let a = r#"[{"span_id":2,"start":5},{"span_id":1,"start":9}]"#;
        let b = r#"[{"span_id":1,"start":9},{"span_id":3,"start":1}]"#;
        let got = merge_spans([a.to_owned(), b.to_owned(), "not json".to_owned()]);
        assert_eq!(
            got,
            vec![
                r#"{"span_id":3,"start":1}"#,
                r#"{"span_id":2,"start":5}"#,
                r#"{"span_id":1,"start":9}"#
            ]
        );
    }
}
