//! The `datadog-agent` exporter against Datadog's official APM test agent
//! (`ddapm-test-agent`, reference/test-peers.md §4) for traces, and a real
//! UDP socket standing in for DogStatsD: Firehose → server → agent.
//!
//! Needs the virtualenv that `scripts/test.sh` installs (`.venv-dd`), see
//! `common::agent`.

mod common;

use common::agent::{agent_bin, TestAgent};
use common::firehose::send_lines;
use common::fixtures::{self, Fixture};
use common::Server;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};
use stepstitch::stitch::output::MetricKind;

/// Keys the exporter adds for Datadog; checked on their own.
const DRESSING: &[&str] = &["_sampling_priority_v1", "_dd.measured", "_dd.top_level"];

/// A span as JSON with the dressing removed, for comparison.
fn neutral(mut v: Value) -> (u64, Value) {
    for k in ["meta", "metrics"] {
        if let Some(m) = v[k].as_object_mut() {
            m.retain(|key, _| !DRESSING.contains(&key.as_str()));
        }
    }
    (v["span_id"].as_u64().unwrap(), v)
}

/// One DogStatsD line: `name:value|type|#tags`.
fn parse_statsd(line: &str) -> (String, f64, String, Vec<String>) {
    let mut parts = line.split('|');
    let (name, value) = parts.next().unwrap().rsplit_once(':').unwrap();
    let ty = parts.next().unwrap().to_owned();
    let tags = parts
        .find_map(|p| p.strip_prefix('#'))
        .map(|t| t.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    (name.to_owned(), value.parse().unwrap(), ty, tags)
}

type Key = (String, Vec<String>);

/// What a DogStatsD listener has parsed so far.
#[derive(Default)]
struct Received {
    counts: BTreeMap<Key, f64>,
    gauges: BTreeMap<Key, Vec<f64>>,
    dists: BTreeMap<Key, Vec<f64>>,
}

/// A DogStatsD listener: a thread drains the socket from the start (as the
/// Agent does) and hands datagrams over.
struct Statsd {
    url: String,
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Statsd {
    fn spawn(
        url: String,
        mut recv: impl FnMut(&mut [u8]) -> std::io::Result<usize> + Send + 'static,
    ) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = recv(&mut buf) {
                    let _ = tx.send(buf[..n].to_vec());
                }
            }
        });
        Statsd { url, rx, stop }
    }

    fn unix(path: &std::path::Path) -> Self {
        let sock = std::os::unix::net::UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Self::spawn(format!("unix://{}", path.display()), move |b| sock.recv(b))
    }

    fn udp() -> Self {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let url = format!("udp://{}", sock.local_addr().unwrap());
        Self::spawn(url, move |b| sock.recv(b))
    }

    /// Parses what arrived within 200 ms; datagrams must fit `max_packet`.
    fn take(&self, into: &mut Received, max_packet: usize) {
        let Ok(d) = self.rx.recv_timeout(Duration::from_millis(200)) else {
            return;
        };
        assert!(d.len() <= max_packet, "a datagram of {} bytes", d.len());
        for line in std::str::from_utf8(&d).unwrap().lines() {
            let (name, value, ty, mut tags) = parse_statsd(line);
            tags.sort();
            let key = (name, tags);
            match ty.as_str() {
                "c" => *into.counts.entry(key).or_default() += value,
                "g" => into.gauges.entry(key).or_default().push(value),
                "d" => into.dists.entry(key).or_default().push(value),
                other => panic!("metric type {other} in {line}"),
            }
        }
    }
}

impl Drop for Statsd {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_the_test_agent_and_metrics_reach_dogstatsd() {
    let Some(bin) = agent_bin() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let agent = TestAgent::start(&bin, &work.path().join("agent.log")).await;
    let agent_url = agent.url.clone();
    // A Unix datagram socket, as the Agent's `dsd.socket`: unlike UDP it
    // pushes back on the sender, so every line must arrive.
    let statsd = Statsd::unix(&work.path().join("dsd.socket"));
    let fs: Vec<Fixture> = fixtures::all()
        .into_iter()
        .filter(|f| f.meta["logging"]["level"] == "ALL")
        .step_by(3)
        .collect();
    let mut want: HashMap<u64, Value> = HashMap::new();
    let mut counts: BTreeMap<Key, f64> = BTreeMap::new();
    let mut gauges: BTreeMap<Key, Vec<f64>> = BTreeMap::new();
    let mut dists: BTreeMap<Key, Vec<f64>> = BTreeMap::new();
    let mut trace_ids = HashSet::new();
    for f in &fs {
        let b = f.build();
        for s in b.spans {
            trace_ids.insert(s.trace_id);
            let (id, v) = neutral(serde_json::to_value(&s).unwrap());
            assert!(want.insert(id, v).is_none());
        }
        for (_, m) in b.samples {
            let key = (m.name.to_owned(), m.tags.to_vec());
            match m.kind {
                MetricKind::Count => *counts.entry(key).or_default() += m.value,
                MetricKind::Gauge => gauges.entry(key).or_default().push(m.value),
                MetricKind::Distribution => dists.entry(key).or_default().push(m.value),
            }
        }
    }

    let s = Server::start_with_env(
        &[
            "--export",
            "datadog-agent",
            "--finalize-grace",
            "1s",
            "--export-flush-interval",
            "200ms",
            "--metrics-flush-interval",
            "300ms",
        ],
        &[
            ("DD_TRACE_AGENT_URL", &agent_url),
            ("DD_DOGSTATSD_URL", &statsd.url),
        ],
    );
    let lines = fixtures::lines_of(&fs);
    send_lines(&s, &lines, 200, "agent").await;

    // Traces: poll the agent until every span is there.
    let deadline = Instant::now() + Duration::from_secs(60);
    let traces: Vec<Vec<Value>> = loop {
        let t: Vec<Vec<Value>> = s
            .client
            .get(format!("{agent_url}/test/traces"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if t.iter().map(Vec::len).sum::<usize>() >= want.len() {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} spans at the agent; server: {:?}",
            t.iter().map(Vec::len).sum::<usize>(),
            want.len(),
            s.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        traces.len(),
        trace_ids.len(),
        "one agent trace per execution"
    );
    let mut seen = HashSet::new();
    for trace in &traces {
        for sp in trace {
            let (id, v) = neutral(sp.clone());
            assert!(seen.insert(id), "span {id} sent twice");
            let exp = want
                .get(&id)
                .unwrap_or_else(|| panic!("unexpected span {sp}"));
            for field in [
                "trace_id",
                "span_id",
                "parent_id",
                "name",
                "resource",
                "service",
                "type",
                "start",
                "duration",
                "error",
                "meta",
                "metrics",
            ] {
                let got = &v[field];
                let exp = &exp[field];
                // msgpack may drop a zero parent and an empty map.
                let same = got == exp
                    || (got.is_null()
                        && (exp == 0 || exp.as_object().is_some_and(|o| o.is_empty())));
                assert!(same, "span {id} {field}: got {got}, want {exp}");
            }
            assert_eq!(sp["metrics"]["_sampling_priority_v1"], 1.0);
            let entry = sp["name"] == "aws.stepfunctions" && sp["meta"].get("redrive").is_none();
            assert_eq!(
                sp["metrics"].get("_dd.top_level").is_some(),
                entry,
                "{}",
                sp["name"]
            );
            assert_eq!(
                sp["metrics"].get("_dd.measured").is_some(),
                sp["name"] == "aws.stepfunctions.state"
            );
        }
    }
    assert_eq!(seen.len(), want.len());

    // The agent's own checks (trace count header, tracer version, size).
    let failures = s
        .client
        .get(format!(
            "{agent_url}/test/trace_check/failures?return_all=true"
        ))
        .send()
        .await
        .unwrap();
    let status = failures.status();
    assert!(status.is_success(), "{}", failures.text().await.unwrap());
    let summary: Value = s
        .client
        .get(format!(
            "{agent_url}/test/trace_check/summary?return_all=true"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for check in ["trace_count_header", "meta_tracer_version_header"] {
        assert!(
            summary[check]["Passed_Checks"].as_u64().unwrap_or(0) > 0,
            "{check} ran: {summary}"
        );
        assert_eq!(summary[check]["Failed_Checks"].as_u64().unwrap_or(0), 0);
    }

    // DogStatsD: every count sums to the expected total, every distribution
    // value arrives once, gauges carry expected values.
    let mut got = Received::default();
    let n_dists: usize = dists.values().map(Vec::len).sum();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.counts != counts || got.dists.values().map(Vec::len).sum::<usize>() < n_dists {
        assert!(
            Instant::now() < deadline,
            "DogStatsD incomplete: {} of {} count series",
            got.counts.len(),
            counts.len()
        );
        statsd.take(&mut got, 8192);
    }
    let Received {
        counts: got_counts,
        gauges: got_gauges,
        dists: mut got_dists,
    } = got;
    assert_eq!(got_counts, counts);
    for v in dists.values_mut().chain(got_dists.values_mut()) {
        v.sort_by(f64::total_cmp);
    }
    assert_eq!(got_dists, dists);
    assert_eq!(
        got_gauges.keys().collect::<Vec<_>>(),
        gauges.keys().collect::<Vec<_>>()
    );
    for (k, vs) in &got_gauges {
        for v in vs {
            assert!(gauges[k].contains(v), "gauge {k:?} = {v}");
        }
    }
    let started: f64 = got_counts
        .iter()
        .filter(|((n, _), _)| n == "aws.states.enhanced.execution.started")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(started, fs.len() as f64);
}

/// DogStatsD over UDP: datagrams stay under a 1500-byte MTU, and a small
/// load arrives whole (UDP itself may drop under bursts; see docs/export.md).
#[tokio::test]
async fn dogstatsd_over_udp_fits_the_mtu() {
    let statsd = Statsd::udp();
    let fs: Vec<Fixture> = fixtures::all()
        .into_iter()
        .filter(|f| f.meta["logging"]["level"] == "ALL")
        .take(3)
        .collect();
    let s = Server::start_with_env(
        &[
            "--export",
            "datadog-agent",
            "--finalize-grace",
            "1s",
            "--metrics-flush-interval",
            "300ms",
        ],
        &[
            // Nothing listens there: traces are retried, metrics unaffected.
            ("DD_TRACE_AGENT_URL", "http://127.0.0.1:9"),
            ("DD_DOGSTATSD_URL", &statsd.url),
        ],
    );
    let lines = fixtures::lines_of(&fs);
    send_lines(&s, &lines, 1000, "udp").await;
    let mut got = Received::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let started = |r: &Received| -> f64 {
        r.counts
            .iter()
            .filter(|((n, _), _)| n == "aws.states.enhanced.execution.started")
            .map(|(_, v)| v)
            .sum()
    };
    let states = |r: &Received| {
        r.counts
            .keys()
            .any(|(n, _)| n.ends_with("state.invocation_count"))
    };
    while started(&got) < fs.len() as f64 || !states(&got) {
        assert!(Instant::now() < deadline, "DogStatsD over UDP incomplete");
        statsd.take(&mut got, 1432);
    }
    assert_eq!(started(&got), fs.len() as f64);
    assert!(got
        .counts
        .keys()
        .any(|(n, _)| n.ends_with("state.invocation_count")));
}
