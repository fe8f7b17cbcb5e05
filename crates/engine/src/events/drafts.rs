//! The event a transition makes: one per state entered, of the state's
//! type, with what a client needs to know of it.

use super::Draft;
use crate::model::Agent;
use chrono::{DateTime, Utc};
use wrangle_wire::parse::signal_name;
use wrangle_wire::{EventKind, State};

/// The events of `before` becoming `after`: none unless the state changed
/// (a change of what is known of a run, such as its pids, is no event).
pub(crate) fn of_transition(before: &Agent, after: &Agent, at: DateTime<Utc>) -> Vec<Draft> {
    if before.status.state == after.status.state {
        return Vec::new();
    }
    vec![Draft::about(after, of_state(after), at)]
}

/// The event of the state `agent` is in now.
pub(crate) fn of_state(agent: &Agent) -> EventKind {
    let status = &agent.status;
    let run = &status.run;
    let reason = status.reason.clone();
    match status.state {
        State::Queued => EventKind::Queued { reason },
        State::Starting => EventKind::Starting {},
        State::Running => EventKind::Running {
            pid: run.process.map(|process| process.pid),
        },
        State::Stopping => EventKind::Stopping {
            cause: run.cause,
            reason,
        },
        State::Backoff => EventKind::Backoff {
            exit_code: run.exit_code,
            signal: run.signal.map(signal_name),
            cause: run.cause,
            reason,
            restart_at: status.restart_at,
        },
        State::Completed | State::Failed | State::Stopped => EventKind::Exited {
            state: status.state,
            exit_code: run.exit_code,
            signal: run.signal.map(signal_name),
            cause: run.cause,
            reason,
            // Until the end, where it ended; else until now.
            runtime_seconds: run.runtime_seconds(Utc::now()),
        },
    }
}
