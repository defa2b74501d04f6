//! Test harness: the real `stepstitch` binary on loopback, plus Firehose
//! request builders and fixture loaders.
#![allow(dead_code)]

pub mod agent;
pub mod browser;
pub mod firehose;
pub mod fixtures;
pub mod intake;
pub mod moto;
pub mod nats;
pub mod otlp;
pub mod postgres;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running server process. Killed on drop.
pub struct Server {
    child: Child,
    pub ingest: SocketAddr,
    pub admin: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    pub events_out: PathBuf,
    pub dir: tempfile::TempDir,
    pub client: reqwest::Client,
}

/// Variables that must not leak from the developer's shell into a test server.
fn scrub(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("STEPSTITCH_")
            || k.starts_with("DD_")
            || k.starts_with("OTEL_")
            || k.starts_with("AWS_")
        {
            cmd.env_remove(k.as_ref());
        }
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_stepstitch")
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let events_out = dir.path().join("events.jsonl");
        let mut cmd = Command::new(bin());
        scrub(&mut cmd);
        cmd.args(["serve", "--listen", "127.0.0.1:0"]);
        if !args.contains(&"--admin-listen") {
            cmd.args(["--admin-listen", "127.0.0.1:0"]);
        }
        if !args.contains(&"--events-out") {
            cmd.arg("--events-out").arg(&events_out);
        }
        if !args.contains(&"--data-dir") {
            cmd.arg("--data-dir").arg(dir.path().join("data"));
        }
        cmd.args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn stepstitch");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        if v["message"] == "listening" {
                            let _ = tx.send((
                                v["ingest"].as_str().unwrap().parse::<SocketAddr>().unwrap(),
                                v["admin"].as_str().unwrap().parse::<SocketAddr>().unwrap(),
                            ));
                        }
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let (ingest, admin) = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start: {:?}", logs.lock().unwrap());
            }
        };
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        Server {
            child,
            ingest,
            admin,
            logs,
            events_out,
            dir,
            client,
        }
    }

    /// SIGKILL: no chance to flush or snapshot.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.ingest, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// The text of `/metrics`.
    /// A GET on the admin listener, its body as JSON.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        let r = self.client.get(self.admin_url(path)).send().await.unwrap();
        r.json().await.unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A sample's value; `series` is the name with labels as rendered,
    /// e.g. `stepstitch_decode_failures_total{reason="base64"}`. Absent = 0.
    pub async fn metric(&self, series: &str) -> f64 {
        parse_metric(&self.metrics().await, series)
    }

    /// Waits until every accepted request is decoded (the decode queue is
    /// empty): decoding runs after the 200, so its counters settle later.
    pub async fn settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let m = self.metrics().await;
            if m.contains("stepstitch_decode_queue_bytes ")
                && parse_metric(&m, "stepstitch_decode_queue_bytes") == 0.0
            {
                return;
            }
            assert!(Instant::now() < deadline, "decode queue never drained");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the consumer has taken `n` events, then returns the
    /// decoded events written so far.
    pub async fn events(&self, n: usize) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let consumed = self.metric("stepstitch_events_consumed_total").await as usize;
            if consumed >= n {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "only {consumed} of {n} events consumed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        read_events(&self.events_out)
    }

    /// Sends SIGTERM (via kill(1): no unsafe code in tests either).
    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak resident memory (VmHWM) in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kb * 1024
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn parse_metric(text: &str, series: &str) -> f64 {
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

pub fn read_events(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs the binary to completion (for startup-failure tests).
pub fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut cmd = Command::new(bin());
    scrub(&mut cmd);
    // In a directory of its own: a server that gets as far as opening its
    // default `./data` must not leave it in the repository (or share it
    // with a test running beside it).
    let cwd = tempfile::tempdir().unwrap();
    let out = cmd
        .current_dir(cwd.path())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
