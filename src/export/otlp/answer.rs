//! What an OTLP/HTTP answer means (OTLP spec, "OTLP/HTTP Response"): only
//! 429, 502, 503 and 504 are retried (with `Retry-After`); every other
//! error status is final; a 200 may carry `partial_success`, the count of
//! items the receiver refused, which are counted and logged, not resent.

use crate::export::delivery::Outcome;
use crate::telemetry::names;

pub const RETRYABLE: [u16; 4] = [429, 502, 503, 504];

/// `partial`: the rejected count and message of a success answer's body.
pub fn review(
    outcome: Outcome,
    items: usize,
    signal: &'static str,
    partial: impl Fn(&[u8]) -> Option<(i64, String)>,
) -> Outcome {
    match outcome {
        Outcome::Delivered { answer } => {
            if let Some((rejected, message)) = partial(&answer) {
                if rejected > 0 {
                    metrics::counter!(names::EXPORT_ITEMS_DROPPED,
                        "exporter" => "otlp", "signal" => signal, "reason" => "partial_success")
                    .increment(rejected as u64);
                    tracing::warn!(exporter = "otlp", signal, rejected, items, answer = %message, "the receiver refused part of a batch");
                } else if !message.is_empty() {
                    tracing::warn!(exporter = "otlp", signal, answer = %message, "the receiver accepted a batch with a warning");
                }
            }
            Outcome::Delivered { answer }
        }
        Outcome::Retry {
            status: Some(status),
            why,
            body,
            ..
        } if !RETRYABLE.contains(&status) => Outcome::Rejected {
            status,
            body: if body.is_empty() {
                why
            } else {
                super::wire::error_message(&body)
            },
        },
        Outcome::Rejected { status, body } => Outcome::Rejected {
            status,
            body: super::wire::error_message(&body),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn retry(status: Option<u16>) -> Outcome {
        Outcome::Retry {
            status,
            after: Some(Duration::from_secs(3)),
            why: "x".into(),
            body: String::new(),
        }
    }

    fn none(_: &[u8]) -> Option<(i64, String)> {
        None
    }

    #[test]
    fn only_the_statuses_otlp_names_are_retried() {
        for s in RETRYABLE {
            assert_eq!(review(retry(Some(s)), 1, "traces", none), retry(Some(s)));
        }
        for s in [408, 500, 501, 505] {
            assert!(matches!(
                review(retry(Some(s)), 1, "traces", none),
                Outcome::Rejected { status, .. } if status == s
            ));
        }
        assert_eq!(
            review(retry(None), 1, "traces", none),
            retry(None),
            "network errors retry"
        );
        assert_eq!(
            review(Outcome::TooLarge, 1, "traces", none),
            Outcome::TooLarge
        );
    }

    #[test]
    fn a_partial_success_is_still_delivered() {
        let d = Outcome::Delivered {
            answer: bytes::Bytes::from_static(b"x"),
        };
        let got = review(d, 10, "traces", |b| {
            assert_eq!(b, b"x");
            Some((3, "3 spans had no name".into()))
        });
        assert!(matches!(got, Outcome::Delivered { .. }));
    }
}
