//! The `otlp` exporter: traces, enhanced metrics and forwarded logs over
//! OTLP/HTTP protobuf to any OpenTelemetry backend (a Collector, Tempo,
//! Jaeger, Honeycomb, Datadog's OTLP intake). Configured by
//! OpenTelemetry's own variables (`settings`); the mapping is a contract
//! (spec/interfaces.md "OTLP exporter"). Each signal is a delivery lane
//! like the Datadog ones: same outbox, ledger, budget and back-off; OTLP's
//! own rules on retries and partial success are in `answer`.

pub mod answer;
pub mod expo;
pub mod logs;
pub mod metrics;
pub mod resource;
pub mod settings;
pub mod spans;
pub mod wire;

use self::settings::{Compression, OtlpSettings};
use super::delivery::{
    Budget, Client, EncodeError, LaneConfig, LaneSender, Lanes, Request, Transport,
};
use super::item::ExportItem;
use super::receipt::Receipt;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use resource::Resources;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How every OTLP request leaves: user headers, content type, compression.
#[derive(Debug, Clone)]
pub struct Out {
    pub headers: HeaderMap,
    pub compression: Compression,
}

impl Out {
    pub fn new(s: &OtlpSettings) -> Self {
        let mut headers = s.headers.clone();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        if s.compression == Compression::Gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        Self {
            headers,
            compression: s.compression,
        }
    }

    pub fn request(
        &self,
        url: &str,
        body: Vec<u8>,
        signal: &'static str,
    ) -> Result<Request, EncodeError> {
        let body = match self.compression {
            Compression::None => body,
            Compression::Gzip => super::compress::gzip(&body).map_err(|e| EncodeError {
                signal,
                reason: e.to_string(),
            })?,
        };
        let mut r = Request::new(url.to_owned(), body);
        r.headers = self.headers.clone();
        Ok(r)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error(transparent)]
    Client(#[from] super::delivery::client::ClientError),
}

pub struct OtlpExporter {
    traces: Option<LaneSender<spans::Traces>>,
    metrics: Option<LaneSender<metrics::Metrics>>,
    logs: Option<LaneSender<logs::Logs>>,
    pub tasks: Vec<JoinHandle<()>>,
}

impl OtlpExporter {
    /// Lanes for the signals that have an endpoint; requests time out after
    /// `OTEL_EXPORTER_OTLP_TIMEOUT`.
    pub fn spawn(
        s: &OtlpSettings,
        budget: Budget,
        lane_cfg: LaneConfig,
        give_up: CancellationToken,
    ) -> Result<Self, OtlpError> {
        let transport: Arc<dyn Transport> = Arc::new(Client::new(s.timeout)?);
        // Which signals go out; not the URLs (they may hold credentials).
        tracing::info!(
            traces = s.traces_url.is_some(),
            metrics = s.metrics_url.is_some(),
            logs = s.logs_url.is_some(),
            "otlp exporter: signals with an endpoint"
        );
        let out = Out::new(s);
        let resources = Resources::new(s);
        let mut lanes = Lanes::new(transport, budget, lane_cfg, give_up);
        let traces = s.traces_url.clone().map(|url| {
            lanes.spawn(spans::Traces {
                url,
                out: out.clone(),
                resources: resources.clone(),
            })
        });
        let metrics = s.metrics_url.clone().map(|url| {
            lanes.spawn(metrics::Metrics {
                url,
                out: out.clone(),
                resources: resources.clone(),
            })
        });
        let logs = s.logs_url.clone().map(|url| {
            lanes.spawn(logs::Logs {
                url,
                out: out.clone(),
                resources: resources.clone(),
            })
        });
        Ok(Self {
            traces,
            metrics,
            logs,
            tasks: lanes.tasks(),
        })
    }

    /// A signal without an endpoint is let go (its receipt released).
    pub async fn accept(&self, item: &ExportItem, receipt: Option<Arc<Receipt>>) {
        match item {
            ExportItem::Spans(s) => {
                if let Some(l) = &self.traces {
                    l.send(spans::encode_spans(s), receipt).await;
                }
            }
            ExportItem::Metrics(p) => {
                if let Some(l) = &self.metrics {
                    l.send(metrics::items(p), receipt).await;
                }
            }
            ExportItem::Logs(r) => {
                if let Some(l) = &self.logs {
                    l.send(logs::items(r), receipt).await;
                }
            }
        }
    }
}
