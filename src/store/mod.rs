//! Stage: the execution store. Every stitched execution (its summary, its
//! spans exactly as the jsonl exporter writes them, its forwarded log
//! events) and the state machines' definitions, kept in a database for the
//! web UI and its JSON API.
//!
//! `digest` turns spans into rows (pure), `sqlite` is the embedded backend
//! behind the `Store` trait and `postgres` the shared one (several
//! replicas, one database), `chunks` reads stored spans back (pure), `stats` and `graph` compute what the API
//! answers from rows (pure), `asl` reads an ASL definition's graph.
//! The writer that feeds it lives with the exporters (`export::store`):
//! the store is one more sink of the hub, never a reason to refuse data.

pub mod asl;
pub mod chunks;
#[cfg(test)]
pub mod conformance;
pub mod digest;
pub mod graph;
pub mod model;
pub mod postgres;
pub mod settings;
pub mod sqlite;
pub mod stats;

pub use model::*;

/// What can go wrong in the store (the API turns it into a 503).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("store database: {0}")]
    Pg(#[from] ::postgres::Error),
    #[error("store database: {0}")]
    Unavailable(String),
    #[error("store: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "store schema version {found} is newer than this build knows ({known}); upgrade stepstitch"
    )]
    Newer { found: i64, known: i64 },
    #[error("invalid definition: {0}")]
    Definition(String),
}

/// The store's interface, with two backends: SQLite embedded and
/// PostgreSQL shared (`conformance` runs the same tests on both). Calls are blocking; async callers go
/// through `spawn_blocking`.
pub trait Store: Send + Sync {
    /// Writes one batch in one transaction (idempotent: a span or
    /// execution written twice is the same row).
    fn write(&self, batch: &digest::WriteBatch) -> Result<(), StoreError>;
    /// Executions started in the window, per state machine.
    fn state_machines(&self, w: Window) -> Result<Vec<stats::Started>, StoreError>;
    /// One page of executions, newest first.
    fn executions(&self, q: &ExecutionQuery) -> Result<Page, StoreError>;
    fn execution(&self, arn: &str) -> Result<Option<ExecutionSummary>, StoreError>;
    /// The execution's spans, as jsonl `S` objects (JSON text), by start.
    fn spans(&self, arn: &str) -> Result<Vec<String>, StoreError>;
    /// The state spans of the newest executions of a state machine started
    /// in the window (at most `limit` executions), for its map.
    fn state_spans(
        &self,
        state_machine_arn: &str,
        w: Window,
        limit: usize,
    ) -> Result<Vec<StateSpan>, StoreError>;
    fn logs(&self, arn: &str, limit: usize) -> Result<Vec<StoredLog>, StoreError>;
    fn definition(&self, state_machine_arn: &str) -> Result<Option<Definition>, StoreError>;
    fn put_definition(&self, d: &Definition) -> Result<(), StoreError>;
    /// Deletes executions started before `before_ms`, then the oldest until
    /// the database is under `max_bytes`. Returns how many went.
    fn prune(&self, before_ms: i64, max_bytes: u64) -> Result<usize, StoreError>;
    /// Executions held (a gauge).
    fn count(&self) -> Result<u64, StoreError>;
}
