//! `GET /v1/doctor`: what the daemon found on this machine, what wrangle
//! can do with it, and what to do about what is missing.

use crate::limits::Enforcement;
use serde::{Deserialize, Serialize};

/// The daemon's findings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DoctorReport {
    /// True when wrangle works here: nothing essential is missing.
    pub ok: bool,
    /// wrangle's version.
    pub version: String,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// Windows' WSL version when this Linux runs in it (2: a real Linux
    /// kernel; 1: no pidfds nor cgroups, wrangle cannot work).
    #[serde(default)]
    pub wsl: Option<u8>,
    /// True when the daemon runs as root.
    pub root: bool,
    /// The daemon's user id.
    pub uid: u32,
    /// `$WRANGLE_HOME` of this daemon.
    pub home: String,
    /// The file system the home is on, e.g. `ext4`, `tmpfs`, `nfs`.
    pub home_filesystem: String,
    /// What holds a run's process tree together.
    pub containment: ContainmentReport,
    /// How `--memory-max` is enforced here.
    pub memory: LimitSupport,
    /// How `--cpu-max` is enforced here.
    pub cpu: LimitSupport,
    /// How `--pids-max` is enforced here.
    pub pids: LimitSupport,
    /// How `--nofile` is enforced here.
    pub nofile: LimitSupport,
    /// True when the kernel has pidfds (`pidfd_open`, Linux 5.3+).
    pub pidfd: bool,
    /// True when the kernel can start a process right in its cgroup
    /// (`clone3` with `CLONE_INTO_CGROUP`, Linux 5.7+).
    pub clone_into_cgroup: bool,
    /// How many agents this machine can hold, by its kernel's limits.
    #[serde(default)]
    pub capacity: Option<Capacity>,
    /// Where the daemon receives the agents' own telemetry (OTLP over
    /// HTTP, loopback), if it could bind its port.
    #[serde(default)]
    pub telemetry: Option<String>,
    /// The cap on the home's logs and what it has done.
    #[serde(default)]
    pub logs: Option<LogsReport>,
    /// One entry per problem found, with what to do about it.
    pub problems: Vec<Problem>,
}

/// What holds a run's process tree together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContainmentReport {
    /// `cgroup_v2` or `process_group`.
    pub kind: String,
    /// Where run cgroups are made, with `cgroup_v2`.
    pub path: Option<String>,
    /// Why no cgroup is used, with `process_group`.
    pub why: Option<String>,
    /// The cgroup v2 controllers enabled for the run cgroups (empty where
    /// the v2 tree has none, and limits go to cgroup v1 or a watchdog).
    pub controllers: Vec<String>,
    /// One line for people.
    pub description: String,
}

/// How many agents the kernel's limits leave room for: each running agent
/// takes at least two pids (its shim and itself), a descriptor of the
/// daemon's (its shim's pidfd) and an inotify watch (its run directory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Capacity {
    /// Running agents the limits below leave room for, besides those
    /// running now.
    pub agents: u64,
    /// The limit that sets it.
    pub limited_by: String,
    /// `kernel.pid_max`: the most pids (and threads) at once.
    pub pid_max: Option<u64>,
    /// Threads that exist now, of all users.
    pub threads: Option<u64>,
    /// The daemon's open-file limit (soft; raised to the hard one at start).
    pub open_files: Option<u64>,
    /// Descriptors the daemon holds now.
    pub open_files_used: Option<u64>,
    /// `fs.inotify.max_user_watches`.
    pub inotify_watches: Option<u64>,
}

/// How one kind of limit is enforced on this machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LimitSupport {
    /// The mechanism; absent when the limit cannot be enforced here (and
    /// agents asking for it are refused).
    pub enforced_by: Option<Enforcement>,
    /// Where (a cgroup path) or why not, for people.
    pub detail: String,
}

/// Something missing or wrong, and what to do about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// True when wrangle cannot work without it fixed.
    pub essential: bool,
    /// What is wrong.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

/// The cap on the logs of the whole home (`wrangle daemon
/// --logs-max-total`) and what it has deleted since the daemon started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogsReport {
    /// Most bytes all runs' logs may take.
    pub max_total_bytes: u64,
    /// Bytes they took at the last look.
    pub used_bytes: u64,
    /// Files deleted to keep under the cap (the oldest ended runs' first,
    /// then rotated files).
    pub deleted_files: u64,
    /// Bytes those files held.
    pub deleted_bytes: u64,
    /// Free bytes on the home's file system.
    pub free_bytes: Option<u64>,
}
