//! Stage 3: events → spans (trace-model.md). Work in progress: ids first.

pub mod ids;
