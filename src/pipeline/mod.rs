//! Bounded hand-off from the endpoint to the processing stages.

pub mod backfill;
pub mod consumer;
pub mod decode_queue;
pub mod handoff;
pub mod settings;

pub use consumer::{spawn_event_consumer, ConsumerTotals};
pub use decode_queue::{spawn_decoders, DecodeJob, DecodeQueue, QueueGauge};
pub use handoff::{EventBatch, Handoff, HandoffError, HandoffGauge};
