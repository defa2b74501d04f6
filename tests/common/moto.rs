//! The moto Step Functions peer (tests/peers/moto_sfn.py) as a process of
//! the test, and its Python scripts. Needs the virtualenv scripts/test.sh
//! installs: without it a test is skipped locally and fails under CI.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Moto {
    pub url: String,
    pub python: PathBuf,
    pub tools: PathBuf,
    pub log: PathBuf,
    child: Child,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The peer's Python and scripts, or `None` (skipped) outside CI.
pub fn peers() -> Option<(PathBuf, PathBuf)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = std::env::var_os("STEPSTITCH_PEERS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv-peers/bin/python"));
    let tools = root.join("tests/peers");
    if !python.exists() {
        let msg = format!(
            "moto peer missing (python {}, tools {}): run scripts/test.sh",
            python.display(),
            tools.display()
        );
        assert!(std::env::var_os("CI").is_none(), "{msg}");
        eprintln!("SKIPPED: {msg}");
        return None;
    }
    Some((python, tools))
}

impl Moto {
    /// Starts the peer on a free loopback port, its log in `dir`.
    pub async fn start(dir: &Path) -> Option<Moto> {
        let (python, tools) = peers()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = dir.join("moto.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(&python)
            .arg(tools.join("moto_sfn.py"))
            .arg(port.to_string())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let moto = Moto {
            url: format!("http://127.0.0.1:{port}"),
            python,
            tools,
            log,
            child,
        };
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while http
            .get(format!("{}/moto-api/", moto.url))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "moto did not start");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Some(moto)
    }

    /// Runs `tests/peers/{script}` with `args` (off the async workers);
    /// panics with its output and moto's log when it fails.
    pub async fn script(&self, script: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.python);
        cmd.arg(self.tools.join(script))
            .args(args)
            .stdin(Stdio::null());
        let out = tokio::time::timeout(
            Duration::from_secs(240),
            tokio::task::spawn_blocking(move || cmd.output().unwrap()),
        )
        .await
        .expect("script timed out")
        .unwrap();
        assert!(
            out.status.success(),
            "{script} {args:?} failed:\n{}\n{}\nmoto:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        out
    }

    /// What stepstitch needs to call this peer as AWS: region, endpoint,
    /// test credentials, and nothing from the developer's own AWS set-up.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ENDPOINT_URL_SFN", self.url.clone()),
            ("AWS_ACCESS_KEY_ID", "AKIDTEST".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
        ]
    }
}
