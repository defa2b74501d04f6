//! The command line: `serve` (the default) and `loadgen`. The top of the
//! stage order: it names every command, and no stage names it.

use crate::app::settings::ServeArgs;
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
}

impl Cli {
    /// The `serve` settings, whether or not `serve` was named; `Err` with
    /// the load generator's settings for `loadgen`.
    pub fn into_serve_args(self) -> Result<ServeArgs, Box<LoadgenArgs>> {
        match self.command {
            Some(Command::Serve(a)) => Ok(*a),
            Some(Command::Loadgen(l)) => Err(l),
            None => Ok(self.serve),
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
            .map_err(|_| "not the serve command".to_string())?;
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
        assert!(cli.into_serve_args().is_err());
    }
}
