//! Stored span chunks back into spans (pure, shared by the backends): a
//! chunk is one JSON array of spans written in one batch; a span written
//! again (a replay after a restart) appears in two chunks and is read once.

use super::model::StateSpan;
use serde_json::value::RawValue;
use std::collections::HashSet;

/// A chunk's spans (a chunk that does not parse, none: it cannot happen
/// short of a damaged database, and one execution must not break a page).
fn split(chunk: &str) -> Vec<&RawValue> {
    serde_json::from_str(chunk).unwrap_or_default()
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
        for raw in split(&chunk) {
            let Ok(k) = serde_json::from_str::<SpanKey>(raw.get()) else {
                continue;
            };
            if seen.insert(k.span_id) {
                spans.push((k.start, k.span_id, raw.get().to_owned()));
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
    pub fn add(&mut self, arn: &str, chunk: &str) {
        for raw in split(chunk) {
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
