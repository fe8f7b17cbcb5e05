//! What the API says about one agent: the body of `inspect --json` and one
//! element of `ps --json`.

use crate::metrics::{ProcessMetrics, TreeMetrics};
use crate::policy::{OnHang, RestartPolicy};
use crate::state::{Health, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One agent and its current (or last) run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentView {
    /// Unique id: 32 lowercase hex digits; any unique prefix names it too.
    pub id: String,
    /// Unique name, `[a-z0-9][a-z0-9._-]{0,62}`.
    pub name: String,
    /// Lifecycle state.
    pub state: State,
    /// Health, separate from state.
    pub health: Health,
    /// Why the health is what it is, e.g. `no output or heartbeat for 31s
    /// (idle timeout 30s)`; absent when healthy for no particular reason.
    pub health_reason: Option<String>,
    /// Number of the current (or last) run, from 1.
    pub run: u32,
    /// Restarts so far (runs after the first).
    pub restarts: u32,
    /// The restart policy.
    pub restart: RestartPolicy,
    /// Most restarts within the restart window.
    pub max_restarts: u32,
    /// Wall-clock limit of a run, in seconds.
    pub timeout_seconds: Option<f64>,
    /// What is done when the agent is hung.
    pub on_hang: OnHang,
    /// Concurrency group, if any.
    pub group: Option<String>,
    /// Queue priority: higher starts first.
    pub priority: i32,
    /// Labels given at creation.
    pub labels: BTreeMap<String, String>,
    /// Pid of the agent's main process while it runs (or of the last run).
    pub pid: Option<i32>,
    /// Pid of the shim that is the agent's parent.
    pub shim_pid: Option<i32>,
    /// The argv the agent runs.
    pub command: Vec<String>,
    /// Working directory of the agent.
    pub cwd: String,
    /// Names of the environment variables set explicitly with `--env`.
    pub env: Vec<String>,
    /// Signal that starts the staged stop, e.g. `SIGTERM`.
    pub stop_signal: String,
    /// Grace period after the stop signal, in seconds.
    pub stop_timeout_seconds: f64,
    /// When the agent was created.
    pub created_at: DateTime<Utc>,
    /// When the current run's exec was confirmed.
    pub started_at: Option<DateTime<Utc>>,
    /// When the current run ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Exit code of the main process, when it exited normally.
    pub exit_code: Option<i32>,
    /// Name of the signal that ended the main process, e.g. `SIGKILL`.
    pub signal: Option<String>,
    /// Why the agent is in its state, in words a person can read.
    pub reason: Option<String>,
    /// Why the current run ended, or why it is being stopped, as a value.
    pub cause: Option<crate::events::Cause>,
    /// In `backoff`: when the next run starts.
    pub restart_at: Option<DateTime<Utc>>,
    /// Seconds the current run has run (until it ended, if it did).
    pub runtime_seconds: Option<f64>,
    /// How the run's process tree is contained: `cgroup <path>` or
    /// `process group + subreaper`.
    pub containment: Option<String>,
    /// The main process at the sampler's last tick; absent when it does
    /// not run or has not been sampled yet.
    pub process: Option<ProcessMetrics>,
    /// The whole process tree at the sampler's last tick.
    pub tree: Option<TreeMetrics>,
    /// Progress 0-100 the agent reported in its status file.
    pub progress: Option<f64>,
    /// Message the agent reported in its status file.
    pub message: Option<String>,
    /// Every other key of the agent's status file.
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
    /// When the agent last wrote to stdout or stderr.
    pub last_output_at: Option<DateTime<Utc>>,
    /// When the agent last wrote its status file.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// Output and heartbeat silence after which the agent is `hung`.
    pub idle_timeout_seconds: Option<f64>,
    /// The health probe, when one was given, e.g. `http http://127.0.0.1:8080/health`.
    pub health_check: Option<String>,
    /// The resource limits, when any was given, and how each is enforced.
    pub limits: Option<crate::limits::LimitsView>,
    /// What the agent's own output says about its work, read by its
    /// adapter; absent when no adapter reads it.
    #[serde(default)]
    pub session: Option<crate::session::SessionView>,
    /// What all its runs have cost together, in USD (the cost ledger's
    /// figure, which its budget is checked against).
    #[serde(default)]
    pub total_cost_usd: Option<f64>,
    /// The tokens all its runs used together.
    #[serde(default)]
    pub total_tokens: Option<crate::TokenCounts>,
    /// Path of the current run's stdout log.
    pub stdout_log: String,
    /// Path of the current run's stderr log.
    pub stderr_log: String,
    /// Size at which a log file is rotated, in bytes (`--log-max-size`).
    #[serde(default)]
    pub log_max_size_bytes: Option<u64>,
    /// Log files kept per stream, the current one included
    /// (`--log-max-files`).
    #[serde(default)]
    pub log_max_files: Option<u32>,
}

impl AgentView {
    /// The first 12 characters of the id, as tables show it.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}
