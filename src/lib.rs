//! stepstitch: an Amazon Data Firehose HTTP endpoint that turns AWS Step
//! Functions execution logs into traces, metrics and logs.
//!
//! Pipeline stages, one module each: `firehose` (HTTP protocol) → `decode`
//! (records → events) → `events` (typed model) → `pipeline` (bounded
//! hand-off to the next stage). `config`, `admin` and `telemetry` serve them.
#![forbid(unsafe_code)]

pub mod events;
