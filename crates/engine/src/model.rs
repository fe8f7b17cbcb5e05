//! The engine's picture of an agent: its spec (what to run, fixed at
//! creation) and its status (state, reason, current run), and how both map
//! to store rows. A spec is made from a request in `spec`; an agent is
//! shown in `view`; its health is assessed in `assess`.

use crate::limits::SpecLimits;
use crate::policy::RestartSpec;
use crate::probe::{HealthCheck, ProbeStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wrangle_os::ProcessId;
use wrangle_shim::protocol::{LimitPlan, LogRotation};
use wrangle_store::{AgentRow, RunRow};
use wrangle_wire::{AdapterKind, Cause, Health, State, TelemetryMode};

/// Stop signal when none is given.
pub const DEFAULT_STOP_SIGNAL: i32 = libc::SIGTERM;
/// Grace period after the stop signal when none is given.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// File name of a run's status file (`$WRANGLE_STATUS_FILE`).
pub const STATUS_FILE: &str = "status.json";

/// What an agent runs and how it is stopped; fixed when it is created and
/// stored as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSpec {
    /// The argv.
    pub command: Vec<String>,
    /// Variables set explicitly (`--env`).
    pub env: BTreeMap<String, String>,
    /// The environment the agent starts from (usually the caller's); the
    /// daemon's own when absent. Shared by the agents of one batch (or
    /// loaded alike): ten thousand copies of a shell's environment were a
    /// fifth of a daemon's memory.
    pub base_env: Option<Arc<BTreeMap<String, String>>>,
    /// Absolute working directory.
    pub cwd: PathBuf,
    /// Signal that starts the staged stop.
    pub stop_signal: i32,
    /// Grace period after the stop signal, in milliseconds.
    pub stop_timeout_ms: u64,
    /// Restart policy and time limit (absent in specs stored before them).
    #[serde(default)]
    pub restart: RestartSpec,
    /// Concurrency group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Queue priority: higher starts first.
    #[serde(default)]
    pub priority: i32,
    /// Labels given at creation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The health probe, if one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Resource limits; specs stored before limits existed have none.
    #[serde(default, skip_serializing_if = "SpecLimits::is_empty")]
    pub limits: SpecLimits,
    /// Output and heartbeat silence after which the agent is hung, in
    /// milliseconds; never when absent (and in specs stored before it).
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
    /// How its logs are rotated; the defaults in specs stored before.
    #[serde(default, skip_serializing_if = "is_default_rotation")]
    pub logs: LogRotation,
    /// How its session is read and what it may spend.
    #[serde(flatten)]
    pub session: SessionSpec,
}

fn is_default_rotation(rotation: &LogRotation) -> bool {
    *rotation == LogRotation::default()
}

/// How an agent's session is read, how long it may linger after its
/// result, and what it may spend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionSpec {
    /// The adapter asked for; chosen by the command when absent (`auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<AdapterKind>,
    /// How long the agent may go on after its final result, in
    /// milliseconds: the default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linger_ms: Option<u64>,
    /// Never stop it for lingering (`--linger never`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub linger_never: bool,
    /// Most US dollars its session may cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    /// Most tokens its session may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u64>,
    /// Whether its telemetry is received; `auto` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetryMode>,
}

impl AgentSpec {
    /// The grace period after the stop signal.
    pub fn stop_timeout(&self) -> Duration {
        Duration::from_millis(self.stop_timeout_ms)
    }

    /// The shim's command for the staged stop with this agent's own signal
    /// and grace period.
    pub fn stop_command(&self) -> wrangle_shim::protocol::ControlCommand {
        wrangle_shim::protocol::ControlCommand::Stop {
            signal: self.stop_signal,
            timeout_ms: self.stop_timeout_ms,
        }
    }

    /// The silence after which the agent is hung, if any.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout_ms.map(Duration::from_millis)
    }
}

/// What never changes about an agent.
#[derive(Debug)]
pub struct Identity {
    /// Unique id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// What it runs. (Its JSON is written once, when the agent is
    /// created, and not kept: with a fleet's environments it is most of
    /// an agent's memory.)
    pub spec: AgentSpec,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// One run of an agent as the engine tracks it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Run {
    /// Its number, from 1.
    pub number: u32,
    /// Its directory (logs, shim files).
    pub dir: PathBuf,
    /// The shim, once spawned.
    pub shim: Option<ProcessId>,
    /// The agent's main process, once exec'd.
    pub process: Option<ProcessId>,
    /// The cgroup holding its tree, if any.
    pub cgroup: Option<PathBuf>,
    /// When the exec was confirmed.
    pub started_at: Option<DateTime<Utc>>,
    /// When the main process ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
    /// Why it is being stopped (while `stopping`), or why it ended.
    pub cause: Option<Cause>,
    /// How the run enforces the agent's limits, as its shim reported
    /// (kept in memory only: empty for runs that ended before a restart).
    pub limits: LimitPlan,
}

impl Run {
    /// Seconds the run has run, until it ended or until `now`.
    pub fn runtime_seconds(&self, now: DateTime<Utc>) -> Option<f64> {
        self.started_at.map(|started| {
            let end = self.ended_at.unwrap_or(now);
            (end - started).num_milliseconds().max(0) as f64 / 1000.0
        })
    }

    /// Path of the run's stdout log.
    pub fn stdout_log(&self) -> PathBuf {
        self.dir.join(wrangle_shim::protocol::STDOUT_LOG)
    }

    /// Path of the run's stderr log.
    pub fn stderr_log(&self) -> PathBuf {
        self.dir.join(wrangle_shim::protocol::STDERR_LOG)
    }

    /// Path of the run's status file (`$WRANGLE_STATUS_FILE`).
    pub fn status_file(&self) -> PathBuf {
        self.dir.join(STATUS_FILE)
    }

    /// The store row of this run.
    pub fn row(&self, agent_id: &str) -> RunRow {
        let pair = |id: Option<ProcessId>| id.map(|id| (id.pid, id.start_time));
        RunRow {
            agent_id: agent_id.to_string(),
            run: self.number,
            dir: self.dir.display().to_string(),
            shim: pair(self.shim),
            process: pair(self.process),
            cgroup: self.cgroup.as_ref().map(|c| c.display().to_string()),
            started_at: self.started_at,
            ended_at: self.ended_at,
            exit_code: self.exit_code,
            signal: self.signal,
            cause: self.cause,
        }
    }

    /// The run as the store holds it.
    pub fn from_row(row: &RunRow) -> Run {
        let id =
            |pair: Option<(i32, u64)>| pair.map(|(pid, start_time)| ProcessId { pid, start_time });
        Run {
            number: row.run,
            dir: PathBuf::from(&row.dir),
            shim: id(row.shim),
            process: id(row.process),
            cgroup: row.cgroup.as_ref().map(PathBuf::from),
            started_at: row.started_at,
            ended_at: row.ended_at,
            exit_code: row.exit_code,
            signal: row.signal,
            cause: row.cause,
            limits: LimitPlan::default(),
        }
    }
}

/// What changes about an agent: only [`crate::Engine`]'s transition
/// function writes it, store first.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Lifecycle state.
    pub state: State,
    /// Why it is in that state.
    pub reason: Option<String>,
    /// The current (or last) run.
    pub run: Run,
    /// In `backoff`: when the next run starts.
    pub restart_at: Option<DateTime<Utc>>,
}

impl Status {
    /// True while a run's process lives: the states that have a health.
    pub fn is_live(&self) -> bool {
        matches!(self.state, State::Running | State::Stopping)
    }
}

/// Health as last assessed (once per sampler tick, and on each probe
/// result; see `assess`), with the reason for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// The health.
    pub health: Health,
    /// Why, for people.
    pub reason: Option<String>,
}

impl Assessment {
    /// Nothing is known: the agent does not run.
    pub const UNKNOWN: Assessment = Assessment {
        health: Health::Unknown,
        reason: None,
    };

    /// A run whose exec was just confirmed: nothing says otherwise yet.
    pub const HEALTHY: Assessment = Assessment {
        health: Health::Healthy,
        reason: None,
    };
}

/// What an agent reported last in its status file, as published in an
/// `agent.progress` event (at most one a second per agent).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reported {
    /// The run the report is of.
    pub run: u32,
    /// The progress and message published last.
    pub published: Option<(Option<f64>, Option<String>)>,
    /// When.
    pub at: Option<DateTime<Utc>>,
}

/// An agent: identity plus status.
#[derive(Debug, Clone)]
pub struct Agent {
    /// What never changes.
    pub identity: Arc<Identity>,
    /// What does.
    pub status: Status,
    /// What its health probe found of the current run (see [`crate::probe`]).
    pub probe: ProbeStatus,
    /// Its health as last assessed.
    pub health: Assessment,
    /// Its last report published as progress.
    pub reported: Reported,
    /// What its adapter read of its current run.
    pub session: crate::sessions::SessionFindings,
}

impl Agent {
    /// The store row of the agent, for a change of it: without its spec,
    /// which no change writes (see [`Agent::created_row`]).
    pub fn row(&self) -> AgentRow {
        self.created_row(String::new())
    }

    /// The store row of the agent as it is created, with its spec as JSON.
    pub fn created_row(&self, spec_json: String) -> AgentRow {
        AgentRow {
            id: self.identity.id.clone(),
            name: self.identity.name.clone(),
            spec: spec_json,
            state: self.status.state,
            reason: self.status.reason.clone(),
            run: self.status.run.number,
            created_at: self.identity.created_at,
            health: self.health.health,
            health_reason: self.health.reason.clone(),
            probe: (self.probe.run != 0)
                .then(|| serde_json::to_string(&self.probe).ok())
                .flatten(),
            restart_at: self.status.restart_at,
        }
    }

    /// Its health now, as last assessed: `unknown` unless a run lives.
    pub fn current_health(&self) -> (Health, Option<&str>) {
        if self.status.is_live() {
            (self.health.health, self.health.reason.as_deref())
        } else {
            (Health::Unknown, None)
        }
    }
}
