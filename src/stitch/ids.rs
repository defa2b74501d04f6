//! Trace and span ids, bit for bit as Datadog's Lambda libraries derive
//! them (trace-model.md §1), so that a Lambda invoked by a state parents
//! its own span to ours without any context being passed.

use crate::events::lenient::write_iso8601_millis;
use sha2::{Digest, Sha256};

fn half(s: &str, upper: bool) -> u64 {
    let h = Sha256::digest(s.as_bytes());
    let bytes: [u8; 8] = if upper {
        h[0..8].try_into().unwrap()
    } else {
        h[8..16].try_into().unwrap()
    };
    let v = u64::from_be_bytes(bytes) & !(1u64 << 63);
    if v == 0 {
        1
    } else {
        v
    }
}

/// Bytes 0..8 of SHA-256(s), big-endian, bit 63 cleared, 0 → 1.
pub fn hi(s: &str) -> u64 {
    half(s, true)
}

/// Bytes 8..16 of SHA-256(s), big-endian, bit 63 cleared, 0 → 1.
pub fn lo(s: &str) -> u64 {
    half(s, false)
}

/// The trace id of an execution tree rooted at `root_execution_arn`.
pub fn trace_id(root_execution_arn: &str) -> u64 {
    lo(root_execution_arn)
}

/// `_dd.p.tid`: lowercase hex of the upper half, without zero padding.
pub fn trace_id_high_tag(root_execution_arn: &str) -> String {
    format!("{:x}", hi(root_execution_arn))
}

/// The span id of a state entered at `entered_ms` (epoch ms): the id a
/// Lambda invoked by that state computes as its parent.
pub fn state_span_id(
    execution_arn: &str,
    state_name: &str,
    entered_ms: i64,
    retry_count: u32,
    redrive_count: u32,
) -> u64 {
    use std::fmt::Write;
    // One buffer sized up front (`format!` grew it two or three times: a
    // span id per state, 1 % of the stitcher's thread).
    let mut key = String::with_capacity(execution_arn.len() + state_name.len() + 48);
    let _ = write!(key, "{execution_arn}#{state_name}#");
    write_iso8601_millis(&mut key, entered_ms);
    if retry_count != 0 || redrive_count != 0 {
        let _ = write!(key, "#{retry_count}#{redrive_count}");
    }
    hi(&key)
}

/// Any other span id: `hi` of a string naming the span's kind and its
/// defining event, so replays and retries produce the same id.
pub fn derived_span_id(execution_arn: &str, kind: &str, parts: &[&dyn std::fmt::Display]) -> u64 {
    let mut key = format!("{execution_arn}#{kind}");
    for p in parts {
        key.push('#');
        key.push_str(&p.to_string());
    }
    hi(&key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::lenient::parse_iso8601_millis;

    fn ms(iso: &str) -> i64 {
        parse_iso8601_millis(iso).unwrap()
    }

    const ACTIVITY: &str = "arn:aws:states:sa-east-1:425362996713:execution:abhinav-activity-state-machine:72a7ca3e-901c-41bb-b5a3-5f279b92a316";

    #[test]
    fn hash_primitive() {
        assert_eq!(lo("some_testing_random_string"), 7456137785171041414);
        assert_eq!(hi("some_testing_random_string"), 4364271812988819936);
    }

    #[test]
    fn trace_ids() {
        assert_eq!(trace_id(ACTIVITY), 435175499815315247);
        assert_eq!(trace_id_high_tag(ACTIVITY), "3e7a89d1b7310603");
        let agocs = "arn:aws:states:us-east-1:425362996713:execution:agocsTestSF:bc9f281c-3daa-4e5a-9a60-471a3810bf44";
        assert_eq!(trace_id(agocs), 5744042798732701615);
        assert_eq!(trace_id_high_tag(agocs), "1914fe7789eb32be");
        let inner = "arn:aws:states:sa-east-1:425362996713:execution:abhinav-inner-state-machine:912eaa4c-291a-488a-bda3-d06bcc21203d";
        assert_eq!(trace_id(inner), 3401561763239692811);
        assert_eq!(
            trace_id_high_tag(inner),
            "a49ff3b7fb47b0b",
            "15 chars: no zero padding"
        );
    }

    #[test]
    fn state_span_ids() {
        let t = ms("2024-12-04T19:38:04.118Z");
        assert_eq!(
            state_span_id(ACTIVITY, "Lambda Invoke", t, 0, 0),
            3929055471293792800
        );
        assert_eq!(
            state_span_id(ACTIVITY, "Lambda Invoke", t, 0, 1),
            8782364156266188026
        );
        let agocs = "arn:aws:states:us-east-1:425362996713:execution:agocsTestSF:bc9f281c-3daa-4e5a-9a60-471a3810bf44";
        assert_eq!(
            state_span_id(agocs, "agocsTest1", ms("2024-07-30T19:55:53.018Z"), 0, 0),
            2902498116043018663
        );
        let express = "arn:aws:states:sa-east-1:425362996713:express:logs-to-traces-sequential:85a9933e-9e11-83dc-6a61-b92367b6c3be:3f7ef5c7-c8b8-4c88-90a1-d54aa7e7e2bf";
        assert_eq!(
            state_span_id(express, "step-one", ms("2022-12-08T21:08:19.224Z"), 2, 0),
            7747304477664363642
        );
        assert_eq!(
            hi("arn:aws:states:sa-east-1:601427271234:express:DatadogStateMachine:acaf1a67-336a-e854-1599-2a627eb2dd8a:c8baf081-31f1-464d-971f-70cb17d01111#step-one#2022-12-08T21:08:19.224Z"),
            4340734536022949921
        );
    }

    #[test]
    fn derived_ids_are_pure() {
        let a = derived_span_id(ACTIVITY, "iteration", &[&7u64, &3u64]);
        assert_eq!(a, derived_span_id(ACTIVITY, "iteration", &[&7u64, &3u64]));
        assert_ne!(a, derived_span_id(ACTIVITY, "iteration", &[&7u64, &4u64]));
        assert_eq!(a, hi(&format!("{ACTIVITY}#iteration#7#3")));
    }
}
