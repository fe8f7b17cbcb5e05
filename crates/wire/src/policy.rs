//! Restart policies and the runs an agent has had.

use crate::state::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// When an agent that ended is started again.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never: an ended agent stays ended.
    #[default]
    Never,
    /// After a non-zero exit, a fatal signal or a timeout.
    OnFailure,
    /// After any end that a user did not ask for, exit 0 included.
    Always,
}

impl RestartPolicy {
    /// Every policy.
    pub const ALL: [RestartPolicy; 3] = [
        RestartPolicy::Never,
        RestartPolicy::OnFailure,
        RestartPolicy::Always,
    ];

    /// The name used on the command line and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Never => "never",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RestartPolicy::ALL
            .into_iter()
            .find(|policy| policy.as_str() == s)
            .ok_or_else(|| format!("invalid restart policy {s:?}: use never, on-failure or always"))
    }
}

/// What to do with an agent that is `hung` (see `--idle-timeout`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum OnHang {
    /// Only report it.
    #[default]
    None,
    /// Stop it; the run ends `failed`.
    Stop,
    /// Stop it and start a new run (bounded by `--max-restarts`).
    Restart,
}

impl OnHang {
    /// Every action.
    pub const ALL: [OnHang; 3] = [OnHang::None, OnHang::Stop, OnHang::Restart];

    /// The name used on the command line and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            OnHang::None => "none",
            OnHang::Stop => "stop",
            OnHang::Restart => "restart",
        }
    }
}

impl fmt::Display for OnHang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OnHang {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OnHang::ALL
            .into_iter()
            .find(|action| action.as_str() == s)
            .ok_or_else(|| format!("invalid --on-hang {s:?}: use none, stop or restart"))
    }
}

/// `GET /v1/agents/{agent}/runs`: one run of an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunView {
    /// Its number, from 1.
    pub run: u32,
    /// The agent's state when this run was last recorded; for a past run,
    /// how it ended.
    pub state: State,
    /// Pid of its main process.
    pub pid: Option<i32>,
    /// When its exec was confirmed.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Seconds it ran (so far, if it runs).
    pub runtime_seconds: Option<f64>,
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Signal that ended it, e.g. `SIGKILL`.
    pub signal: Option<String>,
    /// Why it ended (or why the agent is in its state).
    pub reason: Option<String>,
    /// Its stdout log.
    pub stdout_log: String,
    /// Its stderr log.
    pub stderr_log: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_round_trip_and_bad_ones_are_named() {
        for policy in RestartPolicy::ALL {
            assert_eq!(policy.as_str().parse::<RestartPolicy>().unwrap(), policy);
            let json = serde_json::to_string(&policy).unwrap();
            assert_eq!(json, format!("\"{policy}\""));
        }
        let error = "sometimes".parse::<RestartPolicy>().unwrap_err();
        assert!(error.contains("\"sometimes\""), "{error}");
        assert!(error.contains("on-failure"), "{error}");
    }
}
