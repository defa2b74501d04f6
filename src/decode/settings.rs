//! Size limits of request bodies and records.

use super::{BodyLimits, Limits};
use crate::setting_id as id;
use crate::settings::{Check, ConfigError};

/// The protocol's largest body (before compression).
pub const FIREHOSE_MAX_BODY: usize = 64 << 20;

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Decoding")]
pub struct DecodeArgs {
    /// Largest request body, as received and after gunzip (keep above 64MiB).
    #[arg(long, env = "STEPSTITCH_MAX_BODY_BYTES", default_value = "80MiB")]
    pub max_body_bytes: String,
    /// Largest decoded size of one record (base64 + gunzip).
    #[arg(
        long,
        env = "STEPSTITCH_MAX_RECORD_DECODED_BYTES",
        default_value = "16MiB"
    )]
    pub max_record_decoded_bytes: String,
    /// Largest decoded size of all records of one request.
    #[arg(
        long,
        env = "STEPSTITCH_MAX_REQUEST_DECODED_BYTES",
        default_value = "640MiB"
    )]
    pub max_request_decoded_bytes: String,
}

impl DecodeArgs {
    pub fn validate(self) -> Result<BodyLimits, ConfigError> {
        type C = Check<DecodeArgs>;
        let max_body_bytes = C::size_at_least(
            id!(max_body_bytes),
            &self.max_body_bytes,
            1 << 20,
            "must be at least 1MiB",
            "80MiB",
        )?;
        let max_record = C::size_at_least(
            id!(max_record_decoded_bytes),
            &self.max_record_decoded_bytes,
            1_024_000,
            "must be at least 1024000 (Firehose's record size)",
            "16MiB",
        )?;
        let max_request = C::size_at_least(
            id!(max_request_decoded_bytes),
            &self.max_request_decoded_bytes,
            max_record,
            "must be at least the per-record limit",
            "640MiB",
        )?;
        Ok(BodyLimits {
            max_body_bytes,
            decode: Limits {
                max_record_decoded_bytes: max_record,
                max_request_decoded_bytes: max_request,
            },
        })
    }
}
