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
//! - `acknowledgements`: what recording an export acknowledgement costs the
//!   exporter's thread, with and without the local journal, and how long
//!   a burst of them takes to be stored in NATS (the window a replica
//!   killed for good leaves);
//!
//! - `replicas`: whole `stepstitch serve` processes in cluster mode (1, then
//!   2 replicas on one local NATS), the requests posted over loopback to
//!   them in turn: events/s from the first post until every stored message
//!   is applied by its partition's owner; then one replica is SIGKILLed and
//!   the time until the other exports the first span of an execution of
//!   the dead one's partitions (failover: lease expiry, checkpoint, replay).
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

/// A `stepstitch serve` replica; killed on drop.
struct Replica {
    child: std::process::Child,
    ingest: String,
    admin: String,
    out: PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replica(url: &str, node: &str, dir: &std::path::Path, ttl: &str) -> Replica {
    use std::io::BufRead;
    let out = dir.join(format!("{node}.jsonl"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_stepstitch"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir.join(node))
        .arg("--export")
        .arg(format!("jsonl:{}", out.display()))
        .args([
            "--finalize-grace",
            "1s",
            "--cluster-nats-url",
            url,
            "--node-id",
            node,
        ])
        .args(["--cluster-partitions", "8", "--cluster-lease-ttl", ttl])
        .args([
            "--max-concurrent-requests",
            "8",
            "--log",
            "warn,stepstitch=info",
        ])
        .env_remove("STEPSTITCH_EXPORT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["message"] == "listening" {
                    let _ = tx.send((
                        v["ingest"].as_str().unwrap_or_default().to_owned(),
                        v["admin"].as_str().unwrap_or_default().to_owned(),
                    ));
                }
            }
        }
    });
    let (ingest, admin) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("replica started");
    Replica {
        child,
        ingest: format!("http://{ingest}/firehose"),
        admin: format!("http://{admin}/metrics"),
        out,
    }
}

async fn metric(c: &reqwest::Client, url: &str, series: &str) -> f64 {
    let text = match c.get(url).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => return 0.0,
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .unwrap_or(0.0)
}

async fn sum(c: &reqwest::Client, rs: &[Replica], series: &str) -> f64 {
    let mut n = 0.0;
    for r in rs {
        n += metric(c, &r.admin, series).await;
    }
    n
}

/// Posts every request (two at a time, to the replicas in turn), then
/// waits until every stored message is applied; returns the time taken.
async fn drive(rs: &[Replica], reqs: &[stepstitch::loadgen::traffic::Request]) -> Duration {
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let t0 = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let urls: Vec<String> = rs.iter().map(|r| r.ingest.clone()).collect();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (c, next, urls) = (c.clone(), next.clone(), urls.clone());
        let bodies: Vec<(String, Vec<u8>)> = reqs
            .iter()
            .map(|r| (r.id.clone(), r.body.clone()))
            .collect();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some((id, body)) = bodies.get(i) else {
                    return;
                };
                loop {
                    let r = c
                        .post(&urls[i % urls.len()])
                        .header("X-Amz-Firehose-Request-Id", id.as_str())
                        .header("Content-Type", "application/json")
                        .header("Content-Encoding", "gzip")
                        .body(body.clone())
                        .send()
                        .await;
                    if matches!(&r, Ok(a) if a.status() == 200) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stored = "stepstitch_cluster_published_messages_total{outcome=\"stored\"}";
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (s, a) = (
            sum(&c, rs, stored).await,
            sum(&c, rs, "stepstitch_cluster_applied_messages_total").await,
        );
        if (s > 0.0 && a >= s) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    t0.elapsed()
}

/// Executions (by ARN) with a span in `path`.
fn exported_arns(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            v["span"]["meta"]["step_function.execution_arn"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

fn replicas_section(bin: &PathBuf, rt: &tokio::runtime::Runtime, full: bool, n_events: usize) {
    use stepstitch::cluster::{assign::owner, partition::partition_of};
    let shape = Shape {
        request_bytes: 1 << 20,
        ..Shape::default()
    };
    let ttl = if full { "10s" } else { "2s" };
    for n in [1usize, 2] {
        let d = tempfile::tempdir().unwrap();
        let (_nats, url) = start_nats(bin, d.path(), false);
        let reqs = requests(&shape, (n as u64) << 32, n_events, 1_780_000_000_000);
        let events: usize = reqs.iter().map(|r| r.events).sum();
        let names: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
        let mut rs: Vec<Replica> = names
            .iter()
            .map(|nm| replica(&url, nm, d.path(), ttl))
            .collect();
        // Every replica owns its share before the clock starts.
        rt.block_on(async {
            let c = reqwest::Client::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while sum(&c, &rs, "stepstitch_cluster_owned_partitions").await < 8.0
                || (n == 2
                    && metric(&c, &rs[1].admin, "stepstitch_cluster_owned_partitions").await == 0.0)
            {
                assert!(Instant::now() < deadline, "partitions never settled");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let took = rt.block_on(drive(&rs, &reqs));
        println!(
            "replicas: {n}                     {:>8.2} us/event  {:>10.0} events/s  ({events} events, ingest to applied)",
            took.as_secs_f64() * 1e6 / events as f64,
            events as f64 / took.as_secs_f64()
        );
        if n < 2 {
            continue;
        }
        // Failover: fresh executions, acknowledged, then their owner dies
        // before exporting them (finalize grace 1 s).
        let more = requests(&shape, 9 << 32, 2_000, 1_790_000_000_000);
        let nodes: Vec<&str> = names.iter().map(String::as_str).collect();
        let dead: Vec<u32> = (0..8).filter(|p| owner(*p, &nodes) == Some("r1")).collect();
        let (t0, first) = rt.block_on(async {
            let c = reqwest::Client::builder().no_proxy().build().unwrap();
            for r in &more {
                c.post(&rs[0].ingest)
                    .header("X-Amz-Firehose-Request-Id", r.id.as_str())
                    .header("Content-Type", "application/json")
                    .header("Content-Encoding", "gzip")
                    .body(r.body.clone())
                    .send()
                    .await
                    .unwrap();
            }
            let _ = rs[1].child.kill();
            let t0 = Instant::now();
            let deadline = t0 + Duration::from_secs(120);
            loop {
                let got = exported_arns(&rs[0].out).into_iter().any(|a| {
                    let fresh = a
                        .rsplit("run-")
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .is_some_and(|n| n >= 9 << 32);
                    fresh && dead.contains(&partition_of(&a, 8))
                });
                if got || Instant::now() > deadline {
                    break (t0, got);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        println!(
            "failover (lease TTL {ttl:>3})           {:>8.2} s  kill to the first span from the new owner{}",
            t0.elapsed().as_secs_f64(),
            if first { "" } else { " (none seen!)" }
        );
        rs.clear();
    }
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
            let c = Cluster::connect(bench_config(url)).await.unwrap();
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
    acks_section(&bin, &rt, full);
    replicas_section(&bin, &rt, full, n_events);
}

/// One node's view of the bench's 8-partition stream.
fn bench_config(urls: String) -> ClusterConfig {
    ClusterConfig {
        urls,
        name: "STEPSTITCH".into(),
        partitions: 8,
        replicas: 1,
        lease_ttl: Duration::from_secs(10),
        duplicate_window: Duration::from_secs(120),
        node: "bench".into(),
    }
}

/// The export ledger's side: what recording a delivery costs the exporter
/// thread (the journal's write), and how long a burst of acknowledgements
/// takes to be stored in NATS (the window a replica killed for good leaves:
/// items delivered in it are sent again by the next owner).
fn acks_section(bin: &PathBuf, rt: &tokio::runtime::Runtime, full: bool) {
    use stepstitch::cluster::acks::AckStream;
    use stepstitch::durable::ledger::{AckLog, Signal};
    let d = tempfile::tempdir().unwrap();
    let (_server, url) = start_nats(bin, d.path(), false);
    let cfg = bench_config(url);
    rt.block_on(Cluster::connect(cfg.clone())).unwrap();
    let (bursts, burst) = if full { (300, 32) } else { (30, 32) };
    let ids: Vec<u64> = (0..8).collect();
    for journal in [false, true] {
        let acks = Arc::new(if journal {
            AckStream::with_journal(&d.path().join("acks")).unwrap().0
        } else {
            AckStream::new()
        });
        let stop = tokio_util::sync::CancellationToken::new();
        let thread = acks
            .spawn_thread(cfg.clone(), stop.clone(), Duration::from_secs(5))
            .unwrap();
        let mut record = Vec::with_capacity(bursts * burst);
        let mut window = Vec::with_capacity(bursts);
        for b in 0..bursts {
            let t0 = Instant::now();
            for i in 0..burst {
                let t = Instant::now();
                acks.acknowledge((b + i) % 8, 0, Signal::Spans, &ids);
                record.push(t.elapsed());
            }
            assert!(rt.block_on(acks.flush(Duration::from_secs(10))));
            window.push(t0.elapsed());
            std::thread::sleep(Duration::from_millis(2));
        }
        stop.cancel();
        thread.join().unwrap();
        record.sort();
        window.sort();
        let at = |v: &[Duration], q: f64| v[((v.len() - 1) as f64 * q) as usize];
        println!(
            "acknowledgements ({:<10})      {:>8.2} us/record (median)  burst of {burst} stored in {:.2} ms median, {:.2} ms p99",
            if journal { "journal" } else { "no journal" },
            at(&record, 0.5).as_secs_f64() * 1e6,
            at(&window, 0.5).as_secs_f64() * 1e3,
            at(&window, 0.99).as_secs_f64() * 1e3,
        );
    }
}
