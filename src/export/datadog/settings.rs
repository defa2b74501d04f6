//! Datadog settings, under Datadog's own `DD_*` names so a pod that already
//! has them for a Datadog library needs nothing new.

use crate::setting_id as id;
use crate::settings::{non_empty, parse, Check, ConfigError};

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Datadog")]
pub struct DatadogArgs {
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

impl DatadogSettings {
    /// `DD_TAGS` as key/value pairs (a bare tag has an empty value).
    pub fn tag_pairs(&self) -> Vec<(String, String)> {
        self.tags
            .iter()
            .map(|t| match t.split_once(':') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (t.clone(), String::new()),
            })
            .collect()
    }
}

impl DatadogArgs {
    pub fn validate(self) -> Result<DatadogSettings, ConfigError> {
        type C = Check<DatadogArgs>;
        let http = &["http", "https"];
        let api_key = non_empty(self.dd_api_key);
        if let Some(k) = &api_key {
            if k.len() < 8 || !k.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(C::error(
                    id!(dd_api_key),
                    "",
                    "not an API key (letters and digits, usually 32 hex)",
                    "<32 hex characters>",
                ));
            }
        }
        Ok(DatadogSettings {
            api_key,
            site: C::parsed(
                id!(dd_site),
                &self.dd_site,
                parse::site(&self.dd_site),
                "datadoghq.eu",
            )?,
            env: non_empty(self.dd_env),
            service: non_empty(self.dd_service),
            version: non_empty(self.dd_version),
            tags: match non_empty(self.dd_tags) {
                Some(t) => C::parsed(id!(dd_tags), &t, parse::tags(&t), "team:payments,tier:1")?,
                None => Vec::new(),
            },
            trace_agent_url: C::opt_url(
                id!(dd_trace_agent_url),
                self.dd_trace_agent_url,
                http,
                "http://datadog-agent:8126",
            )?,
            dogstatsd_url: C::opt_url(
                id!(dd_dogstatsd_url),
                self.dd_dogstatsd_url,
                &["udp", "unix", "unixgram"],
                "udp://datadog-agent:8125",
            )?,
            apm_dd_url: C::opt_url(
                id!(dd_apm_dd_url),
                self.dd_apm_dd_url,
                http,
                "https://trace.agent.datadoghq.eu",
            )?,
            dd_url: C::opt_url(
                id!(dd_dd_url),
                self.dd_dd_url,
                http,
                "https://api.datadoghq.eu",
            )?,
            logs_dd_url: C::opt_url(
                id!(dd_logs_config_logs_dd_url),
                self.dd_logs_config_logs_dd_url,
                http,
                "https://http-intake.logs.datadoghq.eu",
            )?,
        })
    }
}
