//! `X-Amz-Firehose-Common-Attributes`: the delivery stream's "Parameters",
//! parsed into the domain type [`StreamParams`].
//!
//! The documented form is `{"commonAttributes": {"k": "v", ...}}`; a flat
//! `{"k": "v"}` object is accepted too. A malformed header is ignored (and
//! counted), never a reason to refuse data. Entries outside the protocol's
//! limits (50 entries, key 1–256 chars, value ≤ 1024 chars, string values)
//! are dropped one by one.

use crate::events::StreamParams;
use serde_json::Value;
use std::collections::BTreeMap;

pub const MAX_ATTRIBUTES: usize = 50;
pub const MAX_KEY_CHARS: usize = 256;
pub const MAX_VALUE_CHARS: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAttributes {
    pub attributes: StreamParams,
    /// Entries dropped for breaking the protocol's limits or types.
    pub dropped: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed X-Amz-Firehose-Common-Attributes: {0}")]
pub struct AttributesError(pub String);

/// Parses the header value into the stream's parameters.
pub fn parse(raw: &[u8]) -> Result<ParsedAttributes, AttributesError> {
    let value: Value = serde_json::from_slice(raw).map_err(|e| AttributesError(e.to_string()))?;
    let Value::Object(mut outer) = value else {
        return Err(AttributesError("not a JSON object".into()));
    };
    let entries = match outer.remove("commonAttributes") {
        Some(Value::Object(inner)) if outer.is_empty() => inner,
        Some(Value::Null) if outer.is_empty() => Default::default(),
        Some(_) if outer.is_empty() => {
            return Err(AttributesError("commonAttributes is not an object".into()))
        }
        Some(v) => {
            // A flat object that merely has a key called commonAttributes.
            outer.insert("commonAttributes".into(), v);
            outer
        }
        None => outer,
    };
    let mut map = BTreeMap::new();
    let mut dropped = 0;
    for (k, v) in entries {
        let v = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                dropped += 1;
                continue;
            }
        };
        let key_len = k.chars().count();
        if map.len() >= MAX_ATTRIBUTES
            || key_len == 0
            || key_len > MAX_KEY_CHARS
            || v.chars().count() > MAX_VALUE_CHARS
        {
            dropped += 1;
            continue;
        }
        map.insert(k, v);
    }
    Ok(ParsedAttributes {
        attributes: StreamParams::from_pairs(map),
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_and_flat() {
        let w = parse(br#"{"commonAttributes":{"service":"pay","env":"prod"}}"#).unwrap();
        assert_eq!(w.attributes.get("service"), Some("pay"));
        assert_eq!(w.attributes.len(), 2);
        let f = parse(br#"{"service":"pay","n":3,"b":true}"#).unwrap();
        assert_eq!(f.attributes.get("n"), Some("3"));
        assert_eq!(f.attributes.get("b"), Some("true"));
        let e = parse(br#"{"commonAttributes":{}}"#).unwrap();
        assert!(e.attributes.is_empty());
    }

    #[test]
    fn malformed_is_an_error() {
        for bad in [&b"{"[..], b"[]", b"\"x\"", br#"{"commonAttributes":"x"}"#] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn limits() {
        let mut inner = serde_json::Map::new();
        for i in 0..60 {
            inner.insert(format!("k{i:02}"), Value::String("v".repeat(1024)));
        }
        inner.insert("long".into(), Value::String("v".repeat(1025)));
        inner.insert("k".repeat(257), Value::String("v".into()));
        inner.insert("obj".into(), serde_json::json!({"a":1}));
        let raw = serde_json::to_vec(&serde_json::json!({ "commonAttributes": inner })).unwrap();
        let p = parse(&raw).unwrap();
        assert_eq!(p.attributes.len(), 50);
        assert_eq!(p.dropped, 13);
    }

    #[test]
    fn reserved_keys_are_not_tags() {
        let p = parse(
            br#"{"commonAttributes":{"region":"mars-1","step_function.execution_arn":"x","Account_Id":"1","team":"core"}}"#,
        )
        .unwrap();
        let tags: Vec<_> = p.attributes.tags().collect();
        assert_eq!(tags, vec![("team", "core")]);
    }
}
