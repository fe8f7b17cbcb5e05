//! A process whose `/proc` files stay open: its counters from
//! `/proc/PID/stat`, its open files and its children.

use super::{gone, gone_io, push_pids, read_record, read_records};
use crate::proc::{ProcStat, ProcessId};
use rustix::fs::{openat, Mode, OFlags, RawDir, CWD};
use std::fs::File;
use std::io::{self, Write as _};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;

/// The counters of one process, from one read of `/proc/PID/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcCounters {
    /// Identity, state and parentage.
    pub stat: ProcStat,
    /// CPU time of the process, all threads, in clock ticks (utime + stime).
    pub cpu_ticks: u64,
    /// CPU time of its children that it has reaped, in clock ticks
    /// (cutime + cstime).
    pub reaped_children_cpu_ticks: u64,
    /// Threads.
    pub threads: u32,
    /// Resident memory, in pages.
    pub rss_pages: u64,
}

impl ProcCounters {
    /// True for a zombie: it has ended and waits for its parent.
    pub fn is_zombie(&self) -> bool {
        self.stat.state == 'Z'
    }
}

/// Parses the text of `/proc/PID/stat` without allocating; `None` when it
/// is not one. The command name (field 2) is skipped: it sits in
/// parentheses and may itself hold spaces and parentheses.
pub fn parse_stat(text: &[u8]) -> Option<ProcCounters> {
    let open = text.iter().position(|&b| b == b'(')?;
    let close = text.iter().rposition(|&b| b == b')')?;
    let pid = std::str::from_utf8(&text[..open])
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let rest = std::str::from_utf8(text.get(close + 1..)?).ok()?;
    // Field 3 (the state) on; `values[n]` is field n of proc(5).
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let mut values = [0i64; 25];
    for value in &mut values[4..] {
        let text = fields.next()?;
        // Some fields are unsigned and may exceed i64 (none of those used).
        *value = match text.parse::<i64>() {
            Ok(value) => value,
            Err(_) => text.parse::<u64>().ok().map(|_| i64::MAX)?,
        };
    }
    let field = |n: usize| values[n];
    let unsigned = |n: usize| u64::try_from(values[n]).unwrap_or(0);
    Some(ProcCounters {
        stat: ProcStat {
            id: ProcessId {
                pid,
                start_time: unsigned(22),
            },
            state,
            ppid: field(4) as i32,
            pgrp: field(5) as i32,
            session: field(6) as i32,
        },
        cpu_ticks: unsigned(14) + unsigned(15),
        reaped_children_cpu_ticks: unsigned(16) + unsigned(17),
        threads: u32::try_from(field(20)).unwrap_or(0),
        rss_pages: unsigned(24),
    })
}

/// A process whose `/proc` files stay open between reads.
#[derive(Debug)]
pub struct WatchedProcess {
    id: ProcessId,
    stat: File,
    /// `task/PID/children`: the children of the main thread. Absent where
    /// the kernel lacks it.
    children: Option<File>,
    /// `fd`, whose size is the number of open descriptors (Linux 6.2+).
    fds: Option<File>,
    /// `task`, opened once the process has more than one thread: children
    /// of other threads are listed under their own task.
    tasks: Option<OwnedFd>,
}

impl WatchedProcess {
    /// Opens the files of process `pid` and reads its counters once.
    /// `NotFound` when there is no such process.
    pub fn open(pid: i32, buffer: &mut Vec<u8>) -> io::Result<(WatchedProcess, ProcCounters)> {
        let dir = openat(
            CWD,
            format!("/proc/{pid}"),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(gone)?;
        let read_only = OFlags::RDONLY | OFlags::CLOEXEC;
        let stat = File::from(openat(&dir, "stat", read_only, Mode::empty()).map_err(gone)?);
        let counters = read_stat(&stat, buffer)?;
        let children = openat(
            &dir,
            format!("task/{pid}/children"),
            read_only,
            Mode::empty(),
        )
        .ok()
        .map(File::from);
        let fds = openat(&dir, "fd", read_only | OFlags::DIRECTORY, Mode::empty())
            .ok()
            .map(File::from);
        let watched = WatchedProcess {
            id: counters.stat.id,
            stat,
            children,
            fds,
            tasks: None,
        };
        Ok((watched, counters))
    }

    /// The counters of process `pid` now, from one read of its `stat`
    /// (no file is kept): for a process known to be the one meant, whose
    /// tree needs no walk.
    pub fn counters_of(pid: i32, buffer: &mut Vec<u8>) -> io::Result<ProcCounters> {
        let stat = openat(
            CWD,
            format!("/proc/{pid}/stat"),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(gone)?;
        read_stat(&File::from(stat), buffer)
    }

    /// The process this watches.
    pub fn id(&self) -> ProcessId {
        self.id
    }

    /// File descriptors this holds open.
    pub fn open_files(&self) -> usize {
        1 + usize::from(self.children.is_some())
            + usize::from(self.fds.is_some())
            + usize::from(self.tasks.is_some())
    }

    /// Its counters now; `NotFound` once it has been reaped.
    pub fn read(&self, buffer: &mut Vec<u8>) -> io::Result<ProcCounters> {
        read_stat(&self.stat, buffer)
    }

    /// Open file descriptors; 0 where they cannot be counted (a zombie,
    /// another user's process).
    pub fn open_fds(&self) -> u32 {
        let Some(dir) = &self.fds else { return 0 };
        match dir.metadata() {
            Ok(metadata) if metadata.len() > 0 => metadata.len() as u32,
            // Before Linux 6.2 the size is 0: count the entries.
            Ok(_) => count_entries(dir).unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// Appends the pids of its children to `out`: those of every thread
    /// when it has more than one (`threads`, from its counters).
    pub fn children(
        &mut self,
        threads: u32,
        buffer: &mut Vec<u8>,
        out: &mut Vec<i32>,
    ) -> io::Result<()> {
        if let Some(children) = &self.children {
            let length = read_records(children, buffer).map_err(gone_io)?;
            push_pids(&buffer[..length], out);
        }
        if threads > 1 {
            self.children_of_other_threads(buffer, out)?;
        } else {
            // Back to one thread: nothing more to list there.
            self.tasks = None;
        }
        Ok(())
    }

    fn children_of_other_threads(
        &mut self,
        buffer: &mut Vec<u8>,
        out: &mut Vec<i32>,
    ) -> io::Result<()> {
        if self.tasks.is_none() {
            let path = format!("/proc/{}/task", self.id.pid);
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
            self.tasks = Some(openat(CWD, path, flags, Mode::empty()).map_err(gone)?);
        }
        let Some(tasks) = &self.tasks else {
            return Ok(());
        };
        rustix::fs::seek(tasks, rustix::fs::SeekFrom::Start(0))?;
        let mut space = [MaybeUninit::<u8>::uninit(); 4096];
        let mut entries = RawDir::new(tasks, &mut space);
        while let Some(entry) = entries.next() {
            let entry = entry?;
            let Some(tid) = entry
                .file_name()
                .to_str()
                .ok()
                .and_then(|name| name.parse::<i32>().ok())
            else {
                continue;
            };
            if tid == self.id.pid {
                continue;
            }
            let mut path = [0u8; 40];
            let length = {
                let mut cursor = &mut path[..];
                write!(cursor, "{tid}/children")?;
                40 - cursor.len()
            };
            let path = std::str::from_utf8(&path[..length]).unwrap_or_default();
            // A thread that has just ended is skipped.
            let flags = OFlags::RDONLY | OFlags::CLOEXEC;
            let Ok(file) = openat(tasks, path, flags, Mode::empty()) else {
                continue;
            };
            if let Ok(length) = read_records(&File::from(file), buffer) {
                push_pids(&buffer[..length], out);
            }
        }
        Ok(())
    }
}

/// Reads and parses a stat file.
fn read_stat(file: &File, buffer: &mut Vec<u8>) -> io::Result<ProcCounters> {
    let length = read_record(file, buffer).map_err(gone_io)?;
    parse_stat(&buffer[..length])
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc/PID/stat"))
}

/// Entries of a directory, `.` and `..` left out.
fn count_entries(dir: &File) -> io::Result<u32> {
    rustix::fs::seek(dir, rustix::fs::SeekFrom::Start(0))?;
    let mut space = [MaybeUninit::<u8>::uninit(); 4096];
    let mut entries = RawDir::new(dir, &mut space);
    let mut count = 0;
    while let Some(entry) = entries.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            count += 1;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, Instant};

    #[test]
    fn stat_text_is_parsed_past_a_command_name_with_parentheses() {
        let text = b"4242 (my (odd) name) S 4241 4242 4242 0 -1 4194304 153 0 0 0 \
                     25 7 3 1 20 0 3 0 987654 12345678 2048 18446744073709551615 0 0\n";
        let counters = parse_stat(text).unwrap();
        assert_eq!(
            counters.stat.id,
            ProcessId {
                pid: 4242,
                start_time: 987654
            }
        );
        assert_eq!(counters.stat.state, 'S');
        assert_eq!(counters.stat.ppid, 4241);
        assert_eq!(counters.cpu_ticks, 32);
        assert_eq!(counters.reaped_children_cpu_ticks, 4);
        assert_eq!(counters.threads, 3);
        assert_eq!(counters.rss_pages, 2048);
        assert!(parse_stat(b"4242 (cut short) S 1 2").is_none());
        assert!(parse_stat(b"").is_none());
    }

    #[test]
    fn the_parse_agrees_with_procfs_on_this_process() {
        let mut buffer = Vec::new();
        let me = std::process::id() as i32;
        let (watched, counters) = WatchedProcess::open(me, &mut buffer).unwrap();
        let theirs = procfs::process::Process::myself().unwrap().stat().unwrap();
        assert_eq!(counters.stat, ProcStat::from(theirs.clone()));
        assert_eq!(counters.threads as i64, theirs.num_threads);
        assert!(counters.rss_pages > 0);
        assert_eq!(watched.id(), ProcessId::current().unwrap());
        assert!(watched.open_fds() >= 3, "{}", watched.open_fds());
    }

    #[test]
    fn a_watched_process_shows_its_cpu_its_children_and_its_end() {
        // A busy child and a zombie grandchild of the watched shell.
        let mut shell = Command::new("sh")
            .args(["-c", "sh -c 'while :; do :; done' & true & exec sleep 30"])
            .spawn()
            .unwrap();
        let pid = shell.id() as i32;
        let mut buffer = Vec::new();
        let (mut watched, _) = WatchedProcess::open(pid, &mut buffer).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let (busy, zombie) = loop {
            let mut children = Vec::new();
            let counters = watched.read(&mut buffer).unwrap();
            watched
                .children(counters.threads, &mut buffer, &mut children)
                .unwrap();
            let states: Vec<(i32, ProcCounters)> = children
                .iter()
                .filter_map(|&child| {
                    let (_, counters) = WatchedProcess::open(child, &mut buffer).ok()?;
                    Some((child, counters))
                })
                .collect();
            let busy = states
                .iter()
                .find(|(_, c)| c.cpu_ticks > 0 && !c.is_zombie());
            let zombie = states.iter().find(|(_, c)| c.is_zombie());
            if let (Some(busy), Some(zombie)) = (busy, zombie) {
                break (busy.0, zombie.0);
            }
            assert!(Instant::now() < deadline, "children seen: {children:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_ne!(busy, zombie);
        let _ = Command::new("kill").arg(busy.to_string()).status();
        shell.kill().unwrap();
        shell.wait().unwrap();
        let error = watched.read(&mut buffer).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn children_of_other_threads_are_found() {
        // Tests run on threads other than the main one, so this child is
        // listed under this thread's task, not the main thread's.
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let mut buffer = Vec::new();
        let (mut me, counters) =
            WatchedProcess::open(std::process::id() as i32, &mut buffer).unwrap();
        assert!(counters.threads > 1);
        let mut children = Vec::new();
        me.children(counters.threads, &mut buffer, &mut children)
            .unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(children.contains(&(child.id() as i32)), "{children:?}");
        assert_eq!(me.open_files(), 4);
    }

    #[test]
    fn long_lists_are_read_to_their_end() {
        // 1000 children: their list is longer than a page.
        let mut shell = Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 1000 ]; do sleep 30 & i=$((i+1)); done; echo; exec sleep 30",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = [0u8; 1];
        std::io::Read::read_exact(shell.stdout.as_mut().unwrap(), &mut ready).unwrap();
        let mut buffer = Vec::new();
        let (mut watched, counters) = WatchedProcess::open(shell.id() as i32, &mut buffer).unwrap();
        let mut children = Vec::new();
        watched
            .children(counters.threads, &mut buffer, &mut children)
            .unwrap();
        for child in &children {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*child),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        shell.kill().unwrap();
        shell.wait().unwrap();
        assert_eq!(children.len(), 1000);
    }
}
