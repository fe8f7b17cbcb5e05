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

/// Environment variable through which the daemon gives its children (the
/// zygote, shims) the open-file limit it was started with: `SOFT:HARD`,
/// `-` for unlimited.
pub const ORIGINAL_LIMIT_ENV: &str = "WRANGLE_NOFILE";

/// The open-file limit the process was started with, kept by
/// [`remember_original_limit`] before the daemon raises its own.
static ORIGINAL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Keeps the current open-file limit as the original one, for children
/// (see [`ORIGINAL_LIMIT_ENV`]). Call before raising it.
pub fn remember_original_limit() {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let show =
        |value: Option<u64>| value.map_or_else(|| "-".to_string(), |value| value.to_string());
    let _ = ORIGINAL.set(format!("{}:{}", show(limit.current), show(limit.maximum)));
}

/// The original open-file limit as [`ORIGINAL_LIMIT_ENV`] carries it, if
/// it was kept.
pub fn original_limit() -> Option<&'static str> {
    ORIGINAL.get().map(String::as_str)
}

/// Puts back the open-file limit the daemon was started with, as its
/// child found it in [`ORIGINAL_LIMIT_ENV`]: the daemon raises its own for
/// thousands of runs, and agents must not inherit that (a program that
/// closes every descriptor up to its limit would take seconds).
pub fn restore_original_limit() {
    let Ok(value) = std::env::var(ORIGINAL_LIMIT_ENV) else {
        return;
    };
    let Some((soft, hard)) = value.split_once(':') else {
        return;
    };
    let read = |text: &str| -> Option<Option<u64>> {
        if text == "-" {
            Some(None)
        } else {
            text.parse().ok().map(Some)
        }
    };
    if let (Some(current), Some(maximum)) = (read(soft), read(hard)) {
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit { current, maximum },
        );
    }
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
