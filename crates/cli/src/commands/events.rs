//! `wrangle events`: every change as it happens, as `docker events` shows
//! them: one line per event, or with `--json` each event as the daemon
//! sent it. It follows until interrupted, across restarts of the daemon.

use crate::args::EventsArgs;
use crate::client::Client;
use crate::follow::Events;
use crate::format::{command_line, timestamp_millis};
use crate::output;
use anyhow::Result;
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write as _};
use wrangle_wire::{Event, EventKind, EventsQuery, Notice, StreamMessage};

/// Prints events until the stream ends (with `--no-follow`) or the user
/// interrupts it.
pub async fn events(client: Client, args: &EventsArgs) -> Result<u8> {
    let query = EventsQuery {
        since: args.since.clone(),
        agent: args.agent.clone(),
        group: args.group.clone(),
        kind: (!args.kinds.is_empty()).then(|| args.kinds.join(",")),
        follow: args.no_follow.then_some(false),
        heartbeat: None,
    };
    // A daemon that goes away is waited for, not started again: someone
    // stopped it, and events resume when it is back.
    let mut events = Events::new(client.without_autostart(), query);
    if !args.json {
        events = events.announcing();
    }
    // Lines that came together are written together: a burst of events
    // is one write, not one each.
    let mut stdout = BufWriter::new(io::stdout());
    while let Some(message) = events.next().await? {
        if args.json {
            output::check(writeln!(stdout, "{}", message.raw))?;
        } else {
            match message.read()? {
                StreamMessage::Event(event) => {
                    output::check(writeln!(stdout, "{}", describe(&event)))?
                }
                StreamMessage::Notice(notice) => {
                    output::check(stdout.flush())?;
                    output::print_error(&anyhow::anyhow!("{}", describe_notice(&notice)));
                }
            }
        }
        if !events.buffered() {
            output::check(stdout.flush())?;
        }
    }
    output::check(stdout.flush())?;
    Ok(0)
}

/// A notice in words.
fn describe_notice(notice: &Notice) -> String {
    match notice {
        Notice::Gap {
            since: Some(since),
            oldest,
        } => format!(
            "events after {since} up to {oldest} are no longer kept (see wrangle daemon --events-keep); going on from {oldest}"
        ),
        Notice::Gap { since: None, oldest } => format!(
            "events of before {oldest} are no longer kept (see wrangle daemon --events-keep); going on from {oldest}"
        ),
        Notice::Lagged { last_id } => format!("fell behind after event {last_id}"),
    }
}

/// One event on one line: `TIME  #ID  TYPE  AGENT[ run N]  what happened`.
pub fn describe(event: &Event) -> String {
    let mut line = format!(
        "{}  #{}  {}",
        timestamp_millis(&event.time),
        event.id,
        event.kind.name()
    );
    if let Some(agent) = &event.agent {
        let _ = write!(line, "  {}", agent.name);
        if let Some(run) = event.run {
            let _ = write!(line, " run {run}");
        }
    }
    let details = details(&event.kind);
    if !details.is_empty() {
        let _ = write!(line, "  {details}");
    }
    line
}

/// What an event says beyond its type and agent.
fn details(kind: &EventKind) -> String {
    // One line per event: text of many lines (an agent's message) is
    // folded and cut.
    let why = |reason: &Option<String>| {
        reason.as_deref().map_or_else(String::new, |reason| {
            let folded = reason.split_whitespace().collect::<Vec<_>>().join(" ");
            format!(": {}", crate::format::truncate(&folded, 200))
        })
    };
    let cause = |cause: &Option<wrangle_wire::Cause>| {
        cause.map_or_else(String::new, |cause| format!(" (cause {cause})"))
    };
    match kind {
        EventKind::Created { command, .. } => command_line(command),
        EventKind::Queued { reason } => reason.clone().unwrap_or_default(),
        EventKind::Starting {} | EventKind::Unknown => String::new(),
        EventKind::Running { pid } => pid.map_or_else(String::new, |pid| format!("pid {pid}")),
        EventKind::Stopping { cause: by, reason } => {
            format!("stopping{}{}", cause(by), why(reason))
        }
        EventKind::Exited {
            state,
            cause: by,
            reason,
            ..
        } => format!("{state}{}{}", cause(by), why(reason)),
        EventKind::Backoff {
            cause: by,
            reason,
            restart_at,
            ..
        } => {
            let at = restart_at.map_or_else(String::new, |at| {
                format!(", next run at {}", timestamp_millis(&at))
            });
            format!("backoff{at}{}{}", cause(by), why(reason))
        }
        EventKind::Removed { state } => format!("removed ({state})"),
        EventKind::Health { from, to, reason } => format!("{from} -> {to}{}", why(reason)),
        EventKind::Progress { progress, message } => {
            let mut text = progress.map_or_else(String::new, |p| format!("{p}%"));
            if let Some(message) = message {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(message);
            }
            text
        }
        EventKind::Session {
            adapter,
            session_id,
            models,
        } => {
            let id = session_id.as_deref().unwrap_or("-");
            format!("{adapter} session {id}, models {}", models.join(", "))
        }
        EventKind::Usage { tokens, cost_usd } => {
            format!("{}{}", describe_tokens(tokens), describe_cost(*cost_usd))
        }
        EventKind::Waiting { waiting } => match waiting {
            Some(what) => format!("waits for {what}"),
            None => "no longer waits".into(),
        },
        EventKind::Result {
            success,
            message,
            tokens,
            cost_usd,
        } => format!(
            "{}{}: {}{}",
            if *success { "success" } else { "error" },
            why(message),
            describe_tokens(tokens),
            describe_cost(*cost_usd)
        ),
        EventKind::BudgetExceeded {
            budget,
            cost_usd,
            tokens,
        } => format!(
            "over {budget}: spent {}, {} tokens",
            cost_usd.map_or_else(|| "-".to_string(), crate::format::usd),
            tokens.total()
        ),
        EventKind::GroupChanged {
            group,
            max_running,
            budget_usd,
        } => {
            let limit = max_running.map_or_else(
                || "no limit".to_string(),
                |max| format!("max-running {max}"),
            );
            let budget = budget_usd.map_or_else(
                || "no budget".to_string(),
                |usd| format!("budget {}", crate::format::usd(usd)),
            );
            format!("group {group}: {limit}, {budget}")
        }
        EventKind::DaemonStarted {
            pid,
            version,
            reattached,
            agents,
        } => format!(
            "pid {pid}, wrangle {version}, {reattached} running agents re-attached of {agents}"
        ),
        EventKind::DaemonStopping { stop_agents } => {
            if *stop_agents {
                "stopping its agents first".into()
            } else {
                "agents keep running".into()
            }
        }
    }
}

/// `tokens in 12, out 932, cache read 80746, cache write 8982`.
pub fn describe_tokens(tokens: &wrangle_wire::TokenCounts) -> String {
    format!(
        "tokens in {}, out {}, cache read {}, cache write {}",
        tokens.input, tokens.output, tokens.cache_read, tokens.cache_write
    )
}

/// `, $0.0745` where a cost is known.
fn describe_cost(cost: Option<f64>) -> String {
    cost.map_or_else(String::new, |cost| {
        format!(", {}", crate::format::usd(cost))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use wrangle_wire::{Cause, EventAgent, State};

    fn event(kind: EventKind) -> Event {
        Event {
            id: 42,
            time: chrono::Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 0).unwrap(),
            kind,
            agent: Some(EventAgent {
                id: "0123".into(),
                name: "build".into(),
                group: None,
            }),
            run: Some(2),
        }
    }

    #[test]
    fn an_event_reads_as_one_line() {
        assert_eq!(
            describe(&event(EventKind::Exited {
                state: State::Failed,
                exit_code: Some(3),
                signal: None,
                cause: Some(Cause::Exit),
                reason: Some("exited with code 3".into()),
                runtime_seconds: Some(1.0),
            })),
            "2026-12-06T10:00:00.000Z  #42  agent.exited  build run 2  failed (cause exit): exited with code 3"
        );
        assert_eq!(
            describe(&event(EventKind::Health {
                from: wrangle_wire::Health::Healthy,
                to: wrangle_wire::Health::Unhealthy,
                reason: Some("health check failed".into()),
            })),
            "2026-12-06T10:00:00.000Z  #42  agent.health  build run 2  healthy -> unhealthy: health check failed"
        );
        let mut daemon = event(EventKind::DaemonStopping { stop_agents: false });
        daemon.agent = None;
        daemon.run = None;
        assert_eq!(
            describe(&daemon),
            "2026-12-06T10:00:00.000Z  #42  daemon.stopping  agents keep running"
        );
        assert_eq!(
            describe(&event(EventKind::Progress {
                progress: Some(40.0),
                message: Some("running tests".into()),
            })),
            "2026-12-06T10:00:00.000Z  #42  agent.progress  build run 2  40% running tests"
        );
    }
}
