//! Cluster mode end to end: real `stepstitch serve` processes as replicas
//! of one cluster on a real `nats-server` with JetStream (file storage),
//! Firehose requests over loopback. Each replica exports to its own jsonl
//! file; the union is compared with what one single-process server makes
//! of the same requests, and every span must appear exactly once.

mod common;

use common::firehose::{body, cwl_record};
use common::fixtures::Fixture;
use common::nats::Nats;
use common::Server;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PARTITIONS: &str = "8";

/// A tiny deterministic generator (xorshift): shuffles and choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

fn replica(nats: &str, node: &str, out: &Path, data: &Path) -> Server {
    replica_with(nats, node, out, data, "500ms")
}

/// `checkpoints`: the checkpoint interval (a long one leaves more for the
/// next owner to replay, and its acknowledgements to honour).
fn replica_with(nats: &str, node: &str, out: &Path, data: &Path, checkpoints: &str) -> Server {
    let export = format!("jsonl:{}", out.display());
    let data = data.display().to_string();
    Server::start(&[
        "--export",
        &export,
        "--data-dir",
        &data,
        "--finalize-grace",
        "3s",
        "--cluster-nats-url",
        nats,
        "--node-id",
        node,
        "--cluster-partitions",
        PARTITIONS,
        "--cluster-lease-ttl",
        "2s",
        "--cluster-checkpoint-interval",
        checkpoints,
    ])
}

fn single(out: &Path) -> Server {
    let export = format!("jsonl:{}", out.display());
    Server::start(&["--export", &export, "--finalize-grace", "3s"])
}

/// Span lines written so far (duplicates kept).
fn exported(path: &Path) -> Vec<(u64, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("span").cloned())
        .map(|s| (s["span_id"].as_u64().unwrap(), s.to_string()))
        .collect()
}

fn exported_all(paths: &[PathBuf]) -> Vec<(u64, String)> {
    paths.iter().flat_map(|p| exported(p)).collect()
}

/// Every fixture logged at level ALL, and a copy of each under another
/// execution name: `(state machine, lines)` per execution.
fn executions() -> Vec<(String, Vec<String>)> {
    let fs: Vec<Fixture> = common::fixtures::all()
        .into_iter()
        .filter(|f| f.meta["logging"]["level"] == "ALL" && !f.lines.is_empty())
        .collect();
    let mut out = Vec::new();
    for f in &fs {
        out.push((f.state_machine().to_owned(), f.lines.clone()));
        let copy: Vec<String> = f.copies(1).into_iter().map(|(_, l)| l).collect();
        out.push((f.state_machine().to_owned(), copy));
    }
    out
}

/// Requests: executions shuffled, each whole or split in two (the halves
/// in this or the next request: within the finalize grace of each other),
/// some sent again under a new request id (the same events twice).
fn requests(rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let mut parts: Vec<(String, Vec<String>)> = Vec::new();
    let mut execs = executions();
    rng.shuffle(&mut execs);
    for (sm, lines) in execs {
        if lines.len() > 3 && rng.below(3) == 0 {
            let cut = 1 + rng.below(lines.len() - 1);
            parts.push((sm.clone(), lines[..cut].to_vec()));
            parts.push((sm, lines[cut..].to_vec()));
        } else {
            parts.push((sm, lines));
        }
    }
    // Several executions per request, as Firehose batches them.
    let mut out = Vec::new();
    for (i, chunk) in parts.chunks(4).enumerate() {
        let records: Vec<String> = chunk.iter().map(|(sm, l)| cwl_record(l, sm)).collect();
        let id = format!("req-{i}");
        let b = body(&id, &records);
        if rng.below(10) == 0 {
            let again = format!("req-{i}-again");
            out.push((again.clone(), body(&again, &records)));
        }
        out.push((id, b));
    }
    out
}

async fn post(client: &reqwest::Client, url: &str, id: &str, b: &[u8]) -> bool {
    let r = client
        .post(url)
        .header("X-Amz-Firehose-Request-Id", id)
        .header("Content-Type", "application/json")
        .body(b.to_vec())
        .send()
        .await;
    matches!(&r, Ok(a) if a.status() == 200)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Waits until `paths` hold `n` distinct spans (or the time is up), then
/// a little longer so a late duplicate would show.
async fn wait_spans(paths: &[PathBuf], n: usize, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let ids: HashSet<u64> = exported_all(paths).into_iter().map(|(id, _)| id).collect();
        if ids.len() >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
}

fn assert_exactly_once(got: &[(u64, String)], want: &BTreeMap<u64, String>) {
    let mut seen = HashSet::new();
    for (id, text) in got {
        assert!(seen.insert(*id), "span {id} exported twice");
        assert_eq!(
            want.get(id),
            Some(text),
            "span {id} differs or is unexpected"
        );
    }
    let missing: Vec<&u64> = want.keys().filter(|id| !seen.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} spans never exported, e.g. {:?}",
        missing.len(),
        want.len(),
        &missing[..missing.len().min(5)]
    );
}

/// What one single-process server makes of the requests.
async fn single_process(reqs: &[(String, Vec<u8>)], dir: &Path) -> BTreeMap<u64, String> {
    let out = dir.join("single.jsonl");
    let s = single(&out);
    let c = client();
    let url = s.url("/firehose");
    for (id, b) in reqs {
        assert!(post(&c, &url, id, b).await, "single process refused {id}");
    }
    s.sigterm();
    let mut s = s;
    assert!(s.wait_exit(Duration::from_secs(60)).success());
    let got = exported(&out);
    let want: BTreeMap<u64, String> = got.iter().cloned().collect();
    assert_eq!(
        want.len(),
        got.len(),
        "the single process exported a span twice"
    );
    assert!(want.len() > 1000, "only {} spans", want.len());
    want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_export_every_span_once_as_one_process_does() {
    let dir = tempfile::tempdir().unwrap();
    let Some(nats) = Nats::start(&dir.path().join("nats")) else {
        return;
    };
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let reqs = requests(&mut rng);
    let want = single_process(&reqs, dir.path()).await;

    let outs: Vec<PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("r{i}.jsonl")))
        .collect();
    let replicas: Vec<Server> = (0..3)
        .map(|i| {
            replica(
                &nats.url,
                &format!("r{i}"),
                &outs[i],
                &dir.path().join(format!("d{i}")),
            )
        })
        .collect();
    let c = client();
    // Each request to a random replica; a tenth again to another one (a
    // Firehose retry: the same request id).
    for (id, b) in &reqs {
        let r = rng.below(3);
        let url = replicas[r].url("/firehose");
        while !post(&c, &url, id, b).await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if rng.below(10) == 0 {
            let url = replicas[(r + 1) % 3].url("/firehose");
            assert!(post(&c, &url, id, b).await);
        }
    }
    wait_spans(&outs, want.len(), 60).await;
    assert_exactly_once(&exported_all(&outs), &want);
    // Each replica stitched its own share.
    for o in &outs {
        assert!(!exported(o).is_empty(), "{} exported nothing", o.display());
    }
    let dup: f64 = {
        let mut n = 0.0;
        for r in &replicas {
            n += r
                .metric("stepstitch_cluster_published_messages_total{outcome=\"duplicate\"}")
                .await;
        }
        n
    };
    assert!(dup > 0.0, "no retried request was recognised by JetStream");
    let owned: f64 = {
        let mut n = 0.0;
        for r in &replicas {
            n += r.metric("stepstitch_cluster_owned_partitions").await;
        }
        n
    };
    assert_eq!(owned, 8.0);
    // The stitcher's gauges sum the owned partitions' cores.
    let mut retained = 0.0;
    for r in &replicas {
        retained += r.metric("stepstitch_stitch_retained_executions").await;
    }
    assert!(
        retained > 0.0,
        "no finished execution is retained for stragglers"
    );
    for r in &replicas {
        let ready = c.get(r.admin_url("/ready")).send().await.unwrap();
        assert_eq!(ready.status(), 200);
    }
    // Retention: what the checkpoints cover is purged from the stream.
    let probe = stepstitch::cluster::Cluster::connect(stepstitch::cluster::ClusterConfig {
        urls: nats.url.clone(),
        name: "STEPSTITCH".into(),
        partitions: 8,
        replicas: 1,
        lease_ttl: Duration::from_secs(2),
        duplicate_window: Duration::from_secs(7200),
        node: "probe".into(),
    })
    .await
    .unwrap();
    let mut stored = 0.0;
    for r in &replicas {
        stored += r
            .metric("stepstitch_cluster_published_messages_total{outcome=\"stored\"}")
            .await;
    }
    // SIGTERM: each replica's last checkpoints purge all they cover (while
    // running, purging trails by one checkpoint).
    let mut replicas = replicas;
    for r in &replicas {
        r.sigterm();
    }
    for r in replicas.iter_mut() {
        assert!(r.wait_exit(Duration::from_secs(30)).success());
    }
    let mut stream = probe.js.get_stream("STEPSTITCH").await.unwrap();
    let left = stream.info().await.unwrap().state.messages;
    assert!(stored > 100.0);
    assert_eq!(
        left, 0,
        "{left} of {stored} messages kept after every partition checkpointed"
    );
}

/// Senders that act like Firehose: each request retried (on any replica
/// that answers) until a 200.
fn senders(
    reqs: Arc<Vec<(String, Vec<u8>)>>,
    urls: Arc<Mutex<Vec<String>>>,
    next: Arc<AtomicUsize>,
    pace: Duration,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..3)
        .map(|w| {
            let (reqs, urls, next) = (reqs.clone(), urls.clone(), next.clone());
            tokio::spawn(async move {
                let c = client();
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 + w);
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some((id, b)) = reqs.get(i) else { return };
                    loop {
                        let u = {
                            let urls = urls.lock().unwrap();
                            urls[rng.below(urls.len())].clone()
                        };
                        if post(&c, &u, id, b).await {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(30)).await;
                    }
                    tokio::time::sleep(pace).await;
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_replicas_at_random_moments_loses_nothing_and_exports_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let Some(nats) = Nats::start(&dir.path().join("nats")) else {
        return;
    };
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let reqs = Arc::new(requests(&mut rng));
    let want = single_process(&reqs, dir.path()).await;
    let mut outs = Vec::new();
    let mut replicas = Vec::new();
    for i in 0..3 {
        let out = dir.path().join(format!("r{i}-0.jsonl"));
        replicas.push(replica_with(
            &nats.url,
            &format!("r{i}"),
            &out,
            &dir.path().join(format!("d{i}")),
            "4s",
        ));
        outs.push(out);
    }
    let urls = Arc::new(Mutex::new(
        replicas
            .iter()
            .map(|r| r.url("/firehose"))
            .collect::<Vec<_>>(),
    ));
    let next = Arc::new(AtomicUsize::new(0));
    // Paced so traffic lasts while the kills land (each restart waits out
    // the 2 s lease TTL), between checkpoints (every 4 s).
    let workers = senders(
        reqs.clone(),
        urls.clone(),
        next.clone(),
        Duration::from_millis(150),
    );
    // Kill a random replica at random moments while traffic flows, and
    // start it again (a new output file: what the dead one wrote stays).
    // A replica is killed only once it owns partitions again (a restart
    // under the same name waits for its old leases to expire), so every
    // kill leaves partitions for a new owner to take over; in between,
    // its exporters deliver.
    let (mut kills, mut during_traffic) = (0, 0);
    let mut loaded = 0.0;
    let mut dead: Vec<Server> = Vec::new();
    while kills < 5 {
        tokio::time::sleep(Duration::from_millis(400 + rng.below(1200) as u64)).await;
        if next.load(Ordering::SeqCst) < reqs.len() {
            during_traffic += 1;
        }
        let r = rng.below(3);
        replicas[r].kill9();
        let out = dir.path().join(format!("r{r}-{}.jsonl", kills + 1));
        let fresh = replica_with(
            &nats.url,
            &format!("r{r}"),
            &out,
            &dir.path().join(format!("d{r}")),
            "4s",
        );
        // Kept (dead) for their logs, should the check below fail.
        dead.push(std::mem::replace(&mut replicas[r], fresh));
        outs.push(out);
        urls.lock().unwrap()[r] = replicas[r].url("/firehose");
        kills += 1;
        let deadline = Instant::now() + Duration::from_secs(20);
        while replicas[r]
            .metric("stepstitch_cluster_owned_partitions")
            .await
            == 0.0
        {
            assert!(
                Instant::now() < deadline,
                "the restarted replica owns nothing"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        loaded += replicas[r]
            .metric("stepstitch_cluster_acks_loaded_total")
            .await;
    }
    for w in workers {
        w.await.unwrap();
    }
    assert!(
        during_traffic >= 3,
        "only {during_traffic} kills happened during the traffic"
    );
    wait_spans(&outs, want.len(), 90).await;
    let got = exported_all(&outs);
    if std::panic::catch_unwind(|| assert_exactly_once(&got, &want)).is_err() {
        // What the owners did, for the diagnosis.
        // Where each span was first written: file, line, lines in it
        // (a killed replica's last deliveries sit at its file's end).
        let mut seen: HashMap<u64, (usize, usize, usize)> = HashMap::new();
        for (k, path) in outs.iter().enumerate() {
            let spans = exported(path);
            let n = spans.len();
            for (line, (id, text)) in spans.into_iter().enumerate() {
                if let Some((f, l, of)) = seen.get(&id) {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    let arn = v["meta"]["step_function.execution_arn"]
                        .as_str()
                        .unwrap_or("");
                    eprintln!(
                        "twice: span {id} first in file {f} at span {l} of {of}, again in file {k} ({}) at {line} of {n}, partition {}",
                        path.display(),
                        stepstitch::cluster::partition::partition_of(arn, 8)
                    );
                } else {
                    seen.insert(id, (k, line, n));
                }
            }
        }
        for (k, path) in outs.iter().enumerate() {
            eprintln!("file {k}: {}", path.display());
        }
        for (id, text) in &want {
            if !seen.contains_key(id) {
                let v: Value = serde_json::from_str(text).unwrap();
                let arn = v["meta"]["step_function.execution_arn"]
                    .as_str()
                    .unwrap_or("");
                eprintln!(
                    "missing: span {id} {} {} of {arn}, partition {}",
                    v["name"],
                    v["resource"],
                    stepstitch::cluster::partition::partition_of(arn, 8)
                );
            }
        }
        // Keep the files for a look.
        let kept = std::env::temp_dir().join("cluster-e2e-failed");
        let _ = std::fs::remove_dir_all(&kept);
        let _ = std::fs::create_dir_all(&kept);
        for path in &outs {
            let _ = std::fs::copy(path, kept.join(path.file_name().unwrap()));
        }
        for (i, r) in dead.iter().chain(replicas.iter()).enumerate() {
            for l in r.logs().iter().filter(|l| {
                ["partition", "lease", "checkpoint", "acknowledg"]
                    .iter()
                    .any(|w| l.contains(w))
            }) {
                eprintln!("[{i}] {l}");
            }
        }
        panic!("not exactly once (logs above)");
    }
    // The new owners did replay what the dead ones had delivered after
    // their last checkpoint, and left it out thanks to the acknowledgements.
    let mut skipped = 0.0;
    for r in &replicas {
        let m = r.metrics().await;
        skipped += m
            .lines()
            .filter(|l| l.starts_with("stepstitch_export_deduplicated_total{"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>();
    }
    println!("{kills} kills, {} spans, each once; {loaded} acknowledgement records loaded, {skipped} items not sent again", want.len());
    assert!(
        loaded > 0.0 && skipped > 0.0,
        "no takeover had anything to leave out: the test did not exercise the ledger"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_under_load_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut nats) = Nats::start(&dir.path().join("nats")) else {
        return;
    };
    let mut rng = Rng(0x0ddb_a11c_afe5_eed5);
    let reqs = Arc::new(requests(&mut rng));
    let want = single_process(&reqs, dir.path()).await;
    let outs: Vec<PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("r{i}.jsonl")))
        .collect();
    let replicas: Vec<Server> = (0..2)
        .map(|i| {
            replica(
                &nats.url,
                &format!("r{i}"),
                &outs[i],
                &dir.path().join(format!("d{i}")),
            )
        })
        .collect();
    let urls = Arc::new(Mutex::new(
        replicas
            .iter()
            .map(|r| r.url("/firehose"))
            .collect::<Vec<_>>(),
    ));
    let next = Arc::new(AtomicUsize::new(0));
    let workers = senders(reqs.clone(), urls, next.clone(), Duration::from_millis(20));
    // Down for a second twice while requests flow: they get 503s and are
    // retried; nothing acknowledged before is lost (file storage).
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            next.load(Ordering::SeqCst) < reqs.len(),
            "traffic ended before the restart"
        );
        nats.stop();
        tokio::time::sleep(Duration::from_secs(1)).await;
        nats.restart();
    }
    for w in workers {
        w.await.unwrap();
    }
    wait_spans(&outs, want.len(), 90).await;
    assert_exactly_once(&exported_all(&outs), &want);
    // NATS down for longer than JetStream's acknowledgement timeout: a 503
    // in the contract's shape, and nothing of the request is lost once
    // Firehose retries it.
    nats.stop();
    let extra = common::fixtures::all()
        .into_iter()
        .find(|f| f.meta["logging"]["level"] == "ALL" && f.lines.len() > 3)
        .unwrap();
    let lines: Vec<String> = extra.copies(1).into_iter().map(|(_, l)| l).collect();
    let b = body("late", &[cwl_record(&lines, extra.state_machine())]);
    let answer = common::firehose::Post::new(&replicas[0], "late")
        .send(b.clone())
        .await;
    assert_eq!(answer.status, 503);
    answer.assert_contract("late");
    assert!(
        answer.json["errorMessage"]
            .as_str()
            .unwrap()
            .contains("JetStream"),
        "{:?}",
        answer.json
    );
    nats.restart();
    let c = client();
    while !post(&c, &replicas[1].url("/firehose"), "late", &b).await {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let copy = extra.execution_arn().to_owned() + "-copy0";
    let deadline = Instant::now() + Duration::from_secs(30);
    while !exported_all(&outs).iter().any(|(_, s)| s.contains(&copy)) {
        assert!(
            Instant::now() < deadline,
            "the retried request was never exported"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused: f64 = {
        let mut n = 0.0;
        for r in &replicas {
            n += r
                .metric("stepstitch_firehose_rejections_total{reason=\"not_stored\"}")
                .await;
        }
        n
    };
    assert!(refused >= 1.0);
    println!("{refused} requests refused while NATS was down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_replica_takes_its_share_without_gaps_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let Some(nats) = Nats::start(&dir.path().join("nats")) else {
        return;
    };
    let mut rng = Rng(0xfeed_beef_1234_4321);
    let reqs = Arc::new(requests(&mut rng));
    let want = single_process(&reqs, dir.path()).await;
    let outs: Vec<PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("r{i}.jsonl")))
        .collect();
    let first = replica(&nats.url, "r0", &outs[0], &dir.path().join("d0"));
    let urls = Arc::new(Mutex::new(vec![first.url("/firehose")]));
    let next = Arc::new(AtomicUsize::new(0));
    let workers = senders(
        reqs.clone(),
        urls.clone(),
        next.clone(),
        Duration::from_millis(20),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        first.metric("stepstitch_cluster_owned_partitions").await,
        8.0
    );
    let second = replica(&nats.url, "r1", &outs[1], &dir.path().join("d1"));
    urls.lock().unwrap().push(second.url("/firehose"));
    for w in workers {
        w.await.unwrap();
    }
    wait_spans(&outs, want.len(), 60).await;
    assert_exactly_once(&exported_all(&outs), &want);
    let (a, b) = (
        first.metric("stepstitch_cluster_owned_partitions").await,
        second.metric("stepstitch_cluster_owned_partitions").await,
    );
    assert_eq!(a + b, 8.0);
    assert!(b > 0.0, "the joining replica took nothing");
    assert!(
        !exported(&outs[1]).is_empty(),
        "the joining replica exported nothing"
    );
    assert!(
        first
            .metric("stepstitch_cluster_lease_changes_total{change=\"released\"}")
            .await
            > 0.0
    );
    // SIGTERM: the first replica checkpoints and gives its leases back;
    // the second owns everything well before the leases would expire.
    let mut first = first;
    first.sigterm();
    let stopped = Instant::now();
    assert!(first.wait_exit(Duration::from_secs(30)).success());
    while second.metric("stepstitch_cluster_owned_partitions").await < 8.0 {
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "the partitions were not handed over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(first
        .logs()
        .iter()
        .any(|l| l.contains("partitions checkpointed and handed over")));
    // Nothing was exported again by the new owner.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_exactly_once(&exported_all(&outs), &want);
}

/// A child execution (started by a parent's Task) on another replica than
/// its parent still hangs under the parent's Task span: the parent's owner
/// shares the join hint through KV.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_on_another_replica_joins_its_parent_through_the_hints() {
    use stepstitch::cluster::{assign::owner, partition::partition_of};
    use stepstitch::events::{Details, Event, EventKind, Payload};
    let dir = tempfile::tempdir().unwrap();
    let Some(nats) = Nats::start(&dir.path().join("nats")) else {
        return;
    };
    let parent = Fixture::load(
        "cross_account_states_start_sync_execution__sfn_start_execution_sync_role_arn_path_context",
    );
    let child_arn = "arn:aws:states:us-east-1:905126487340:execution:CrossAccountStatesStartSyncExecution:TestTaskTargetWithCredentials";
    // Two replica names that put parent and child on different replicas.
    let parts: u32 = PARTITIONS.parse().unwrap();
    let (pp, pc) = (
        partition_of(parent.execution_arn(), parts),
        partition_of(child_arn, parts),
    );
    assert_ne!(pp, pc, "the fixture's parent and child share a partition");
    let names = (0..100)
        .map(|i| (format!("a{i}"), format!("b{i}")))
        .find(|(a, b)| {
            let nodes = [a.as_str(), b.as_str()];
            owner(pp, &nodes) != owner(pc, &nodes)
        })
        .unwrap();
    let outs = [dir.path().join("a.jsonl"), dir.path().join("b.jsonl")];
    let a = replica(&nats.url, &names.0, &outs[0], &dir.path().join("da"));
    let b = replica(&nats.url, &names.1, &outs[1], &dir.path().join("db"));
    // Both own their share before anything is sent.
    let deadline = Instant::now() + Duration::from_secs(20);
    while a.metric("stepstitch_cluster_owned_partitions").await
        + b.metric("stepstitch_cluster_owned_partitions").await
        != parts as f64
        || a.metric("stepstitch_cluster_owned_partitions").await == 0.0
    {
        assert!(Instant::now() < deadline, "partitions never settled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let c = client();
    let parent_body = body(
        "parent",
        &[cwl_record(&parent.lines, parent.state_machine())],
    );
    assert!(post(&c, &a.url("/firehose"), "parent", &parent_body).await);
    wait_spans(&outs, 3, 20).await;
    // The child's events, through the other replica.
    let t = parent.events()[4].timestamp_ms;
    let ev = |id: u64, prev: u64, kind, details| Event {
        execution_arn: child_arn.into(),
        id,
        previous_event_id: prev,
        timestamp_ms: t + id as i64,
        redrive_count: 0,
        kind,
        details,
        source: None,
    };
    let child = [
        ev(
            1,
            0,
            EventKind::ExecutionStarted,
            Details::ExecutionStarted {
                input: Some(Payload {
                    text: "\"In\"".into(),
                    aws_truncated: false,
                }),
                role_arn: None,
                state_machine_alias_arn: None,
                state_machine_version_arn: None,
            },
        ),
        ev(
            2,
            1,
            EventKind::ExecutionSucceeded,
            Details::Output { output: None },
        ),
    ];
    let lines: Vec<String> = child
        .iter()
        .map(stepstitch::stitch::output::event_line)
        .collect();
    let child_body = body(
        "child",
        &[cwl_record(&lines, "CrossAccountStatesStartSyncExecution")],
    );
    assert!(post(&c, &b.url("/firehose"), "child", &child_body).await);
    let deadline = Instant::now() + Duration::from_secs(20);
    let spans: Vec<Value> = loop {
        let all: Vec<Value> = exported_all(&outs)
            .into_iter()
            .map(|(_, s)| serde_json::from_str(&s).unwrap())
            .collect();
        if all
            .iter()
            .any(|s| s["meta"]["step_function.execution_arn"] == child_arn)
        {
            break all;
        }
        assert!(Instant::now() < deadline, "the child was never exported");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let run_task = spans.iter().find(|s| s["resource"] == "RunTask").unwrap();
    let child_root = spans
        .iter()
        .find(|s| {
            s["meta"]["step_function.execution_arn"] == child_arn
                && s["name"] == "aws.stepfunctions"
        })
        .unwrap();
    assert_eq!(child_root["trace_id"], run_task["trace_id"], "one trace");
    assert_eq!(
        child_root["parent_id"], run_task["span_id"],
        "under the parent's Task"
    );
    assert_eq!(
        child_root["meta"]["step_function.context_source"],
        "parent_task"
    );
    // The two replicas did the work: the parent's owner, the child's owner.
    assert!(!exported(&outs[0]).is_empty() && !exported(&outs[1]).is_empty());
    assert!(
        b.metric("stepstitch_cluster_join_hints_total{direction=\"received\"}")
            .await
            + a.metric("stepstitch_cluster_join_hints_total{direction=\"received\"}")
                .await
            > 0.0
    );
}
