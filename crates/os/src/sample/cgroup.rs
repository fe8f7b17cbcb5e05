//! A run's cgroup whose files stay open: its members and its CPU time.

use super::{push_pids, read_record, read_records};
use std::fs::File;
use std::io;
use std::path::Path;

/// A run's cgroup v2 directory whose files stay open between reads.
#[derive(Debug)]
pub struct WatchedCgroup {
    procs: File,
    cpu_stat: Option<File>,
}

impl WatchedCgroup {
    /// Opens `cgroup.procs` and `cpu.stat` of the cgroup at `path`.
    pub fn open(path: &Path) -> io::Result<WatchedCgroup> {
        Ok(WatchedCgroup {
            procs: File::open(path.join("cgroup.procs"))?,
            cpu_stat: File::open(path.join("cpu.stat")).ok(),
        })
    }

    /// File descriptors this holds open.
    pub fn open_files(&self) -> usize {
        1 + usize::from(self.cpu_stat.is_some())
    }

    /// Appends the pids of the cgroup's live members to `out`. Zombies are
    /// not members: the kernel takes them out when they exit.
    pub fn pids(&self, buffer: &mut Vec<u8>, out: &mut Vec<i32>) -> io::Result<()> {
        let length = read_records(&self.procs, buffer)?;
        push_pids(&buffer[..length], out);
        Ok(())
    }

    /// CPU time used by every process that was ever in the cgroup, ended
    /// ones included, in microseconds (`usage_usec` of `cpu.stat`, which
    /// cgroup v2 keeps even without the cpu controller).
    pub fn cpu_usage_usec(&self, buffer: &mut Vec<u8>) -> Option<u64> {
        let length = read_record(self.cpu_stat.as_ref()?, buffer).ok()?;
        parse_cpu_usage(&buffer[..length])
    }
}

/// `usage_usec` from the text of a cgroup's `cpu.stat`.
pub fn parse_cpu_usage(text: &[u8]) -> Option<u64> {
    std::str::from_utf8(text)
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("usage_usec "))
        .and_then(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_usage_comes_from_usage_usec() {
        let text = b"usage_usec 1816\nuser_usec 1800\nsystem_usec 16\n";
        assert_eq!(parse_cpu_usage(text), Some(1816));
        assert_eq!(parse_cpu_usage(b"user_usec 3\n"), None);
    }
}
