//! The cost of cluster mode's JetStream hop against the single-process
//! write-ahead log, per event, over the same generated Firehose requests
//! (decoded beforehand: decoding costs the same either way):
//! - `wal`: append the request to the local write-ahead log, fsync'd (what
//!   a 200 waits for today);
//! - `jetstream`: group the request's events by partition and publish each
//!   group to a local `nats-server` (file storage), waiting for every
//!   acknowledgement (what a 200 would wait for in cluster mode); once with
//!   JetStream's default sync (every 2 minutes) and once with
//!   `sync_interval: always` (an fsync per message, like the WAL).
//!
//! `cargo bench --bench cluster` (200,000 events; a smoke run of 5,000 under
//! `cargo test --benches`). Needs `nats-server` (STEPSTITCH_NATS_BIN, or
//! .venv-nats from scripts/test.sh); without it, says so and ends.

use bytes::Bytes;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stepstitch::cluster::{Cluster, ClusterConfig};
use stepstitch::decode::body::decode_body;
use stepstitch::decode::{BodyLimits, Limits};
use stepstitch::durable::record::RequestRecord;
use stepstitch::durable::wal::{Wal, WalConfig, WalPayload};
use stepstitch::events::{Event, StreamParams};
use stepstitch::loadgen::traffic::{requests, Shape};

fn nats_bin() -> Option<PathBuf> {
    let p = std::env::var_os("STEPSTITCH_NATS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-nats/bin/nats-server")
        });
    p.exists().then_some(p)
}

struct Server(std::process::Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_nats(bin: &PathBuf, dir: &std::path::Path, sync_always: bool) -> (Server, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.join("nats.conf");
    let sync = if sync_always {
        "  sync_interval: \"always\"\n"
    } else {
        ""
    };
    std::fs::write(
        &conf,
        format!(
            "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: \"{}\"\n{sync}}}\n",
            dir.join("js").display()
        ),
    )
    .unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Server(child), format!("nats://127.0.0.1:{port}"))
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n_events = if full { 200_000 } else { 5_000 };
    let Some(bin) = nats_bin() else {
        println!("cluster bench skipped: no nats-server (scripts/test.sh installs it)");
        return;
    };
    let shape = Shape {
        request_bytes: 1 << 20,
        ..Shape::default()
    };
    let reqs = requests(&shape, 0, n_events, 1_780_000_000_000);
    let limits = BodyLimits {
        max_body_bytes: 80 << 20,
        decode: Limits::default(),
    };
    let decoded: Vec<(String, Bytes, Vec<Event>)> = reqs
        .iter()
        .map(|r| {
            let body = Bytes::from(r.body.clone());
            let events = decode_body(body.clone(), limits).unwrap().events;
            (r.id.clone(), body, events)
        })
        .collect();
    let events: usize = decoded.iter().map(|d| d.2.len()).sum();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let per_event = |d: Duration| d.as_secs_f64() * 1e6 / events as f64;
    println!(
        "{events} events in {} requests ({} partitions for JetStream)",
        decoded.len(),
        8
    );

    let dir = tempfile::tempdir().unwrap();
    let wal_time = rt.block_on(async {
        let (wal, _) = Wal::open(
            WalConfig {
                dir: dir.path().join("wal"),
                segment_bytes: 64 << 20,
                max_bytes: 64 << 30,
                fsync: true,
            },
            1,
        )
        .unwrap();
        let t0 = Instant::now();
        for (id, body, _) in &decoded {
            let head = RequestRecord {
                request_id: id.as_str().into(),
                received_at_ms: 0,
                source_arn: None,
                attributes: b"[]".as_slice().into(),
                body: body.as_ref().into(),
            }
            .encode_head();
            let pin = wal
                .append(WalPayload {
                    head,
                    body: body.clone(),
                })
                .await
                .unwrap();
            drop(pin);
        }
        t0.elapsed()
    });
    println!(
        "wal (fsync)                     {:>8.2} us/event  {:>10.0} events/s",
        per_event(wal_time),
        events as f64 / wal_time.as_secs_f64()
    );

    for sync_always in [false, true] {
        let d = tempfile::tempdir().unwrap();
        let (_server, url) = start_nats(&bin, d.path(), sync_always);
        let took = rt.block_on(async {
            let c = Cluster::connect(ClusterConfig {
                urls: url,
                name: "STEPSTITCH".into(),
                partitions: 8,
                replicas: 1,
                lease_ttl: Duration::from_secs(10),
                duplicate_window: Duration::from_secs(120),
                node: "bench".into(),
            })
            .await
            .unwrap();
            let params = Arc::new(StreamParams::default());
            let t0 = Instant::now();
            for (id, _, ev) in &decoded {
                c.publish(id, &params, ev).await.unwrap();
            }
            t0.elapsed()
        });
        println!(
            "jetstream ({:<16})      {:>8.2} us/event  {:>10.0} events/s",
            if sync_always {
                "sync always"
            } else {
                "default sync"
            },
            per_event(took),
            events as f64 / took.as_secs_f64()
        );
    }
}
