//! A span's `meta` and `metrics`: a small map kept sorted by key in one
//! vector, with `SmolStr` keys and text values.
//!
//! Why not `BTreeMap<String, String>`: a span carries ~15 tags, a dozen of
//! them the same for every span of an execution. As a B-tree each span
//! cloned those as 24 string allocations, every insert scanned a node
//! comparing long `step_function.` keys, and dropping walked the tree: a
//! quarter of the stitching thread's time (BENCHMARKS.md, fourth round).
//! Here static keys cost nothing, short values live inline, long shared ones
//! (ARNs) are reference-counted, and a clone is one allocation. Iteration
//! and serialization stay in key order, so outputs are unchanged.

use serde::ser::{Serialize, SerializeMap, Serializer};
use smol_str::SmolStr;
use std::fmt;

/// Converts to a tag key; `&'static str` keys are stored without copying.
pub trait IntoKey {
    fn into_key(self) -> SmolStr;
}

impl IntoKey for &'static str {
    fn into_key(self) -> SmolStr {
        SmolStr::new_static(self)
    }
}

impl IntoKey for SmolStr {
    fn into_key(self) -> SmolStr {
        self
    }
}

impl IntoKey for String {
    fn into_key(self) -> SmolStr {
        self.into()
    }
}

/// Tags sorted by key, each key once.
#[derive(Clone, PartialEq)]
pub struct Tags<V> {
    entries: Vec<(SmolStr, V)>,
}

/// Span `meta`.
pub type Meta = Tags<SmolStr>;
/// Span `metrics`.
pub type Metrics = Tags<f64>;

impl<V> Default for Tags<V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<V> Tags<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Self {
            entries: Vec::with_capacity(n),
        }
    }

    /// A copy with room for `extra` more tags without growing.
    pub fn clone_with_room(&self, extra: usize) -> Self
    where
        V: Clone,
    {
        let mut entries = Vec::with_capacity(self.entries.len() + extra);
        entries.extend_from_slice(&self.entries);
        Self { entries }
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// Sets `key`, returning the value it replaced.
    pub fn insert(&mut self, key: impl IntoKey, value: impl Into<V>) -> Option<V> {
        let key = key.into_key();
        let value = value.into();
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// Sets `key` unless it is set already.
    pub fn insert_if_absent(&mut self, key: impl IntoKey, value: impl Into<V>) {
        let key = key.into_key();
        if let Err(i) = self.find(&key) {
            self.entries.insert(i, (key, value.into()));
        }
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// In key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl<V> std::ops::Index<&str> for Tags<V> {
    type Output = V;

    /// Panics when `key` is not set (as `BTreeMap` does).
    fn index(&self, key: &str) -> &V {
        match self.get(key) {
            Some(v) => v,
            None => panic!("no tag {key:?}"),
        }
    }
}

impl<'a, V> IntoIterator for &'a Tags<V> {
    type Item = (&'a str, &'a V);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (SmolStr, V)>,
        fn(&'a (SmolStr, V)) -> (&'a str, &'a V),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
}

impl<V> IntoIterator for Tags<V> {
    type Item = (SmolStr, V);
    type IntoIter = std::vec::IntoIter<(SmolStr, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<K: IntoKey, V, W: Into<V>> FromIterator<(K, W)> for Tags<V> {
    /// Later duplicates replace earlier ones.
    fn from_iter<I: IntoIterator<Item = (K, W)>>(iter: I) -> Self {
        let mut t = Tags::new();
        for (k, v) in iter {
            t.insert(k, v);
        }
        t
    }
}

impl<V: fmt::Debug> fmt::Debug for Tags<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V: Serialize> Serialize for Tags<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.entries.len()))?;
        for (k, v) in &self.entries {
            m.serialize_entry(k.as_str(), v)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(String, String),
        IfAbsent(String, String),
        Remove(String),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few distinct keys, so replacing and removing happen often.
        let key = prop::sample::select(vec![
            "a",
            "b",
            "env",
            "step_function.x",
            "step_function.y",
            "é",
        ])
        .prop_map(str::to_owned);
        let val = "[a-z€]{0,30}";
        prop_oneof![
            (key.clone(), val).prop_map(|(k, v)| Op::Insert(k, v)),
            (key.clone(), val).prop_map(|(k, v)| Op::IfAbsent(k, v)),
            key.prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// Behaves as a `BTreeMap` and serializes exactly like one.
        #[test]
        fn behaves_as_a_btreemap(ops in prop::collection::vec(op(), 0..40)) {
            let mut t: Meta = Tags::new();
            let mut m: BTreeMap<String, String> = BTreeMap::new();
            for o in ops {
                match o {
                    Op::Insert(k, v) => {
                        let old = t.insert(k.clone(), v.as_str());
                        prop_assert_eq!(old.map(String::from), m.insert(k, v));
                    }
                    Op::IfAbsent(k, v) => {
                        t.insert_if_absent(k.clone(), v.as_str());
                        m.entry(k).or_insert(v);
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(t.remove(&k).map(String::from), m.remove(&k));
                    }
                }
                prop_assert_eq!(t.len(), m.len());
            }
            for (k, v) in &m {
                prop_assert_eq!(&t[k], v);
                prop_assert!(t.contains_key(k));
            }
            prop_assert!(t.iter().map(|(k, _)| k).eq(m.keys().map(String::as_str)));
            prop_assert_eq!(serde_json::to_string(&t).unwrap(), serde_json::to_string(&m).unwrap());
            let again: Meta = m.iter().map(|(k, v)| (k.clone(), v.as_str())).collect();
            prop_assert_eq!(&again, &t);
            prop_assert_eq!(&t.clone_with_room(3), &t);
        }
    }

    #[test]
    fn static_keys_are_not_copied_and_long_values_are_shared() {
        static KEY: &str = "step_function.execution_arn";
        let mut t: Meta = Tags::new();
        t.insert(KEY, "x".repeat(80).as_str());
        let c = t.clone_with_room(4);
        let (k, v) = c.iter().next().unwrap();
        assert_eq!(k.as_ptr(), KEY.as_ptr());
        assert_eq!(v.as_ptr(), t[KEY].as_ptr());
        assert_eq!(t.get("missing"), None);
    }

    #[test]
    #[should_panic(expected = "no tag \"missing\"")]
    fn indexing_a_missing_key_panics_naming_it() {
        let t: Metrics = Tags::new();
        let _ = t["missing"];
    }
}
