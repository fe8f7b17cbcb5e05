//! What on this machine can enforce limits, found once: a controller
//! enabled for the run cgroups (cgroup v2), else a mounted and writable
//! cgroup v1 hierarchy of that controller, else nothing.

use super::{CgroupVersion, Controller};
use crate::cgroup::{Containment, CGROUP_ENV};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// How one controller's limits are enforced for new runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerSupport {
    /// Enabled in the subtree of the run cgroups' parent `base`: a limit
    /// goes into the run's own cgroup v2.
    V2 {
        /// The parent of the run cgroups.
        base: PathBuf,
    },
    /// A cgroup v1 hierarchy: each run gets a group under `base`.
    V1 {
        /// The parent of the run groups in that hierarchy.
        base: PathBuf,
    },
    /// Neither is usable.
    Missing {
        /// Why, for `wrangle doctor`.
        why: String,
    },
}

impl ControllerSupport {
    /// The group of the run named `name` (`<agent>-<run>`, as its cgroup v2
    /// is named) and its version; `None` when the controller is missing.
    pub fn group(&self, name: &str) -> Option<(PathBuf, CgroupVersion)> {
        match self {
            ControllerSupport::V2 { base } => Some((base.join(name), CgroupVersion::V2)),
            ControllerSupport::V1 { base } => Some((base.join(name), CgroupVersion::V1)),
            ControllerSupport::Missing { .. } => None,
        }
    }

    /// One line for people: where the limits go, or why nowhere.
    pub fn describe(&self) -> String {
        match self {
            ControllerSupport::V2 { base } => {
                format!("each run's cgroup under {}", base.display())
            }
            ControllerSupport::V1 { base } => {
                format!("a group per run under {}", base.display())
            }
            ControllerSupport::Missing { why } => why.clone(),
        }
    }
}

/// What enforces memory, CPU and process limits on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSupport {
    /// The `memory` controller.
    pub memory: ControllerSupport,
    /// The `cpu` controller.
    pub cpu: ControllerSupport,
    /// The `pids` controller.
    pub pids: ControllerSupport,
}

impl LimitSupport {
    /// Finds out, once, what can enforce limits for runs contained as
    /// `containment` says: each controller is enabled for the run cgroups
    /// if their parent may have it (it is in its `cgroup.controllers`),
    /// else a cgroup v1 hierarchy of it is used if one is mounted and a
    /// group can be made in it below this process's own.
    pub fn detect(containment: &Containment) -> LimitSupport {
        if std::env::var(CGROUP_ENV).as_deref() == Ok("off") {
            let missing = || ControllerSupport::Missing {
                why: format!("cgroups turned off by {CGROUP_ENV}=off"),
            };
            return LimitSupport {
                memory: missing(),
                cpu: missing(),
                pids: missing(),
            };
        }
        let v1 = V1Hierarchies::read();
        let detect_one = |controller: Controller| {
            let v2 = match containment {
                Containment::Cgroup { base } => match enable_v2(base, controller) {
                    Ok(()) => {
                        return ControllerSupport::V2 { base: base.clone() };
                    }
                    Err(why) => why,
                },
                Containment::ProcessGroup { .. } => "cgroup v2: runs get no cgroup".to_string(),
            };
            match v1.base_for(controller) {
                Ok(base) => ControllerSupport::V1 { base },
                Err(why) => ControllerSupport::Missing {
                    why: format!("{v2}; {why}"),
                },
            }
        };
        LimitSupport {
            memory: detect_one(Controller::Memory),
            cpu: detect_one(Controller::Cpu),
            pids: detect_one(Controller::Pids),
        }
    }

    /// How `controller` is supported.
    pub fn get(&self, controller: Controller) -> &ControllerSupport {
        match controller {
            Controller::Memory => &self.memory,
            Controller::Cpu => &self.cpu,
            Controller::Pids => &self.pids,
        }
    }
}

/// The controllers enabled for the cgroups under `base` (its
/// `cgroup.subtree_control`); empty when none is or it cannot be read.
pub fn enabled_v2_controllers(base: &Path) -> Vec<String> {
    fs::read_to_string(base.join("cgroup.subtree_control"))
        .map(|text| text.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Makes `controller` available in every run cgroup under `base` by
/// enabling it in `base/cgroup.subtree_control`; possible only when the
/// parent of `base` delegates it (it is in `base/cgroup.controllers`).
fn enable_v2(base: &Path, controller: Controller) -> Result<(), String> {
    let name = controller.name();
    let listed = |file: &str| -> io::Result<bool> {
        Ok(fs::read_to_string(base.join(file))?
            .split_whitespace()
            .any(|word| word == name))
    };
    match listed("cgroup.controllers") {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!(
                "cgroup v2: the {name} controller is not enabled for {} (it is not in the cgroup.subtree_control of {})",
                base.display(),
                base.parent().unwrap_or(base).display()
            ))
        }
        Err(error) => return Err(format!("cgroup v2: cannot read {}: {error}", base.display())),
    }
    if listed("cgroup.subtree_control").unwrap_or(false) {
        return Ok(());
    }
    let control = base.join("cgroup.subtree_control");
    fs::write(&control, format!("+{name}")).map_err(|error| {
        format!(
            "cgroup v2: cannot enable the {name} controller in {}: {error}",
            control.display()
        )
    })
}

/// The cgroup v1 hierarchies mounted here and where this process is in
/// each.
struct V1Hierarchies {
    mounts: Vec<procfs::process::MountInfo>,
    own: procfs::ProcessCGroups,
}

impl V1Hierarchies {
    fn read() -> V1Hierarchies {
        let myself = procfs::process::Process::myself().ok();
        let mounts = myself
            .as_ref()
            .and_then(|process| process.mountinfo().ok())
            .map(|mounts| mounts.0)
            .unwrap_or_default()
            .into_iter()
            .filter(|mount| mount.fs_type == "cgroup")
            .collect();
        let own = myself
            .and_then(|process| process.cgroups().ok())
            .unwrap_or(procfs::ProcessCGroups(Vec::new()));
        V1Hierarchies { mounts, own }
    }

    /// The directory under which run groups of `controller` are made:
    /// `<mount>/<own group>/wrangle`, created and tried out.
    fn base_for(&self, controller: Controller) -> Result<PathBuf, String> {
        let name = controller.name();
        let mount = self
            .mounts
            .iter()
            .find(|mount| mount.super_options.contains_key(name))
            .ok_or_else(|| {
                format!("cgroup v1: no hierarchy with the {name} controller is mounted")
            })?;
        let own = self
            .own
            .0
            .iter()
            .find(|group| group.controllers.iter().any(|c| c == name))
            .map_or("/", |group| group.pathname.as_str());
        // A hierarchy mounted from a subdirectory (a container's view)
        // shows this process's group relative to the host's root.
        let relative = own.strip_prefix(mount.root.as_str()).unwrap_or(own);
        let base = mount
            .mount_point
            .join(relative.trim_start_matches('/'))
            .join("wrangle");
        try_group(&base, controller).map_err(|error| {
            format!(
                "cgroup v1: cannot make {name} groups under {}: {error}",
                base.display()
            )
        })?;
        Ok(base)
    }
}

/// Creates `base` if needed and a group below it, checks that the group
/// carries `controller`, and removes it.
fn try_group(base: &Path, controller: Controller) -> io::Result<()> {
    fs::create_dir_all(base)?;
    let probe = base.join(format!(".probe-{}", std::process::id()));
    match fs::create_dir(&probe) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(error),
    }
    let carries = probe.join(controller.v1_file()).exists();
    fs::remove_dir(&probe)?;
    if carries {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "its groups have no {}",
            controller.v1_file()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_controller_is_found_or_explained() {
        let support = LimitSupport::detect(&Containment::detect());
        for controller in Controller::ALL {
            let found = support.get(controller);
            let text = found.describe();
            match found {
                ControllerSupport::V2 { base } | ControllerSupport::V1 { base } => {
                    assert!(base.is_dir(), "{text}");
                    let (group, _) = found.group("x-1").unwrap();
                    assert_eq!(group, base.join("x-1"));
                }
                ControllerSupport::Missing { why } => {
                    assert!(
                        why.contains(controller.name()) || why.contains("off"),
                        "{why}"
                    );
                    assert_eq!(found.group("x-1"), None);
                }
            }
        }
    }

    #[test]
    fn a_v1_hierarchy_is_preferred_only_without_v2() {
        // Where the machine mounts a v1 memory hierarchy and the v2 tree
        // has no memory controller (as with systemd's hybrid layout),
        // memory limits go to v1.
        let support = LimitSupport::detect(&Containment::detect());
        let v2_has_memory = fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers")
            .or_else(|_| fs::read_to_string("/sys/fs/cgroup/cgroup.controllers"))
            .is_ok_and(|text| text.split_whitespace().any(|c| c == "memory"));
        if Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
            && !v2_has_memory
            && std::env::var(CGROUP_ENV).is_err()
            && rustix::process::geteuid().is_root()
        {
            assert!(
                matches!(support.memory, ControllerSupport::V1 { .. }),
                "{support:?}"
            );
        }
    }
}
