//! stepstitch: an Amazon Data Firehose HTTP endpoint that turns AWS Step
//! Functions execution logs into traces, metrics and logs.
//!
//! Pipeline stages, one module each: `firehose` (HTTP protocol) → `decode`
//! (records → events) → `events` (typed model) → `pipeline` (bounded
//! hand-off to the next stage). `config`, `admin`, `telemetry` and `app`
//! (wiring) serve them.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod clock;
pub mod config;
pub mod decode;
pub mod durable;
pub mod events;
pub mod export;
pub mod firehose;
pub mod lifecycle;
pub mod loadgen;
pub mod pipeline;
pub mod stitch;
pub mod telemetry;
