//! The fork and exec of an agent, with the exec confirmed exactly.
//!
//! The child reports any failure (which step, which errno) through a
//! close-on-exec pipe; when the exec succeeds the pipe closes with nothing
//! in it. So the parent knows for sure, at once, without sleeping.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

mod clone;

pub use clone::clone_into_cgroup_supported;

/// Where to search a program name without a `/` when the agent's
/// environment has no `PATH` (what `execvp` uses).
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What to start and how.
pub struct AgentCommand {
    /// The argv; `argv[0]` is the program, searched in `PATH` unless it
    /// contains a `/`.
    pub argv: Vec<String>,
    /// The whole environment of the agent.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: PathBuf,
    /// Becomes the agent's stdout.
    pub stdout: OwnedFd,
    /// Becomes the agent's stderr.
    pub stderr: OwnedFd,
    /// The run's cgroup, which the child is in before it execs, so that
    /// everything it ever starts is in the cgroup.
    pub cgroup: Option<CgroupJoin>,
    /// The `cgroup.procs` of the run's cgroup v1 groups (memory, cpu,
    /// pids), which the child moves itself into before its exec, where
    /// limits are enforced with cgroup v1.
    pub limit_groups: Vec<std::fs::File>,
    /// RLIMIT_NOFILE (soft and hard) the child sets before its exec.
    pub nofile: Option<u64>,
}

/// How a child gets into its cgroup: created in it (`clone3` with
/// `CLONE_INTO_CGROUP`, Linux 5.7+, cheaper than a move), or else moved
/// there by writing its `cgroup.procs` before the exec.
pub struct CgroupJoin {
    /// The cgroup's directory.
    pub dir: OwnedFd,
}

impl CgroupJoin {
    /// The cgroup's `cgroup.procs`, opened for writing (close-on-exec),
    /// for a child that moves itself in.
    fn open_procs(&self) -> io::Result<OwnedFd> {
        Ok(rustix::fs::openat(
            &self.dir,
            "cgroup.procs",
            rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?)
    }
}

/// The step of starting an agent that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Making the agent a session leader.
    Setsid = 0,
    /// Setting up stdin, stdout and stderr.
    Stdio = 1,
    /// Moving into the run's cgroup.
    Cgroup = 2,
    /// Changing to the working directory.
    Chdir = 3,
    /// Executing the program.
    Exec = 4,
    /// Moving into the run's cgroup v1 groups that enforce its limits.
    LimitGroups = 5,
    /// Setting the open-file limit.
    Nofile = 6,
}

impl Stage {
    fn to_byte(self) -> u8 {
        self as u8
    }

    fn from_byte(byte: u8) -> Stage {
        match byte {
            0 => Stage::Setsid,
            1 => Stage::Stdio,
            2 => Stage::Cgroup,
            3 => Stage::Chdir,
            5 => Stage::LimitGroups,
            6 => Stage::Nofile,
            _ => Stage::Exec,
        }
    }
}

/// Why an agent could not be started.
#[derive(Debug)]
pub enum SpawnError {
    /// The child was forked but a step before or at exec failed.
    Child {
        /// The step that failed.
        stage: Stage,
        /// The errno it failed with.
        errno: i32,
    },
    /// The command cannot be expressed (a NUL byte, an empty argv) or the
    /// fork itself failed.
    Setup(io::Error),
}

impl SpawnError {
    /// A message for people that names the command or directory and the
    /// OS error, e.g. `No such file or directory: claud`.
    pub fn describe(&self, program: &str, cwd: &Path) -> String {
        match self {
            SpawnError::Child { stage, errno } => {
                let error = errno_message(*errno);
                match stage {
                    Stage::Exec => format!("{error}: {program}"),
                    Stage::Chdir => {
                        format!(
                            "{error}: cannot change to working directory {}",
                            cwd.display()
                        )
                    }
                    Stage::Cgroup => format!("{error}: cannot move the agent into its cgroup"),
                    Stage::LimitGroups => format!(
                        "{error}: cannot move the agent into the cgroup v1 groups of its limits"
                    ),
                    Stage::Nofile => {
                        format!("{error}: cannot set the agent's open-file limit (RLIMIT_NOFILE)")
                    }
                    Stage::Stdio => format!("{error}: cannot set up the agent's stdio"),
                    Stage::Setsid => format!("{error}: cannot start a session for the agent"),
                }
            }
            SpawnError::Setup(error) => format!("cannot start {program}: {error}"),
        }
    }
}

/// The text of an errno without Rust's ` (os error N)` suffix.
pub fn errno_message(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    match text.find(" (os error") {
        Some(end) => text[..end].to_string(),
        None => text,
    }
}

fn c_string(text: &[u8]) -> io::Result<CString> {
    CString::new(text).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} contains a NUL byte", String::from_utf8_lossy(text)),
        )
    })
}

/// Everything the child needs, prepared before the fork so that the child
/// only makes system calls.
struct Prepared {
    candidates: Vec<CString>,
    argv: Vec<CString>,
    env: Vec<CString>,
    cwd: CString,
}

fn prepare(command: &AgentCommand) -> io::Result<Prepared> {
    let program = command
        .argv
        .first()
        .filter(|program| !program.is_empty())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the command is empty"))?;
    let argv = command
        .argv
        .iter()
        .map(|arg| c_string(arg.as_bytes()))
        .collect::<io::Result<Vec<_>>>()?;
    let env = command
        .env
        .iter()
        .map(|(key, value)| c_string(format!("{key}={value}").as_bytes()))
        .collect::<io::Result<Vec<_>>>()?;
    let candidates = if program.contains('/') {
        vec![c_string(program.as_bytes())?]
    } else {
        let path = command
            .env
            .iter()
            .rev()
            .find(|(key, _)| key == "PATH")
            .map(|(_, value)| value.as_str())
            .unwrap_or(DEFAULT_PATH);
        path.split(':')
            .map(|dir| if dir.is_empty() { "." } else { dir })
            .map(|dir| c_string(Path::new(dir).join(program).as_os_str().as_bytes()))
            .collect::<io::Result<Vec<_>>>()?
    };
    let cwd = c_string(OsStr::new(&command.cwd).as_bytes())?;
    Ok(Prepared {
        candidates,
        argv,
        env,
        cwd,
    })
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Forks and execs the agent as the leader of a new session, with stdin
/// from `/dev/null`, in its cgroup if one is given. Returns its pid once
/// the exec has succeeded.
///
/// The child borrows this process's memory until its exec (as with
/// `posix_spawn`), which spares copying the shim only for the exec to
/// drop the copy; where that cannot be done it is forked instead, so call
/// it only from a single-threaded process (the shim).
pub fn spawn(command: AgentCommand) -> Result<i32, SpawnError> {
    spawn_by(command, Creation::Vfork)
}

/// How the child is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Creation {
    /// vfork-like, falling back to fork-like where that fails.
    Vfork,
    /// fork-like only: the fallback, asked for on its own by tests only.
    #[cfg_attr(not(test), allow(dead_code))]
    Fork,
}

fn spawn_by(command: AgentCommand, creation: Creation) -> Result<i32, SpawnError> {
    let prepared = prepare(&command).map_err(SpawnError::Setup)?;
    let argv = null_terminated(&prepared.argv);
    let envp = null_terminated(&prepared.env);
    let dev_null = std::fs::File::open("/dev/null").map_err(SpawnError::Setup)?;
    let (report_read, report_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| SpawnError::Setup(e.into()))?;
    let fds = ChildFds {
        stdin: dev_null.as_raw_fd(),
        stdout: command.stdout.as_raw_fd(),
        stderr: command.stderr.as_raw_fd(),
        cgroup_procs: None,
        limit_groups: command
            .limit_groups
            .iter()
            .map(AsRawFd::as_raw_fd)
            .collect(),
        nofile: command.nofile,
        report: report_write.as_raw_fd(),
    };
    let child = Child {
        fds: &fds,
        prepared: &prepared,
        argv: &argv,
        envp: &envp,
    };
    let cgroup_dir = command.cgroup.as_ref().map(|join| join.dir.as_raw_fd());
    // SAFETY: `vforked_child` only makes async-signal-safe system calls on
    // `child`, which lives in this frame, suspended until its exec.
    let vforked = match creation {
        Creation::Vfork => unsafe {
            clone::vfork_with(cgroup_dir, vforked_child, (&child as *const Child).cast())
        },
        Creation::Fork => Err(io::Error::from_raw_os_error(libc::ENOSYS)),
    };
    let pid = match vforked {
        Ok(pid) => pid,
        // Not on this architecture, or the kernel refused: fork instead.
        Err(_) => fork_child(&command, fds, &prepared, &argv, &envp)?,
    };

    drop(report_write);
    drop(command);
    let mut report = [0u8; 5];
    let mut filled = 0;
    let report_file = std::fs::File::from(report_read);
    while filled < report.len() {
        match rustix::io::read(&report_file, &mut report[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(error) => return Err(SpawnError::Setup(error.into())),
        }
    }
    if filled == 0 {
        return Ok(pid);
    }
    // The child failed before exec and exits with 127; reap it so that no
    // zombie is left.
    let mut status = 0;
    // SAFETY: waitpid on our own child, with a valid out-pointer.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let errno = i32::from_le_bytes([report[1], report[2], report[3], report[4]]);
    Err(SpawnError::Child {
        stage: Stage::from_byte(report[0]),
        errno,
    })
}

/// What a child needs to start the agent, handed to it by pointer.
struct Child<'a> {
    fds: &'a ChildFds,
    prepared: &'a Prepared,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
}

/// The entry of a vfork-like child: `context` points at a [`Child`].
extern "C" fn vforked_child(context: *const std::ffi::c_void) -> ! {
    // SAFETY: `spawn` passes a pointer to a `Child` in its frame, which is
    // suspended (and so valid) until this child execs or exits.
    let child = unsafe { &*context.cast::<Child>() };
    // SAFETY: we are the new child; `child_after_fork` ends in exec or
    // _exit and only makes async-signal-safe system calls.
    unsafe { child_after_fork(child.fds, child.prepared, child.argv, child.envp) }
}

/// Starts the child with a copy of this process (fork-like), in its
/// cgroup if it has one, or else moved there by the child: the way for
/// architectures or kernels without the vfork-like start. Returns the
/// child's pid in the parent; the child never returns.
fn fork_child(
    command: &AgentCommand,
    mut fds: ChildFds,
    prepared: &Prepared,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> Result<i32, SpawnError> {
    // `procs` stays open until the child has moved itself in.
    let (pid, _procs) = match &command.cgroup {
        Some(join) => match clone::fork_into_cgroup(join.dir.as_raw_fd()) {
            Ok(pid) => (pid, None),
            Err(_) => {
                // An older kernel, or a cgroup that refuses it: move the
                // child in by hand instead.
                let procs = join.open_procs().map_err(SpawnError::Setup)?;
                fds.cgroup_procs = Some(procs.as_raw_fd());
                (plain_fork().map_err(SpawnError::Setup)?, Some(procs))
            }
        },
        None => (plain_fork().map_err(SpawnError::Setup)?, None),
    };
    if pid == 0 {
        // SAFETY: we are the freshly forked child; see `child_after_fork`.
        unsafe { child_after_fork(&fds, prepared, argv, envp) }
    }
    Ok(pid)
}

/// fork(2).
fn plain_fork() -> io::Result<i32> {
    // SAFETY: fork(2) in a single-threaded process (the shim); the child
    // only makes async-signal-safe system calls on memory prepared before
    // and ends in execve or _exit.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        pid => Ok(pid),
    }
}

struct ChildFds {
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    cgroup_procs: Option<RawFd>,
    limit_groups: Vec<RawFd>,
    nofile: Option<u64>,
    report: RawFd,
}

/// The child's part: restore signals, start a session, wire stdio, join
/// the cgroups, set the open-file limit, change directory and exec. Never
/// returns.
///
/// # Safety
/// Must run only in the child right after `fork` (in a process that was
/// single-threaded) or a vfork-like clone, with pointers into memory
/// prepared before it.
unsafe fn child_after_fork(
    fds: &ChildFds,
    prepared: &Prepared,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    let fail = |stage: Stage| -> ! {
        let errno = io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
        let mut message = [0u8; 5];
        message[0] = stage.to_byte();
        message[1..].copy_from_slice(&errno.to_le_bytes());
        // SAFETY: write(2) and _exit(2) are async-signal-safe.
        unsafe {
            libc::write(fds.report, message.as_ptr().cast(), message.len());
            libc::_exit(127)
        }
    };
    // SAFETY: all calls below are async-signal-safe system calls on valid
    // file descriptors and NUL-terminated strings prepared before the fork.
    unsafe {
        // Handlers first, then the mask: a vfork-like child must not run
        // a handler of its parent's (they share memory), and it starts
        // with every signal blocked.
        for signal in 1..32 {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        if libc::setsid() < 0 {
            fail(Stage::Setsid);
        }
        for (from, to) in [(fds.stdin, 0), (fds.stdout, 1), (fds.stderr, 2)] {
            let result = if from == to {
                libc::fcntl(to, libc::F_SETFD, 0)
            } else {
                libc::dup2(from, to)
            };
            if result < 0 {
                fail(Stage::Stdio);
            }
        }
        if let Some(procs) = fds.cgroup_procs {
            if libc::write(procs, b"0".as_ptr().cast(), 1) < 0 {
                fail(Stage::Cgroup);
            }
        }
        for &procs in &fds.limit_groups {
            if libc::write(procs, b"0".as_ptr().cast(), 1) < 0 {
                fail(Stage::LimitGroups);
            }
        }
        if let Some(nofile) = fds.nofile {
            let limit = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) < 0 {
                fail(Stage::Nofile);
            }
        }
        if libc::chdir(prepared.cwd.as_ptr()) < 0 {
            fail(Stage::Chdir);
        }
        let mut denied = false;
        for candidate in &prepared.candidates {
            libc::execve(candidate.as_ptr(), argv.as_ptr(), envp.as_ptr());
            match io::Error::last_os_error().raw_os_error() {
                Some(
                    libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT,
                ) => {}
                Some(libc::EACCES) => denied = true,
                _ => fail(Stage::Exec),
            }
        }
        if denied {
            *libc::__errno_location() = libc::EACCES;
        }
        fail(Stage::Exec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pipe() -> (std::fs::File, OwnedFd) {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        (std::fs::File::from(read), write)
    }

    fn agent_command(argv: &[&str], cwd: &str) -> (AgentCommand, std::fs::File) {
        let (out_read, out_write) = pipe();
        let (_, err_write) = pipe();
        let command = AgentCommand {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("GREETING".into(), "hi".into()),
            ],
            cwd: cwd.into(),
            stdout: out_write,
            stderr: err_write,
            cgroup: None,
            limit_groups: Vec::new(),
            nofile: None,
        };
        (command, out_read)
    }

    fn wait(pid: i32) -> i32 {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid out-pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        status
    }

    /// Starts an agent that reports its environment, directory, session
    /// and blocked signals, and checks each.
    fn starts_in_its_own_session_with_env_cwd_and_no_blocked_signal(creation: Creation) {
        let (command, mut output) = agent_command(
            &[
                "sh",
                "-c",
                "echo $GREETING $(pwd) $$ $(ps -o sid= -p $$) $(grep ^SigBlk: /proc/$$/status | cut -f2); cat",
            ],
            "/tmp",
        );
        let pid = spawn_by(command, creation).unwrap();
        let mut text = String::new();
        output.read_to_string(&mut text).unwrap();
        assert_eq!(wait(pid), 0);
        let fields: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(fields[0], "hi");
        assert_eq!(fields[1], "/tmp");
        assert_eq!(fields[2], fields[3], "the agent leads its session: {text}");
        assert_eq!(
            fields[4], "0000000000000000",
            "no signal is blocked: {text}"
        );
    }

    #[test]
    fn a_vforked_agent_runs_in_its_own_session_with_env_and_cwd() {
        starts_in_its_own_session_with_env_cwd_and_no_blocked_signal(Creation::Vfork);
    }

    #[test]
    fn a_forked_agent_runs_in_its_own_session_with_env_and_cwd() {
        starts_in_its_own_session_with_env_cwd_and_no_blocked_signal(Creation::Fork);
    }

    #[test]
    fn the_fork_path_reports_a_failed_exec_too() {
        let (command, _) = agent_command(&["claud", "-p"], "/tmp");
        let error = spawn_by(command, Creation::Fork).unwrap_err();
        assert!(
            matches!(error, SpawnError::Child { stage: Stage::Exec, errno } if errno == libc::ENOENT)
        );
    }

    #[test]
    fn a_missing_program_names_itself_and_the_error() {
        let (command, _) = agent_command(&["claud", "-p"], "/tmp");
        let error = spawn(command).unwrap_err();
        assert!(
            matches!(error, SpawnError::Child { stage: Stage::Exec, errno } if errno == libc::ENOENT)
        );
        assert_eq!(
            error.describe("claud", Path::new("/tmp")),
            "No such file or directory: claud"
        );
    }

    #[test]
    fn a_bad_cwd_and_a_non_executable_are_told_apart() {
        let (command, _) = agent_command(&["true"], "/nonexistent/dir");
        let error = spawn(command).unwrap_err();
        assert!(matches!(
            error,
            SpawnError::Child {
                stage: Stage::Chdir,
                ..
            }
        ));
        assert!(error
            .describe("true", Path::new("/nonexistent/dir"))
            .contains("/nonexistent/dir"));

        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("not-executable");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        let (command, _) = agent_command(&[script.to_str().unwrap()], "/tmp");
        let error = spawn(command).unwrap_err();
        assert!(
            matches!(error, SpawnError::Child { stage: Stage::Exec, errno } if errno == libc::EACCES),
            "{error:?}"
        );
    }

    #[test]
    fn the_path_is_searched_in_order_past_what_cannot_be_run() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = |name: &str| {
            let dir = root.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            dir
        };
        let (empty, not_runnable, runnable, later) =
            (dir("empty"), dir("not"), dir("yes"), dir("later"));
        std::fs::create_dir(not_runnable.join("tool")).unwrap();
        std::fs::write(runnable.join("tool"), "#!/bin/sh\necho yes\n").unwrap();
        std::fs::set_permissions(runnable.join("tool"), PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::write(later.join("tool"), "#!/bin/sh\necho later\n").unwrap();
        std::fs::set_permissions(later.join("tool"), PermissionsExt::from_mode(0o755)).unwrap();
        let search = |dirs: &[&Path]| {
            let path = std::env::join_paths(dirs).unwrap();
            let (mut command, mut output) = agent_command(&["tool"], "/tmp");
            command.env = vec![("PATH".into(), path.to_str().unwrap().into())];
            spawn(command).map(|pid| {
                let mut text = String::new();
                output.read_to_string(&mut text).unwrap();
                wait(pid);
                text
            })
        };
        // A directory named like the program is passed over, as execvp does.
        assert_eq!(
            search(&[&empty, &not_runnable, &runnable, &later]).unwrap(),
            "yes\n"
        );
        // A file that is there but may not be run: the next one runs...
        std::fs::write(empty.join("tool"), "#!/bin/sh\necho no\n").unwrap();
        assert_eq!(search(&[&empty, &runnable]).unwrap(), "yes\n");
        // ...and with none to run, the error says why.
        let error = search(&[&empty, &not_runnable]).unwrap_err();
        assert!(
            matches!(error, SpawnError::Child { stage: Stage::Exec, errno } if errno == libc::EACCES),
            "{error:?}"
        );
    }

    #[test]
    fn the_open_file_limit_is_set_before_the_exec() {
        let (mut command, mut output) =
            agent_command(&["sh", "-c", "ulimit -n; ulimit -Hn"], "/tmp");
        command.nofile = Some(32);
        let pid = spawn(command).unwrap();
        let mut text = String::new();
        output.read_to_string(&mut text).unwrap();
        assert_eq!(wait(pid), 0);
        assert_eq!(text, "32\n32\n");

        // Above the kernel's ceiling (fs.nr_open): refused, and said so.
        let (mut command, _) = agent_command(&["true"], "/tmp");
        command.nofile = Some(u64::MAX - 1);
        let error = spawn(command).unwrap_err();
        assert!(
            matches!(
                error,
                SpawnError::Child {
                    stage: Stage::Nofile,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error
            .describe("true", Path::new("/tmp"))
            .contains("open-file limit"));
    }

    #[test]
    fn the_kernel_says_whether_it_starts_children_in_cgroups() {
        // Linux 5.7 and later; asking creates no process either way.
        let release = crate::features::kernel_release();
        let mut numbers = release
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<u32>().ok());
        let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
        assert_eq!(
            clone_into_cgroup_supported(),
            version >= (5, 7),
            "{release}"
        );
    }

    #[test]
    fn an_empty_command_is_refused_before_forking() {
        let (command, _) = agent_command(&[], "/tmp");
        assert!(matches!(spawn(command), Err(SpawnError::Setup(_))));
    }
}
