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
    /// 2xx; `answer` is the response body (OTLP's `partial_success`).
    Delivered { answer: bytes::Bytes },
    /// Network error, 408, 429 or 5xx: try again later. `body` is the
    /// intake's answer, if any.
    Retry {
        status: Option<u16>,
        after: Option<Duration>,
        why: String,
        body: String,
    },
    /// 413: the batch must be split.
    TooLarge,
    /// Any other 4xx: retrying cannot help. `body` is the intake's answer.
    Rejected { status: u16, body: String },
}

/// How intake answers map to outcomes (datadog-intake.md §1.6, §3); an
/// encoder may revise them (`Encoder::review`). `body` of a 2xx answer is
/// left to the caller (see `Client::send`).
pub fn classify(status: u16, retry_after: Option<Duration>, body: String) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered {
            answer: bytes::Bytes::new(),
        },
        413 => Outcome::TooLarge,
        408 | 429 | 500..=599 => Outcome::Retry {
            status: Some(status),
            after: retry_after,
            why: format!("HTTP {status}"),
            body,
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
                    body: String::new(),
                };
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, std::time::SystemTime::now()));
        if (200..300).contains(&status) {
            // Read whole: the connection goes back to the pool, and OTLP
            // puts its partial rejections there.
            let answer = resp.bytes().await.unwrap_or_default();
            return Outcome::Delivered { answer };
        }
        let text = resp.text().await.unwrap_or_default();
        let (cut, _) = crate::stitch::builder::cut_utf8(&text, 512);
        classify(status, retry_after, cut.to_owned())
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_the_documented_outcomes() {
        for s in [200, 202, 204] {
            assert!(matches!(
                classify(s, None, String::new()),
                Outcome::Delivered { .. }
            ));
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

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        // RFC 9110's example date: 2015-10-21 07:28:00 UTC = 1445412480.
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_420);
        assert_eq!(retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let date = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(retry_after(date, now), Some(Duration::from_secs(60)));
        let later = now + Duration::from_secs(600);
        assert_eq!(
            retry_after(date, later),
            Some(Duration::ZERO),
            "in the past"
        );
        assert_eq!(retry_after("soon", now), None);
    }
}
