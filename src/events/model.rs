//! Domain types: one Step Functions history event with typed details.
//! These never appear on a wire as-is (the debug JSON-lines output aside);
//! `wire.rs` holds the serde shapes of log lines and API history.

use super::kind::EventKind;
use serde::Serialize;
use std::sync::Arc;

/// One state transition of one execution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// The execution's ARN (also after a redrive: AWS reuses it).
    pub execution_arn: Arc<str>,
    /// History event id, 1.. per execution.
    pub id: u64,
    /// The causal predecessor (`0` for none).
    pub previous_event_id: u64,
    /// Event time, epoch milliseconds.
    pub timestamp_ms: i64,
    /// How many redrives preceded this event (0 when the line has no such field).
    pub redrive_count: u32,
    #[serde(rename = "type")]
    pub kind: EventKind,
    #[serde(skip_serializing_if = "Details::is_none")]
    pub details: Details,
    /// Where it came from when it arrived through CloudWatch Logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Arc<LogSource>>,
}

/// CloudWatch Logs metadata of the envelope an event came in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct LogSource {
    pub owner: Box<str>,
    pub log_group: Box<str>,
    pub log_stream: Box<str>,
    pub subscription_filters: Vec<Box<str>>,
}

/// A JSON document carried as text (state input, output, task parameters).
/// It may be cut by AWS (`aws_truncated`) and is then usually not valid JSON,
/// so it is kept as text and only parsed on demand. Shared (`Arc`): the
/// spans that capture it hold the same text instead of a copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payload {
    pub text: Arc<str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub aws_truncated: bool,
}

impl Payload {
    /// Whether the text is one valid JSON value (truncated payloads usually are not).
    pub fn is_valid_json(&self) -> bool {
        serde_json::from_str::<serde::de::IgnoredAny>(&self.text).is_ok()
    }

    /// The parsed value, when the text is valid JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.text).ok()
    }

    /// The string member `key` of the top-level object, when the text is a
    /// valid JSON object (the last one if repeated): what `json()` then
    /// `get(key)?.as_str()` gives, without building the document (task
    /// parameters and outputs are read for one name on every task).
    pub fn top_level_str(&self, key: &str) -> Option<String> {
        use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
        struct Find<'k>(&'k str);
        struct IsKey<'k>(&'k str);
        impl<'de> DeserializeSeed<'de> for IsKey<'_> {
            type Value = bool;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
                d.deserialize_str(self)
            }
        }
        impl Visitor<'_> for IsKey<'_> {
            type Value = bool;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
                Ok(v == self.0)
            }
        }
        impl<'de> Visitor<'de> for Find<'_> {
            type Value = Option<String>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut found = None;
                while let Some(hit) = m.next_key_seed(IsKey(self.0))? {
                    if hit {
                        // A non-string member reads as absent, as `as_str` does.
                        found = m
                            .next_value::<serde_json::Value>()?
                            .as_str()
                            .map(str::to_owned);
                    } else {
                        m.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(found)
            }
        }
        let mut de = serde_json::Deserializer::from_str(&self.text);
        let found = de.deserialize_map(Find(key)).ok()?;
        de.end().ok()?;
        found
    }
}

/// `error` and `cause` of a failure, abort or timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Failure {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Box<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<Box<str>>,
}

/// The integration a Task calls, e.g. `lambda` / `invoke`, `aws-sdk:s3` / `getObject`.
/// Shared by the events of a request that name the same one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct TaskResource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<Arc<str>>,
}

/// The typed `*EventDetails` of an event. Which variant applies is decided by
/// the event type (`EventKind::details_shape`), never guessed from the fields.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(untagged)]
pub enum Details {
    /// The twelve types without details, and events logged with `"details":{}`.
    #[default]
    None,
    ExecutionStarted {
        #[serde(skip_serializing_if = "Option::is_none")]
        input: Option<Payload>,
        #[serde(skip_serializing_if = "Option::is_none")]
        role_arn: Option<Box<str>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        state_machine_alias_arn: Option<Box<str>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        state_machine_version_arn: Option<Box<str>>,
    },
    /// ExecutionSucceeded, ActivitySucceeded, LambdaFunctionSucceeded.
    Output {
        #[serde(skip_serializing_if = "Option::is_none")]
        output: Option<Payload>,
    },
    /// Execution{Failed,Aborted,TimedOut}, Activity{Failed,ScheduleFailed,TimedOut},
    /// LambdaFunction{Failed,ScheduleFailed,StartFailed,TimedOut}, MapRunFailed.
    Failure(Failure),
    ExecutionRedriven {
        #[serde(skip_serializing_if = "Option::is_none")]
        redrive_count: Option<u32>,
    },
    /// Every `*StateEntered`.
    StateEntered {
        /// Shared by the events of a request that name the same state.
        name: Arc<str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        input: Option<Payload>,
    },
    /// Every `*StateExited`.
    StateExited {
        name: Arc<str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        output: Option<Payload>,
        /// Variable name → JSON text, as assigned by the state (JSONata / `Assign`).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        assigned_variables: Vec<(Box<str>, Box<str>)>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        assigned_variables_aws_truncated: bool,
    },
    /// Boxed: the largest variant by far, and every held event pays for the
    /// largest variant (memory per open execution, BENCHMARKS.md).
    TaskScheduled(Box<TaskScheduled>),
    /// TaskStarted.
    TaskStarted(TaskResource),
    /// TaskSubmitted, TaskSucceeded.
    TaskOutput {
        #[serde(flatten)]
        resource: TaskResource,
        #[serde(skip_serializing_if = "Option::is_none")]
        output: Option<Payload>,
    },
    /// TaskFailed, TaskStartFailed, TaskSubmitFailed, TaskTimedOut.
    TaskFailure {
        #[serde(flatten)]
        resource: TaskResource,
        #[serde(flatten)]
        failure: Failure,
    },
    ActivityScheduled {
        #[serde(skip_serializing_if = "Option::is_none")]
        resource: Option<Box<str>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        input: Option<Payload>,
        #[serde(skip_serializing_if = "Option::is_none")]
        timeout_in_seconds: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        heartbeat_in_seconds: Option<u64>,
    },
    ActivityStarted {
        #[serde(skip_serializing_if = "Option::is_none")]
        worker_name: Option<Box<str>>,
    },
    LambdaScheduled {
        #[serde(skip_serializing_if = "Option::is_none")]
        resource: Option<Box<str>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        input: Option<Payload>,
        #[serde(skip_serializing_if = "Option::is_none")]
        timeout_in_seconds: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        task_credentials_role_arn: Option<Box<str>>,
    },
    MapStateStarted {
        #[serde(skip_serializing_if = "Option::is_none")]
        length: Option<u64>,
    },
    /// MapIteration{Started,Succeeded,Failed,Aborted}.
    MapIteration {
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<Box<str>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        index: Option<u64>,
    },
    MapRunStarted {
        #[serde(skip_serializing_if = "Option::is_none")]
        map_run_arn: Option<Box<str>>,
    },
    MapRunRedriven {
        #[serde(skip_serializing_if = "Option::is_none")]
        map_run_arn: Option<Box<str>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        redrive_count: Option<u32>,
    },
    EvaluationFailed {
        #[serde(flatten)]
        failure: Failure,
        #[serde(skip_serializing_if = "Option::is_none")]
        location: Option<Box<str>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        state: Option<Box<str>>,
    },
    /// An event type this build does not know: every recognised field is kept.
    Other(Box<OtherDetails>),
}

/// `TaskScheduled` details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct TaskScheduled {
    #[serde(flatten)]
    pub resource: TaskResource,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Payload>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_in_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_in_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_credentials_role_arn: Option<Box<str>>,
}

/// The union of known detail fields, for event types added after this build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct OtherDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Box<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Payload>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Payload>,
    #[serde(flatten)]
    pub resource: TaskResource,
    #[serde(flatten)]
    pub failure: Failure,
}

impl Details {
    pub fn is_none(&self) -> bool {
        matches!(self, Details::None)
    }

    /// The state name of `*StateEntered` / `*StateExited` events.
    pub fn state_name(&self) -> Option<&str> {
        match self {
            Details::StateEntered { name, .. } | Details::StateExited { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The failure carried by this event, if any.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Details::Failure(f)
            | Details::TaskFailure { failure: f, .. }
            | Details::EvaluationFailed { failure: f, .. } => Some(f),
            _ => None,
        }
    }

    /// The input payload of this event, if any.
    pub fn input(&self) -> Option<&Payload> {
        match self {
            Details::ExecutionStarted { input, .. }
            | Details::StateEntered { input, .. }
            | Details::ActivityScheduled { input, .. }
            | Details::LambdaScheduled { input, .. } => input.as_ref(),
            Details::Other(o) => o.input.as_ref(),
            _ => None,
        }
    }

    /// The output payload of this event, if any.
    pub fn output(&self) -> Option<&Payload> {
        match self {
            Details::Output { output }
            | Details::StateExited { output, .. }
            | Details::TaskOutput { output, .. } => output.as_ref(),
            Details::Other(o) => o.output.as_ref(),
            _ => None,
        }
    }
}

impl Details {
    /// Bytes of payload text held (inputs, outputs, parameters, variables).
    pub fn payload_bytes(&self) -> usize {
        let p = |x: &Option<Payload>| x.as_ref().map_or(0, |p| p.text.len());
        match self {
            Details::ExecutionStarted { input, .. }
            | Details::StateEntered { input, .. }
            | Details::ActivityScheduled { input, .. }
            | Details::LambdaScheduled { input, .. } => p(input),
            Details::Output { output } | Details::TaskOutput { output, .. } => p(output),
            Details::StateExited {
                output,
                assigned_variables,
                ..
            } => {
                p(output)
                    + assigned_variables
                        .iter()
                        .map(|(k, v)| k.len() + v.len())
                        .sum::<usize>()
            }
            Details::TaskScheduled(t) => p(&t.parameters),
            Details::Other(o) => p(&o.input) + p(&o.output),
            _ => 0,
        }
    }

    /// Drops payload text once the spans that capture it are emitted, so a
    /// long-running execution holds its structure, not its data.
    pub fn release_payloads(&mut self) {
        match self {
            Details::StateEntered { input, .. }
            | Details::ActivityScheduled { input, .. }
            | Details::LambdaScheduled { input, .. } => *input = None,
            Details::Output { output } | Details::TaskOutput { output, .. } => *output = None,
            Details::StateExited {
                output,
                assigned_variables,
                ..
            } => {
                *output = None;
                *assigned_variables = Vec::new();
            }
            Details::TaskScheduled(t) => t.parameters = None,
            Details::Other(o) => {
                o.input = None;
                o.output = None;
            }
            _ => {}
        }
    }
}

impl Event {
    /// The parsed execution ARN (every decoded event's ARN parses).
    pub fn arn(&self) -> Option<super::arn::ExecutionArn<'_>> {
        super::arn::ExecutionArn::parse(&self.execution_arn).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Payload {
        Payload {
            text: text.into(),
            aws_truncated: false,
        }
    }

    #[test]
    fn top_level_str_reads_what_the_parsed_document_says() {
        let cases = [
            r#"{"FunctionName":"f","Payload":{"FunctionName":"inner"}}"#,
            r#"{"Payload":{"FunctionName":"inner"}}"#,
            r#"{"FunctionName":7}"#,
            r#"{"FunctionName":"a","FunctionName":"b"}"#,
            r#"{"Function\u004eame":"escaped"}"#,
            r#"{"FunctionName":"cut"#,
            r#"{"FunctionName":"x"} trailing"#,
            r#"["FunctionName","f"]"#,
            r#""FunctionName""#,
            "",
        ];
        for c in cases {
            let want = p(c)
                .json()
                .and_then(|v| v.get("FunctionName")?.as_str().map(str::to_owned));
            assert_eq!(p(c).top_level_str("FunctionName"), want, "{c}");
        }
        assert_eq!(
            p(cases[0]).top_level_str("FunctionName").as_deref(),
            Some("f")
        );
        assert_eq!(
            p(cases[3]).top_level_str("FunctionName").as_deref(),
            Some("b")
        );
        assert_eq!(
            p(cases[4]).top_level_str("FunctionName").as_deref(),
            Some("escaped")
        );
    }
}
