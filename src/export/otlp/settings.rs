//! The OTLP exporter's settings, under OpenTelemetry's own names
//! (spec/interfaces.md "OTLP exporter"; the OpenTelemetry "OTLP Exporter
//! Configuration" spec for their meaning).

use crate::setting_id as id;
use crate::settings::{non_empty, parse, Check, ConfigError};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "OpenTelemetry")]
pub struct OtlpArgs {
    /// OTLP/HTTP base URL; /v1/traces, /v1/metrics and /v1/logs are appended.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// Traces URL, used as is (overrides the base URL for traces).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    pub otel_exporter_otlp_traces_endpoint: Option<String>,
    /// Metrics URL, used as is (overrides the base URL for metrics).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")]
    pub otel_exporter_otlp_metrics_endpoint: Option<String>,
    /// Logs URL, used as is (overrides the base URL for logs).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")]
    pub otel_exporter_otlp_logs_endpoint: Option<String>,
    /// Request headers, `k=v,k2=v2` (values percent-decoded, never logged).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_HEADERS", hide_env_values = true)]
    pub otel_exporter_otlp_headers: Option<String>,
    /// Request body compression: gzip or none.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_COMPRESSION", default_value = "gzip")]
    pub otel_exporter_otlp_compression: String,
    /// Timeout of one export request: milliseconds (OpenTelemetry's unit) or a duration such as 10s.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TIMEOUT", default_value = "10000")]
    pub otel_exporter_otlp_timeout: String,
    /// Transport; only http/protobuf is supported.
    #[arg(
        long,
        env = "OTEL_EXPORTER_OTLP_PROTOCOL",
        default_value = "http/protobuf"
    )]
    pub otel_exporter_otlp_protocol: String,
    /// service.name of every resource, instead of the state machine's service.
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,
    /// Extra resource attributes, `k=v,k2=v2` (values percent-decoded).
    #[arg(long, env = "OTEL_RESOURCE_ATTRIBUTES")]
    pub otel_resource_attributes: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    None,
}

#[derive(Debug, Clone)]
pub struct OtlpSettings {
    /// Per signal; `None`: that signal is not exported over OTLP.
    pub traces_url: Option<String>,
    pub metrics_url: Option<String>,
    pub logs_url: Option<String>,
    /// Values are marked sensitive: `Debug` does not show them.
    pub headers: HeaderMap,
    pub compression: Compression,
    pub timeout: Duration,
    pub service_name: Option<String>,
    pub resource_attributes: Vec<(String, String)>,
}

impl OtlpSettings {
    /// An endpoint is set for at least one signal.
    pub fn is_configured(&self) -> bool {
        self.traces_url.is_some() || self.metrics_url.is_some() || self.logs_url.is_some()
    }
}

/// `k=v,k2=v2` as in the W3C Baggage header, which OpenTelemetry's
/// variables use: entries trimmed, values percent-decoded.
pub fn key_values(v: &str) -> Result<Vec<(String, String)>, String> {
    v.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                let value = percent_encoding::percent_decode_str(v.trim())
                    .decode_utf8()
                    .map_err(|_| "a value is not UTF-8 once percent-decoded".to_string())?;
                Ok((k.trim().to_owned(), value.into_owned()))
            }
            _ => Err("expected key=value pairs".to_string()),
        })
        .collect()
}

/// Milliseconds as OpenTelemetry specifies, or a duration with a unit.
fn timeout(v: &str) -> Result<Duration, String> {
    match v.trim().parse::<u64>() {
        Ok(ms) => Ok(Duration::from_millis(ms)),
        Err(_) => parse::duration(v),
    }
}

impl OtlpArgs {
    pub fn validate(self) -> Result<OtlpSettings, ConfigError> {
        type C = Check<OtlpArgs>;
        const URL_EXAMPLE: &str = "http://otel-collector:4318";
        let base = C::opt_url(
            id!(otel_exporter_otlp_endpoint),
            self.otel_exporter_otlp_endpoint,
            &["http", "https"],
            URL_EXAMPLE,
        )?;
        // A per-signal URL is used as is: only checked.
        let signal = |id: &str, v: Option<String>, path: &str| match non_empty(v) {
            Some(u) => C::parsed(
                id,
                &u,
                parse::url(&u, &["http", "https"]),
                "http://tempo:4318/v1/traces",
            )
            .map(|_| Some(u)),
            None => Ok(base.as_ref().map(|b| format!("{b}{path}"))),
        };
        let traces_url = signal(
            id!(otel_exporter_otlp_traces_endpoint),
            self.otel_exporter_otlp_traces_endpoint,
            "/v1/traces",
        )?;
        let metrics_url = signal(
            id!(otel_exporter_otlp_metrics_endpoint),
            self.otel_exporter_otlp_metrics_endpoint,
            "/v1/metrics",
        )?;
        let logs_url = signal(
            id!(otel_exporter_otlp_logs_endpoint),
            self.otel_exporter_otlp_logs_endpoint,
            "/v1/logs",
        )?;

        let mut headers = HeaderMap::new();
        if let Some(h) = non_empty(self.otel_exporter_otlp_headers) {
            let hid = id!(otel_exporter_otlp_headers);
            let example = "api-key=abc,x-scope-orgid=tenant-1";
            // The value is a secret: errors never quote it (Check knows).
            for (k, v) in C::parsed(hid, "", key_values(&h), example)? {
                let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                    C::error(hid, "", format!("{k:?} is not a header name"), example)
                })?;
                let mut value = HeaderValue::from_str(&v).map_err(|_| {
                    C::error(
                        hid,
                        "",
                        format!("the value of {k} is not a header value"),
                        example,
                    )
                })?;
                value.set_sensitive(true);
                headers.append(name, value);
            }
        }

        let compression = match C::one_of(
            id!(otel_exporter_otlp_compression),
            &self.otel_exporter_otlp_compression,
            &["gzip", "none"],
            "gzip",
        )? {
            0 => Compression::Gzip,
            _ => Compression::None,
        };
        let t = &self.otel_exporter_otlp_timeout;
        let timeout = C::parsed(id!(otel_exporter_otlp_timeout), t, timeout(t), "10000")?;
        if timeout.is_zero() {
            return Err(C::error(
                id!(otel_exporter_otlp_timeout),
                t,
                "must be above 0",
                "10000",
            ));
        }
        let p = &self.otel_exporter_otlp_protocol;
        if p.trim() != "http/protobuf" {
            return Err(C::error(
                id!(otel_exporter_otlp_protocol),
                p,
                "only http/protobuf is supported (not grpc or http/json); point the endpoint at the receiver's OTLP/HTTP port, usually 4318",
                "http/protobuf",
            ));
        }
        let resource_attributes = match non_empty(self.otel_resource_attributes) {
            None => Vec::new(),
            Some(r) => C::parsed(
                id!(otel_resource_attributes),
                &r,
                key_values(&r),
                "deployment.environment.name=prod,team=payments",
            )?,
        };
        Ok(OtlpSettings {
            traces_url,
            metrics_url,
            logs_url,
            headers,
            compression,
            timeout,
            service_name: non_empty(self.otel_service_name),
            resource_attributes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        o: OtlpArgs,
    }

    fn parse(args: &[&str]) -> Result<OtlpSettings, ConfigError> {
        let mut v = vec!["t"];
        v.extend_from_slice(args);
        T::try_parse_from(v).unwrap().o.validate()
    }

    #[test]
    fn the_base_url_gets_each_signal_path_and_a_signal_url_is_used_as_is() {
        let s = parse(&[
            "--otel-exporter-otlp-endpoint",
            "http://collector:4318/",
            "--otel-exporter-otlp-logs-endpoint",
            "https://logs.example/otlp/v1/logs",
        ])
        .unwrap();
        assert_eq!(
            s.traces_url.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            s.metrics_url.as_deref(),
            Some("http://collector:4318/v1/metrics")
        );
        assert_eq!(
            s.logs_url.as_deref(),
            Some("https://logs.example/otlp/v1/logs")
        );
        assert_eq!(s.compression, Compression::Gzip);
        assert_eq!(s.timeout, Duration::from_secs(10));
        let only_traces = parse(&[
            "--otel-exporter-otlp-traces-endpoint",
            "http://t:4318/v1/traces",
        ])
        .unwrap();
        assert!(only_traces.is_configured());
        assert!(only_traces.metrics_url.is_none());
        assert!(!parse(&[]).unwrap().is_configured());
    }

    #[test]
    fn headers_are_percent_decoded_and_never_shown() {
        let s = parse(&[
            "--otel-exporter-otlp-headers",
            "api-key=s%3Dcret, x-scope-orgid = tenant-1",
        ])
        .unwrap();
        assert_eq!(s.headers["api-key"], "s=cret");
        assert_eq!(s.headers["x-scope-orgid"], "tenant-1");
        assert!(!format!("{s:?}").contains("cret"));
        let e = parse(&["--otel-exporter-otlp-headers", "bad header=s3cret"]).unwrap_err();
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_HEADERS"), "{e}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let e = parse(&["--otel-exporter-otlp-headers", "novalue"]).unwrap_err();
        assert!(e.to_string().contains("key=value"), "{e}");
    }

    #[test]
    fn timeout_in_milliseconds_or_with_a_unit_and_only_http_protobuf() {
        let ms = parse(&["--otel-exporter-otlp-timeout", "2500"]).unwrap();
        assert_eq!(ms.timeout, Duration::from_millis(2500));
        let unit = parse(&["--otel-exporter-otlp-timeout", "3s"]).unwrap();
        assert_eq!(unit.timeout, Duration::from_secs(3));
        assert!(parse(&["--otel-exporter-otlp-timeout", "0"]).is_err());
        let e = parse(&["--otel-exporter-otlp-protocol", "grpc"]).unwrap_err();
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{e}");
        let e = parse(&["--otel-exporter-otlp-compression", "zstd"]).unwrap_err();
        assert!(e.to_string().contains("gzip or none"), "{e}");
        let e = parse(&["--otel-exporter-otlp-endpoint", "collector:4318"]).unwrap_err();
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{e}");
    }

    #[test]
    fn resource_attributes_and_service_name() {
        let s = parse(&[
            "--otel-resource-attributes",
            "deployment.environment.name=prod,team=pay%20ments",
            "--otel-service-name",
            "orders",
        ])
        .unwrap();
        assert_eq!(
            s.resource_attributes,
            vec![
                (
                    "deployment.environment.name".to_string(),
                    "prod".to_string()
                ),
                ("team".to_string(), "pay ments".to_string())
            ]
        );
        assert_eq!(s.service_name.as_deref(), Some("orders"));
    }
}
