//! A `GetExecutionHistory` event (API shape) written as the CloudWatch log
//! line Step Functions writes for it at level ALL with execution data
//! (fixtures README §2: top-level keys in AWS's order, every scalar a
//! string, `details` with sorted keys, `{}` when the event has none). The
//! backfill sends these lines through the same path as live delivery, so
//! past executions get the same ids, spans and metrics.

use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum LogLineError {
    #[error("invalid execution history JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a history document: {0}")]
    Shape(&'static str),
    #[error("history event #{index} has no {field}")]
    MissingField { index: usize, field: &'static str },
}

/// Every event of a history document (`{"events":[...]}` or a bare array)
/// as log lines, in id order. Redrive counts follow `ExecutionRedriven`.
pub fn history_to_log_lines(json: &str, execution_arn: &str) -> Result<Vec<String>, LogLineError> {
    let doc: Value = serde_json::from_str(json)?;
    let events = match doc {
        Value::Object(mut o) => match o.remove("events") {
            Some(Value::Array(a)) => a,
            _ => return Err(LogLineError::Shape("no \"events\" array")),
        },
        Value::Array(a) => a,
        _ => return Err(LogLineError::Shape("neither an object nor an array")),
    };
    events_to_log_lines(events, execution_arn)
}

/// The same from history events already parsed (the backfill joins a
/// history's pages without writing them out again).
pub fn events_to_log_lines(
    events: Vec<Value>,
    execution_arn: &str,
) -> Result<Vec<String>, LogLineError> {
    let mut parsed = Vec::with_capacity(events.len());
    for (index, e) in events.into_iter().enumerate() {
        let missing = |field| LogLineError::MissingField { index, field };
        let Value::Object(mut o) = e else {
            return Err(missing("object"));
        };
        let id = o
            .get("id")
            .and_then(Value::as_u64)
            .ok_or_else(|| missing("id"))?;
        let kind = match o.remove("type") {
            Some(Value::String(s)) => s,
            _ => return Err(missing("type")),
        };
        let previous = o
            .get("previousEventId")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let seconds = o
            .get("timestamp")
            .and_then(Value::as_f64)
            .ok_or_else(|| missing("timestamp"))?;
        let details = o
            .iter()
            .find(|(k, _)| k.ends_with("EventDetails"))
            .map(|(_, v)| v.clone())
            .unwrap_or(Value::Object(Map::new()));
        parsed.push((
            id,
            kind,
            previous,
            (seconds * 1000.0).round() as i64,
            details,
        ));
    }
    parsed.sort_by_key(|p| p.0);
    let mut redrive_count = 0u64;
    let mut out = Vec::with_capacity(parsed.len());
    for (id, kind, previous, ms, details) in parsed {
        if kind == "ExecutionRedriven" {
            redrive_count = details
                .get("redriveCount")
                .and_then(Value::as_u64)
                .unwrap_or(redrive_count + 1);
        }
        out.push(line(
            &details,
            redrive_count,
            id,
            &kind,
            previous,
            ms,
            execution_arn,
        ));
    }
    Ok(out)
}

fn line(
    details: &Value,
    redrive_count: u64,
    id: u64,
    kind: &str,
    previous: u64,
    ms: i64,
    execution_arn: &str,
) -> String {
    let s = |v: String| Value::String(v).to_string();
    format!(
        "{{\"details\":{},\"redrive_count\":\"{redrive_count}\",\"id\":\"{id}\",\"type\":{},\"previous_event_id\":\"{previous}\",\"event_timestamp\":\"{ms}\",\"execution_arn\":{}}}",
        sorted(details),
        s(kind.to_string()),
        s(execution_arn.to_string()),
    )
}

/// JSON text with object keys sorted at every level, as AWS logs details.
fn sorted(v: &Value) -> String {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), sorted(&o[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(sorted).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:states:us-east-1:1:execution:Sm:e1";

    #[test]
    fn one_event_as_aws_writes_it() {
        let doc = r#"{"events":[
 {"timestamp":1773613269.22,"type":"TaskScheduled","id":3,"previousEventId":2,"taskScheduledEventDetails":{"resourceType":"lambda","resource":"invoke","region":"us-east-1","parameters":"{\"a\":1}"}},
 {"timestamp":1773613269.3,"type":"ParallelStateStarted","id":4,"previousEventId":3}
]}"#;
        let lines = history_to_log_lines(doc, ARN).unwrap();
        assert_eq!(
            lines[0],
            r#"{"details":{"parameters":"{\"a\":1}","region":"us-east-1","resource":"invoke","resourceType":"lambda"},"redrive_count":"0","id":"3","type":"TaskScheduled","previous_event_id":"2","event_timestamp":"1773613269220","execution_arn":"arn:aws:states:us-east-1:1:execution:Sm:e1"}"#
        );
        assert!(lines[1].starts_with(r#"{"details":{},"redrive_count":"0","id":"4""#));
    }

    #[test]
    fn redrive_counts_start_at_execution_redriven() {
        let doc = r#"[
 {"timestamp":3.0,"type":"ExecutionRedriven","id":3,"previousEventId":2,"executionRedrivenEventDetails":{"redriveCount":1}},
 {"timestamp":1.0,"type":"ExecutionStarted","id":1,"previousEventId":0},
 {"timestamp":2.0,"type":"ExecutionFailed","id":2,"previousEventId":1},
 {"timestamp":4.0,"type":"ExecutionSucceeded","id":4,"previousEventId":3}
]"#;
        let counts: Vec<String> = history_to_log_lines(doc, ARN)
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["redrive_count"].to_string())
            .collect();
        assert_eq!(counts, ["\"0\"", "\"0\"", "\"1\"", "\"1\""]);
    }

    #[test]
    fn bad_documents_are_named() {
        let e = history_to_log_lines(r#"{"events":[{"id":1}]}"#, ARN).unwrap_err();
        assert!(e.to_string().contains("no type"), "{e}");
        assert!(history_to_log_lines("{}", ARN).is_err());
        assert!(history_to_log_lines("[1]", ARN).is_err());
    }
}
