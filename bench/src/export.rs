//! The agent of the telemetry benchmark: this binary run through a
//! symlink named `claude`, so that wrangle (`--telemetry auto`) takes it
//! for Claude Code and sets its OTel environment, as it would the real
//! CLI's. It then does what Claude Code's exporter does when a model call
//! completes, once a second: `POST /v1/logs` with one
//! `claude_code.api_request` record (see [`crate::otlp`]) to
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, with the headers of
//! `OTEL_EXPORTER_OTLP_HEADERS` and the resource of
//! `OTEL_RESOURCE_ATTRIBUTES`, on one kept-alive connection.
//!
//! It prints nothing on stdout (the adapter reads no session from it: the
//! telemetry is all there is to count) and, at its end, a [`Summary`] on
//! stderr; it exits 1 when any answer was not 200. Without an endpoint in
//! its environment (`--telemetry off`) it posts nothing and only waits out
//! the same time, an idle agent of the same shape.

use crate::otlp::{self, Poster};
use anyhow::{bail, Context, Result};
use clap::Parser;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The name of the symlink the agents run as: `claude`, so that
/// wrangle's `program_of` (the basename of argv[0]) says Claude Code.
pub const PROGRAM: &str = "claude";

/// The hidden first argument that makes `wrangle-bench` an exporter
/// without the symlink (to try it by hand).
pub const SUBCOMMAND: &str = "__export";

/// `claude` (the bench's exporter): posts `--calls` records, one every
/// `--every-ms`, then exits.
#[derive(Debug, Parser)]
#[command(name = "claude (wrangle-bench exporter)")]
pub struct ExportArgs {
    /// Records to post in all; without it, it posts until it is killed.
    #[arg(long)]
    pub calls: Option<u64>,
    /// Milliseconds between two posts.
    #[arg(long, default_value_t = 1000)]
    pub every_ms: u64,
}

/// What an exporter did, as it says on stderr at its end.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records posted.
    pub posts: u64,
    /// Answered 200.
    pub ok: u64,
    /// Answered anything else, or not at all.
    pub failed: u64,
    /// Kept-alive connections the daemon closed, opened again.
    pub reconnects: u64,
}

/// How a [`Summary`] line begins.
const SUMMARY: &str = "wrangle-bench exporter:";

impl Summary {
    /// The line written on stderr.
    fn line(&self) -> String {
        format!(
            "{SUMMARY} {} posts, {} answered 200, {} failed, {} reconnects",
            self.posts, self.ok, self.failed, self.reconnects
        )
    }

    /// The summary in an agent's stderr log, if it wrote one.
    pub fn find(log: &str) -> Option<Summary> {
        let line = log.lines().rev().find_map(|l| l.strip_prefix(SUMMARY))?;
        let numbers: Vec<u64> = line
            .split(',')
            .filter_map(|part| part.split_whitespace().next()?.parse().ok())
            .collect();
        match numbers[..] {
            [posts, ok, failed, reconnects] => Some(Summary {
                posts,
                ok,
                failed,
                reconnects,
            }),
            _ => None,
        }
    }
}

/// Runs the exporter with its arguments (argv[0] first).
pub fn main(args: impl IntoIterator<Item = String>) -> ExitCode {
    let args = ExportArgs::parse_from(args);
    match export(&args) {
        Ok(summary) => {
            eprintln!("{}", summary.line());
            if summary.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("wrangle-bench exporter, stopped: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// What the environment says to export to.
struct Target {
    endpoint: String,
    token: String,
    resource: Vec<(String, String)>,
}

/// The endpoint, token and resource wrangle set; `None` when it set
/// none (telemetry off).
fn target() -> Result<Option<Target>> {
    let Ok(endpoint) = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") else {
        return Ok(None);
    };
    let headers = std::env::var("OTEL_EXPORTER_OTLP_HEADERS").unwrap_or_default();
    let token = otlp::bearer_token(&headers)
        .context("OTEL_EXPORTER_OTLP_HEADERS has no `authorization=Bearer TOKEN`")?;
    let resource =
        otlp::resource_attributes(&std::env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default());
    Ok(Some(Target {
        endpoint,
        token,
        resource,
    }))
}

/// Posts on schedule: record `i` at `offset + i * every` after the start,
/// where the offset (from the pid) spreads a fleet's posts over the
/// second instead of bunching them.
fn export(args: &ExportArgs) -> Result<Summary> {
    if args.every_ms == 0 {
        bail!("--every-ms must be above 0");
    }
    let every = Duration::from_millis(args.every_ms);
    let offset =
        every.mul_f64(f64::from(std::process::id().wrapping_mul(2_654_435_761)) / 4_294_967_296.0);
    let started = Instant::now();
    let calls = args.calls.unwrap_or(u64::MAX);
    let due = |i: u64| started + offset + every * u32::try_from(i).unwrap_or(u32::MAX);
    let Some(target) = target()? else {
        // Nothing to post to: an idle agent for as long (or until killed).
        match args.calls {
            Some(calls) => {
                let last = due(calls.saturating_sub(1));
                std::thread::sleep(last.saturating_duration_since(Instant::now()));
            }
            None => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
        }
        return Ok(Summary::default());
    };
    let mut poster = Poster::new(&target.endpoint, &target.token)?;
    let session = crate::emit::session_id();
    let mut summary = Summary::default();
    let mut first_failure = None;
    for i in 0..calls {
        std::thread::sleep(due(i).saturating_duration_since(Instant::now()));
        let body = otlp::api_request_body(
            &otlp::AGENT_CALL,
            &target.resource,
            &session,
            i,
            otlp::now_unix_nanos(),
        );
        summary.posts += 1;
        match poster.post(&body) {
            Ok(200) => summary.ok += 1,
            other => {
                summary.failed += 1;
                first_failure.get_or_insert_with(|| match other {
                    Ok(status) => format!("post {i} answered {status}"),
                    Err(error) => format!("post {i}: {error:#}"),
                });
            }
        }
        summary.reconnects = poster.reconnects;
    }
    if let Some(failure) = first_failure {
        eprintln!("wrangle-bench exporter, first failure: {failure}");
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_read_back_from_the_log() {
        let summary = Summary {
            posts: 75,
            ok: 74,
            failed: 1,
            reconnects: 2,
        };
        let log = format!("something\n{}\n", summary.line());
        assert_eq!(Summary::find(&log), Some(summary));
        assert_eq!(Summary::find("nothing"), None);
    }
}
