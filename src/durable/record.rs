//! The payload of a WAL record: one Firehose request as received — its body
//! bytes untouched (still gzip'd and base64'd), the request id, arrival
//! time, source ARN and common attributes. Logging the body as received
//! costs one sequential write of bytes we already hold; decoded events
//! would be 5–10× larger (the records are gzip'd CloudWatch envelopes) and
//! cost an encoding pass on the hot path. Replay decodes them again with
//! the same code as the endpoint.
//!
//! Layout: `version u8 | kind u8 | received_at i64 | request_id (u16 len) |
//! source_arn (u16 len, 0 = none) | attributes JSON (u32 len) | body (u32 len)`.

use std::borrow::Cow;

const VERSION: u8 = 1;
const KIND_REQUEST: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord<'a> {
    pub request_id: Cow<'a, str>,
    pub received_at_ms: i64,
    pub source_arn: Option<Cow<'a, str>>,
    /// Common attributes as `[[key, value], ...]` JSON.
    pub attributes: Cow<'a, [u8]>,
    pub body: Cow<'a, [u8]>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unreadable WAL record: {0}")]
pub struct RecordError(&'static str);

fn put_bytes(out: &mut Vec<u8>, b: &[u8], wide: bool) {
    if wide {
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(b.len().min(u16::MAX as usize) as u16).to_le_bytes());
    }
    out.extend_from_slice(b);
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self.at.checked_add(n).ok_or(RecordError("length"))?;
        let s = self
            .data
            .get(self.at..end)
            .ok_or(RecordError("truncated"))?;
        self.at = end;
        Ok(s)
    }
    fn bytes(&mut self, wide: bool) -> Result<&'a [u8], RecordError> {
        let n = if wide {
            u32::from_le_bytes(self.take(4)?.try_into().unwrap()) as usize
        } else {
            u16::from_le_bytes(self.take(2)?.try_into().unwrap()) as usize
        };
        self.take(n)
    }
}

impl<'a> RequestRecord<'a> {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.encode_head();
        out.extend_from_slice(&self.body);
        out
    }

    /// Everything but the body's bytes (which come last): the WAL writes
    /// the body from the request's own buffer.
    pub fn encode_head(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.attributes.len() + 128);
        out.push(VERSION);
        out.push(KIND_REQUEST);
        out.extend_from_slice(&self.received_at_ms.to_le_bytes());
        // Request ids are short (a UUID); a u16 length is plenty.
        put_bytes(&mut out, self.request_id.as_bytes(), false);
        put_bytes(
            &mut out,
            self.source_arn.as_deref().unwrap_or("").as_bytes(),
            false,
        );
        put_bytes(&mut out, &self.attributes, true);
        out.extend_from_slice(&(self.body.len() as u32).to_le_bytes());
        out
    }

    pub fn decode(data: &'a [u8]) -> Result<Self, RecordError> {
        let mut r = Reader { data, at: 0 };
        if r.take(1)?[0] != VERSION {
            return Err(RecordError("version"));
        }
        if r.take(1)?[0] != KIND_REQUEST {
            return Err(RecordError("kind"));
        }
        let received_at_ms = i64::from_le_bytes(r.take(8)?.try_into().unwrap());
        let text = |b: &'a [u8]| std::str::from_utf8(b).map_err(|_| RecordError("utf-8"));
        let request_id = Cow::Borrowed(text(r.bytes(false)?)?);
        let arn = text(r.bytes(false)?)?;
        let attributes = Cow::Borrowed(r.bytes(true)?);
        let body = Cow::Borrowed(r.bytes(true)?);
        Ok(Self {
            request_id,
            received_at_ms,
            source_arn: (!arn.is_empty()).then_some(Cow::Borrowed(arn)),
            attributes,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_truncation() {
        let r = RequestRecord {
            request_id: "abc-123".into(),
            received_at_ms: 1_700_000_000_123,
            source_arn: Some("arn:aws:firehose:eu-west-1:1:deliverystream/s".into()),
            attributes: br#"[["service","x"]]"#.as_slice().into(),
            body: vec![1u8, 2, 3, 0, 255].into(),
        };
        let bytes = r.encode();
        assert_eq!(RequestRecord::decode(&bytes).unwrap(), r);
        for cut in 0..bytes.len() {
            assert!(RequestRecord::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let none = RequestRecord {
            source_arn: None,
            ..r.clone()
        };
        assert_eq!(RequestRecord::decode(&none.encode()).unwrap(), none);
    }
}
