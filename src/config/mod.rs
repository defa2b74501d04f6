//! Settings: flags and environment variables (spec/interfaces.md).
//!
//! clap collects raw strings (flag, else env, else default); `Settings::from_args`
//! validates them into typed values. A bad value yields one line naming the
//! setting (env and flag), the problem, and an example of a good value —
//! never the value of a secret.

pub mod parse;

use clap::{Args, Parser};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Every setting as given, before validation.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Ingest listener (Firehose endpoint `POST /firehose`, `GET /health`).
    #[arg(long, env = "STEPSTITCH_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// Admin listener (`/health`, `/ready`, `/metrics`).
    #[arg(
        long,
        env = "STEPSTITCH_ADMIN_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub admin_listen: String,
    /// Accepted Firehose access key (repeat the flag, or comma-separate in the env). None: no auth.
    #[arg(
        long = "access-key",
        env = "STEPSTITCH_ACCESS_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub access_keys: Vec<String>,
    /// File with one access key per line, re-read when it changes (rotation without restart).
    #[arg(long, env = "STEPSTITCH_ACCESS_KEYS_FILE")]
    pub access_keys_file: Option<String>,
    /// How often the access keys file is checked for changes.
    #[arg(
        long,
        env = "STEPSTITCH_ACCESS_KEYS_RELOAD_INTERVAL",
        default_value = "5s"
    )]
    pub access_keys_reload_interval: String,
    /// Directory for durable state.
    #[arg(long, env = "STEPSTITCH_DATA_DIR", default_value = "./data")]
    pub data_dir: String,
    /// Exporters, comma-separated: datadog, datadog-agent, jsonl:PATH (jsonl:- = stdout), otlp.
    /// Default: datadog with DD_API_KEY, datadog-agent with DD_TRACE_AGENT_URL, else jsonl:-.
    #[arg(long, env = "STEPSTITCH_EXPORT")]
    pub export: Option<String>,
    /// Wait after an execution's terminal event for late events.
    #[arg(long, env = "STEPSTITCH_FINALIZE_GRACE", default_value = "5s")]
    pub finalize_grace: String,
    /// Emit an execution with no terminal event after this long without events.
    #[arg(long, env = "STEPSTITCH_IDLE_TIMEOUT", default_value = "30m")]
    pub idle_timeout: String,
    /// JSON keys whose values are redacted in captured payloads, comma-separated.
    #[arg(long, env = "STEPSTITCH_REDACT_KEYS", value_delimiter = ',')]
    pub redact_keys: Vec<String>,
    /// Stitcher shards (executions are spread over them by ARN).
    #[arg(long, env = "STEPSTITCH_STITCH_SHARDS", default_value = "2")]
    pub stitch_shards: String,
    /// Open executions held at most; past it the longest-idle are emitted as incomplete.
    #[arg(long, env = "STEPSTITCH_MAX_OPEN_EXECUTIONS", default_value = "200000")]
    pub max_open_executions: String,
    /// While an execution runs, emit its finished spans this often; 0s = only at the end.
    #[arg(long, env = "STEPSTITCH_INCREMENTAL_INTERVAL", default_value = "1m")]
    pub incremental_interval: String,
    /// How long an emitted execution is remembered so late events add only new spans.
    #[arg(long, env = "STEPSTITCH_LATE_EVENT_RETENTION", default_value = "2m")]
    pub late_event_retention: String,
    /// Payload capture limit per input/output value, in bytes; 0 = off.
    #[arg(long, env = "STEPSTITCH_MAX_PAYLOAD_BYTES", default_value = "16384")]
    pub max_payload_bytes: String,
    /// Largest request body, as received and after gunzip (keep above 64MiB).
    #[arg(long, env = "STEPSTITCH_MAX_BODY_BYTES", default_value = "80MiB")]
    pub max_body_bytes: String,
    /// Largest decoded size of one record (base64 + gunzip).
    #[arg(
        long,
        env = "STEPSTITCH_MAX_RECORD_DECODED_BYTES",
        default_value = "16MiB"
    )]
    pub max_record_decoded_bytes: String,
    /// Largest decoded size of all records of one request.
    #[arg(
        long,
        env = "STEPSTITCH_MAX_REQUEST_DECODED_BYTES",
        default_value = "640MiB"
    )]
    pub max_request_decoded_bytes: String,
    /// Firehose requests processed at once; more are answered 503.
    #[arg(long, env = "STEPSTITCH_MAX_CONCURRENT_REQUESTS", default_value = "16")]
    pub max_concurrent_requests: String,
    /// Events accepted but not yet processed, at most; past it requests get 503.
    #[arg(
        long,
        env = "STEPSTITCH_QUEUE_CAPACITY_EVENTS",
        default_value = "1000000"
    )]
    pub queue_capacity_events: String,
    /// Bytes of accepted request bodies waiting to be decoded, at most; past it requests get 503.
    #[arg(long, env = "STEPSTITCH_DECODE_QUEUE_BYTES", default_value = "256MiB")]
    pub decode_queue_bytes: String,
    /// How long a request waits for room in the queue before 503.
    #[arg(long, env = "STEPSTITCH_HANDOFF_WAIT", default_value = "1s")]
    pub handoff_wait: String,
    /// Answer every Firehose request within this time (Firehose waits 3 minutes).
    #[arg(long, env = "STEPSTITCH_REQUEST_TIMEOUT", default_value = "150s")]
    pub request_timeout: String,
    /// Time allowed for draining and flushing on SIGTERM/SIGINT.
    #[arg(long, env = "STEPSTITCH_SHUTDOWN_TIMEOUT", default_value = "25s")]
    pub shutdown_timeout: String,
    /// Which Step Functions log events go to Datadog's logs intake: none, errors or all.
    #[arg(long, env = "STEPSTITCH_FORWARD_LOGS", default_value = "none")]
    pub forward_logs: String,
    /// Emit the aws.states.enhanced.* metrics (true or false).
    #[arg(long, env = "STEPSTITCH_ENHANCED_METRICS", default_value = "true")]
    pub enhanced_metrics: String,
    /// State machine names or ARNs without enhanced metrics, comma-separated.
    #[arg(
        long,
        env = "STEPSTITCH_ENHANCED_METRICS_EXCLUDE",
        value_delimiter = ','
    )]
    pub enhanced_metrics_exclude: Vec<String>,
    /// Enhanced metrics are aggregated and flushed this often.
    #[arg(long, env = "STEPSTITCH_METRICS_FLUSH_INTERVAL", default_value = "10s")]
    pub metrics_flush_interval: String,
    /// Disk the data directory may use for the write-ahead log; past it Firehose gets 503.
    #[arg(long, env = "STEPSTITCH_DATA_MAX_BYTES", default_value = "8GiB")]
    pub data_max_bytes: String,
    /// How often the stitcher's state is snapshotted (the log before it is then reclaimed).
    #[arg(long, env = "STEPSTITCH_SNAPSHOT_INTERVAL", default_value = "30s")]
    pub snapshot_interval: String,
    /// Size of one write-ahead log segment file.
    #[arg(long, env = "STEPSTITCH_WAL_SEGMENT_BYTES", default_value = "64MiB")]
    pub wal_segment_bytes: String,
    /// Memory each network exporter may hold for undelivered data; when it is full, Firehose gets 503s.
    #[arg(long, env = "STEPSTITCH_EXPORT_BUFFER_BYTES", default_value = "256MiB")]
    pub export_buffer_bytes: String,
    /// A batch is sent at most this long after its first item.
    #[arg(long, env = "STEPSTITCH_EXPORT_FLUSH_INTERVAL", default_value = "2s")]
    pub export_flush_interval: String,
    /// Longest wait between delivery retries.
    #[arg(long, env = "STEPSTITCH_EXPORT_MAX_BACKOFF", default_value = "10s")]
    pub export_max_backoff: String,
    /// Timeout of one export HTTP request.
    #[arg(long, env = "STEPSTITCH_EXPORT_TIMEOUT", default_value = "30s")]
    pub export_timeout: String,
    /// Write every decoded event as a JSON line to this file (`-` = stdout); for debugging.
    #[arg(long, env = "STEPSTITCH_EVENTS_OUT")]
    pub events_out: Option<String>,
    /// Log format: json or text.
    #[arg(long, env = "STEPSTITCH_LOG_FORMAT", default_value = "json")]
    pub log_format: String,
    /// Log filter (tracing EnvFilter syntax), e.g. info or stepstitch=debug.
    #[arg(long, env = "STEPSTITCH_LOG", default_value = "info")]
    pub log: String,
    /// Datadog API key (agentless export).
    #[arg(long, env = "DD_API_KEY", hide_env_values = true)]
    pub dd_api_key: Option<String>,
    /// Datadog site.
    #[arg(long, env = "DD_SITE", default_value = "datadoghq.com")]
    pub dd_site: String,
    /// `env` tag.
    #[arg(long, env = "DD_ENV")]
    pub dd_env: Option<String>,
    /// Service name; default: the state machine's name.
    #[arg(long, env = "DD_SERVICE")]
    pub dd_service: Option<String>,
    /// `version` tag.
    #[arg(long, env = "DD_VERSION")]
    pub dd_version: Option<String>,
    /// Static tags, comma- or space-separated `key:value`.
    #[arg(long, env = "DD_TAGS")]
    pub dd_tags: Option<String>,
    /// Datadog Agent trace endpoint, e.g. http://datadog-agent:8126.
    #[arg(long, env = "DD_TRACE_AGENT_URL")]
    pub dd_trace_agent_url: Option<String>,
    /// DogStatsD endpoint, e.g. udp://datadog-agent:8125.
    #[arg(long, env = "DD_DOGSTATSD_URL")]
    pub dd_dogstatsd_url: Option<String>,
    /// Trace intake base URL override.
    #[arg(long, env = "DD_APM_DD_URL")]
    pub dd_apm_dd_url: Option<String>,
    /// Metrics API base URL override.
    #[arg(long, env = "DD_DD_URL")]
    pub dd_dd_url: Option<String>,
    /// Logs intake base URL override.
    #[arg(long, env = "DD_LOGS_CONFIG_LOGS_DD_URL")]
    pub dd_logs_config_logs_dd_url: Option<String>,
    /// OTLP/HTTP endpoint.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// OTLP headers, `k=v,k2=v2`.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_HEADERS", hide_env_values = true)]
    pub otel_exporter_otlp_headers: Option<String>,
}

/// A setting's names, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub env: &'static str,
    pub flag: &'static str,
    pub example: &'static str,
    pub secret: bool,
}

macro_rules! setting {
    ($env:literal, $flag:literal, $example:literal) => {
        Setting {
            env: $env,
            flag: $flag,
            example: $example,
            secret: false,
        }
    };
    ($env:literal, $flag:literal, $example:literal, secret) => {
        Setting {
            env: $env,
            flag: $flag,
            example: $example,
            secret: true,
        }
    };
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {} ({}): {problem}{}; example of a good value: {}", .setting.env, .setting.flag, value_part(.setting, .value), .setting.example)]
pub struct ConfigError {
    pub setting: Setting,
    pub value: String,
    pub problem: String,
}

fn value_part(s: &Setting, v: &str) -> String {
    if s.secret || v.is_empty() {
        String::new()
    } else {
        format!(" (got {v:?})")
    }
}

fn check<T>(setting: Setting, value: &str, r: Result<T, String>) -> Result<T, ConfigError> {
    r.map_err(|problem| ConfigError {
        setting,
        value: value.to_owned(),
        problem,
    })
}

/// Where an exporter writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTarget {
    Datadog,
    DatadogAgent,
    /// `None` = standard output.
    Jsonl(Option<PathBuf>),
    Otlp,
}

impl std::fmt::Display for ExportTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportTarget::Datadog => f.write_str("datadog"),
            ExportTarget::DatadogAgent => f.write_str("datadog-agent"),
            ExportTarget::Jsonl(None) => f.write_str("jsonl:-"),
            ExportTarget::Jsonl(Some(p)) => write!(f, "jsonl:{}", p.display()),
            ExportTarget::Otlp => f.write_str("otlp"),
        }
    }
}

/// Datadog settings (the `DD_*` conventions).
#[derive(Debug, Clone, Default)]
pub struct DatadogSettings {
    pub api_key: Option<String>,
    pub site: String,
    pub env: Option<String>,
    pub service: Option<String>,
    pub version: Option<String>,
    pub tags: Vec<String>,
    pub trace_agent_url: Option<String>,
    pub dogstatsd_url: Option<String>,
    pub apm_dd_url: Option<String>,
    pub dd_url: Option<String>,
    pub logs_dd_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct OtlpSettings {
    pub endpoint: Option<String>,
    pub headers: Vec<(String, String)>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub access_keys: Vec<String>,
    pub access_keys_file: Option<PathBuf>,
    pub access_keys_reload_interval: Duration,
    pub data_dir: PathBuf,
    pub export: Vec<ExportTarget>,
    pub finalize_grace: Duration,
    pub idle_timeout: Duration,
    pub max_payload_bytes: usize,
    pub redact_keys: Vec<String>,
    pub stitch_shards: usize,
    pub max_open_executions: usize,
    pub late_event_retention: Duration,
    pub incremental_interval: Duration,
    pub max_body_bytes: usize,
    pub max_record_decoded_bytes: usize,
    pub max_request_decoded_bytes: usize,
    pub max_concurrent_requests: usize,
    pub queue_capacity_events: usize,
    pub decode_queue_bytes: usize,
    pub handoff_wait: Duration,
    pub request_timeout: Duration,
    pub shutdown_timeout: Duration,
    /// `Some(None)` = stdout.
    pub events_out: Option<Option<PathBuf>>,
    pub log_format: crate::telemetry::LogFormat,
    pub log: String,
    pub datadog: DatadogSettings,
    pub otlp: OtlpSettings,
    pub forward_logs: crate::stitch::output::ForwardLogs,
    pub enhanced_metrics: bool,
    pub enhanced_metrics_exclude: Vec<String>,
    pub metrics_flush_interval: Duration,
    pub export_buffer_bytes: usize,
    pub export_flush_interval: Duration,
    pub data_max_bytes: u64,
    pub snapshot_interval: Duration,
    pub wal_segment_bytes: u64,
    pub export_max_backoff: Duration,
    pub export_timeout: Duration,
}

/// The protocol's largest body (before compression).
pub const FIREHOSE_MAX_BODY: usize = 64 << 20;

mod names {
    use super::Setting;
    pub const LISTEN: Setting = setting!("STEPSTITCH_LISTEN", "--listen", "0.0.0.0:8080");
    pub const ADMIN_LISTEN: Setting = setting!(
        "STEPSTITCH_ADMIN_LISTEN",
        "--admin-listen",
        "127.0.0.1:9090"
    );
    pub const ACCESS_KEYS: Setting = setting!(
        "STEPSTITCH_ACCESS_KEYS",
        "--access-key",
        "key-2026-a,key-2026-b",
        secret
    );
    pub const ACCESS_KEYS_FILE: Setting = setting!(
        "STEPSTITCH_ACCESS_KEYS_FILE",
        "--access-keys-file",
        "/etc/stepstitch/access-keys"
    );
    pub const RELOAD: Setting = setting!(
        "STEPSTITCH_ACCESS_KEYS_RELOAD_INTERVAL",
        "--access-keys-reload-interval",
        "5s"
    );
    pub const DATA_DIR: Setting =
        setting!("STEPSTITCH_DATA_DIR", "--data-dir", "/var/lib/stepstitch");
    pub const EXPORT: Setting = setting!(
        "STEPSTITCH_EXPORT",
        "--export",
        "datadog,jsonl:/var/log/spans.jsonl"
    );
    pub const FINALIZE_GRACE: Setting =
        setting!("STEPSTITCH_FINALIZE_GRACE", "--finalize-grace", "5s");
    pub const IDLE_TIMEOUT: Setting = setting!("STEPSTITCH_IDLE_TIMEOUT", "--idle-timeout", "30m");
    pub const SHARDS: Setting = setting!("STEPSTITCH_STITCH_SHARDS", "--stitch-shards", "2");
    pub const MAX_OPEN: Setting = setting!(
        "STEPSTITCH_MAX_OPEN_EXECUTIONS",
        "--max-open-executions",
        "200000"
    );
    pub const INCREMENTAL: Setting = setting!(
        "STEPSTITCH_INCREMENTAL_INTERVAL",
        "--incremental-interval",
        "1m"
    );
    pub const RETENTION: Setting = setting!(
        "STEPSTITCH_LATE_EVENT_RETENTION",
        "--late-event-retention",
        "2m"
    );
    pub const MAX_PAYLOAD: Setting = setting!(
        "STEPSTITCH_MAX_PAYLOAD_BYTES",
        "--max-payload-bytes",
        "16384"
    );
    pub const MAX_BODY: Setting =
        setting!("STEPSTITCH_MAX_BODY_BYTES", "--max-body-bytes", "80MiB");
    pub const MAX_RECORD: Setting = setting!(
        "STEPSTITCH_MAX_RECORD_DECODED_BYTES",
        "--max-record-decoded-bytes",
        "16MiB"
    );
    pub const MAX_REQUEST: Setting = setting!(
        "STEPSTITCH_MAX_REQUEST_DECODED_BYTES",
        "--max-request-decoded-bytes",
        "640MiB"
    );
    pub const CONCURRENCY: Setting = setting!(
        "STEPSTITCH_MAX_CONCURRENT_REQUESTS",
        "--max-concurrent-requests",
        "16"
    );
    pub const QUEUE: Setting = setting!(
        "STEPSTITCH_QUEUE_CAPACITY_EVENTS",
        "--queue-capacity-events",
        "1000000"
    );
    pub const DECODE_QUEUE: Setting = setting!(
        "STEPSTITCH_DECODE_QUEUE_BYTES",
        "--decode-queue-bytes",
        "256MiB"
    );
    pub const HANDOFF_WAIT: Setting = setting!("STEPSTITCH_HANDOFF_WAIT", "--handoff-wait", "1s");
    pub const REQUEST_TIMEOUT: Setting =
        setting!("STEPSTITCH_REQUEST_TIMEOUT", "--request-timeout", "150s");
    pub const SHUTDOWN_TIMEOUT: Setting =
        setting!("STEPSTITCH_SHUTDOWN_TIMEOUT", "--shutdown-timeout", "25s");
    pub const LOG_FORMAT: Setting = setting!("STEPSTITCH_LOG_FORMAT", "--log-format", "json");
    pub const FORWARD_LOGS: Setting =
        setting!("STEPSTITCH_FORWARD_LOGS", "--forward-logs", "errors");
    pub const ENHANCED_METRICS: Setting =
        setting!("STEPSTITCH_ENHANCED_METRICS", "--enhanced-metrics", "false");
    pub const METRICS_FLUSH: Setting = setting!(
        "STEPSTITCH_METRICS_FLUSH_INTERVAL",
        "--metrics-flush-interval",
        "10s"
    );
    pub const DATA_MAX: Setting = setting!("STEPSTITCH_DATA_MAX_BYTES", "--data-max-bytes", "8GiB");
    pub const SNAPSHOT_INTERVAL: Setting =
        setting!("STEPSTITCH_SNAPSHOT_INTERVAL", "--snapshot-interval", "30s");
    pub const WAL_SEGMENT: Setting = setting!(
        "STEPSTITCH_WAL_SEGMENT_BYTES",
        "--wal-segment-bytes",
        "64MiB"
    );
    pub const EXPORT_BUFFER: Setting = setting!(
        "STEPSTITCH_EXPORT_BUFFER_BYTES",
        "--export-buffer-bytes",
        "256MiB"
    );
    pub const EXPORT_FLUSH: Setting = setting!(
        "STEPSTITCH_EXPORT_FLUSH_INTERVAL",
        "--export-flush-interval",
        "2s"
    );
    pub const EXPORT_BACKOFF: Setting = setting!(
        "STEPSTITCH_EXPORT_MAX_BACKOFF",
        "--export-max-backoff",
        "10s"
    );
    pub const EXPORT_TIMEOUT: Setting =
        setting!("STEPSTITCH_EXPORT_TIMEOUT", "--export-timeout", "30s");
    pub const LOG: Setting = setting!("STEPSTITCH_LOG", "--log", "info,stepstitch=debug");
    pub const DD_API_KEY: Setting =
        setting!("DD_API_KEY", "--dd-api-key", "<32 hex characters>", secret);
    pub const DD_SITE: Setting = setting!("DD_SITE", "--dd-site", "datadoghq.eu");
    pub const DD_TAGS: Setting = setting!("DD_TAGS", "--dd-tags", "team:payments,tier:1");
    pub const DD_TRACE_AGENT_URL: Setting = setting!(
        "DD_TRACE_AGENT_URL",
        "--dd-trace-agent-url",
        "http://datadog-agent:8126"
    );
    pub const DD_DOGSTATSD_URL: Setting = setting!(
        "DD_DOGSTATSD_URL",
        "--dd-dogstatsd-url",
        "udp://datadog-agent:8125"
    );
    pub const DD_APM_DD_URL: Setting = setting!(
        "DD_APM_DD_URL",
        "--dd-apm-dd-url",
        "https://trace.agent.datadoghq.eu"
    );
    pub const DD_DD_URL: Setting = setting!("DD_DD_URL", "--dd-dd-url", "https://api.datadoghq.eu");
    pub const DD_LOGS_URL: Setting = setting!(
        "DD_LOGS_CONFIG_LOGS_DD_URL",
        "--dd-logs-config-logs-dd-url",
        "https://http-intake.logs.datadoghq.eu"
    );
    pub const OTLP_ENDPOINT: Setting = setting!(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "--otel-exporter-otlp-endpoint",
        "http://otel-collector:4318"
    );
    pub const OTLP_HEADERS: Setting = setting!(
        "OTEL_EXPORTER_OTLP_HEADERS",
        "--otel-exporter-otlp-headers",
        "api-key=abc,team=core",
        secret
    );
}

fn usize_of(s: Setting, v: &str, r: Result<u64, String>) -> Result<usize, ConfigError> {
    let n = check(s, v, r)?;
    check(
        s,
        v,
        usize::try_from(n).map_err(|_| "too large".to_string()),
    )
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn parse_export(
    raw: &str,
    dd: &DatadogSettings,
    otlp: &OtlpSettings,
) -> Result<Vec<ExportTarget>, ConfigError> {
    let s = names::EXPORT;
    let mut out = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let target = match item {
            "datadog" => ExportTarget::Datadog,
            "datadog-agent" => ExportTarget::DatadogAgent,
            "otlp" => ExportTarget::Otlp,
            "jsonl:-" => ExportTarget::Jsonl(None),
            other => match other.strip_prefix("jsonl:") {
                Some(path) if !path.is_empty() => ExportTarget::Jsonl(Some(PathBuf::from(path))),
                _ => {
                    return Err(ConfigError {
                        setting: s,
                        value: raw.into(),
                        problem: format!("unknown exporter {other:?} (known: datadog, datadog-agent, jsonl:PATH, otlp)"),
                    })
                }
            },
        };
        let missing = match &target {
            ExportTarget::Datadog if dd.api_key.is_none() => Some("datadog needs DD_API_KEY"),
            ExportTarget::DatadogAgent if dd.trace_agent_url.is_none() => {
                Some("datadog-agent needs DD_TRACE_AGENT_URL")
            }
            ExportTarget::Otlp if otlp.endpoint.is_none() => {
                Some("otlp needs OTEL_EXPORTER_OTLP_ENDPOINT")
            }
            _ => None,
        };
        if let Some(problem) = missing {
            return Err(ConfigError {
                setting: s,
                value: raw.into(),
                problem: problem.into(),
            });
        }
        if !out.contains(&target) {
            out.push(target);
        }
    }
    if out.is_empty() {
        return Err(ConfigError {
            setting: s,
            value: raw.into(),
            problem: "no exporter named".into(),
        });
    }
    Ok(out)
}

impl Settings {
    pub fn from_args(a: ServeArgs) -> Result<Self, ConfigError> {
        use names::*;
        let dur = |s: Setting, v: &str| check(s, v, parse::duration(v));
        let size = |s: Setting, v: &str| usize_of(s, v, parse::byte_size(v));
        let count = |s: Setting, v: &str| usize_of(s, v, parse::positive_int(v));
        let opt_url = |s: Setting,
                       v: Option<String>,
                       schemes: &[&str]|
         -> Result<Option<String>, ConfigError> {
            non_empty(v)
                .map(|v| check(s, &v, parse::url(&v, schemes)))
                .transpose()
        };

        let access_keys: Vec<String> = a.access_keys.iter().map(|k| k.trim().to_owned()).collect();
        if let Some(i) = access_keys.iter().position(String::is_empty) {
            return Err(ConfigError {
                setting: ACCESS_KEYS,
                value: String::new(),
                problem: format!("key {i} is empty"),
            });
        }
        if access_keys
            .iter()
            .any(|k| k.len() > crate::firehose::auth::MAX_KEY_BYTES)
        {
            return Err(ConfigError {
                setting: ACCESS_KEYS,
                value: String::new(),
                problem: "a key is longer than 4096 bytes".into(),
            });
        }
        let access_keys_file = non_empty(a.access_keys_file).map(PathBuf::from);
        if let Some(path) = &access_keys_file {
            if let Err(e) = std::fs::File::open(path) {
                return Err(ConfigError {
                    setting: ACCESS_KEYS_FILE,
                    value: path.display().to_string(),
                    problem: format!("cannot read it ({e})"),
                });
            }
        }
        let access_keys_reload_interval = dur(RELOAD, &a.access_keys_reload_interval)?;
        if access_keys_reload_interval.is_zero() {
            return Err(ConfigError {
                setting: RELOAD,
                value: a.access_keys_reload_interval,
                problem: "must be longer than 0s".into(),
            });
        }
        let data_dir = non_empty(Some(a.data_dir.clone()))
            .map(PathBuf::from)
            .ok_or(ConfigError {
                setting: DATA_DIR,
                value: a.data_dir,
                problem: "empty path".into(),
            })?;

        let datadog = DatadogSettings {
            api_key: non_empty(a.dd_api_key),
            site: check(DD_SITE, &a.dd_site, parse::site(&a.dd_site))?,
            env: non_empty(a.dd_env),
            service: non_empty(a.dd_service),
            version: non_empty(a.dd_version),
            tags: match non_empty(a.dd_tags) {
                Some(t) => check(DD_TAGS, &t, parse::tags(&t))?,
                None => Vec::new(),
            },
            trace_agent_url: opt_url(DD_TRACE_AGENT_URL, a.dd_trace_agent_url, &["http", "https"])?,
            dogstatsd_url: opt_url(
                DD_DOGSTATSD_URL,
                a.dd_dogstatsd_url,
                &["udp", "unix", "unixgram"],
            )?,
            apm_dd_url: opt_url(DD_APM_DD_URL, a.dd_apm_dd_url, &["http", "https"])?,
            dd_url: opt_url(DD_DD_URL, a.dd_dd_url, &["http", "https"])?,
            logs_dd_url: opt_url(
                DD_LOGS_URL,
                a.dd_logs_config_logs_dd_url,
                &["http", "https"],
            )?,
        };
        if let Some(k) = &datadog.api_key {
            if k.len() < 8 || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(ConfigError {
                    setting: DD_API_KEY,
                    value: String::new(),
                    problem: "not an API key (letters and digits, usually 32 hex)".into(),
                });
            }
        }
        let otlp = OtlpSettings {
            endpoint: opt_url(
                OTLP_ENDPOINT,
                a.otel_exporter_otlp_endpoint,
                &["http", "https"],
            )?,
            headers: match non_empty(a.otel_exporter_otlp_headers) {
                None => Vec::new(),
                Some(h) => h
                    .split(',')
                    .filter(|p| !p.trim().is_empty())
                    .map(|pair| match pair.split_once('=') {
                        Some((k, v)) if !k.trim().is_empty() => {
                            Ok((k.trim().to_owned(), v.trim().to_owned()))
                        }
                        _ => Err(ConfigError {
                            setting: OTLP_HEADERS,
                            value: String::new(),
                            problem: "expected key=value pairs".into(),
                        }),
                    })
                    .collect::<Result<_, _>>()?,
            },
        };
        let export_raw = match non_empty(a.export) {
            Some(e) => e,
            None if datadog.api_key.is_some() => "datadog".into(),
            None if datadog.trace_agent_url.is_some() => "datadog-agent".into(),
            None => "jsonl:-".into(),
        };
        let export = parse_export(&export_raw, &datadog, &otlp)?;

        let max_body_bytes = size(MAX_BODY, &a.max_body_bytes)?;
        if max_body_bytes < (1 << 20) {
            return Err(ConfigError {
                setting: MAX_BODY,
                value: a.max_body_bytes,
                problem: "must be at least 1MiB".into(),
            });
        }
        let max_record_decoded_bytes = size(MAX_RECORD, &a.max_record_decoded_bytes)?;
        if max_record_decoded_bytes < 1_024_000 {
            return Err(ConfigError {
                setting: MAX_RECORD,
                value: a.max_record_decoded_bytes,
                problem: "must be at least 1024000 (Firehose's record size)".into(),
            });
        }
        let max_request_decoded_bytes = size(MAX_REQUEST, &a.max_request_decoded_bytes)?;
        if max_request_decoded_bytes < max_record_decoded_bytes {
            return Err(ConfigError {
                setting: MAX_REQUEST,
                value: a.max_request_decoded_bytes,
                problem: "must be at least the per-record limit".into(),
            });
        }

        let log_format = match a.log_format.trim().to_ascii_lowercase().as_str() {
            "json" => crate::telemetry::LogFormat::Json,
            "text" => crate::telemetry::LogFormat::Text,
            _ => {
                return Err(ConfigError {
                    setting: LOG_FORMAT,
                    value: a.log_format,
                    problem: "must be json or text".into(),
                })
            }
        };
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&a.log) {
            return Err(ConfigError {
                setting: LOG,
                value: a.log.clone(),
                problem: format!("not a log filter ({e})"),
            });
        }
        let events_out = non_empty(a.events_out).map(|p| {
            if p == "-" {
                None
            } else {
                Some(PathBuf::from(p))
            }
        });
        let request_timeout = dur(REQUEST_TIMEOUT, &a.request_timeout)?;
        if request_timeout.is_zero() || request_timeout >= Duration::from_secs(180) {
            return Err(ConfigError {
                setting: REQUEST_TIMEOUT,
                value: a.request_timeout,
                problem: "must be above 0s and below Firehose's 3-minute deadline".into(),
            });
        }

        let forward_logs = match a.forward_logs.trim().to_ascii_lowercase().as_str() {
            "none" => crate::stitch::output::ForwardLogs::None,
            "errors" => crate::stitch::output::ForwardLogs::Errors,
            "all" => crate::stitch::output::ForwardLogs::All,
            _ => {
                return Err(ConfigError {
                    setting: FORWARD_LOGS,
                    value: a.forward_logs,
                    problem: "must be none, errors or all".into(),
                })
            }
        };
        if forward_logs != crate::stitch::output::ForwardLogs::None
            && datadog.api_key.is_none()
            && !export.iter().any(|t| matches!(t, ExportTarget::Jsonl(_)))
        {
            return Err(ConfigError {
                setting: FORWARD_LOGS,
                value: a.forward_logs,
                problem: "forwarding logs to Datadog needs DD_API_KEY (the logs intake is reached directly, also in agent mode)".into(),
            });
        }
        let enhanced_metrics = match a.enhanced_metrics.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            _ => {
                return Err(ConfigError {
                    setting: ENHANCED_METRICS,
                    value: a.enhanced_metrics,
                    problem: "must be true or false".into(),
                })
            }
        };
        let metrics_flush_interval = dur(METRICS_FLUSH, &a.metrics_flush_interval)?;
        let export_flush_interval = dur(EXPORT_FLUSH, &a.export_flush_interval)?;
        for (setting, v, raw) in [
            (
                METRICS_FLUSH,
                metrics_flush_interval,
                &a.metrics_flush_interval,
            ),
            (
                EXPORT_FLUSH,
                export_flush_interval,
                &a.export_flush_interval,
            ),
        ] {
            if v.is_zero() {
                return Err(ConfigError {
                    setting,
                    value: raw.clone(),
                    problem: "must be above 0s".into(),
                });
            }
        }
        let data_max_bytes = size(DATA_MAX, &a.data_max_bytes)? as u64;
        let wal_segment_bytes = size(WAL_SEGMENT, &a.wal_segment_bytes)? as u64;
        if wal_segment_bytes < 4096 || wal_segment_bytes > data_max_bytes {
            return Err(ConfigError {
                setting: WAL_SEGMENT,
                value: a.wal_segment_bytes,
                problem: "must be at least 4KiB and at most STEPSTITCH_DATA_MAX_BYTES".into(),
            });
        }
        let snapshot_interval = dur(SNAPSHOT_INTERVAL, &a.snapshot_interval)?;
        if snapshot_interval < Duration::from_millis(100) {
            return Err(ConfigError {
                setting: SNAPSHOT_INTERVAL,
                value: a.snapshot_interval,
                problem: "must be at least 100ms".into(),
            });
        }
        let export_buffer_bytes = size(EXPORT_BUFFER, &a.export_buffer_bytes)?;
        if export_buffer_bytes < (4 << 20) {
            return Err(ConfigError {
                setting: EXPORT_BUFFER,
                value: a.export_buffer_bytes,
                problem: "must be at least 4MiB (one full trace request)".into(),
            });
        }
        let export_timeout = dur(EXPORT_TIMEOUT, &a.export_timeout)?;
        if export_timeout.is_zero() {
            return Err(ConfigError {
                setting: EXPORT_TIMEOUT,
                value: a.export_timeout,
                problem: "must be above 0s".into(),
            });
        }

        Ok(Settings {
            forward_logs,
            enhanced_metrics,
            enhanced_metrics_exclude: a
                .enhanced_metrics_exclude
                .iter()
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty())
                .collect(),
            metrics_flush_interval,
            export_buffer_bytes,
            export_flush_interval,
            data_max_bytes,
            snapshot_interval,
            wal_segment_bytes,
            export_max_backoff: dur(EXPORT_BACKOFF, &a.export_max_backoff)?,
            export_timeout,
            listen: check(LISTEN, &a.listen, parse::socket_addr(&a.listen))?,
            admin_listen: check(
                ADMIN_LISTEN,
                &a.admin_listen,
                parse::socket_addr(&a.admin_listen),
            )?,
            access_keys,
            access_keys_file,
            access_keys_reload_interval,
            data_dir,
            export,
            finalize_grace: dur(FINALIZE_GRACE, &a.finalize_grace)?,
            idle_timeout: dur(IDLE_TIMEOUT, &a.idle_timeout)?,
            max_payload_bytes: usize_of(
                MAX_PAYLOAD,
                &a.max_payload_bytes,
                parse::byte_size(&a.max_payload_bytes),
            )?,
            redact_keys: a
                .redact_keys
                .iter()
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty())
                .collect(),
            stitch_shards: count(SHARDS, &a.stitch_shards)?,
            max_open_executions: count(MAX_OPEN, &a.max_open_executions)?,
            late_event_retention: dur(RETENTION, &a.late_event_retention)?,
            incremental_interval: dur(INCREMENTAL, &a.incremental_interval)?,
            max_body_bytes,
            max_record_decoded_bytes,
            max_request_decoded_bytes,
            max_concurrent_requests: count(CONCURRENCY, &a.max_concurrent_requests)?,
            queue_capacity_events: count(QUEUE, &a.queue_capacity_events)?,
            decode_queue_bytes: size(DECODE_QUEUE, &a.decode_queue_bytes)?,
            handoff_wait: dur(HANDOFF_WAIT, &a.handoff_wait)?,
            request_timeout,
            shutdown_timeout: dur(SHUTDOWN_TIMEOUT, &a.shutdown_timeout)?,
            events_out,
            log_format,
            log: a.log,
            datadog,
            otlp,
        })
    }

    /// Settings from an argument list, ignoring the process environment
    /// except where clap reads `env` (tests pass a clean child environment).
    pub fn try_from_iter<I, T>(args: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(Parser)]
        #[command(name = "stepstitch")]
        struct Serve {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let args = Serve::try_parse_from(args).map_err(|e| e.to_string())?;
        Settings::from_args(args.serve).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let mut v = vec!["stepstitch"];
        v.extend_from_slice(args);
        Settings::try_from_iter(v)
    }

    #[test]
    fn defaults() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(s.admin_listen, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(s.export, vec![ExportTarget::Jsonl(None)]);
        assert_eq!(s.max_payload_bytes, 16384);
        assert!(s.max_body_bytes > FIREHOSE_MAX_BODY);
        assert!(s.access_keys.is_empty());
        assert_eq!(s.datadog.site, "datadoghq.com");
    }

    #[test]
    fn export_defaults_follow_dd_settings() {
        let s = parse(&["--dd-api-key", "0123456789abcdef0123456789abcdef"]).unwrap();
        assert_eq!(s.export, vec![ExportTarget::Datadog]);
        let s = parse(&["--dd-trace-agent-url", "http://127.0.0.1:8126"]).unwrap();
        assert_eq!(s.export, vec![ExportTarget::DatadogAgent]);
        let s = parse(&["--export", "jsonl:/tmp/x.jsonl,jsonl:-"]).unwrap();
        assert_eq!(
            s.export,
            vec![
                ExportTarget::Jsonl(Some("/tmp/x.jsonl".into())),
                ExportTarget::Jsonl(None)
            ]
        );
    }

    #[test]
    fn bad_values_name_the_setting_and_an_example() {
        let cases: &[(&[&str], &str, &str)] = &[
            (
                &["--finalize-grace", "soon"],
                "STEPSTITCH_FINALIZE_GRACE (--finalize-grace)",
                "5s",
            ),
            (&["--listen", "8080"], "STEPSTITCH_LISTEN", "0.0.0.0:8080"),
            (
                &["--max-body-bytes", "12 parsecs"],
                "STEPSTITCH_MAX_BODY_BYTES",
                "80MiB",
            ),
            (
                &["--max-concurrent-requests", "0"],
                "STEPSTITCH_MAX_CONCURRENT_REQUESTS",
                "16",
            ),
            (&["--export", "splunk"], "STEPSTITCH_EXPORT", "datadog"),
            (&["--export", "datadog"], "DD_API_KEY", "datadog"),
            (&["--dd-site", "not a site"], "DD_SITE", "datadoghq.eu"),
            (
                &["--dd-trace-agent-url", "localhost:8126"],
                "DD_TRACE_AGENT_URL",
                "http://datadog-agent:8126",
            ),
            (
                &["--request-timeout", "5m"],
                "STEPSTITCH_REQUEST_TIMEOUT",
                "150s",
            ),
            (&["--log-format", "xml"], "STEPSTITCH_LOG_FORMAT", "json"),
        ];
        for (args, name, example) in cases {
            let err = parse(args).unwrap_err();
            assert!(err.contains(name), "{args:?}: {err}");
            assert!(err.contains(example), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }

    #[test]
    fn secrets_are_not_echoed() {
        let err = parse(&["--dd-api-key", "short!"]).unwrap_err();
        assert!(err.contains("DD_API_KEY"));
        assert!(!err.contains("short!"), "{err}");
        let err = parse(&["--access-key", "good", "--access-key", " "]).unwrap_err();
        assert!(
            err.contains("STEPSTITCH_ACCESS_KEYS") && err.contains("key 1 is empty"),
            "{err}"
        );
    }
}
