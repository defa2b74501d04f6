//! The Datadog exporters: `datadog` (agentless, straight to the intake with
//! `DD_API_KEY`) and `datadog-agent` (traces to the Agent's trace API,
//! metrics over DogStatsD; the Agent computes APM stats and adds its host
//! metadata). Logs always go to the logs intake and need `DD_API_KEY`.

pub mod dogstatsd;
pub mod logs;
pub mod metrics;
pub mod settings;
pub mod sites;
pub mod traces;

use self::settings::DatadogArgs;
use super::delivery::{Budget, LaneConfig, LaneSender, Lanes, Transport};
use super::item::ExportItem;
use super::receipt::Receipt;
use crate::settings::env_of;
use crate::stitch::output::MetricKind;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What both Datadog exporters need to know.
#[derive(Debug, Clone)]
pub struct DatadogConfig {
    pub api_key: Option<String>,
    pub endpoints: sites::Endpoints,
    pub env: Option<String>,
    pub version: Option<String>,
    pub trace_agent_url: Option<String>,
    pub dogstatsd_url: Option<String>,
    pub forward_logs: bool,
    /// The series' host resource: this replica's node id in cluster mode.
    pub host: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DatadogError {
    #[error("the datadog exporter needs {}", env_of::<DatadogArgs>("dd_api_key"))]
    NoApiKey,
    #[error("the datadog-agent exporter needs {}", env_of::<DatadogArgs>("dd_trace_agent_url"))]
    NoAgentUrl,
    #[error("{}: only http:// and https:// are supported (got {:?}); Unix sockets are not yet", env_of::<DatadogArgs>("dd_trace_agent_url"), .0)]
    AgentScheme(String),
    #[error(transparent)]
    DogStatsd(#[from] dogstatsd::DogStatsdError),
}

/// A process-unique id for the tracer payloads of this run.
fn runtime_id() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:032x}", t ^ (u128::from(std::process::id()) << 96))
}

struct LogsLane {
    lane: LaneSender<logs::Logs>,
}

impl LogsLane {
    async fn accept(&self, item: &ExportItem, receipt: Option<Arc<Receipt>>) {
        if let ExportItem::Logs(l) = item {
            self.lane
                .send(l.iter().map(logs::log_item).collect(), receipt)
                .await;
        }
    }
}

/// The logs lane, when log forwarding is on (it needs the API key).
fn logs_lane(lanes: &mut Lanes, cfg: &DatadogConfig) -> Option<LogsLane> {
    let key = cfg.api_key.clone().filter(|_| cfg.forward_logs)?;
    Some(LogsLane {
        lane: lanes.spawn(logs::Logs {
            url: cfg.endpoints.logs.clone(),
            api_key: key,
        }),
    })
}

/// Agentless: traces, series, distributions and logs lanes to the intake.
pub struct DatadogExporter {
    traces: LaneSender<traces::IntakeTraces>,
    series: LaneSender<metrics::Series>,
    distributions: LaneSender<metrics::Distributions>,
    logs: Option<LogsLane>,
    host: Option<String>,
    pub tasks: Vec<JoinHandle<()>>,
}

impl DatadogExporter {
    pub fn spawn(
        cfg: &DatadogConfig,
        transport: Arc<dyn Transport>,
        budget: Budget,
        lane_cfg: LaneConfig,
        give_up: CancellationToken,
    ) -> Result<Self, DatadogError> {
        let key = cfg.api_key.clone().ok_or(DatadogError::NoApiKey)?;
        let mut lanes = Lanes::new(transport, budget, lane_cfg, give_up);
        let traces = lanes.spawn(traces::IntakeTraces {
            url: cfg.endpoints.traces.clone(),
            api_key: key.clone(),
            env: cfg.env.clone().unwrap_or_default(),
            app_version: cfg.version.clone().unwrap_or_default(),
            runtime_id: runtime_id(),
        });
        let series = lanes.spawn(metrics::Series {
            url: cfg.endpoints.series.clone(),
            api_key: key.clone(),
        });
        let distributions = lanes.spawn(metrics::Distributions {
            url: cfg.endpoints.distributions.clone(),
            api_key: key,
        });
        let logs = logs_lane(&mut lanes, cfg);
        let tasks = lanes.tasks();
        Ok(Self {
            traces,
            series,
            distributions,
            logs,
            host: cfg.host.clone(),
            tasks,
        })
    }

    pub async fn accept(&self, item: &ExportItem, receipt: Option<Arc<Receipt>>) {
        match item {
            ExportItem::Spans(spans) => {
                let chunks = traces::by_trace(spans)
                    .into_iter()
                    .map(traces::encoded_chunk)
                    .collect();
                self.traces.send(chunks, receipt).await;
            }
            ExportItem::Metrics(points) => {
                let host = self.host.as_deref();
                let series = points
                    .iter()
                    .filter_map(|p| metrics::series_item(p, host))
                    .collect();
                self.series.send(series, None).await;
                let dist = points
                    .iter()
                    .filter(|p| p.kind == MetricKind::Distribution)
                    .filter_map(metrics::distribution_item)
                    .collect();
                self.distributions.send(dist, None).await;
            }
            ExportItem::Logs(_) => {
                if let Some(l) = &self.logs {
                    l.accept(item, receipt).await;
                }
            }
        }
    }
}

/// Through a Datadog Agent: traces to its trace API, metrics to DogStatsD.
pub struct AgentExporter {
    traces: LaneSender<traces::AgentTraces>,
    statsd: dogstatsd::DogStatsd,
    logs: Option<LogsLane>,
    pub tasks: Vec<JoinHandle<()>>,
}

impl AgentExporter {
    pub async fn spawn(
        cfg: &DatadogConfig,
        transport: Arc<dyn Transport>,
        budget: Budget,
        lane_cfg: LaneConfig,
        give_up: CancellationToken,
    ) -> Result<Self, DatadogError> {
        let url = cfg
            .trace_agent_url
            .clone()
            .ok_or(DatadogError::NoAgentUrl)?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(DatadogError::AgentScheme(url));
        }
        // Like Datadog's libraries: without DD_DOGSTATSD_URL, DogStatsD is
        // on the trace agent's host, port 8125.
        let statsd_url = cfg
            .dogstatsd_url
            .clone()
            .unwrap_or_else(|| dogstatsd::default_url(&url));
        let statsd = dogstatsd::DogStatsd::connect(&statsd_url).await?;
        let mut lanes = Lanes::new(transport, budget, lane_cfg, give_up);
        let traces = lanes.spawn(traces::AgentTraces {
            url: format!("{}/v0.4/traces", url.trim_end_matches('/')),
        });
        let logs = logs_lane(&mut lanes, cfg);
        let tasks = lanes.tasks();
        Ok(Self {
            traces,
            statsd,
            logs,
            tasks,
        })
    }

    pub async fn accept(&self, item: &ExportItem, receipt: Option<Arc<Receipt>>) {
        match item {
            ExportItem::Spans(spans) => {
                let mut out = Vec::new();
                for chunk in traces::by_trace(spans) {
                    match traces::AgentTrace::new(chunk) {
                        Ok(t) => out.push(t),
                        Err(e) => {
                            ::metrics::counter!(crate::telemetry::names::EXPORT_ITEMS_DROPPED,
                                "exporter" => "datadog-agent", "signal" => "traces", "reason" => "encode")
                            .increment(1);
                            tracing::error!(error = %e, "cannot encode a trace as msgpack");
                        }
                    }
                }
                self.traces.send(out, receipt).await;
            }
            ExportItem::Metrics(points) => self.statsd.send(points).await,
            ExportItem::Logs(_) => {
                if let Some(l) = &self.logs {
                    l.accept(item, receipt).await;
                }
            }
        }
    }
}
