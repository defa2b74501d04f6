//! Stage 1: Firehose records → typed Step Functions events.

pub mod gzip;
pub mod record;
pub mod stats;
pub mod wire;

pub use record::{Limits, RequestDecoder};
pub use stats::{DecodeStats, FailureReason, RecordKind};
