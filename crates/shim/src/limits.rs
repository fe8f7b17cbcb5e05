//! The run's resource limits, as planned in its spec: written into its
//! cgroups before the agent starts (cgroup v1 groups are made for the
//! run), joined by the agent before its exec, counted for OOM kills at the
//! end and removed with the run. Memory that no controller holds is left
//! to the shim's watchdog ([`RunLimits::watchdog_limit`]).

use crate::protocol::{Enforce, Limit, LimitPlan};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wrangle_os::limits::{self, CgroupVersion, Controller, Setting};
use wrangle_os::RunCgroup;

/// The limits in force for one run.
pub struct RunLimits {
    plan: LimitPlan,
    /// Where the memory limit is enforced by a cgroup, to count OOM kills.
    memory_group: Option<(PathBuf, CgroupVersion)>,
}

impl RunLimits {
    /// Applies `plan`: makes the run's cgroup v1 groups and writes every
    /// cgroup limit (into `cgroup`, the run's cgroup v2, where planned so).
    /// On failure removes the groups it made and says which limit failed.
    pub fn apply(plan: &LimitPlan, cgroup: Option<&RunCgroup>) -> Result<RunLimits, String> {
        let applied = RunLimits {
            plan: plan.clone(),
            memory_group: None,
        };
        let mut memory_group = None;
        let settings = [
            (
                "memory",
                plan.memory_max
                    .as_ref()
                    .map(|l| (Setting::MemoryMax(l.value), &l.by)),
            ),
            (
                "CPU",
                plan.cpu_max
                    .as_ref()
                    .map(|l| (Setting::CpuMax(l.value), &l.by)),
            ),
            (
                "process",
                plan.pids_max
                    .as_ref()
                    .map(|l| (Setting::PidsMax(l.value), &l.by)),
            ),
        ];
        for (what, planned) in settings {
            let Some((setting, by)) = planned else {
                continue;
            };
            let group = match by {
                Enforce::CgroupV2 => match cgroup {
                    Some(cgroup) => (cgroup.path().to_path_buf(), CgroupVersion::V2),
                    None => {
                        applied.remove();
                        return Err(format!(
                            "cannot apply the {what} limit: the run has no cgroup v2"
                        ));
                    }
                },
                Enforce::CgroupV1 { group } => (group.clone(), CgroupVersion::V1),
                Enforce::Rlimit | Enforce::Watchdog => continue,
            };
            let result = match group.1 {
                CgroupVersion::V1 => RunCgroup::create(&group.0).map(drop),
                CgroupVersion::V2 => Ok(()),
            }
            .and_then(|()| limits::apply(&group.0, group.1, setting));
            if let Err(error) = result {
                applied.remove();
                return Err(format!("cannot apply the {what} limit: {error}"));
            }
            if setting.controller() == Controller::Memory {
                memory_group = Some(group);
            }
        }
        Ok(RunLimits {
            memory_group,
            ..applied
        })
    }

    /// The `cgroup.procs` of the run's cgroup v1 groups, opened for the
    /// agent to join them before its exec.
    pub fn join_files(&self) -> io::Result<Vec<File>> {
        self.plan
            .v1_groups()
            .into_iter()
            .map(limits::open_procs)
            .collect()
    }

    /// RLIMIT_NOFILE for the agent, if set.
    pub fn nofile(&self) -> Option<u64> {
        self.plan.nofile.as_ref().map(|limit| limit.value)
    }

    /// The memory limit the shim's watchdog must enforce, where no
    /// controller does.
    pub fn watchdog_limit(&self) -> Option<u64> {
        match &self.plan.memory_max {
            Some(Limit {
                value,
                by: Enforce::Watchdog,
            }) => Some(*value),
            _ => None,
        }
    }

    /// How many processes of the tree the OOM killer has killed because of
    /// the memory limit (0 when no cgroup enforces it).
    pub fn oom_kills(&self) -> u64 {
        self.memory_group
            .as_ref()
            .and_then(|(dir, version)| limits::oom_kills(dir, *version).ok())
            .unwrap_or(0)
    }

    /// Removes the run's cgroup v1 groups (once the tree is gone; a group
    /// whose last member is just leaving gets a moment).
    pub fn remove(&self) {
        for group in self.plan.v1_groups() {
            remove_group(group);
        }
    }
}

/// Removes an empty cgroup directory, retrying for up to a second while
/// its last members leave.
pub(crate) fn remove_group(group: &Path) {
    let cgroup = RunCgroup::existing(group);
    for _ in 0..100 {
        if cgroup.remove().is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
