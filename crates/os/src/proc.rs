//! Processes as `/proc` shows them, identified by pid **and** start time so
//! that a recycled pid is never mistaken for the process it once named.

use std::collections::HashMap;
use std::io;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// A process named by its pid and its start time (field 22 of
/// `/proc/PID/stat`, in clock ticks after boot). Two processes that share a
/// pid never share both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessId {
    /// The process id.
    pub pid: i32,
    /// Start time in clock ticks after boot.
    pub start_time: u64,
}

/// What wrangle needs from `/proc/PID/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// Identity of the process.
    pub id: ProcessId,
    /// One-letter state: `R`, `S`, `D`, `Z`, `T`, `X` ...
    pub state: char,
    /// Parent pid.
    pub ppid: i32,
    /// Process group id.
    pub pgrp: i32,
    /// Session id.
    pub session: i32,
}

impl ProcStat {
    /// True when the process has exited and waits to be reaped (or is dying).
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

fn to_io(error: procfs::ProcError) -> io::Error {
    match error {
        procfs::ProcError::NotFound(_) => io::Error::from(io::ErrorKind::NotFound),
        procfs::ProcError::PermissionDenied(_) => io::Error::from(io::ErrorKind::PermissionDenied),
        procfs::ProcError::Io(error, _) => error,
        other => io::Error::other(other.to_string()),
    }
}

/// Reads `/proc/PID/stat`; `NotFound` when no such process exists. One
/// open and one read into a buffer on the stack: every start reads a few.
pub fn stat(pid: i32) -> io::Result<ProcStat> {
    use std::io::Read;
    let gone = |error: io::Error| match error.raw_os_error() {
        // The process ended between the open and the read.
        Some(libc::ESRCH) => io::Error::from(io::ErrorKind::NotFound),
        _ => error,
    };
    let mut file = std::fs::File::open(format!("/proc/{pid}/stat")).map_err(gone)?;
    let mut buffer = [0u8; 2048];
    let mut length = 0;
    while length < buffer.len() {
        match file.read(&mut buffer[length..]) {
            Ok(0) => break,
            Ok(read) => length += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(gone(error)),
        }
    }
    crate::sample::parse_stat(&buffer[..length])
        .map(|counters| counters.stat)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc/{pid}/stat is not what the kernel writes there"),
            )
        })
}

impl From<procfs::process::Stat> for ProcStat {
    fn from(stat: procfs::process::Stat) -> Self {
        ProcStat {
            id: ProcessId {
                pid: stat.pid,
                start_time: stat.starttime,
            },
            state: stat.state,
            ppid: stat.ppid,
            pgrp: stat.pgrp,
            session: stat.session,
        }
    }
}

impl ProcessId {
    /// The identity of the live process `pid`.
    pub fn of(pid: i32) -> io::Result<ProcessId> {
        stat(pid).map(|stat| stat.id)
    }

    /// The identity of the calling process.
    pub fn current() -> io::Result<ProcessId> {
        ProcessId::of(std::process::id() as i32)
    }

    /// True while this very process exists and has not exited: the pid is
    /// in use, by a process with the same start time, that is not a zombie.
    pub fn is_alive(&self) -> bool {
        match stat(self.pid) {
            Ok(stat) => stat.id == *self && !stat.is_dead(),
            Err(_) => false,
        }
    }

    /// The wall-clock time the process started.
    pub fn started_at(&self) -> io::Result<SystemTime> {
        let boot = procfs::boot_time_secs().map_err(to_io)?;
        let ticks = procfs::ticks_per_second().max(1);
        let since_boot = Duration::from_secs(self.start_time / ticks)
            + Duration::from_nanos((self.start_time % ticks) * 1_000_000_000 / ticks);
        Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(boot) + since_boot)
    }
}

/// Every process on the machine, skipping those that vanish while read.
pub fn all_processes() -> io::Result<Vec<ProcStat>> {
    let mut found = Vec::new();
    for entry in procfs::process::all_processes().map_err(to_io)? {
        let Ok(process) = entry else { continue };
        if let Ok(stat) = process.stat() {
            found.push(stat.into());
        }
    }
    Ok(found)
}

/// Every descendant of `root` (not `root` itself). Where the kernel has
/// `/proc/PID/task/TID/children` (CONFIG_PROC_CHILDREN) only the tree is
/// read; elsewhere one walk of all of `/proc`, which costs as much as the
/// machine has processes. A process that is being created while the walk
/// runs can be missed, so callers repeat until the tree is empty.
pub fn descendants(root: i32) -> io::Result<Vec<ProcStat>> {
    static HAS_CHILDREN_FILES: OnceLock<bool> = OnceLock::new();
    let has_children_files = *HAS_CHILDREN_FILES
        .get_or_init(|| std::path::Path::new("/proc/thread-self/children").exists());
    if has_children_files {
        descendants_by_children_files(root)
    } else {
        descendants_by_scan(root)
    }
}

/// The tree under `root`, from the children lists of every thread of each
/// process in it.
fn descendants_by_children_files(root: i32) -> io::Result<Vec<ProcStat>> {
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        let tasks = match std::fs::read_dir(format!("/proc/{parent}/task")) {
            Ok(tasks) => tasks,
            // Gone meanwhile: it has no children any more.
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        for task in tasks {
            let Ok(task) = task else { continue };
            let Ok(list) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            for child in list
                .split_ascii_whitespace()
                .filter_map(|pid| pid.parse().ok())
            {
                match stat(child) {
                    Ok(process) => {
                        frontier.push(child);
                        found.push(process);
                    }
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => return Err(error),
                }
            }
        }
    }
    Ok(found)
}

/// The tree under `root`, from the parent of every process on the machine.
fn descendants_by_scan(root: i32) -> io::Result<Vec<ProcStat>> {
    let processes = all_processes()?;
    let mut children: HashMap<i32, Vec<usize>> = HashMap::new();
    for (index, process) in processes.iter().enumerate() {
        children.entry(process.ppid).or_default().push(index);
    }
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &index in children.get(&parent).map(Vec::as_slice).unwrap_or(&[]) {
            let process = &processes[index];
            frontier.push(process.id.pid);
            found.push(process.clone());
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn current_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcessId::current().unwrap();
        assert!(me.is_alive());
        let recycled = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!recycled.is_alive());
        let started = me.started_at().unwrap();
        let age = SystemTime::now().duration_since(started).unwrap();
        assert!(age < Duration::from_secs(3600), "started {age:?} ago");
    }

    #[test]
    fn the_children_lists_and_the_scan_find_the_same_tree() {
        if !std::path::Path::new("/proc/thread-self/children").exists() {
            return; // Only the scan exists on this kernel.
        }
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30 & (sleep 30 &); sleep 30 & wait"])
            .spawn()
            .unwrap();
        let shell = child.id() as i32;
        let sorted = |found: Vec<ProcStat>| {
            let mut pids: Vec<i32> = found.iter().map(|p| p.id.pid).collect();
            pids.sort_unstable();
            pids
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while descendants_by_scan(shell).unwrap().len() < 2 && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(50));
        let by_lists = sorted(descendants_by_children_files(shell).unwrap());
        let by_scan = sorted(descendants_by_scan(shell).unwrap());
        for process in descendants_by_scan(shell).unwrap() {
            let _ = Command::new("kill")
                .arg(process.id.pid.to_string())
                .status();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(by_lists, by_scan);
        assert_eq!(by_lists.len(), 2, "the shell's two children: {by_lists:?}");
    }

    #[test]
    fn descendants_include_grandchildren() {
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .unwrap();
        let me = std::process::id() as i32;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let shell = child.id() as i32;
        let found = loop {
            // Other tests of this process have children too: look for ours.
            let found = descendants(me).unwrap();
            if found.iter().filter(|p| p.ppid == shell).count() >= 2
                || std::time::Instant::now() > deadline
            {
                break found;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        child.kill().unwrap();
        let pids: Vec<i32> = found.iter().map(|p| p.id.pid).collect();
        assert!(pids.contains(&(child.id() as i32)), "{pids:?}");
        let grandchildren = found.iter().filter(|p| p.ppid == child.id() as i32).count();
        assert_eq!(grandchildren, 2, "{found:?}");
        for process in found.iter().filter(|p| p.ppid == child.id() as i32) {
            let _ = Command::new("kill")
                .arg(process.id.pid.to_string())
                .status();
        }
        child.wait().unwrap();
    }
}
