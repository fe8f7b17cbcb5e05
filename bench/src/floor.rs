//! The floor: what one process can do without any supervisor. It starts N
//! copies of the command with `posix_spawnp(3)` (glibc's is a
//! `clone(CLONE_VM | CLONE_VFORK)` + exec, so each call returns once the
//! child has exec'd), then sends each SIGTERM and reaps each with
//! `waitpid(2)`.

use crate::cleanup;
use crate::procinfo::ProcessId;
use anyhow::{bail, Context, Result};
use std::ffi::CString;
use std::io;
use std::ptr;
use std::time::{Duration, Instant};

/// One measurement of the floor.
#[derive(Debug, Clone, Copy)]
pub struct FloorRun {
    /// Time to spawn all N.
    pub spawn: Duration,
    /// Time to send SIGTERM to all N and reap all N.
    pub stop: Duration,
}

/// An argv or envp as C strings plus the NULL-terminated pointer array
/// `posix_spawnp` wants. The pointers point into `strings`, which lives as
/// long as this.
struct CArray {
    strings: Vec<CString>,
    pointers: Vec<*mut libc::c_char>,
}

impl CArray {
    fn new(items: &[String]) -> Result<CArray> {
        let strings = items
            .iter()
            .map(|item| CString::new(item.as_str()).context("a NUL byte in an argument"))
            .collect::<Result<Vec<_>>>()?;
        let mut pointers: Vec<*mut libc::c_char> = strings
            .iter()
            .map(|string| string.as_ptr().cast_mut())
            .collect();
        pointers.push(ptr::null_mut());
        Ok(CArray { strings, pointers })
    }
}

/// File actions and attributes shared by every spawn: stdin, stdout and
/// stderr on /dev/null (as a supervised agent would not write to our
/// terminal), default SIGTERM/SIGINT dispositions and an empty signal mask.
struct SpawnSetup {
    actions: libc::posix_spawn_file_actions_t,
    attributes: libc::posix_spawnattr_t,
}

impl SpawnSetup {
    fn new() -> Result<Box<SpawnSetup>> {
        // SAFETY: both objects are plain C structs that the init functions
        // fill in before any other use; they are boxed so they never move
        // after init, and freed in Drop.
        unsafe {
            let mut setup = Box::new(SpawnSetup {
                actions: std::mem::zeroed(),
                attributes: std::mem::zeroed(),
            });
            check(libc::posix_spawn_file_actions_init(&mut setup.actions))?;
            check(libc::posix_spawnattr_init(&mut setup.attributes))?;
            let null = c"/dev/null";
            for (fd, flags) in [
                (0, libc::O_RDONLY),
                (1, libc::O_WRONLY),
                (2, libc::O_WRONLY),
            ] {
                check(libc::posix_spawn_file_actions_addopen(
                    &mut setup.actions,
                    fd,
                    null.as_ptr(),
                    flags,
                    0,
                ))?;
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            let mut defaults: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut defaults);
            libc::sigaddset(&mut defaults, libc::SIGTERM);
            libc::sigaddset(&mut defaults, libc::SIGINT);
            check(libc::posix_spawnattr_setsigmask(
                &mut setup.attributes,
                &empty,
            ))?;
            check(libc::posix_spawnattr_setsigdefault(
                &mut setup.attributes,
                &defaults,
            ))?;
            check(libc::posix_spawnattr_setflags(
                &mut setup.attributes,
                (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
            ))?;
            Ok(setup)
        }
    }
}

impl Drop for SpawnSetup {
    fn drop(&mut self) {
        // SAFETY: both were initialised in `new`.
        unsafe {
            libc::posix_spawn_file_actions_destroy(&mut self.actions);
            libc::posix_spawnattr_destroy(&mut self.attributes);
        }
    }
}

/// posix_spawn functions return the error number instead of setting errno.
fn check(code: libc::c_int) -> io::Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(code))
    }
}

/// Spawns `n` copies of `argv` with environment `env`, then stops and reaps
/// them all, timing both halves. Every child is reaped before this returns,
/// even on error.
pub fn measure(n: usize, argv: &[String], env: &[String]) -> Result<FloorRun> {
    let setup = SpawnSetup::new().context("cannot prepare posix_spawn")?;
    let argv = CArray::new(argv)?;
    let envp = CArray::new(env)?;
    let mut children: Vec<libc::pid_t> = Vec::with_capacity(n);

    let started = Instant::now();
    let mut failure = None;
    for _ in 0..n {
        if cleanup::interrupted() {
            failure = Some(anyhow::anyhow!("interrupted"));
            break;
        }
        let mut pid: libc::pid_t = 0;
        // SAFETY: every pointer is valid for the call: the setup is
        // initialised, argv and envp are NULL-terminated arrays of
        // NUL-terminated strings kept alive by `argv`/`envp`.
        let code = unsafe {
            libc::posix_spawnp(
                &mut pid,
                argv.strings[0].as_ptr(),
                &setup.actions,
                &setup.attributes,
                argv.pointers.as_ptr(),
                envp.pointers.as_ptr(),
            )
        };
        match check(code) {
            Ok(()) => children.push(pid),
            Err(error) => {
                failure = Some(anyhow::Error::from(error).context("posix_spawnp failed"));
                break;
            }
        }
    }
    let spawn = started.elapsed();
    let identities: Vec<ProcessId> = children
        .iter()
        .filter_map(|pid| ProcessId::of(*pid))
        .collect();

    let stopping = Instant::now();
    for pid in &children {
        // SAFETY: kill has no memory-safety preconditions; each pid is our
        // unreaped child, so it cannot have been recycled.
        unsafe { libc::kill(*pid, libc::SIGTERM) };
    }
    for pid in &children {
        let mut status = 0;
        // SAFETY: waitpid writes one int through a valid pointer.
        unsafe { libc::waitpid(*pid, &mut status, 0) };
    }
    let stop = stopping.elapsed();

    if let Some(error) = failure {
        return Err(error);
    }
    let left = identities.iter().filter(|id| id.exists()).count();
    if left > 0 {
        bail!("{left} floor processes are still in /proc after waitpid");
    }
    Ok(FloorRun { spawn, stop })
}
