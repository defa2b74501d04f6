//! Loads an AWS `GetExecutionHistory` document (API shape) into the same
//! domain events the log path produces, for replay and backfill.
//!
//! The API has no execution ARN in the events and no per-event redrive count,
//! so the caller names the execution and redrive counts are derived from the
//! `ExecutionRedriven` events (the log lines carry the same numbers).

use super::arn::ExecutionArn;
use super::kind::EventKind;
use super::lenient::{EpochSecondsOrIso, LenientU64};
use super::model::{Details, Event};
use super::wire::WireDetails;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("invalid execution history JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Arn(#[from] super::arn::ArnError),
    #[error("history event #{index} has no {field}")]
    MissingField { index: usize, field: &'static str },
}

struct WireHistoryEvent<'a> {
    timestamp: Option<i64>,
    kind: Option<String>,
    id: Option<u64>,
    previous_event_id: Option<u64>,
    details: Option<WireDetails<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for WireHistoryEvent<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireHistoryEvent<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a HistoryEvent object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut ev = WireHistoryEvent {
                    timestamp: None,
                    kind: None,
                    id: None,
                    previous_event_id: None,
                    details: None,
                };
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "timestamp" => {
                            ev.timestamp = Some(map.next_value::<EpochSecondsOrIso>()?.0)
                        }
                        "type" => ev.kind = Some(map.next_value()?),
                        "id" => ev.id = Some(map.next_value::<LenientU64>()?.0),
                        "previousEventId" => {
                            ev.previous_event_id = Some(map.next_value::<LenientU64>()?.0)
                        }
                        k if k.ends_with("EventDetails") => ev.details = Some(map.next_value()?),
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(ev)
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WireHistoryDoc<'a> {
    Response {
        #[serde(borrow)]
        events: Vec<WireHistoryEvent<'a>>,
    },
    Bare(#[serde(borrow)] Vec<WireHistoryEvent<'a>>),
}

/// Parses a `GetExecutionHistory` response (`{"events":[...]}`) or a bare
/// array of history events for the execution `execution_arn`.
pub fn load_history(json: &str, execution_arn: &str) -> Result<Vec<Event>, HistoryError> {
    ExecutionArn::parse(execution_arn)?;
    let doc: WireHistoryDoc<'_> = match serde_json::from_str(json) {
        Ok(d) => d,
        // Untagged errors are vague; re-parse the common shape for a precise one.
        Err(_) => {
            #[derive(Deserialize)]
            struct Strict<'a> {
                #[serde(borrow)]
                #[allow(dead_code)]
                events: Vec<WireHistoryEvent<'a>>,
            }
            serde_json::from_str::<Strict<'_>>(json)?;
            return Err(HistoryError::Json(de::Error::custom("unexpected shape")));
        }
    };
    let wire = match doc {
        WireHistoryDoc::Response { events } | WireHistoryDoc::Bare(events) => events,
    };
    let arn: Arc<str> = Arc::from(execution_arn);
    let mut events = Vec::with_capacity(wire.len());
    let mut strings = super::wire::StringCache::default();
    for (index, w) in wire.into_iter().enumerate() {
        let missing = |field| HistoryError::MissingField { index, field };
        let kind = EventKind::parse(&w.kind.ok_or_else(|| missing("type"))?);
        let details = match w.details {
            Some(d) => d.into_details(&kind, &mut strings),
            None => Details::None,
        };
        events.push(Event {
            execution_arn: arn.clone(),
            id: w.id.ok_or_else(|| missing("id"))?,
            previous_event_id: w.previous_event_id.unwrap_or(0),
            timestamp_ms: w.timestamp.ok_or_else(|| missing("timestamp"))?,
            redrive_count: 0,
            kind,
            details,
            source: None,
        });
    }
    assign_redrive_counts(&mut events);
    Ok(events)
}

/// Events from an `ExecutionRedriven` on carry its redrive count, as in the logs.
fn assign_redrive_counts(events: &mut [Event]) {
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&i| events[i].id);
    let mut current = 0u32;
    for i in order {
        if let Details::ExecutionRedriven { redrive_count } = &events[i].details {
            current = redrive_count.unwrap_or(current.saturating_add(1));
        }
        events[i].redrive_count = current;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:states:us-east-1:418295736021:execution:Sm:e1";

    #[test]
    fn api_shape_with_details() {
        let doc = r#"{"events":[
 {"timestamp":1773613269.267,"type":"ExecutionStarted","id":1,"previousEventId":0,"executionStartedEventDetails":{"input":"{}","inputDetails":{"truncated":false},"roleArn":"arn:aws:iam::1:role/r"}},
 {"timestamp":1773613269.3,"type":"PassStateEntered","id":2,"previousEventId":0,"stateEnteredEventDetails":{"name":"P","input":"{}","inputDetails":{"truncated":true}}},
 {"timestamp":1773613269.31,"type":"ParallelStateStarted","id":3,"previousEventId":2}
]}"#;
        let ev = load_history(doc, ARN).unwrap();
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].timestamp_ms, 1773613269267);
        assert_eq!(ev[1].timestamp_ms, 1773613269300);
        assert_eq!(ev[1].details.state_name(), Some("P"));
        assert!(ev[1].details.input().unwrap().aws_truncated);
        assert_eq!(ev[2].details, Details::None);
    }

    #[test]
    fn redrive_counts_follow_execution_redriven() {
        let doc = r#"[
 {"timestamp":1.0,"type":"ExecutionStarted","id":1,"previousEventId":0},
 {"timestamp":2.0,"type":"ExecutionFailed","id":2,"previousEventId":1},
 {"timestamp":3.0,"type":"ExecutionRedriven","id":3,"previousEventId":2,"executionRedrivenEventDetails":{"redriveCount":1}},
 {"timestamp":4.0,"type":"ExecutionSucceeded","id":4,"previousEventId":3}
]"#;
        let ev = load_history(doc, ARN).unwrap();
        let counts: Vec<u32> = ev.iter().map(|e| e.redrive_count).collect();
        assert_eq!(counts, vec![0, 0, 1, 1]);
    }

    #[test]
    fn errors_are_precise() {
        let err = load_history(r#"{"events":[{"id":1}]}"#, ARN).unwrap_err();
        assert!(err.to_string().contains("no type"), "{err}");
        assert!(load_history("{", ARN).is_err());
        assert!(load_history("[]", "not-an-arn").is_err());
    }
}
