//! Step Functions execution ARNs.
//!
//! - Standard: `arn:aws:states:<region>:<account>:execution:<stateMachine>:<name>`
//! - Express:  `arn:aws:states:<region>:<account>:express:<stateMachine>:<name>:<uuid>`
//! - Distributed Map child executions put `<stateMachine>/<mapState>:<mapRunId>`
//!   where the state machine name stands (both workflow types).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkflowType {
    Standard,
    Express,
}

/// The parts of an execution ARN, borrowed from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecutionArn<'a> {
    pub partition: &'a str,
    pub region: &'a str,
    pub account_id: &'a str,
    pub workflow_type: WorkflowType,
    pub state_machine_name: &'a str,
    pub execution_name: &'a str,
    /// Express executions carry a run uuid after the name.
    pub express_run_id: Option<&'a str>,
    /// Set for a Distributed Map child execution: (map state name, map run id).
    pub map_run: Option<(&'a str, &'a str)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Step Functions execution ARN ({0}): expected arn:aws:states:<region>:<account>:execution:<stateMachine>:<name>")]
pub struct ArnError(&'static str);

impl<'a> ExecutionArn<'a> {
    pub fn parse(arn: &'a str) -> Result<Self, ArnError> {
        let mut it = arn.splitn(6, ':');
        let (
            Some("arn"),
            Some(partition),
            Some("states"),
            Some(region),
            Some(account_id),
            Some(rest),
        ) = (
            it.next(),
            it.next(),
            it.next(),
            it.next(),
            it.next(),
            it.next(),
        )
        else {
            return Err(ArnError("prefix"));
        };
        if partition.is_empty() || region.is_empty() || account_id.is_empty() {
            return Err(ArnError("empty partition, region or account"));
        }
        let (workflow_type, rest) = if let Some(r) = rest.strip_prefix("execution:") {
            (WorkflowType::Standard, r)
        } else if let Some(r) = rest.strip_prefix("express:") {
            (WorkflowType::Express, r)
        } else {
            return Err(ArnError("resource type is neither execution nor express"));
        };
        let mut parts = rest.split(':');
        let machine = parts.next().unwrap_or_default();
        let (state_machine_name, map_run) = match machine.split_once('/') {
            Some((sm, map_state)) => {
                let run = parts.next().ok_or(ArnError("map run id missing"))?;
                (sm, Some((map_state, run)))
            }
            None => (machine, None),
        };
        let execution_name = parts.next().ok_or(ArnError("execution name missing"))?;
        let express_run_id = match workflow_type {
            WorkflowType::Express => Some(parts.next().ok_or(ArnError("express run id missing"))?),
            WorkflowType::Standard => None,
        };
        if parts.next().is_some() {
            return Err(ArnError("too many parts"));
        }
        if state_machine_name.is_empty() || execution_name.is_empty() {
            return Err(ArnError("empty state machine or execution name"));
        }
        Ok(Self {
            partition,
            region,
            account_id,
            workflow_type,
            state_machine_name,
            execution_name,
            express_run_id,
            map_run,
        })
    }

    /// The ARN of the state machine this execution belongs to.
    pub fn state_machine_arn(&self) -> String {
        format!(
            "arn:{}:states:{}:{}:stateMachine:{}",
            self.partition, self.region, self.account_id, self.state_machine_name
        )
    }
}

/// A Distributed Map run ARN,
/// `arn:<partition>:states:<region>:<account>:mapRun:<stateMachine>/<mapState>:<runId>`:
/// returns (region, account, `<stateMachine>/<mapState>:<runId>`).
pub fn parse_map_run_arn(arn: &str) -> Option<(&str, &str, &str)> {
    let mut it = arn.splitn(7, ':');
    match (
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
    ) {
        (
            Some("arn"),
            Some(_),
            Some("states"),
            Some(region),
            Some(account),
            Some("mapRun"),
            Some(rest),
        ) if rest.contains('/') => Some((region, account, rest)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard() {
        let a = ExecutionArn::parse(
            "arn:aws:states:eu-west-1:418295736021:execution:ActivityTask:1dc106d6-ddf0-4190-b402-a2f9e7a419eb",
        )
        .unwrap();
        assert_eq!(a.region, "eu-west-1");
        assert_eq!(a.account_id, "418295736021");
        assert_eq!(a.workflow_type, WorkflowType::Standard);
        assert_eq!(a.state_machine_name, "ActivityTask");
        assert_eq!(a.execution_name, "1dc106d6-ddf0-4190-b402-a2f9e7a419eb");
        assert_eq!(a.express_run_id, None);
        assert_eq!(
            a.state_machine_arn(),
            "arn:aws:states:eu-west-1:418295736021:stateMachine:ActivityTask"
        );
    }

    #[test]
    fn express() {
        let a = ExecutionArn::parse("arn:aws:states:sa-east-1:425362996713:express:logs-to-traces-sequential:85a9933e-9e11-83dc-6a61-b92367b6c3be:3f7ef5c7-c8b8-4c88-90a1-d54aa7e7e2bf").unwrap();
        assert_eq!(a.workflow_type, WorkflowType::Express);
        assert_eq!(a.state_machine_name, "logs-to-traces-sequential");
        assert_eq!(a.execution_name, "85a9933e-9e11-83dc-6a61-b92367b6c3be");
        assert_eq!(
            a.express_run_id,
            Some("3f7ef5c7-c8b8-4c88-90a1-d54aa7e7e2bf")
        );
    }

    #[test]
    fn map_run_child() {
        let a = ExecutionArn::parse(
            "arn:aws:states:us-east-1:123456789012:execution:Outer/MapState:0b4c1f2e:child-7",
        )
        .unwrap();
        assert_eq!(a.state_machine_name, "Outer");
        assert_eq!(a.map_run, Some(("MapState", "0b4c1f2e")));
        assert_eq!(a.execution_name, "child-7");
    }

    #[test]
    fn map_run_arns() {
        assert_eq!(
            parse_map_run_arn("arn:aws:states:eu-west-1:418295736021:mapRun:Outer/MapState:2bc1"),
            Some(("eu-west-1", "418295736021", "Outer/MapState:2bc1"))
        );
        assert_eq!(
            parse_map_run_arn("arn:aws:states:eu-west-1:1:execution:Outer:x"),
            None
        );
    }

    #[test]
    fn rejects_other_arns() {
        for bad in [
            "",
            "arn:aws:states:us-east-1:1:stateMachine:Sm",
            "arn:aws:lambda:us-east-1:1:function:f",
            "arn:aws:states:us-east-1:1:execution:Sm",
            "arn:aws:states:us-east-1:1:express:Sm:name",
            "arn:aws:states:us-east-1:1:execution:Sm:name:extra",
            "arn:aws:states::1:execution:Sm:name",
        ] {
            assert!(ExecutionArn::parse(bad).is_err(), "{bad}");
        }
    }
}
