//! Datadog's APM test agent (`ddapm-test-agent`, reference/test-peers.md
//! §4): the trace API for the `datadog-agent` exporter and an OTLP/HTTP
//! receiver (`/v1/traces`, `/v1/metrics`, `/v1/logs`, read back under
//! `/test/session/*`) for the `otlp` exporter. Installed by
//! `scripts/test.sh` into `.venv-dd`; without it a test is skipped locally
//! and fails under CI (`CI` set).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn agent_bin() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = std::env::var_os("STEPSTITCH_DD_AGENT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv-dd/bin/ddapm-test-agent"));
    if bin.exists() {
        return Some(bin);
    }
    let msg = format!(
        "ddapm-test-agent missing ({}): run scripts/test.sh",
        bin.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{msg}");
    eprintln!("SKIPPED: {msg}");
    None
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running test agent; killed on drop.
pub struct TestAgent {
    child: Child,
    /// The trace API (`/v0.4/traces`, `/test/*`).
    pub url: String,
    /// The OTLP/HTTP receiver's base URL.
    pub otlp_url: String,
    log: PathBuf,
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestAgent {
    /// On free ports, with the header and size checks on; its output goes to `log`.
    pub async fn start(bin: &Path, log: &Path) -> TestAgent {
        let port = free_port();
        let otlp_port = free_port();
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new(bin)
            .args(["--port", &port.to_string()])
            .args(["--otlp-http-port", &otlp_port.to_string()])
            .args(["--otlp-grpc-port", &free_port().to_string()])
            // The `--enabled-checks` flag is broken upstream; the variable works.
            .env(
                "ENABLED_CHECKS",
                "trace_count_header,meta_tracer_version_header,trace_content_length",
            )
            .env("MAX_REQUESTS", "100000")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn ddapm-test-agent");
        let agent = TestAgent {
            child,
            url: format!("http://127.0.0.1:{port}"),
            otlp_url: format!("http://127.0.0.1:{otlp_port}"),
            log: log.to_owned(),
        };
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        for probe in [
            format!("{}/info", agent.url),
            format!("{}/test/session/traces", agent.otlp_url),
        ] {
            loop {
                if let Ok(r) = client.get(&probe).send().await {
                    if r.status().is_success() {
                        break;
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "test agent did not start: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        agent
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What the OTLP receiver holds for `signal` (`traces`, `metrics`,
    /// `logs`): one JSON object per request, protobuf field names.
    pub async fn otlp(&self, signal: &str) -> Vec<Value> {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("{}/test/session/{signal}", self.otlp_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}
