//! Acknowledgements: an emission stays in the outbox until every exporter
//! has delivered its spans and logs; each delivery is written to the
//! ledger. Snapshots carry the outbox, so what was emitted but not yet
//! delivered at a crash or shutdown is sent after the restart, and the
//! ledger keeps what was delivered from being sent twice.

use crate::durable::ledger::{AckLog, Signal};
use crate::stitch::output::LogRecord;
use crate::stitch::span::Span;
use crate::telemetry::names;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

struct Entry {
    shard: usize,
    spans: Arc<Vec<Span>>,
    logs: Arc<Vec<LogRecord>>,
    pending: usize,
}

/// Emissions not yet delivered everywhere.
#[derive(Default)]
pub struct Outbox {
    entries: Mutex<HashMap<u64, Entry>>,
    next: AtomicU64,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Outbox({})", self.len())
    }
}

impl Outbox {
    pub fn register(
        &self,
        shard: usize,
        spans: Arc<Vec<Span>>,
        logs: Arc<Vec<LogRecord>>,
        pending: usize,
    ) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        e.insert(
            id,
            Entry {
                shard,
                spans,
                logs,
                pending,
            },
        );
        metrics::gauge!(names::EXPORT_UNACKED_EMISSIONS).set(e.len() as f64);
        id
    }

    fn done(&self, id: u64) {
        let mut e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = e.get_mut(&id) {
            entry.pending -= 1;
            if entry.pending == 0 {
                e.remove(&id);
            }
        }
        metrics::gauge!(names::EXPORT_UNACKED_EMISSIONS).set(e.len() as f64);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a shard has nothing left to deliver.
    pub fn shard_is_empty(&self, shard: usize) -> bool {
        let e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        !e.values().any(|x| x.shard == shard)
    }

    /// What a shard emitted that is not delivered everywhere yet.
    pub fn of_shard(&self, shard: usize) -> crate::stitch::output::Outboxed {
        let e = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<(u64, &Entry)> = e
            .iter()
            .filter(|(_, x)| x.shard == shard)
            .map(|(k, x)| (*k, x))
            .collect();
        v.sort_by_key(|(k, _)| *k);
        v.into_iter()
            .map(|(_, x)| (x.spans.clone(), x.logs.clone()))
            .collect()
    }
}

/// One exporter's share of one emission for one signal. Dropped once the
/// items are delivered (or dropped by a policy that will not retry them);
/// a lane that gives up at shutdown marks it failed first, which keeps the
/// emission in the outbox.
pub struct Receipt {
    shard: usize,
    exporter: u8,
    signal: Signal,
    ids: Vec<u64>,
    ledger: Arc<dyn AckLog>,
    outbox: Arc<Outbox>,
    entry: u64,
    failed: AtomicBool,
}

impl Receipt {
    pub fn new(
        (shard, exporter): (usize, u8),
        signal: Signal,
        ids: Vec<u64>,
        ledger: Arc<dyn AckLog>,
        outbox: Arc<Outbox>,
        entry: u64,
    ) -> Arc<Self> {
        Arc::new(Self {
            shard,
            exporter,
            signal,
            ids,
            ledger,
            outbox,
            entry,
            failed: AtomicBool::new(false),
        })
    }

    /// Not delivered: keep the emission for the next start.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }
}

impl Drop for Receipt {
    fn drop(&mut self) {
        if self.failed.load(Ordering::Relaxed) {
            return;
        }
        self.ledger
            .acknowledge(self.shard, self.exporter, self.signal, &self.ids);
        self.outbox.done(self.entry);
    }
}

/// Receipts riding along with a batch.
pub type Receipts = Vec<Arc<Receipt>>;
