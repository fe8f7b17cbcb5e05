//! Resource limits of an agent as the API shows them, and the ways the
//! machine can enforce them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What enforces a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// A controller of the run's cgroup v2 (`memory.max`, `cpu.max`, `pids.max`).
    CgroupV2,
    /// A cgroup v1 hierarchy's group for the run (`memory.limit_in_bytes`,
    /// `cpu.cfs_quota_us`, `pids.max`).
    CgroupV1,
    /// A resource limit (`setrlimit`) set on the agent before its exec.
    Rlimit,
    /// The shim samples the tree's resident memory and kills the tree when
    /// it is over the limit.
    Watchdog,
}

impl Enforcement {
    /// The name for people: `cgroup v2`, `cgroup v1`, `rlimit`, `watchdog`.
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::CgroupV2 => "cgroup v2",
            Enforcement::CgroupV1 => "cgroup v1",
            Enforcement::Rlimit => "rlimit",
            Enforcement::Watchdog => "watchdog",
        }
    }
}

impl fmt::Display for Enforcement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The limits an agent was created with and how its run enforces each.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LimitsView {
    /// Memory of the whole tree, in bytes (`--memory-max`).
    pub memory_max_bytes: Option<u64>,
    /// CPU of the whole tree, in cores (`--cpu-max`).
    pub cpu_max_cores: Option<f64>,
    /// Processes (threads included) the tree may hold (`--pids-max`).
    pub pids_max: Option<u64>,
    /// Open files per process (`--nofile`).
    pub nofile: Option<u64>,
    /// How each limit that is set is enforced by the current run; absent
    /// until a run has applied it.
    pub enforced_by: LimitEnforcement,
}

/// How each limit is enforced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LimitEnforcement {
    /// Of the memory limit.
    pub memory: Option<Enforcement>,
    /// Of the CPU limit.
    pub cpu: Option<Enforcement>,
    /// Of the process limit.
    pub pids: Option<Enforcement>,
    /// Of the open-file limit.
    pub nofile: Option<Enforcement>,
}
