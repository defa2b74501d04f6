//! Graceful shutdown (spec/interfaces.md): SIGTERM stops intake, finishes
//! in-flight requests, drains the hand-off, and exits 0.

mod common;

use common::firehose::{body, cwl_record, Post};
use common::fixtures::Fixture;
use common::Server;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let mut s = Server::start(&[]);
    let f = Fixture::load("redrive_task_failure");
    let payload = body("in-flight", &[cwl_record(&f.lines, f.state_machine())]);
    let (first, rest) = payload.split_at(payload.len() / 2);
    let (first, rest) = (first.to_vec(), rest.to_vec());

    // A request whose body is half sent when the signal arrives.
    let mut c = TcpStream::connect(s.ingest).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST /firehose HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Amz-Firehose-Request-Id: in-flight\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    );
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(&first).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    s.sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Draining: not ready, but the admin port still answers.
    let ready = s.client.get(s.admin_url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    // New connections are no longer accepted.
    assert!(Post::new(&s, "late")
        .send_result(body("late", &[]))
        .await
        .map(|a| a.status != 200)
        .unwrap_or(true));

    c.write_all(&rest).unwrap();
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&resp).contains("\"timestamp\"") {
        let n = c.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&resp)
        );
        resp.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"requestId\":\"in-flight\""));

    let status = tokio::task::block_in_place(|| s.wait_exit(Duration::from_secs(20)));
    assert_eq!(status.code(), Some(0));
    // Everything acknowledged reached the consumer before exit.
    assert_eq!(common::read_events(&s.events_out).len(), f.lines.len());
    let logs = s.logs();
    assert!(logs.iter().any(|l| l.contains("hand-off drained")));
    assert!(logs.iter().any(|l| l.contains("\"stopped\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_on_idle_server_exits_zero_quickly() {
    let mut s = Server::start(&[]);
    let ok = std::process::Command::new("kill")
        .args(["-INT", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = tokio::task::block_in_place(|| s.wait_exit(Duration::from_secs(5)));
    assert_eq!(status.code(), Some(0));
}
