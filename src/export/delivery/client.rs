//! One HTTP POST to an intake and what its answer means for the batch.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;

/// An encoded request. Header values may be secrets (`DD-API-KEY`): this
/// type is never logged.
pub struct Request {
    pub url: String,
    pub body: bytes::Bytes,
    pub headers: HeaderMap,
}

impl Request {
    pub fn new(url: String, body: Vec<u8>) -> Self {
        Self {
            url,
            body: body.into(),
            headers: HeaderMap::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(HeaderName::from_static(name), v);
        }
        self
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Network error, 408, 429 or 5xx: try again later.
    Retry {
        status: Option<u16>,
        after: Option<Duration>,
        why: String,
    },
    /// 413: the batch must be split.
    TooLarge,
    /// Any other 4xx: retrying cannot help. `body` is the intake's answer.
    Rejected {
        status: u16,
        body: String,
    },
}

/// How intake answers map to outcomes (datadog-intake.md §1.6, §3).
pub fn classify(status: u16, retry_after: Option<Duration>, body: String) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        413 => Outcome::TooLarge,
        408 | 429 | 500..=599 => Outcome::Retry {
            status: Some(status),
            after: retry_after,
            why: format!("HTTP {status}"),
        },
        _ => Outcome::Rejected { status, body },
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

impl Client {
    pub fn new(timeout: Duration) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("stepstitch/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()?;
        Ok(Self { http })
    }

    pub async fn send(&self, req: &Request) -> Outcome {
        let sent = self
            .http
            .post(&req.url)
            .headers(req.headers.clone())
            .body(req.body.clone())
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    status: None,
                    after: None,
                    // Without the URL: it may carry credentials in a proxy setup.
                    why: e.without_url().to_string(),
                };
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = if (200..300).contains(&status) {
            String::new()
        } else {
            let text = resp.text().await.unwrap_or_default();
            let (cut, _) = crate::stitch::builder::cut_utf8(&text, 512);
            cut.to_owned()
        };
        classify(status, retry_after, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_documented_outcomes() {
        for s in [200, 202, 204] {
            assert_eq!(classify(s, None, String::new()), Outcome::Delivered);
        }
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify(s, None, String::new()), Outcome::Retry { .. }),
                "{s}"
            );
        }
        assert_eq!(classify(413, None, String::new()), Outcome::TooLarge);
        for s in [400, 401, 403, 404, 415] {
            assert!(
                matches!(classify(s, None, String::new()), Outcome::Rejected { .. }),
                "{s}"
            );
        }
    }
}
