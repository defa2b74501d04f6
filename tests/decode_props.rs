//! Property tests of the record decoder: arbitrary bytes in any record never
//! panic, and decoded sizes stay within the configured budgets.

use base64::Engine;
use flate2::{write::GzEncoder, Compression};
use proptest::prelude::*;
use std::io::Write;
use stepstitch::decode::{Limits, RequestDecoder};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

const LIMITS: Limits = Limits {
    max_record_decoded_bytes: 8 * 1024,
    max_request_decoded_bytes: 32 * 1024,
};

fn sample_envelope() -> Vec<u8> {
    let line = r#"{"details":{"name":"S","input":"{\"a\":1}","inputDetails":{"truncated":false}},"redrive_count":"0","id":"2","type":"PassStateEntered","previous_event_id":"1","event_timestamp":"1773613269268","execution_arn":"arn:aws:states:us-east-1:418295736021:execution:Sm:e1"}"#;
    serde_json::to_vec(&serde_json::json!({
        "messageType": "DATA_MESSAGE", "owner": "1", "logGroup": "g", "logStream": "s",
        "subscriptionFilters": ["f"],
        "logEvents": [{"id": "1", "timestamp": 1773613269268i64, "message": line}]
    }))
    .unwrap()
}

/// Decodes every record and checks the invariants that must hold for any input.
fn check(records: &[String]) {
    let mut d = RequestDecoder::new(LIMITS);
    let mut total = 0u64;
    for r in records {
        let before = d.stats().decoded_bytes;
        d.decode_record(r);
        let grew = d.stats().decoded_bytes - before;
        assert!(
            grew <= LIMITS.max_record_decoded_bytes as u64,
            "record decoded {grew} bytes"
        );
        total += grew;
    }
    let (events, stats) = d.finish();
    assert_eq!(stats.decoded_bytes, total);
    assert!(stats.decoded_bytes <= LIMITS.max_request_decoded_bytes as u64);
    assert_eq!(stats.records as usize, records.len());
    assert_eq!(stats.events as usize, events.len());
    let kinds: u64 = stats.by_kind.iter().sum();
    assert_eq!(kinds, stats.records, "every record is classified once");
    assert!(stats.bad_records <= stats.records);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_as_record_data(records in prop::collection::vec(".{0,200}", 0..8)) {
        check(&records);
    }

    #[test]
    fn arbitrary_bytes_base64(records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 0..8)) {
        let records: Vec<String> = records.iter().map(|r| B64.encode(r)).collect();
        check(&records);
    }

    #[test]
    fn arbitrary_bytes_gzipped(records in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20_000), 0..6)) {
        // Large zero-heavy inputs exercise the budgets.
        let records: Vec<String> = records.iter().map(|r| B64.encode(gz(r))).collect();
        check(&records);
    }

    #[test]
    fn mutated_valid_records(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12), compress in any::<bool>()) {
        let mut bytes = if compress { gz(&sample_envelope()) } else { sample_envelope() };
        for (i, b) in flips {
            let n = bytes.len();
            bytes[i.index(n)] = b;
        }
        check(&[B64.encode(&bytes)]);
    }

    #[test]
    fn json_token_soup(s in r#"(\{|\}|\[|\]|"messageType"|"logEvents"|"DATA_MESSAGE"|"CONTROL_MESSAGE"|"execution_arn"|"type"|"id"|"details"|:|,|"[a-z:0-9]{0,12}"|[0-9]{1,20}|null|true|\n| ){0,60}"#) {
        check(&[B64.encode(s.as_bytes()), B64.encode(gz(s.as_bytes()))]);
    }
}

#[test]
fn valid_sample_decodes() {
    let mut d = RequestDecoder::new(LIMITS);
    d.decode_record(&B64.encode(gz(&sample_envelope())));
    let (events, stats) = d.finish();
    assert_eq!(events.len(), 1, "{stats:?}");
}

#[test]
fn request_budget_stops_decoding() {
    let mut d = RequestDecoder::new(LIMITS);
    let record = B64.encode(gz(&vec![b' '; 7 * 1024]));
    for _ in 0..10 {
        d.decode_record(&record);
    }
    let (_, stats) = d.finish();
    assert!(stats.decoded_bytes <= 32 * 1024);
    assert!(stats.failure(stepstitch::decode::FailureReason::RequestBudget) >= 1);
}
