//! `stepstitch backfill`'s settings (spec/interfaces.md "AWS access").

use crate::app::settings::ServeArgs;
use crate::setting_id as id;
use crate::settings::Check;
use crate::settings::ConfigError;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct BackfillArgs {
    /// The state machine whose past executions to read (its ARN).
    #[arg(long)]
    pub state_machine: String,
    /// How far back: executions started within this long (e.g. 24h, 7d).
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Only executions with this status (RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE).
    #[arg(long)]
    pub status: Option<String>,
    /// A running server's Firehose endpoint (http://host:port/firehose); without it the pipeline runs in this process with the serve settings below.
    #[arg(long)]
    pub target: Option<String>,
    /// A common attribute of the live delivery stream (service=..., env=...), so backfilled spans carry the same tags; repeat it.
    #[arg(long = "attribute", value_name = "KEY=VALUE")]
    pub attributes: Vec<String>,
    /// The serve settings: exporters, store, access keys (`--access-key` is also the key sent to --target).
    #[command(flatten)]
    pub serve: ServeArgs,
}

pub const STATUSES: &[&str] = &[
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "TIMED_OUT",
    "ABORTED",
    "PENDING_REDRIVE",
];

#[derive(Debug, Clone)]
pub struct BackfillSettings {
    pub state_machine: String,
    pub since: Duration,
    pub status: Option<String>,
    pub target: Option<String>,
    pub attributes: Vec<(String, String)>,
}

impl BackfillArgs {
    /// The backfill's own settings; the serve settings are checked by the
    /// app when it runs in this process.
    pub fn validate(&self) -> Result<BackfillSettings, ConfigError> {
        type C = Check<BackfillArgs>;
        let sm = self.state_machine.trim();
        if !sm.starts_with("arn:") || !sm.contains(":states:") || !sm.contains(":stateMachine:") {
            return Err(C::error(
                id!(state_machine),
                sm,
                "must be a state machine ARN",
                "arn:aws:states:us-east-1:123456789012:stateMachine:Orders",
            ));
        }
        let since = C::positive_duration(id!(since), &self.since, "24h")?;
        let status = match &self.status {
            None => None,
            Some(s) => {
                let up = s.trim().to_ascii_uppercase();
                if !STATUSES.contains(&up.as_str()) {
                    return Err(C::error(
                        id!(status),
                        s,
                        format!("must be one of {}", STATUSES.join(", ")),
                        "FAILED",
                    ));
                }
                Some(up)
            }
        };
        let target = C::opt_url(
            id!(target),
            self.target.clone(),
            &["http", "https"],
            "http://127.0.0.1:8080/firehose",
        )?;
        let mut attributes = Vec::new();
        for a in &self.attributes {
            match a.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => {
                    attributes.push((k.trim().to_owned(), v.to_owned()))
                }
                _ => {
                    return Err(C::error(
                        id!(attributes),
                        a,
                        "must be KEY=VALUE",
                        "service=orders",
                    ))
                }
            }
        }
        Ok(BackfillSettings {
            state_machine: sm.to_owned(),
            since,
            status,
            target,
            attributes,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Run};
    use clap::Parser;

    fn parse(extra: &[&str]) -> Result<super::BackfillSettings, String> {
        let mut v = vec![
            "stepstitch",
            "backfill",
            "--state-machine",
            "arn:aws:states:us-east-1:1:stateMachine:Orders",
        ];
        v.extend_from_slice(extra);
        match Cli::try_parse_from(v)
            .map_err(|e| e.to_string())?
            .into_run()
        {
            Run::Backfill(b) => b.validate().map_err(|e| e.to_string()),
            _ => Err("not backfill".into()),
        }
    }

    #[test]
    fn the_contract_flags_and_their_checks() {
        let s = parse(&[
            "--since",
            "7d",
            "--status",
            "failed",
            "--target",
            "http://127.0.0.1:8080/firehose",
            "--access-key",
            "k",
            "--attribute",
            "service=orders",
        ])
        .unwrap();
        assert_eq!(s.since, std::time::Duration::from_secs(7 * 86400));
        assert_eq!(s.status.as_deref(), Some("FAILED"));
        assert_eq!(s.target.as_deref(), Some("http://127.0.0.1:8080/firehose"));
        assert_eq!(s.attributes, vec![("service".into(), "orders".into())]);
        let d = parse(&[]).unwrap();
        assert_eq!(d.since, std::time::Duration::from_secs(86400));
        assert!(d.target.is_none() && d.status.is_none());
        for (bad, names) in [
            (vec!["--status", "DONE"], "FAILED"),
            (vec!["--since", "soon"], "since"),
            (vec!["--target", "ftp://x"], "target"),
            (vec!["--attribute", "novalue"], "KEY=VALUE"),
        ] {
            let e = parse(&bad).unwrap_err();
            assert!(e.contains(names), "{bad:?}: {e}");
        }
        let e = match Cli::try_parse_from([
            "stepstitch",
            "backfill",
            "--state-machine",
            "arn:aws:states:us-east-1:1:execution:Orders:x",
        ])
        .unwrap()
        .into_run()
        {
            Run::Backfill(b) => b.validate().unwrap_err().to_string(),
            _ => unreachable!(),
        };
        assert!(e.contains("state machine ARN"), "{e}");
    }
}
