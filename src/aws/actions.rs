//! Retry, redrive and stop: what each asks of AWS, in order, with the
//! checks a person would make first (is it redrivable? which version did
//! it run?). The names and tokens sent make a repeated request idempotent.

use super::client::Sfn;
use super::errors::AwsError;
use super::names;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Retry,
    Redrive,
    Stop,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "retry" => Some(Action::Retry),
            "redrive" => Some(Action::Redrive),
            "stop" => Some(Action::Stop),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Action::Retry => "retry",
            Action::Redrive => "redrive",
            Action::Stop => "stop",
        }
    }
}

/// What the user asked.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The same for a repeat of one request (a double click).
    pub request_id: String,
    /// Stop only: the error and cause recorded on the execution.
    pub error: Option<String>,
    pub cause: Option<String>,
}

/// The answer (spec: `{"execution_arn", "action", "result"}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// The execution acted on; for a retry, the new execution.
    pub execution_arn: String,
    pub action: &'static str,
    /// `started`, `already_started`, `redriven`, `stopped`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_execution_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redrive_count: Option<i32>,
}

/// AWS's limits on StopExecution's fields.
const ERROR_MAX: usize = 256;
const CAUSE_MAX: usize = 32768;

pub async fn run(sfn: &Sfn, action: Action, arn: &str, req: &Request) -> Result<Outcome, AwsError> {
    match action {
        Action::Retry => retry(sfn, arn, req).await,
        Action::Redrive => redrive(sfn, arn).await,
        Action::Stop => stop(sfn, arn, req).await,
    }
}

/// The same input on the same state machine, version or alias.
async fn retry(sfn: &Sfn, arn: &str, req: &Request) -> Result<Outcome, AwsError> {
    let e = sfn.describe_execution(arn).await?;
    let name = names::retry_name(&e.name, arn, &req.request_id);
    let (new_arn, result) = match sfn
        .start_execution(&e.started_from, &name, e.input.as_deref())
        .await
    {
        Ok(a) => (a, "started"),
        // The same request made before, and that execution has ended.
        Err(AwsError::AlreadyExists(m)) => (
            names::execution_arn_of(&e.state_machine_arn, &name)
                .ok_or(AwsError::AlreadyExists(m))?,
            "already_started",
        ),
        Err(other) => return Err(other),
    };
    Ok(Outcome {
        execution_arn: new_arn,
        action: "retry",
        result,
        source_execution_arn: Some(arn.to_owned()),
        redrive_count: None,
    })
}

/// From the point of failure, once: AWS's own eligibility first, then a
/// client token that is the same for every click on this failure.
async fn redrive(sfn: &Sfn, arn: &str) -> Result<Outcome, AwsError> {
    let e = sfn.describe_execution(arn).await?;
    if e.redrive_status.as_deref() != Some("REDRIVABLE") {
        let why = e.redrive_status_reason.clone().unwrap_or_else(|| {
            format!(
                "its status is {} and AWS reports redrive status {}",
                e.status,
                e.redrive_status.as_deref().unwrap_or("none")
            )
        });
        return Err(AwsError::NotRedrivable(why));
    }
    sfn.redrive_execution(arn, &names::redrive_token(arn, e.redrive_count))
        .await?;
    Ok(Outcome {
        execution_arn: arn.to_owned(),
        action: "redrive",
        result: "redriven",
        source_execution_arn: None,
        redrive_count: Some(e.redrive_count + 1),
    })
}

async fn stop(sfn: &Sfn, arn: &str, req: &Request) -> Result<Outcome, AwsError> {
    let error = req.error.as_deref().filter(|s| !s.is_empty());
    let cause = req.cause.as_deref().filter(|s| !s.is_empty());
    if error.is_some_and(|e| e.chars().count() > ERROR_MAX) {
        return Err(AwsError::Invalid(format!(
            "the error is longer than {ERROR_MAX} characters"
        )));
    }
    if cause.is_some_and(|c| c.chars().count() > CAUSE_MAX) {
        return Err(AwsError::Invalid(format!(
            "the cause is longer than {CAUSE_MAX} characters"
        )));
    }
    sfn.stop_execution(arn, error, cause).await?;
    Ok(Outcome {
        execution_arn: arn.to_owned(),
        action: "stop",
        result: "stopped",
        source_execution_arn: None,
        redrive_count: None,
    })
}
