//! `wrangle inspect`: everything about one agent.

use crate::args::InspectArgs;
use crate::client::{self, Client};
use crate::format::{command_line, timestamp_millis, uptime};
use crate::table::Table;
use crate::{output, routes};
use anyhow::Result;
use serde_json::Value;
use std::fmt::Display;
use std::time::Duration;
use wrangle_wire::parse::format_seconds;
use wrangle_wire::AgentView;

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
        run,
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
        runtime_seconds,
        containment,
        stdout_log,
        stderr_log,
    } = agent;
    let stop_timeout = Duration::try_from_secs_f64(*stop_timeout_seconds)
        .map_or_else(|_| stop_timeout_seconds.to_string(), format_seconds);
    let fields: [(&str, String); 22] = [
        ("id", id.clone()),
        ("name", name.clone()),
        ("state", state.to_string()),
        ("health", health.to_string()),
        ("run", run.to_string()),
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
        ("runtime", uptime(*runtime_seconds)),
        ("containment", or_dash(containment.as_ref())),
        ("stdout_log", stdout_log.clone()),
        ("stderr_log", stderr_log.clone()),
    ];
    let mut table = Table::headless();
    for (key, value) in fields {
        table.push(vec![format!("{key}:"), value]);
    }
    table.render()
}

/// The value, or `-` when there is none.
fn or_dash<T: Display>(value: Option<&T>) -> String {
    value.map_or_else(|| "-".to_owned(), ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::sample_agent;

    #[test]
    fn every_field_is_shown() {
        let text = describe(&sample_agent());
        let expected = "\
id:             0123456789abcdef0123456789abcdef
name:           worker-1
state:          running
health:         healthy
run:            1
pid:            4242
shim_pid:       4241
command:        sleep 100
cwd:            /work
env:            FOO
stop_signal:    SIGTERM
stop_timeout:   10s
created_at:     2024-05-01T12:00:00.000Z
started_at:     2024-05-01T12:00:00.005Z
ended_at:       -
exit_code:      -
signal:         -
reason:         -
runtime:        5m12s
containment:    process group + subreaper
stdout_log:     /h/runs/worker-1/1/stdout.log
stderr_log:     /h/runs/worker-1/1/stderr.log
";
        assert_eq!(text, expected);
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
        assert!(text.contains("\nenv:            -\n"), "{text}");
        assert!(text.contains("\nexit_code:      0\n"), "{text}");
        assert!(text.contains("\nstop_timeout:   0.50s\n"), "{text}");
    }
}
