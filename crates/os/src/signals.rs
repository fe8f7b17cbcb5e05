//! Signals: sending them, the shim's own dispositions, and child exits as
//! a file descriptor the shim can poll.

use nix::sys::signal::{self, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

/// Sends `signal` to `pid`. `ESRCH` (already gone) is an error the caller
/// may ignore.
pub fn send(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let result = unsafe { libc::kill(pid, signal) };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends `signal` to every process in process group `pgid`.
pub fn send_to_group(pgid: i32, signal: i32) -> io::Result<()> {
    if pgid <= 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to signal process group <= 1",
        ));
    }
    send(-pgid, signal)
}

/// Makes the calling process ignore the signals a terminal or a careless
/// `kill` would use, so that only SIGKILL ends it. The shim uses this: it
/// must outlive its agent. Children get default dispositions back before
/// exec (see [`crate::spawn`]).
pub fn ignore_termination_signals() -> io::Result<()> {
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGPIPE,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
    ] {
        // SAFETY: SIG_IGN installs no handler code, so no Rust runs in a
        // signal context.
        unsafe { signal::signal(sig, SigHandler::SigIgn) }.map_err(io::Error::from)?;
    }
    Ok(())
}

/// Sets SIGCHLD back to its default disposition. Whoever started this
/// process may have left it ignored, and an ignored SIGCHLD survives exec:
/// the kernel then reaps every child the moment it exits, and its exit
/// status is gone before anyone can wait for it.
pub fn wait_for_children_again() -> io::Result<()> {
    // SAFETY: SIG_DFL installs no handler code.
    unsafe { signal::signal(Signal::SIGCHLD, SigHandler::SigDfl) }.map_err(io::Error::from)?;
    Ok(())
}

/// Child exits as a pollable file descriptor: SIGCHLD is blocked and
/// delivered through a signalfd instead of a handler.
pub struct ChildExits {
    fd: SignalFd,
}

impl ChildExits {
    /// Blocks SIGCHLD for the calling thread and opens a non-blocking
    /// signalfd for it, with SIGCHLD's disposition back to the default
    /// (see [`wait_for_children_again`]).
    pub fn new() -> io::Result<ChildExits> {
        wait_for_children_again()?;
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(io::Error::from)?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(io::Error::from)?;
        Ok(ChildExits { fd })
    }

    /// Empties the signalfd; call `reap` afterwards (several exits may
    /// share one notification).
    pub fn drain(&self) {
        while let Ok(Some(_)) = self.fd.read_signal() {}
    }
}

impl AsFd for ChildExits {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// One reaped child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    /// Its pid.
    pub pid: i32,
    /// How it ended.
    pub status: crate::pidfd::ExitStatus,
}

/// Reaps one exited child without blocking. `Ok(None)` when children exist
/// but none has exited; `Err` with `ECHILD` when there is no child at all.
pub fn reap_one() -> io::Result<Option<Reaped>> {
    use rustix::process::{WaitOptions, WaitStatus};
    match rustix::process::wait(WaitOptions::NOHANG) {
        Ok(Some((pid, status))) => {
            let status: WaitStatus = status;
            let status = if let Some(code) = status.exit_status() {
                crate::pidfd::ExitStatus::Exited(code)
            } else if let Some(signal) = status.terminating_signal() {
                crate::pidfd::ExitStatus::Signaled(signal)
            } else {
                return Ok(None);
            };
            Ok(Some(Reaped {
                pid: pid.as_raw_nonzero().get(),
                status,
            }))
        }
        Ok(None) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// True when the calling process has no children left, alive or zombie.
pub fn has_no_children() -> bool {
    use rustix::process::{WaitId, WaitIdOptions};
    // WNOWAIT peeks without reaping: ECHILD means there is nobody.
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
    matches!(
        rustix::process::waitid(WaitId::All, options),
        Err(rustix::io::Errno::CHILD)
    )
}
