//! firehose-protocol.md §5.2 "Auth", key rotation without restart, and
//! startup validation of settings — against the real binary.

mod common;

use common::firehose::{body, cwl_record, Post};
use common::fixtures::Fixture;
use common::{run_to_exit, Server};
use std::time::{Duration, Instant};

fn records() -> Vec<String> {
    let f = Fixture::load("redrive_task_failure");
    vec![cwl_record(&f.lines, f.state_machine())]
}

#[tokio::test]
async fn no_key_configured_accepts_and_warns_loudly() {
    let s = Server::start(&[]);
    let a = Post::new(&s, "open").send(body("open", &records())).await;
    assert_eq!(a.status, 200);
    let a = Post::new(&s, "open2")
        .key("anything")
        .send(body("open2", &records()))
        .await;
    assert_eq!(a.status, 200);
    assert!(s
        .logs()
        .iter()
        .any(|l| l.contains("NO ACCESS KEYS CONFIGURED") && l.contains("WARN")));
}

#[tokio::test]
async fn configured_keys_valid_wrong_missing_empty() {
    let s = Server::start_with_env(
        &[],
        &[("STEPSTITCH_ACCESS_KEYS", "key-old-7f3a,key-new-91bc")],
    );
    for k in ["key-old-7f3a", "key-new-91bc"] {
        let a = Post::new(&s, "ok")
            .key(k)
            .send(body("ok", &records()))
            .await;
        assert_eq!(a.status, 200, "{k}");
    }
    let a = Post::new(&s, "wrong")
        .key("key-old-7f3")
        .send(body("wrong", &records()))
        .await;
    assert_eq!(a.status, 401);
    a.assert_contract("wrong");
    let a = Post::new(&s, "missing")
        .send(body("missing", &records()))
        .await;
    assert_eq!(
        a.status, 401,
        "missing header must be refused (CVE-2024-45043)"
    );
    a.assert_contract("missing");
    let a = Post::new(&s, "empty")
        .header("x-amz-firehose-access-key", "")
        .send(body("empty", &records()))
        .await;
    assert_eq!(a.status, 401);
    assert_eq!(
        s.metric(r#"stepstitch_firehose_rejections_total{reason="invalid_access_key"}"#)
            .await,
        1.0
    );
    assert_eq!(
        s.metric(r#"stepstitch_firehose_rejections_total{reason="missing_access_key"}"#)
            .await,
        2.0
    );
    // Only the two accepted requests were decoded.
    assert_eq!(s.metric("stepstitch_events_decoded_total").await, 56.0);
    for line in s.logs() {
        assert!(
            !line.contains("key-old") && !line.contains("key-new") && !line.contains("key-old-7f3"),
            "key in log: {line}"
        );
    }
}

#[tokio::test]
async fn repeated_flag_keys() {
    let s = Server::start(&["--access-key", "alpha-key", "--access-key", "beta-key"]);
    let a = Post::new(&s, "b")
        .key("beta-key")
        .send(body("b", &[]))
        .await;
    assert_eq!(a.status, 200);
    let a = Post::new(&s, "c")
        .key("gamma-key")
        .send(body("c", &[]))
        .await;
    assert_eq!(a.status, 401);
}

#[tokio::test]
async fn key_file_rotation_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access-keys");
    std::fs::write(&path, "# Firehose keys\nrotate-me-first\n").unwrap();
    let s = Server::start(&[
        "--access-keys-file",
        path.to_str().unwrap(),
        "--access-keys-reload-interval",
        "100ms",
    ]);
    let pid_before = s.pid();
    assert_eq!(
        Post::new(&s, "1")
            .key("rotate-me-first")
            .send(body("1", &[]))
            .await
            .status,
        200
    );
    assert_eq!(
        Post::new(&s, "2")
            .key("rotate-me-second")
            .send(body("2", &[]))
            .await
            .status,
        401
    );

    // Overlap: both keys active while Firehose switches.
    std::fs::write(&path, "rotate-me-first\nrotate-me-second\n").unwrap();
    wait_until(&s, "rotate-me-second", 200).await;
    assert_eq!(
        Post::new(&s, "3")
            .key("rotate-me-first")
            .send(body("3", &[]))
            .await
            .status,
        200
    );

    // Old key retired.
    std::fs::write(&path, "rotate-me-second\n").unwrap();
    wait_until(&s, "rotate-me-first", 401).await;
    assert_eq!(
        Post::new(&s, "4")
            .key("rotate-me-second")
            .send(body("4", &[]))
            .await
            .status,
        200
    );

    // An emptied file denies everything; it never means "no auth".
    std::fs::write(&path, "").unwrap();
    wait_until(&s, "rotate-me-second", 401).await;
    assert_eq!(Post::new(&s, "5").send(body("5", &[])).await.status, 401);

    assert_eq!(s.pid(), pid_before);
    assert!(
        s.metric(r#"stepstitch_access_keys_reloads_total{result="changed"}"#)
            .await
            >= 3.0
    );
    assert!(
        s.logs().iter().all(|l| !l.contains("rotate-me")),
        "a key reached the logs"
    );
}

async fn wait_until(s: &Server, key: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if Post::new(s, "poll")
            .key(key)
            .send(body("poll", &[]))
            .await
            .status
            == status
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "key {key} never answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn bad_settings_stop_startup_with_one_line() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            &["--finalize-grace", "later"],
            &[],
            "STEPSTITCH_FINALIZE_GRACE",
        ),
        (
            &[],
            &[("STEPSTITCH_IDLE_TIMEOUT", "forever")],
            "STEPSTITCH_IDLE_TIMEOUT",
        ),
        (
            &[],
            &[("STEPSTITCH_LISTEN", "eighty-eighty")],
            "STEPSTITCH_LISTEN",
        ),
        (
            &[],
            &[("STEPSTITCH_MAX_PAYLOAD_BYTES", "lots")],
            "STEPSTITCH_MAX_PAYLOAD_BYTES",
        ),
        (&[], &[("STEPSTITCH_EXPORT", "kafka")], "STEPSTITCH_EXPORT"),
        (
            &[],
            &[("STEPSTITCH_ACCESS_KEYS_FILE", "/nonexistent/keys")],
            "STEPSTITCH_ACCESS_KEYS_FILE",
        ),
        (&[], &[("DD_SITE", "data dog")], "DD_SITE"),
        (
            &[],
            &[("STEPSTITCH_CLUSTER_NATS_URL", "http://nats:4222")],
            "STEPSTITCH_CLUSTER_NATS_URL",
        ),
        (
            &[],
            &[
                ("STEPSTITCH_CLUSTER_NATS_URL", "nats://127.0.0.1:4222"),
                ("STEPSTITCH_CLUSTER_PARTITIONS", "0"),
            ],
            "STEPSTITCH_CLUSTER_PARTITIONS",
        ),
        (&[], &[("DD_API_KEY", "sekr!t-value")], "DD_API_KEY"),
    ];
    for (args, env, name) in cases {
        let mut full = vec!["serve"];
        full.extend_from_slice(args);
        let (status, stderr) = run_to_exit(&full, env);
        assert_eq!(status.code(), Some(2), "{name}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{name}: {stderr}");
        assert!(lines[0].contains(name), "{name}: {stderr}");
        assert!(lines[0].contains("example of a good value"), "{stderr}");
        assert!(!stderr.contains("sekr!t"), "secret echoed: {stderr}");
    }
}

/// `serve` on free loopback ports.
const SERVE_ON_LOOPBACK: &[&str] = &[
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--admin-listen",
    "127.0.0.1:0",
];

#[test]
fn an_unreachable_nats_stops_cluster_mode_naming_the_setting() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("nats://{}", closed.local_addr().unwrap());
    drop(closed);
    let started = std::time::Instant::now();
    let (status, stderr) = run_to_exit(SERVE_ON_LOOPBACK, &[("STEPSTITCH_CLUSTER_NATS_URL", &url)]);
    assert!(!status.success());
    assert!(stderr.contains("STEPSTITCH_CLUSTER_NATS_URL"), "{stderr}");
    assert!(stderr.contains("cannot reach NATS at"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn an_unusable_data_dir_stops_cluster_mode_naming_the_setting() {
    // The acknowledgements journal lives there; it is opened before NATS
    // is reached, so no server is needed to see the refusal.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let (status, stderr) = run_to_exit(
        SERVE_ON_LOOPBACK,
        &[
            ("STEPSTITCH_CLUSTER_NATS_URL", "nats://127.0.0.1:4222"),
            ("STEPSTITCH_DATA_DIR", file.to_str().unwrap()),
        ],
    );
    assert!(!status.success());
    assert!(stderr.contains("STEPSTITCH_DATA_DIR"), "{stderr}");
    assert!(
        stderr.contains("cannot open the acknowledgements journal"),
        "{stderr}"
    );
}

#[test]
fn port_in_use_names_the_setting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, stderr) = run_to_exit(
        &["serve", "--listen", &addr, "--admin-listen", "127.0.0.1:0"],
        &[],
    );
    assert!(!status.success());
    assert!(stderr.contains("STEPSTITCH_LISTEN"), "{stderr}");
}

#[test]
fn help_lists_every_setting_with_its_env() {
    for args in [&["--help"][..], &["serve", "--help"]] {
        let out = std::process::Command::new(common::bin())
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        for env in [
            "STEPSTITCH_LISTEN",
            "STEPSTITCH_ADMIN_LISTEN",
            "STEPSTITCH_ACCESS_KEYS",
            "STEPSTITCH_ACCESS_KEYS_FILE",
            "STEPSTITCH_DATA_DIR",
            "STEPSTITCH_EXPORT",
            "STEPSTITCH_FINALIZE_GRACE",
            "STEPSTITCH_IDLE_TIMEOUT",
            "STEPSTITCH_MAX_PAYLOAD_BYTES",
            "DD_API_KEY",
            "DD_SITE",
            "DD_ENV",
            "DD_SERVICE",
            "DD_VERSION",
            "DD_TAGS",
            "DD_TRACE_AGENT_URL",
            "DD_DOGSTATSD_URL",
            "DD_APM_DD_URL",
            "DD_DD_URL",
            "DD_LOGS_CONFIG_LOGS_DD_URL",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ] {
            assert!(help.contains(env), "{args:?} --help lacks {env}");
        }
        assert!(help.contains("[default: 16384]"));
    }
}
