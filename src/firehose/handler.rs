//! `POST /firehose`: one Firehose delivery request, start to answer.
//!
//! Order matters: cheap refusals first (shutdown, request id, key, load,
//! encoding), then the capped body read, then the checks that decide the
//! answer on a blocking thread (`decode::body::precheck`), then room in the
//! decode queue, then the write-ahead log. 200 is sent once the request is
//! durable and queued; its records are decoded after the answer.
//!
//! In cluster mode the records are decoded before the answer instead, and
//! the events published to JetStream by partition (`cluster::publish`):
//! 200 once every message is acknowledged, 503 when one is not.

use super::attributes;
use super::auth::{AccessKeys, AuthOutcome};
use super::contract::{contract_response, error_response, header_request_id};
use super::errors::FirehoseError;
use super::models::headers;
use crate::clock::Clock;
use crate::decode::body::{self, BodyLimits};
use crate::decode::gzip;
use crate::events::StreamParams;
use crate::lifecycle::Lifecycle;
use crate::pipeline::decode_queue::QueueError;
use crate::pipeline::{DecodeJob, DecodeQueue};
use crate::telemetry::names;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Everything the handler needs, shared by all requests.
pub struct IngestState {
    pub keys: Arc<AccessKeys>,
    pub limits: BodyLimits,
    /// Concurrent requests past the body read; more get 503 at once.
    pub concurrency: Arc<Semaphore>,
    /// Accepted requests waiting for a decode worker.
    pub decode_queue: DecodeQueue,
    pub lifecycle: Arc<Lifecycle>,
    pub clock: Arc<dyn Clock>,
    /// The write-ahead log; `None` only in tests of the protocol alone
    /// and in cluster mode.
    pub wal: Option<crate::durable::wal::Wal>,
    /// Cluster mode: requests go to JetStream instead of the log.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// For backfill requests in cluster mode (`pipeline::backfill`).
    pub store: Option<Arc<dyn crate::store::Store>>,
}

impl std::fmt::Debug for IngestState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestState")
            .field("limits", &self.limits)
            .field("cluster", &self.cluster)
            .field("store", &self.store.is_some())
            .finish_non_exhaustive()
    }
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
    let checked = tokio::task::spawn_blocking(move || body::precheck(body, limits))
        .await
        .map_err(|e| FirehoseError::Internal(format!("decoder task failed: {e}")))??;

    if let Some(body_id) = checked.body_request_id.as_deref() {
        if body_id != request_id {
            metrics::counter!(names::REQUEST_ID_MISMATCH).increment(1);
            tracing::warn!(body_request_id = %body_id, "body requestId differs from the header; answering with the header's");
        }
    }
    let records = checked.records;
    if checked.is_empty() {
        // Nothing to keep (no records, or only control messages): no WAL
        // record, no queue room.
        let stats = checked.decoder.stats();
        crate::decode::stats::publish(stats);
        metrics::counter!(names::REQUESTS_DECODED).increment(1);
        tracing::info!(records, events = 0, "Firehose request accepted");
        return Ok(());
    }
    if let Some(cluster) = &st.cluster {
        return publish(st, cluster, request_id, attributes, checked).await;
    }
    // Room first: a refused request leaves nothing in the log.
    let admission = st
        .decode_queue
        .admit(checked.plain.len())
        .await
        .map_err(|e| match e {
            QueueError::Full => FirehoseError::QueueFull,
            QueueError::Closed => FirehoseError::ShuttingDown,
        })?;
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
                body: std::borrow::Cow::Borrowed(&raw),
            };
            let payload = crate::durable::wal::WalPayload {
                head: record.encode_head(),
                body: raw.clone(),
            };
            match wal.append(payload).await {
                Ok(pin) => Some(pin),
                Err(e) => {
                    metrics::counter!(names::WAL_REFUSED, "reason" => e.reason()).increment(1);
                    return Err(e.into());
                }
            }
        }
        None => None,
    };
    admission.send(DecodeJob {
        request_id: Arc::from(request_id),
        source_arn,
        received_at_ms: received_at,
        attributes: Arc::new(attributes),
        plain: checked.plain,
        next_record: checked.next_record,
        records,
        decoder: checked.decoder,
        pin,
    });
    tracing::info!(records, "Firehose request accepted");
    Ok(())
}

/// Cluster mode: every record decoded (on a blocking thread), the events
/// published by partition, all acknowledged before the 200.
async fn publish(
    st: &IngestState,
    cluster: &crate::cluster::Cluster,
    request_id: &str,
    attributes: StreamParams,
    checked: body::Prechecked,
) -> Result<(), FirehoseError> {
    let store = st.store.clone();
    let backfill = crate::pipeline::backfill::is_backfill(&attributes);
    let (events, stats) = tokio::task::spawn_blocking(move || {
        let mut checked = checked;
        let mut events = checked.decoder.take_events();
        if checked.next_record < checked.records {
            // The envelope parsed in the precheck; were this to fail, the
            // events would be lost silently without the line below.
            if let Err(e) = body::decode_rest(
                &checked.plain,
                checked.next_record,
                &mut checked.decoder,
                usize::MAX,
                |mut e| events.append(&mut e),
            ) {
                tracing::error!(error = %e, "decoding an accepted request failed");
            }
        }
        if backfill {
            if let Some(store) = &store {
                crate::pipeline::backfill::drop_stored(&mut events, store.as_ref());
            }
        }
        (events, checked.decoder.stats().clone())
    })
    .await
    .map_err(|e| FirehoseError::Internal(format!("decoder task failed: {e}")))?;
    crate::decode::stats::finish(&stats);
    let started = std::time::Instant::now();
    match cluster.publish(request_id, &attributes, &events).await {
        Ok(p) => {
            metrics::histogram!(names::CLUSTER_PUBLISH_DURATION)
                .record(started.elapsed().as_secs_f64());
            metrics::counter!(names::CLUSTER_PUBLISHED, "outcome" => "stored")
                .increment((p.messages - p.duplicates) as u64);
            metrics::counter!(names::CLUSTER_PUBLISHED, "outcome" => "duplicate")
                .increment(p.duplicates as u64);
            tracing::info!(
                records = stats.records,
                events = events.len(),
                messages = p.messages,
                duplicates = p.duplicates,
                "Firehose request accepted"
            );
            Ok(())
        }
        Err(e) => {
            metrics::counter!(names::CLUSTER_PUBLISHED, "outcome" => "error").increment(1);
            Err(FirehoseError::NotStored(e.to_string()))
        }
    }
}

fn parse_attributes(headers: &HeaderMap) -> StreamParams {
    let Some(raw) = headers.get(headers::COMMON_ATTRIBUTES) else {
        return StreamParams::default();
    };
    match attributes::parse(raw.as_bytes()) {
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
            StreamParams::default()
        }
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
