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
//!
//! It also keeps one descriptor spare, for the moment the process runs
//! out: cleaning up after a start that failed for want of descriptors
//! takes one (to kill what the start may have left running).

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Mutex;

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

/// The descriptor kept spare (see [`with_spare`]).
static SPARE: Mutex<Option<OwnedFd>> = Mutex::new(None);

fn open_spare() -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?)
}

/// Sets one descriptor aside for [`with_spare`]; call it at start-up,
/// while there is room.
pub fn keep_spare() -> io::Result<()> {
    let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    if spare.is_none() {
        *spare = Some(open_spare()?);
    }
    Ok(())
}

/// Runs `operation`, which closes what it opens; if it fails for want of
/// a descriptor (`EMFILE`), frees the spare one for it and runs it again,
/// then takes the spare back (or at a later call, if another thread took
/// the room first).
pub fn with_spare<T>(operation: impl Fn() -> io::Result<T>) -> io::Result<T> {
    let out_of_descriptors = |error: &io::Error| error.raw_os_error() == Some(libc::EMFILE);
    let result = operation();
    let mut spare = SPARE.lock().unwrap_or_else(|e| e.into_inner());
    match result {
        Err(error) if out_of_descriptors(&error) => {
            if spare.take().is_none() {
                return Err(error);
            }
            let result = operation();
            *spare = open_spare().ok();
            result
        }
        result => {
            if spare.is_none() {
                *spare = open_spare().ok();
            }
            result
        }
    }
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

    /// Set in the process that [`a_process_out_of_descriptors_opens_one_with_the_spare`]
    /// runs the check in (it lowers its own limit).
    const SPARE_CHECK_ENV: &str = "WRANGLE_TEST_SPARE_CHECK";

    /// A process out of descriptors opens one more with the spare, and
    /// has the spare back afterwards. The check runs in a process of its
    /// own (this test binary again, this test alone): it lowers its limit.
    #[test]
    fn a_process_out_of_descriptors_opens_one_with_the_spare() {
        if std::env::var_os(SPARE_CHECK_ENV).is_some() {
            keep_spare().unwrap();
            let low = rustix::process::Rlimit {
                current: Some(64),
                maximum: Some(64),
            };
            rustix::process::setrlimit(rustix::process::Resource::Nofile, low).unwrap();
            let mut held = Vec::new();
            while let Ok(fd) = open_spare() {
                held.push(fd);
            }
            let error = open_spare().unwrap_err();
            assert_eq!(error.raw_os_error(), Some(libc::EMFILE), "{error}");
            let open_and_close = || open_spare().map(drop);
            with_spare(open_and_close).expect("opened with the spare");
            // The spare is back: the next one needs it again.
            with_spare(open_and_close).expect("opened with the spare again");
            return;
        }
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "fdtable::tests::a_process_out_of_descriptors_opens_one_with_the_spare",
                "--test-threads=1",
            ])
            .env(SPARE_CHECK_ENV, "1")
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{shown}");
        assert!(shown.contains("1 passed"), "the check did not run: {shown}");
    }

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
