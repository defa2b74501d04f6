//! Wire shapes of Step Functions events: the CloudWatch log line and the
//! `*EventDetails` object (same member names in log lines and API history).
//! Strings borrow from the input where JSON escaping allows.

use super::arn::ExecutionArn;
use super::kind::{DetailsShape, EventKind};
use super::lenient::{EpochMillis, LenientU64};
use super::model::{Details, Event, Failure, OtherDetails, Payload, TaskResource, TaskScheduled};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// JSON text carried in a string (`"input":"{\"a\":1}"`). A producer that
/// sends the document itself instead of a string is tolerated: the value is
/// re-serialised to text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireText<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for WireText<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("JSON text or a JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(WireText(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(WireText(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(WireText(Cow::Owned(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(WireText(Cow::Owned(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(WireText(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(WireText(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(WireText(Cow::Owned(serde_json::Value::from(v).to_string())))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let v = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(WireText(Cow::Owned(v.to_string())))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                let v = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(WireText(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct WireTruncation {
    #[serde(default)]
    pub truncated: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct WireTaskCredentials<'a> {
    #[serde(rename = "roleArn", borrow, default)]
    pub role_arn: Option<Cow<'a, str>>,
}

/// Variable name → JSON text, in the order given.
#[derive(Debug, Default)]
pub struct WireVariables(pub Vec<(Box<str>, Box<str>)>);

impl<'de> Deserialize<'de> for WireVariables {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = WireVariables;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of variable name to JSON text")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<Cow<'de, str>>()? {
                    let v: WireText<'de> = map.next_value()?;
                    out.push((Box::from(k.as_ref()), Box::from(v.0.as_ref())));
                }
                Ok(WireVariables(out))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(WireVariables(Vec::new()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The union of every `*EventDetails` member. Which members matter is decided
/// by the event type in [`WireDetails::into_details`].
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireDetails<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub input: Option<WireText<'a>>,
    #[serde(default)]
    pub input_details: Option<WireTruncation>,
    #[serde(borrow, default)]
    pub output: Option<WireText<'a>>,
    #[serde(default)]
    pub output_details: Option<WireTruncation>,
    #[serde(borrow, default)]
    pub role_arn: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub state_machine_alias_arn: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub state_machine_version_arn: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub error: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub cause: Option<WireText<'a>>,
    #[serde(default)]
    pub redrive_count: Option<LenientU64>,
    #[serde(borrow, default)]
    pub resource_type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub resource: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub region: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub parameters: Option<WireText<'a>>,
    #[serde(default)]
    pub timeout_in_seconds: Option<LenientU64>,
    #[serde(default)]
    pub heartbeat_in_seconds: Option<LenientU64>,
    #[serde(borrow, default)]
    pub task_credentials: Option<WireTaskCredentials<'a>>,
    #[serde(borrow, default)]
    pub worker_name: Option<Cow<'a, str>>,
    #[serde(default)]
    pub length: Option<LenientU64>,
    #[serde(default)]
    pub index: Option<LenientU64>,
    #[serde(borrow, default)]
    pub map_run_arn: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub location: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub state: Option<Cow<'a, str>>,
    #[serde(default)]
    pub assigned_variables: Option<WireVariables>,
    #[serde(default)]
    pub assigned_variables_details: Option<WireTruncation>,
}

fn boxed(s: Option<Cow<'_, str>>) -> Option<Box<str>> {
    s.map(|c| Box::from(c.as_ref()))
}

fn payload(text: Option<WireText<'_>>, details: Option<WireTruncation>) -> Option<Payload> {
    text.map(|t| Payload {
        text: std::sync::Arc::from(t.0.as_ref()),
        aws_truncated: details.and_then(|d| d.truncated).unwrap_or(false),
    })
}

fn num(v: Option<LenientU64>) -> Option<u64> {
    v.map(|v| v.0)
}

fn count(v: Option<LenientU64>) -> Option<u32> {
    v.map(|v| u32::try_from(v.0).unwrap_or(u32::MAX))
}

impl WireDetails<'_> {
    fn failure(error: Option<Cow<'_, str>>, cause: Option<WireText<'_>>) -> Failure {
        Failure {
            error: boxed(error),
            cause: cause.map(|c| Box::from(c.0.as_ref())),
        }
    }

    fn task_resource(&mut self, strings: &mut StringCache) -> TaskResource {
        TaskResource {
            resource_type: strings.short_opt(self.resource_type.take()),
            resource: strings.short_opt(self.resource.take()),
        }
    }

    /// Reads the members that the event type defines; ignores the rest.
    pub fn into_details(mut self, kind: &EventKind, strings: &mut StringCache) -> Details {
        match kind.details_shape() {
            DetailsShape::None => Details::None,
            DetailsShape::ExecutionStarted => Details::ExecutionStarted {
                input: payload(self.input, self.input_details),
                role_arn: boxed(self.role_arn),
                state_machine_alias_arn: boxed(self.state_machine_alias_arn),
                state_machine_version_arn: boxed(self.state_machine_version_arn),
            },
            DetailsShape::Output => Details::Output {
                output: payload(self.output, self.output_details),
            },
            DetailsShape::Failure => Details::Failure(Self::failure(self.error, self.cause)),
            DetailsShape::ExecutionRedriven => Details::ExecutionRedriven {
                redrive_count: count(self.redrive_count),
            },
            DetailsShape::StateEntered => Details::StateEntered {
                name: strings.short(self.name.as_deref().unwrap_or_default()),
                input: payload(self.input, self.input_details),
            },
            DetailsShape::StateExited => Details::StateExited {
                name: strings.short(self.name.as_deref().unwrap_or_default()),
                output: payload(self.output, self.output_details),
                assigned_variables: self.assigned_variables.map(|v| v.0).unwrap_or_default(),
                assigned_variables_aws_truncated: self
                    .assigned_variables_details
                    .and_then(|d| d.truncated)
                    .unwrap_or(false),
            },
            DetailsShape::TaskScheduled => Details::TaskScheduled(Box::new(TaskScheduled {
                resource: self.task_resource(strings),
                region: strings.short_opt(self.region),
                parameters: payload(self.parameters, None),
                timeout_in_seconds: num(self.timeout_in_seconds),
                heartbeat_in_seconds: num(self.heartbeat_in_seconds),
                task_credentials_role_arn: self.task_credentials.and_then(|c| boxed(c.role_arn)),
            })),
            DetailsShape::TaskStarted => Details::TaskStarted(self.task_resource(strings)),
            DetailsShape::TaskOutput => Details::TaskOutput {
                resource: self.task_resource(strings),
                output: payload(self.output, self.output_details),
            },
            DetailsShape::TaskFailure => Details::TaskFailure {
                resource: self.task_resource(strings),
                failure: Self::failure(self.error, self.cause),
            },
            DetailsShape::ActivityScheduled => Details::ActivityScheduled {
                resource: boxed(self.resource),
                input: payload(self.input, self.input_details),
                timeout_in_seconds: num(self.timeout_in_seconds),
                heartbeat_in_seconds: num(self.heartbeat_in_seconds),
            },
            DetailsShape::ActivityStarted => Details::ActivityStarted {
                worker_name: boxed(self.worker_name),
            },
            DetailsShape::LambdaScheduled => Details::LambdaScheduled {
                resource: boxed(self.resource),
                input: payload(self.input, self.input_details),
                timeout_in_seconds: num(self.timeout_in_seconds),
                task_credentials_role_arn: self.task_credentials.and_then(|c| boxed(c.role_arn)),
            },
            DetailsShape::MapStateStarted => Details::MapStateStarted {
                length: num(self.length),
            },
            DetailsShape::MapIteration => Details::MapIteration {
                name: boxed(self.name),
                index: num(self.index),
            },
            DetailsShape::MapRunStarted => Details::MapRunStarted {
                map_run_arn: boxed(self.map_run_arn),
            },
            DetailsShape::MapRunRedriven => Details::MapRunRedriven {
                map_run_arn: boxed(self.map_run_arn),
                redrive_count: count(self.redrive_count),
            },
            DetailsShape::EvaluationFailed => Details::EvaluationFailed {
                failure: Self::failure(self.error, self.cause),
                location: boxed(self.location),
                state: boxed(self.state),
            },
            DetailsShape::Other => Details::Other(Box::new(OtherDetails {
                name: boxed(self.name.take()),
                resource: self.task_resource(strings),
                input: payload(self.input, self.input_details),
                output: payload(self.output, self.output_details),
                failure: Self::failure(self.error, self.cause),
            })),
        }
    }
}

/// One Step Functions CloudWatch log line (the CWL event's `message`).
/// Key order is not relied on: AWS has changed it before.
#[derive(Debug, Default, Deserialize)]
pub struct WireLogLine<'a> {
    #[serde(default)]
    pub id: Option<LenientU64>,
    #[serde(rename = "type", borrow, default)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub details: Option<WireDetails<'a>>,
    #[serde(default)]
    pub previous_event_id: Option<LenientU64>,
    #[serde(default)]
    pub event_timestamp: Option<EpochMillis>,
    #[serde(borrow, default)]
    pub execution_arn: Option<Cow<'a, str>>,
    #[serde(default)]
    pub redrive_count: Option<LenientU64>,
}

/// Why a JSON value is not a usable Step Functions event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("not a Step Functions log line: no execution_arn")]
    NotStepFunctions,
    #[error("Step Functions log line without {0}")]
    MissingField(&'static str),
    #[error(transparent)]
    Arn(#[from] super::arn::ArnError),
}

/// Shared strings for one decoder: the last ARN (consecutive events nearly
/// always share it) and repeated short detail strings — state names,
/// resource types and resources, regions. Those were ~2 of every 3
/// allocations of a task state's events, each made on a decode thread and
/// freed on the stitcher's.
#[derive(Debug, Default)]
pub struct StringCache {
    arn: Option<Arc<str>>,
    short: crate::hashing::FastSet<Arc<str>>,
}

impl StringCache {
    /// Strings kept (state names of the state machines in one request).
    const MAX_SHORT: usize = 4096;
    /// Longer strings are copied: they are rarely repeated.
    const MAX_SHORT_LEN: usize = 256;

    /// The execution ARN.
    pub fn get(&mut self, arn: &str) -> Arc<str> {
        match &self.arn {
            Some(a) if a.as_ref() == arn => a.clone(),
            _ => {
                let a: Arc<str> = Arc::from(arn);
                self.arn = Some(a.clone());
                a
            }
        }
    }

    /// A short detail string, shared with its earlier occurrences.
    pub fn short(&mut self, s: &str) -> Arc<str> {
        if s.len() > Self::MAX_SHORT_LEN {
            return Arc::from(s);
        }
        if let Some(a) = self.short.get(s) {
            return a.clone();
        }
        if self.short.len() >= Self::MAX_SHORT {
            self.short.clear();
        }
        let a: Arc<str> = Arc::from(s);
        self.short.insert(a.clone());
        a
    }

    fn short_opt(&mut self, s: Option<Cow<'_, str>>) -> Option<Arc<str>> {
        s.map(|s| self.short(&s))
    }
}

impl WireLogLine<'_> {
    /// Validates and converts to the domain event.
    pub fn into_event(self, strings: &mut StringCache) -> Result<Event, EventError> {
        let arn = self.execution_arn.ok_or(EventError::NotStepFunctions)?;
        ExecutionArn::parse(&arn)?;
        let kind = EventKind::parse(&self.kind.ok_or(EventError::MissingField("type"))?);
        let id = self.id.ok_or(EventError::MissingField("id"))?.0;
        let timestamp_ms = self
            .event_timestamp
            .ok_or(EventError::MissingField("event_timestamp"))?
            .0;
        let details = self
            .details
            .unwrap_or_default()
            .into_details(&kind, strings);
        Ok(Event {
            execution_arn: strings.get(&arn),
            id,
            previous_event_id: self.previous_event_id.map(|v| v.0).unwrap_or(0),
            timestamp_ms,
            redrive_count: count(self.redrive_count).unwrap_or(0),
            kind,
            details,
            source: None,
        })
    }
}

/// Parses one log line (a CWL `message`) into an event.
pub fn parse_log_line(line: &str, strings: &mut StringCache) -> Result<Event, LineError> {
    let wire: WireLogLine<'_> = serde_json::from_str(line).map_err(LineError::Json)?;
    wire.into_event(strings).map_err(LineError::Event)
}

#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error("invalid JSON: {0}")]
    Json(serde_json::Error),
    #[error(transparent)]
    Event(EventError),
}

/// The inverse of [`WireDetails::into_details`]: the `details` object as AWS
/// writes it (camelCase members, payloads as JSON text with their
/// `*Details.truncated`), so an event can be written back as a log line that
/// reads back to an equal event (durable snapshots, forwarded logs).
pub fn details_to_wire(d: &Details) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let mut m = Map::new();
    fn put(m: &mut Map<String, Value>, k: &str, v: Option<&str>) {
        if let Some(v) = v {
            m.insert(k.into(), Value::String(v.into()));
        }
    }
    fn put_num(m: &mut Map<String, Value>, k: &str, v: Option<u64>) {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    fn put_payload(m: &mut Map<String, Value>, k: &str, p: &Option<Payload>, with_details: bool) {
        if let Some(p) = p {
            m.insert(k.into(), Value::String(p.text.to_string()));
            if with_details {
                m.insert(
                    format!("{k}Details"),
                    json!({ "truncated": p.aws_truncated }),
                );
            }
        }
    }
    fn put_failure(m: &mut Map<String, Value>, f: &Failure) {
        put(m, "error", f.error.as_deref());
        put(m, "cause", f.cause.as_deref());
    }
    fn put_resource(m: &mut Map<String, Value>, r: &TaskResource) {
        put(m, "resourceType", r.resource_type.as_deref());
        put(m, "resource", r.resource.as_deref());
    }
    fn put_role(m: &mut Map<String, Value>, role: &Option<Box<str>>) {
        if let Some(r) = role {
            m.insert("taskCredentials".into(), json!({ "roleArn": r.as_ref() }));
        }
    }
    match d {
        Details::None => {}
        Details::ExecutionStarted {
            input,
            role_arn,
            state_machine_alias_arn,
            state_machine_version_arn,
        } => {
            put_payload(&mut m, "input", input, true);
            put(&mut m, "roleArn", role_arn.as_deref());
            put(
                &mut m,
                "stateMachineAliasArn",
                state_machine_alias_arn.as_deref(),
            );
            put(
                &mut m,
                "stateMachineVersionArn",
                state_machine_version_arn.as_deref(),
            );
        }
        Details::Output { output } => put_payload(&mut m, "output", output, true),
        Details::Failure(f) => put_failure(&mut m, f),
        Details::ExecutionRedriven { redrive_count } => {
            put_num(&mut m, "redriveCount", redrive_count.map(u64::from))
        }
        Details::StateEntered { name, input } => {
            put(&mut m, "name", Some(name));
            put_payload(&mut m, "input", input, true);
        }
        Details::StateExited {
            name,
            output,
            assigned_variables,
            assigned_variables_aws_truncated,
        } => {
            put(&mut m, "name", Some(name));
            put_payload(&mut m, "output", output, true);
            if !assigned_variables.is_empty() || *assigned_variables_aws_truncated {
                let vars: Map<String, Value> = assigned_variables
                    .iter()
                    .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                    .collect();
                m.insert("assignedVariables".into(), Value::Object(vars));
                m.insert(
                    "assignedVariablesDetails".into(),
                    json!({ "truncated": assigned_variables_aws_truncated }),
                );
            }
        }
        Details::TaskScheduled(t) => {
            let TaskScheduled {
                resource,
                region,
                parameters,
                timeout_in_seconds,
                heartbeat_in_seconds,
                task_credentials_role_arn,
            } = &**t;
            put_resource(&mut m, resource);
            put(&mut m, "region", region.as_deref());
            put_payload(&mut m, "parameters", parameters, false);
            put_num(&mut m, "timeoutInSeconds", *timeout_in_seconds);
            put_num(&mut m, "heartbeatInSeconds", *heartbeat_in_seconds);
            put_role(&mut m, task_credentials_role_arn);
        }
        Details::TaskStarted(r) => put_resource(&mut m, r),
        Details::TaskOutput { resource, output } => {
            put_resource(&mut m, resource);
            put_payload(&mut m, "output", output, true);
        }
        Details::TaskFailure { resource, failure } => {
            put_resource(&mut m, resource);
            put_failure(&mut m, failure);
        }
        Details::ActivityScheduled {
            resource,
            input,
            timeout_in_seconds,
            heartbeat_in_seconds,
        } => {
            put(&mut m, "resource", resource.as_deref());
            put_payload(&mut m, "input", input, true);
            put_num(&mut m, "timeoutInSeconds", *timeout_in_seconds);
            put_num(&mut m, "heartbeatInSeconds", *heartbeat_in_seconds);
        }
        Details::ActivityStarted { worker_name } => {
            put(&mut m, "workerName", worker_name.as_deref())
        }
        Details::LambdaScheduled {
            resource,
            input,
            timeout_in_seconds,
            task_credentials_role_arn,
        } => {
            put(&mut m, "resource", resource.as_deref());
            put_payload(&mut m, "input", input, true);
            put_num(&mut m, "timeoutInSeconds", *timeout_in_seconds);
            put_role(&mut m, task_credentials_role_arn);
        }
        Details::MapStateStarted { length } => put_num(&mut m, "length", *length),
        Details::MapIteration { name, index } => {
            put(&mut m, "name", name.as_deref());
            put_num(&mut m, "index", *index);
        }
        Details::MapRunStarted { map_run_arn } => put(&mut m, "mapRunArn", map_run_arn.as_deref()),
        Details::MapRunRedriven {
            map_run_arn,
            redrive_count,
        } => {
            put(&mut m, "mapRunArn", map_run_arn.as_deref());
            put_num(&mut m, "redriveCount", redrive_count.map(u64::from));
        }
        Details::EvaluationFailed {
            failure,
            location,
            state,
        } => {
            put_failure(&mut m, failure);
            put(&mut m, "location", location.as_deref());
            put(&mut m, "state", state.as_deref());
        }
        Details::Other(o) => {
            put(&mut m, "name", o.name.as_deref());
            put_resource(&mut m, &o.resource);
            put_payload(&mut m, "input", &o.input, true);
            put_payload(&mut m, "output", &o.output, true);
            put_failure(&mut m, &o.failure);
        }
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Details;

    const ARN: &str = "arn:aws:states:us-east-1:123456789012:execution:orders:run-1";

    fn line(id: u64, kind: &str, details: &str) -> String {
        format!(
            r#"{{"id":"{id}","type":"{kind}","details":{details},"previous_event_id":"0","event_timestamp":"1780000000000","execution_arn":"{ARN}"}}"#
        )
    }

    #[test]
    fn repeated_detail_strings_are_shared_and_long_ones_copied() {
        let mut strings = StringCache::default();
        let long = "r".repeat(StringCache::MAX_SHORT_LEN + 1);
        let lines = [
            line(2, "TaskStateEntered", r#"{"name":"Charge","input":"{}"}"#),
            line(
                3,
                "TaskScheduled",
                r#"{"resourceType":"lambda","resource":"invoke","region":"us-east-1","parameters":"{}"}"#,
            ),
            line(
                4,
                "TaskStarted",
                r#"{"resourceType":"lambda","resource":"invoke"}"#,
            ),
            line(5, "TaskStateExited", r#"{"name":"Charge","output":"{}"}"#),
            line(
                6,
                "TaskStarted",
                &format!(r#"{{"resourceType":"lambda","resource":"{long}"}}"#),
            ),
            line(
                7,
                "TaskStarted",
                &format!(r#"{{"resourceType":"lambda","resource":"{long}"}}"#),
            ),
        ];
        let ev: Vec<Event> = lines
            .iter()
            .map(|l| parse_log_line(l, &mut strings).unwrap())
            .collect();
        let name = |e: &Event| match &e.details {
            Details::StateEntered { name, .. } | Details::StateExited { name, .. } => name.clone(),
            d => panic!("{d:?}"),
        };
        let resource = |e: &Event| match &e.details {
            Details::TaskScheduled(t) => t.resource.clone(),
            Details::TaskStarted(r) => r.clone(),
            d => panic!("{d:?}"),
        };
        assert_eq!(&*name(&ev[0]), "Charge");
        assert!(Arc::ptr_eq(&name(&ev[0]), &name(&ev[3])));
        let (a, b) = (resource(&ev[1]), resource(&ev[2]));
        assert_eq!(a.resource.as_deref(), Some("invoke"));
        assert!(Arc::ptr_eq(
            a.resource.as_ref().unwrap(),
            b.resource.as_ref().unwrap()
        ));
        assert!(Arc::ptr_eq(
            a.resource_type.as_ref().unwrap(),
            b.resource_type.as_ref().unwrap()
        ));
        let (c, d) = (resource(&ev[4]), resource(&ev[5]));
        assert_eq!(c.resource.as_deref(), Some(long.as_str()));
        assert!(!Arc::ptr_eq(
            c.resource.as_ref().unwrap(),
            d.resource.as_ref().unwrap()
        ));
        assert!(Arc::ptr_eq(&ev[0].execution_arn, &ev[5].execution_arn));
    }

    #[test]
    fn the_short_string_cache_is_bounded() {
        let mut strings = StringCache::default();
        for i in 0..StringCache::MAX_SHORT * 2 + 3 {
            assert_eq!(&*strings.short(&i.to_string()), i.to_string());
            assert!(strings.short.len() <= StringCache::MAX_SHORT);
        }
    }
}
