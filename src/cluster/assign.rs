//! Which replica should own which partition (pure): rendezvous hashing,
//! so every replica computes the same answer from the same list of live
//! replicas, and a replica joining or leaving moves only its own share.
//! Leases (`lease`) make the answer true: a partition is owned by the one
//! replica holding its lease, whatever the others think.

use super::partition::fnv1a64;

/// The replica (of `nodes`, any order) that should own `partition`.
pub fn owner<'a>(partition: u32, nodes: &[&'a str]) -> Option<&'a str> {
    nodes
        .iter()
        .max_by_key(|n| (score(n, partition), **n))
        .copied()
}

fn score(node: &str, partition: u32) -> u64 {
    let mut key = Vec::with_capacity(node.len() + 5);
    key.extend_from_slice(node.as_bytes());
    key.push(0);
    key.extend_from_slice(&partition.to_le_bytes());
    // FNV alone mixes the last bytes weakly: finish with a 64-bit mixer.
    let mut h = fnv1a64(&key);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// The partitions `node` should own among `partitions`.
pub fn desired(node: &str, nodes: &[&str], partitions: u32) -> Vec<u32> {
    (0..partitions)
        .filter(|p| owner(*p, nodes) == Some(node))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_partition_has_one_owner_and_shares_are_even() {
        let nodes = ["a", "b", "c"];
        let mut total = 0;
        for n in nodes {
            let mine = desired(n, &nodes, 96);
            assert!((20..=44).contains(&mine.len()), "{n}: {}", mine.len());
            total += mine.len();
        }
        assert_eq!(total, 96);
        // The same answer whatever order the list comes in.
        assert_eq!(desired("a", &["c", "a", "b"], 96), desired("a", &nodes, 96));
    }

    #[test]
    fn a_joining_node_takes_only_its_share() {
        let before = ["a", "b", "c"];
        let after = ["a", "b", "c", "d"];
        let mut moved = 0;
        for p in 0..256 {
            let (x, y) = (owner(p, &before).unwrap(), owner(p, &after).unwrap());
            if x != y {
                assert_eq!(y, "d", "a partition moved between old nodes");
                moved += 1;
            }
        }
        assert!((40..=90).contains(&moved), "{moved}");
        // And when it leaves, they go back where they were.
        for p in 0..256 {
            assert_eq!(owner(p, &before), owner(p, &["a", "b", "c"]));
        }
        assert_eq!(owner(0, &[]), None);
    }
}
