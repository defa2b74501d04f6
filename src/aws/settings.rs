//! The AWS side's settings: which calls stepstitch may make, and how many
//! per second. The credentials, region and endpoint come from the AWS
//! SDK's standard chain (`AWS_REGION`, `AWS_ENDPOINT_URL_SFN`, ...).

use crate::setting_id as id;
use crate::settings::{Check, ConfigError};

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "AWS (actions and definitions)")]
pub struct AwsArgs {
    /// Calls to the Step Functions API: off, read (definitions for the map), or actions (also retry, redrive and stop).
    #[arg(long, env = "STEPSTITCH_AWS", default_value = "off")]
    pub aws: String,
    /// Step Functions API calls per second at most, all kinds together (the API's quotas are low).
    #[arg(long, env = "STEPSTITCH_AWS_CALLS_PER_SECOND", default_value = "2")]
    pub aws_calls_per_second: String,
}

/// What the service may ask AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AwsMode {
    Off,
    /// Describe calls only (definitions).
    Read,
    /// Reads plus StartExecution, RedriveExecution, StopExecution.
    Actions,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AwsSettings {
    pub mode: AwsMode,
    pub calls_per_second: f64,
}

impl AwsArgs {
    pub fn validate(self) -> Result<AwsSettings, ConfigError> {
        type C = Check<AwsArgs>;
        let mode = match C::one_of(id!(aws), &self.aws, &["off", "read", "actions"], "actions")? {
            0 => AwsMode::Off,
            1 => AwsMode::Read,
            _ => AwsMode::Actions,
        };
        let v = self.aws_calls_per_second.trim();
        let calls_per_second = match v.parse::<f64>() {
            Ok(n) if n.is_finite() && n > 0.0 && n <= 1000.0 => n,
            _ => {
                return Err(C::error(
                    id!(aws_calls_per_second),
                    v,
                    "must be a number above 0 and at most 1000",
                    "2",
                ))
            }
        };
        Ok(AwsSettings {
            mode,
            calls_per_second,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(aws: &str, rate: &str) -> AwsArgs {
        AwsArgs {
            aws: aws.into(),
            aws_calls_per_second: rate.into(),
        }
    }

    #[test]
    fn modes_and_rates() {
        assert_eq!(args("off", "2").validate().unwrap().mode, AwsMode::Off);
        assert_eq!(args("READ", "2").validate().unwrap().mode, AwsMode::Read);
        let s = args("actions", "0.5").validate().unwrap();
        assert_eq!((s.mode, s.calls_per_second), (AwsMode::Actions, 0.5));
        let e = args("write", "2").validate().unwrap_err().to_string();
        assert!(
            e.contains("STEPSTITCH_AWS") && e.contains("off, read or actions"),
            "{e}"
        );
        for bad in ["0", "-1", "x", "NaN"] {
            let e = args("off", bad).validate().unwrap_err().to_string();
            assert!(e.contains("STEPSTITCH_AWS_CALLS_PER_SECOND"), "{e}");
        }
    }
}
