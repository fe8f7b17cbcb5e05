//! What the daemon and a shim say to each other, all through files in the
//! run's directory, so that either side can die and the other still finds
//! the truth:
//!
//! - `spec.json` ([`ShimSpec`]): written by the daemon before the shim starts.
//! - `state.json` ([`ShimState`]): rewritten atomically by the shim at each
//!   change; its last version holds the agent's exit status.
//! - `control`: a FIFO the shim reads [`ControlCommand`] lines from.
//! - `stdout.log`, `stderr.log` and their `.idx` capture-time indexes.
//!
//! The shim also writes its first [`ShimState`] after the exec (or its
//! failure) as one JSON line on its stdout, which the daemon that spawned
//! it waits for.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File name of the shim's spec in the run directory.
pub const SPEC_FILE: &str = "spec.json";
/// File name of the shim's state in the run directory.
pub const STATE_FILE: &str = "state.json";
/// File name of the control FIFO in the run directory.
pub const CONTROL_FIFO: &str = "control";
/// File name of the captured stdout.
pub const STDOUT_LOG: &str = "stdout.log";
/// File name of the captured stderr.
pub const STDERR_LOG: &str = "stderr.log";
/// File name of the shim's own diagnostics.
pub const SHIM_LOG: &str = "shim.log";
/// Suffix of a log's capture-time index (`stdout.log.idx`).
pub const INDEX_SUFFIX: &str = ".idx";

/// What the shim is to run and how to stop it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShimSpec {
    /// The agent's id.
    pub agent_id: String,
    /// Number of this run.
    pub run: u32,
    /// The argv to exec.
    pub argv: Vec<String>,
    /// The whole environment of the agent.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Signal that starts the staged stop of leftovers after the agent exits.
    pub stop_signal: i32,
    /// Grace period of that stop, in milliseconds.
    pub stop_timeout_ms: u64,
    /// Cgroup to create for the run; none means process group + subreaper.
    pub cgroup: Option<PathBuf>,
    /// The run's resource limits and how each is to be enforced.
    #[serde(default)]
    pub limits: LimitPlan,
    /// How its logs are rotated.
    #[serde(default)]
    pub logs: LogRotation,
}

/// Default size at which a log is rotated (`--log-max-size`).
pub const DEFAULT_LOG_MAX_SIZE: u64 = 20 * 1024 * 1024;
/// Default number of files kept per stream, the current one included
/// (`--log-max-files`).
pub const DEFAULT_LOG_MAX_FILES: u32 = 5;

/// How a run's logs are rotated: each stream's current file is rotated
/// at `max_size` bytes, and at most `max_files` files (the current one
/// included) are kept per stream, as docker's `max-size` and `max-file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRotation {
    /// Bytes per file.
    pub max_size: u64,
    /// Files kept per stream, the current one included.
    pub max_files: u32,
}

impl Default for LogRotation {
    fn default() -> Self {
        LogRotation {
            max_size: DEFAULT_LOG_MAX_SIZE,
            max_files: DEFAULT_LOG_MAX_FILES,
        }
    }
}

/// How one limit is enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforce {
    /// By a controller of the run's cgroup v2 ([`ShimSpec::cgroup`]).
    CgroupV2,
    /// By a cgroup v1 group made for the run, which the agent joins.
    CgroupV1 {
        /// The group's directory.
        group: PathBuf,
    },
    /// By a resource limit set on the agent before its exec.
    Rlimit,
    /// By the shim, which kills the tree when its resident memory is over.
    Watchdog,
}

/// One limit: its value and how it is enforced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limit<T> {
    /// The value: bytes, cores or a count.
    pub value: T,
    /// How.
    pub by: Enforce,
}

/// The limits of a run; each is absent when not asked for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LimitPlan {
    /// Memory of the tree in bytes.
    #[serde(default)]
    pub memory_max: Option<Limit<u64>>,
    /// CPU of the tree in cores.
    #[serde(default)]
    pub cpu_max: Option<Limit<f64>>,
    /// Processes and threads of the tree.
    #[serde(default)]
    pub pids_max: Option<Limit<u64>>,
    /// Open files per process.
    #[serde(default)]
    pub nofile: Option<Limit<u64>>,
}

impl LimitPlan {
    /// True when no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == LimitPlan::default()
    }

    /// The cgroup v1 groups of the run, each once (two controllers may
    /// share a hierarchy).
    pub fn v1_groups(&self) -> Vec<&Path> {
        let mut groups: Vec<&Path> = Vec::new();
        let planned = [
            self.memory_max.as_ref().map(|l| &l.by),
            self.cpu_max.as_ref().map(|l| &l.by),
            self.pids_max.as_ref().map(|l| &l.by),
        ];
        for by in planned.into_iter().flatten() {
            if let Enforce::CgroupV1 { group } = by {
                if !groups.contains(&group.as_path()) {
                    groups.push(group);
                }
            }
        }
        groups
    }
}

/// The memory watchdog killed the tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchdogKill {
    /// When.
    pub at: DateTime<Utc>,
    /// The tree's resident memory it saw, in bytes.
    pub rss_bytes: u64,
}

/// A process as pid and start time (see `wrangle_os::ProcessId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    /// Process id.
    pub pid: i32,
    /// Start time in clock ticks after boot.
    pub start_time: u64,
}

impl From<wrangle_os::ProcessId> for ProcessRef {
    fn from(id: wrangle_os::ProcessId) -> Self {
        ProcessRef {
            pid: id.pid,
            start_time: id.start_time,
        }
    }
}

impl From<ProcessRef> for wrangle_os::ProcessId {
    fn from(reference: ProcessRef) -> Self {
        wrangle_os::ProcessId {
            pid: reference.pid,
            start_time: reference.start_time,
        }
    }
}

/// Where the shim is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Set up; the agent is not exec'd yet.
    Starting,
    /// The agent's exec succeeded.
    Running,
    /// The agent's main process has been reaped, or never started; the
    /// shim may still be cleaning up its tree until `finished_at` is set.
    Exited,
}

/// How the agent's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
}

/// How far a staged stop had to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Escalation {
    /// The stop signal was sent once.
    Signaled,
    /// The stop signal was sent a second time after the grace period.
    Repeated,
    /// SIGKILL was sent to the tree.
    Killed,
}

/// A staged stop that was asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopRecord {
    /// When the shim received the request.
    pub requested_at: DateTime<Utc>,
    /// The stop signal.
    pub signal: i32,
    /// Grace period in milliseconds.
    pub timeout_ms: u64,
    /// How far the sequence went.
    pub escalation: Escalation,
}

/// A signal sent with `wrangle kill`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KillRecord {
    /// The signal.
    pub signal: i32,
    /// When it was sent.
    pub at: DateTime<Utc>,
}

/// Everything the shim knows about its run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShimState {
    /// Where the shim is.
    pub phase: Phase,
    /// The shim itself.
    pub shim: ProcessRef,
    /// The agent's main process, once exec'd.
    pub agent: Option<ProcessRef>,
    /// The run's cgroup, when one holds the tree.
    pub cgroup: Option<PathBuf>,
    /// When the exec succeeded.
    pub started_at: Option<DateTime<Utc>>,
    /// Why the agent could not be started.
    pub spawn_error: Option<String>,
    /// How the main process ended.
    pub exit: Option<ExitRecord>,
    /// When the main process was reaped.
    pub ended_at: Option<DateTime<Utc>>,
    /// The staged stop, if one was asked for.
    pub stop: Option<StopRecord>,
    /// The last signal sent with `wrangle kill`.
    pub kill: Option<KillRecord>,
    /// Processes of the tree still alive when the main process ended
    /// (they were stopped by the shim).
    pub leftovers: usize,
    /// The last error writing the logs, if output could not be recorded.
    #[serde(default)]
    pub log_error: Option<String>,
    /// Bytes of output dropped because the logs could not be written (a
    /// full disk); a marker line in the log says where.
    #[serde(default)]
    pub log_dropped_bytes: u64,
    /// The run's limits as its spec planned them (cgroup v1 groups made
    /// for the run are listed here, for whoever cleans up after the shim).
    #[serde(default)]
    pub limits: LimitPlan,
    /// Processes of the tree the kernel's OOM killer killed because of
    /// the run's memory limit.
    #[serde(default)]
    pub oom_kills: u64,
    /// The memory watchdog's kill of the tree, if it came to that.
    #[serde(default)]
    pub memory_watchdog: Option<WatchdogKill>,
    /// When the whole tree was gone and the logs complete; the shim exits
    /// right after.
    pub finished_at: Option<DateTime<Utc>>,
}

impl ShimState {
    /// Reads and parses a `state.json`.
    pub fn read(path: &std::path::Path) -> std::io::Result<ShimState> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes).map_err(|error| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a valid shim state: {error}", path.display()),
            )
        })
    }
}

/// A request written to the control FIFO, one line each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlCommand {
    /// Run the staged stop on the whole tree.
    Stop {
        /// The stop signal.
        signal: i32,
        /// Grace period in milliseconds.
        timeout_ms: u64,
    },
    /// Send a signal: SIGKILL to the whole tree, any other to the main process.
    Kill {
        /// The signal.
        signal: i32,
    },
}

impl ControlCommand {
    /// The line to write to the FIFO.
    pub fn to_line(self) -> String {
        match self {
            ControlCommand::Stop { signal, timeout_ms } => format!("stop {signal} {timeout_ms}\n"),
            ControlCommand::Kill { signal } => format!("kill {signal}\n"),
        }
    }

    /// Parses one line (without its newline).
    pub fn parse(line: &str) -> Option<ControlCommand> {
        let mut words = line.split_whitespace();
        let command = match words.next()? {
            "stop" => ControlCommand::Stop {
                signal: words.next()?.parse().ok()?,
                timeout_ms: words.next()?.parse().ok()?,
            },
            "kill" => ControlCommand::Kill {
                signal: words.next()?.parse().ok()?,
            },
            _ => return None,
        };
        words.next().is_none().then_some(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_lines_round_trip() {
        for command in [
            ControlCommand::Stop {
                signal: 15,
                timeout_ms: 10_000,
            },
            ControlCommand::Kill { signal: 9 },
        ] {
            let line = command.to_line();
            assert!(line.ends_with('\n'));
            assert_eq!(ControlCommand::parse(line.trim_end()), Some(command));
        }
        for bad in ["", "stop", "stop x 1", "kill 9 9", "reboot 1"] {
            assert_eq!(ControlCommand::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_plan_lists_each_v1_group_once() {
        let shared = PathBuf::from("/sys/fs/cgroup/cpu,memory/wrangle/a-1");
        let plan = LimitPlan {
            memory_max: Some(Limit {
                value: 64 << 20,
                by: Enforce::CgroupV1 {
                    group: shared.clone(),
                },
            }),
            cpu_max: Some(Limit {
                value: 0.5,
                by: Enforce::CgroupV1 {
                    group: shared.clone(),
                },
            }),
            pids_max: Some(Limit {
                value: 5,
                by: Enforce::CgroupV2,
            }),
            nofile: Some(Limit {
                value: 32,
                by: Enforce::Rlimit,
            }),
        };
        assert_eq!(plan.v1_groups(), [shared.as_path()]);
        assert!(!plan.is_empty() && LimitPlan::default().is_empty());
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<LimitPlan>(&json).unwrap(), plan);
    }

    #[test]
    fn a_state_written_before_limits_existed_still_reads() {
        let old = r#"{"phase":"exited","shim":{"pid":1,"start_time":2},"agent":null,
            "cgroup":null,"started_at":null,"spawn_error":"x","exit":null,"ended_at":null,
            "stop":null,"kill":null,"leftovers":0,"finished_at":null}"#;
        let state: ShimState = serde_json::from_str(old).unwrap();
        assert!(state.limits.is_empty());
        assert_eq!((state.oom_kills, state.memory_watchdog), (0, None));
    }
}
