//! A create request checked into an agent's spec: every option parsed
//! with the parsers the CLI uses, defaults filled in, and what the spec
//! means for each run (its environment).

use crate::error::EngineError;
use crate::limits::SpecLimits;
use crate::model::{AgentSpec, SessionSpec, DEFAULT_STOP_SIGNAL, DEFAULT_STOP_TIMEOUT};
use crate::policy::RestartSpec;
use crate::probe::HealthCheck;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wrangle_shim::logfiles::LogFiles;
use wrangle_shim::protocol::{LogRotation, STDERR_LOG, STDOUT_LOG};
use wrangle_wire::{parse, CreateAgent, LogStream, RunOptions, TelemetryMode};

impl AgentSpec {
    /// Checks a create request and turns it into a spec; relative paths are
    /// refused, a missing cwd means the daemon's.
    pub fn from_request(
        request: &CreateAgent,
        daemon_cwd: &Path,
    ) -> Result<AgentSpec, EngineError> {
        let base_env = request.inherit_env.clone().map(Arc::new);
        AgentSpec::checked(request, base_env, daemon_cwd)
    }

    /// [`AgentSpec::from_request`] of a request that is not needed after:
    /// the base environment (often the largest part) is moved, not copied;
    /// without one of its own, the request takes `shared_env` (a batch's).
    pub fn from_owned_request(
        mut request: CreateAgent,
        shared_env: Option<&Arc<BTreeMap<String, String>>>,
        daemon_cwd: &Path,
    ) -> Result<AgentSpec, EngineError> {
        let base_env = match request.inherit_env.take() {
            Some(own) => Some(Arc::new(own)),
            None => shared_env.cloned(),
        };
        AgentSpec::checked(&request, base_env, daemon_cwd)
    }

    fn checked(
        request: &CreateAgent,
        base_env: Option<Arc<BTreeMap<String, String>>>,
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
        let environments = request
            .env
            .iter()
            .chain(base_env.iter().flat_map(|env| env.iter()));
        for (key, value) in environments {
            parse::validate_env_key(key).map_err(EngineError::invalid)?;
            if value.contains('\0') {
                return Err(EngineError::invalid(format!(
                    "environment variable {key:?} contains a NUL byte in its value"
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
        let options = &request.options;
        let stop_signal = match &options.stop_signal {
            Some(signal) => parse::parse_signal(signal).map_err(EngineError::invalid)?,
            None => DEFAULT_STOP_SIGNAL,
        };
        let stop_timeout = match &options.stop_timeout {
            Some(timeout) => parse::parse_duration(timeout).map_err(EngineError::invalid)?,
            None => DEFAULT_STOP_TIMEOUT,
        };
        let idle_timeout = options
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
            restart: RestartSpec::from_options(options)?,
            group: match &options.group {
                Some(group) => {
                    parse::validate_name(group).map_err(|error| {
                        EngineError::invalid(error.replace("name", "group name"))
                    })?;
                    Some(group.clone())
                }
                None => None,
            },
            priority: options.priority.unwrap_or(0),
            labels: checked_labels(&request.labels)?,
            health_check: HealthCheck::from_options(options)?,
            limits: SpecLimits::from_options(options)?,
            idle_timeout_ms: idle_timeout.map(|timeout| timeout.as_millis() as u64),
            logs: log_rotation(options)?,
            session: SessionSpec::from_options(options)?,
        })
    }

    /// The files of stream `stream` of the run in `run_dir`.
    pub fn log_files(&self, run_dir: &Path, stream: LogStream) -> LogFiles {
        let name = match stream {
            LogStream::Stdout => STDOUT_LOG,
            LogStream::Stderr => STDERR_LOG,
        };
        LogFiles::new(run_dir, name, self.logs.max_size)
    }

    /// The agent's environment as it asked for it: the base, then `--env`
    /// (wrangle's own variables left out).
    pub fn merged_env(&self) -> BTreeMap<String, String> {
        let mut env = match &self.base_env {
            Some(base) => (**base).clone(),
            None => std::env::vars().collect(),
        };
        env.extend(
            self.env
                .iter()
                .map(|(key, value)| (key.clone(), value.clone())),
        );
        env
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

impl SessionSpec {
    /// The adapter, linger and budget options, checked.
    pub fn from_options(options: &RunOptions) -> Result<SessionSpec, EngineError> {
        let invalid = EngineError::invalid;
        let linger = options
            .linger
            .as_deref()
            .map(parse::parse_linger)
            .transpose()
            .map_err(invalid)?;
        Ok(SessionSpec {
            adapter: options
                .adapter
                .as_deref()
                .map(parse::parse_adapter)
                .transpose()
                .map_err(invalid)?
                .flatten(),
            linger_ms: linger.flatten().map(|linger| linger.as_millis() as u64),
            linger_never: linger.is_some_and(|linger| linger.is_none()),
            budget_usd: options
                .budget_usd
                .map(parse::check_budget_usd)
                .transpose()
                .map_err(invalid)?,
            budget_tokens: options
                .budget_tokens
                .map(parse::check_budget_tokens)
                .transpose()
                .map_err(invalid)?,
            telemetry: options
                .telemetry
                .as_deref()
                .map(str::parse::<TelemetryMode>)
                .transpose()
                .map_err(invalid)?,
        })
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

/// The environments agents start from, each kept once: a client that
/// creates agents one request at a time sends the same environment with
/// each, and ten thousand copies of it were a fifth of the daemon's memory.
#[derive(Debug, Default)]
pub struct Environments {
    known: std::collections::HashSet<Arc<BTreeMap<String, String>>>,
}

/// Environments kept before those no agent holds any more are let go.
const ENVIRONMENTS_KEPT: usize = 256;

impl Environments {
    /// The one copy of `env`: a known equal one, or `env`, now known.
    pub fn intern(&mut self, env: Arc<BTreeMap<String, String>>) -> Arc<BTreeMap<String, String>> {
        if let Some(known) = self.known.get(&env) {
            return known.clone();
        }
        if self.known.len() >= ENVIRONMENTS_KEPT {
            self.known.retain(|known| Arc::strong_count(known) > 1);
        }
        self.known.insert(env.clone());
        env
    }
}

/// How the agent's logs are rotated, from its options.
fn log_rotation(options: &RunOptions) -> Result<LogRotation, EngineError> {
    let defaults = LogRotation::default();
    Ok(LogRotation {
        max_size: match &options.log_max_size {
            Some(size) => parse::parse_log_max_size(size).map_err(EngineError::invalid)?,
            None => defaults.max_size,
        },
        max_files: match options.log_max_files {
            Some(files) => parse::check_log_max_files(files).map_err(EngineError::invalid)?,
            None => defaults.max_files,
        },
    })
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
        bad.options.stop_timeout = Some("soon".into());
        assert!(AgentSpec::from_request(&bad, Path::new("/"))
            .unwrap_err()
            .message
            .contains("invalid duration"));
        bad.options.stop_timeout = None;
        bad.options.idle_timeout = Some("bogus".into());
        assert!(AgentSpec::from_request(&bad, Path::new("/"))
            .unwrap_err()
            .message
            .contains("invalid duration"));
        bad.options.idle_timeout = Some("0s".into());
        assert!(AgentSpec::from_request(&bad, Path::new("/"))
            .unwrap_err()
            .message
            .contains("longer than 0"));
        bad.options.idle_timeout = None;
        bad.options.stop_signal = Some("SIGNOPE".into());
        assert!(AgentSpec::from_request(&bad, Path::new("/"))
            .unwrap_err()
            .message
            .contains("invalid signal"));
    }

    #[test]
    fn the_idle_timeout_is_kept_and_old_specs_load_without_one() {
        let mut req = request(&["sleep", "1"]);
        req.options.idle_timeout = Some("1m30s".into());
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
        let spec = AgentSpec::from_owned_request(req, None, Path::new("/")).unwrap();
        let pairs = spec.environment("abc", 2, Path::new("/x/status.json"));
        let env: BTreeMap<_, _> = pairs.iter().cloned().collect();
        assert_eq!(pairs.len(), env.len(), "a variable twice: {pairs:?}");
        assert_eq!(env["A"], "explicit");
        assert_eq!(env["PATH"], "/bin");
        assert_eq!(env["WRANGLE_AGENT_ID"], "abc");
        assert_eq!(env["WRANGLE_RUN"], "2");
        assert_eq!(env["WRANGLE_STATUS_FILE"], "/x/status.json");
    }

    #[test]
    fn agents_of_a_batch_share_its_environment_unless_they_bring_their_own() {
        let shared = Arc::new(BTreeMap::from([("PATH".to_string(), "/bin".to_string())]));
        let one = AgentSpec::from_owned_request(request(&["true"]), Some(&shared), Path::new("/"))
            .unwrap();
        let two = AgentSpec::from_owned_request(request(&["true"]), Some(&shared), Path::new("/"))
            .unwrap();
        let (one, two) = (one.base_env.unwrap(), two.base_env.unwrap());
        assert!(Arc::ptr_eq(&one, &two) && Arc::ptr_eq(&one, &shared));
        let mut own = request(&["true"]);
        own.inherit_env = Some(BTreeMap::from([("PATH".into(), "/usr/bin".into())]));
        let own = AgentSpec::from_owned_request(own, Some(&shared), Path::new("/")).unwrap();
        assert_eq!(own.base_env.unwrap()["PATH"], "/usr/bin");
    }

    #[test]
    fn equal_environments_are_kept_once_and_unused_ones_let_go() {
        let mut environments = Environments::default();
        let env = |value: &str| Arc::new(BTreeMap::from([("A".to_string(), value.to_string())]));
        let first = environments.intern(env("1"));
        let again = environments.intern(env("1"));
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(&first, &environments.intern(env("2"))));
        drop((first, again));
        for n in 0..ENVIRONMENTS_KEPT + 10 {
            environments.intern(env(&n.to_string()));
        }
        assert!(
            environments.known.len() <= ENVIRONMENTS_KEPT,
            "unused ones go"
        );
    }
}
