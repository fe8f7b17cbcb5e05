//! What the crash-safety tests do to a home from outside: SIGKILL its
//! daemon, read the shims' own records of their runs, lock its store, and
//! make the kernel hand a dead agent's pid to an unrelated process.

use super::{procfs, wait_until, Home, SOON};
use serde_json::Value;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

/// Where the kernel keeps the last pid it handed out in this pid namespace;
/// writing it (root only) chooses the next one.
const NS_LAST_PID: &str = "/proc/sys/kernel/ns_last_pid";

/// SIGKILLs the home's daemon and waits until it is dead with all its
/// threads (a zombie at most): its socket is closed and its lock released,
/// the next CLI call starts a new one. Returns the dead daemon.
pub fn kill_daemon(home: &Home) -> procfs::Proc {
    let pid = home.daemon_pid().expect("a daemon runs");
    let daemon = procfs::stat(pid).expect("the daemon is in /proc");
    super::kill(pid);
    wait_until(SOON, "the SIGKILLed daemon is dead", || {
        has_exited_entirely(&daemon)
    });
    reap(pid);
    daemon
}

/// True once `process` and every thread of it have exited. Its main
/// thread turns zombie while other threads may still be on their way out,
/// holding the files they share (a listening socket, a lock) open.
pub fn has_exited_entirely(process: &procfs::Proc) -> bool {
    if !process.still_exists() {
        return true;
    }
    let threads = fs::read_dir(format!("/proc/{}/task", process.pid))
        .map(|tasks| tasks.count())
        .unwrap_or(0);
    !process.is_alive() && threads <= 1
}

/// The directory of run `run` of agent `id`.
pub fn run_dir(home: &Home, id: &str, run: u32) -> PathBuf {
    home.runs_dir(id).join(run.to_string())
}

/// The shim's `state.json` of run `run` of agent `id`, as JSON; `None`
/// while it does not exist or cannot be parsed.
pub fn shim_state(home: &Home, id: &str, run: u32) -> Option<Value> {
    let text = fs::read_to_string(run_dir(home, id, run).join("state.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// The agent's captured stdout, read from the file the shim writes.
pub fn stdout_log(home: &Home, id: &str, run: u32) -> String {
    fs::read_to_string(run_dir(home, id, run).join("stdout.log")).unwrap_or_default()
}

/// Opens the home's store read-write, as another program could.
pub fn writable_database(home: &Home) -> rusqlite::Connection {
    let connection = rusqlite::Connection::open(home.database()).expect("open wrangle.db");
    connection
        .busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    connection
}

/// Opens the home's store and takes an EXCLUSIVE lock on it: until the
/// connection is dropped (or rolls back) no one else can write to it;
/// readers still can, the store being in WAL mode.
pub fn lock_database(home: &Home) -> rusqlite::Connection {
    let connection = writable_database(home);
    connection
        .execute_batch("BEGIN EXCLUSIVE")
        .expect("lock wrangle.db");
    connection
}

/// Lines of a log that holds one number per line, as numbers; panics on a
/// line that is not a number (a torn or mixed line is a bug too).
pub fn numbers(log: &str) -> Vec<u64> {
    log.lines()
        .map(|line| {
            line.parse()
                .unwrap_or_else(|_| panic!("{line:?} is not a number in the log"))
        })
        .collect()
}

/// Asserts that `numbers` is exactly 1, 2, 3 ... with none missing and
/// none twice.
pub fn assert_counts_up_from_one(numbers: &[u64]) {
    for (index, number) in numbers.iter().enumerate() {
        assert_eq!(
            *number,
            index as u64 + 1,
            "line {} of the log: expected {}, found {number} (lines around it: {:?})",
            index + 1,
            index + 1,
            &numbers[index.saturating_sub(3)..(index + 4).min(numbers.len())]
        );
    }
}

/// A shell loop that prints 1, 2, 3 ... one line every 50 ms, forever; the
/// marker is its `$0`, so that /proc tells it apart.
pub fn counter_command(marker: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done".into(),
        format!("counter-{marker}"),
    ]
}

/// Makes this process a child subreaper: orphans of its descendants (a
/// daemon once its CLI exits, shims whose daemon was killed, agents whose
/// shim was killed) become its children instead of init's. Then it can
/// reap them itself, which frees their pids even where init reaps nothing
/// (as in some containers).
pub fn become_subreaper() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
}

/// Reaps `pid` if it is a child of this process (see [`become_subreaper`]);
/// does nothing for a process that is not.
pub fn reap(pid: i32) {
    let _ = nix::sys::wait::waitpid(
        nix::unistd::Pid::from_raw(pid),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    );
}

/// SIGKILLs `process` (this very one: same pid and start time) and waits
/// until it is dead (a zombie at most).
pub fn kill_and_wait(process: &procfs::Proc) {
    if process.still_exists() {
        super::kill(process.pid);
    }
    wait_until(SOON, &format!("{process:?} is dead"), || {
        !process.is_alive()
    });
}

/// SIGKILLs `process` (this very one: same pid and start time), reaps it
/// if it is our child, and waits until its pid is free: not even a zombie
/// holds it.
pub fn kill_and_reap(process: &procfs::Proc) {
    if process.still_exists() {
        super::kill(process.pid);
    }
    wait_until(SOON, &format!("{process:?} is dead and reaped"), || {
        reap(process.pid);
        procfs::stat(process.pid).is_none()
    });
}

/// Why [`spawn_with_pid`] could not give the pid away.
#[derive(Debug)]
pub enum Recycle {
    /// `ns_last_pid` cannot be written (not root, or no such file).
    NotPermitted(String),
    /// Other processes took the pid first every time.
    Lost,
}

/// Starts `make()` as the process with pid `pid`, which must be free: sets
/// the pid namespace's last pid to `pid - 1` and spawns at once. Processes
/// started anywhere in between take the pid first, so this tries up to
/// `attempts` times, killing each child that got another pid.
pub fn spawn_with_pid(
    pid: i32,
    attempts: u32,
    mut make: impl FnMut() -> Command,
) -> Result<Child, Recycle> {
    for _ in 0..attempts {
        if let Err(error) = fs::write(NS_LAST_PID, (pid - 1).to_string()) {
            return Err(Recycle::NotPermitted(format!(
                "cannot write {NS_LAST_PID}: {error}"
            )));
        }
        let mut child = make().spawn().expect("spawn the unrelated process");
        if child.id() as i32 == pid {
            return Ok(child);
        }
        let _ = child.kill();
        let _ = child.wait();
        // Someone else may have the pid now, for a while or for good.
        let deadline = Instant::now() + Duration::from_secs(5);
        while procfs::stat(pid).is_some() {
            if Instant::now() >= deadline {
                return Err(Recycle::Lost);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
    Err(Recycle::Lost)
}
