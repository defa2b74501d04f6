//! Small pieces of the OTLP wire format: attribute values, ids, and the
//! protobuf framing the trace encoder writes by hand around spans that
//! were encoded once (with the `opentelemetry-proto` types) when they
//! arrived.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};

pub fn string_value(v: &str) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(v.to_owned())),
    }
}

pub fn double_value(v: f64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::DoubleValue(v)),
    }
}

pub fn kv(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(value),
        ..Default::default()
    }
}

/// `key:value` tags as string attributes (a tag without `:` keeps an
/// empty value, as Datadog reads it).
pub fn tag_attributes(tags: &[String]) -> Vec<KeyValue> {
    tags.iter()
        .map(|t| {
            let (k, v) = t.split_once(':').unwrap_or((t, ""));
            kv(k, string_value(v))
        })
        .collect()
}

/// The 16-byte trace id: the upper half first, big-endian, as W3C and
/// Datadog's OTLP intake read it (its lower 8 bytes are the Datadog id).
pub fn trace_id(high: u64, low: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&high.to_be_bytes());
    b.extend_from_slice(&low.to_be_bytes());
    b
}

/// An 8-byte span id; empty for 0 (no parent).
pub fn span_id(id: u64) -> Vec<u8> {
    if id == 0 {
        Vec::new()
    } else {
        id.to_be_bytes().to_vec()
    }
}

/// Nanoseconds since the epoch as OTLP's unsigned field (times before
/// 1970 cannot occur in a log event; they clamp to 0).
pub fn unix_nanos(ns: i64) -> u64 {
    ns.max(0) as u64
}

/// Length of field `tag` holding `len` bytes of a length-delimited value.
pub fn field_len(tag: u32, len: usize) -> usize {
    prost::encoding::key_len(tag) + encoded_len_varint(len as u64) + len
}

/// Writes the key and length of a length-delimited field; its `len` bytes follow.
pub fn field_head(tag: u32, len: usize, buf: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

/// Appends a `KeyValue` with a string value as field `tag` of the message
/// being written (`KeyValue` = key 1, value 2; `AnyValue.string_value` = 1).
pub fn put_string_attribute(tag: u32, key: &str, value: &str, buf: &mut Vec<u8>) {
    let any = field_len(1, value.len());
    let kv = field_len(1, key.len()) + field_len(2, any);
    field_head(tag, kv, buf);
    field_head(1, key.len(), buf);
    buf.extend_from_slice(key.as_bytes());
    field_head(2, any, buf);
    field_head(1, value.len(), buf);
    buf.extend_from_slice(value.as_bytes());
}

/// The same with a double value (`AnyValue.double_value` = 4, fixed64).
pub fn put_double_attribute(tag: u32, key: &str, value: f64, buf: &mut Vec<u8>) {
    let any = prost::encoding::key_len(4) + 8;
    let kv = field_len(1, key.len()) + field_len(2, any);
    field_head(tag, kv, buf);
    field_head(1, key.len(), buf);
    buf.extend_from_slice(key.as_bytes());
    field_head(2, any, buf);
    encode_key(4, WireType::SixtyFourBit, buf);
    buf.extend_from_slice(&value.to_le_bytes());
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// A readable message from an error answer: `Status.message` when the body
/// is a protobuf `Status`, else the body as text.
pub fn error_message(body: &str) -> String {
    use prost::Message;
    match Status::decode(body.as_bytes()) {
        Ok(s) if !s.message.is_empty() => s.message,
        _ => body.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn ids_are_big_endian_with_the_upper_half_first() {
        let t = trace_id(0x66bc_b5eb_0000_0000, 1_234_567_890);
        assert_eq!(t.len(), 16);
        assert_eq!(&t[..8], &[0x66, 0xbc, 0xb5, 0xeb, 0, 0, 0, 0]);
        assert_eq!(
            u64::from_be_bytes(t[8..].try_into().unwrap()),
            1_234_567_890
        );
        assert!(span_id(0).is_empty());
        assert_eq!(span_id(7), vec![0, 0, 0, 0, 0, 0, 0, 7]);
    }

    #[test]
    fn hand_written_attributes_decode_as_the_typed_ones() {
        #[derive(Clone, PartialEq, prost::Message)]
        struct Holder {
            #[prost(message, repeated, tag = "9")]
            attributes: Vec<KeyValue>,
        }
        let mut buf = Vec::new();
        let long = "x".repeat(300);
        put_string_attribute(9, "step_function.input", &long, &mut buf);
        put_string_attribute(9, "", "", &mut buf);
        put_double_attribute(9, "step_function.retry_count", 2.5, &mut buf);
        let want = Holder {
            attributes: vec![
                kv("step_function.input", string_value(&long)),
                kv("", string_value("")),
                kv("step_function.retry_count", double_value(2.5)),
            ],
        };
        assert_eq!(Holder::decode(buf.as_slice()).unwrap(), want);
    }

    #[test]
    fn an_error_answer_reads_as_its_status_message() {
        let body = Status {
            code: 3,
            message: "bad span".into(),
        }
        .encode_to_vec();
        assert_eq!(
            error_message(std::str::from_utf8(&body).unwrap()),
            "bad span"
        );
        assert_eq!(error_message("plain text"), "plain text");
    }
}
