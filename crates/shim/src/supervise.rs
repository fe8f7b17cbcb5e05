//! The shim's life: set up, exec the agent, then one poll loop over the
//! agent's pipes, child exits and the control FIFO until the whole tree is
//! gone and every byte of output is in the logs.

use crate::capture::Capture;
use crate::limits::RunLimits;
use crate::logfiles::LogFiles;
use crate::protocol::{
    ControlCommand, ExitRecord, KillRecord, Phase, ShimSpec, ShimState, StopRecord, WatchdogKill,
    CONTROL_FIFO, SPEC_FILE, STATE_FILE, STDERR_LOG, STDOUT_LOG,
};
use crate::stop::StopSequence;
use crate::tree::Tree;
use chrono::Utc;
use rustix::event::{PollFd, PollFlags, Timespec};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wrangle_os::pidfd::ExitStatus;
use wrangle_os::signals::{self, ChildExits};
use wrangle_os::spawn::{self, AgentCommand};
use wrangle_os::{files, memory, ProcessId, RunCgroup};

/// How often bytes the disk refused are retried.
const RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// How long the shim waits, after the tree is gone, for a process outside
/// it that still holds an output pipe open (it was handed the fd).
const FINAL_RETRY_LIMIT: Duration = Duration::from_secs(30);
/// How long the shim waits, after the tree is gone, for a full disk to
/// take the last output: the run's end is recorded only once the shim is
/// done, and it must not wait on the disk for long.
const FINAL_DISK_WAIT: Duration = Duration::from_secs(2);
/// How often the memory watchdog sums the tree's resident memory: often
/// enough that a fast allocator gets little past the limit, seldom enough
/// to cost nothing worth noting (it runs only for runs with a memory limit
/// that no controller enforces).
const WATCHDOG_INTERVAL: Duration = Duration::from_millis(250);

/// Sets up, starts the agent and supervises it to the end. `parent` is the
/// process that started the shim (the daemon, or its zygote); `spec` is
/// what to run when it came with the request, else it is read from
/// `spec.json` in `dir`.
pub fn run(dir: &Path, parent: i32, spec: Option<ShimSpec>) -> io::Result<()> {
    // A process group of our own: a Ctrl-C in the daemon's terminal (sent
    // to the foreground group) and a kill of the zygote's group do not
    // reach the shim. Not a session: that would also cost a scheduler
    // autogroup per shim, and the shim never has a terminal.
    let _ = rustix::process::setpgid(None, None);
    // Until state.json exists nobody could find this shim after a daemon
    // crash, so until then it dies with its parent (and starts nothing);
    // the zygote, its parent, lives exactly as long as the daemon.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    if rustix::process::getppid().map(|pid| pid.as_raw_nonzero().get()) != Some(parent) {
        return Err(io::Error::other(
            "the daemon that started this shim is gone",
        ));
    }
    signals::ignore_termination_signals()?;
    let exits = ChildExits::new()?;
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))?;

    let spec: ShimSpec = match spec {
        Some(spec) => spec,
        None => serde_json::from_slice(&fs::read(dir.join(SPEC_FILE))?).map_err(|error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad {SPEC_FILE}: {error}"),
            )
        })?,
    };
    let cgroup = spec
        .cgroup
        .as_deref()
        .and_then(|path| match RunCgroup::create(path) {
            Ok(cgroup) => Some(cgroup),
            Err(error) => {
                diag!(
                "wrangle shim: cannot create cgroup {}: {error}; falling back to the process group",
                path.display()
            );
                None
            }
        });
    let mut state = ShimState {
        phase: Phase::Starting,
        shim: ProcessId::current()?.into(),
        agent: None,
        cgroup: cgroup.as_ref().map(|c| c.path().to_path_buf()),
        started_at: None,
        spawn_error: None,
        exit: None,
        ended_at: None,
        stop: None,
        kill: None,
        leftovers: 0,
        log_error: None,
        log_dropped_bytes: 0,
        finished_at: None,
        limits: spec.limits.clone(),
        oom_kills: 0,
        memory_watchdog: None,
    };

    let (stdout_read, stdout_write) = output_pipe()?;
    let (stderr_read, stderr_write) = output_pipe()?;
    let stdout = Capture::new(
        stdout_read,
        LogFiles::new(dir, STDOUT_LOG, spec.logs.max_size),
        spec.logs,
    );
    let stderr = Capture::new(
        stderr_read,
        LogFiles::new(dir, STDERR_LOG, spec.logs.max_size),
        spec.logs,
    );
    let control_path = dir.join(CONTROL_FIFO);
    match files::make_fifo(&control_path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(error),
    }
    // Read-write, so the FIFO never reports end-of-file between writers.
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&control_path)?;
    write_state(dir, &state)?;
    rustix::process::set_parent_process_death_signal(None)?;

    let (limits, limit_groups) = match apply_limits(&spec, cgroup.as_ref()) {
        Ok(applied) => applied,
        Err(reason) => return give_up(dir, state, &control_path, cgroup.as_ref(), None, reason),
    };
    let command = AgentCommand {
        argv: spec.argv.clone(),
        env: spec.env.clone(),
        cwd: spec.cwd.clone(),
        stdout: stdout_write,
        stderr: stderr_write,
        cgroup: match &cgroup {
            Some(cgroup) => Some(cgroup.open_for_join()?),
            None => None,
        },
        limit_groups,
        nofile: limits.nofile(),
    };
    let program = spec.argv.first().cloned().unwrap_or_default();
    let main_pid = match spawn::spawn(command) {
        Ok(pid) => pid,
        Err(error) => {
            let reason = error.describe(&program, &spec.cwd);
            return give_up(
                dir,
                state,
                &control_path,
                cgroup.as_ref(),
                Some(&limits),
                reason,
            );
        }
    };
    state.agent = Some(ProcessId::of(main_pid)?.into());
    state.started_at = Some(Utc::now());
    state.phase = Phase::Running;
    write_state(dir, &state)?;
    report_to_daemon(&state);

    Supervisor {
        dir: dir.to_path_buf(),
        watchdog: limits.watchdog_limit().map(|limit| Watchdog {
            limit,
            next: Instant::now(),
        }),
        limits,
        spec,
        state,
        tree: Tree::new(main_pid, cgroup),
        stdout,
        stderr,
        exits,
        control,
        control_path,
        control_buffer: Vec::new(),
        main_pid,
        sequence: None,
    }
    .run()
}

/// Applies the run's limits and opens the cgroup v1 groups the agent is to
/// join; the reason, for people, when a limit cannot be applied.
fn apply_limits(
    spec: &ShimSpec,
    cgroup: Option<&RunCgroup>,
) -> Result<(RunLimits, Vec<File>), String> {
    let limits = RunLimits::apply(&spec.limits, cgroup)?;
    match limits.join_files() {
        Ok(files) => Ok((limits, files)),
        Err(error) => {
            limits.remove();
            Err(format!(
                "cannot join the cgroups of the run's limits: {error}"
            ))
        }
    }
}

/// The agent cannot be started: records why, tells the daemon and removes
/// what was made for the run.
fn give_up(
    dir: &Path,
    mut state: ShimState,
    control_path: &Path,
    cgroup: Option<&RunCgroup>,
    limits: Option<&RunLimits>,
    reason: String,
) -> io::Result<()> {
    state.spawn_error = Some(reason);
    state.phase = Phase::Exited;
    state.finished_at = Some(Utc::now());
    write_state(dir, &state)?;
    report_to_daemon(&state);
    let _ = fs::remove_file(control_path);
    if let Some(limits) = limits {
        limits.remove();
    }
    if let Some(cgroup) = cgroup {
        let _ = cgroup.remove();
    }
    Ok(())
}

/// A pipe whose read end (the shim's) is non-blocking and whose write end
/// (the agent's) blocks, as programs expect of their stdout.
fn output_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    rustix::io::ioctl_fionbio(&read, true)?;
    Ok((read, write))
}

fn write_state(dir: &Path, state: &ShimState) -> io::Result<()> {
    let json = serde_json::to_vec(state).map_err(io::Error::other)?;
    files::write_by_exchange(&dir.join(STATE_FILE), &json)
}

/// Tells the daemon that spawned us how the exec went (one JSON line on
/// stdout), then lets go of stdout: the daemon may be gone, and the shim
/// must not hold the pipe open.
fn report_to_daemon(state: &ShimState) {
    if let Ok(mut line) = serde_json::to_vec(state) {
        line.push(b'\n');
        let _ = io::stdout().write_all(&line);
        let _ = io::stdout().flush();
    }
    if let Ok(null) = File::open("/dev/null") {
        let _ = rustix::stdio::dup2_stdout(&null);
    }
}

struct Supervisor {
    dir: PathBuf,
    spec: ShimSpec,
    state: ShimState,
    tree: Tree,
    stdout: Capture,
    stderr: Capture,
    exits: ChildExits,
    control: File,
    control_path: PathBuf,
    control_buffer: Vec<u8>,
    main_pid: i32,
    sequence: Option<StopSequence>,
    limits: RunLimits,
    watchdog: Option<Watchdog>,
}

/// The memory watchdog, where no controller holds the memory limit.
struct Watchdog {
    /// The limit on the tree's resident memory, in bytes.
    limit: u64,
    /// When to look next.
    next: Instant,
}

impl Supervisor {
    fn run(mut self) -> io::Result<()> {
        loop {
            if self.state.exit.is_some() && self.tree.is_empty() {
                break;
            }
            let now = Instant::now();
            let mut deadline = self.sequence.as_ref().map(StopSequence::deadline);
            if self.stdout.has_pending() || self.stderr.has_pending() {
                let retry = now + RETRY_INTERVAL;
                deadline = Some(deadline.map_or(retry, |d| d.min(retry)));
            }
            if let Some(watchdog) = &self.watchdog {
                deadline = Some(deadline.map_or(watchdog.next, |d| d.min(watchdog.next)));
            }
            let ready = self.wait(deadline.map(|d| d.saturating_duration_since(now)))?;
            let now_nanos = unix_nanos();
            if ready.child_exits {
                self.exits.drain();
                self.reap_children();
            }
            if ready.control {
                self.read_control();
            }
            if ready.stdout {
                self.stdout.read_available(now_nanos);
            }
            if ready.stderr {
                self.stderr.read_available(now_nanos);
            }
            self.stdout.retry_pending(now_nanos);
            self.stderr.retry_pending(now_nanos);
            self.watch_memory(Instant::now());
            if let Some(sequence) = &mut self.sequence {
                if !self.tree.is_empty() {
                    let before = sequence.escalation();
                    sequence.advance(&self.tree, Instant::now());
                    // Each escalation is on record at once, so a daemon
                    // that reads the state mid-stop sees how far it went.
                    if sequence.escalation() != before && self.state.stop.is_some() {
                        self.note_escalation();
                        self.save_state();
                    }
                }
            }
        }
        self.finish()
    }

    /// Polls every source once; `timeout` None waits indefinitely.
    fn wait(&self, timeout: Option<Duration>) -> io::Result<Ready> {
        let mut fds = vec![
            PollFd::new(&self.exits, PollFlags::IN),
            PollFd::new(&self.control, PollFlags::IN),
        ];
        let stdout_slot = self.stdout.pollable().map(|fd| {
            fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
            fds.len() - 1
        });
        let stderr_slot = self.stderr.pollable().map(|fd| {
            fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
            fds.len() - 1
        });
        let timespec = timeout.map(|t| Timespec {
            tv_sec: t.as_secs() as i64,
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        match rustix::event::poll(&mut fds, timespec.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(Ready::default()),
            Err(error) => return Err(error.into()),
        }
        let fired = |slot: Option<usize>| slot.is_some_and(|i| !fds[i].revents().is_empty());
        Ok(Ready {
            child_exits: fired(Some(0)),
            control: fired(Some(1)),
            stdout: fired(stdout_slot),
            stderr: fired(stderr_slot),
        })
    }

    /// Kills the tree when its resident memory is over the limit, at most
    /// every [`WATCHDOG_INTERVAL`], and records why.
    fn watch_memory(&mut self, now: Instant) {
        let Some(watchdog) = &mut self.watchdog else {
            return;
        };
        if now < watchdog.next {
            return;
        }
        watchdog.next = now + WATCHDOG_INTERVAL;
        let rss_bytes = memory::tree_resident_bytes(&self.tree.pids());
        if rss_bytes <= watchdog.limit {
            return;
        }
        self.watchdog = None;
        self.state.memory_watchdog = Some(WatchdogKill {
            at: Utc::now(),
            rss_bytes,
        });
        self.save_state();
        if let Err(error) = self.tree.kill() {
            diag!("wrangle shim: cannot kill the tree over its memory limit: {error}");
        }
    }

    fn reap_children(&mut self) {
        loop {
            match signals::reap_one() {
                Ok(Some(reaped)) if reaped.pid == self.main_pid => self.main_exited(reaped.status),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }

    fn main_exited(&mut self, status: ExitStatus) {
        self.state.exit = Some(match status {
            ExitStatus::Exited(code) => ExitRecord {
                code: Some(code),
                signal: None,
            },
            ExitStatus::Signaled(signal) => ExitRecord {
                code: None,
                signal: Some(signal),
            },
        });
        self.state.ended_at = Some(Utc::now());
        self.state.phase = Phase::Exited;
        self.state.oom_kills = self.limits.oom_kills();
        if !self.tree.is_empty() {
            // What the agent left behind goes with it, as with systemd's
            // KillMode=control-group: nothing of a run outlives it. During
            // a stop or a kill of the tree the rest is already going (it
            // may just not be reaped yet): that is no leftover.
            if !self.tree_is_being_ended() {
                self.state.leftovers = self.tree.count();
            }
            if self.sequence.is_none() {
                self.sequence = Some(StopSequence::begin(
                    &self.tree,
                    self.spec.stop_signal,
                    Duration::from_millis(self.spec.stop_timeout_ms),
                    Instant::now(),
                ));
            }
        }
        // With the tree gone, `finish` comes next and saves the end (also
        // before it waits for anything); else the end is on record now,
        // while the rest of the tree is being ended.
        if !self.tree.is_empty() {
            self.save_state();
        }
    }

    /// True once a stop sequence runs or SIGKILL was sent to the tree.
    fn tree_is_being_ended(&self) -> bool {
        self.sequence.is_some()
            || self.state.memory_watchdog.is_some()
            || self
                .state
                .kill
                .as_ref()
                .is_some_and(|kill| kill.signal == libc::SIGKILL)
    }

    fn read_control(&mut self) {
        let mut buffer = [0u8; 512];
        loop {
            match self.control.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => self.control_buffer.extend_from_slice(&buffer[..n]),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        while let Some(end) = self.control_buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.control_buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]).into_owned();
            match ControlCommand::parse(&line) {
                Some(command) => self.obey(command),
                None => diag!("wrangle shim: ignoring unknown control line {line:?}"),
            }
        }
    }

    fn obey(&mut self, command: ControlCommand) {
        let now = Instant::now();
        match command {
            ControlCommand::Stop { signal, timeout_ms } => {
                let grace = Duration::from_millis(timeout_ms);
                if self.state.stop.is_none() {
                    self.state.stop = Some(StopRecord {
                        requested_at: Utc::now(),
                        signal,
                        timeout_ms,
                        escalation: crate::protocol::Escalation::Signaled,
                    });
                }
                match &mut self.sequence {
                    Some(sequence) => sequence.hurry(&self.tree, grace, now),
                    None => {
                        self.sequence = Some(StopSequence::begin(&self.tree, signal, grace, now))
                    }
                }
                self.note_escalation();
                // Not saved here: the daemon recorded the request before
                // it sent it (and sends it again to a shim whose state
                // has none, which only hurries it), and the end, saved
                // next, carries it. Of ten thousand agents stopped at
                // once, each write was one more file exchange.
            }
            ControlCommand::Kill { signal } => {
                self.state.kill = Some(KillRecord {
                    signal,
                    at: Utc::now(),
                });
                let result = if signal == libc::SIGKILL {
                    self.tree.kill()
                } else if self.state.exit.is_none() {
                    // The main process is our unreaped child: its pid
                    // cannot have been reused.
                    signals::send(self.main_pid, signal)
                } else {
                    Ok(())
                };
                if let Err(error) = result {
                    diag!("wrangle shim: cannot send signal {signal}: {error}");
                }
                self.save_state();
            }
        }
    }

    fn note_escalation(&mut self) {
        if let (Some(stop), Some(sequence)) = (&mut self.state.stop, &self.sequence) {
            stop.escalation = sequence.escalation();
        }
    }

    fn save_state(&mut self) {
        self.state.log_error = self
            .stdout
            .last_error()
            .or(self.stderr.last_error())
            .map(str::to_string);
        self.state.log_dropped_bytes = self.stdout.dropped_bytes() + self.stderr.dropped_bytes();
        if let Err(error) = write_state(&self.dir, &self.state) {
            diag!("wrangle shim: cannot write {STATE_FILE}: {error}");
        }
    }

    /// The tree is gone: take the last output, write the final state and
    /// clean up the FIFO and the cgroup.
    fn finish(mut self) -> io::Result<()> {
        let started = Instant::now();
        let mut end_saved = false;
        loop {
            let now_nanos = unix_nanos();
            self.stdout.read_available(now_nanos);
            self.stderr.read_available(now_nanos);
            self.stdout.retry_pending(now_nanos);
            self.stderr.retry_pending(now_nanos);
            let closed = self.stdout.pipe_closed() && self.stderr.pipe_closed();
            if (self.stdout.is_done() && self.stderr.is_done())
                || started.elapsed() > FINAL_RETRY_LIMIT
                || (closed && started.elapsed() > FINAL_DISK_WAIT)
            {
                // What the disk still refuses counts as dropped.
                self.stdout.give_up();
                self.stderr.give_up();
                break;
            }
            // Either the disk refuses bytes, or a process outside the tree
            // still holds a pipe open (it was handed the fd).
            let pending = self.stdout.has_pending() || self.stderr.has_pending();
            // The exit is on record before any wait (the shim could be
            // killed during it); mostly the pipes are done at once and
            // the one write below says everything.
            if !end_saved {
                self.save_state();
                end_saved = true;
            }
            std::thread::sleep(if pending {
                RETRY_INTERVAL
            } else {
                Duration::from_millis(10)
            });
        }
        self.note_escalation();
        // Kills the OOM killer made after the main process ended count too.
        self.state.oom_kills = self.state.oom_kills.max(self.limits.oom_kills());
        self.state.finished_at = Some(Utc::now());
        self.save_state();
        let _ = fs::remove_file(&self.control_path);
        // The run's cgroup is left, empty, to the daemon, which removes it
        // once it has recorded the end: ten thousand shims removing theirs
        // at once all waited on the lock of the one directory they share.
        // A run whose directory is gone (its home was deleted while its
        // daemon was down) has no daemon to come back for it: the shim
        // removes its cgroup itself, or nothing ever would.
        if !self.dir.exists() {
            if let Some(cgroup) = self.tree.cgroup() {
                crate::limits::remove_group(cgroup.path());
            }
        }
        self.limits.remove();
        Ok(())
    }
}

#[derive(Default)]
struct Ready {
    child_exits: bool,
    control: bool,
    stdout: bool,
    stderr: bool,
}

fn unix_nanos() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}
