//! Stage 2½: durability. The write-ahead log makes a request's records
//! durable before Firehose hears 200; pins say which records are still only
//! in memory; snapshots capture the stitcher and the undelivered outbox so
//! the log can be reclaimed; the ledger remembers what exporters
//! acknowledged so a replay does not send it twice. `recovery` puts it all
//! back together at start.

pub mod ledger;
pub mod numbered;
pub mod pins;
pub mod record;
pub mod recovery;
pub mod settings;
pub mod snapshot;
pub mod snapshotter;
pub mod wal;
