//! The shim's own diagnostics (`shim.log` in the run's directory), created
//! with the first one: most runs have nothing to say, and an inode less
//! per run counts where inodes are slow to make (ext4 after many deletes).
//!
//! A shim forked by the zygote starts with stderr on `/dev/null` and the
//! log's path noted here; `diag!` (and a panic) opens the
//! log onto stderr before writing. An exec'd shim gets the log as its
//! stderr from the daemon and notes no path, so nothing changes for it.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Where the diagnostics go once there is one, if stderr is not there yet.
static LAZY_LOG: OnceLock<PathBuf> = OnceLock::new();
/// Set once the log is on stderr (or cannot be).
static OPENED: OnceLock<()> = OnceLock::new();

/// Notes that diagnostics go to `path`, created when the first is written;
/// a panic's message goes there too.
pub fn log_lazily_to(path: PathBuf) {
    if LAZY_LOG.set(path).is_err() {
        return;
    }
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        open_log();
        previous(info);
    }));
}

/// Puts the log on stderr if a path was noted and it is not there yet.
pub fn open_log() {
    let Some(path) = LAZY_LOG.get() else {
        return;
    };
    OPENED.get_or_init(|| {
        let opened = OpenOptions::new()
            .append(true)
            .create(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path);
        // Without the log, stderr stays on /dev/null: nothing else to do.
        if let Ok(log) = opened {
            let _ = rustix::stdio::dup2_stderr(&log);
        }
    });
}

/// `eprintln!` into the shim's log, which it creates when needed.
macro_rules! diag {
    ($($arg:tt)*) => {{
        $crate::diag::open_log();
        eprintln!($($arg)*);
    }};
}
