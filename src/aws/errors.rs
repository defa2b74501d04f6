//! AWS errors as messages a person can act on: which IAM action is
//! missing, why an execution cannot be redriven, when to try again. Pure:
//! the client hands over the error code and message AWS returned.

use std::time::Duration;

/// The Step Functions API calls stepstitch makes (label of metrics and
/// audit lines; each names its IAM action).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    DescribeExecution,
    StartExecution,
    RedriveExecution,
    StopExecution,
    DescribeStateMachineForExecution,
    DescribeStateMachine,
    ListExecutions,
    GetExecutionHistory,
}

impl Call {
    pub fn name(self) -> &'static str {
        match self {
            Call::DescribeExecution => "DescribeExecution",
            Call::StartExecution => "StartExecution",
            Call::RedriveExecution => "RedriveExecution",
            Call::StopExecution => "StopExecution",
            Call::DescribeStateMachineForExecution => "DescribeStateMachineForExecution",
            Call::DescribeStateMachine => "DescribeStateMachine",
            Call::ListExecutions => "ListExecutions",
            Call::GetExecutionHistory => "GetExecutionHistory",
        }
    }

    /// The IAM action the call needs (`states:<Call>` for every one).
    pub fn iam_action(self) -> String {
        format!("states:{}", self.name())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AwsError {
    #[error("AWS denied {action}: add {action} to stepstitch's IAM role for this state machine (docs/aws.md lists each feature's actions). AWS said: {message}")]
    Denied { action: String, message: String },
    #[error("AWS did not accept stepstitch's credentials ({code}): check the role or keys it runs with (docs/aws.md). AWS said: {message}")]
    Credentials { code: String, message: String },
    #[error("not found in AWS: {0}")]
    NotFound(String),
    #[error("this execution cannot be redriven: {0}")]
    NotRedrivable(String),
    #[error("Express state machines keep no execution history in Step Functions, so there is nothing to read back ({0}); their executions reach stepstitch through their logs only")]
    Express(String),
    #[error("an execution with this name exists already: {0}")]
    AlreadyExists(String),
    #[error("AWS refused the request as invalid: {0}")]
    Invalid(String),
    #[error("the Step Functions API is throttling stepstitch's calls ({call}); try again in a few seconds")]
    Throttled { call: &'static str },
    #[error("stepstitch's own budget of AWS calls is spent (STEPSTITCH_AWS_CALLS_PER_SECOND); try again in {:.1} s", .0.as_secs_f64())]
    Budget(Duration),
    #[error("AWS calls are off: set STEPSTITCH_AWS={needed} to allow {call}")]
    Off {
        call: &'static str,
        needed: &'static str,
    },
    #[error("cannot reach the Step Functions API: {0}")]
    Unavailable(String),
    #[error("AWS error {code}: {message}")]
    Other { code: String, message: String },
}

impl AwsError {
    /// Low-cardinality label for metrics and audit lines.
    pub fn outcome(&self) -> &'static str {
        match self {
            AwsError::Denied { .. } | AwsError::Credentials { .. } => "denied",
            AwsError::NotFound(_) => "not_found",
            AwsError::NotRedrivable(_) => "not_redrivable",
            AwsError::AlreadyExists(_) => "already_exists",
            AwsError::Invalid(_) | AwsError::Express(_) => "invalid",
            AwsError::Throttled { .. } | AwsError::Budget(_) => "throttled",
            AwsError::Off { .. } => "off",
            AwsError::Unavailable(_) => "unavailable",
            AwsError::Other { .. } => "error",
        }
    }
}

/// An error response of `call`: its code (`AccessDeniedException`, ...)
/// and message.
pub fn classify(call: Call, code: &str, message: &str) -> AwsError {
    let message = message.to_owned();
    match code {
        "AccessDeniedException" | "AccessDenied" => AwsError::Denied {
            action: call.iam_action(),
            message,
        },
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "InvalidClientTokenId"
        | "MissingAuthenticationToken" => AwsError::Credentials {
            code: code.to_owned(),
            message,
        },
        "ExecutionDoesNotExist" | "StateMachineDoesNotExist" | "ResourceNotFound" => {
            AwsError::NotFound(message)
        }
        "ExecutionNotRedrivable" => AwsError::NotRedrivable(message),
        "ExecutionAlreadyExists" => AwsError::AlreadyExists(message),
        "StateMachineTypeNotSupported" => AwsError::Express(message),
        "InvalidArn"
        | "InvalidName"
        | "InvalidExecutionInput"
        | "InvalidToken"
        | "ValidationException"
        | "StateMachineDeleting"
        | "ExecutionLimitExceeded" => AwsError::Invalid(format!("{code}: {message}")),
        "ThrottlingException" | "TooManyRequestsException" | "RequestLimitExceeded" => {
            AwsError::Throttled { call: call.name() }
        }
        "" => AwsError::Unavailable(message),
        _ => AwsError::Other {
            code: code.to_owned(),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_denied_names_the_missing_action() {
        let e = classify(
            Call::RedriveExecution,
            "AccessDeniedException",
            "User: arn:aws:sts::1:assumed-role/r/s is not authorized to perform: states:RedriveExecution",
        );
        assert_eq!(e.outcome(), "denied");
        let m = e.to_string();
        assert!(
            m.contains("add states:RedriveExecution to stepstitch's IAM role"),
            "{m}"
        );
    }

    #[test]
    fn every_code_lands_somewhere_sensible() {
        let c = Call::StartExecution;
        assert_eq!(
            classify(c, "ExecutionDoesNotExist", "x").outcome(),
            "not_found"
        );
        assert_eq!(
            classify(c, "ExecutionNotRedrivable", "x").outcome(),
            "not_redrivable"
        );
        assert_eq!(
            classify(c, "ExecutionAlreadyExists", "x").outcome(),
            "already_exists"
        );
        assert_eq!(classify(c, "InvalidArn", "x").outcome(), "invalid");
        assert_eq!(
            classify(c, "ThrottlingException", "x").outcome(),
            "throttled"
        );
        assert_eq!(
            classify(c, "ExpiredTokenException", "x").outcome(),
            "denied"
        );
        assert_eq!(
            classify(c, "", "connection refused").outcome(),
            "unavailable"
        );
        let other = classify(c, "Weird", "odd");
        assert_eq!(other.to_string(), "AWS error Weird: odd");
        assert!(AwsError::Budget(Duration::from_millis(1500))
            .to_string()
            .contains("1.5 s"));
    }
}
