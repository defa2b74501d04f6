//! Firehose record → Step Functions events.
//!
//! A record is `base64(x)` where `x` is one of (firehose-protocol.md §1.7):
//! a gzip'd CWL envelope (default), a plain envelope (Firehose decompression
//! on), one or more raw Step Functions lines (message extraction on), or
//! nothing. Several gzip members and several JSON values per record are
//! accepted. A bad record, or a bad message inside one, is skipped and
//! counted; it never fails its neighbours.

use super::gzip::{gunzip_capped, is_gzip, GunzipError};
use super::stats::{DecodeStats, FailureReason, RecordKind};
use super::wire::WireRecordValue;
use crate::events::wire::{EventError, WireLogLine};
use crate::events::{Event, LogSource, StringCache};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use std::sync::Arc;

/// Standard alphabet; padding optional (some producers strip it).
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decoded-size budgets that make decompression bombs harmless.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest decoded (base64 + gunzip) size of one record.
    pub max_record_decoded_bytes: usize,
    /// Largest decoded size summed over the records of one request.
    pub max_request_decoded_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_record_decoded_bytes: 16 << 20,
            max_request_decoded_bytes: 640 << 20,
        }
    }
}

/// Decodes the records of one request, reusing its buffers between records.
#[derive(Debug)]
pub struct RequestDecoder {
    limits: Limits,
    stats: DecodeStats,
    strings: StringCache,
    b64: Vec<u8>,
    gz: Vec<u8>,
    events: Vec<Event>,
    /// State of the record being decoded.
    current: Current,
}

#[derive(Debug, Default)]
struct Current {
    index: usize,
    kind: Option<RecordKind>,
    failed: bool,
    json_failed: bool,
}

impl RequestDecoder {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            stats: DecodeStats::default(),
            strings: StringCache::default(),
            b64: Vec::new(),
            gz: Vec::new(),
            events: Vec::new(),
            current: Current::default(),
        }
    }

    /// The events decoded so far and the counters.
    pub fn finish(self) -> (Vec<Event>, DecodeStats) {
        (self.events, self.stats)
    }

    pub fn stats(&self) -> &DecodeStats {
        &self.stats
    }

    /// Events decoded and not yet taken.
    pub fn events_len(&self) -> usize {
        self.events.len()
    }

    /// Takes the events decoded so far; decoding can go on.
    pub fn take_events(&mut self) -> Vec<Event> {
        // The next chunk will be as big: one allocation, no doubling copies.
        let cap = self.events.capacity();
        std::mem::replace(&mut self.events, Vec::with_capacity(cap))
    }

    fn fail(&mut self, reason: FailureReason, message: impl FnOnce() -> String) {
        self.stats.failures[reason as usize] += 1;
        if reason.is_structural() {
            self.current.failed = true;
        }
        if self.stats.first_failure.is_none() {
            self.stats.first_failure = Some((self.current.index, reason, message()));
        }
    }

    fn classify(&mut self, kind: RecordKind) {
        self.current.kind.get_or_insert(kind);
    }

    /// Decodes one record's `data` (base64 text) and appends its events.
    pub fn decode_record(&mut self, data: &str) {
        self.current = Current {
            index: self.stats.records as usize,
            ..Current::default()
        };
        self.stats.records += 1;
        let before = self.events.len();
        self.decode_inner(data.as_bytes());
        let produced = self.events.len() > before;
        let kind = match self.current.kind {
            Some(k) => k,
            None if self.current.failed => RecordKind::Invalid,
            None => RecordKind::Empty,
        };
        self.stats.by_kind[kind as usize] += 1;
        if self.current.failed && !produced && kind != RecordKind::ControlMessage {
            self.stats.bad_records += 1;
        }
    }

    fn decode_inner(&mut self, data: &[u8]) {
        let data = data.trim_ascii();
        if data.is_empty() {
            return;
        }
        let mut b64 = std::mem::take(&mut self.b64);
        b64.clear();
        let decoded = if data.iter().any(u8::is_ascii_whitespace) {
            // MIME-style line breaks inside the text are tolerated.
            let compact: Vec<u8> = data
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            BASE64.decode_vec(&compact, &mut b64)
        } else {
            BASE64.decode_vec(data, &mut b64)
        };
        if let Err(e) = decoded {
            self.b64 = b64;
            let index = self.current.index;
            return self.fail(FailureReason::Base64, || {
                format!("record {index}: invalid base64: {e}")
            });
        }
        let used = self.stats.decoded_bytes as usize;
        let left_in_request = self.limits.max_request_decoded_bytes.saturating_sub(used);
        let cap = self.limits.max_record_decoded_bytes.min(left_in_request);
        let over = |me: &mut Self, size_hint: &str| {
            let index = me.current.index;
            if cap < me.limits.max_record_decoded_bytes {
                let budget = me.limits.max_request_decoded_bytes;
                me.fail(FailureReason::RequestBudget, || {
                    format!("record {index}: request decoded-size budget of {budget} bytes used up")
                });
            } else {
                me.fail(FailureReason::TooLarge, || {
                    format!("record {index}: decoded size {size_hint} over the per-record limit of {cap} bytes")
                });
            }
        };
        if is_gzip(&b64) {
            self.stats.gzip_records += 1;
            let mut gz = std::mem::take(&mut self.gz);
            match gunzip_capped(&b64, cap, &mut gz) {
                Ok(()) => {
                    self.stats.decoded_bytes += gz.len() as u64;
                    self.decode_values(&gz);
                }
                Err(GunzipError::TooLarge { .. }) => over(self, "(after gunzip)"),
                Err(GunzipError::Corrupt(e)) => {
                    let index = self.current.index;
                    self.fail(FailureReason::Gzip, || format!("record {index}: {e}"));
                }
            }
            // Keep a big buffer from one huge record from pinning memory.
            if gz.capacity() > 8 << 20 {
                gz = Vec::new();
            }
            self.gz = gz;
        } else if b64.len() > cap {
            over(self, &b64.len().to_string());
        } else {
            self.stats.decoded_bytes += b64.len() as u64;
            self.decode_values(&b64);
        }
        self.b64 = b64;
    }

    /// Parses one or more JSON values, back to back or whitespace-separated.
    /// After a broken value, decoding resumes at the next line.
    fn decode_values(&mut self, bytes: &[u8]) {
        let mut offset = 0;
        while offset < bytes.len() {
            let rest = &bytes[offset..];
            let skip = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
            if skip == rest.len() {
                break;
            }
            let rest = &rest[skip..];
            offset += skip;
            let mut stream =
                serde_json::Deserializer::from_slice(rest).into_iter::<WireRecordValue<'_>>();
            match stream.next() {
                Some(Ok(value)) => {
                    offset += stream.byte_offset().max(1);
                    self.handle_value(value);
                }
                Some(Err(e)) => {
                    if !self.current.json_failed {
                        self.current.json_failed = true;
                        let index = self.current.index;
                        self.fail(FailureReason::Json, || {
                            format!("record {index}: invalid JSON: {e}")
                        });
                    }
                    match rest.iter().position(|&b| b == b'\n') {
                        Some(p) => offset += p + 1,
                        None => break,
                    }
                }
                None => break,
            }
        }
    }

    fn handle_value(&mut self, value: WireRecordValue<'_>) {
        if value.is_envelope() {
            return self.handle_envelope(value);
        }
        if value.execution_arn.is_none() && value.kind.is_none() {
            self.classify(RecordKind::Other);
            let index = self.current.index;
            return self.fail(FailureReason::NotStepFunctions, || {
                format!("record {index}: JSON value is neither a CloudWatch Logs envelope nor a Step Functions log line")
            });
        }
        self.classify(RecordKind::ExtractedLines);
        self.push_line(value.into_line(), None, None);
    }

    fn handle_envelope(&mut self, env: WireRecordValue<'_>) {
        match env.message_type.as_deref() {
            Some("CONTROL_MESSAGE") => {
                self.classify(RecordKind::ControlMessage);
                self.stats.control_messages += 1;
            }
            Some("DATA_MESSAGE") | None => {
                self.classify(RecordKind::DataMessage);
                let source = Arc::new(LogSource {
                    owner: env.owner.as_deref().unwrap_or_default().into(),
                    log_group: env.log_group.as_deref().unwrap_or_default().into(),
                    log_stream: env.log_stream.as_deref().unwrap_or_default().into(),
                    subscription_filters: env
                        .subscription_filters
                        .unwrap_or_default()
                        .iter()
                        .map(|f| Box::from(f.as_ref()))
                        .collect(),
                });
                for log_event in env.log_events.unwrap_or_default() {
                    self.stats.log_events += 1;
                    let Some(message) = log_event.message else {
                        let index = self.current.index;
                        self.fail(FailureReason::NotStepFunctions, || {
                            format!("record {index}: log event without a message")
                        });
                        continue;
                    };
                    match serde_json::from_str::<WireLogLine<'_>>(&message) {
                        Ok(line) => {
                            self.push_line(line, Some(&source), log_event.timestamp.map(|t| t.0))
                        }
                        Err(e) => {
                            let index = self.current.index;
                            self.fail(FailureReason::NotStepFunctions, || {
                                format!("record {index}: log message is not a Step Functions JSON line: {e}")
                            });
                        }
                    }
                }
            }
            Some(other) => {
                let index = self.current.index;
                let other = other.to_owned();
                self.fail(FailureReason::UnknownMessageType, || {
                    format!("record {index}: unknown CloudWatch Logs messageType {other:?}")
                });
            }
        }
    }

    fn push_line(
        &mut self,
        mut line: WireLogLine<'_>,
        source: Option<&Arc<LogSource>>,
        cwl_ts: Option<i64>,
    ) {
        // The CWL event time equals event_timestamp; use it when the line lacks one.
        if line.event_timestamp.is_none() {
            line.event_timestamp = cwl_ts.map(crate::events::lenient::EpochMillis);
        }
        match line.into_event(&mut self.strings) {
            Ok(mut event) => {
                event.source = source.cloned();
                self.stats.events += 1;
                self.events.push(event);
            }
            Err(e) => {
                let reason = match e {
                    EventError::NotStepFunctions => FailureReason::NotStepFunctions,
                    EventError::MissingField(_) | EventError::Arn(_) => FailureReason::InvalidEvent,
                };
                let index = self.current.index;
                self.fail(reason, || format!("record {index}: {e}"));
            }
        }
    }
}
