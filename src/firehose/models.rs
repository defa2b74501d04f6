//! Wire types of the Firehose HTTP endpoint protocol v1.0
//! (firehose-protocol.md §1.3–§1.4): the response and the headers. The
//! request body's envelope is read by the decode stage (`decode::envelope`).

use serde::Serialize;

/// The response body; success and every error use this one shape.
#[derive(Debug, Serialize)]
pub struct FirehoseResponse<'a> {
    #[serde(rename = "requestId")]
    pub request_id: &'a str,
    /// Milliseconds since the epoch, always a JSON number.
    pub timestamp: i64,
    #[serde(rename = "errorMessage", skip_serializing_if = "Option::is_none")]
    pub error_message: Option<&'a str>,
}

/// The protocol caps `errorMessage` at 8192 characters.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 8192;

/// Cuts `s` to at most `max` characters.
pub fn cap_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

pub mod headers {
    pub const REQUEST_ID: &str = "x-amz-firehose-request-id";
    pub const ACCESS_KEY: &str = "x-amz-firehose-access-key";
    pub const PROTOCOL_VERSION: &str = "x-amz-firehose-protocol-version";
    pub const SOURCE_ARN: &str = "x-amz-firehose-source-arn";
    pub const COMMON_ATTRIBUTES: &str = "x-amz-firehose-common-attributes";
}
