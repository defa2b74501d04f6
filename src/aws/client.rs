//! The Step Functions client: the AWS SDK for Rust on the standard
//! credential chain, its HTTPS on rustls + ring (no C build), the SDK's
//! retries for throttling, and our own call budget in front. Thin: each
//! call maps the SDK's output to a domain type and its error to `AwsError`.

use super::budget::Budget;
use super::errors::{classify, AwsError, Call};
use crate::telemetry::names;
use aws_sdk_sfn::config::interceptors::AfterDeserializationInterceptorContextRef;
use aws_sdk_sfn::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sfn::error::{BoxError, DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sfn::types::ExecutionStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What DescribeExecution says of an execution.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionInfo {
    pub execution_arn: String,
    pub name: String,
    /// The state machine, version or alias it ran: a retry starts the same.
    pub started_from: String,
    pub state_machine_arn: String,
    pub status: String,
    pub input: Option<String>,
    pub redrive_status: Option<String>,
    pub redrive_status_reason: Option<String>,
    pub redrive_count: i32,
}

/// A state machine's definition as AWS has it.
#[derive(Debug, Clone, PartialEq)]
pub struct DefinitionInfo {
    pub state_machine_arn: String,
    pub definition: String,
    /// The revision (or update time when there is none): the cache key.
    pub revision: String,
    /// STANDARD or EXPRESS (DescribeStateMachine only).
    pub workflow_type: Option<String>,
}

/// One page of ListExecutions.
#[derive(Debug, Clone)]
pub struct ListedExecution {
    pub execution_arn: String,
    pub status: String,
    pub start_ms: i64,
}

pub struct Sfn {
    client: aws_sdk_sfn::Client,
    budget: Mutex<Budget>,
    pub region: String,
}

impl std::fmt::Debug for Sfn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sfn").field("region", &self.region).finish()
    }
}

/// How long an interactive call may wait for the budget before it answers
/// "try again"; the backfill waits as long as it takes.
pub const INTERACTIVE_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no AWS region: set AWS_REGION (or a profile's region) for STEPSTITCH_AWS")]
    NoRegion,
}

impl Sfn {
    /// From the standard chain: region, credentials (environment, web
    /// identity, container or instance profile), `AWS_ENDPOINT_URL_SFN`.
    /// Credentials are resolved on the first call, not here.
    pub async fn from_env(calls_per_second: f64) -> Result<Sfn, ClientError> {
        let https = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(https)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(4))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(10))
                    .operation_timeout(Duration::from_secs(30))
                    .build(),
            )
            .load()
            .await;
        let region = shared.region().ok_or(ClientError::NoRegion)?.to_string();
        Ok(Sfn {
            client: aws_sdk_sfn::Client::new(&shared),
            // A burst of a few calls (a user's clicks), then the rate.
            budget: Mutex::new(Budget::new(
                calls_per_second,
                calls_per_second.max(3.0),
                Instant::now(),
            )),
            region,
        })
    }

    /// A token of the budget, waiting at most `wait` for one.
    async fn permit(&self, call: Call, wait: Duration) -> Result<(), AwsError> {
        // `None`: wait as long as it takes (Duration::MAX).
        let deadline = tokio::time::Instant::now().checked_add(wait);
        loop {
            let r = self.budget.lock().unwrap().take(Instant::now());
            match r {
                Ok(()) => return Ok(()),
                Err(next) if deadline.is_none_or(|d| tokio::time::Instant::now() + next <= d) => {
                    tokio::time::sleep(next).await
                }
                Err(next) => {
                    count(call, "budget");
                    return Err(AwsError::Budget(next));
                }
            }
        }
    }

    pub async fn describe_execution(&self, arn: &str) -> Result<ExecutionInfo, AwsError> {
        let call = Call::DescribeExecution;
        self.permit(call, INTERACTIVE_WAIT).await?;
        let o = done(
            call,
            self.client
                .describe_execution()
                .execution_arn(arn)
                .send()
                .await,
        )?;
        Ok(ExecutionInfo {
            execution_arn: o.execution_arn().to_owned(),
            name: o.name().unwrap_or_default().to_owned(),
            started_from: o
                .state_machine_alias_arn()
                .or(o.state_machine_version_arn())
                .unwrap_or(o.state_machine_arn())
                .to_owned(),
            state_machine_arn: o.state_machine_arn().to_owned(),
            status: o.status().as_str().to_owned(),
            input: o.input().map(str::to_owned),
            redrive_status: o.redrive_status().map(|s| s.as_str().to_owned()),
            redrive_status_reason: o.redrive_status_reason().map(str::to_owned),
            redrive_count: o.redrive_count().unwrap_or(0),
        })
    }

    /// StartExecution; the new execution's ARN.
    pub async fn start_execution(
        &self,
        state_machine: &str,
        name: &str,
        input: Option<&str>,
    ) -> Result<String, AwsError> {
        let call = Call::StartExecution;
        self.permit(call, INTERACTIVE_WAIT).await?;
        let o = done(
            call,
            self.client
                .start_execution()
                .state_machine_arn(state_machine)
                .name(name)
                .set_input(input.map(str::to_owned))
                .send()
                .await,
        )?;
        Ok(o.execution_arn().to_owned())
    }

    /// RedriveExecution; the redrive's time (epoch ms).
    pub async fn redrive_execution(&self, arn: &str, client_token: &str) -> Result<i64, AwsError> {
        let call = Call::RedriveExecution;
        self.permit(call, INTERACTIVE_WAIT).await?;
        let o = done(
            call,
            self.client
                .redrive_execution()
                .execution_arn(arn)
                .client_token(client_token)
                .send()
                .await,
        )?;
        Ok(o.redrive_date().to_millis().unwrap_or_default())
    }

    /// StopExecution; the stop time (epoch ms).
    pub async fn stop_execution(
        &self,
        arn: &str,
        error: Option<&str>,
        cause: Option<&str>,
    ) -> Result<i64, AwsError> {
        let call = Call::StopExecution;
        self.permit(call, INTERACTIVE_WAIT).await?;
        let o = done(
            call,
            self.client
                .stop_execution()
                .execution_arn(arn)
                .set_error(error.map(str::to_owned))
                .set_cause(cause.map(str::to_owned))
                .send()
                .await,
        )?;
        Ok(o.stop_date().to_millis().unwrap_or_default())
    }

    /// The definition an execution ran (its version's, for a version).
    pub async fn definition_for_execution(&self, arn: &str) -> Result<DefinitionInfo, AwsError> {
        let call = Call::DescribeStateMachineForExecution;
        self.permit(call, INTERACTIVE_WAIT).await?;
        let o = done(
            call,
            self.client
                .describe_state_machine_for_execution()
                .execution_arn(arn)
                .send()
                .await,
        )?;
        Ok(DefinitionInfo {
            state_machine_arn: o.state_machine_arn().to_owned(),
            definition: o.definition().to_owned(),
            revision: o
                .revision_id()
                .map(str::to_owned)
                .unwrap_or_else(|| o.update_date().to_millis().unwrap_or_default().to_string()),
            workflow_type: None,
        })
    }

    /// A state machine's current definition.
    pub async fn definition_of(&self, state_machine: &str) -> Result<DefinitionInfo, AwsError> {
        let call = Call::DescribeStateMachine;
        self.permit(call, INTERACTIVE_WAIT).await?;
        let o = done(
            call,
            self.client
                .describe_state_machine()
                .state_machine_arn(state_machine)
                .send()
                .await,
        )?;
        Ok(DefinitionInfo {
            state_machine_arn: o.state_machine_arn().to_owned(),
            definition: o.definition().to_owned(),
            revision: o.revision_id().map(str::to_owned).unwrap_or_else(|| {
                o.creation_date()
                    .to_millis()
                    .unwrap_or_default()
                    .to_string()
            }),
            workflow_type: Some(o.r#type().as_str().to_owned()),
        })
    }

    /// One page of a state machine's executions, newest first.
    pub async fn list_executions(
        &self,
        state_machine: &str,
        status: Option<&str>,
        next_token: Option<String>,
    ) -> Result<(Vec<ListedExecution>, Option<String>), AwsError> {
        let call = Call::ListExecutions;
        self.permit(call, Duration::MAX).await?;
        let o = done(
            call,
            self.client
                .list_executions()
                .state_machine_arn(state_machine)
                .set_status_filter(status.map(ExecutionStatus::from))
                .max_results(1000)
                .set_next_token(next_token)
                .send()
                .await,
        )?;
        let items = o
            .executions()
            .iter()
            .map(|e| ListedExecution {
                execution_arn: e.execution_arn().to_owned(),
                status: e.status().as_str().to_owned(),
                start_ms: e.start_date().to_millis().unwrap_or_default(),
            })
            .collect();
        Ok((items, o.next_token().map(str::to_owned)))
    }

    /// One page of an execution's history with its data, as the JSON text
    /// AWS sent: the backfill reads it with the same readers as fixtures
    /// and writes it back as log lines, so no field is lost in a mapping.
    pub async fn history_page(
        &self,
        arn: &str,
        next_token: Option<String>,
    ) -> Result<(String, Option<String>), AwsError> {
        let call = Call::GetExecutionHistory;
        self.permit(call, Duration::MAX).await?;
        let raw = RawBody::default();
        let o = done(
            call,
            self.client
                .get_execution_history()
                .execution_arn(arn)
                .include_execution_data(true)
                .max_results(1000)
                .set_next_token(next_token)
                .customize()
                .interceptor(raw.clone())
                .send()
                .await,
        )?;
        let body = raw
            .0
            .lock()
            .unwrap()
            .take()
            .ok_or_else(|| AwsError::Unavailable("history response without a body".into()))?;
        let text = String::from_utf8(body)
            .map_err(|_| AwsError::Unavailable("history response is not UTF-8".into()))?;
        Ok((text, o.next_token().map(str::to_owned)))
    }
}

/// Keeps a copy of a response's body (read after the SDK has buffered it).
#[derive(Debug, Clone, Default)]
struct RawBody(Arc<Mutex<Option<Vec<u8>>>>);

impl Intercept for RawBody {
    fn name(&self) -> &'static str {
        "stepstitch-raw-body"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(b) = context.response().body().bytes() {
            *self.0.lock().unwrap() = Some(b.to_vec());
        }
        Ok(())
    }
}

fn count(call: Call, outcome: &'static str) {
    metrics::counter!(names::AWS_CALLS, "call" => call.name(), "outcome" => outcome).increment(1);
}

/// The SDK's result as ours, counted.
fn done<T, E>(call: Call, r: Result<T, SdkError<E>>) -> Result<T, AwsError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let e = match r {
        Ok(v) => {
            count(call, "ok");
            return Ok(v);
        }
        Err(e) => e,
    };
    let err = match &e {
        SdkError::ServiceError(se) => classify(
            call,
            se.err().code().unwrap_or("Unknown"),
            se.err().message().unwrap_or_default(),
        ),
        // No response: network, timeouts, or no credentials found.
        _ => classify(call, "", &DisplayErrorContext(&e).to_string()),
    };
    count(call, err.outcome());
    tracing::warn!(call = call.name(), outcome = err.outcome(), error = %err, "AWS call failed");
    Err(err)
}
