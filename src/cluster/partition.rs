//! Which partition an event belongs to, and the names that follow from it
//! (pure). Every event of an execution must reach the one replica owning
//! its partition, so the key is the execution's ARN, except for a
//! Distributed Map child execution, keyed by its map run: all children of
//! one run land together, wherever their parent is (joined across
//! partitions by hints, docs/cluster.md).
//!
//! The hash is FNV-1a 64, written out here: it must never change between
//! versions or processes (a std or foldhash hasher is seeded per process).

use crate::events::ExecutionArn;

/// The key an execution is partitioned by.
pub fn partition_key(execution_arn: &str) -> std::borrow::Cow<'_, str> {
    match ExecutionArn::parse(execution_arn) {
        Ok(a) => match a.map_run {
            Some((map_state, run)) => std::borrow::Cow::Owned(format!(
                "mapRun:{}:{}:{}/{map_state}:{run}",
                a.region, a.account_id, a.state_machine_name
            )),
            None => std::borrow::Cow::Borrowed(execution_arn),
        },
        // Not an ARN: still a stable place (the decoder refuses these).
        Err(_) => std::borrow::Cow::Borrowed(execution_arn),
    }
}

pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The partition of an execution, in `0..partitions`.
pub fn partition_of(execution_arn: &str, partitions: u32) -> u32 {
    (fnv1a64(partition_key(execution_arn).as_bytes()) % u64::from(partitions.max(1))) as u32
}

/// The JetStream subject of a partition.
pub fn subject(prefix: &str, partition: u32) -> String {
    format!("{prefix}.p.{partition}")
}

/// `Nats-Msg-Id` of chunk `chunk` of a Firehose request's share for a
/// partition: a Firehose retry of the request carries the same request id
/// and splits the same way, so JetStream's duplicate window stores it once.
pub fn message_id(request_id: &str, partition: u32, chunk: usize) -> String {
    format!("{request_id}/{partition}/{chunk}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "arn:aws:states:us-east-1:123456789012:execution:Orders:o-1";

    #[test]
    fn the_hash_is_fixed_forever() {
        // FNV-1a 64 test vectors (the published ones).
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
        // And so a given execution's partition.
        assert_eq!(partition_of(A, 16), (fnv1a64(A.as_bytes()) % 16) as u32);
    }

    #[test]
    fn map_run_children_share_their_runs_partition() {
        let c1 = "arn:aws:states:us-east-1:1:express:Orders/ProcessItems:run-7:child-1:u1";
        let c2 = "arn:aws:states:us-east-1:1:express:Orders/ProcessItems:run-7:child-2:u2";
        let other = "arn:aws:states:us-east-1:1:express:Orders/ProcessItems:run-8:child-1:u3";
        assert_eq!(partition_key(c1), partition_key(c2));
        assert_ne!(partition_key(c1), partition_key(other));
        for p in [1, 7, 64, 1024] {
            assert_eq!(partition_of(c1, p), partition_of(c2, p));
            assert!(partition_of(A, p) < p);
        }
    }

    #[test]
    fn executions_spread_over_partitions() {
        let mut counts = [0u32; 8];
        for i in 0..8000 {
            let arn = format!("arn:aws:states:us-east-1:1:execution:Orders:o-{i}");
            counts[partition_of(&arn, 8) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    #[test]
    fn names() {
        assert_eq!(subject("stepstitch", 3), "stepstitch.p.3");
        assert_eq!(message_id("req-1", 3, 0), "req-1/3/0");
        assert_ne!(message_id("req-1", 3, 0), message_id("req-1", 4, 0));
        assert_ne!(message_id("req-1", 3, 0), message_id("req-1", 3, 1));
    }
}
