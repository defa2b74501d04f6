//! Hash maps for the per-event paths. std's SipHash resists flooding by
//! crafted keys but cost 4-5 % of the server's profile; foldhash with a
//! per-process random seed keeps keys unpredictable to outsiders at a
//! fraction of the cost.

pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
