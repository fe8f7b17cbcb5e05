//! The `--telemetry` report, in Markdown.

use super::{Figures, FleetRun, CPU_TARGET, LATENCY_TARGET};
use crate::procinfo::Machine;
use crate::report::{time, verdict};
use crate::sessions::group;
use crate::stats::Samples;
use std::fmt::Write as _;
use std::time::Duration;

/// Threads named in a run's row, the busiest first.
const THREADS_SHOWN: usize = 4;

/// The `--telemetry` report.
pub fn markdown(machine: &Machine, binary: &str, figures: &Figures, left_behind: usize) -> String {
    let received = &figures.received;
    let n = received.n;
    let mut out = crate::report::header("wrangle telemetry benchmark", machine, binary);
    let _ = writeln!(
        out,
        "- sampler tick: {} (the daemon's default)",
        time(figures.tick)
    );
    let _ = writeln!(
        out,
        "- agents: `wrangle-bench` run through a symlink named `claude` (so that `--telemetry auto` sets Claude Code's OTel environment), each posting one `claude_code.api_request` record a second (OTLP/HTTP JSON, about 1.5 KB, one kept-alive connection, a new sequence number and time in each) to the endpoint and with the token wrangle set; {} records each, then exit 0",
        figures.calls
    );
    let _ = writeln!(out, "- daemon CPU: utime + stime of all its threads (`/proc/PID/stat`) over a window of whole ticks, in % of one core, once every agent was sampled and had a record counted; the threads' parts from `/proc/PID/task`");
    let _ = writeln!(
        out,
        "- processes left behind after the benchmark: {left_behind}\n"
    );

    let _ = writeln!(out, "### {n} agents, a record a second each\n");
    let _ = writeln!(out, "| telemetry | start, until all running | daemon CPU | by thread | machine busy | daemon RSS (peak) | records counted | posts answered 200 | at the end |\n|---|---|---|---|---|---|---|---|---|");
    let runs: Vec<&FleetRun> = figures.baseline.iter().chain([received]).collect();
    for run in &runs {
        let _ = writeln!(out, "{}", run_row(run));
    }
    if let Some(baseline) = &figures.baseline {
        let more = received.window.daemon_cpu - baseline.window.daemon_cpu;
        let _ = writeln!(
            out,
            "| **received − off** | | **{more:.2}%** of a core | | | {:+.1} MiB | {} | | |",
            (received.window.daemon_rss_kib as f64 - baseline.window.daemon_rss_kib as f64)
                / 1024.0,
            per_record(more, received.records_per_second)
        );
    }
    out.push('\n');

    let latency = &figures.latency;
    let _ = writeln!(out, "### A record to `inspect`, during the window above\n");
    let _ = writeln!(
        out,
        "{} samples spread over the window, each as another agent: the benchmark reads the agent's endpoint, token and resource from its `/proc/PID/environ`, opens a TCP connection to the endpoint and one to the API socket, reads the agent (`GET /v1/agents/{{id}}`), then starts the clock, posts one record (a call of 100,000 input tokens, which tells it from the agent's own records) and polls `GET /v1/agents/{{id}}` back to back until the agent's telemetry shows those tokens. **send → shown**, the figure judged, runs from just before the POST's first byte is written until the answer that shows the record has been read and decoded: it covers the record's way to the daemon, its decoding, the count and the store's transaction (the daemon answers 200 only after those), the 200, and a GET over the Unix socket. Failed samples: {}{}.\n",
        latency.samples.len() + latency.failures.len(),
        latency.failures.len(),
        latency
            .failures
            .first()
            .map_or(String::new(), |first| format!(" (e.g. {first})"))
    );
    let pick = |f: fn(&super::probe::Sample) -> Duration| {
        Samples::new(latency.samples.iter().map(f).collect())
    };
    let (post, shown, total) = (pick(|s| s.post), pick(|s| s.shown), pick(|s| s.total));
    let gets = latency.samples.iter().map(|s| s.gets).max().unwrap_or(0);
    let _ = writeln!(
        out,
        "| | send → 200 (the POST) | 200 → shown (GETs) | **send → shown** |\n|---|---|---|---|"
    );
    for (label, q) in [("median", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
        let _ = writeln!(
            out,
            "| {label} | {} | {} | **{}** |",
            time(post.quantile(q)),
            time(shown.quantile(q)),
            time(total.quantile(q))
        );
    }
    let _ = writeln!(
        out,
        "\nAt most {gets} GET(s) were needed for a record to show.\n"
    );

    let _ = writeln!(
        out,
        "### Targets (issue 13)\n\n| target | measured | verdict |\n|---|---|---|"
    );
    let valid = runs.iter().all(|run| run.check.is_ok());
    let cpu = received.window.daemon_cpu;
    let _ = writeln!(
        out,
        "| {n} agents each exporting once a second cost the daemon at most {CPU_TARGET:.0}% of a core | {cpu:.2}%{} | {} |",
        figures.baseline.as_ref().map_or(String::new(), |b| format!(
            " (off: {:.2}%, difference {:.2}%)",
            b.window.daemon_cpu,
            cpu - b.window.daemon_cpu
        )),
        if valid {
            verdict(cpu <= CPU_TARGET, format!("{:.1}x the target", cpu / CPU_TARGET))
        } else {
            "**NOT VALID** (a check failed)".into()
        }
    );
    let p99 = total.quantile(0.99);
    let complete = latency.failures.is_empty() && !latency.samples.is_empty();
    let _ = writeln!(
        out,
        "| a record reaches `inspect` within {} of its arrival | p99 {} (max {}), send → shown, {} samples | {} |",
        time(LATENCY_TARGET),
        time(p99),
        time(total.max()),
        total.len(),
        if complete {
            verdict(
                p99 <= LATENCY_TARGET,
                format!("{:.1}x the target", p99.as_secs_f64() / LATENCY_TARGET.as_secs_f64()),
            )
        } else {
            format!("**NOT VALID** ({} samples failed)", latency.failures.len())
        }
    );
    out
}

/// `cpu` (% of one core) divided among `rate` records a second: the
/// daemon's CPU per record, which is what scales with the fleet.
fn per_record(cpu: f64, rate: Option<f64>) -> String {
    match rate.filter(|rate| *rate > 0.0) {
        Some(rate) => format!("{:.0} µs of CPU a record", cpu / 100.0 / rate * 1e6),
        None => "–".into(),
    }
}

/// A fleet's row.
fn run_row(run: &FleetRun) -> String {
    let window = &run.window;
    let threads: Vec<String> = run
        .threads
        .iter()
        .take(THREADS_SHOWN)
        .map(|(name, share)| format!("{name} {share:.2}%"))
        .collect();
    format!(
        "| {} | {} | {:.2}% over {:.0} s | {} | {:.0}% | {:.1} MiB ({:.1}) | {} | {} of {}{} | {} |",
        if run.telemetry { "received (auto)" } else { "off" },
        time(run.start),
        window.daemon_cpu,
        window.seconds,
        if threads.is_empty() { "–".into() } else { threads.join(", ") },
        window.machine_busy,
        window.daemon_rss_kib as f64 / 1024.0,
        run.peak_rss_kib as f64 / 1024.0,
        run.records_per_second.map_or("–".into(), |rate| format!(
            "{rate:.0}/s; {}",
            per_record(window.daemon_cpu, Some(rate))
        )),
        group(run.posts_ok),
        group(run.posts),
        if run.reconnects > 0 {
            format!(" ({} reconnects)", run.reconnects)
        } else {
            String::new()
        },
        match &run.check {
            Ok(agreed) => agreed.clone(),
            Err(differs) => format!("**FAILED**: {differs}"),
        }
    )
}
