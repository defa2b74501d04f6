//! Intake URLs per Datadog site (datadog-intake.md §4): every site follows
//! `trace.agent.{site}`, `api.{site}` and `http-intake.logs.{site}` (EU is
//! `datadoghq.eu`, not `eu.datadoghq.com`), and each base can be overridden
//! (`DD_APM_DD_URL`, `DD_DD_URL`, `DD_LOGS_CONFIG_LOGS_DD_URL`).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub traces: String,
    pub series: String,
    pub distributions: String,
    pub logs: String,
}

fn base(over: Option<&str>, default: String) -> String {
    over.map(|u| u.trim_end_matches('/').to_owned())
        .unwrap_or(default)
}

impl Endpoints {
    pub fn new(
        site: &str,
        apm_dd_url: Option<&str>,
        dd_url: Option<&str>,
        logs_dd_url: Option<&str>,
    ) -> Self {
        let traces = base(apm_dd_url, format!("https://trace.agent.{site}"));
        let api = base(dd_url, format!("https://api.{site}"));
        let logs = base(logs_dd_url, format!("https://http-intake.logs.{site}"));
        Self {
            traces: format!("{traces}/api/v0.2/traces"),
            series: format!("{api}/api/v2/series"),
            distributions: format!("{api}/api/v1/distribution_points"),
            logs: format!("{logs}/api/v2/logs"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_site_gets_its_hosts() {
        let sites = [
            "datadoghq.com",
            "us3.datadoghq.com",
            "us5.datadoghq.com",
            "datadoghq.eu",
            "ap1.datadoghq.com",
            "ap2.datadoghq.com",
            "ddog-gov.com",
        ];
        for site in sites {
            let e = Endpoints::new(site, None, None, None);
            assert_eq!(
                e.traces,
                format!("https://trace.agent.{site}/api/v0.2/traces")
            );
            assert_eq!(e.series, format!("https://api.{site}/api/v2/series"));
            assert_eq!(
                e.distributions,
                format!("https://api.{site}/api/v1/distribution_points")
            );
            assert_eq!(
                e.logs,
                format!("https://http-intake.logs.{site}/api/v2/logs")
            );
        }
        let eu = Endpoints::new("datadoghq.eu", None, None, None);
        assert_eq!(
            eu.traces,
            "https://trace.agent.datadoghq.eu/api/v0.2/traces"
        );
    }

    #[test]
    fn overrides_replace_the_base_only() {
        let e = Endpoints::new(
            "datadoghq.com",
            Some("http://127.0.0.1:1/"),
            Some("http://127.0.0.1:2"),
            Some("http://proxy:3/"),
        );
        assert_eq!(e.traces, "http://127.0.0.1:1/api/v0.2/traces");
        assert_eq!(e.series, "http://127.0.0.1:2/api/v2/series");
        assert_eq!(
            e.distributions,
            "http://127.0.0.1:2/api/v1/distribution_points"
        );
        assert_eq!(e.logs, "http://proxy:3/api/v2/logs");
    }
}
