//! Pins: a WAL record may not be reclaimed while something that came from
//! it is still only in memory. A record is pinned from the moment its
//! sequence number is assigned until every shard has applied its events;
//! snapshots cover what was applied, so the reclaim frontier is the lowest
//! live pin.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct Pins {
    live: Mutex<BTreeMap<u64, u32>>,
    /// The next sequence number the WAL will assign.
    next: AtomicU64,
}

impl Pins {
    pub fn new(next: u64) -> Arc<Self> {
        Arc::new(Self {
            live: Mutex::default(),
            next: AtomicU64::new(next),
        })
    }

    /// Assigns the next sequence number, pinned.
    pub fn assign(self: &Arc<Self>) -> Pin {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let seq = self.next.fetch_add(1, Ordering::SeqCst);
        *live.entry(seq).or_default() += 1;
        Pin {
            seq,
            pins: self.clone(),
        }
    }

    /// The next sequence number to be assigned (failed appends leave gaps).
    pub fn next(&self) -> u64 {
        self.next.load(Ordering::SeqCst)
    }

    /// Records below this are applied everywhere (or were never accepted).
    pub fn frontier(&self) -> u64 {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.keys().next().copied().unwrap_or_else(|| self.next())
    }

    fn add(&self, seq: u64) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        *live.entry(seq).or_default() += 1;
    }

    fn release(&self, seq: u64) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = live.get_mut(&seq) {
            *n -= 1;
            if *n == 0 {
                live.remove(&seq);
            }
        }
    }

    /// Pins a sequence number during recovery replay.
    pub fn pin(self: &Arc<Self>, seq: u64) -> Pin {
        self.add(seq);
        Pin {
            seq,
            pins: self.clone(),
        }
    }
}

/// Holds a record back from reclamation until dropped (clones count).
#[derive(Debug)]
pub struct Pin {
    seq: u64,
    pins: Arc<Pins>,
}

impl Pin {
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Clone for Pin {
    fn clone(&self) -> Self {
        self.pins.add(self.seq);
        Pin {
            seq: self.seq,
            pins: self.pins.clone(),
        }
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        self.pins.release(self.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frontier_is_the_lowest_live_pin() {
        let p = Pins::new(10);
        assert_eq!(p.frontier(), 10);
        let a = p.assign();
        let b = p.assign();
        assert_eq!((a.seq(), b.seq()), (10, 11));
        assert_eq!(p.frontier(), 10);
        let a2 = a.clone();
        drop(a);
        assert_eq!(p.frontier(), 10, "a clone still pins");
        drop(a2);
        assert_eq!(p.frontier(), 11);
        drop(b);
        assert_eq!(p.frontier(), 12);
    }
}
