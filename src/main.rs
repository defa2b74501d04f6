//! The `stepstitch` binary: parse settings, start logging, run the app.

use clap::Parser;

// glibc's malloc and free were about 30% of the pipeline's profile
// (BENCHMARKS.md); mimalloc took end-to-end throughput up by about a quarter.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;
use stepstitch::app::settings::Settings;
use stepstitch::cli::{Cli, Run};

fn main() -> ExitCode {
    stepstitch::disable_huge_pages();
    let args = match Cli::parse().into_run() {
        Run::Serve(a) => *a,
        Run::Loadgen(l) => return run_loadgen(*l),
        Run::Backfill(b) => return run_backfill(*b),
    };
    let settings = match Settings::from_args(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stepstitch: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = stepstitch::telemetry::init_logging(settings.log.format, &settings.log.filter) {
        eprintln!("stepstitch: cannot start logging: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stepstitch: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(stepstitch::app::run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "stepstitch stopped on an error");
            eprintln!("stepstitch: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_loadgen(args: stepstitch::loadgen::LoadgenArgs) -> ExitCode {
    let json = args.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stepstitch loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(stepstitch::loadgen::run(args)) {
        Ok(r) if json => {
            println!("{}", serde_json::to_string(&r).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(r) => {
            println!("{r}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stepstitch loadgen: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_backfill(args: stepstitch::backfill::BackfillArgs) -> ExitCode {
    // Warnings and errors of the pipeline (in-process mode) on stderr; the
    // progress and the summary are the command's own output.
    let _ = stepstitch::telemetry::init_logging(stepstitch::telemetry::LogFormat::Text, "warn");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stepstitch backfill: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(stepstitch::backfill::run(args)) {
        Ok(summary) => {
            println!("{summary}");
            if summary.counts.failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("stepstitch backfill: {e}");
            ExitCode::from(2)
        }
    }
}
