//! Stage: Firehose request bodies → records → typed Step Functions events.
//! Called by the endpoint (the checks that decide the answer), the decode
//! workers (the rest, after the 200) and recovery (replaying the log).

pub mod body;
pub mod envelope;
pub mod gzip;
pub mod record;
pub mod settings;
pub mod stats;
pub mod wire;

pub use body::{BodyError, BodyLimits};
pub use record::{Limits, RequestDecoder};
pub use stats::{DecodeStats, FailureReason, RecordKind};
