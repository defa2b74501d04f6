//! Forwarded log events → `ExportLogsServiceRequest`: one record per Step
//! Functions event, its body the event as JSON (the CloudWatch line), its
//! attributes the execution's `key:value` tags, its trace and span ids the
//! span it belongs to (the same 128-bit id as the span's), severity ERROR
//! for failures, timeouts and aborts, INFO otherwise.

use super::resource::{by_resource, scope, ResourceKey, Resources};
use super::wire::{span_id, string_value, tag_attributes, trace_id};
use crate::export::delivery::{BatchLimits, EncodeError, Encoder, Outcome, Request};
use crate::stitch::output::LogRecord;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::{self as pb, SeverityNumber};
use prost::Message;

pub const MAX_LOG_REQUEST_BYTES: usize = 3_500_000;
pub const MAX_LOGS_PER_REQUEST: usize = 4096;

#[derive(Debug, Clone, PartialEq)]
pub struct LogItem {
    pub resource: ResourceKey,
    pub record: pb::LogRecord,
}

pub fn to_record(r: &LogRecord) -> pb::LogRecord {
    let time = (r.timestamp_ms.max(0) as u64).saturating_mul(1_000_000);
    let (severity, text) = if r.error {
        (SeverityNumber::Error, "ERROR")
    } else {
        (SeverityNumber::Info, "INFO")
    };
    pb::LogRecord {
        time_unix_nano: time,
        // When the event happened is all we know of when it was observed.
        observed_time_unix_nano: time,
        severity_number: severity as i32,
        severity_text: text.into(),
        body: Some(string_value(&r.message)),
        attributes: tag_attributes(&r.tags),
        trace_id: trace_id(r.trace_id_high, r.trace_id),
        span_id: span_id(r.span_id),
        ..Default::default()
    }
}

pub fn items(records: &[LogRecord]) -> Vec<LogItem> {
    records
        .iter()
        .map(|r| {
            let mut resource = ResourceKey::of_tags(r.tags.iter().map(String::as_str));
            resource.service = r.service.as_str().into();
            LogItem {
                resource,
                record: to_record(r),
            }
        })
        .collect()
}

pub fn request(items: &[LogItem], resources: &Resources) -> ExportLogsServiceRequest {
    let resource_logs = by_resource(items, |i| &i.resource)
        .into_iter()
        .map(|(key, group)| pb::ResourceLogs {
            resource: Some(resources.resource(key)),
            scope_logs: vec![pb::ScopeLogs {
                scope: Some(scope()),
                log_records: group.into_iter().map(|i| i.record.clone()).collect(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest { resource_logs }
}

pub struct Logs {
    pub url: String,
    pub out: super::Out,
    pub resources: Resources,
}

impl Encoder for Logs {
    type Item = LogItem;

    fn signal(&self) -> &'static str {
        "logs"
    }

    fn size(&self, item: &LogItem) -> usize {
        item.record.encoded_len() + 8
    }

    fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_items: MAX_LOGS_PER_REQUEST,
            max_bytes: MAX_LOG_REQUEST_BYTES,
        }
    }

    fn encode(&self, items: &[LogItem]) -> Result<Request, EncodeError> {
        let body = request(items, &self.resources).encode_to_vec();
        self.out.request(&self.url, body, "logs")
    }

    fn review(&self, outcome: Outcome, items: usize) -> Outcome {
        super::answer::review(outcome, items, "logs", |b| {
            ExportLogsServiceResponse::decode(b)
                .ok()
                .and_then(|r| r.partial_success)
                .map(|p| (p.rejected_log_records, p.error_message))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_carries_its_span_and_severity() {
        let r = LogRecord {
            timestamp_ms: 1_700_000_000_123,
            error: true,
            message: r#"{"type":"TaskFailed"}"#.into(),
            trace_id: 42,
            trace_id_high: 0x66bc_b5eb_0000_0000,
            span_id: 7,
            service: "orders".into(),
            tags: vec!["env:prod".into(), "statemachinearn:arn:x".into()],
        };
        let i = &items(std::slice::from_ref(&r))[0];
        assert_eq!(i.resource.service, "orders");
        assert_eq!(i.resource.state_machine_arn.as_deref(), Some("arn:x"));
        assert_eq!(i.record.time_unix_nano, 1_700_000_000_123_000_000);
        assert_eq!(i.record.severity_number, SeverityNumber::Error as i32);
        assert_eq!(i.record.trace_id, trace_id(0x66bc_b5eb_0000_0000, 42));
        assert_eq!(i.record.span_id, 7u64.to_be_bytes());
        assert_eq!(i.record.body, Some(string_value(&r.message)));
        assert_eq!(i.record.attributes[0].key, "env");
        let req = request(std::slice::from_ref(i), &Resources::default());
        assert_eq!(req.resource_logs[0].scope_logs[0].log_records.len(), 1);
    }
}
