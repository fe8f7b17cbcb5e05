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

/// Proof that the process had exactly one thread when it was checked: a
/// fork of a multi-threaded process leaves the child with locks held by
/// threads that do not exist in it. Only a process that never starts a
/// thread (the zygote) may keep one and fork with it again and again.
#[derive(Debug)]
pub struct SingleThreaded(());

impl SingleThreaded {
    /// Checks that the calling process has one thread; `Unsupported` if
    /// it has more.
    pub fn check() -> io::Result<SingleThreaded> {
        let threads = std::fs::read_dir("/proc/self/task")?.count();
        if threads != 1 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("cannot fork a process with {threads} threads"),
            ));
        }
        Ok(SingleThreaded(()))
    }
}

/// Forks the calling process, single-threaded as `_proof` says.
pub fn fork(_proof: &SingleThreaded) -> io::Result<Forked> {
    // SAFETY: the process has one thread (`SingleThreaded`), so the child
    // is a complete copy in which any code may run, as in the parent.
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
        let error = SingleThreaded::check().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::Unsupported, "{error}");
    }
}
