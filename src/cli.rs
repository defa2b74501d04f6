//! The command line: `serve` (the default), `loadgen` and `backfill`. The top of the
//! stage order: it names every command, and no stage names it.

use crate::app::settings::ServeArgs;
use crate::backfill::BackfillArgs;
use crate::loadgen::LoadgenArgs;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "stepstitch",
    version,
    about = "Firehose HTTP endpoint that turns AWS Step Functions execution logs into traces, metrics and logs",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings of `serve`, the default command.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (the default when no command is given).
    Serve(Box<ServeArgs>),
    /// Load a running server with generated Firehose traffic and report
    /// throughput, acknowledgement latency and its peak memory.
    Loadgen(Box<LoadgenArgs>),
    /// Turn a state machine's past executions (GetExecutionHistory) into
    /// the same traces as live delivery: sent to a running server
    /// (--target) or through the pipeline in this process.
    Backfill(Box<BackfillArgs>),
}

/// What to run.
#[derive(Debug)]
pub enum Run {
    Serve(Box<ServeArgs>),
    Loadgen(Box<LoadgenArgs>),
    Backfill(Box<BackfillArgs>),
}

impl Cli {
    /// The command and its settings (`serve` when none is named).
    pub fn into_run(self) -> Run {
        match self.command {
            Some(Command::Serve(a)) => Run::Serve(a),
            Some(Command::Loadgen(l)) => Run::Loadgen(l),
            Some(Command::Backfill(b)) => Run::Backfill(b),
            None => Run::Serve(Box::new(self.serve)),
        }
    }

    /// The `serve` settings, whether or not `serve` was named.
    pub fn into_serve_args(self) -> Option<ServeArgs> {
        match self.into_run() {
            Run::Serve(a) => Some(*a),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::settings::Settings;

    fn parse(args: &[&str]) -> Result<Settings, String> {
        let mut v = vec!["stepstitch"];
        v.extend_from_slice(args);
        let cli = Cli::try_parse_from(v).map_err(|e| e.to_string())?;
        let args = cli
            .into_serve_args()
            .ok_or_else(|| "not the serve command".to_string())?;
        Settings::from_args(args).map_err(|e| e.to_string())
    }

    #[test]
    fn serve_subcommand_takes_the_same_flags() {
        let s = parse(&[
            "serve",
            "--listen",
            "127.0.0.1:1234",
            "--access-key",
            "a",
            "--access-key",
            "b",
        ])
        .unwrap();
        assert_eq!(s.firehose.listen.port(), 1234);
        assert_eq!(s.firehose.access_keys, vec!["a", "b"]);
    }

    #[test]
    fn loadgen_is_its_own_command() {
        let cli = Cli::try_parse_from([
            "stepstitch",
            "loadgen",
            "--target",
            "http://127.0.0.1:1/firehose",
        ])
        .unwrap();
        assert!(cli.into_serve_args().is_none());
    }
}
