//! `fork(2)` for the one process of wrangle that forks without exec: the
//! shim zygote, which is single-threaded by construction.

use std::io;

/// Which side of a fork the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The original process; the child has this pid.
    Parent(i32),
    /// The new process.
    Child,
}

/// Forks the calling process, which must have exactly one thread (checked:
/// a fork of a multi-threaded process leaves the child with locks held by
/// threads that do not exist in it, so it fails with `Unsupported`).
pub fn fork_single_threaded() -> io::Result<Forked> {
    let threads = std::fs::read_dir("/proc/self/task")?.count();
    if threads != 1 {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("cannot fork a process with {threads} threads"),
        ));
    }
    // SAFETY: the process has one thread (checked above), so the child is
    // a complete copy in which any code may run, as in the parent.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_threaded_process_is_refused() {
        // The test harness runs tests on threads of their own.
        let error = fork_single_threaded().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::Unsupported, "{error}");
    }
}
