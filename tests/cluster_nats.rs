//! Cluster mode's building blocks against a real NATS server with
//! JetStream (tests/common/nats.rs): publishing a request's events per
//! partition with Firehose-retry de-duplication, the partition count fixed
//! at creation, leases held by one replica at a time, expiry and takeover,
//! and coordinators that share the partitions and rebalance when a replica
//! dies or joins.

mod common;

use common::fixtures::Fixture;
use common::nats::Nats;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stepstitch::cluster::partition::partition_of;
use stepstitch::cluster::{Change, Cluster, ClusterConfig, Coordinator};
use stepstitch::events::StreamParams;

fn config(nats: &Nats, node: &str, partitions: u32, ttl: Duration) -> ClusterConfig {
    ClusterConfig {
        urls: nats.url.clone(),
        name: "STEPSTITCH".into(),
        partitions,
        replicas: 1,
        lease_ttl: ttl,
        duplicate_window: Duration::from_secs(120),
        node: node.into(),
    }
}

#[tokio::test]
async fn a_request_is_stored_once_per_partition_even_when_retried() {
    let dir = tempfile::tempdir().unwrap();
    let Some(nats) = Nats::start(dir.path()) else {
        return;
    };
    let c = Cluster::connect(config(&nats, "a", 8, Duration::from_secs(5)))
        .await
        .unwrap();
    let f = Fixture::load("moto_map_nested_parallel");
    let mut events = Vec::new();
    for (_, line) in f.copies(6) {
        let mut cache = stepstitch::events::StringCache::default();
        events.push(stepstitch::events::parse_log_line(&line, &mut cache).unwrap());
    }
    let touched: BTreeSet<u32> = events
        .iter()
        .map(|e| partition_of(&e.execution_arn, 8))
        .collect();
    let params = StreamParams::from_pairs([("service".to_string(), "orders".to_string())]);
    let first = c.publish("req-1", &params, &events).await.unwrap();
    assert_eq!(first.messages, touched.len());
    assert_eq!(first.duplicates, 0);
    // Firehose retries the same request: acknowledged, stored once.
    let again = c.publish("req-1", &params, &events).await.unwrap();
    assert_eq!(again.duplicates, touched.len());
    let mut stream = c.js.get_stream("STEPSTITCH").await.unwrap();
    assert_eq!(
        stream.info().await.unwrap().state.messages as usize,
        touched.len()
    );
    // Each message holds its partition's events, readable as log lines.
    let mut read = 0;
    for p in &touched {
        let subject = format!("stepstitch.p.{p}");
        let m = stream
            .get_last_raw_message_by_subject(&subject)
            .await
            .unwrap();
        let body = String::from_utf8(m.payload.to_vec()).unwrap();
        let mut cache = stepstitch::events::StringCache::default();
        for line in body.lines() {
            let e = stepstitch::events::parse_log_line(line, &mut cache).unwrap();
            assert_eq!(partition_of(&e.execution_arn, 8), *p);
            read += 1;
        }
    }
    assert_eq!(read, events.len());

    // A full-size Firehose request (about 28,000 events, 1 MiB gzipped):
    // a partition's share is past NATS's 1 MiB message limit, so it goes
    // out in chunks, each de-duplicated on a retry like the rest.
    let big = stepstitch::loadgen::traffic::requests(
        &stepstitch::loadgen::traffic::Shape {
            request_bytes: 1 << 20,
            ..Default::default()
        },
        0,
        20_000,
        1_780_000_000_000,
    );
    let body = bytes::Bytes::from(big[0].body.clone());
    let decoded = stepstitch::decode::body::decode_body(
        body,
        stepstitch::decode::BodyLimits {
            max_body_bytes: 80 << 20,
            decode: Default::default(),
        },
    )
    .unwrap()
    .events;
    assert!(decoded.len() > 10_000);
    let stored = c.publish("big-1", &params, &decoded).await.unwrap();
    assert!(stored.messages > 8, "{stored:?}");
    let again = c.publish("big-1", &params, &decoded).await.unwrap();
    assert_eq!(again.duplicates, stored.messages);

    // The partition count is fixed once the stream exists.
    let err = Cluster::connect(config(&nats, "b", 16, Duration::from_secs(5)))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("created with 8 partitions"), "{err}");

    // The duplicate window is a setting: a replica set to another one
    // updates the stream.
    let mut cfg = config(&nats, "c", 8, Duration::from_secs(5));
    cfg.duplicate_window = Duration::from_secs(300);
    let c = Cluster::connect(cfg).await.unwrap();
    let mut s = c.js.get_stream("STEPSTITCH").await.unwrap();
    assert_eq!(
        s.info().await.unwrap().config.duplicate_window,
        Duration::from_secs(300)
    );
}

#[tokio::test]
async fn a_lease_has_one_holder_until_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let Some(nats) = Nats::start(dir.path()) else {
        return;
    };
    let ttl = Duration::from_secs(2);
    let a = Cluster::connect(config(&nats, "a", 4, ttl)).await.unwrap();
    let b = Cluster::connect(config(&nats, "b", 4, ttl)).await.unwrap();
    let rev = a.acquire(0).await.unwrap().expect("free");
    assert_eq!(b.acquire(0).await.unwrap(), None, "held by a");
    assert_eq!(a.holder(0).await.unwrap().as_deref(), Some("a"));
    // Renewed, it stays a's past the TTL.
    let mut rev = rev;
    for _ in 0..4 {
        tokio::time::sleep(ttl / 3).await;
        rev = a.renew(0, rev).await.unwrap().expect("still a's");
    }
    assert_eq!(b.acquire(0).await.unwrap(), None);
    // a stops renewing (it died): after the TTL, b takes it, and a's
    // renewal at its old revision fails.
    let deadline = Instant::now() + ttl * 5;
    let taken = loop {
        if let Some(r) = b.acquire(0).await.unwrap() {
            break r;
        }
        assert!(Instant::now() < deadline, "lease never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(a.renew(0, rev).await.unwrap(), None);
    assert_eq!(b.holder(0).await.unwrap().as_deref(), Some("b"));
    // A release at a stale revision leaves the new holder alone.
    a.release(0, rev).await.unwrap();
    assert_eq!(b.holder(0).await.unwrap().as_deref(), Some("b"));
    b.release(0, taken).await.unwrap();
    assert_eq!(b.holder(0).await.unwrap(), None);
    assert!(a.acquire(0).await.unwrap().is_some());
}

/// Steps every coordinator until each partition has exactly one holder
/// among them and that is who `assign` says; returns partition → node.
async fn settle(cs: &mut [Coordinator], partitions: u32) -> BTreeMap<u32, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for c in cs.iter_mut() {
            for change in c.step().await.unwrap() {
                // A runner would checkpoint first; there is none here.
                if let Change::HandOver(p) = change {
                    c.release(p).await.unwrap();
                }
            }
        }
        let mut owners: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for c in cs.iter() {
            for p in c.owned() {
                owners
                    .entry(p)
                    .or_default()
                    .push(c.cluster.cfg.node.clone());
            }
        }
        let names: Vec<String> = cs.iter().map(|c| c.cluster.cfg.node.clone()).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let settled = (0..partitions).all(|p| {
            owners.get(&p).is_some_and(|o| {
                o.len() == 1 && Some(o[0].as_str()) == stepstitch::cluster::assign::owner(p, &refs)
            })
        });
        if settled {
            return owners.into_iter().map(|(p, o)| (p, o[0].clone())).collect();
        }
        assert!(Instant::now() < deadline, "never settled: {owners:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn coordinators_share_partitions_and_rebalance_on_death_and_join() {
    let dir = tempfile::tempdir().unwrap();
    let Some(nats) = Nats::start(dir.path()) else {
        return;
    };
    let ttl = Duration::from_secs(2);
    let partitions = 12;
    let mut cs = Vec::new();
    for n in ["a", "b", "c"] {
        let c = Cluster::connect(config(&nats, n, partitions, ttl))
            .await
            .unwrap();
        cs.push(Coordinator::new(c));
    }
    let three = settle(&mut cs, partitions).await;
    assert_eq!(three.len(), partitions as usize);
    // The KV agrees with what each coordinator believes.
    for (p, n) in &three {
        assert_eq!(cs[0].cluster.holder(*p).await.unwrap().as_ref(), Some(n));
    }

    // "c" dies: no release, its heartbeat and leases expire; a and b take
    // its partitions, and only those move.
    let dead = cs.pop().unwrap();
    let its: BTreeSet<u32> = dead.owned().into_iter().collect();
    drop(dead);
    let two = settle(&mut cs, partitions).await;
    for (p, n) in &two {
        if !its.contains(p) {
            assert_eq!(&three[p], n, "partition {p} moved between live replicas");
        }
    }

    // "d" joins: it takes its share, released by the others first.
    let mut d = Coordinator::new(
        Cluster::connect(config(&nats, "d", partitions, ttl))
            .await
            .unwrap(),
    );
    let first = d.step().await.unwrap();
    assert!(
        first.iter().all(|c| matches!(c, Change::Acquired(_))),
        "{first:?}"
    );
    cs.push(d);
    let joined = settle(&mut cs, partitions).await;
    assert!(joined.values().any(|n| n == "d"));
    for (p, n) in &joined {
        if n != "d" {
            assert_eq!(&two[p], n, "partition {p} moved between old replicas");
        }
    }

    // A clean stop: the leaving replica leaves the member list and keeps
    // renewing its leases past the TTL while its owners would checkpoint;
    // the others want its partitions but take none while they are held.
    let mut leaving = cs.remove(0);
    let held = leaving.owned();
    leaving.leave().await;
    let until = Instant::now() + ttl + ttl / 2;
    while Instant::now() < until {
        assert!(leaving.renew_held().await.unwrap().is_empty());
        for c in cs.iter_mut() {
            for change in c.step().await.unwrap() {
                assert!(
                    !matches!(change, Change::Acquired(p) if held.contains(&p)),
                    "{change:?} while the leaving replica holds it"
                );
            }
        }
        tokio::time::sleep(ttl / 4).await;
    }
    assert_eq!(leaving.owned(), held);
    for p in &held {
        assert_eq!(
            cs[0].cluster.holder(*p).await.unwrap().as_deref(),
            Some(leaving.cluster.cfg.node.as_str())
        );
    }
    // Then it gives them back: taken at once, without waiting for the TTL.
    let gone = leaving.release_all().await.unwrap();
    assert!(!gone.is_empty());
    let started = Instant::now();
    settle(&mut cs, partitions).await;
    assert!(started.elapsed() < ttl, "took {:?}", started.elapsed());
}

fn joins() -> Arc<stepstitch::stitch::joins::JoinRegistry> {
    Arc::new(stepstitch::stitch::joins::JoinRegistry::new(1024))
}

/// `(span id → name, resource, parent, start, duration, error)` of spans.
fn span_keys<'a>(
    spans: impl Iterator<Item = &'a stepstitch::stitch::span::Span>,
) -> (BTreeMap<u64, String>, usize) {
    let mut out = BTreeMap::new();
    let mut n = 0;
    for s in spans {
        n += 1;
        out.insert(
            s.span_id,
            format!(
                "{} {} {} {} {} {}",
                s.name, s.resource, s.parent_id, s.start, s.duration, s.error
            ),
        );
    }
    (out, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_stitch_their_partitions_as_one_process_would_and_resume_from_checkpoints() {
    use stepstitch::cluster::runner::Runner;
    let dir = tempfile::tempdir().unwrap();
    let Some(nats) = Nats::start(dir.path()) else {
        return;
    };
    let partitions = 4;
    let c = Cluster::connect(config(&nats, "a", partitions, Duration::from_secs(5)))
        .await
        .unwrap();
    // Executions without cross-partition joins (Distributed Map children
    // join their parent through hints, which are not carried yet).
    let fs: Vec<Fixture> = common::fixtures::all()
        .into_iter()
        .filter(|f| {
            f.meta["logging"]["level"] == "ALL"
                && f.include_execution_data()
                && !f.lines.is_empty()
                && !f.meta["features"].to_string().contains("distributed_map")
        })
        .take(60)
        .collect();
    // Every line, in a fixed shuffle, as requests of 40 events.
    let mut lines = common::fixtures::lines_of(&fs);
    let mut x: u64 = 7;
    for i in (1..lines.len()).rev() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lines.swap(i, (x >> 33) as usize % (i + 1));
    }
    let mut cache = stepstitch::events::StringCache::default();
    let requests: Vec<Vec<stepstitch::events::Event>> = lines
        .chunks(40)
        .map(|ch| {
            ch.iter()
                .map(|(_, l)| stepstitch::events::parse_log_line(l, &mut cache).unwrap())
                .collect()
        })
        .collect();
    let half = requests.len() / 2;
    let params = StreamParams::default();
    for (i, r) in requests[..half].iter().enumerate() {
        c.publish(&format!("req-{i}"), &params, r).await.unwrap();
    }
    let cfg = Arc::new(stepstitch::stitch::StitchConfig::default());
    let mut emitted = Vec::new();
    // First owners: everything so far, the finished executions emitted
    // (a minute passes: past the grace, not the idle timeout), a
    // checkpoint; then they die.
    for p in 0..partitions {
        let (mut r, _) = Runner::open(&c, p, cfg.clone(), 10_000, joins())
            .await
            .unwrap();
        r.catch_up(&c, Duration::from_millis(300), &mut emitted)
            .await
            .unwrap();
        r.tick(Instant::now() + Duration::from_secs(60), &mut emitted);
        assert!(r.checkpoint(&c, 0, Vec::new()).await.unwrap() > 0);
    }
    let first_spans: usize = emitted.iter().map(|e| e.spans.len()).sum();
    assert!(
        first_spans > 0,
        "some executions finished in the first half"
    );
    // Firehose retries some of the first half, and sends the second.
    for (i, r) in requests.iter().enumerate().skip(half / 2) {
        c.publish(&format!("req-{i}"), &params, r).await.unwrap();
    }
    // New owners resume from the checkpoints.
    for p in 0..partitions {
        let (mut r, _) = Runner::open(&c, p, cfg.clone(), 10_000, joins())
            .await
            .unwrap();
        assert!(r.applied > 0, "partition {p} resumed from its checkpoint");
        r.catch_up(&c, Duration::from_millis(300), &mut emitted)
            .await
            .unwrap();
        r.drain(Instant::now() + Duration::from_secs(7200), &mut emitted);
        assert_eq!(r.bad_lines, 0);
    }
    let (got, n) = span_keys(emitted.iter().flat_map(|e| e.spans.iter()));
    assert_eq!(n, got.len(), "a span was emitted twice");

    // One process, one core, the same requests at the same moments.
    let mut one = stepstitch::stitch::core::StitcherCore::new(
        cfg.clone(),
        10_000,
        Arc::new(stepstitch::stitch::joins::JoinRegistry::new(1024)),
    );
    let mut alone = Vec::new();
    let p = Arc::new(StreamParams::default());
    for r in &requests[..half] {
        alone.extend(one.apply(r.clone(), &p, Instant::now()));
    }
    alone.extend(one.tick(Instant::now() + Duration::from_secs(60)));
    for r in requests.iter().skip(half / 2) {
        alone.extend(one.apply(r.clone(), &p, Instant::now()));
    }
    alone.extend(one.drain(Instant::now() + Duration::from_secs(7200)));
    let (want, m) = span_keys(alone.iter().flat_map(|e| e.spans.iter()));
    assert_eq!(m, want.len());
    assert!(want.len() > 100, "{}", want.len());
    assert_eq!(got, want);
}

/// The per-partition export ledger: acknowledgements stored through the
/// `AckLog` a receipt calls, read back per partition after a position,
/// purged up to a position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_are_stored_per_partition_and_read_back_after_a_position() {
    use stepstitch::cluster::acks::AckStream;
    use stepstitch::durable::ledger::{AckLog, Signal};
    let dir = tempfile::tempdir().unwrap();
    let Some(nats) = Nats::start(dir.path()) else {
        return;
    };
    let c = Cluster::connect(config(&nats, "a", 4, Duration::from_secs(5)))
        .await
        .unwrap();
    let acks = Arc::new(AckStream::new());
    let stop = tokio_util::sync::CancellationToken::new();
    let task = {
        let (acks, c, stop) = (acks.clone(), c.clone(), stop.clone());
        tokio::spawn(async move { acks.run(&c, stop, Duration::from_secs(5)).await })
    };
    acks.acknowledge(1, 0, Signal::Spans, &[11, 12]);
    acks.acknowledge(2, 0, Signal::Spans, &[21]);
    assert!(acks.flush(Duration::from_secs(5)).await);
    let mid = c.acks_position().await.unwrap();
    acks.acknowledge(1, 1, Signal::Logs, &[13]);
    assert!(acks.flush(Duration::from_secs(5)).await);
    let (all, n) = c.acks_after(1, 0).await.unwrap();
    assert_eq!(n, 2);
    assert_eq!(all[&(0, Signal::Spans)], [11, 12].into_iter().collect());
    assert_eq!(all[&(1, Signal::Logs)], [13].into_iter().collect());
    let (later, n) = c.acks_after(1, mid).await.unwrap();
    assert_eq!(n, 1);
    assert!(!later.contains_key(&(0, Signal::Spans)));
    let (other, _) = c.acks_after(2, 0).await.unwrap();
    assert_eq!(other[&(0, Signal::Spans)], [21].into_iter().collect());
    assert_eq!(c.acks_after(3, 0).await.unwrap().1, 0);
    // Purged up to `mid`: what a checkpoint there covers is gone.
    c.purge_acks(1, mid).await.unwrap();
    assert_eq!(c.acks_after(1, 0).await.unwrap().1, 1);
    stop.cancel();
    task.await.unwrap();
}

/// The journal: acknowledgements a process recorded but never stored (it
/// was killed before its publisher ran) are stored by the next process
/// on the same data directory, before anything else; once everything
/// queued is stored, the journal is empty and a third start adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_left_in_the_journal_are_stored_by_the_next_start() {
    use stepstitch::cluster::acks::AckStream;
    use stepstitch::durable::ledger::{AckLog, Signal};
    let dir = tempfile::tempdir().unwrap();
    let Some(nats) = Nats::start(&dir.path().join("nats")) else {
        return;
    };
    let c = Cluster::connect(config(&nats, "a", 4, Duration::from_secs(5)))
        .await
        .unwrap();
    let journal = dir.path().join("acks");
    {
        // The first process: delivered, acknowledged, killed before any
        // record reached NATS (its publisher never ran).
        let (first, left) = AckStream::with_journal(&journal).unwrap();
        assert_eq!(left, 0);
        first.acknowledge(1, 0, Signal::Spans, &[11, 12]);
        first.acknowledge(2, 1, Signal::Logs, &[21]);
    }
    assert_eq!(c.acks_after(1, 0).await.unwrap().1, 0);
    let (second, left) = AckStream::with_journal(&journal).unwrap();
    assert_eq!(left, 2);
    let second = Arc::new(second);
    let stop = tokio_util::sync::CancellationToken::new();
    let task = {
        let (acks, c, stop) = (second.clone(), c.clone(), stop.clone());
        tokio::spawn(async move { acks.run(&c, stop, Duration::from_secs(5)).await })
    };
    // A flush covers what the journal brought.
    assert!(second.flush(Duration::from_secs(5)).await);
    let (p1, n) = c.acks_after(1, 0).await.unwrap();
    assert_eq!(n, 1);
    assert_eq!(p1[&(0, Signal::Spans)], [11, 12].into_iter().collect());
    let (p2, _) = c.acks_after(2, 0).await.unwrap();
    assert_eq!(p2[&(1, Signal::Logs)], [21].into_iter().collect());
    // New records go through the journal too, and leave it once stored.
    second.acknowledge(3, 0, Signal::Spans, &[31]);
    assert!(second.flush(Duration::from_secs(5)).await);
    assert_eq!(c.acks_after(3, 0).await.unwrap().1, 1);
    stop.cancel();
    task.await.unwrap();
    let on_disk: u64 = std::fs::read_dir(&journal)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(on_disk, 0);
    let (_, left) = AckStream::with_journal(&journal).unwrap();
    assert_eq!(left, 0);
}
