//! `wrangle inspect`: everything about one agent.

use crate::args::InspectArgs;
use crate::client::{self, Client};
use crate::format::{self, bytes, command_line, cpu_percent, timestamp_millis, uptime};
use crate::table::Table;
use crate::{output, routes};
use anyhow::Result;
use serde_json::Value;
use std::fmt::Display;
use std::time::Duration;
use wrangle_wire::parse::{format_seconds, format_size};
use wrangle_wire::{AgentView, Enforcement, LimitsView};

/// Prints the agent as `key: value` lines, or as JSON exactly as the
/// daemon sent it.
pub async fn inspect(client: &Client, args: &InspectArgs) -> Result<u8> {
    let value: Value = client.get(&routes::agent(&args.agent)).await?;
    if args.json {
        output::print_json(&value)?;
    } else {
        output::print(&describe(&client::from_value(value)?))?;
    }
    Ok(0)
}

/// One line per field, keys as in the JSON, values for people.
fn describe(agent: &AgentView) -> String {
    // Taken apart field by field, so a field added to AgentView fails to
    // compile here until it is shown.
    let AgentView {
        id,
        name,
        state,
        health,
        health_reason,
        run,
        restarts,
        restart,
        max_restarts,
        timeout_seconds,
        on_hang,
        group,
        priority,
        labels,
        pid,
        shim_pid,
        command,
        cwd,
        env,
        stop_signal,
        stop_timeout_seconds,
        created_at,
        started_at,
        ended_at,
        exit_code,
        signal,
        reason,
        cause,
        restart_at,
        runtime_seconds,
        containment,
        process,
        tree,
        progress,
        message,
        details,
        last_output_at,
        last_heartbeat_at,
        idle_timeout_seconds,
        health_check,
        limits,
        session,
        total_cost_usd,
        total_tokens,
        stdout_log,
        stderr_log,
        log_max_size_bytes,
        log_max_files,
    } = agent;
    let seconds = |value: &Option<f64>| {
        value
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .map_or_else(|| "-".to_owned(), format_seconds)
    };
    let time = |value: &Option<chrono::DateTime<chrono::Utc>>| {
        or_dash(value.as_ref().map(timestamp_millis).as_ref())
    };
    let stop_timeout = Duration::try_from_secs_f64(*stop_timeout_seconds)
        .map_or_else(|_| stop_timeout_seconds.to_string(), format_seconds);
    let fields: [(&str, String); 50] = [
        ("id", id.clone()),
        ("name", name.clone()),
        ("state", state.to_string()),
        ("health", health.to_string()),
        ("health_reason", or_dash(health_reason.as_ref())),
        ("health_check", or_dash(health_check.as_ref())),
        ("idle_timeout", seconds(idle_timeout_seconds)),
        ("run", run.to_string()),
        (
            "restart",
            format!("{restart} (restarts {restarts}, at most {max_restarts} per window)"),
        ),
        ("timeout", seconds(timeout_seconds)),
        ("on_hang", on_hang.to_string()),
        ("group", or_dash(group.as_ref())),
        ("priority", priority.to_string()),
        (
            "labels",
            if labels.is_empty() {
                "-".into()
            } else {
                labels
                    .iter()
                    .map(|(key, value)| format!("{key}={value}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
        ("pid", or_dash(pid.as_ref())),
        ("shim_pid", or_dash(shim_pid.as_ref())),
        ("command", command_line(command)),
        ("cwd", cwd.clone()),
        (
            "env",
            if env.is_empty() {
                "-".into()
            } else {
                env.join(", ")
            },
        ),
        ("stop_signal", stop_signal.clone()),
        ("stop_timeout", stop_timeout),
        ("created_at", timestamp_millis(created_at)),
        (
            "started_at",
            or_dash(started_at.as_ref().map(timestamp_millis).as_ref()),
        ),
        (
            "ended_at",
            or_dash(ended_at.as_ref().map(timestamp_millis).as_ref()),
        ),
        ("exit_code", or_dash(exit_code.as_ref())),
        ("signal", or_dash(signal.as_ref())),
        ("reason", or_dash(reason.as_ref())),
        ("cause", or_dash(cause.as_ref())),
        ("restart_at", time(restart_at)),
        ("runtime", uptime(*runtime_seconds)),
        ("containment", or_dash(containment.as_ref())),
        (
            "limits",
            limits
                .as_ref()
                .map_or_else(|| "-".to_owned(), describe_limits),
        ),
        (
            "process",
            process.as_ref().map_or_else(
                || "-".to_owned(),
                |p| {
                    format!(
                        "cpu {} rss {} threads {} fds {}",
                        cpu_percent(p.cpu_percent),
                        bytes(p.rss_bytes),
                        p.threads,
                        p.fds
                    )
                },
            ),
        ),
        (
            "tree",
            tree.as_ref().map_or_else(
                || "-".to_owned(),
                |t| {
                    format!(
                        "cpu {} ({} in all) rss {} threads {} fds {} processes {} zombies {}",
                        cpu_percent(t.cpu_percent),
                        Duration::try_from_secs_f64(t.cpu_seconds)
                            .map_or_else(|_| "-".to_owned(), format_seconds),
                        bytes(t.rss_bytes),
                        t.threads,
                        t.fds,
                        t.processes,
                        t.zombies
                    )
                },
            ),
        ),
        (
            "progress",
            or_dash(progress.map(|p| format!("{p}%")).as_ref()),
        ),
        ("message", or_dash(message.as_ref())),
        (
            "details",
            or_dash(
                details
                    .as_ref()
                    .map(|d| serde_json::Value::Object(d.clone()))
                    .as_ref(),
            ),
        ),
        (
            "adapter",
            session.as_ref().map_or_else(
                || "none".to_owned(),
                |s| format!("{} ({})", s.adapter, s.adapter_reason),
            ),
        ),
        (
            "session",
            session.as_ref().map_or_else(
                || "-".to_owned(),
                |s| {
                    format!(
                        "{} {} ({}), {} turns, {} tool calls{}",
                        s.adapter,
                        s.session_id.as_deref().unwrap_or("-"),
                        if s.models.is_empty() {
                            "-".to_owned()
                        } else {
                            s.models.join(", ")
                        },
                        s.turns,
                        s.tool_calls,
                        s.tool
                            .as_ref()
                            .map_or_else(String::new, |tool| format!(", running {}", tool.name))
                    )
                },
            ),
        ),
        (
            "tokens",
            session.as_ref().map_or_else(
                || "-".to_owned(),
                |s| super::events::describe_tokens(&s.tokens).replacen("tokens ", "", 1),
            ),
        ),
        (
            "cost",
            session.as_ref().map_or_else(
                || "-".to_owned(),
                |s| match (s.cost_usd, s.cost_source, &s.cost_note) {
                    (Some(cost), Some(source), _) => {
                        format!(
                            "{} ({})",
                            format::usd(cost),
                            format!("{source:?}").to_lowercase()
                        )
                    }
                    (_, _, Some(note)) => format!("unknown: {note}"),
                    _ => "-".to_owned(),
                },
            ),
        ),
        (
            "telemetry",
            session.as_ref().map_or_else(
                || "-".to_owned(),
                |s| match (&s.telemetry, &s.telemetry_note) {
                    (Some(t), _) => telemetry_line(t, s.figures_from_telemetry),
                    (None, Some(note)) => format!("not received: {note}"),
                    (None, None) => "-".to_owned(),
                },
            ),
        ),
        (
            "total_cost",
            match (total_cost_usd, total_tokens) {
                (None, None) => "-".to_owned(),
                (cost, tokens) => format!(
                    "{}, {} tokens (all runs)",
                    cost.map_or_else(|| "-".to_owned(), format::usd),
                    tokens.map_or(0, |tokens| tokens.total())
                ),
            },
        ),
        (
            "waiting",
            or_dash(session.as_ref().and_then(|s| s.waiting.as_ref())),
        ),
        (
            "result",
            session
                .as_ref()
                .and_then(|s| s.result.as_ref())
                .map_or_else(
                    || "-".to_owned(),
                    |r| {
                        let word = if r.success { "success" } else { "error" };
                        match &r.message {
                            Some(message) => format!("{word}: {message}"),
                            None => word.to_owned(),
                        }
                    },
                ),
        ),
        ("last_output_at", time(last_output_at)),
        ("last_heartbeat_at", time(last_heartbeat_at)),
        ("stdout_log", stdout_log.clone()),
        ("stderr_log", stderr_log.clone()),
        (
            "log_rotation",
            describe_rotation(*log_max_size_bytes, *log_max_files),
        ),
    ];
    let mut table = Table::headless();
    for (key, value) in fields {
        table.push(vec![format!("{key}:"), value]);
    }
    table.render()
}

/// `at 20 MiB, 5 files kept per stream`, or `-` when the daemon did not
/// say.
fn describe_rotation(max_size: Option<u64>, max_files: Option<u32>) -> String {
    match (max_size, max_files) {
        (Some(size), Some(files)) => {
            format!("at {}, {files} files kept per stream", format_size(size))
        }
        _ => "-".to_owned(),
    }
}

/// `memory 64 MiB (cgroup v1), cpu 0.5 cores (cgroup v1), pids 5 (cgroup
/// v1), nofile 32 (rlimit)`: each limit that is set and how it is enforced.
fn describe_limits(limits: &LimitsView) -> String {
    let how = |by: Option<Enforcement>| by.map_or_else(String::new, |by| format!(" ({by})"));
    let by = &limits.enforced_by;
    let mut parts = Vec::new();
    if let Some(bytes) = limits.memory_max_bytes {
        parts.push(format!("memory {}{}", format_size(bytes), how(by.memory)));
    }
    if let Some(cores) = limits.cpu_max_cores {
        parts.push(format!("cpu {cores} cores{}", how(by.cpu)));
    }
    if let Some(count) = limits.pids_max {
        parts.push(format!("pids {count}{}", how(by.pids)));
    }
    if let Some(count) = limits.nofile {
        parts.push(format!("nofile {count}{}", how(by.nofile)));
    }
    parts.join(", ")
}

/// The value, or `-` when there is none.
fn or_dash<T: Display>(value: Option<&T>) -> String {
    value.map_or_else(|| "-".to_owned(), ToString::to_string)
}

/// The `telemetry:` line: what the agent's own telemetry said, and where
/// it goes.
fn telemetry_line(t: &wrangle_wire::TelemetryView, figures_above: bool) -> String {
    let mut line = format!(
        "{} calls, {}{}",
        t.calls,
        t.cost_usd.map_or_else(|| "no cost".to_owned(), format::usd),
        if figures_above {
            ", the figures above"
        } else {
            ""
        },
    );
    if t.tools_run > 0 {
        let failed = if t.tools_failed > 0 {
            format!(", {} failed", t.tools_failed)
        } else {
            String::new()
        };
        let tools = if t.tools_run == 1 { "tool" } else { "tools" };
        line += &format!(
            "; {} {tools} ({:.1} s{failed})",
            t.tools_run,
            t.tools_ms as f64 / 1000.0
        );
    }
    if !t.denials.is_empty() {
        line += &format!("; refused: {}", t.denials.join(", "));
    }
    if let Some(difference) = &t.difference {
        line += &format!("; {difference}");
    }
    line += &format!(" (received at {}", t.endpoint);
    if let Some(forwarded) = &t.forwarded_to {
        line += &format!(", forwarded to {forwarded}");
    }
    line + ")"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::sample_agent;

    #[test]
    fn every_field_is_shown() {
        let agent = AgentView {
            health_reason: Some("probe ok".into()),
            process: Some(wrangle_wire::ProcessMetrics {
                cpu_percent: 12.5,
                rss_bytes: 3 << 20,
                threads: 4,
                fds: 9,
            }),
            tree: Some(wrangle_wire::TreeMetrics {
                cpu_percent: 150.0,
                cpu_seconds: 42.5,
                rss_bytes: 300 << 20,
                threads: 7,
                fds: 20,
                processes: 3,
                zombies: 1,
            }),
            progress: Some(40.0),
            message: Some("running tests".into()),
            idle_timeout_seconds: Some(30.0),
            ..sample_agent()
        };
        let text = describe(&agent);
        let expected = "\
id:                  0123456789abcdef0123456789abcdef
name:                worker-1
state:               running
health:              healthy
health_reason:       probe ok
health_check:        -
idle_timeout:        30s
run:                 1
restart:             never (restarts 0, at most 5 per window)
timeout:             -
on_hang:             none
group:               -
priority:            0
labels:              -
pid:                 4242
shim_pid:            4241
command:             sleep 100
cwd:                 /work
env:                 FOO
stop_signal:         SIGTERM
stop_timeout:        10s
created_at:          2024-05-01T12:00:00.000Z
started_at:          2024-05-01T12:00:00.005Z
ended_at:            -
exit_code:           -
signal:              -
reason:              -
cause:               -
restart_at:          -
runtime:             5m12s
containment:         process group + subreaper
limits:              -
process:             cpu 12.5% rss 3.0M threads 4 fds 9
tree:                cpu 150% (42s in all) rss 300M threads 7 fds 20 processes 3 zombies 1
progress:            40%
message:             running tests
details:             -
adapter:             none
session:             -
tokens:              -
cost:                -
telemetry:           -
total_cost:          -
waiting:             -
result:              -
last_output_at:      -
last_heartbeat_at:   -
stdout_log:          /h/runs/worker-1/1/stdout.log
stderr_log:          /h/runs/worker-1/1/stderr.log
log_rotation:        at 20 MiB, 5 files kept per stream
";
        assert_eq!(text, expected);
    }

    #[test]
    fn limits_say_how_they_are_enforced() {
        let agent = AgentView {
            limits: Some(LimitsView {
                memory_max_bytes: Some(64 << 20),
                cpu_max_cores: Some(0.5),
                pids_max: None,
                nofile: Some(32),
                enforced_by: wrangle_wire::limits::LimitEnforcement {
                    memory: Some(Enforcement::Watchdog),
                    cpu: Some(Enforcement::CgroupV1),
                    pids: None,
                    nofile: None,
                },
            }),
            ..sample_agent()
        };
        let text = describe(&agent);
        assert!(
            text.contains(
                "\nlimits:              memory 64 MiB (watchdog), cpu 0.5 cores (cgroup v1), nofile 32\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn absent_values_are_dashes() {
        let agent = AgentView {
            env: Vec::new(),
            exit_code: Some(0),
            stop_timeout_seconds: 0.5,
            ..sample_agent()
        };
        let text = describe(&agent);
        assert!(text.contains("\nenv:                 -\n"), "{text}");
        assert!(text.contains("\nexit_code:           0\n"), "{text}");
        assert!(text.contains("\nstop_timeout:        0.50s\n"), "{text}");
    }
}
