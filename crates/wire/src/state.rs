//! The lifecycle state and the health of an agent, as DESIGN.md names them.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where an agent is in its lifecycle.
///
/// `queued -> starting -> running -> stopping -> completed | failed | stopped`,
/// with `backoff` between runs when a restart policy starts it again.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Accepted, waiting for capacity.
    Queued,
    /// The shim is forked; the exec is not yet confirmed.
    Starting,
    /// The exec is confirmed and the agent runs.
    Running,
    /// A stop was asked for and the stop sequence is under way.
    Stopping,
    /// Exited with code 0.
    Completed,
    /// Non-zero exit, fatal signal, spawn error or a restart policy gave up.
    Failed,
    /// Ended by a user's stop or kill.
    Stopped,
    /// Exited; a restart policy will start it again after a delay.
    Backoff,
}

impl State {
    /// Every state, in lifecycle order.
    pub const ALL: [State; 8] = [
        State::Queued,
        State::Starting,
        State::Running,
        State::Stopping,
        State::Completed,
        State::Failed,
        State::Stopped,
        State::Backoff,
    ];

    /// The lowercase name used in the API, the store and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Starting => "starting",
            State::Running => "running",
            State::Stopping => "stopping",
            State::Completed => "completed",
            State::Failed => "failed",
            State::Stopped => "stopped",
            State::Backoff => "backoff",
        }
    }

    /// True once the agent has ended for good: nothing will run it again
    /// unless a user asks.
    pub fn is_ended(self) -> bool {
        matches!(self, State::Completed | State::Failed | State::Stopped)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown state {s:?}"))
    }
}

/// How an agent is doing, separate from its state.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Running and nothing says otherwise.
    Healthy,
    /// A health probe fails.
    Unhealthy,
    /// The agent needs a person: a permission, a question (its adapter
    /// says so).
    Waiting,
    /// No output and no heartbeat for longer than the idle timeout, while
    /// nothing explains the silence (a tool running, an API retry, a rate
    /// limit).
    Hung,
    /// The agent's main process is a zombie.
    Zombie,
    /// Not running, or nothing is known yet.
    Unknown,
}

impl Health {
    /// Every health, from best to worst known.
    pub const ALL: [Health; 6] = [
        Health::Healthy,
        Health::Unhealthy,
        Health::Waiting,
        Health::Hung,
        Health::Zombie,
        Health::Unknown,
    ];

    /// The lowercase name used in the API and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
            Health::Waiting => "waiting",
            Health::Hung => "hung",
            Health::Zombie => "zombie",
            Health::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip() {
        for state in State::ALL {
            assert_eq!(state.as_str().parse::<State>().unwrap(), state);
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
        }
        assert!("sleeping".parse::<State>().is_err());
    }

    #[test]
    fn only_terminal_states_are_ended() {
        let ended: Vec<_> = State::ALL.into_iter().filter(|s| s.is_ended()).collect();
        assert_eq!(ended, [State::Completed, State::Failed, State::Stopped]);
    }
}
