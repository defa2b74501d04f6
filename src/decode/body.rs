//! Request body → records → events, in two parts.
//!
//! Before the answer, only what decides the answer runs ([`precheck`]):
//! the body's gunzip, the envelope parse, the decoded-size budget (read from
//! each record's gzip trailer, not by inflating it) and the records up to the
//! first readable one (so a request of nothing but bad records is still
//! refused with 400). The bulk of the work, inflating and parsing every
//! record, runs after the 200 in the decode workers, from the write-ahead
//! log's copy of the request: a 5 MiB request is answered in milliseconds
//! instead of the ~150 ms its decoding costs on one core.

use super::envelope::FirehoseRequest;
use super::{gzip, DecodeStats, FailureReason, Limits, RequestDecoder};
use crate::events::Event;
use base64::Engine;
use bytes::Bytes;

/// Size limits of a request body and its records.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body, as received and after gunzip. Must stay above the
    /// protocol's 64 MiB: Firehose drops a batch answered 413.
    pub max_body_bytes: usize,
    pub decode: Limits,
}

/// Why a request body is refused as a whole (a bad record alone never is).
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request body is not valid gzip: {0}")]
    Gzip(String),
    #[error("request body is not a Firehose JSON request: {0}")]
    InvalidJson(String),
    #[error("all {records} records are undecodable; first: {first}")]
    AllRecordsInvalid { records: u64, first: String },
    #[error("decoded size of the records is over the request budget of {limit} bytes")]
    DecodeBudget { limit: usize },
}

/// The request body as JSON: gunzipped when it came compressed.
pub fn plain_body(body: Bytes, max_body_bytes: usize) -> Result<Bytes, BodyError> {
    if !gzip::is_gzip(&body) {
        return Ok(body);
    }
    let mut plain = Vec::with_capacity(gzip::isize_hint(&body).min(max_body_bytes));
    gzip::gunzip_capped(&body, max_body_bytes, &mut plain).map_err(|e| match e {
        gzip::GunzipError::TooLarge { cap } => BodyError::TooLarge { limit: cap },
        gzip::GunzipError::Corrupt(m) => BodyError::Gzip(m),
    })?;
    Ok(plain.into())
}

/// Parses the Firehose envelope (borrowing the record texts from `json`).
pub fn parse_envelope(json: &[u8]) -> Result<FirehoseRequest<'_>, BodyError> {
    // serde would also accept a JSON array as a struct; the protocol says object.
    if json.trim_ascii_start().first() != Some(&b'{') {
        return Err(BodyError::InvalidJson("expected a JSON object".into()));
    }
    serde_json::from_slice(json).map_err(|e| BodyError::InvalidJson(e.to_string()))
}

pub struct Decoded {
    pub body_request_id: Option<String>,
    pub events: Vec<Event>,
    pub stats: DecodeStats,
}

/// Decodes a whole request body at once (write-ahead log replay, load
/// generator checks).
pub fn decode_body(body: Bytes, limits: BodyLimits) -> Result<Decoded, BodyError> {
    let plain = plain_body(body, limits.max_body_bytes)?;
    let request = parse_envelope(&plain)?;
    let mut decoder = RequestDecoder::new(limits.decode);
    for record in &request.records {
        decoder.decode_record(&record.data);
        if decoder.stats().failure(FailureReason::RequestBudget) > 0 {
            break;
        }
    }
    let (events, stats) = decoder.finish();
    Ok(Decoded {
        body_request_id: request.request_id.map(|c| c.into_owned()),
        events,
        stats,
    })
}

/// What the answer needs to know about a request, and where its decoding
/// stopped.
#[derive(Debug)]
pub struct Prechecked {
    /// The body as JSON, kept for the decode worker.
    pub plain: Bytes,
    pub body_request_id: Option<String>,
    pub records: usize,
    /// The records before this index are decoded, into `decoder`.
    pub next_record: usize,
    pub decoder: RequestDecoder,
    /// Decoded size promised by the records' gzip trailers (or base64 length).
    pub estimated_decoded_bytes: u64,
}

impl Prechecked {
    /// Nothing is left to decode and nothing was decoded: no work to queue.
    pub fn is_empty(&self) -> bool {
        self.next_record >= self.records && self.decoder.events_len() == 0
    }
}

/// The part of decoding that decides the answer (see the module comment).
pub fn precheck(body: Bytes, limits: BodyLimits) -> Result<Prechecked, BodyError> {
    let plain = plain_body(body, limits.max_body_bytes)?;
    let request = parse_envelope(&plain)?;
    // A record past the per-record limit (or with a corrupt trailer that
    // claims so) is skipped on its own; it uses none of the request budget.
    let per_record = limits.decode.max_record_decoded_bytes as u64;
    let estimated: u64 = request
        .records
        .iter()
        .map(|r| estimated_decoded_size(&r.data))
        .filter(|&n| n <= per_record)
        .sum();
    if estimated > limits.decode.max_request_decoded_bytes as u64 {
        // Accepting part of a batch would silently lose the rest; refusing it
        // lets Firehose retry and finally back it up to S3.
        return Err(BodyError::DecodeBudget {
            limit: limits.decode.max_request_decoded_bytes,
        });
    }
    let mut decoder = RequestDecoder::new(limits.decode);
    let mut next = 0;
    for record in &request.records {
        decoder.decode_record(&record.data);
        next += 1;
        let stats = decoder.stats();
        if stats.failure(FailureReason::RequestBudget) > 0 {
            return Err(BodyError::DecodeBudget {
                limit: limits.decode.max_request_decoded_bytes,
            });
        }
        if stats.bad_records < stats.records {
            break;
        }
    }
    if decoder.stats().all_records_bad() && next == request.records.len() {
        let first = decoder
            .stats()
            .first_failure
            .as_ref()
            .map(|f| f.2.clone())
            .unwrap_or_default();
        return Err(BodyError::AllRecordsInvalid {
            records: decoder.stats().records,
            first,
        });
    }
    let records = request.records.len();
    let body_request_id = request.request_id.map(|c| c.into_owned());
    Ok(Prechecked {
        plain,
        body_request_id,
        records,
        next_record: next,
        decoder,
        estimated_decoded_bytes: estimated,
    })
}

/// Decodes the records of `plain` from `from` on, handing events out in
/// chunks of about `chunk` so a 64 MiB request never sits whole in memory.
pub fn decode_rest(
    plain: &[u8],
    from: usize,
    decoder: &mut RequestDecoder,
    chunk: usize,
    mut out: impl FnMut(Vec<Event>),
) -> Result<(), BodyError> {
    let request = parse_envelope(plain)?;
    for record in request.records.iter().skip(from) {
        decoder.decode_record(&record.data);
        if decoder.events_len() >= chunk {
            out(decoder.take_events());
        }
        if decoder.stats().failure(FailureReason::RequestBudget) > 0 {
            break;
        }
    }
    if decoder.events_len() > 0 {
        out(decoder.take_events());
    }
    Ok(())
}

/// A record's decoded size without decoding it: a gzip member ends with
/// its uncompressed size (mod 2^32), so only the last base64 characters
/// are read. Several members understate it; the decode worker still
/// enforces the budget record by record.
fn estimated_decoded_size(data: &str) -> u64 {
    let data = data.trim_ascii();
    let b64 = data.trim_end_matches('=').as_bytes();
    let plain_len = (b64.len() as u64 * 3) / 4;
    if b64.len() < 24 || b64.iter().any(u8::is_ascii_whitespace) {
        return plain_len;
    }
    let engine = &super::record::BASE64;
    let Ok(head) = engine.decode(&b64[..4]) else {
        return plain_len;
    };
    if !gzip::is_gzip(&head) {
        return plain_len;
    }
    // Decode from a 4-character boundary so the groups line up.
    let start = (b64.len() - 12) / 4 * 4;
    match engine.decode(&b64[start..]) {
        Ok(tail) if tail.len() >= 4 => {
            let t = &tail[tail.len() - 4..];
            u64::from(u32::from_le_bytes([t[0], t[1], t[2], t[3]]))
        }
        _ => plain_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::gzip::gz;

    #[test]
    fn estimate_reads_the_gzip_trailer() {
        for len in [0usize, 1, 2, 3, 100, 4097, 100_003] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let z = gz(&data);
            let padded = base64::engine::general_purpose::STANDARD.encode(&z);
            assert_eq!(estimated_decoded_size(&padded), len as u64, "{len}");
            let bare = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&z);
            assert_eq!(estimated_decoded_size(&bare), len as u64, "{len} unpadded");
        }
        let plain = base64::engine::general_purpose::STANDARD.encode(b"{\"a\":1}".repeat(10));
        assert_eq!(estimated_decoded_size(&plain), 70);
        assert_eq!(estimated_decoded_size("not base64 at all!!!!!!!!!!!!!"), 22);
    }

    #[test]
    fn a_lying_trailer_passes_the_precheck_and_is_held_to_the_budget_after() {
        let limits = BodyLimits {
            max_body_bytes: 1 << 20,
            decode: crate::decode::Limits {
                max_record_decoded_bytes: 1 << 20,
                max_request_decoded_bytes: 500,
            },
        };
        let control = br#"{"messageType":"CONTROL_MESSAGE","logEvents":[]}"#;
        // Two gzip members: the trailer read names only the last, small one.
        let mut liar = gz(&vec![b' '; 5000]);
        liar.extend(gz(b"{}"));
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let body = serde_json::json!({
            "requestId": "r",
            "records": [{"data": b64(control)}, {"data": b64(&liar)}],
        })
        .to_string();
        let mut checked = precheck(Bytes::from(body), limits).expect("trailers say 2 bytes");
        assert_eq!((checked.next_record, checked.records), (1, 2));
        let mut chunks = 0;
        decode_rest(
            &checked.plain.clone(),
            checked.next_record,
            &mut checked.decoder,
            10,
            |_| chunks += 1,
        )
        .unwrap();
        let stats = checked.decoder.stats();
        assert_eq!(stats.failure(FailureReason::RequestBudget), 1);
        assert_eq!(stats.records, 2);
        assert_eq!(chunks, 0);
    }
}
