//! firehose-protocol.md §5.2 "Records" and "Common attributes", over a real
//! socket: every record form AWS can deliver, and every kind of bad record.

mod common;

use common::firehose::{b64, body, control_envelope, cwl_record, envelope, gz, Post};
use common::fixtures::Fixture;
use common::Server;
use serde_json::{json, Value};

/// A server whose event consumer writes to a FIFO that nobody reads yet:
/// once the pipe buffer fills, the consumer blocks, so the queues before it
/// fill up. Reading the returned file ends the stall.
fn stalled_server(args: &[&str]) -> (Server, std::fs::File, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("events.fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || std::fs::File::open(reader_path).unwrap());
    let mut all = vec!["--events-out", fifo.to_str().unwrap()];
    all.extend_from_slice(args);
    let s = Server::start(&all);
    (s, reader.join().unwrap(), dir)
}

fn fixture() -> Fixture {
    Fixture::load("redrive_task_failure")
}

fn metric_name(reason: &str) -> String {
    format!("stepstitch_decode_failures_total{{reason=\"{reason}\"}}")
}

#[tokio::test]
async fn gzip_envelope_is_exploded_with_its_metadata() {
    let s = Server::start(&[]);
    let f = fixture();
    let a = Post::new(&s, "cwl")
        .send(body("cwl", &[cwl_record(&f.lines, f.state_machine())]))
        .await;
    assert_eq!(a.status, 200);
    let events = s.events(f.lines.len()).await;
    assert_eq!(events.len(), f.lines.len());
    for (e, line) in events.iter().zip(&f.lines) {
        let l: Value = serde_json::from_str(line).unwrap();
        assert_eq!(e["execution_arn"], l["execution_arn"]);
        assert_eq!(e["id"].to_string(), l["id"].as_str().unwrap());
        assert_eq!(e["type"], l["type"]);
        assert_eq!(
            e["timestamp_ms"].to_string(),
            l["event_timestamp"].as_str().unwrap()
        );
        let src = &e["source"];
        assert_eq!(src["owner"], "418295736021");
        assert_eq!(
            src["log_group"],
            "/aws/vendedlogs/states/PaymentSettlement-Logs"
        );
        assert_eq!(
            src["log_stream"],
            "states/PaymentSettlement/2026-11-24-10-00/1a2b3c4d"
        );
        assert_eq!(src["subscription_filters"], json!(["to-stepstitch"]));
    }
    assert_eq!(
        s.metric(r#"stepstitch_firehose_records_total{kind="data_message"}"#)
            .await,
        1.0
    );
    assert_eq!(s.metric("stepstitch_firehose_log_events_total").await, 28.0);
}

#[tokio::test]
async fn control_message_is_dropped_and_counted() {
    let s = Server::start(&[]);
    let a = Post::new(&s, "ctl")
        .send(body("ctl", &[b64(&gz(&control_envelope()))]))
        .await;
    assert_eq!(a.status, 200);
    a.assert_contract("ctl");
    assert_eq!(
        s.metric("stepstitch_firehose_control_messages_total").await,
        1.0
    );
    assert_eq!(
        s.metric(r#"stepstitch_firehose_records_total{kind="control_message"}"#)
            .await,
        1.0
    );
    assert_eq!(s.metric("stepstitch_events_decoded_total").await, 0.0);
}

#[tokio::test]
async fn plain_envelope_and_message_extraction_forms() {
    let s = Server::start(&[]);
    let f = fixture();
    let l = &f.lines;
    let records = vec![
        // Firehose decompression on: plain envelope JSON.
        b64(&envelope(&l[0..4], f.state_machine())),
        // Message extraction: one line.
        b64(l[4].as_bytes()),
        // Several lines, newline-separated (with a trailing newline).
        b64(format!("{}\n{}\n", l[5], l[6]).as_bytes()),
        // Several lines back to back, no delimiter.
        b64(format!("{}{}{}", l[7], l[8], l[9]).as_bytes()),
        // Extracted lines, gzip'd by the producer.
        b64(&gz(format!("{}\r\n{}", l[10], l[11]).as_bytes())),
    ];
    let a = Post::new(&s, "forms").send(body("forms", &records)).await;
    assert_eq!(a.status, 200);
    let events = s.events(12).await;
    let ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=12).collect::<Vec<_>>());
    assert!(events[..4].iter().all(|e| e["source"].is_object()));
    assert!(events[4..].iter().all(|e| e.get("source").is_none()));
    assert_eq!(
        s.metric(r#"stepstitch_firehose_records_total{kind="extracted_lines"}"#)
            .await,
        4.0
    );
    assert_eq!(
        s.metric(r#"stepstitch_firehose_records_total{kind="data_message"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn several_envelopes_and_gzip_members_in_one_record() {
    let s = Server::start(&[]);
    let f = fixture();
    let (a, b, c) = (&f.lines[0..5], &f.lines[5..10], &f.lines[10..15]);
    let sm = f.state_machine();
    // `}{` back to back, then newline-separated, inside one gzip member.
    let mut joined = envelope(a, sm);
    joined.extend(envelope(b, sm));
    joined.push(b'\n');
    joined.extend(envelope(c, sm));
    // Three gzip members, one envelope each.
    let mut members = gz(&envelope(a, sm));
    members.extend(gz(&envelope(b, sm)));
    members.extend(gz(&envelope(c, sm)));
    let resp = Post::new(&s, "multi")
        .send(body("multi", &[b64(&gz(&joined)), b64(&members)]))
        .await;
    assert_eq!(resp.status, 200);
    let events = s.events(30).await;
    assert_eq!(events.len(), 30);
    assert_eq!(events[14]["id"], 15);
    assert_eq!(events[29]["id"], 15);
}

#[tokio::test]
async fn bad_records_are_skipped_and_counted_the_batch_is_200() {
    let s = Server::start(&[]);
    let f = fixture();
    let good = cwl_record(&f.lines, f.state_machine());
    let mut corrupt_gzip = gz(&envelope(&f.lines, f.state_machine()));
    corrupt_gzip.truncate(corrupt_gzip.len() / 2);
    let mut non_utf8 = envelope(&f.lines[..1], f.state_machine());
    let pos = non_utf8.windows(9).position(|w| w == b"messageTy").unwrap() + 2;
    non_utf8[pos] = 0xff;
    let padded = format!("  \n{}\t\r\n", good);
    let records = vec![
        good.clone(),
        String::new(),                                     // empty record
        padded,                                            // whitespace-padded base64
        "%%% not base64 %%%".into(),                       // invalid base64
        b64(&corrupt_gzip),                                // gzip magic, corrupt stream
        b64(&non_utf8),                                    // invalid UTF-8 inside JSON
        b64(b"direct-put-record"),                         // not JSON
        b64(br#"{"hello":"world"}"#),                      // JSON, not Step Functions
        b64(br#"{"messageType":"WEIRD","logEvents":[]}"#), // unknown envelope type
    ];
    let a = Post::new(&s, "mixed").send(body("mixed", &records)).await;
    assert_eq!(a.status, 200);
    a.assert_contract("mixed");
    let events = s.events(56).await;
    assert_eq!(events.len(), 56, "both good records decoded");
    s.settled().await;
    assert_eq!(s.metric(&metric_name("base64")).await, 1.0);
    assert_eq!(s.metric(&metric_name("gzip")).await, 1.0);
    assert_eq!(s.metric(&metric_name("json")).await, 2.0);
    assert_eq!(s.metric(&metric_name("not_step_functions")).await, 1.0);
    assert_eq!(s.metric(&metric_name("unknown_message_type")).await, 1.0);
    assert_eq!(
        s.metric(r#"stepstitch_firehose_records_total{kind="empty"}"#)
            .await,
        1.0
    );
    assert_eq!(
        s.metric(r#"stepstitch_firehose_records_total{kind="other"}"#)
            .await,
        1.0
    );
    assert_eq!(
        s.metric(r#"stepstitch_firehose_records_total{kind="invalid"}"#)
            .await,
        5.0
    );
    let warn = s
        .logs()
        .into_iter()
        .find(|l| l.contains("skipped undecodable"))
        .unwrap();
    assert!(
        warn.contains("\"request_id\":\"mixed\""),
        "request id in the log: {warn}"
    );
}

#[tokio::test]
async fn control_plus_data_plus_bad_batch() {
    let s = Server::start(&[]);
    let f = fixture();
    let records = vec![
        b64(&gz(&control_envelope())),
        cwl_record(&f.lines[..10], f.state_machine()),
        "not-base64!".into(),
        b64(&gz(&control_envelope())),
    ];
    let a = Post::new(&s, "alloy-shape")
        .gzip()
        .send(body("alloy-shape", &records))
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(s.events(10).await.len(), 10);
    assert_eq!(
        s.metric("stepstitch_firehose_control_messages_total").await,
        2.0
    );
    assert_eq!(s.metric(&metric_name("base64")).await, 1.0);
}

#[tokio::test]
async fn all_records_bad_is_400_so_firehose_keeps_them() {
    let s = Server::start(&[]);
    let records = vec!["@@@".to_string(), b64(b"plain text, not json")];
    let a = Post::new(&s, "all-bad")
        .send(body("all-bad", &records))
        .await;
    assert_eq!(a.status, 400);
    a.assert_contract("all-bad");
    let msg = a.json["errorMessage"].as_str().unwrap();
    assert!(
        msg.contains("all 2 records") && msg.contains("base64"),
        "{msg}"
    );
    // Well-formed content that is not ours is not "bad": only control messages → 200.
    let a = Post::new(&s, "ctl-only")
        .send(body("ctl-only", &[b64(&gz(&control_envelope()))]))
        .await;
    assert_eq!(a.status, 200);
    let other_logs = json!({"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s",
        "subscriptionFilters":[],"logEvents":[{"id":"1","timestamp":1,"message":"START RequestId: abc"}]});
    let a = Post::new(&s, "other")
        .send(body(
            "other",
            &[b64(&gz(other_logs.to_string().as_bytes()))],
        ))
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(s.metric(&metric_name("not_step_functions")).await, 1.0);
}

#[tokio::test]
async fn record_and_request_decoded_budgets() {
    let s = Server::start(&[
        "--max-record-decoded-bytes",
        "2MiB",
        "--max-request-decoded-bytes",
        "3MiB",
    ]);
    let f = fixture();
    let good = cwl_record(&f.lines, f.state_machine());
    // A record inflating past the per-record limit is skipped; the others pass.
    let bomb = b64(&gz(&vec![b' '; 50 << 20]));
    let a = Post::new(&s, "rec-bomb")
        .send(body("rec-bomb", &[good.clone(), bomb.clone()]))
        .await;
    assert_eq!(a.status, 200);
    s.settled().await;
    assert_eq!(s.metric(&metric_name("too_large")).await, 1.0);
    assert_eq!(s.events(28).await.len(), 28);
    // Past the request budget the whole request is refused (never half-accepted).
    let near = b64(&gz(&vec![b' '; (2 << 20) - 100]));
    let a = Post::new(&s, "req-budget")
        .send(body("req-budget", &[good.clone(), near.clone(), near]))
        .await;
    assert_eq!(a.status, 400);
    a.assert_contract("req-budget");
    assert!(a.json["errorMessage"].as_str().unwrap().contains("budget"));
    // Refused from the records' gzip trailers, before anything was inflated.
    assert_eq!(s.metric("stepstitch_events_decoded_total").await, 28.0);
    assert_eq!(s.metric("stepstitch_events_consumed_total").await, 28.0);
    assert!(
        s.peak_rss() < 150 << 20,
        "budgets did not bound memory: {}",
        s.peak_rss()
    );
}

#[tokio::test]
async fn common_attributes_forms_and_limits() {
    let s = Server::start(&[]);
    let f = fixture();
    let recs = vec![cwl_record(&f.lines[..2], f.state_machine())];
    let wrapped = r#"{"commonAttributes":{"service":"payments","env":"prod"}}"#;
    let flat = r#"{"service":"payments"}"#;
    let mut fifty = serde_json::Map::new();
    for i in 0..52 {
        fifty.insert(format!("attr{i:02}"), Value::String("v".repeat(1024)));
    }
    let big = json!({ "commonAttributes": fifty }).to_string();
    for (i, h) in [wrapped, flat, "{not json", big.as_str()]
        .iter()
        .enumerate()
    {
        let id = format!("attrs-{i}");
        let a = Post::new(&s, &id)
            .header("x-amz-firehose-common-attributes", h)
            .send(body(&id, &recs))
            .await;
        assert_eq!(a.status, 200, "{h}");
    }
    assert_eq!(
        s.metric("stepstitch_firehose_common_attributes_invalid_total")
            .await,
        1.0
    );
    assert_eq!(
        s.metric("stepstitch_firehose_common_attributes_dropped_total")
            .await,
        2.0
    );
    assert_eq!(
        s.events(8).await.len(),
        8,
        "a malformed header never costs data"
    );
}

#[tokio::test]
async fn queue_full_answers_503_and_recovers() {
    let (s, mut reader, _dir) = stalled_server(&[
        "--queue-capacity-events",
        "200",
        "--decode-queue-bytes",
        "1KiB",
        "--handoff-wait",
        "200ms",
    ]);
    let f = fixture();
    let rec = cwl_record(&f.lines, f.state_machine());
    let mut saw_503 = false;
    for i in 0..200 {
        let id = format!("fill-{i}");
        let a = Post::new(&s, &id)
            .send(body(&id, std::slice::from_ref(&rec)))
            .await;
        if a.status == 503 {
            a.assert_contract(&id);
            assert!(a.json["errorMessage"]
                .as_str()
                .unwrap()
                .contains("queue is full"));
            saw_503 = true;
            break;
        }
        assert_eq!(a.status, 200);
    }
    assert!(saw_503, "the hand-off never filled");
    let queued = s.metric("stepstitch_handoff_queued_events").await;
    assert!(queued <= 200.0, "queue over its bound: {queued}");
    // Drain the FIFO: the consumer resumes and requests are accepted again.
    let drain = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut reader, &mut sink);
    });
    let mut recovered = false;
    for _ in 0..100 {
        let a = Post::new(&s, "after")
            .send(body("after", std::slice::from_ref(&rec)))
            .await;
        if a.status == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(recovered);
    drop(s);
    drain.join().unwrap();
}

/// Decoding runs after the answer: with the stitching side stalled, requests
/// are still acknowledged (durable and queued) until the decode queue's byte
/// bound is reached, and every one of them is decoded once the stall ends.
#[tokio::test]
async fn requests_are_acknowledged_before_decoding_and_decoded_after() {
    let (s, mut reader, _dir) = stalled_server(&[
        "--queue-capacity-events",
        "100",
        "--decode-queue-bytes",
        "64KiB",
        "--handoff-wait",
        "200ms",
    ]);
    let f = fixture();
    let rec = cwl_record(&f.lines, f.state_machine());
    let one = body("x", std::slice::from_ref(&rec)).len();
    // Far more events than the hand-off holds, in less than the decode queue.
    let n = (60 << 10) / one;
    assert!(n * 28 > 4 * 100, "{n} requests");
    for i in 0..n {
        let id = format!("early-{i}");
        let a = Post::new(&s, &id)
            .send(body(&id, std::slice::from_ref(&rec)))
            .await;
        assert_eq!(
            a.status, 200,
            "{id}: acknowledged while decoding is stalled"
        );
    }
    let consumed = s.metric("stepstitch_events_consumed_total").await as usize;
    assert!(consumed < n * 28, "the stall held nothing back: {consumed}");
    assert!(s.metric("stepstitch_decode_queue_bytes").await > 0.0);
    // Past the byte bound the next request is refused, not buffered.
    let mut refused = false;
    for i in 0..n {
        let id = format!("over-{i}");
        let a = Post::new(&s, &id)
            .send(body(&id, std::slice::from_ref(&rec)))
            .await;
        if a.status == 503 {
            refused = true;
            break;
        }
        assert_eq!(a.status, 200);
    }
    assert!(refused, "the decode queue never filled");
    let drain = std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut reader, &mut sink);
    });
    s.settled().await;
    let decoded = s.metric("stepstitch_requests_decoded_total").await as usize;
    assert!(decoded >= n, "{decoded} of at least {n} requests decoded");
    let events = s.metric("stepstitch_events_decoded_total").await as usize;
    assert_eq!(
        events,
        decoded * 28,
        "every acknowledged request decoded whole"
    );
    drop(s);
    drain.join().unwrap();
}
