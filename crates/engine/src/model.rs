//! The engine's picture of an agent: its spec (what to run, fixed at
//! creation) and its status (state, reason, current run), and how both map
//! to store rows and to the API's [`AgentView`].

use crate::error::EngineError;
use crate::health::{self, HealthInputs, MainProcess};
use crate::limits::SpecLimits;
use crate::policy::RestartSpec;
use crate::probe::{HealthCheck, ProbeStatus};
use crate::sampler::Observation;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wrangle_os::ProcessId;
use wrangle_shim::protocol::LimitPlan;
use wrangle_store::{AgentRow, RunRow};
use wrangle_wire::parse::{self, signal_name};
use wrangle_wire::{AdapterKind, AgentView, Cause, CreateAgent, Health, State};

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
    /// daemon's own when absent.
    pub base_env: Option<BTreeMap<String, String>>,
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
    /// The adapter asked for; chosen by the command when absent (`auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<AdapterKind>,
}

impl AgentSpec {
    /// Checks a create request and turns it into a spec; relative paths are
    /// refused, a missing cwd means the daemon's.
    pub fn from_request(
        request: &CreateAgent,
        daemon_cwd: &Path,
    ) -> Result<AgentSpec, EngineError> {
        AgentSpec::checked(request, request.inherit_env.clone(), daemon_cwd)
    }

    /// [`AgentSpec::from_request`] of a request that is not needed after:
    /// the base environment (often the largest part) is moved, not copied.
    pub fn from_owned_request(
        mut request: CreateAgent,
        daemon_cwd: &Path,
    ) -> Result<AgentSpec, EngineError> {
        let base_env = request.inherit_env.take();
        AgentSpec::checked(&request, base_env, daemon_cwd)
    }

    fn checked(
        request: &CreateAgent,
        base_env: Option<BTreeMap<String, String>>,
        daemon_cwd: &Path,
    ) -> Result<AgentSpec, EngineError> {
        if request.command.is_empty() || request.command[0].is_empty() {
            return Err(EngineError::invalid(
                "the command is empty: give the program to run after `--`, e.g. `wrangle run -- sleep 60`",
            ));
        }
        if let Some(arg) = request.command.iter().find(|arg| arg.contains('\0')) {
            return Err(EngineError::invalid(format!(
                "command argument {arg:?} contains a NUL byte"
            )));
        }
        let environments = request.env.iter().chain(base_env.iter().flatten());
        for (key, value) in environments {
            parse::validate_env_key(key).map_err(EngineError::invalid)?;
            if value.contains('\0') {
                return Err(EngineError::invalid(format!(
                    "environment variable {key} contains a NUL byte"
                )));
            }
        }
        let cwd = match &request.cwd {
            Some(cwd) if Path::new(cwd).is_absolute() => PathBuf::from(cwd),
            Some(cwd) => {
                return Err(EngineError::invalid(format!(
                    "working directory {cwd:?} must be an absolute path"
                )))
            }
            None => daemon_cwd.to_path_buf(),
        };
        let stop_signal = match &request.stop_signal {
            Some(signal) => parse::parse_signal(signal).map_err(EngineError::invalid)?,
            None => DEFAULT_STOP_SIGNAL,
        };
        let stop_timeout = match &request.stop_timeout {
            Some(timeout) => parse::parse_duration(timeout).map_err(EngineError::invalid)?,
            None => DEFAULT_STOP_TIMEOUT,
        };
        let idle_timeout = request
            .idle_timeout
            .as_deref()
            .map(parse::parse_idle_timeout)
            .transpose()
            .map_err(EngineError::invalid)?;
        Ok(AgentSpec {
            command: request.command.clone(),
            env: request.env.clone(),
            base_env,
            cwd,
            stop_signal,
            stop_timeout_ms: stop_timeout.as_millis() as u64,
            restart: RestartSpec::from_request(request)?,
            group: match &request.group {
                Some(group) => {
                    parse::validate_name(group).map_err(|error| {
                        EngineError::invalid(error.replace("name", "group name"))
                    })?;
                    Some(group.clone())
                }
                None => None,
            },
            priority: request.priority.unwrap_or(0),
            labels: checked_labels(&request.labels)?,
            health_check: HealthCheck::from_request(request)?,
            limits: SpecLimits::from_request(request)?,
            idle_timeout_ms: idle_timeout.map(|timeout| timeout.as_millis() as u64),
            adapter: request
                .adapter
                .as_deref()
                .map(parse::parse_adapter)
                .transpose()
                .map_err(EngineError::invalid)?
                .flatten(),
        })
    }

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

    /// The agent's whole environment for one run: the base, then `--env`,
    /// then wrangle's own variables.
    pub fn environment(
        &self,
        agent_id: &str,
        run: u32,
        status_file: &Path,
    ) -> Vec<(String, String)> {
        let own = [
            ("WRANGLE_AGENT_ID", agent_id.to_string()),
            ("WRANGLE_RUN", run.to_string()),
            ("WRANGLE_STATUS_FILE", status_file.display().to_string()),
        ];
        let replaced =
            |key: &str| self.env.contains_key(key) || own.iter().any(|(name, _)| *name == key);
        let mut env: Vec<(String, String)> = match &self.base_env {
            Some(base) => base
                .iter()
                .filter(|(key, _)| !replaced(key))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
            None => std::env::vars().filter(|(key, _)| !replaced(key)).collect(),
        };
        env.reserve(self.env.len() + own.len());
        env.extend(
            self.env
                .iter()
                .map(|(key, value)| (key.clone(), value.clone())),
        );
        env.extend(own.into_iter().map(|(key, value)| (key.to_string(), value)));
        env
    }
}

/// Labels as given, unless a key is empty or one holds a NUL byte.
fn checked_labels(
    labels: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, EngineError> {
    for (key, value) in labels {
        if key.is_empty() {
            return Err(EngineError::invalid("a label key cannot be empty"));
        }
        if key.contains('\0') || value.contains('\0') {
            return Err(EngineError::invalid(format!(
                "label {key:?} contains a NUL byte"
            )));
        }
    }
    Ok(labels.clone())
}

/// What never changes about an agent.
#[derive(Debug)]
pub struct Identity {
    /// Unique id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// What it runs.
    pub spec: AgentSpec,
    /// The spec as stored.
    pub spec_json: String,
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
    /// The store row of the agent.
    pub fn row(&self) -> AgentRow {
        AgentRow {
            id: self.identity.id.clone(),
            name: self.identity.name.clone(),
            spec: self.identity.spec_json.clone(),
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

    /// Assesses health, separate from state, and why; `observed` is what
    /// the sampler saw of the current run.
    pub fn assess(
        &self,
        now: DateTime<Utc>,
        observed: Option<&Observation>,
    ) -> (Health, Option<String>) {
        // What the adapter read: the sampler's latest, else what is stored.
        let session = observed
            .and_then(|seen| seen.session.as_deref())
            .or(self.session.read.as_deref())
            .filter(|_| self.session.run == self.status.run.number)
            .map(|read| read.reader.session());
        health::assess(&HealthInputs {
            waiting: session.and_then(|session| session.waiting.as_deref()),
            explained: session.and_then(|session| session.busy(now)),
            state: self.status.state,
            main: observed.map_or(MainProcess::NotSampled, |seen| seen.main),
            silence: health::silence(
                now,
                [
                    self.status.run.started_at,
                    observed.and_then(|seen| seen.last_output_at),
                    observed.and_then(|seen| seen.last_heartbeat_at),
                ],
            ),
            idle_timeout: self.identity.spec.idle_timeout(),
            probe_failure: self.probe_failure().as_deref(),
            status_file_error: observed.and_then(|seen| seen.report_error.as_deref()),
        })
    }

    /// The agent as the API shows it, `now` being the time of the answer
    /// and `observed` what the sampler saw of the current run.
    pub fn view(
        &self,
        now: DateTime<Utc>,
        observed: Option<&Observation>,
        prices: &crate::adapters::Prices,
    ) -> AgentView {
        let identity = &self.identity;
        let run = &self.status.run;
        let runtime = run.runtime_seconds(now);
        let (health, health_reason) = self.current_health();
        AgentView {
            id: identity.id.clone(),
            name: identity.name.clone(),
            state: self.status.state,
            health,
            health_reason: health_reason.map(str::to_owned),
            run: run.number,
            restarts: run.number.saturating_sub(1),
            restart: identity.spec.restart.policy,
            max_restarts: identity.spec.restart.max_restarts,
            group: identity.spec.group.clone(),
            priority: identity.spec.priority,
            labels: identity.spec.labels.clone(),
            on_hang: identity.spec.restart.on_hang,
            timeout_seconds: identity
                .spec
                .restart
                .timeout()
                .map(|timeout| timeout.as_secs_f64()),
            pid: run.process.map(|p| p.pid),
            shim_pid: run.shim.map(|p| p.pid),
            command: identity.spec.command.clone(),
            cwd: identity.spec.cwd.display().to_string(),
            env: identity.spec.env.keys().cloned().collect(),
            stop_signal: signal_name(identity.spec.stop_signal),
            stop_timeout_seconds: identity.spec.stop_timeout().as_secs_f64(),
            created_at: identity.created_at,
            started_at: run.started_at,
            ended_at: run.ended_at,
            exit_code: run.exit_code,
            signal: run.signal.map(signal_name),
            reason: self.status.reason.clone(),
            cause: run.cause,
            restart_at: self.status.restart_at,
            runtime_seconds: runtime,
            containment: Some(match &run.cgroup {
                Some(cgroup) => format!("cgroup {}", cgroup.display()),
                None => "process group + subreaper".to_string(),
            })
            .filter(|_| run.shim.is_some()),
            process: observed.and_then(|seen| seen.process.clone()),
            tree: observed.and_then(|seen| seen.tree.clone()),
            progress: observed.and_then(|seen| seen.report.progress),
            message: observed.and_then(|seen| seen.report.message.clone()),
            details: observed.and_then(|seen| seen.report.details.clone()),
            last_output_at: observed.and_then(|seen| seen.last_output_at),
            last_heartbeat_at: observed.and_then(|seen| seen.last_heartbeat_at),
            idle_timeout_seconds: identity.spec.idle_timeout().map(|t| t.as_secs_f64()),
            health_check: identity
                .spec
                .health_check
                .as_ref()
                .map(HealthCheck::describe),
            limits: crate::limits::view(&identity.spec.limits, &run.limits),
            session: self
                .session
                .read
                .as_ref()
                .filter(|_| self.session.run == run.number)
                .map(|read| read.reader.view(prices)),
            stdout_log: run.stdout_log().display().to_string(),
            stderr_log: run.stderr_log().display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(command: &[&str]) -> CreateAgent {
        CreateAgent {
            command: command.iter().map(|s| s.to_string()).collect(),
            ..CreateAgent::default()
        }
    }

    #[test]
    fn a_spec_takes_defaults_and_refuses_bad_values() {
        let spec = AgentSpec::from_request(&request(&["sleep", "1"]), Path::new("/srv")).unwrap();
        assert_eq!(spec.cwd, Path::new("/srv"));
        assert_eq!(spec.stop_signal, libc::SIGTERM);
        assert_eq!(spec.stop_timeout(), Duration::from_secs(10));

        let mut bad = request(&[]);
        assert!(AgentSpec::from_request(&bad, Path::new("/"))
            .unwrap_err()
            .message
            .contains("empty"));
        bad = request(&["x"]);
        bad.cwd = Some("relative/dir".into());
        assert!(AgentSpec::from_request(&bad, Path::new("/")).is_err());
        bad.cwd = None;
        bad.stop_timeout = Some("soon".into());
        assert!(AgentSpec::from_request(&bad, Path::new("/"))
            .unwrap_err()
            .message
            .contains("invalid duration"));
        bad.stop_timeout = None;
        bad.idle_timeout = Some("bogus".into());
        assert!(AgentSpec::from_request(&bad, Path::new("/"))
            .unwrap_err()
            .message
            .contains("invalid duration"));
        bad.idle_timeout = Some("0s".into());
        assert!(AgentSpec::from_request(&bad, Path::new("/"))
            .unwrap_err()
            .message
            .contains("longer than 0"));
        bad.idle_timeout = None;
        bad.stop_signal = Some("SIGNOPE".into());
        assert!(AgentSpec::from_request(&bad, Path::new("/"))
            .unwrap_err()
            .message
            .contains("invalid signal"));
    }

    #[test]
    fn the_idle_timeout_is_kept_and_old_specs_load_without_one() {
        let mut req = request(&["sleep", "1"]);
        req.idle_timeout = Some("1m30s".into());
        let spec = AgentSpec::from_request(&req, Path::new("/")).unwrap();
        assert_eq!(spec.idle_timeout(), Some(Duration::from_secs(90)));
        let stored: AgentSpec =
            serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(stored, spec);

        let before_idle_timeouts = r#"{"command":["sleep","1"],"env":{},"base_env":null,
            "cwd":"/","stop_signal":15,"stop_timeout_ms":10000}"#;
        let old: AgentSpec = serde_json::from_str(before_idle_timeouts).unwrap();
        assert_eq!(old.idle_timeout(), None);
        assert_eq!(old.stop_timeout(), Duration::from_secs(10));
    }

    #[test]
    fn the_environment_layers_base_explicit_and_wrangle_variables() {
        let mut req = request(&["env"]);
        req.inherit_env = Some(BTreeMap::from([
            ("PATH".into(), "/bin".into()),
            ("A".into(), "base".into()),
            ("WRANGLE_RUN".into(), "from the caller's own run".into()),
        ]));
        req.env = BTreeMap::from([("A".into(), "explicit".into())]);
        let spec = AgentSpec::from_owned_request(req, Path::new("/")).unwrap();
        let pairs = spec.environment("abc", 2, Path::new("/x/status.json"));
        let env: BTreeMap<_, _> = pairs.iter().cloned().collect();
        assert_eq!(pairs.len(), env.len(), "a variable twice: {pairs:?}");
        assert_eq!(env["A"], "explicit");
        assert_eq!(env["PATH"], "/bin");
        assert_eq!(env["WRANGLE_AGENT_ID"], "abc");
        assert_eq!(env["WRANGLE_RUN"], "2");
        assert_eq!(env["WRANGLE_STATUS_FILE"], "/x/status.json");
    }
}
