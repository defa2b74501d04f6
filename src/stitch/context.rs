//! Trace context carried in an execution's input (trace-model.md §4):
//! `_datadog` at the top level or under `Payload`, or the legacy `CONTEXT`.

use super::ids;
use crate::events::lenient::parse_iso8601_millis;
use serde_json::Value;

/// Where an execution's spans hang.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u64,
    /// `_dd.p.tid` (upper 64 bits, hex, unpadded), when known.
    pub tid: Option<String>,
    /// Parent of the execution span; 0 for a root.
    pub parent_id: u64,
    /// Which rule matched: `own`, `upstream`, `root_execution`, `legacy_context`.
    pub source: &'static str,
}

impl TraceContext {
    /// The trace id's upper 64 bits (`_dd.p.tid` read as hex); 0 when the
    /// trace is a 64-bit one (an upstream context without the tag).
    pub fn high_bits(&self) -> u64 {
        self.tid
            .as_deref()
            .and_then(|t| u64::from_str_radix(t, 16).ok())
            .unwrap_or(0)
    }

    /// No context: the execution is the root of its own trace.
    pub fn own(execution_arn: &str) -> Self {
        Self {
            trace_id: ids::trace_id(execution_arn),
            tid: Some(ids::trace_id_high_tag(execution_arn)),
            parent_id: 0,
            source: "own",
        }
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn as_u32(v: Option<&Value>) -> u32 {
    v.and_then(as_u64)
        .map(|n| n.min(u32::MAX as u64) as u32)
        .unwrap_or(0)
}

/// The parent state's span id from `Execution.Id`, `State.Name`, `State.EnteredTime`.
fn parent_state_span(obj: &Value) -> Option<u64> {
    let exec = obj.get("Execution")?.get("Id")?.as_str()?;
    let state = obj.get("State")?;
    let name = state.get("Name")?.as_str()?;
    let entered = parse_iso8601_millis(state.get("EnteredTime")?.as_str()?)?;
    let retry = as_u32(state.get("RetryCount"));
    let redrive = as_u32(
        obj.get("Execution")
            .and_then(|e| e.get("RedriveCount"))
            .or(obj.get("RedriveCount")),
    );
    Some(ids::state_span_id(exec, name, entered, retry, redrive))
}

fn tid_from_tags(tags: &str) -> Option<String> {
    tags.split(',')
        .find_map(|kv| kv.trim().strip_prefix("_dd.p.tid="))
        .map(str::to_owned)
}

fn from_datadog(dd: &Value) -> Option<TraceContext> {
    if let Some(trace_id) = dd.get("x-datadog-trace-id").and_then(as_u64) {
        let parent_id = dd
            .get("x-datadog-parent-id")
            .and_then(as_u64)
            .or_else(|| parent_state_span(dd))
            .unwrap_or(0);
        let tid = dd
            .get("x-datadog-tags")
            .and_then(Value::as_str)
            .and_then(tid_from_tags);
        return Some(TraceContext {
            trace_id,
            tid,
            parent_id,
            source: "upstream",
        });
    }
    if let Some(root) = dd.get("RootExecutionId").and_then(Value::as_str) {
        return Some(TraceContext {
            trace_id: ids::trace_id(root),
            tid: Some(ids::trace_id_high_tag(root)),
            parent_id: parent_state_span(dd).unwrap_or(0),
            source: "root_execution",
        });
    }
    None
}

/// The members of an input that can carry a context; everything else is
/// skipped without being built (a `Value` of the whole input, payloads
/// and all, cost ~3 % of the server's profile).
#[derive(Debug, Default)]
struct Carriers {
    datadog: Option<Value>,
    context: Option<Value>,
    payload: Option<Box<Carriers>>,
}

enum Member {
    Datadog,
    Context,
    Payload,
    Other,
}

impl<'de> serde::Deserialize<'de> for Member {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Member;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: serde::de::Error>(self, k: &str) -> Result<Member, E> {
                Ok(match k {
                    "_datadog" => Member::Datadog,
                    "CONTEXT" => Member::Context,
                    "Payload" => Member::Payload,
                    _ => Member::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// Reads `Carriers` from any JSON value: `None` unless it is an object.
/// `nested` is true under `Payload`, which is looked into one level only.
struct CarriersSeed {
    nested: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for CarriersSeed {
    type Value = Option<Carriers>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for CarriersSeed {
    type Value = Option<Carriers>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
        use serde::de::IgnoredAny;
        let mut c = Carriers::default();
        // A repeated member: the last one wins, as in a `Value`.
        while let Some(k) = m.next_key::<Member>()? {
            match k {
                Member::Datadog => c.datadog = Some(m.next_value()?),
                Member::Context => c.context = Some(m.next_value()?),
                Member::Payload if !self.nested => {
                    c.payload = m
                        .next_value_seed(CarriersSeed { nested: true })?
                        .map(Box::new)
                }
                _ => {
                    m.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Some(c))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
        while s.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

fn carriers(input: &str) -> Option<Carriers> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_str(input);
    let c = CarriersSeed { nested: false }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    c
}

/// Reads the context from an execution input, if it carries one.
pub fn from_input(input: &str) -> Option<TraceContext> {
    // Cheap pre-check: most inputs carry no context at all.
    if !input.contains("_datadog") && !input.contains("CONTEXT") {
        return None;
    }
    let top = carriers(input)?;
    let payload = top.payload.as_deref();
    for holder in [Some(&top), payload].into_iter().flatten() {
        if let Some(dd) = &holder.datadog {
            if let Some(ctx) = from_datadog(dd) {
                return Some(ctx);
            }
        }
    }
    let legacy = top
        .context
        .as_ref()
        .or_else(|| payload.and_then(|p| p.context.as_ref()))?;
    let exec = legacy.get("Execution")?.get("Id")?.as_str()?;
    Some(TraceContext {
        trace_id: ids::trace_id(exec),
        tid: Some(ids::trace_id_high_tag(exec)),
        parent_id: parent_state_span(legacy)?,
        source: "legacy_context",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "arn:aws:states:sa-east-1:425362996713:execution:abhinav-activity-state-machine:72a7ca3e-901c-41bb-b5a3-5f279b92a316";

    #[test]
    fn upstream_trace_id_and_parent() {
        let input = r#"{"order":1,"_datadog":{"x-datadog-trace-id":"1234567890","x-datadog-parent-id":"987","x-datadog-tags":"_dd.p.dm=-0,_dd.p.tid=66bcb5eb00000000"}}"#;
        let c = from_input(input).unwrap();
        assert_eq!(c.trace_id, 1234567890);
        assert_eq!(c.parent_id, 987);
        assert_eq!(c.tid.as_deref(), Some("66bcb5eb00000000"));
    }

    #[test]
    fn root_execution_id_with_parent_state() {
        let input = format!(
            r#"{{"_datadog":{{"Execution":{{"Id":"{PARENT}","RedriveCount":0}},"State":{{"Name":"Lambda Invoke","EnteredTime":"2024-12-04T19:38:04.118Z","RetryCount":0}},"StateMachine":{{}},"RootExecutionId":"{PARENT}","serverless-version":"v1"}}}}"#
        );
        let c = from_input(&input).unwrap();
        assert_eq!(c.trace_id, 435175499815315247);
        assert_eq!(c.tid.as_deref(), Some("3e7a89d1b7310603"));
        assert_eq!(c.parent_id, 3929055471293792800);
    }

    #[test]
    fn legacy_context_under_payload() {
        let input = format!(
            r#"{{"Payload":{{"CONTEXT":{{"Execution":{{"Id":"{PARENT}","RedriveCount":1}},"State":{{"Name":"Lambda Invoke","EnteredTime":"2024-12-04T19:38:04.118Z","RetryCount":0}}}}}}}}"#
        );
        let c = from_input(&input).unwrap();
        assert_eq!(c.trace_id, 435175499815315247);
        assert_eq!(c.parent_id, 8782364156266188026);
        assert_eq!(c.source, "legacy_context");
    }

    #[test]
    fn other_members_and_odd_payloads_are_skipped() {
        let input = r#"{"a":[1,{"_datadog":{"x-datadog-trace-id":"5"}}],"Payload":"text","b":null,
            "_datadog":{"x-datadog-trace-id":"7","x-datadog-parent-id":"8"},"c":{"d":true}}"#;
        let c = from_input(input).unwrap();
        assert_eq!((c.trace_id, c.parent_id), (7, 8));
        // Under Payload, one level only; a repeated member: the last wins.
        let input = r#"{"Payload":{"x":1,"Payload":{"_datadog":{"x-datadog-trace-id":"1"}},
            "_datadog":{"x-datadog-trace-id":"2"},"_datadog":{"x-datadog-trace-id":"3"}}}"#;
        assert_eq!(from_input(input).unwrap().trace_id, 3);
        let input = r#"{"Payload":{"Payload":{"_datadog":{"x-datadog-trace-id":"1"}}}}"#;
        assert_eq!(from_input(input), None);
        assert_eq!(from_input(r#"["_datadog"]"#), None);
        assert_eq!(from_input(r#""_datadog""#), None);
        assert_eq!(
            from_input(r#"{"_datadog":{"x-datadog-trace-id":"1"}} trailing"#),
            None
        );
    }

    #[test]
    fn nothing_or_garbage() {
        assert_eq!(from_input(r#"{"a":1}"#), None);
        assert_eq!(from_input(r#"{"_datadog": 5"#), None);
        assert_eq!(from_input(r#"{"_datadog": {}}"#), None);
    }
}
