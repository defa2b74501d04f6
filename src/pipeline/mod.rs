//! Bounded hand-off from the endpoint to the processing stages.

pub mod consumer;
pub mod handoff;

pub use consumer::{spawn_event_consumer, ConsumerTotals};
pub use handoff::{EventBatch, Handoff, HandoffError, HandoffGauge};
