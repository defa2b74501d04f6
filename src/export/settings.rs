//! Which exporters run and how they deliver (each network exporter's own
//! settings live with it: `datadog::settings`, `otlp::settings`).

use super::datadog::settings::{DatadogArgs, DatadogSettings};
use super::otlp::settings::{OtlpArgs, OtlpSettings};
use crate::setting_id as id;
use crate::settings::{env_of, non_empty, Check, ConfigError};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Export")]
pub struct ExportArgs {
    /// Exporters, comma-separated: datadog, datadog-agent, jsonl:PATH (jsonl:- = stdout), otlp.
    /// Default: datadog with DD_API_KEY, datadog-agent with DD_TRACE_AGENT_URL, else jsonl:-.
    #[arg(long, env = "STEPSTITCH_EXPORT")]
    pub export: Option<String>,
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
    /// Enhanced metrics are aggregated and flushed this often.
    #[arg(long, env = "STEPSTITCH_METRICS_FLUSH_INTERVAL", default_value = "10s")]
    pub metrics_flush_interval: String,
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

#[derive(Debug, Clone)]
pub struct ExportSettings {
    pub targets: Vec<ExportTarget>,
    pub buffer_bytes: usize,
    pub flush_interval: Duration,
    pub max_backoff: Duration,
    pub timeout: Duration,
    pub metrics_flush_interval: Duration,
    pub otlp: OtlpSettings,
}

impl ExportArgs {
    /// The exporters' settings; a named exporter whose own settings are
    /// missing (`datadog` without `DD_API_KEY`, ...) is an error here.
    pub fn validate(
        self,
        dd: &DatadogSettings,
        otlp: OtlpSettings,
    ) -> Result<ExportSettings, ConfigError> {
        type C = Check<ExportArgs>;
        let raw = match non_empty(self.export.clone()) {
            Some(e) => e,
            None if dd.api_key.is_some() => "datadog".into(),
            None if dd.trace_agent_url.is_some() => "datadog-agent".into(),
            None => "jsonl:-".into(),
        };
        let example = "datadog,jsonl:/var/log/spans.jsonl";
        let err = |problem: String| C::error(id!(export), &raw, problem, example);
        let mut targets = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let target = match item {
                "datadog" => ExportTarget::Datadog,
                "datadog-agent" => ExportTarget::DatadogAgent,
                "otlp" => ExportTarget::Otlp,
                "jsonl:-" => ExportTarget::Jsonl(None),
                other => match other.strip_prefix("jsonl:") {
                    Some(path) if !path.is_empty() => ExportTarget::Jsonl(Some(PathBuf::from(path))),
                    _ => {
                        return Err(err(format!(
                            "unknown exporter {other:?} (known: datadog, datadog-agent, jsonl:PATH, otlp)"
                        )))
                    }
                },
            };
            let missing = match &target {
                ExportTarget::Datadog if dd.api_key.is_none() => {
                    Some(("datadog", env_of::<DatadogArgs>("dd_api_key")))
                }
                ExportTarget::DatadogAgent if dd.trace_agent_url.is_none() => {
                    Some(("datadog-agent", env_of::<DatadogArgs>("dd_trace_agent_url")))
                }
                ExportTarget::Otlp if !otlp.is_configured() => {
                    Some(("otlp", env_of::<OtlpArgs>("otel_exporter_otlp_endpoint")))
                }
                _ => None,
            };
            if let Some((exporter, needs)) = missing {
                return Err(err(format!("{exporter} needs {needs}")));
            }
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
        if targets.is_empty() {
            return Err(err("no exporter named".into()));
        }
        Ok(ExportSettings {
            targets,
            buffer_bytes: C::size_at_least(
                id!(export_buffer_bytes),
                &self.export_buffer_bytes,
                4 << 20,
                "must be at least 4MiB (one full trace request)",
                "256MiB",
            )?,
            flush_interval: C::positive_duration(
                id!(export_flush_interval),
                &self.export_flush_interval,
                "2s",
            )?,
            max_backoff: C::duration(id!(export_max_backoff), &self.export_max_backoff, "10s")?,
            timeout: C::positive_duration(id!(export_timeout), &self.export_timeout, "30s")?,
            metrics_flush_interval: C::positive_duration(
                id!(metrics_flush_interval),
                &self.metrics_flush_interval,
                "10s",
            )?,
            otlp,
        })
    }
}
