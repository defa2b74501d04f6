//! firehose-protocol.md §5.2 "Protocol/HTTP", over a real loopback socket
//! against the real server binary.

mod common;

use common::firehose::{body, cwl_record, gz, Post};
use common::fixtures::Fixture;
use common::Server;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn one_record() -> Vec<String> {
    let f = Fixture::load("redrive_task_failure");
    vec![cwl_record(&f.lines, f.state_machine())]
}

#[tokio::test]
async fn success_answers_exactly_the_contract() {
    let s = Server::start(&[]);
    let a = Post::new(&s, "req-success")
        .send(body("req-success", &one_record()))
        .await;
    assert_eq!(a.status, 200);
    a.assert_contract("req-success");
    assert_eq!(s.events(28).await.len(), 28);
    assert_eq!(
        s.metric(r#"stepstitch_firehose_requests_total{status="200"}"#)
            .await,
        1.0
    );
}

#[tokio::test]
async fn missing_request_id_header_is_400_with_empty_id() {
    let s = Server::start(&[]);
    let mut p = Post::new(&s, "unused");
    p.request_id = None;
    let a = p.send(body("in-body-only", &one_record())).await;
    assert_eq!(a.status, 400);
    a.assert_contract("");
    assert!(a.json["errorMessage"]
        .as_str()
        .unwrap()
        .contains("Request-Id"));
    assert_eq!(s.metric("stepstitch_events_decoded_total").await, 0.0);
}

#[tokio::test]
async fn body_request_id_missing_or_different_the_header_wins() {
    let s = Server::start(&[]);
    let no_id = br#"{"timestamp": 1, "records": []}"#.to_vec();
    let a = Post::new(&s, "hdr-1").send(no_id).await;
    assert_eq!(a.status, 200);
    a.assert_contract("hdr-1");
    let a = Post::new(&s, "hdr-2")
        .send(body("body-2", &one_record()))
        .await;
    assert_eq!(a.status, 200);
    a.assert_contract("hdr-2");
    assert_eq!(
        s.metric("stepstitch_firehose_request_id_mismatch_total")
            .await,
        1.0
    );
    assert_eq!(
        s.events(28).await.len(),
        28,
        "the events of the mismatched request are kept"
    );
}

#[tokio::test]
async fn invalid_json_body_is_400_not_401() {
    let s = Server::start(&["--access-key", "k1"]);
    for bad in [
        &b"{not json"[..],
        b"[]",
        b"",
        b"{\"records\": 5}",
        b"{\"records\": [{\"data\": 7}]}",
    ] {
        let a = Post::new(&s, "bad-json").key("k1").send(bad.to_vec()).await;
        assert_eq!(a.status, 400, "{:?}", String::from_utf8_lossy(bad));
        a.assert_contract("bad-json");
    }
}

#[tokio::test]
async fn records_missing_or_empty_is_200() {
    let s = Server::start(&[]);
    for b in [
        &br#"{"requestId":"r","timestamp":1}"#[..],
        br#"{"requestId":"r","timestamp":1,"records":[]}"#,
    ] {
        let a = Post::new(&s, "r").send(b.to_vec()).await;
        assert_eq!(a.status, 200);
        a.assert_contract("r");
    }
}

#[tokio::test]
async fn content_encodings() {
    let s = Server::start(&[]);
    let plain = body("enc", &one_record());
    for enc in ["gzip", "GZIP", "x-gzip"] {
        let a = Post::new(&s, "enc")
            .header("content-encoding", enc)
            .send(gz(&plain))
            .await;
        assert_eq!(a.status, 200, "{enc}");
        a.assert_contract("enc");
    }
    // Multi-member gzip body: split the JSON in two members.
    let (left, right) = plain.split_at(plain.len() / 2);
    let mut two = gz(left);
    two.extend(gz(right));
    let a = Post::new(&s, "enc")
        .header("content-encoding", "gzip")
        .send(two)
        .await;
    assert_eq!(a.status, 200);
    // gzip without the header is sniffed by its magic bytes.
    let a = Post::new(&s, "enc").send(gz(&plain)).await;
    assert_eq!(a.status, 200);
    for enc in ["br", "deflate", "zstd"] {
        let a = Post::new(&s, "enc")
            .header("content-encoding", enc)
            .send(plain.clone())
            .await;
        assert_eq!(a.status, 415, "{enc}");
        a.assert_contract("enc");
    }
    // Corrupt gzip body.
    let mut broken = gz(&plain);
    broken.truncate(broken.len() / 2);
    let a = Post::new(&s, "enc")
        .header("content-encoding", "gzip")
        .send(broken)
        .await;
    assert_eq!(a.status, 400);
    a.assert_contract("enc");
    assert_eq!(s.events(28 * 5).await.len(), 28 * 5);
}

#[tokio::test]
async fn oversized_body_by_content_length_is_refused_in_contract_form() {
    let s = Server::start(&["--max-body-bytes", "1MiB"]);
    let big = vec![b' '; 2 << 20];
    let a = Post::new(&s, "big").send(big).await;
    assert_eq!(a.status, 413);
    a.assert_contract("big");
}

/// Raw HTTP/1.1 over a socket, for bodies reqwest will not send as-is.
fn raw_request(
    addr: std::net::SocketAddr,
    head: &str,
    body_parts: &[&[u8]],
    pause: Duration,
) -> (u16, serde_json::Value) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    c.write_all(head.as_bytes()).unwrap();
    for part in body_parts {
        // The server may answer and close before the whole body is sent.
        if c.write_all(part).is_err() {
            break;
        }
        std::thread::sleep(pause);
    }
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status: u16 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let json = text.split("\r\n\r\n").nth(1).map(|b| {
        // A chunked answer would need de-chunking; ours are Content-Length.
        serde_json::from_str(b.trim()).unwrap()
    });
    (status, json.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn oversized_chunked_body_is_refused_while_streaming() {
    let s = Server::start(&["--max-body-bytes", "1MiB"]);
    let chunk = format!("{:x}\r\n{}\r\n", 256 * 1024, " ".repeat(256 * 1024));
    let head = "POST /firehose HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Amz-Firehose-Request-Id: chunked\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let addr = s.ingest;
    let (status, json) = tokio::task::spawn_blocking(move || {
        let parts: Vec<&[u8]> = std::iter::repeat_n(chunk.as_bytes(), 8).collect();
        raw_request(addr, head, &parts, Duration::ZERO)
    })
    .await
    .unwrap();
    assert_eq!(status, 413);
    assert_eq!(json["requestId"], "chunked");
    assert!(json["errorMessage"]
        .as_str()
        .unwrap()
        .contains("larger than"));
}

#[tokio::test]
async fn decompression_bomb_body_is_capped() {
    let s = Server::start(&["--max-body-bytes", "2MiB"]);
    // 300 MiB of zeros gzip to about 300 KiB.
    let bomb = gz(&vec![0u8; 300 << 20]);
    assert!(bomb.len() < (1 << 20));
    let a = Post::new(&s, "bomb")
        .header("content-encoding", "gzip")
        .send(bomb)
        .await;
    assert_eq!(a.status, 413);
    a.assert_contract("bomb");
    let rss = s.peak_rss();
    assert!(
        rss < 100 << 20,
        "peak RSS {rss} bytes: the bomb was not capped"
    );
}

#[tokio::test]
async fn slow_request_times_out_in_contract_form() {
    let s = Server::start(&["--request-timeout", "1s"]);
    let head = "POST /firehose HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Amz-Firehose-Request-Id: slow\r\nContent-Length: 100\r\nConnection: close\r\n\r\n";
    let addr = s.ingest;
    let parts: Vec<&[u8]> = vec![b"{\"records\":", b"[]"];
    let (status, json) = tokio::task::spawn_blocking(move || {
        raw_request(addr, head, &parts, Duration::from_millis(1500))
    })
    .await
    .unwrap();
    assert_eq!(status, 503);
    assert_eq!(json["requestId"], "slow");
    assert!(json["timestamp"].is_i64());
    assert!(json["errorMessage"].is_string());
}

#[tokio::test]
async fn routes_methods_and_health() {
    let s = Server::start(&[]);
    let get = |url: String| {
        let c = s.client.clone();
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(s.url("/firehose")).await, 405);
    let other = s
        .client
        .post(s.url("/elsewhere"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    assert_eq!(get(s.url("/health")).await, 200);
    assert_eq!(get(s.admin_url("/health")).await, 200);
    assert_eq!(get(s.admin_url("/ready")).await, 200);
    let m = s.metrics().await;
    assert!(m.contains("stepstitch_ready 1"), "{m}");
    // The admin routes are not on the public port.
    assert_eq!(get(s.url("/metrics")).await, 404);
}

#[tokio::test]
async fn concurrent_request_limit_answers_503() {
    let s = Server::start(&["--max-concurrent-requests", "1"]);
    let addr = s.ingest;
    // Hold the only slot with a request whose body arrives slowly.
    let slow = std::thread::spawn(move || {
        let head = "POST /firehose HTTP/1.1\r\nHost: x\r\nX-Amz-Firehose-Request-Id: holder\r\nContent-Length: 14\r\nConnection: close\r\n\r\n";
        raw_request(
            addr,
            head,
            &[b"{\"records\"", b":[]}"],
            Duration::from_millis(800),
        )
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = Post::new(&s, "second").send(body("second", &[])).await;
    assert_eq!(a.status, 503);
    a.assert_contract("second");
    assert!(a.json["errorMessage"]
        .as_str()
        .unwrap()
        .contains("overloaded"));
    let (status, _) = tokio::task::spawn_blocking(move || slow.join().unwrap())
        .await
        .unwrap();
    assert_eq!(status, 200);
    let a = Post::new(&s, "third").send(body("third", &[])).await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn unexpected_protocol_version_is_accepted_and_counted() {
    let s = Server::start(&[]);
    let a = Post::new(&s, "v2")
        .header("x-amz-firehose-protocol-version", "2.0")
        .send(body("v2", &one_record()))
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(
        s.metric("stepstitch_firehose_protocol_version_unexpected_total")
            .await,
        1.0
    );
}

#[tokio::test]
async fn largest_legal_requests_are_accepted() {
    let s = Server::start(&[]);
    let f = Fixture::load("redrive_task_failure");
    // 10,000 records.
    let small = cwl_record(&f.lines[..1], f.state_machine());
    let many = vec![small; 10_000];
    let a = Post::new(&s, "ten-thousand")
        .send(body("ten-thousand", &many))
        .await;
    assert_eq!(a.status, 200);
    a.assert_contract("ten-thousand");

    // One record of exactly 1,024,000 decoded bytes (a plain envelope, padded).
    let mut env = common::firehose::envelope(&f.lines, f.state_machine());
    env.resize(1_024_000, b' ');
    let a = Post::new(&s, "max-record")
        .send(body("max-record", &[common::firehose::b64(&env)]))
        .await;
    assert_eq!(a.status, 200);

    // A 64 MiB body, plain and gzip'd: 66 records of about 1 MB base64 each.
    let line_set: Vec<String> = f.lines.iter().cycle().take(1300).cloned().collect();
    let env = common::firehose::envelope(&line_set, f.state_machine());
    assert!(env.len() < 1_024_000, "{}", env.len());
    let rec = common::firehose::b64(&env);
    let n = (64 << 20) / (rec.len() + 12);
    let big = body("max-body", &vec![rec; n]);
    assert!(
        big.len() > 63 << 20 && big.len() <= 64 << 20,
        "{}",
        big.len()
    );
    let a = Post::new(&s, "max-body").send(big.clone()).await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    let a = Post::new(&s, "max-body-gz").gzip().send(big).await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    let expected = 10_000 + 28 + 2 * 1300 * n;
    s.settled().await;
    assert_eq!(
        s.metric("stepstitch_events_decoded_total").await as usize,
        expected
    );
    assert_eq!(
        s.metric("stepstitch_firehose_requests_total{status=\"200\"}")
            .await,
        4.0
    );
}
