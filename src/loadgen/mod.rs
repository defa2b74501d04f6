//! `stepstitch loadgen`: realistic Firehose traffic against a running
//! server, with every response checked, and a report of throughput,
//! acknowledgement latency and the server's peak memory. Bounded by an
//! event count and a time limit; loopback unless told otherwise.

pub mod intake;
pub mod traffic;

use clap::Args;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use traffic::{Request, Shape};

#[derive(Debug, Clone, Args)]
pub struct LoadgenArgs {
    /// The Firehose endpoint to load.
    #[arg(long, default_value = "http://127.0.0.1:8080/firehose")]
    pub target: String,
    /// Allow a target that is not on loopback.
    #[arg(long)]
    pub allow_remote: bool,
    /// Firehose access key to send.
    #[arg(long)]
    pub access_key: Option<String>,
    /// Stop after this many events (the traffic is generated before the clock starts).
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Stop sending after this long, whatever is left.
    #[arg(long, default_value = "60s")]
    pub duration: humantime::Duration,
    /// Executions per second to offer; 0 = as fast as the server answers.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Task states per execution.
    #[arg(long, default_value_t = 8)]
    pub states: usize,
    /// Iterations of an inline Map state per execution (0 = none).
    #[arg(long, default_value_t = 0)]
    pub map_fanout: usize,
    /// Bytes per state input/output payload.
    #[arg(long, default_value_t = 256)]
    pub payload_bytes: usize,
    /// Log events per CloudWatch Logs record.
    #[arg(long, default_value_t = 100)]
    pub events_per_record: usize,
    /// Records per Firehose request at most.
    #[arg(long, default_value_t = 500)]
    pub records_per_request: usize,
    /// Request size at most (records, before gzip), e.g. 5MiB, up to 64MiB.
    #[arg(long, default_value = "5MiB")]
    pub request_bytes: String,
    /// Send request bodies with Content-Encoding: gzip.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub gzip: bool,
    /// Leave out each execution's terminal event, so executions stay open
    /// (to measure memory per open execution).
    #[arg(long)]
    pub leave_open: bool,
    /// Requests in flight.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// The server's process id, to report its peak resident memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// The server's admin address (e.g. http://127.0.0.1:9090): after
    /// sending, wait until the server has applied every acknowledged event
    /// and report the sustained rate (acknowledgement alone only means
    /// durable and queued).
    #[arg(long)]
    pub admin: Option<String>,
    /// Run a minimal Datadog intake on this address (point the server's
    /// DD_APM_DD_URL / DD_DD_URL / DD_LOGS_CONFIG_LOGS_DD_URL at it) and
    /// wait until every expected span arrived.
    #[arg(long)]
    pub fake_intake: Option<std::net::SocketAddr>,
    /// How long to wait for the server (--admin) and the intake (--fake-intake).
    #[arg(long, default_value = "120s")]
    pub settle_timeout: humantime::Duration,
    /// Before sending, time this many of the requests through decoding
    /// alone (gunzip, base64, gunzip, JSON: the floor) on this thread, and
    /// report the server's sustained rate as a share of it (needs --admin).
    #[arg(long, default_value_t = 0)]
    pub floor_requests: usize,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("--target {0}: not on loopback (pass --allow-remote to load another host)")]
    NotLoopback(String),
    #[error("--request-bytes {0:?}: {1}")]
    Size(String, String),
    #[error("--request-bytes must be between 1KiB and 64MiB")]
    SizeRange,
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// What a run measured.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub requests: usize,
    pub events_acked: usize,
    pub seconds: f64,
    pub events_per_second: f64,
    pub compressed_mb_per_second: f64,
    pub decoded_mb_per_second: f64,
    pub mean_request_bytes: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    pub retries_503: usize,
    pub failures: usize,
    pub server_peak_rss_mib: Option<f64>,
    /// With --admin: seconds until the server had applied every event, and
    /// the sustained rate over that time.
    pub processed_seconds: Option<f64>,
    pub processed_events_per_second: Option<f64>,
    /// With --admin and --server-pid: the server's CPU time over that same
    /// window (all its threads), to tell cost from idle time.
    pub processed_cpu_seconds: Option<f64>,
    /// With --fake-intake: spans expected and received, and when the last arrived.
    pub spans_expected: Option<u64>,
    pub spans_received: Option<u64>,
    pub spans_seconds: Option<f64>,
    /// With --fake-intake and --server-pid: the server's CPU time from the
    /// first request until the last span arrived. The sustained window ends
    /// when the events are applied, but the last executions' spans are built
    /// and exported after it (the finalize grace); in steady state that work
    /// is paid all along, so events per CPU-second over this span is the
    /// whole path's cost.
    pub spans_cpu_seconds: Option<f64>,
    /// With --floor-requests: decoding alone, single-threaded, same bytes.
    pub floor_events_per_second: Option<f64>,
    /// Sustained rate / floor.
    pub floor_ratio: Option<f64>,
}

fn is_loopback(url: &str) -> bool {
    let host = url
        .split_once("://")
        .map_or(url, |(_, r)| r)
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split(']').next().unwrap_or("").trim_start_matches('[')
    } else {
        host.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// CPU time (user + system, all threads) a process has used, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields 14 and 15 (utime, stime), counted after the parenthesised name.
    let mut rest = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: f64 = rest.next()?.parse().ok()?;
    let stime: f64 = rest.next()?.parse().ok()?;
    // USER_HZ is 100 on every Linux architecture this runs on.
    Some((utime + stime) / 100.0)
}

/// Peak resident memory (VmHWM) of a process, in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn shape(a: &LoadgenArgs) -> Result<Shape, LoadgenError> {
    let request_bytes = crate::settings::parse::byte_size(&a.request_bytes)
        .map_err(|e| LoadgenError::Size(a.request_bytes.clone(), e))?
        as usize;
    if !(1024..=64 << 20).contains(&request_bytes) {
        return Err(LoadgenError::SizeRange);
    }
    Ok(Shape {
        states: a.states,
        map_fanout: a.map_fanout,
        payload_bytes: a.payload_bytes,
        events_per_record: a.events_per_record.max(1),
        records_per_request: a.records_per_request.max(1),
        request_bytes,
        gzip: a.gzip,
        leave_open: a.leave_open,
    })
}

/// Generates the traffic, sends it, and measures.
pub async fn run(a: LoadgenArgs) -> Result<Report, LoadgenError> {
    if !a.allow_remote && !is_loopback(&a.target) {
        return Err(LoadgenError::NotLoopback(a.target.clone()));
    }
    let shape = shape(&a)?;
    let events_per_exec = shape.events_per_execution() as f64;
    let spans_per_exec = shape.spans_per_execution() as u64;
    let intake = match a.fake_intake {
        Some(addr) => Some(
            intake::start(addr)
                .await
                .map_err(|e| LoadgenError::Client(format!("--fake-intake {addr}: {e}")))?,
        ),
        None => None,
    };
    let gzip = shape.gzip;
    let total_events = a.events;
    let now_ms = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    // Fresh ARNs per run: executions numbered from the clock.
    let first = (now_ms as u64 % 1_000_000_000) * 1000;
    let reqs: Arc<Vec<Request>> = Arc::new(
        tokio::task::spawn_blocking(move || traffic::requests(&shape, first, total_events, now_ms))
            .await
            .expect("traffic generation"),
    );
    let floor_events_per_second = if a.floor_requests > 0 {
        let (reqs, n) = (reqs.clone(), a.floor_requests);
        tokio::task::spawn_blocking(move || floor(&reqs[..n.min(reqs.len())]))
            .await
            .ok()
    } else {
        None
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(180))
        .pool_max_idle_per_host(a.concurrency)
        .build()
        .map_err(|e| LoadgenError::Client(e.to_string()))?;
    let target_eps = a.rate * events_per_exec;
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(reqs.len())));
    let counts = Arc::new(Mutex::new((0usize, 0usize, 0usize, 0usize))); // acked events, retries, failures, bytes
                                                                         // Cumulative events before each request, for pacing.
    let mut before = Vec::with_capacity(reqs.len());
    let mut acc = 0usize;
    for r in reqs.iter() {
        before.push(acc);
        acc += r.events;
    }
    let before = Arc::new(before);
    let baseline = match &a.admin {
        Some(admin) => Some(server_progress(&client, admin).await?),
        None => None,
    };
    let cpu_at_start = a.server_pid.and_then(cpu_seconds);
    let cpu_since_start = || {
        a.server_pid
            .and_then(cpu_seconds)
            .zip(cpu_at_start)
            .map(|(now, then)| now - then)
    };
    let started = Instant::now();
    let stop_at = started + Duration::from(a.duration);
    let mut workers = Vec::new();
    for _ in 0..a.concurrency.max(1) {
        let (reqs, next, latencies, counts, client, before) = (
            reqs.clone(),
            next.clone(),
            latencies.clone(),
            counts.clone(),
            client.clone(),
            before.clone(),
        );
        let target = a.target.clone();
        let key = a.access_key.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(r) = reqs.get(i) else { return };
                if target_eps > 0.0 {
                    let due = started + Duration::from_secs_f64(before[i] as f64 / target_eps);
                    tokio::time::sleep_until(due.into()).await;
                }
                if Instant::now() >= stop_at {
                    return;
                }
                let mut attempts = 0;
                loop {
                    let mut req = client
                        .post(&target)
                        .header("X-Amz-Firehose-Request-Id", &r.id)
                        .header("X-Amz-Firehose-Protocol-Version", "1.0")
                        .header("Content-Type", "application/json")
                        .body(r.body.clone());
                    if gzip {
                        req = req.header("Content-Encoding", "gzip");
                    }
                    if let Some(k) = &key {
                        req = req.header("X-Amz-Firehose-Access-Key", k);
                    }
                    let t0 = Instant::now();
                    let resp = req.send().await;
                    let ms = t0.elapsed().as_secs_f64() * 1000.0;
                    match resp {
                        Ok(resp) if resp.status() == 200 => {
                            let bytes = resp.bytes().await.unwrap_or_default();
                            let body: serde_json::Value =
                                serde_json::from_slice(&bytes).unwrap_or_default();
                            let ok = body["requestId"] == r.id.as_str();
                            latencies.lock().unwrap_or_else(|e| e.into_inner()).push(ms);
                            let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
                            if ok {
                                c.0 += r.events;
                                c.3 += r.body.len();
                            } else {
                                c.2 += 1;
                            }
                            break;
                        }
                        Ok(resp)
                            if resp.status() == 503
                                && attempts < 50
                                && Instant::now() < stop_at =>
                        {
                            attempts += 1;
                            counts.lock().unwrap_or_else(|e| e.into_inner()).1 += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        _ => {
                            counts.lock().unwrap_or_else(|e| e.into_inner()).2 += 1;
                            break;
                        }
                    }
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let settle_by = Instant::now() + Duration::from(a.settle_timeout);
    let (acked_now, ..) = *counts.lock().unwrap_or_else(|e| e.into_inner());
    let mut processed_seconds = None;
    let mut processed_cpu_seconds = None;
    if let (Some(admin), Some(base)) = (&a.admin, baseline) {
        loop {
            let p = server_progress(&client, admin).await?;
            if p.decoded - base.decoded >= acked_now as f64 && p.queued == 0.0 {
                processed_seconds = Some(started.elapsed().as_secs_f64());
                processed_cpu_seconds = cpu_since_start();
                break;
            }
            if Instant::now() >= settle_by {
                break;
            }
            // Often enough for a precise time, rarely enough to cost nothing.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (mut spans_expected, mut spans_received, mut spans_seconds) = (None, None, None);
    let mut spans_cpu_seconds = None;
    if let Some(counts) = &intake {
        let executions = (acked_now as f64 / events_per_exec).round() as u64;
        let expected = executions * spans_per_exec;
        spans_expected = Some(expected);
        loop {
            let got = counts.spans.load(Ordering::Relaxed);
            if got >= expected || Instant::now() >= settle_by {
                spans_received = Some(got);
                spans_seconds = Some(started.elapsed().as_secs_f64());
                spans_cpu_seconds = cpu_since_start();
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut lat = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    lat.sort_by(f64::total_cmp);
    let (acked, retries, failures, bytes) = *counts.lock().unwrap_or_else(|e| e.into_inner());
    let sent = lat.len();
    let decoded: usize = reqs.iter().take(sent).map(|r| r.decoded_bytes).sum();
    Ok(Report {
        requests: sent,
        events_acked: acked,
        seconds: secs,
        events_per_second: acked as f64 / secs,
        compressed_mb_per_second: bytes as f64 / secs / 1e6,
        decoded_mb_per_second: decoded as f64 / secs / 1e6,
        mean_request_bytes: if sent > 0 {
            bytes as f64 / sent as f64
        } else {
            0.0
        },
        latency_ms_p50: percentile(&lat, 0.50),
        latency_ms_p99: percentile(&lat, 0.99),
        latency_ms_max: lat.last().copied().unwrap_or(0.0),
        retries_503: retries,
        failures,
        server_peak_rss_mib: a.server_pid.and_then(peak_rss_mib),
        processed_seconds,
        processed_cpu_seconds,
        processed_events_per_second: processed_seconds.map(|t| acked as f64 / t),
        floor_events_per_second,
        floor_ratio: processed_seconds
            .zip(floor_events_per_second)
            .map(|(t, f)| acked as f64 / t / f),
        spans_expected,
        spans_received,
        spans_seconds,
        spans_cpu_seconds,
    })
}

/// Decoding alone over `reqs` (as the server receives them), best of three.
fn floor(reqs: &[Request]) -> f64 {
    let limits = crate::decode::BodyLimits {
        max_body_bytes: 80 << 20,
        decode: Default::default(),
    };
    let events: usize = reqs.iter().map(|r| r.events).sum();
    let bodies: Vec<bytes::Bytes> = reqs.iter().map(|r| r.body.clone().into()).collect();
    (0..3)
        .map(|_| {
            let t = Instant::now();
            for b in &bodies {
                let d = crate::decode::body::decode_body(b.clone(), limits);
                std::hint::black_box(d.map(|d| d.events.len()).unwrap_or(0));
            }
            events as f64 / t.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

#[derive(Debug, Clone, Copy)]
struct Progress {
    /// `stepstitch_events_decoded_total`.
    decoded: f64,
    /// Bytes in the decode queue plus events in the hand-off: both are
    /// released only once the stitcher applied the events.
    queued: f64,
}

async fn server_progress(client: &reqwest::Client, admin: &str) -> Result<Progress, LoadgenError> {
    let url = format!("{}/metrics", admin.trim_end_matches('/'));
    let text = async { client.get(&url).send().await?.text().await }
        .await
        .map_err(|e| LoadgenError::Client(format!("--admin {url}: {e}")))?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    };
    Ok(Progress {
        decoded: value("stepstitch_events_decoded_total"),
        queued: value("stepstitch_decode_queue_bytes") + value("stepstitch_handoff_queued_events"),
    })
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "requests acknowledged  {} ({} retried after 503, {} failed)",
            self.requests, self.retries_503, self.failures
        )?;
        writeln!(
            f,
            "events acknowledged    {} in {:.2} s",
            self.events_acked, self.seconds
        )?;
        writeln!(
            f,
            "throughput             {:.0} events/s, {:.1} MB/s compressed, {:.1} MB/s decoded",
            self.events_per_second, self.compressed_mb_per_second, self.decoded_mb_per_second
        )?;
        writeln!(
            f,
            "request size (mean)    {:.0} bytes",
            self.mean_request_bytes
        )?;
        writeln!(
            f,
            "ack latency            p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.latency_ms_p50, self.latency_ms_p99, self.latency_ms_max
        )?;
        if let (Some(t), Some(eps)) = (self.processed_seconds, self.processed_events_per_second) {
            writeln!(
                f,
                "processed (sustained)  all events applied after {t:.2} s: {eps:.0} events/s"
            )?;
            if let Some(cpu) = self.processed_cpu_seconds.filter(|c| *c > 0.0) {
                writeln!(
                    f,
                    "server CPU meanwhile   {cpu:.2} s ({:.0}% of the window): {:.0} events per CPU-second",
                    cpu / t * 100.0,
                    self.events_acked as f64 / cpu
                )?;
            }
        }
        if let (Some(fl), Some(r)) = (self.floor_events_per_second, self.floor_ratio) {
            writeln!(
                f,
                "floor                  decoding alone {fl:.0} events/s; sustained = {:.0}% of it",
                r * 100.0
            )?;
        }
        if let (Some(exp), Some(got), Some(t)) =
            (self.spans_expected, self.spans_received, self.spans_seconds)
        {
            writeln!(
                f,
                "fake intake            {got} of {exp} expected spans after {t:.2} s"
            )?;
            if let Some(cpu) = self.spans_cpu_seconds.filter(|c| *c > 0.0) {
                let per_cpu = self.events_acked as f64 / cpu;
                write!(
                    f,
                    "whole path             server CPU until the last span {cpu:.2} s: {per_cpu:.0} events per CPU-second"
                )?;
                match self.floor_events_per_second {
                    Some(fl) => writeln!(f, " = {:.0}% of the floor", per_cpu / fl * 100.0)?,
                    None => writeln!(f)?,
                }
            }
        }
        match self.server_peak_rss_mib {
            Some(m) => write!(f, "server peak RSS        {m:.0} MiB"),
            None => write!(f, "server peak RSS        (pass --server-pid)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_by_default() {
        for ok in [
            "http://127.0.0.1:8080/firehose",
            "http://localhost/firehose",
            "http://[::1]:9/x",
        ] {
            assert!(is_loopback(ok), "{ok}");
        }
        for no in [
            "https://example.com/firehose",
            "http://10.0.0.1:8080/",
            "http://127.0.0.1.evil.com/",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn cpu_seconds_reads_this_process_and_grows_with_work() {
        let pid = std::process::id();
        let before = cpu_seconds(pid).expect("own /proc stat");
        // Spin until the reading moves (clock ticks are 10 ms); the wall
        // limit only stops a broken reading, whatever else the machine runs.
        let t = Instant::now();
        let mut x = 0u64;
        let mut after = before;
        while after - before < 0.05 && t.elapsed() < Duration::from_secs(60) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            after = cpu_seconds(pid).unwrap();
        }
        assert!(after - before >= 0.05, "{before} -> {after}");
        assert_eq!(cpu_seconds(u32::MAX), None);
    }

    #[test]
    fn the_whole_path_is_costed_by_cpu_until_the_last_span() {
        let r = Report {
            events_acked: 3_000_000,
            processed_seconds: Some(10.0),
            processed_events_per_second: Some(300_000.0),
            processed_cpu_seconds: Some(9.0),
            floor_events_per_second: Some(500_000.0),
            floor_ratio: Some(0.6),
            spans_expected: Some(100),
            spans_received: Some(100),
            spans_seconds: Some(16.0),
            spans_cpu_seconds: Some(12.0),
            ..Default::default()
        };
        let text = r.to_string();
        assert!(
            text.contains("server CPU until the last span 12.00 s: 250000 events per CPU-second = 50% of the floor"),
            "{text}"
        );
        assert!(text.contains("sustained = 60% of it"), "{text}");
        let without = Report {
            spans_cpu_seconds: None,
            ..r
        };
        assert!(!without.to_string().contains("whole path"));
    }
}
