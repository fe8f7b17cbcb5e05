//! `GET /v1/doctor`: what the daemon found on this machine (containment,
//! what enforces each limit, kernel features, the home) and a line per
//! problem with what to do about it.

use crate::Engine;
use wrangle_os::limits::{enabled_v2_controllers, Controller, ControllerSupport};
use wrangle_os::{features, spawn, Containment};
use wrangle_wire::doctor::{ContainmentReport, LimitSupport, Problem};
use wrangle_wire::{Capacity, DoctorReport, Enforcement};

/// Free space on the home's disk under which doctor warns.
const LOW_DISK_SPACE: u64 = 100 << 20;

/// File systems on which SQLite's locking and WAL are not to be trusted.
const NETWORK_FILESYSTEMS: [&str; 6] = ["nfs", "nfs4", "cifs", "smb3", "9p", "fuse.sshfs"];

impl Engine {
    /// Looks at the machine and says what wrangle can do here.
    pub fn doctor(&self) -> DoctorReport {
        let mut problems = Vec::new();
        let containment = self.containment_report(&mut problems);
        let support = self.limit_support();
        let limit = |controller: Controller, problems: &mut Vec<Problem>| {
            limit_report(controller, support.get(controller), problems)
        };
        let memory = limit(Controller::Memory, &mut problems);
        let cpu = limit(Controller::Cpu, &mut problems);
        let pids = limit(Controller::Pids, &mut problems);
        let pidfd = features::pidfd_supported();
        if !pidfd {
            problems.push(Problem {
                essential: true,
                problem: "the kernel has no pidfds (pidfd_open): wrangle cannot watch shims safely"
                    .into(),
                fix: "run wrangle on Linux 5.3 or later".into(),
            });
        }
        let clone_into_cgroup = spawn::clone_into_cgroup_supported();
        if !clone_into_cgroup && matches!(self.inner.config.containment, Containment::Cgroup { .. })
        {
            problems.push(Problem {
                essential: false,
                problem: "the kernel cannot start agents right in their cgroup (clone3 with CLONE_INTO_CGROUP); they move in before their exec instead".into(),
                fix: "nothing is needed; Linux 5.7 or later starts them a little faster".into(),
            });
        }
        let home = &self.inner.config.home;
        let home_filesystem =
            features::filesystem_of(home).unwrap_or_else(|| "unknown".to_string());
        if NETWORK_FILESYSTEMS.contains(&home_filesystem.as_str()) {
            problems.push(Problem {
                essential: false,
                problem: format!("the home {} is on {home_filesystem}, a network file system: SQLite's locks and write-ahead log are not safe there", home.display()),
                fix: "set WRANGLE_HOME to a directory on a local file system".into(),
            });
        } else if features::ext4_without_journal(home) {
            problems.push(Problem {
                essential: false,
                problem: format!("the home {} is on ext4 without a journal: there each new file skips the inodes freed in the last minutes, so runs start several times slower right after many were removed (`down`, `rm`, a fleet of short runs)", home.display()),
                fix: "give that file system a journal (`tune2fs -O has_journal DEVICE`, unmounted), or set WRANGLE_HOME to a directory on one that has it".into(),
            });
        } else if home_filesystem == "tmpfs" {
            problems.push(Problem {
                essential: false,
                problem: format!("the home {} is on tmpfs: the record of agents and their logs are lost at reboot", home.display()),
                fix: "set WRANGLE_HOME to a directory on a disk if they are to be kept".into(),
            });
        }
        let telemetry = self
            .inner
            .telemetry
            .port
            .map(|port| format!("http://127.0.0.1:{port}"));
        if telemetry.is_none() {
            problems.push(Problem {
                essential: false,
                problem: "the daemon receives no telemetry: it could not bind a loopback port, so coding agents' tokens and cost come only from their output".into(),
                fix: "see the daemon's log for why the bind failed, and restart it".into(),
            });
        }
        let capacity = capacity(&mut problems);
        let logs = self.logs_report();
        if let Some(free) = logs.free_bytes.filter(|free| *free < LOW_DISK_SPACE) {
            problems.push(Problem {
                essential: false,
                problem: format!(
                    "the disk of the home {} has {} free: agents' output is dropped (with a marker in their logs) once it is full, and changes are refused",
                    home.display(),
                    wrangle_wire::parse::format_size(free)
                ),
                fix: "free space on that disk, or lower the cap on logs (wrangle daemon --logs-max-total)".into(),
            });
        }
        let wsl = features::wsl_version();
        match wsl {
            Some(1) => problems.push(Problem {
                essential: true,
                problem: "this is WSL1, which translates Linux's calls without a Linux kernel: no pidfds, no cgroups".into(),
                fix: "convert the distribution to WSL2 (`wsl --set-version <distro> 2` in Windows)".into(),
            }),
            Some(_) if !matches!(self.inner.config.containment, Containment::Cgroup { .. }) => {
                problems.push(Problem {
                    essential: false,
                    problem: "WSL2 without a writable cgroup v2 tree: runs are held by process groups, and limits fall back to rlimits".into(),
                    fix: "in %UserProfile%\\.wslconfig set [wsl2] kernelCommandLine = cgroup_no_v1=all, then `wsl --shutdown`".into(),
                });
            }
            _ => {}
        }
        DoctorReport {
            ok: !problems.iter().any(|problem| problem.essential),
            version: env!("CARGO_PKG_VERSION").to_string(),
            kernel: features::kernel_release(),
            wsl,
            root: features::is_root(),
            uid: features::uid(),
            home: home.display().to_string(),
            home_filesystem,
            containment,
            memory,
            cpu,
            pids,
            nofile: LimitSupport {
                enforced_by: Some(Enforcement::Rlimit),
                detail: "RLIMIT_NOFILE, set on the agent before its exec".into(),
            },
            pidfd,
            clone_into_cgroup,
            telemetry,
            logs: Some(logs),
            capacity: Some(capacity),
            problems,
        }
    }

    fn containment_report(&self, problems: &mut Vec<Problem>) -> ContainmentReport {
        let containment = &self.inner.config.containment;
        let description = containment.describe();
        match containment {
            Containment::Cgroup { base } => ContainmentReport {
                kind: "cgroup_v2".into(),
                path: Some(base.display().to_string()),
                why: None,
                controllers: enabled_v2_controllers(base),
                description,
            },
            Containment::ProcessGroup { why } => {
                problems.push(Problem {
                    essential: false,
                    problem: format!("runs get no cgroup ({why}): an agent's descendants that leave its process group are found by a walk of /proc, which is slower"),
                    fix: if why.contains("=off") {
                        format!("unset {} to use cgroups", wrangle_os::cgroup::CGROUP_ENV)
                    } else {
                        "mount cgroup v2 and let this user create cgroups below its own (e.g. run the daemon in a systemd user service with Delegate=yes)".into()
                    },
                });
                ContainmentReport {
                    kind: "process_group".into(),
                    path: None,
                    why: Some(why.clone()),
                    controllers: Vec::new(),
                    description,
                }
            }
        }
    }
}

/// How one controller's limits are enforced, and the problem if none can.
fn limit_report(
    controller: Controller,
    support: &ControllerSupport,
    problems: &mut Vec<Problem>,
) -> LimitSupport {
    let name = controller.name();
    let flag = match controller {
        Controller::Memory => "--memory-max",
        Controller::Cpu => "--cpu-max",
        Controller::Pids => "--pids-max",
    };
    let enforced_by = match support {
        ControllerSupport::V2 { .. } => Some(Enforcement::CgroupV2),
        ControllerSupport::V1 { .. } => Some(Enforcement::CgroupV1),
        ControllerSupport::Missing { .. } if controller == Controller::Memory => {
            Some(Enforcement::Watchdog)
        }
        ControllerSupport::Missing { .. } => None,
    };
    let mut detail = support.describe();
    if let ControllerSupport::Missing { why } = support {
        let (problem, done_by) = match enforced_by {
            Some(_) => (
                format!("{flag} is enforced by the shim's watchdog, which samples the tree's memory, not by the kernel: {why}"),
                "the shim samples the tree's resident memory every 250ms and kills it when over",
            ),
            None => (
                format!("{flag} cannot be enforced, and agents that ask for it are refused: {why}"),
                "not enforced: agents that ask for it are refused",
            ),
        };
        detail = format!("{done_by} ({why})");
        problems.push(Problem {
            essential: false,
            problem,
            fix: if why.contains("=off") {
                format!("unset {} to use cgroups", wrangle_os::cgroup::CGROUP_ENV)
            } else {
                format!("enable the {name} controller for wrangle's cgroups (cgroup v2, e.g. systemd Delegate=yes) or mount the cgroup v1 {name} hierarchy writable for this user")
            },
        });
    }
    LimitSupport {
        enforced_by,
        detail,
    }
}

/// Running agents wanted on one box: the fleets wrangle is built for.
const FLEET_GOAL: u64 = 10_000;

/// Files the sampler keeps open for a run of one process, to sample it
/// cheaply: its `/proc` stat, children and fd list, its cgroup's members
/// and CPU, and its directory.
const SAMPLER_FILES_A_RUN: u64 = 6;

/// How many more agents the kernel's limits leave room for, with a
/// problem (and its fix) for each limit that holds the fleet under
/// [`FLEET_GOAL`].
fn capacity(problems: &mut Vec<Problem>) -> Capacity {
    let pid_max = features::sysctl_number("kernel/pid_max");
    let threads = features::threads_in_use();
    let open_files = wrangle_os::sample::open_file_limit();
    let open_files_used = features::open_descriptors();
    let inotify_watches = features::sysctl_number("fs/inotify/max_user_watches");
    // (room, name, fix): two pids, one descriptor and one watch an agent.
    let mut room: Vec<(u64, &str, &str)> = Vec::new();
    if let (Some(max), Some(used)) = (pid_max, threads) {
        room.push((
            max.saturating_sub(used) / 2,
            "kernel.pid_max",
            "sysctl -w kernel.pid_max=4194304 (and kernel.pid_max in /etc/sysctl.d/ to keep it)",
        ));
    }
    let raise_open_files = "raise the hard limit of open files for the daemon's user (LimitNOFILE=1048576 in its systemd unit, or nofile in /etc/security/limits.conf), then restart the daemon";
    if let (Some(max), Some(used)) = (open_files, open_files_used) {
        room.push((
            max.saturating_sub(used),
            "the daemon's open-file limit",
            raise_open_files,
        ));
        // Past this many runs the sampler opens each run's files anew on
        // every tick instead of keeping them: the fleet still runs, at
        // more CPU.
        let sampled_cheaply = (max / 2) / SAMPLER_FILES_A_RUN;
        if sampled_cheaply < FLEET_GOAL {
            problems.push(Problem {
                essential: false,
                problem: format!("the daemon's open-file limit ({max}) lets the sampler keep the files of about {sampled_cheaply} runs open; past that it opens them anew on every tick, which costs CPU"),
                fix: raise_open_files.to_string(),
            });
        }
    }
    if let Some(watches) = inotify_watches {
        room.push((
            watches,
            "fs.inotify.max_user_watches",
            "sysctl -w fs.inotify.max_user_watches=1048576 (past it, runs are looked at on every tick instead: more CPU)",
        ));
    }
    let tightest = room.iter().min_by_key(|(agents, _, _)| *agents);
    for (agents, name, fix) in &room {
        if *agents < FLEET_GOAL {
            problems.push(Problem {
                essential: false,
                problem: format!("{name} leaves room for {agents} more agents, under the {FLEET_GOAL} a fleet may need"),
                fix: fix.to_string(),
            });
        }
    }
    Capacity {
        agents: tightest.map_or(u64::MAX, |(agents, _, _)| *agents),
        limited_by: tightest.map_or_else(
            || "nothing known".to_string(),
            |(_, name, _)| name.to_string(),
        ),
        pid_max,
        threads,
        open_files,
        open_files_used,
        inotify_watches,
    }
}
