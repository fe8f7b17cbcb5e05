//! Where a run lives. Today every run is a local shim; this module is the
//! one narrow place the engine talks to it through (start, find after a
//! restart, send a command, learn the end), so that other executors can
//! take its place with the same states, logs and stop semantics.

use crate::zygote::Zygote;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, BufReader};
use wrangle_os::exits::ExitWatcher;
use wrangle_os::fdtable;
use wrangle_os::{PidFd, ProcessId, RunCgroup};
use wrangle_shim::protocol::{
    ControlCommand, ShimSpec, ShimState, CONTROL_FIFO, SHIM_LOG, SPEC_FILE, STATE_FILE,
};

/// How a start went.
#[derive(Debug)]
pub enum Started {
    /// The exec is confirmed; the shim watches the agent.
    Running {
        /// Handle on the shim, readable when it exits.
        shim: PidFd,
        /// The shim's report.
        state: Box<ShimState>,
    },
    /// The agent could not be started.
    Failed {
        /// The shim, if one was started (it exits by itself).
        shim: Option<PidFd>,
        /// Why, for people.
        reason: String,
    },
}

/// What became of a run's shim while nobody watched.
#[derive(Debug)]
pub enum Found {
    /// The shim still runs: re-attach to it.
    Alive {
        /// Handle on the shim.
        shim: PidFd,
        /// Its last state, if readable.
        state: Option<ShimState>,
    },
    /// The shim finished and recorded how the agent ended.
    Ended {
        /// Its final state.
        state: ShimState,
    },
    /// The shim is gone without a final record.
    Lost {
        /// Its last state, if readable.
        state: Option<ShimState>,
        /// Why the run counts as lost, for people.
        why: String,
    },
}

/// Local runs: one shim process per run, on this machine, forked by the
/// zygote (or, without one, `wrangle __shim` exec'd).
#[derive(Clone)]
pub struct LocalShims {
    program: PathBuf,
    daemon_pid: i32,
    exits: ExitWatcher,
    zygote: Option<Arc<Zygote>>,
}

impl LocalShims {
    /// Shims run `program` (the wrangle binary), know the daemon by pid and
    /// hold runs under `runs`. `WRANGLE_ZYGOTE=off` makes every shim an
    /// exec of `program` (slower; for comparison and as a way out).
    pub fn new(program: PathBuf, runs: PathBuf) -> io::Result<LocalShims> {
        let daemon_pid = std::process::id() as i32;
        let zygote = match std::env::var("WRANGLE_ZYGOTE").as_deref() {
            Ok("off") => None,
            _ => {
                let zygote = Arc::new(Zygote::new(program.clone(), daemon_pid, runs));
                zygote.start_soon();
                Some(zygote)
            }
        };
        Ok(LocalShims {
            program,
            daemon_pid,
            exits: ExitWatcher::start()?,
            zygote,
        })
    }

    /// Starts a shim for a run in `dir` and waits for its report of the
    /// exec: exact and immediate, from the exec itself.
    pub async fn start(&self, dir: &Path, spec: &ShimSpec) -> Started {
        match self.spawn(dir, spec) {
            Ok((shim, report)) => {
                let line = read_report(report).await;
                match line.and_then(|line| {
                    serde_json::from_str::<ShimState>(&line).map_err(io::Error::other)
                }) {
                    Ok(state) => match state.spawn_error.clone() {
                        Some(reason) => Started::Failed {
                            shim: Some(shim),
                            reason,
                        },
                        None => Started::Running {
                            shim,
                            state: Box::new(state),
                        },
                    },
                    Err(_) => Started::Failed {
                        reason: format!(
                            "the shim failed before starting the agent: {}",
                            shim_failure(dir)
                        ),
                        shim: Some(shim),
                    },
                }
            }
            Err(error) => Started::Failed {
                shim: None,
                reason: format!("cannot start the shim {}: {error}", self.program.display()),
            },
        }
    }

    fn spawn(&self, dir: &Path, spec: &ShimSpec) -> io::Result<(PidFd, OwnedFd)> {
        make_run_dir(dir)?;
        let spec_json = serde_json::to_vec(spec).map_err(io::Error::other)?;
        if let Some(zygote) = &self.zygote {
            // The spec travels with the request, which saves a file per
            // run, unless it is too long for one message.
            let in_request = spec_json.len() <= wrangle_shim::zygote::MAX_SPEC_IN_REQUEST;
            if !in_request {
                fs::write(dir.join(SPEC_FILE), &spec_json)?;
            }
            let (report, report_write) = io::pipe()?;
            match zygote.fork_shim(
                dir,
                in_request.then_some(spec_json.as_slice()),
                &OwnedFd::from(report_write),
            ) {
                Ok(shim) => return Ok((shim, OwnedFd::from(report))),
                Err(error) => {
                    tracing::warn!("the shim zygote cannot fork a shim ({error}); exec'ing one")
                }
            }
        }
        fs::write(dir.join(SPEC_FILE), &spec_json)?;
        let shim_log = fs::File::create(dir.join(SHIM_LOG))?;
        let mut command = Command::new(&self.program);
        command
            .arg(wrangle_shim::SHIM_COMMAND)
            .arg(dir)
            .arg(self.daemon_pid.to_string())
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(shim_log);
        if let Some(limit) = wrangle_os::fdtable::original_limit() {
            command.env(wrangle_os::fdtable::ORIGINAL_LIMIT_ENV, limit);
        }
        let mut child = command.spawn()?;
        // Our unreaped child: its pid cannot be reused before we reap it.
        let shim = match PidFd::open_child(child.id() as i32) {
            Ok(shim) => shim,
            Err(error) => {
                // Nothing could watch it: it dies before it starts the
                // agent (it waits for nothing from us, so at once).
                let _ = child.kill();
                let _ = child.wait();
                return Err(error);
            }
        };
        let report = child.stdout.take().expect("stdout is piped");
        Ok((shim, OwnedFd::from(report)))
    }

    /// Finds the shim of a run after a daemon restart: by the pid and start
    /// time it recorded (or the store did), never by pid alone.
    pub fn find(&self, dir: &Path, known_shim: Option<ProcessId>) -> Found {
        let state = read_state(dir);
        let shim_id = state
            .as_ref()
            .ok()
            .map(|state| ProcessId::from(state.shim))
            .or(known_shim);
        let alive = shim_id
            .and_then(|id| PidFd::open(id).ok().flatten())
            .filter(|shim| !shim.has_exited());
        // A shim that ended between the read above and the look at it wrote
        // its last state before it exited: read again, or a run that
        // ended well would count as lost.
        let state = match (&alive, state) {
            (None, Ok(_)) => read_state(dir),
            (_, state) => state,
        };
        match (alive, state) {
            (Some(shim), state) => Found::Alive {
                shim,
                state: state.ok(),
            },
            (None, Ok(state)) if state.finished_at.is_some() || state.spawn_error.is_some() => {
                Found::Ended { state }
            }
            (None, Ok(state)) if state.exit.is_some() => Found::Ended { state },
            (None, Ok(state)) => Found::Lost {
                why: match state.agent {
                    Some(_) => "its shim was killed, so its exit status is unknown".into(),
                    None => "its shim ended before the agent was started".into(),
                },
                state: Some(state),
            },
            // Without a state file the shim never got far enough to write
            // one, unless the store knows it: then the file was removed.
            (None, Err(error)) if error.kind() == io::ErrorKind::NotFound => Found::Lost {
                state: None,
                why: match known_shim {
                    None => "the daemon stopped before the agent was started".into(),
                    Some(_) => format!(
                        "its shim is gone and {} is missing, so its exit status is unknown",
                        dir.join(STATE_FILE).display()
                    ),
                },
            },
            (None, Err(error)) => Found::Lost {
                state: None,
                why: format!("its shim is gone and its state cannot be read: {error}"),
            },
        }
    }

    /// Sends a command to the run's shim. `NotFound`, `ENXIO` or `EPIPE`
    /// mean the shim has exited or is exiting (its end is about to be
    /// recorded).
    pub fn send(&self, dir: &Path, command: ControlCommand) -> io::Result<()> {
        wrangle_os::files::send_to_fifo(&dir.join(CONTROL_FIFO), command.to_line().as_bytes())
    }

    /// Calls `then` once the shim has exited, after reaping it if it is
    /// our child. `then` runs on the exit watcher's thread: keep it short.
    pub fn when_exited(&self, shim: PidFd, then: impl FnOnce() + Send + 'static) -> io::Result<()> {
        self.exits.watch(shim, move |shim| {
            let _ = shim.try_reap();
            then();
        })
    }
}

/// The shim's last recorded state in `dir`.
pub fn read_state(dir: &Path) -> io::Result<ShimState> {
    ShimState::read(&dir.join(STATE_FILE))
}

/// Kills what a start that failed before its shim could be watched may
/// have left running: the shim may have started the agent just before it
/// was killed, and written no state that says so. Both the run's `cgroup`
/// (as the shim was given it) and what the shim's last state names go,
/// with the spare descriptor if need be (the daemon out of descriptors is
/// mostly why such a start fails).
pub fn kill_failed_start(dir: &Path, cgroup: Option<&Path>) {
    kill_tree(cgroup, None);
    if let Ok(state) = fdtable::with_spare(|| read_state(dir)) {
        kill_leftovers(&state);
    }
}

/// Kills what is left of a run whose shim is gone: the whole cgroup, or the
/// agent's process group if its leader (same pid *and* start time) lives.
pub fn kill_leftovers(state: &ShimState) {
    kill_tree(state.cgroup.as_deref(), state.agent.map(Into::into));
    crate::limits::remove_v1_groups(&state.limits);
}

/// Kills what is left of a run whose shim is gone, from what the daemon
/// recorded of it (when the shim's own state cannot be read): the run's
/// `cgroup`, or the process group of `agent` if its leader lives.
pub fn kill_tree(cgroup: Option<&Path>, agent: Option<ProcessId>) {
    // With the spare descriptor if need be: a start that failed for want
    // of descriptors is cleaned up with this.
    if let Some(path) = cgroup {
        let cgroup = RunCgroup::existing(path);
        let _ = fdtable::with_spare(|| cgroup.kill_all());
        for _ in 0..50 {
            if cgroup.remove().is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        return;
    }
    if let Some(agent) = agent {
        if let Ok(Some(leader)) = fdtable::with_spare(|| PidFd::open(agent)) {
            if !leader.has_exited() {
                let _ = wrangle_os::signals::send_to_group(agent.pid, libc::SIGKILL);
                let _ = leader.signal(libc::SIGKILL);
            }
        }
    }
}

/// Reads the shim's one-line report: everything up to the first newline,
/// or `UnexpectedEof` when the shim closed its stdout without one.
async fn read_report(report: OwnedFd) -> io::Result<String> {
    let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(report)?;
    let mut reader = BufReader::new(pipe);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    if line.ends_with('\n') {
        Ok(line)
    } else {
        Err(io::Error::from(io::ErrorKind::UnexpectedEof))
    }
}

/// The last line the shim wrote to its log, to explain its failure.
fn shim_failure(dir: &Path) -> String {
    fs::read_to_string(dir.join(SHIM_LOG))
        .ok()
        .and_then(|log| {
            log.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "it exited without a word".into())
}

/// Makes a run's directory (`runs/<agent>/<run>`) and its agent's: two
/// `mkdir`s where `create_dir_all` would first try the run's and fail.
fn make_run_dir(dir: &Path) -> io::Result<()> {
    let exists_already = |made: io::Result<()>| match made {
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    };
    if let Some(agent_dir) = dir.parent() {
        match fs::create_dir(agent_dir) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => fs::create_dir_all(agent_dir)?,
            made => exists_already(made)?,
        }
    }
    exists_already(fs::create_dir(dir))
}
