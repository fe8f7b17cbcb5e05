//! The machine as `/proc` shows it: what the tests check wrangle against.

use std::fs;
use std::os::unix::fs::MetadataExt;

/// One process, from `/proc/PID/stat` (and the owner of `/proc/PID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    /// Process id.
    pub pid: i32,
    /// Its command name (at most 15 bytes).
    pub comm: String,
    /// One-letter state: `R`, `S`, `Z` ...
    pub state: char,
    /// Parent pid.
    pub ppid: i32,
    /// Process group.
    pub pgrp: i32,
    /// Session.
    pub session: i32,
    /// Start time in clock ticks after boot: with the pid, it names the
    /// process even after its pid is reused.
    pub start_time: u64,
    /// Effective uid.
    pub uid: u32,
}

impl Proc {
    /// True for a process that has exited and waits to be reaped.
    pub fn is_zombie(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }

    /// True while this very process (same pid and start time) is in
    /// `/proc`, alive or zombie.
    pub fn still_exists(&self) -> bool {
        stat(self.pid).is_some_and(|now| now.start_time == self.start_time)
    }

    /// True while this very process exists and is not a zombie.
    pub fn is_alive(&self) -> bool {
        stat(self.pid).is_some_and(|now| now.start_time == self.start_time && !now.is_zombie())
    }
}

/// Reads `/proc/PID/stat`; `None` when there is no such process.
pub fn stat(pid: i32) -> Option<Proc> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let uid = fs::metadata(format!("/proc/{pid}")).ok()?.uid();
    // The command name is in parentheses and may hold spaces or ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // fields[0] is field 3 (state); field N is fields[N - 3].
    Some(Proc {
        pid,
        comm,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
        uid,
    })
}

/// Every process on the machine.
pub fn all() -> Vec<Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .collect()
}

/// The command line of a process, arguments joined by spaces; `None` when
/// it is gone (a zombie's is empty).
pub fn cmdline(pid: i32) -> Option<String> {
    let bytes = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    Some(
        text.trim_end_matches('\0')
            .split('\0')
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The environment of a process, `KEY=VALUE` each.
pub fn environ(pid: i32) -> Option<Vec<String>> {
    let bytes = fs::read(format!("/proc/{pid}/environ")).ok()?;
    Some(
        bytes
            .split(|b| *b == 0)
            .filter(|entry| !entry.is_empty())
            .map(|entry| String::from_utf8_lossy(entry).into_owned())
            .collect(),
    )
}

/// True while `pid` is a process that has not exited.
pub fn is_alive(pid: i32) -> bool {
    stat(pid).is_some_and(|p| !p.is_zombie())
}

/// Every zombie on the machine.
pub fn zombies() -> Vec<Proc> {
    all().into_iter().filter(Proc::is_zombie).collect()
}

/// Live processes whose command line contains `marker`, except wrangle's
/// own CLI (whose arguments hold the agent's command) and `setpriv`
/// running it.
pub fn with_marker(marker: &str) -> Vec<Proc> {
    all()
        .into_iter()
        .filter(|p| !p.is_zombie() && p.pid != std::process::id() as i32)
        .filter(|p| {
            cmdline(p.pid).is_some_and(|line| {
                let program = line.split(' ').next().unwrap_or_default();
                line.contains(marker)
                    && !program.ends_with("wrangle")
                    && !program.ends_with("setpriv")
            })
        })
        .collect()
}

/// Where a file descriptor of a process points.
pub fn fd_target(pid: i32, fd: i32) -> Option<String> {
    fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .ok()
        .map(|path| path.display().to_string())
}

/// Where each open file descriptor of a process points, by descriptor.
pub fn open_file_targets(pid: i32) -> std::collections::BTreeMap<i32, String> {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Default::default();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let fd: i32 = entry.file_name().to_str()?.parse().ok()?;
            Some((fd, fd_target(pid, fd)?))
        })
        .collect()
}

/// The resident memory of `pid` in bytes (`VmRSS` of `/proc/PID/status`).
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
