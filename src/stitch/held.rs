//! Compact per-execution state: the events held until their spans are
//! built, and sets of event ids.
//!
//! Step Functions numbers an execution's events 1, 2, 3, … and logs them
//! mostly in order, so events live in a `Vec` sorted by id (appends in the
//! common case, no hashing, no per-entry table overhead) and id sets are
//! bitmaps (one bit per id instead of a hashed 8-byte entry). Both matter
//! at a million open executions.

use crate::events::Event;
use std::collections::BTreeSet;

/// An execution's held events, sorted by id, unique.
#[derive(Debug, Default)]
pub struct HeldEvents(Vec<Event>);

impl HeldEvents {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Room for `n` more events: exactly that when it is more than the
    /// usual growth (an execution's events arriving together take one
    /// allocation instead of one per growth step, each copying the events).
    pub fn reserve(&mut self, n: usize) {
        let free = self.0.capacity() - self.0.len();
        if free < n {
            self.0
                .reserve_exact((n - free).max(Self::growth(self.0.len())));
        }
    }

    /// Grow by half, not double: most executions hold a handful of events,
    /// and at a million open executions the unused half of a doubled
    /// buffer is most of the memory.
    fn growth(len: usize) -> usize {
        (len / 2).max(2)
    }

    /// Adds an event whose id is not held yet (the caller deduplicates).
    pub fn insert(&mut self, e: Event) {
        if self.0.len() == self.0.capacity() {
            self.0.reserve_exact(Self::growth(self.0.len()));
        }
        match self.0.last() {
            Some(last) if last.id > e.id => {
                let at = self.0.partition_point(|x| x.id < e.id);
                self.0.insert(at, e);
            }
            _ => self.0.push(e),
        }
    }

    pub fn get(&self, id: u64) -> Option<&Event> {
        let at = self.0.binary_search_by_key(&id, |e| e.id).ok()?;
        self.0.get(at)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Event> {
        let at = self.0.binary_search_by_key(&id, |e| e.id).ok()?;
        self.0.get_mut(at)
    }

    /// In id order.
    pub fn values(&self) -> std::slice::Iter<'_, Event> {
        self.0.iter()
    }

    /// Drops the events whose ids are in `ids`, and the room they took
    /// when that is most of it.
    pub fn remove_all(&mut self, ids: &IdSet) {
        if ids.is_empty() {
            return;
        }
        self.0.retain(|e| !ids.contains(e.id));
        if self.0.capacity() > 2 * self.0.len() + 4 {
            self.0.shrink_to_fit();
        }
    }

    /// Takes every event, leaving no room behind.
    pub fn take_all(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.0)
    }
}

/// Ids at or above this go to the sparse part (a bitmap to here is 128 KiB;
/// executions have at most 25,000 history events, ids from 1).
const DENSE_LIMIT: u64 = 1 << 20;

/// A set of event ids: a bitmap for the dense range, a tree above it (only
/// malformed or synthetic ids land there).
#[derive(Debug, Default, Clone)]
pub struct IdSet {
    words: Vec<u64>,
    /// Boxed: almost always empty, and the set lives in every execution
    /// (8 bytes instead of 24).
    #[allow(clippy::box_collection)]
    sparse: Option<Box<BTreeSet<u64>>>,
    len: u32,
}

impl IdSet {
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `id`; false when it was already there.
    pub fn insert(&mut self, id: u64) -> bool {
        let added = if id < DENSE_LIMIT {
            let (w, bit) = ((id / 64) as usize, 1u64 << (id % 64));
            if w >= self.words.len() {
                // Grow by half again so appends stay amortised, exact when small.
                let want = (w + 1).max(self.words.len() + self.words.len() / 2);
                self.words.resize(want, 0);
            }
            let had = self.words[w] & bit != 0;
            self.words[w] |= bit;
            !had
        } else {
            self.sparse.get_or_insert_default().insert(id)
        };
        self.len += u32::from(added);
        added
    }

    pub fn contains(&self, id: u64) -> bool {
        if id < DENSE_LIMIT {
            self.words
                .get((id / 64) as usize)
                .is_some_and(|w| w & (1u64 << (id % 64)) != 0)
        } else {
            self.sparse.as_ref().is_some_and(|s| s.contains(&id))
        }
    }

    /// In ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words
            .iter()
            .enumerate()
            .flat_map(|(i, &w)| {
                let mut w = w;
                std::iter::from_fn(move || {
                    if w == 0 {
                        return None;
                    }
                    let bit = w.trailing_zeros() as u64;
                    w &= w - 1;
                    Some(i as u64 * 64 + bit)
                })
            })
            .chain(self.sparse.iter().flat_map(|s| s.iter().copied()))
    }
}

impl FromIterator<u64> for IdSet {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Self {
        let mut s = IdSet::default();
        for id in iter {
            s.insert(id);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Event, EventKind};

    fn ev(id: u64) -> Event {
        Event {
            execution_arn: "arn:aws:states:us-east-1:1:execution:S:e".into(),
            id,
            previous_event_id: id.saturating_sub(1),
            timestamp_ms: id as i64,
            redrive_count: 0,
            kind: EventKind::PassStateEntered,
            details: Default::default(),
            source: None,
        }
    }

    #[test]
    fn events_stay_sorted_whatever_the_arrival_order() {
        let mut h = HeldEvents::default();
        for id in [5, 1, 9, 3, 2, 10, 4] {
            h.insert(ev(id));
        }
        let ids: Vec<u64> = h.values().map(|e| e.id).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5, 9, 10]);
        assert_eq!(h.get_mut(9).unwrap().id, 9);
        assert!(h.get_mut(7).is_none());
        h.remove_all(&[2, 9].into_iter().collect());
        let ids: Vec<u64> = h.values().map(|e| e.id).collect();
        assert_eq!(ids, [1, 3, 4, 5, 10]);
        assert_eq!(h.take_all().len(), 5);
        assert!(h.is_empty());
    }

    #[test]
    fn a_reserved_run_takes_one_allocation_and_small_ones_grow_by_half() {
        let mut h = HeldEvents::default();
        h.reserve(42);
        assert_eq!(h.0.capacity(), 42);
        for id in (1..=42).rev() {
            h.insert(ev(id));
        }
        assert_eq!(h.0.capacity(), 42, "no growth inside the reserved run");
        assert!(h.values().map(|e| e.id).eq(1..=42));
        // A run smaller than the usual growth still grows by half.
        h.reserve(1);
        assert_eq!(h.0.capacity(), 42 + 21);
        let mut small = HeldEvents::default();
        small.reserve(1);
        assert_eq!(small.0.capacity(), 2);
    }

    #[test]
    fn id_sets_match_a_hash_set() {
        let mut s = IdSet::default();
        let mut reference = std::collections::BTreeSet::new();
        let ids = [
            0u64,
            1,
            63,
            64,
            65,
            1000,
            3,
            1,
            64,
            DENSE_LIMIT - 1,
            DENSE_LIMIT,
            u64::MAX,
            7,
        ];
        for id in ids {
            assert_eq!(s.insert(id), reference.insert(id), "{id}");
        }
        assert_eq!(s.len(), reference.len());
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            reference.iter().copied().collect::<Vec<_>>()
        );
        for id in [0, 2, 63, 66, 999, 1000, DENSE_LIMIT, u64::MAX, u64::MAX - 1] {
            assert_eq!(s.contains(id), reference.contains(&id), "{id}");
        }
        let back: IdSet = s.iter().collect();
        assert!(back.iter().eq(s.iter()));
        // A hostile id costs a tree entry, not a giant bitmap.
        assert!(s.words.len() <= (DENSE_LIMIT / 64) as usize);
    }
}
