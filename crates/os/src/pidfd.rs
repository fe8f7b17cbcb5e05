//! Handles on processes that cannot be fooled by pid reuse.
//!
//! A pidfd refers to one process for its whole life: signals sent through
//! it never reach a later process that got the same pid, and it becomes
//! readable when the process exits, whether or not it is our child.

use crate::proc::{self, ProcessId};
use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

/// How a process ended, as `waitid`/`waitpid` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It called `exit` with this code.
    Exited(i32),
    /// A signal with this number ended it.
    Signaled(i32),
}

/// A pidfd bound to one [`ProcessId`].
#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
    id: ProcessId,
}

impl PidFd {
    /// Opens a pidfd for `id`, or `None` when that process is gone (its pid
    /// is free or belongs to another process now). A zombie still counts:
    /// its pidfd is readable at once.
    pub fn open(id: ProcessId) -> io::Result<Option<PidFd>> {
        let Some(pid) = Pid::from_raw(id.pid) else {
            return Ok(None);
        };
        let fd = match rustix::process::pidfd_open(pid, PidfdFlags::NONBLOCK) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::SRCH) => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        // The pidfd names whatever process had the pid when it was opened;
        // the start time read *after* opening tells whether that is ours.
        match proc::stat(id.pid) {
            Ok(stat) if stat.id == id => Ok(Some(PidFd { fd, id })),
            Ok(_) => Ok(None),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Opens a pidfd for a child this process has just spawned and not yet
    /// reaped: its pid cannot have been reused.
    pub fn open_child(pid: i32) -> io::Result<PidFd> {
        let id = ProcessId::of(pid)?;
        PidFd::open(id)?.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    /// A pidfd that the parent of process `id` opened before it could reap
    /// it and passed on: it refers to `id` for sure.
    pub fn from_parent(fd: OwnedFd, id: ProcessId) -> PidFd {
        PidFd { fd, id }
    }

    /// The process this handle refers to.
    pub fn id(&self) -> ProcessId {
        self.id
    }

    /// Sends `signal`. Returns false when the process has already exited.
    pub fn signal(&self, signal: i32) -> io::Result<bool> {
        let signal = Signal::from_named_raw(signal)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "unknown signal"))?;
        match rustix::process::pidfd_send_signal(&self.fd, signal) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::SRCH) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// True once the process has exited (the pidfd is readable).
    pub fn has_exited(&self) -> bool {
        let mut fds = [rustix::event::PollFd::new(
            &self.fd,
            rustix::event::PollFlags::IN,
        )];
        let timeout = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(rustix::event::poll(&mut fds, Some(&timeout)), Ok(n) if n > 0)
    }

    /// Reaps the process if it is our child and has exited. `None` while it
    /// runs, and for a process that is not our child (someone else reaps it).
    pub fn try_reap(&self) -> io::Result<Option<ExitStatus>> {
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG;
        match rustix::process::waitid(WaitId::PidFd(self.fd.as_fd()), options) {
            Ok(Some(status)) => Ok(exit_status(&status)),
            Ok(None) => Ok(None),
            Err(rustix::io::Errno::CHILD) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}

fn exit_status(status: &rustix::process::WaitIdStatus) -> Option<ExitStatus> {
    if let Some(code) = status.exit_status() {
        Some(ExitStatus::Exited(code))
    } else {
        status.terminating_signal().map(ExitStatus::Signaled)
    }
}

impl AsFd for PidFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PidFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, Instant};

    #[test]
    fn pidfd_signals_and_reaps_a_child() {
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let pidfd = PidFd::open_child(child.id() as i32).unwrap();
        assert!(!pidfd.has_exited());
        assert_eq!(pidfd.try_reap().unwrap(), None);
        assert!(pidfd.signal(libc::SIGTERM).unwrap());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !pidfd.has_exited() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            pidfd.try_reap().unwrap(),
            Some(ExitStatus::Signaled(libc::SIGTERM))
        );
        assert!(!pidfd.signal(libc::SIGTERM).unwrap());
        drop(child);
    }

    #[test]
    fn a_wrong_start_time_opens_nothing() {
        let me = ProcessId::current().unwrap();
        let other = ProcessId {
            start_time: me.start_time + 7,
            ..me
        };
        assert!(PidFd::open(other).unwrap().is_none());
        assert!(PidFd::open(me).unwrap().is_some());
    }
}
