//! The size of this process's file descriptor table.
//!
//! The kernel grows the table by doubling when a new descriptor does not
//! fit, and in a process with more than one thread each growth waits for
//! an RCU grace period (`synchronize_rcu` in `expand_files`), commonly
//! 5–30 ms, with the thread that opened the descriptor stopped. The
//! daemon holds a descriptor or two per run, so a fleet that grows past
//! 256, 512, 1024… descriptors would stall the daemon at each step, in
//! the middle of starting agents. Grown once at start-up, while the daemon
//! has one thread, the table never needs to grow again for that fleet.

use std::io;

/// Grows the table to hold at least `descriptors` open files (capped by
/// the soft `RLIMIT_NOFILE`), by opening one descriptor at the highest
/// number and closing it: the table keeps its size. Returns the number of
/// descriptors the table holds now.
pub fn reserve(descriptors: u64) -> io::Result<u64> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    let highest = descriptors.min(limit).saturating_sub(1);
    let highest = i32::try_from(highest).unwrap_or(i32::MAX);
    let null = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let probe = rustix::io::fcntl_dupfd_cloexec(&null, highest)?;
    drop(probe);
    Ok(highest as u64 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn the_table_holds_the_reserved_descriptors_without_keeping_one_open() {
        let reserved = reserve(2048).unwrap();
        assert!(reserved >= 256, "{reserved}");
        // The table keeps its size: /proc shows it as the number of slots.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let slots: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("FDSize:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(slots >= reserved, "FDSize {slots} < {reserved}");
        // And the descriptor used to grow it is closed again.
        let next = std::fs::File::open("/dev/null").unwrap();
        assert!((next.as_raw_fd() as u64) < reserved - 1);
    }
}
