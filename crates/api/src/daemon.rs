//! The daemon's footprint in its home: the directory itself (0700), the
//! lock that keeps a second daemon out, the pid file and the socket (0600).

use anyhow::{bail, Context};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// File name of the API socket in the home.
pub const SOCKET: &str = "wrangle.sock";
/// File name of the daemon's pid file in the home.
pub const PID_FILE: &str = "daemon.pid";
/// File name of the lock held for the daemon's whole life.
pub const LOCK_FILE: &str = "daemon.lock";
/// Longest path a Unix socket address can hold.
const SOCKET_PATH_MAX: usize = 107;

/// Creates the home (mode 0700) if needed and checks that it can be
/// written; returns its absolute path.
pub fn prepare_home(home: &Path) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(home)
        .with_context(|| format!("cannot create the wrangle home {}", home.display()))?;
    let home = fs::canonicalize(home)
        .with_context(|| format!("cannot resolve the wrangle home {}", home.display()))?;
    let metadata = fs::metadata(&home)?;
    if metadata.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700)).with_context(|| {
            format!(
                "the wrangle home {} must be private (mode 0700)",
                home.display()
            )
        })?;
    }
    rustix::fs::access(
        &home,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    )
    .map_err(io::Error::from)
    .with_context(|| format!("the wrangle home {} is not writable", home.display()))?;
    Ok(home)
}

/// Takes the home's lock, or `None` when another daemon holds it. The lock
/// is released when the returned file is closed, even by a SIGKILL.
pub fn lock_home(home: &Path) -> anyhow::Result<Option<File>> {
    let path = home.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(error) => {
            Err(io::Error::from(error)).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// The pid in the home's pid file, if any.
pub fn running_pid(home: &Path) -> Option<i32> {
    fs::read_to_string(home.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Writes this process's pid to the pid file.
pub fn write_pid_file(home: &Path) -> anyhow::Result<()> {
    let path = home.join(PID_FILE);
    wrangle_os::files::write_atomic(&path, format!("{}\n", std::process::id()).as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Binds the API socket, replacing a stale one (we hold the lock, so no
/// daemon serves it), with mode 0600.
pub fn bind_socket(home: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    let path = home.join(SOCKET);
    if path.as_os_str().len() > SOCKET_PATH_MAX {
        bail!(
            "the socket path {} is longer than {SOCKET_PATH_MAX} bytes, the most a Unix socket allows; choose a shorter WRANGLE_HOME",
            path.display()
        );
    }
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error)
                .with_context(|| format!("cannot remove the stale {}", path.display()))
        }
    }
    let listener = std::os::unix::net::UnixListener::bind(&path)
        .with_context(|| format!("cannot bind {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(tokio::net::UnixListener::from_std(listener)?)
}

/// Removes the socket, so that no new client connects.
pub fn remove_socket(home: &Path) {
    let _ = fs::remove_file(home.join(SOCKET));
}

/// Removes the socket and pid file on a clean exit.
pub fn remove_runtime_files(home: &Path) {
    remove_socket(home);
    let _ = fs::remove_file(home.join(PID_FILE));
}

/// Descriptors the daemon's table is sized for at start-up: a pidfd per
/// run and a few per run being started, for fleets of several thousand.
const FD_TABLE_SIZE: u64 = 16384;

/// The open-file limit the daemon asks for where it may (as root).
const FD_LIMIT_WANTED: u64 = 1 << 20;

/// Raises the soft limit of open files to the hard limit (the daemon holds
/// a pidfd per run, and thousands of runs are the point), and sizes the
/// descriptor table for it now, while the daemon has one thread: growing
/// it later stalls the daemon for an RCU grace period each time (see
/// `wrangle_os::fdtable`).
pub fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    // Children get back what the daemon was started with.
    wrangle_os::fdtable::remember_original_limit();
    let mut limit = getrlimit(Resource::Nofile);
    // Root (CAP_SYS_RESOURCE) may go past the hard limit, up to the
    // kernel's `fs.nr_open`: a fleet of 10,000 holds a pidfd each, and
    // the sampler keeps its files open only where the limit leaves room
    // (opening them anew each tick costs most of an idle daemon's CPU).
    let wanted = wrangle_os::features::sysctl_number("fs/nr_open")
        .unwrap_or(FD_LIMIT_WANTED)
        .min(FD_LIMIT_WANTED);
    if limit.maximum.is_some_and(|maximum| maximum < wanted) {
        let raised = rustix::process::Rlimit {
            current: Some(wanted),
            maximum: Some(wanted),
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = getrlimit(Resource::Nofile);
        }
    }
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(error) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!("cannot raise the open-file limit: {error}");
        }
    }
    if let Err(error) = wrangle_os::fdtable::reserve(FD_TABLE_SIZE) {
        tracing::warn!("cannot size the descriptor table: {error}");
    }
    if let Err(error) = wrangle_os::fdtable::keep_spare() {
        tracing::warn!("cannot keep a descriptor spare: {error}");
    }
}
