//! The daemon's side of the shim zygote (see `wrangle_shim::zygote`): it
//! starts the zygote with the daemon, asks it to fork a shim per
//! run, and starts a new one if it died. Callers fall back to exec'ing a
//! shim when no zygote can be had.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;
use wrangle_os::{fdpass, PidFd};
use wrangle_shim::zygote::{self, Reply, ZYGOTE_COMMAND};

/// A fork takes well under a millisecond; a zygote that does not answer
/// within this is stuck and is replaced.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The zygote of this daemon, started on first use.
pub struct Zygote {
    program: PathBuf,
    daemon_pid: i32,
    /// Where run directories live, to leave room in the zygote's command
    /// line for the shims' titles.
    runs: PathBuf,
    /// One request at a time: each is a message and its answer.
    running: Mutex<Option<Running>>,
}

struct Running {
    socket: OwnedFd,
    process: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        // Closing the socket ends the zygote; reap it so no zombie is left.
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Zygote {
    /// A zygote that runs `program` (the wrangle binary) for runs under
    /// `runs`; nothing starts until [`Zygote::start_soon`] or the first
    /// [`Zygote::fork_shim`].
    pub fn new(program: PathBuf, daemon_pid: i32, runs: PathBuf) -> Zygote {
        Zygote {
            program,
            daemon_pid,
            runs,
            running: Mutex::new(None),
        }
    }

    /// Forks a shim for the run in `dir` with `report` as its stdout,
    /// sending it `spec_json` (else it reads `spec.json`). A zygote that
    /// died or hangs is replaced once.
    pub fn fork_shim(
        &self,
        dir: &Path,
        spec_json: Option<&[u8]>,
        report: &OwnedFd,
    ) -> io::Result<PidFd> {
        let request = zygote::encode_request(dir, spec_json);
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let mut last_error = None;
        for _ in 0..2 {
            if running.is_none() {
                *running = Some(self.start()?);
            }
            let zygote = running.as_ref().expect("started above");
            match ask(&zygote.socket, &request, report) {
                Ok(shim) => return Ok(shim),
                // The fork itself failed (e.g. EAGAIN): a new zygote would
                // not do better.
                Err(Asked::Refused(error)) => return Err(error),
                Err(Asked::Broken(error)) => {
                    tracing::warn!("the shim zygote failed ({error}); starting a new one");
                    *running = None;
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("the shim zygote failed")))
    }

    /// Starts the zygote now, on a thread of its own, so that the first
    /// runs do not wait for its exec (a daemon that never starts a run
    /// pays one idle process).
    pub fn start_soon(self: &std::sync::Arc<Self>) {
        let zygote = self.clone();
        let started = std::thread::Builder::new()
            .name("zygote-start".into())
            .spawn(move || {
                let mut running = zygote.running.lock().unwrap_or_else(|e| e.into_inner());
                if running.is_none() {
                    match zygote.start() {
                        Ok(started) => *running = Some(started),
                        // The first run tries again, and falls back to exec.
                        Err(error) => tracing::warn!("cannot start the shim zygote: {error}"),
                    }
                }
            });
        if let Err(error) = started {
            tracing::warn!("cannot start the shim zygote: {error}");
        }
    }

    fn start(&self) -> io::Result<Running> {
        let (ours, theirs) = fdpass::socket_pair()?;
        fdpass::set_receive_timeout(ours.as_fd(), ANSWER_TIMEOUT)?;
        let room = " ".repeat(zygote::title_room(&self.runs));
        let mut command = Command::new(&self.program);
        command
            .arg(ZYGOTE_COMMAND)
            .arg(self.daemon_pid.to_string())
            .arg(room)
            .env_clear()
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null());
        if let Some(limit) = wrangle_os::fdtable::original_limit() {
            command.env(wrangle_os::fdtable::ORIGINAL_LIMIT_ENV, limit);
        }
        let process = command.spawn()?;
        Ok(Running {
            socket: ours,
            process,
        })
    }
}

enum Asked {
    /// The zygote answered that it cannot fork.
    Refused(io::Error),
    /// The zygote is gone, stuck or spoke nonsense.
    Broken(io::Error),
}

/// Longest wait for a shim told to stop to be stopped.
const STOPPING_AT_MOST: Duration = Duration::from_millis(200);

/// Kills shim `pid`, which nothing can watch, and whatever it started.
/// It is stopped first, so that it forks nothing more; then its children
/// (the agent, if it got that far) and their process groups are killed,
/// then the shim. Without a cgroup nothing else would find an agent whose
/// shim died before writing its state: it would run on, a child of init.
/// Each file it reads uses the spare descriptor (see
/// [`fdtable::with_spare`]): the daemon is out of them.
fn kill_unwatched_shim(pid: i32) {
    use wrangle_os::{fdtable, proc, signals};
    let _ = signals::send(pid, libc::SIGSTOP);
    let waited_from = std::time::Instant::now();
    // Stopped, dead, gone, or (past the wait) killed anyway.
    while let Ok(stat) = fdtable::with_spare(|| proc::stat(pid)) {
        if matches!(stat.state, 'T' | 't') || stat.is_dead() {
            break;
        }
        if waited_from.elapsed() > STOPPING_AT_MOST {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let children =
        fdtable::with_spare(|| std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")))
            .unwrap_or_default();
    for child in children
        .split_ascii_whitespace()
        .filter_map(|child| child.parse::<i32>().ok())
    {
        // The agent leads a group of its own once it called setsid(); a
        // group of that id can only be its own while it lives.
        let _ = signals::send_to_group(child, libc::SIGKILL);
        let _ = signals::send(child, libc::SIGKILL);
    }
    let _ = signals::send(pid, libc::SIGKILL);
}

fn ask(socket: &OwnedFd, request: &[u8], report: &OwnedFd) -> Result<PidFd, Asked> {
    fdpass::send(socket.as_fd(), request, &[report.as_fd()]).map_err(Asked::Broken)?;
    let mut buffer = [0u8; 64];
    let (length, mut fds) = fdpass::receive(socket.as_fd(), &mut buffer).map_err(Asked::Broken)?;
    match Reply::decode(&buffer[..length]) {
        Some(Reply::Forked(id)) if fds.len() == 1 => Ok(PidFd::from_parent(fds.remove(0), id)),
        // Forked, but its pidfd did not come (the daemon is out of
        // descriptors): nothing could watch that shim, so it dies now,
        // with the agent if it got that far (it is the zygote's unreaped
        // child, so its pid is still its own).
        Some(Reply::Forked(id)) => {
            let pid = id.pid;
            kill_unwatched_shim(pid);
            Err(Asked::Refused(io::Error::other(format!(
                "the shim zygote forked shim {pid} but its pidfd did not arrive (out of descriptors?); it was killed"
            ))))
        }
        Some(Reply::Failed(errno)) => Err(Asked::Refused(io::Error::from_raw_os_error(errno))),
        _ if length == 0 => Err(Asked::Broken(io::Error::from(io::ErrorKind::UnexpectedEof))),
        _ => Err(Asked::Broken(io::Error::new(
            io::ErrorKind::InvalidData,
            "the shim zygote gave an answer that is not one",
        ))),
    }
}
