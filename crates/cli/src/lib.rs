//! wrangle's command line.
//!
//! Every command is a call to the daemon's HTTP API over its Unix socket, so
//! the CLI knows of wrangle only what any other client could know; it never
//! links the engine. When no daemon answers, the CLI starts one in the
//! background and waits for it. User input is checked with the same parsers
//! the daemon uses (`wrangle_wire::parse`), so a typo fails at once and with
//! the daemon's own words.

#![warn(missing_docs)]

mod args;
mod autostart;
mod client;
mod commands;
mod declaration;
mod follow;
mod format;
mod home;
mod lines;
mod output;
mod routes;
mod table;

use anyhow::Context;
use args::{Cli, Command, DaemonArgs};
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Options the daemon is started with in the foreground.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonOptions {
    /// The wrangle home, as an absolute path. The CLI has created it (mode
    /// 0700, and set to 0700 if it existed and is ours); whether a home
    /// owned by someone else is acceptable is the daemon's call. The socket
    /// is `<home>/wrangle.sock`.
    pub home: PathBuf,
    /// Most agents that may run at once (`--max-running`).
    pub max_running: Option<u32>,
    /// The sampler's tick (`--sample-interval`).
    pub sample_interval: Option<std::time::Duration>,
    /// How long events are kept (`--events-keep`).
    pub events_keep: Option<std::time::Duration>,
    /// Most events kept (`--events-max`).
    pub events_max: Option<u64>,
    /// Most agents with series of their own on `/metrics`
    /// (`--metrics-agents-max`).
    pub metrics_agents_max: Option<usize>,
    /// Most bytes all runs' logs may take (`--logs-max-total`).
    pub logs_max_total: Option<u64>,
}

/// Runs the CLI with the process's arguments; `serve` runs a daemon in this
/// process (used by `wrangle daemon --foreground`).
pub fn main(serve: fn(DaemonOptions) -> anyhow::Result<()>) -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return output::usage_error(&error),
    };
    match run(cli, serve) {
        Ok(code) => ExitCode::from(code),
        Err(error) => output::report(&error),
    }
}

/// Runs one parsed command line and returns the exit code.
fn run(cli: Cli, serve: fn(DaemonOptions) -> anyhow::Result<()>) -> anyhow::Result<u8> {
    let home = home::resolve(cli.home)?;
    match cli.command {
        // The daemon runs its own runtime, so it must not be started from
        // inside the CLI's.
        Command::Daemon(DaemonArgs {
            foreground: true,
            max_running,
            sample_interval,
            events_keep,
            events_max,
            metrics_agents_max,
            logs_max_total,
            ..
        }) => {
            // Checked by clap already, with the same parsers.
            let sample_interval = sample_interval
                .as_deref()
                .map(wrangle_wire::parse::parse_sample_interval)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let events_keep = events_keep
                .as_deref()
                .map(wrangle_wire::parse::parse_positive_duration)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let logs_max_total = logs_max_total
                .as_deref()
                .map(wrangle_wire::parse::parse_size)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            run_foreground(
                DaemonOptions {
                    home,
                    max_running,
                    sample_interval,
                    events_keep,
                    events_max,
                    metrics_agents_max,
                    logs_max_total,
                },
                serve,
            )
        }
        command => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(commands::dispatch(&home, command))
        }
    }
}

/// `wrangle daemon --foreground`: prepares the home and serves until the
/// daemon is stopped.
fn run_foreground(
    options: DaemonOptions,
    serve: fn(DaemonOptions) -> anyhow::Result<()>,
) -> anyhow::Result<u8> {
    home::ensure(&options.home)?;
    serve(options)?;
    Ok(0)
}

/// How this crate's property tests run (see
/// [`wrangle_wire::testing::proptest_config`]).
#[cfg(test)]
pub(crate) fn proptest_config() -> proptest::test_runner::Config {
    wrangle_wire::testing::proptest_config()
}
