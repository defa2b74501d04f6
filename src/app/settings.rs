//! Every setting of `serve`: each component's own arguments, flattened
//! into one command line (flag, environment variable, default), validated
//! by the component, plus the checks that span components (an exporter
//! named without its settings, log forwarding without a key).

use crate::admin::settings::{AdminArgs, AdminSettings};
use crate::aws::{AwsArgs, AwsMode, AwsSettings};
use crate::cluster::{ClusterArgs, ClusterSettings};
use crate::decode::settings::DecodeArgs;
use crate::decode::BodyLimits;
use crate::durable::settings::{DurableArgs, DurableSettings};
use crate::export::datadog::settings::{DatadogArgs, DatadogSettings};
use crate::export::otlp::settings::OtlpArgs;
use crate::export::settings::{ExportArgs, ExportSettings, ExportTarget};
use crate::firehose::settings::{FirehoseArgs, FirehoseSettings};
use crate::pipeline::settings::{PipelineArgs, PipelineSettings};
use crate::setting_id as id;
use crate::settings::{env_of, Check, ConfigError};
use crate::stitch::output::ForwardLogs;
use crate::stitch::settings::StitchArgs;
use crate::stitch::StitchConfig;
use crate::store::settings::{Backend, StoreArgs, StoreSettings};
use crate::telemetry::settings::{LogArgs, LogSettings};
use clap::{Args, Parser};
use std::time::Duration;

/// Every setting of `serve`, as given (before validation).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub firehose: FirehoseArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub decode: DecodeArgs,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    #[command(flatten)]
    pub durable: DurableArgs,
    #[command(flatten)]
    pub stitch: StitchArgs,
    #[command(flatten)]
    pub export: ExportArgs,
    #[command(flatten)]
    pub datadog: DatadogArgs,
    #[command(flatten)]
    pub otlp: OtlpArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// The service as a whole.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Service")]
pub struct ServiceArgs {
    /// Time allowed for draining and flushing on SIGTERM/SIGINT.
    #[arg(long, env = "STEPSTITCH_SHUTDOWN_TIMEOUT", default_value = "25s")]
    pub shutdown_timeout: String,
}

/// Validated settings, one part per component.
#[derive(Debug, Clone)]
pub struct Settings {
    pub firehose: FirehoseSettings,
    pub admin: AdminSettings,
    pub body: BodyLimits,
    pub pipeline: PipelineSettings,
    pub durable: DurableSettings,
    /// The stitcher, its spans dressed with the Datadog service, env,
    /// version and tags.
    pub stitch: StitchConfig,
    pub export: ExportSettings,
    pub datadog: DatadogSettings,
    pub store: StoreSettings,
    pub aws: AwsSettings,
    /// Cluster mode, when on.
    pub cluster: Option<ClusterSettings>,
    pub log: LogSettings,
    pub shutdown_timeout: Duration,
}

impl Settings {
    pub fn from_args(a: ServeArgs) -> Result<Self, ConfigError> {
        let datadog = a.datadog.validate()?;
        let otlp = a.otlp.validate()?;
        let forward_logs_raw = a.stitch.forward_logs.clone();
        let mut stitch = a.stitch.validate()?;
        stitch.spans.service = datadog.service.clone();
        stitch.spans.env = datadog.env.clone();
        stitch.spans.version = datadog.version.clone();
        stitch.spans.tags = datadog.tag_pairs();
        let cluster = a.cluster.validate()?;
        let mut otlp = otlp;
        if let Some(c) = &cluster {
            // OpenTelemetry's single-writer rule: each replica's metric
            // streams are its own (delta sums would otherwise collide).
            if !otlp
                .resource_attributes
                .iter()
                .any(|(k, _)| k == "service.instance.id")
            {
                otlp.resource_attributes
                    .push(("service.instance.id".into(), c.config.node.clone()));
            }
        }
        let export = a.export.validate(&datadog, otlp)?;
        // Logs go to jsonl, to OTLP when it has a logs endpoint, and to
        // Datadog's logs intake only with the API key (also in agent mode).
        let takes_logs = |t: &ExportTarget| match t {
            ExportTarget::Jsonl(_) => true,
            ExportTarget::Otlp => export.otlp.logs_url.is_some(),
            ExportTarget::Datadog | ExportTarget::DatadogAgent => datadog.api_key.is_some(),
        };
        let store = a.store.validate()?;
        let stored = store.backend != Backend::Off;
        if stitch.forward_logs != ForwardLogs::None
            && !stored
            && !export.targets.iter().any(takes_logs)
        {
            return Err(Check::<StitchArgs>::error(
                "forward_logs",
                &forward_logs_raw,
                format!(
                    "no exporter takes logs and the store is off: forwarding them to Datadog needs {} (the logs intake is reached directly, also in agent mode); otlp needs a logs endpoint",
                    env_of::<DatadogArgs>("dd_api_key")
                ),
                "errors",
            ));
        }
        let admin = a.admin.validate()?;
        let aws_mode = a.aws.aws.clone();
        let aws = a.aws.validate()?;
        if aws.mode == AwsMode::Actions
            && admin.api_tokens.is_empty()
            && admin.api_tokens_file.is_none()
        {
            return Err(Check::<AwsArgs>::error(
                "aws",
                &aws_mode,
                format!(
                    "actions change things in AWS and need an API token to be asked: set {} or {}",
                    env_of::<AdminArgs>("api_tokens"),
                    env_of::<AdminArgs>("api_tokens_file")
                ),
                "read",
            ));
        }
        Ok(Settings {
            firehose: a.firehose.validate()?,
            admin,
            body: a.decode.validate()?,
            pipeline: a.pipeline.validate()?,
            durable: a.durable.validate()?,
            stitch,
            export,
            datadog,
            store,
            aws,
            cluster,
            log: a.log.validate()?,
            shutdown_timeout: a.service.validate()?,
        })
    }

    /// Settings from an argument list (the process environment is read
    /// where a setting has an environment variable).
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

impl ServiceArgs {
    fn validate(self) -> Result<Duration, ConfigError> {
        Check::<ServiceArgs>::duration(id!(shutdown_timeout), &self.shutdown_timeout, "25s")
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
    fn cluster_mode_names_each_replica_in_its_metrics() {
        let s = parse(&[
            "--cluster-nats-url",
            "nats://127.0.0.1:4222",
            "--node-id",
            "replica-7",
            "--export",
            "otlp",
            "--otel-exporter-otlp-endpoint",
            "http://127.0.0.1:4318",
        ])
        .unwrap();
        assert_eq!(s.cluster.as_ref().unwrap().config.node, "replica-7");
        assert!(s
            .export
            .otlp
            .resource_attributes
            .contains(&("service.instance.id".into(), "replica-7".into())));
        // Off by default: no instance id is made up.
        let s = parse(&[
            "--export",
            "otlp",
            "--otel-exporter-otlp-endpoint",
            "http://127.0.0.1:4318",
        ])
        .unwrap();
        assert!(s.cluster.is_none());
        assert!(s.export.otlp.resource_attributes.is_empty());
    }

    #[test]
    fn defaults() {
        let s = parse(&[]).unwrap();
        assert_eq!(s.firehose.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(s.admin.listen, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(s.export.targets, vec![ExportTarget::Jsonl(None)]);
        assert_eq!(s.stitch.spans.max_payload_bytes, 16384);
        assert!(s.body.max_body_bytes > crate::decode::settings::FIREHOSE_MAX_BODY);
        assert!(s.firehose.access_keys.is_empty());
        assert_eq!(s.datadog.site, "datadoghq.com");
        assert_eq!(s.shutdown_timeout, Duration::from_secs(25));
    }

    #[test]
    fn export_defaults_follow_dd_settings() {
        let s = parse(&["--dd-api-key", "0123456789abcdef0123456789abcdef"]).unwrap();
        assert_eq!(s.export.targets, vec![ExportTarget::Datadog]);
        let s = parse(&["--dd-trace-agent-url", "http://127.0.0.1:8126"]).unwrap();
        assert_eq!(s.export.targets, vec![ExportTarget::DatadogAgent]);
        let s = parse(&["--export", "jsonl:/tmp/x.jsonl,jsonl:-"]).unwrap();
        assert_eq!(
            s.export.targets,
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
