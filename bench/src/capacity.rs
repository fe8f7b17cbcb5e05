//! Whether this machine can hold a fleet of N at all, checked before the
//! fleet benchmark starts anything: a fleet of N is N agents and N shims
//! (two pids each), the daemon holds a pidfd per run, its sampler keeps
//! about six files of each run open between ticks (the agent's `stat`,
//! `task/PID/children` and `fd` in `/proc`, the cgroup's `cpu.stat` and
//! `cgroup.procs`, the run's directory) within half the open-file limit
//! and what the pidfds leave of it, and it watches each run's directory
//! with inotify. At 10,000 agents a default Linux is short
//! of pids (`kernel.pid_max` is 32,768 on many, 4,194,304 on others) and
//! often of open files (a soft limit of 1024), and a benchmark that hits
//! either fails half-way with an error far from its cause.
//!
//! The benchmark runs one fleet at a time (the floor's, each start's, the
//! loop's), so N is what must fit, with room for the machine's own
//! threads.

use anyhow::{bail, Result};
use std::fmt;

/// Pids a fleet of N needs beyond its 2N (daemon threads, zygote, CLI
/// processes, the benchmark's own), and what else runs.
const PID_SLACK: u64 = 1000;

/// `kernel.pid_max` wanted for N: 2.5 pids an agent (25,000 at 10,000),
/// so that the kernel's cyclic allocation finds free pids fast.
fn pid_max_wanted(n: u64) -> u64 {
    n * 5 / 2
}

/// Open files the daemon keeps free of its sampler's for its store,
/// connections and logs (the engine's `FILES_RESERVED`).
const FILES_RESERVED: u64 = 1024;

/// Open files the daemon needs for N at all: a pidfd per run, and the
/// margin for its store, sockets and clients; past it, starts fail.
fn open_files_needed(n: u64) -> u64 {
    n + FILES_RESERVED
}

/// Files the sampler keeps open per run between ticks (with cgroups).
const SAMPLER_FILES_PER_RUN: u64 = 6;

/// The files the daemon's sampler may keep open with `limit` open files
/// and `n` runs: at most half the limit, and what is left after two a run
/// (its pidfd, and one while it starts) and the reserve (the engine's
/// `Scratch::start_tick`).
fn sampler_budget(limit: u64, n: u64) -> u64 {
    (limit / 2).min(limit.saturating_sub(2 * n + FILES_RESERVED))
}

/// The open-file limit with which the sampler keeps every run's files of
/// a fleet of `n` open.
fn open_files_for_sampling(n: u64) -> u64 {
    (2 * SAMPLER_FILES_PER_RUN * n).max((2 + SAMPLER_FILES_PER_RUN) * n + FILES_RESERVED)
}

/// The limits of this machine and process that bound a fleet.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// `kernel.pid_max`.
    pub pid_max: Option<u64>,
    /// `kernel.threads-max`.
    pub threads_max: Option<u64>,
    /// Threads of all users now (`/proc/loadavg`): each holds a pid.
    pub threads_in_use: Option<u64>,
    /// The hard `RLIMIT_NOFILE` the daemon inherits (it raises its soft
    /// limit to it).
    pub open_files_hard: u64,
    /// The soft one.
    pub open_files_soft: u64,
    /// `RLIMIT_NPROC` (soft), which binds users other than root.
    pub processes: u64,
    /// `fs.inotify.max_user_watches`.
    pub inotify_watches: Option<u64>,
    /// `MemAvailable`, KiB.
    pub memory_available_kib: Option<u64>,
    /// Whether the benchmark runs as root (exempt from `RLIMIT_NPROC`).
    pub root: bool,
}

/// A `/proc/sys` number, e.g. `kernel/pid_max`.
fn sysctl(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// What `getrlimit` takes to name a resource.
#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

/// `(soft, hard)` of a resource limit; `RLIM_INFINITY` for unlimited.
fn rlimit(resource: Resource) -> (u64, u64) {
    // SAFETY: getrlimit writes one struct through a valid pointer.
    let limit = unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(resource, &mut limit);
        limit
    };
    (limit.rlim_cur, limit.rlim_max)
}

impl Limits {
    /// Reads them now.
    pub fn read() -> Limits {
        let threads_in_use = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|text| {
                let field = text.split_whitespace().nth(3)?;
                field.split_once('/')?.1.parse().ok()
            });
        let (open_files_soft, open_files_hard) = rlimit(libc::RLIMIT_NOFILE);
        Limits {
            pid_max: sysctl("kernel/pid_max"),
            threads_max: sysctl("kernel/threads-max"),
            threads_in_use,
            open_files_hard,
            open_files_soft,
            processes: rlimit(libc::RLIMIT_NPROC).0,
            inotify_watches: sysctl("fs/inotify/max_user_watches"),
            memory_available_kib: crate::procinfo::kib_field("/proc/meminfo", "MemAvailable"),
            // SAFETY: geteuid has no preconditions.
            root: unsafe { libc::geteuid() } == 0,
        }
    }

    /// What stands in the way of a fleet of `n`, each with its fix;
    /// empty when nothing does. `warnings` get what only disturbs the
    /// figures (inotify watches, memory).
    pub fn problems(&self, n: usize, warnings: &mut Vec<String>) -> Vec<String> {
        let n = n as u64;
        let mut problems = Vec::new();
        let in_use = self.threads_in_use.unwrap_or(0);
        let pids = (2 * n + PID_SLACK + in_use).max(pid_max_wanted(n));
        if let Some(pid_max) = self.pid_max.filter(|max| *max < pids) {
            problems.push(format!(
                "kernel.pid_max is {pid_max}; {n} agents need {pids} ({n} agents and {n} shims, {in_use} threads already running, and room): `sysctl -w kernel.pid_max=4194304`"
            ));
        }
        if let Some(threads_max) = self
            .threads_max
            .filter(|max| *max < 2 * n + PID_SLACK + in_use)
        {
            problems.push(format!(
                "kernel.threads-max is {threads_max}, under {} agents' and shims' {}: `sysctl -w kernel.threads-max={}`",
                n,
                2 * n + PID_SLACK + in_use,
                (2 * n + PID_SLACK + in_use) * 2
            ));
        }
        let files = open_files_needed(n);
        let sampling = open_files_for_sampling(n);
        if self.open_files_hard < files {
            problems.push(format!(
                "the hard limit of open files is {}; the daemon holds a pidfd per agent and needs {files} for {n}: `ulimit -n {sampling}` (as root) or raise nofile in /etc/security/limits.conf, then run the benchmark from that shell",
                self.open_files_hard,
            ));
        } else if self.open_files_hard < sampling {
            let kept = sampler_budget(self.open_files_hard, n) / SAMPLER_FILES_PER_RUN;
            warnings.push(format!(
                "the hard limit of open files is {}: the daemon's sampler keeps the files of only {} of {n} runs open between ticks and opens the others' on every tick, which raises its idle CPU; with `ulimit -n {sampling}` (as root) it keeps all",
                self.open_files_hard,
                kept.min(n)
            ));
        }
        if !self.root && self.processes < 2 * n + PID_SLACK {
            problems.push(format!(
                "the limit of processes (RLIMIT_NPROC) is {}; {n} agents and their shims need {}: `ulimit -u {}`",
                self.processes,
                2 * n + PID_SLACK,
                (2 * n + PID_SLACK) * 2
            ));
        }
        if let Some(watches) = self
            .inotify_watches
            .filter(|watches| *watches < n + PID_SLACK)
        {
            warnings.push(format!(
                "fs.inotify.max_user_watches is {watches}, under one a run for {n}: the daemon then looks at the runs past it on every tick, which raises its idle CPU (`sysctl -w fs.inotify.max_user_watches=1048576`)"
            ));
        }
        // About 1 MiB a run (an agent's `sleep` and its shim, page tables
        // and kernel stacks included), and the homes if on tmpfs.
        if let Some(available) = self.memory_available_kib.filter(|kib| *kib < n * 1024) {
            warnings.push(format!(
                "only {} MiB of memory are available; {n} agents and their shims take about {} MiB",
                available / 1024,
                n
            ));
        }
        problems
    }

    /// Fails, naming every missing limit and its fix, unless a fleet of
    /// `n` fits; prints the warnings and returns them.
    pub fn check(&self, n: usize) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        let problems = self.problems(n, &mut warnings);
        for warning in &warnings {
            eprintln!("warning: {warning}");
        }
        if !problems.is_empty() {
            bail!(
                "this machine cannot hold a fleet of {n} agents:\n  - {}",
                problems.join("\n  - ")
            );
        }
        Ok(warnings)
    }
}

impl fmt::Display for Limits {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let number = |value: Option<u64>| value.map_or("unknown".to_string(), |v| v.to_string());
        let limit = |value: u64| {
            if value == libc::RLIM_INFINITY {
                "unlimited".to_string()
            } else {
                value.to_string()
            }
        };
        write!(
            out,
            "kernel.pid_max {}, open files {} (hard {}), fs.inotify.max_user_watches {}",
            number(self.pid_max),
            limit(self.open_files_soft),
            limit(self.open_files_hard),
            number(self.inotify_watches)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roomy() -> Limits {
        Limits {
            pid_max: Some(4_194_304),
            threads_max: Some(192_000),
            threads_in_use: Some(300),
            open_files_hard: 1_048_576,
            open_files_soft: 1024,
            processes: 100_000,
            inotify_watches: Some(1_048_576),
            memory_available_kib: Some(20 * 1024 * 1024),
            root: false,
        }
    }

    #[test]
    fn a_roomy_machine_holds_ten_thousand() {
        let mut warnings = Vec::new();
        assert!(roomy().problems(10_000, &mut warnings).is_empty());
        assert!(warnings.is_empty());
    }

    #[test]
    fn a_default_pid_max_holds_ten_thousand_but_not_less() {
        let limits = Limits {
            pid_max: Some(32_768),
            ..roomy()
        };
        let mut warnings = Vec::new();
        assert!(limits.problems(1000, &mut warnings).is_empty());
        assert!(limits.problems(10_000, &mut warnings).is_empty());
        assert!(warnings.is_empty());
        let tight = Limits {
            pid_max: Some(24_000),
            open_files_hard: 4096,
            ..limits
        };
        let problems = tight.problems(10_000, &mut warnings);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("kernel.pid_max is 24000"));
        assert!(problems[0].contains("need 25000"));
        assert!(problems[1].contains("open files is 4096"));
        assert!(problems[1].contains("ulimit -n 120000"));
    }

    #[test]
    fn open_files_enough_to_start_but_not_to_keep_files_only_warn() {
        let limits = Limits {
            open_files_hard: 20_000,
            ..roomy()
        };
        let mut warnings = Vec::new();
        assert!(limits.problems(1000, &mut warnings).is_empty());
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(limits.problems(10_000, &mut warnings).is_empty());
        assert_eq!(warnings.len(), 1);
        // 20,000 - 2 x 10,000 - 1024 leaves the sampler nothing.
        assert!(warnings[0].contains("only 0 of 10000 runs"), "{warnings:?}");
        assert_eq!(sampler_budget(20_000, 1000), 10_000);
        assert_eq!(open_files_for_sampling(1000), 12_000);
    }

    #[test]
    fn few_inotify_watches_only_warn() {
        let limits = Limits {
            inotify_watches: Some(8192),
            ..roomy()
        };
        let mut warnings = Vec::new();
        assert!(limits.problems(10_000, &mut warnings).is_empty());
        assert_eq!(warnings.len(), 1);
    }
}
