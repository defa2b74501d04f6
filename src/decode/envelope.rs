//! The Firehose request body's envelope (firehose-protocol.md §1.3): the
//! wire type the decode stage reads records from. Never a domain type.

use serde::Deserialize;
use std::borrow::Cow;

/// The request body. `records[].data` borrows from the body: a 64 MiB
/// request is not copied before decoding.
#[derive(Debug, Deserialize)]
pub struct FirehoseRequest<'a> {
    #[serde(rename = "requestId", borrow, default)]
    pub request_id: Option<Cow<'a, str>>,
    /// Missing `records` is treated as an empty batch (as PostHog and OTel do).
    #[serde(borrow, default)]
    pub records: Vec<WireRecord<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct WireRecord<'a> {
    /// Base64 text. A record without `data` is treated as an empty record.
    #[serde(borrow, default)]
    pub data: Cow<'a, str>,
}
