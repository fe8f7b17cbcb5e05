//! Request bodies, query strings and the responses that are not an agent.

use crate::agent::AgentView;
use crate::logs::LogStream;
use crate::options::RunOptions;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `POST /v1/agents`: create an agent and start its first run.
///
/// The call answers once the exec is confirmed (state `running`) or has
/// failed (state `failed`, with the reason).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgent {
    /// Unique name; one is made up when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// The argv to run; never a shell string unless it is `sh -c ...`.
    pub command: Vec<String>,
    /// Variables set on top of the base environment (`--env K=V`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The base environment, usually the caller's own; when absent, the
    /// daemon's environment.
    #[serde(default)]
    pub inherit_env: Option<BTreeMap<String, String>>,
    /// Absolute working directory; when absent, the daemon's.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Free-form labels, kept and shown; `wrangle up` marks its agents
    /// with the file and a hash of their declaration.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// How it runs: stop, health, restarts, limits, session, budget.
    #[serde(flatten)]
    pub options: RunOptions,
}

/// `POST /v1/agents/batch`: many agents created in one request, all or
/// none: one bad item refuses the whole batch, naming each bad item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgents {
    /// The base environment of every agent that gives none of its own
    /// (sent once for the batch, not once per agent).
    #[serde(default)]
    pub inherit_env: Option<BTreeMap<String, String>>,
    /// The agents, started in this order.
    pub agents: Vec<CreateAgent>,
}

/// `POST /v1/agents/batch`: check only, or create.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
pub struct BatchQuery {
    /// Check the batch as a create would (all but the names being free)
    /// and create nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// `GET /v1/agents`: which agents to list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Include agents that have ended.
    #[serde(default)]
    pub all: bool,
    /// Only agents in one of these states (comma-separated, e.g.
    /// `running,backoff`); ended states need no `all`.
    #[serde(default)]
    pub state: Option<String>,
    /// Only agents of this group.
    #[serde(default)]
    pub group: Option<String>,
    /// Only agents with these labels (comma-separated `KEY=VALUE`, or
    /// `KEY` for any value).
    #[serde(default)]
    pub label: Option<String>,
    /// At most this many agents (the oldest first).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Indented JSON (two spaces a level), as `wrangle ps --json` prints
    /// it: the CLI need not decode ten thousand agents to indent them.
    #[serde(default)]
    pub pretty: bool,
}

/// `POST /v1/stop`: stop agents with the staged stop and wait for them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    /// Agents by id, name or unique id prefix.
    #[serde(default)]
    pub agents: Vec<String>,
    /// Stop every agent that has not ended.
    #[serde(default)]
    pub all: bool,
    /// Grace period instead of each agent's own stop timeout.
    #[serde(default)]
    pub timeout: Option<String>,
}

/// How one agent ended after a stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StopResult {
    /// The agent after it ended.
    pub agent: AgentView,
    /// True when the agent had already ended before the stop.
    pub already_ended: bool,
    /// In words: `stopped by SIGTERM in 0.02s`, `killed by SIGKILL after 15s`.
    pub outcome: String,
}

/// `POST /v1/agents/{agent}/kill`: send a signal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KillRequest {
    /// Signal to send; `SIGKILL` (to the whole tree) when absent.
    #[serde(default)]
    pub signal: Option<String>,
}

/// `DELETE /v1/agents/{agent}`: forget an agent and delete its logs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
pub struct RemoveQuery {
    /// Stop the agent first if it still runs.
    #[serde(default)]
    pub force: bool,
}

/// `GET /v1/agents/{agent}/logs`: which part of the output to send.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
pub struct LogsQuery {
    /// Only this stream; both, interleaved by capture time, when absent.
    #[serde(default)]
    pub stream: Option<LogStream>,
    /// Only the last N lines.
    #[serde(default)]
    pub tail: Option<usize>,
    /// Keep sending new lines until the agent ends.
    #[serde(default)]
    pub follow: bool,
    /// Which run; the current one when absent.
    #[serde(default)]
    pub run: Option<u32>,
    /// Only lines captured at or after this time: RFC 3339, or a duration
    /// ago (`10m`).
    #[serde(default)]
    pub since: Option<String>,
    /// Only lines captured at or before this time (same forms); a followed
    /// log ends once it has passed.
    #[serde(default)]
    pub until: Option<String>,
}

/// `GET /v1/daemon`: who answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DaemonInfo {
    /// The daemon's pid.
    pub pid: i32,
    /// wrangle's version.
    pub version: String,
    /// `$WRANGLE_HOME` of this daemon.
    pub home: String,
    /// When this daemon started.
    pub started_at: DateTime<Utc>,
    /// How process trees are contained, e.g. `cgroup v2 at /sys/fs/cgroup/...`.
    pub containment: String,
    /// Agents known, ended ones included.
    pub agents: usize,
    /// Agents that have not ended.
    pub active: usize,
    /// Most agents that may run at once (`wrangle daemon --max-running`);
    /// none means no limit.
    pub max_running: Option<u32>,
}

/// `POST /v1/daemon/stop`: shut the daemon down.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DaemonStopRequest {
    /// Stop every agent first; otherwise they keep running and a new
    /// daemon re-attaches them.
    #[serde(default)]
    pub stop_agents: bool,
}
