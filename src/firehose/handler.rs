//! `POST /firehose`: one Firehose delivery request, start to answer.
//!
//! Order matters: cheap refusals first (shutdown, request id, key, load,
//! encoding), then the capped body read, then decoding on a blocking
//! thread (a 64 MiB request is CPU work), then the bounded hand-off. 200 is
//! sent only after the events are in the hand-off.

use super::attributes::CommonAttributes;
use super::auth::{AccessKeys, AuthOutcome};
use super::contract::{contract_response, error_response, header_request_id};
use super::errors::FirehoseError;
use super::models::{headers, FirehoseRequest};
use crate::clock::Clock;
use crate::decode::{self, gzip, DecodeStats, FailureReason, RequestDecoder};
use crate::events::Event;
use crate::lifecycle::Lifecycle;
use crate::pipeline::{EventBatch, Handoff, HandoffError};
use crate::telemetry::{self, names};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Size limits of the ingest endpoint.
#[derive(Debug, Clone, Copy)]
pub struct IngestLimits {
    /// Largest body, as received and after gunzip. Must stay above the
    /// protocol's 64 MiB: Firehose drops a batch answered 413.
    pub max_body_bytes: usize,
    pub decode: decode::Limits,
}

/// Everything the handler needs, shared by all requests.
#[derive(Debug)]
pub struct IngestState {
    pub keys: Arc<AccessKeys>,
    pub limits: IngestLimits,
    /// Concurrent requests past the body read; more get 503 at once.
    pub concurrency: Arc<Semaphore>,
    pub handoff: Handoff,
    pub lifecycle: Arc<Lifecycle>,
    pub clock: Arc<dyn Clock>,
    /// The write-ahead log; `None` only in tests of the protocol alone.
    pub wal: Option<crate::durable::wal::Wal>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Identity,
    Gzip,
}

fn content_encoding(headers: &HeaderMap) -> Result<Encoding, FirehoseError> {
    let Some(v) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let v = String::from_utf8_lossy(v.as_bytes());
    let mut enc = Encoding::Identity;
    for token in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
            if enc == Encoding::Gzip {
                return Err(FirehoseError::UnsupportedEncoding(v.into_owned()));
            }
            enc = Encoding::Gzip;
        } else if !token.eq_ignore_ascii_case("identity") {
            return Err(FirehoseError::UnsupportedEncoding(v.into_owned()));
        }
    }
    Ok(enc)
}

/// The handler. Every outcome is a contract response.
pub async fn firehose(
    State(st): State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let now = st.clock.now_ms();
    let request_id = header_request_id(&headers);
    let rid = request_id.as_deref().unwrap_or("");
    match handle(&st, request_id.as_deref(), &headers, body).await {
        Ok(()) => contract_response(StatusCode::OK, rid, st.clock.now_ms(), None),
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(status = e.status().as_u16(), error = %e, "Firehose request refused");
            } else {
                tracing::info!(status = e.status().as_u16(), error = %e, "Firehose request refused");
            }
            error_response(&e, rid, now)
        }
    }
}

async fn handle(
    st: &IngestState,
    request_id: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), FirehoseError> {
    if st.lifecycle.is_shutting_down() {
        return Err(FirehoseError::ShuttingDown);
    }
    if !st.lifecycle.is_ready() {
        return Err(FirehoseError::Recovering);
    }
    let request_id = request_id.ok_or(FirehoseError::MissingRequestId)?;
    match st
        .keys
        .check(headers.get(headers::ACCESS_KEY).map(|v| v.as_bytes()))
    {
        AuthOutcome::Accepted | AuthOutcome::Disabled => {}
        AuthOutcome::Missing => return Err(FirehoseError::MissingAccessKey),
        AuthOutcome::Invalid => return Err(FirehoseError::InvalidAccessKey),
    }
    let _permit = st
        .concurrency
        .clone()
        .try_acquire_owned()
        .map_err(|_| FirehoseError::Overloaded)?;
    if let Some(v) = headers.get(headers::PROTOCOL_VERSION) {
        if v.as_bytes() != b"1.0" {
            metrics::counter!(names::PROTOCOL_VERSION_UNEXPECTED).increment(1);
            tracing::warn!(version = %String::from_utf8_lossy(v.as_bytes()), "unexpected Firehose protocol version; decoding as 1.0");
        }
    }
    let encoding = content_encoding(headers)?;
    let attributes = parse_attributes(headers);
    let source_arn = headers
        .get(headers::SOURCE_ARN)
        .and_then(|v| v.to_str().ok())
        .map(Arc::<str>::from);

    let max = st.limits.max_body_bytes;
    let body = read_capped(body, max).await?;
    let wire_encoding = if encoding == Encoding::Gzip || gzip::is_gzip(&body) {
        "gzip"
    } else {
        "identity"
    };
    metrics::counter!(names::FIREHOSE_BYTES_RECEIVED, "encoding" => wire_encoding)
        .increment(body.len() as u64);

    let limits = st.limits;
    let raw = body.clone();
    let decoded = tokio::task::spawn_blocking(move || decode_body(body, limits))
        .await
        .map_err(|e| FirehoseError::Internal(format!("decoder task failed: {e}")))??;
    let Decoded {
        body_request_id,
        events,
        stats,
    } = decoded;
    telemetry::record_decode_stats(&stats);

    if let Some(body_id) = body_request_id.as_deref() {
        if body_id != request_id {
            metrics::counter!(names::REQUEST_ID_MISMATCH).increment(1);
            tracing::warn!(body_request_id = %body_id, "body requestId differs from the header; answering with the header's");
        }
    }
    if stats.failure(FailureReason::RequestBudget) > 0 {
        // Accepting part of a batch would silently lose the rest; refusing it
        // lets Firehose retry and finally back it up to S3.
        return Err(FirehoseError::DecodeBudget {
            limit: limits.decode.max_request_decoded_bytes,
        });
    }
    if stats.all_records_bad() {
        let first = stats
            .first_failure
            .as_ref()
            .map(|f| f.2.clone())
            .unwrap_or_default();
        return Err(FirehoseError::AllRecordsInvalid {
            records: stats.records,
            first,
        });
    }
    log_skipped(&stats);

    let n_events = events.len();
    if !events.is_empty() {
        let received_at = st.clock.now_ms();
        // Durable before the 200: the body as received goes to the log.
        let pin = match &st.wal {
            Some(wal) => {
                let record = crate::durable::record::RequestRecord {
                    request_id: request_id.into(),
                    received_at_ms: received_at,
                    source_arn: source_arn.as_deref().map(Into::into),
                    attributes: serde_json::to_vec(&attributes.pairs().collect::<Vec<_>>())
                        .unwrap_or_default()
                        .into(),
                    body: raw.as_ref().into(),
                };
                match wal.append(record.encode()).await {
                    Ok(pin) => Some(pin),
                    Err(e) => {
                        metrics::counter!(names::WAL_REFUSED, "reason" => e.reason()).increment(1);
                        return Err(e.into());
                    }
                }
            }
            None => None,
        };
        let mut batch = EventBatch::new(
            Arc::from(request_id),
            source_arn,
            received_at,
            Arc::new(attributes),
            events,
        );
        batch.pin = pin;
        st.handoff.submit(batch).await.map_err(|e| match e {
            HandoffError::Full => FirehoseError::QueueFull,
            HandoffError::Closed => FirehoseError::ShuttingDown,
        })?;
    }
    tracing::info!(
        records = stats.records,
        events = n_events,
        skipped = stats.total_failures(),
        control_messages = stats.control_messages,
        decoded_bytes = stats.decoded_bytes,
        "Firehose request accepted"
    );
    Ok(())
}

fn parse_attributes(headers: &HeaderMap) -> CommonAttributes {
    let Some(raw) = headers.get(headers::COMMON_ATTRIBUTES) else {
        return CommonAttributes::default();
    };
    match CommonAttributes::parse(raw.as_bytes()) {
        Ok(parsed) => {
            if parsed.dropped > 0 {
                metrics::counter!(names::COMMON_ATTRIBUTES_DROPPED)
                    .increment(parsed.dropped as u64);
                tracing::warn!(
                    dropped = parsed.dropped,
                    "common attributes over the protocol limits were dropped"
                );
            }
            parsed.attributes
        }
        Err(e) => {
            metrics::counter!(names::COMMON_ATTRIBUTES_INVALID).increment(1);
            tracing::warn!(error = %e, "ignoring common attributes");
            CommonAttributes::default()
        }
    }
}

fn log_skipped(stats: &DecodeStats) {
    if let Some((index, reason, message)) = &stats.first_failure {
        tracing::warn!(
            skipped = stats.total_failures(),
            first_record = index,
            first_reason = reason.label(),
            first_error = %message,
            "skipped undecodable records or log messages"
        );
    }
}

fn is_length_limit(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Reads the body, refusing it as soon as it passes `max` bytes.
async fn read_capped(body: Body, max: usize) -> Result<Bytes, FirehoseError> {
    match http_body_util::Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if is_length_limit(e.as_ref()) => Err(FirehoseError::BodyTooLarge { limit: max }),
        Err(e) => Err(FirehoseError::BodyRead(e.to_string())),
    }
}

pub struct Decoded {
    pub body_request_id: Option<String>,
    pub events: Vec<Event>,
    pub stats: DecodeStats,
}

/// Gunzip (when compressed), parse, decode every record. Runs on a blocking thread.
/// Decodes a request body (also used to replay the write-ahead log).
pub fn decode_body(body: Bytes, limits: IngestLimits) -> Result<Decoded, FirehoseError> {
    let mut plain = Vec::new();
    let json: &[u8] = if gzip::is_gzip(&body) {
        gzip::gunzip_capped(&body, limits.max_body_bytes, &mut plain).map_err(|e| match e {
            gzip::GunzipError::TooLarge { cap } => FirehoseError::BodyTooLarge { limit: cap },
            gzip::GunzipError::Corrupt(m) => FirehoseError::BodyGzip(m),
        })?;
        &plain
    } else {
        &body
    };
    // serde would also accept a JSON array as a struct; the protocol says object.
    if json.trim_ascii_start().first() != Some(&b'{') {
        return Err(FirehoseError::InvalidJson("expected a JSON object".into()));
    }
    let request: FirehoseRequest<'_> =
        serde_json::from_slice(json).map_err(|e| FirehoseError::InvalidJson(e.to_string()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        let mut h = HeaderMap::new();
        assert_eq!(content_encoding(&h).unwrap(), Encoding::Identity);
        for ok in ["gzip", "GZIP", "Gzip", "x-gzip", "identity, gzip"] {
            h.insert(header::CONTENT_ENCODING, ok.parse().unwrap());
            assert!(content_encoding(&h).is_ok(), "{ok}");
        }
        for bad in ["br", "deflate", "gzip, gzip", "zstd"] {
            h.insert(header::CONTENT_ENCODING, bad.parse().unwrap());
            assert!(content_encoding(&h).is_err(), "{bad}");
        }
    }
}
