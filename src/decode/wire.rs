//! Wire shapes inside a Firehose record: the CloudWatch Logs subscription
//! envelope, or (message extraction on) bare Step Functions log lines. One
//! struct covers both so each JSON value is parsed once and then classified.

use crate::events::lenient::{EpochMillis, LenientU64};
use crate::events::wire::{WireDetails, WireLogLine};
use serde::Deserialize;
use std::borrow::Cow;

#[derive(Debug, Deserialize)]
pub struct WireLogEvent<'a> {
    #[serde(default)]
    pub timestamp: Option<EpochMillis>,
    #[serde(borrow, default)]
    pub message: Option<Cow<'a, str>>,
}

/// A JSON value found in a record: a CWL envelope or a Step Functions line.
#[derive(Debug, Deserialize)]
pub struct WireRecordValue<'a> {
    // CloudWatch Logs envelope members.
    #[serde(rename = "messageType", borrow, default)]
    pub message_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub owner: Option<Cow<'a, str>>,
    #[serde(rename = "logGroup", borrow, default)]
    pub log_group: Option<Cow<'a, str>>,
    #[serde(rename = "logStream", borrow, default)]
    pub log_stream: Option<Cow<'a, str>>,
    #[serde(rename = "subscriptionFilters", borrow, default)]
    pub subscription_filters: Option<Vec<Cow<'a, str>>>,
    #[serde(rename = "logEvents", borrow, default)]
    pub log_events: Option<Vec<WireLogEvent<'a>>>,
    // Step Functions log line members (message extraction on).
    #[serde(default)]
    pub id: Option<LenientU64>,
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub details: Option<WireDetails<'a>>,
    #[serde(default)]
    pub previous_event_id: Option<LenientU64>,
    #[serde(default)]
    pub event_timestamp: Option<EpochMillis>,
    #[serde(borrow, default)]
    pub execution_arn: Option<Cow<'a, str>>,
    #[serde(default)]
    pub redrive_count: Option<LenientU64>,
}

impl<'a> WireRecordValue<'a> {
    pub fn is_envelope(&self) -> bool {
        self.message_type.is_some() || self.log_events.is_some()
    }

    pub fn into_line(self) -> WireLogLine<'a> {
        WireLogLine {
            id: self.id,
            kind: self.kind,
            details: self.details,
            previous_event_id: self.previous_event_id,
            event_timestamp: self.event_timestamp,
            execution_arn: self.execution_arn,
            redrive_count: self.redrive_count,
        }
    }
}
