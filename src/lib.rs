//! stepstitch: an Amazon Data Firehose HTTP endpoint that turns AWS Step
//! Functions execution logs into traces, metrics and logs.
//!
//! One module per stage; a stage imports only stages below it
//! (docs/architecture.md, checked by tests/architecture.rs), lowest first:
//! foundations (`clock`, `hashing`, `lifecycle`, `settings`), `telemetry`,
//! `events`, `decode`, `stitch`, `durable`, `export`, `pipeline`,
//! `firehose`, `admin`, `app` (wiring), `loadgen`, `cli`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod aws;
pub mod backfill;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod decode;
pub mod durable;
pub mod events;
pub mod export;
pub mod firehose;
pub(crate) mod hashing;
pub mod lifecycle;
pub mod loadgen;
pub mod pipeline;
pub mod settings;
pub mod stitch;
pub mod store;
pub mod telemetry;

/// Turns transparent huge pages off for this process. The allocator keeps
/// returning freed memory to the kernel and faulting it back in; with huge
/// pages every fault zeroes 2 MiB, which took 25–30 % of the server's CPU
/// under load (BENCHMARKS.md: ~170 k → ~240 k events/s per core without).
/// Best effort: a kernel without the call changes nothing.
pub fn disable_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(error = %e, "could not disable transparent huge pages");
    }
}
