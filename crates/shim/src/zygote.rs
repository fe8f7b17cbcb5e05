//! The shim zygote: one small single-threaded process per daemon that
//! forks a shim for each run on request, so that starting a run costs a
//! fork of a process that has already set itself up, not an exec of the
//! wrangle binary (dynamic loading, relocation and runtime start-up are
//! most of what a shim costs to start).
//!
//! The daemon starts it as `wrangle __zygote <daemon-pid> <room>` with one
//! end of a `SOCK_SEQPACKET` pair as stdin. Each request is one message:
//! the run directory, then (after a NUL) the shim's spec as JSON unless it
//! is in the directory's `spec.json`, with the shim's stdout (the report
//! pipe) attached; its stderr is `/dev/null` until it has something to say
//! (see `diag`). The zygote forks; the child becomes the shim of
//! that run exactly as `wrangle __shim <dir> <parent>` would, and the zygote
//! answers with the child's pid, start time and a pidfd for it. It reaps
//! every shim that exits while it lives, and exits when the daemon closes
//! its end (or dies): shims still setting up then die with it (their
//! parent-death signal), running ones carry on, reparented.

use crate::protocol::ShimSpec;
use crate::reaping::{self, Reaper};
use crate::supervise;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use wrangle_os::fork::{self, Forked};
use wrangle_os::proctitle::TitleArea;
use wrangle_os::signals::{self, ChildExits};
use wrangle_os::{fdpass, ProcessId};

/// The hidden first argument that makes the `wrangle` binary a zygote.
pub const ZYGOTE_COMMAND: &str = "__zygote";

/// Longest spec a request carries; a longer one goes in `spec.json`.
pub const MAX_SPEC_IN_REQUEST: usize = 128 * 1024;

/// Longest request: a run directory and a spec.
const MAX_REQUEST: usize = MAX_SPEC_IN_REQUEST + 4096;

/// A request as bytes: the run directory, and the spec's JSON if given.
pub fn encode_request(dir: &Path, spec_json: Option<&[u8]>) -> Vec<u8> {
    let mut bytes = dir.as_os_str().as_bytes().to_vec();
    if let Some(spec) = spec_json {
        bytes.push(0);
        bytes.extend_from_slice(spec);
    }
    bytes
}

/// The run directory and the spec's JSON (if given) of a request.
fn decode_request(bytes: &[u8]) -> (PathBuf, Option<&[u8]>) {
    let (dir, spec) = match bytes.iter().position(|&byte| byte == 0) {
        Some(end) => (&bytes[..end], Some(&bytes[end + 1..])),
        None => (bytes, None),
    };
    (PathBuf::from(std::ffi::OsStr::from_bytes(dir)), spec)
}

/// The zygote's answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// The shim is forked: this process, whose pidfd comes with the reply.
    Forked(ProcessId),
    /// The fork failed with this errno.
    Failed(i32),
}

impl Reply {
    const FORKED: u8 = b'F';
    const FAILED: u8 = b'E';

    /// The reply as bytes on the socket.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Reply::Forked(id) => {
                let mut bytes = vec![Reply::FORKED];
                bytes.extend_from_slice(&id.pid.to_le_bytes());
                bytes.extend_from_slice(&id.start_time.to_le_bytes());
                bytes
            }
            Reply::Failed(errno) => {
                let mut bytes = vec![Reply::FAILED];
                bytes.extend_from_slice(&errno.to_le_bytes());
                bytes
            }
        }
    }

    /// Reads a reply; `None` when the bytes are not one.
    pub fn decode(bytes: &[u8]) -> Option<Reply> {
        match bytes {
            [Reply::FORKED, rest @ ..] if rest.len() == 12 => Some(Reply::Forked(ProcessId {
                pid: i32::from_le_bytes(rest[..4].try_into().ok()?),
                start_time: u64::from_le_bytes(rest[4..].try_into().ok()?),
            })),
            [Reply::FAILED, rest @ ..] if rest.len() == 4 => {
                Some(Reply::Failed(i32::from_le_bytes(rest.try_into().ok()?)))
            }
            _ => None,
        }
    }
}

/// Runs the zygote with the arguments that follow [`ZYGOTE_COMMAND`]; its
/// socket is stdin.
pub fn main(args: &[OsString]) -> ExitCode {
    if args.is_empty() {
        eprintln!(
            "usage: wrangle {ZYGOTE_COMMAND} <daemon-pid> (started by the daemon, not by hand)"
        );
        return ExitCode::from(2);
    }
    // Shims and their agents get the limit the daemon was started with.
    wrangle_os::fdtable::restore_original_limit();
    let socket = match rustix::io::dup(rustix::stdio::stdin()) {
        Ok(socket) => socket,
        Err(error) => {
            eprintln!("wrangle zygote: cannot take the socket: {error}");
            return ExitCode::FAILURE;
        }
    };
    match serve(socket) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wrangle zygote: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Answers requests until the daemon closes its end.
fn serve(socket: OwnedFd) -> io::Result<()> {
    // A Ctrl-C in the daemon's terminal is not for us; the daemon ends us
    // by closing the socket.
    let _ = rustix::process::setsid();
    let _ = rustix::thread::set_name(c"wrangle-zygote");
    signals::ignore_termination_signals()?;
    let exits = ChildExits::new()?;
    let zygote = ProcessId::current()?.pid;
    // Checked once: the zygote never starts a thread.
    let single_threaded = fork::SingleThreaded::check()?;
    // Found once: every shim has the argv block at the same place.
    let title = TitleArea::of_self().ok();
    let mut buffer = vec![0u8; MAX_REQUEST];
    let mut reaper = Reaper::new()?;
    loop {
        let mut fds = [
            rustix::event::PollFd::new(&socket, rustix::event::PollFlags::IN),
            rustix::event::PollFd::new(&exits, rustix::event::PollFlags::IN),
            rustix::event::PollFd::from_borrowed_fd(reaper.notes(), rustix::event::PollFlags::IN),
        ];
        let timeout = reaper
            .timeout(Instant::now())
            .map(|wait| rustix::event::Timespec::try_from(wait).unwrap_or_default());
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(error) => return Err(error.into()),
        }
        let [request_ready, exits_ready, notes_ready] =
            [0, 1, 2].map(|slot| !fds[slot].revents().is_empty());
        let now = Instant::now();
        if exits_ready {
            exits.drain();
            reaper.child_exited(now);
        }
        reaper.reap(notes_ready, now);
        if !request_ready {
            continue;
        }
        let (length, attached) = match fdpass::receive(socket.as_fd(), &mut buffer) {
            Ok(received) => received,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if length == 0 {
            return Ok(());
        }
        let [report]: [OwnedFd; 1] = match attached.try_into() {
            Ok(fds) => fds,
            Err(_) => {
                fdpass::send(socket.as_fd(), &Reply::Failed(libc::EINVAL).encode(), &[])?;
                continue;
            }
        };
        let (dir, spec) = decode_request(&buffer[..length]);
        match fork::fork(&single_threaded) {
            Ok(Forked::Child) => {
                drop(socket);
                drop(exits);
                let note_writer = reaper.into_note_writer();
                become_shim(&dir, spec, zygote, title, report, note_writer)
            }
            Ok(Forked::Parent(pid)) => {
                drop(report);
                answer(&socket, pid)?;
            }
            Err(error) => {
                let errno = error.raw_os_error().unwrap_or(libc::EIO);
                fdpass::send(socket.as_fd(), &Reply::Failed(errno).encode(), &[])?;
            }
        }
    }
}

/// Tells the daemon about a new shim, with a pidfd opened before the
/// zygote could reap it (so it names that very process).
fn answer(socket: &OwnedFd, pid: i32) -> io::Result<()> {
    let opened = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))
        .and_then(|raw| {
            Ok(rustix::process::pidfd_open(
                raw,
                rustix::process::PidfdFlags::NONBLOCK,
            )?)
        })
        .and_then(|pidfd| Ok((ProcessId::of(pid)?, pidfd)));
    match opened {
        Ok((id, pidfd)) => fdpass::send(
            socket.as_fd(),
            &Reply::Forked(id).encode(),
            &[pidfd.as_fd()],
        ),
        Err(error) => {
            // Without a handle the daemon cannot watch it: it must not run.
            let _ = signals::send(pid, libc::SIGKILL);
            let errno = error.raw_os_error().unwrap_or(libc::EIO);
            fdpass::send(socket.as_fd(), &Reply::Failed(errno).encode(), &[])
        }
    }
}

/// The forked child: wire stdio as an exec'd shim would have it, show the
/// run in the command line, run the shim, exit. Never returns.
fn become_shim(
    dir: &Path,
    spec: Option<&[u8]>,
    zygote: i32,
    title: Option<TitleArea>,
    report: OwnedFd,
    note_writer: OwnedFd,
) -> ! {
    let wired = File::open("/dev/null").and_then(|null| {
        rustix::stdio::dup2_stdin(&null)?;
        rustix::stdio::dup2_stdout(&report)?;
        rustix::stdio::dup2_stderr(&null)?;
        Ok(())
    });
    drop(report);
    crate::diag::log_lazily_to(dir.join(crate::protocol::SHIM_LOG));
    if let Err(error) = wired {
        diag!("wrangle shim: cannot set up stdio: {error}");
        std::process::exit(1);
    }
    if let Some(title) = title {
        title.set(&["wrangle", crate::SHIM_COMMAND, &dir.display().to_string()]);
    }
    // The name `top`, `perf` and /proc/PID/comm show.
    let _ = rustix::thread::set_name(c"wrangle-shim");
    let spec = match spec.map(serde_json::from_slice::<ShimSpec>).transpose() {
        Ok(spec) => spec,
        Err(error) => {
            diag!("wrangle shim: the spec it was sent is not one: {error}");
            std::process::exit(1);
        }
    };
    let code = match supervise::run(dir, zygote, spec) {
        Ok(()) => 0,
        Err(error) => {
            diag!("wrangle shim: {error}");
            1
        }
    };
    reaping::leave_note(&note_writer);
    exit_now(code)
}

/// Ends the shim at once, without the C library's exit handlers: nothing
/// is buffered by now (stdout was flushed and let go, the diagnostics are
/// unbuffered), and the handlers would only write to pages still shared
/// with the zygote, each write a copy-on-write fault and a flush of the
/// other cores' TLBs, in every shim of a fleet stopped at once.
fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` ends the process; it reads or writes none of our
    // memory.
    unsafe { libc::_exit(code) }
}

/// The room a zygote's command line must leave so that every shim it forks
/// can show `wrangle __shim <dir>` for a run directory under `runs`: agent
/// ids are 32 characters and run numbers at most 10 digits.
pub fn title_room(runs: &Path) -> usize {
    let dir = runs.as_os_str().as_bytes().len() + "/".len() + 32 + "/".len() + 10;
    "wrangle".len() + 1 + crate::SHIM_COMMAND.len() + 1 + dir + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_a_directory_and_maybe_a_spec() {
        let dir = Path::new("/h/runs/abc/1");
        let with = encode_request(dir, Some(b"{\"run\":1}"));
        assert_eq!(
            decode_request(&with),
            (dir.to_path_buf(), Some(&b"{\"run\":1}"[..]))
        );
        let without = encode_request(dir, None);
        assert_eq!(decode_request(&without), (dir.to_path_buf(), None));
    }

    #[test]
    fn replies_round_trip() {
        for reply in [
            Reply::Forked(ProcessId {
                pid: 4242,
                start_time: 123_456_789_012,
            }),
            Reply::Failed(libc::EAGAIN),
        ] {
            assert_eq!(Reply::decode(&reply.encode()), Some(reply));
        }
        assert_eq!(Reply::decode(b""), None);
        assert_eq!(Reply::decode(b"F123"), None);
    }
}
