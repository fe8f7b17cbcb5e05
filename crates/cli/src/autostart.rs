//! Starting a daemon when none answers.
//!
//! The CLI re-executes itself as `wrangle daemon --foreground` in a new
//! session, with its output appended to `<home>/daemon.log`, and waits
//! until the socket answers. Two CLIs may do this at once: the daemon makes
//! sure only one survives (the other exits 0), so a child that exits is no
//! reason to give up as long as someone may still answer. The daemon that
//! holds the home may also be on its way out (a `daemon stop`): then the
//! child that stepped aside is started again until one takes over.

use crate::client::{try_connect, ConnectError};
use crate::home;
use anyhow::{anyhow, bail, Context, Result};
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a new daemon has to answer.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// First pause between two connection attempts; a daemon is usually up in
/// a few milliseconds.
const FIRST_POLL: Duration = Duration::from_millis(5);

/// Longest pause between two connection attempts.
const MAX_POLL: Duration = Duration::from_millis(50);

/// How many daemons killed by a signal before they answered are replaced
/// by another (a daemon killed while it starts, as one killed later is
/// replaced by the next command); one that fails by itself is not.
const KILLED_REPLACED: u32 = 3;

/// How many lines of daemon.log an error shows.
const LOG_LINES: usize = 20;

/// Starts a daemon for `home` and waits until `socket` answers. `flags`
/// are options of `wrangle daemon` for it (`--sample-interval 1s`).
pub async fn start_daemon(home: &Path, socket: &Path, flags: &[String]) -> Result<()> {
    home::ensure(home)?;
    let log_path = home::daemon_log_path(home);
    let mut child = spawn(home, &log_path, flags)?;
    wait_for_socket(socket, &mut child, &log_path, || {
        spawn(home, &log_path, flags)
    })
    .await
}

/// Spawns `wrangle daemon --foreground FLAGS` detached from this terminal.
fn spawn(home: &Path, log_path: &Path, flags: &[String]) -> Result<Child> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log_path)
        .with_context(|| format!("cannot open the daemon's log {}", log_path.display()))?;
    let log_for_stderr = log
        .try_clone()
        .with_context(|| format!("cannot open the daemon's log {}", log_path.display()))?;
    let exe = std::env::current_exe()
        .context("cannot find wrangle's own executable to start the daemon")?;

    let mut command = Command::new(&exe);
    command
        .args(["daemon", "--foreground"])
        .args(flags)
        .env("WRANGLE_HOME", home)
        // A daemon must not keep the user's directory busy (or deleted).
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_for_stderr);
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed. It makes one syscall,
    // setsid(2), and builds an io::Error from its errno, which neither
    // allocates nor takes a lock.
    unsafe {
        command.pre_exec(|| {
            // A new session: no controlling terminal, so the daemon lives on
            // after this terminal closes and its Ctrl-C never reaches it.
            nix::unistd::setsid().map(drop).map_err(io::Error::from)
        });
    }
    command
        .spawn()
        .with_context(|| format!("cannot start the daemon ({})", exe.display()))
}

/// Polls the socket until it answers, the child fails with nobody
/// answering, or the startup timeout passes. A child that stepped aside
/// (exit 0) while nobody answers is replaced by `respawn`: the daemon it
/// stepped aside for may be stopping, and then the next one must take
/// over once the home is free.
async fn wait_for_socket(
    socket: &Path,
    child: &mut Child,
    log_path: &Path,
    mut respawn: impl FnMut() -> Result<Child>,
) -> Result<()> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    let mut pause = FIRST_POLL;
    let mut killed = 0;
    loop {
        // Looked at before connecting, so a failed attempt after a failed
        // exit is the last word.
        let exited = child.try_wait().ok().flatten();
        match try_connect(socket).await {
            Ok(_) => return Ok(()),
            Err(ConnectError::NotRunning(_)) => {}
            Err(ConnectError::Failed(error)) => {
                bail!(
                    "cannot connect to the daemon at {}: {error}",
                    socket.display()
                )
            }
        }
        match exited {
            Some(status) if status.signal().is_some() && killed < KILLED_REPLACED => {
                killed += 1;
                *child = respawn()?;
            }
            Some(status) if !status.success() => {
                return Err(startup_failure(&exited_message(status, socket), log_path));
            }
            Some(_) => *child = respawn()?,
            None => {}
        }
        let now = Instant::now();
        if now >= deadline {
            let message = format!(
                "the daemon did not answer on {} within {}s",
                socket.display(),
                STARTUP_TIMEOUT.as_secs()
            );
            return Err(startup_failure(&message, log_path));
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 3 / 2).min(MAX_POLL);
    }
}

/// What to say about a daemon that exited before answering.
fn exited_message(status: ExitStatus, socket: &Path) -> String {
    format!(
        "the daemon exited ({status}) before answering on {}",
        socket.display()
    )
}

/// A startup error with the end of daemon.log, which is where the daemon
/// said why.
fn startup_failure(message: &str, log_path: &Path) -> anyhow::Error {
    match fs::read(log_path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines = last_lines(&text, LOG_LINES);
            if lines.is_empty() {
                anyhow!("{message}; {} is empty", log_path.display())
            } else {
                let indented: Vec<String> =
                    lines.iter().map(|line| format!("    {line}")).collect();
                anyhow!(
                    "{message}; the last lines of {}:\n{}",
                    log_path.display(),
                    indented.join("\n")
                )
            }
        }
        Err(error) => anyhow!("{message}; cannot read {}: {error}", log_path.display()),
    }
}

/// The last `count` non-blank lines of `text`.
fn last_lines(text: &str, count: usize) -> Vec<&str> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.is_empty())
        .collect();
    lines[lines.len().saturating_sub(count)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn the_log_tail_skips_blank_lines() {
        assert_eq!(last_lines("a\n\nb\nc\n\n", 2), ["b", "c"]);
        assert_eq!(last_lines("one", 5), ["one"]);
        assert!(last_lines("\n\n", 5).is_empty());
    }

    #[test]
    fn startup_errors_show_the_end_of_the_log() {
        let temp = tempfile::tempdir().unwrap();
        let log = temp.path().join("daemon.log");
        let text: String = (1..=30).map(|n| format!("line {n}\n")).collect();
        fs::write(&log, text).unwrap();
        let error = startup_failure("the daemon did not answer", &log).to_string();
        assert!(
            error.starts_with(&format!(
                "the daemon did not answer; the last lines of {}:\n    line 11\n",
                log.display()
            )),
            "{error}"
        );
        assert!(error.ends_with("    line 30"), "{error}");
        assert!(!error.contains("line 10\n"));

        fs::write(&log, "").unwrap();
        let error = startup_failure("failed", &log).to_string();
        assert_eq!(error, format!("failed; {} is empty", log.display()));

        let missing = temp.path().join("missing.log");
        let error = startup_failure("failed", &missing).to_string();
        assert!(error.contains("cannot read"), "{error}");
    }

    #[test]
    fn an_exit_is_described_with_its_status() {
        let message = exited_message(ExitStatus::from_raw(1 << 8), Path::new("/h/wrangle.sock"));
        assert_eq!(
            message,
            "the daemon exited (exit status: 1) before answering on /h/wrangle.sock"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_child_that_fails_while_nobody_answers_ends_the_wait_early() {
        let temp = tempfile::tempdir().unwrap();
        let log = temp.path().join("daemon.log");
        fs::write(&log, "error: the store is locked\n").unwrap();
        let mut child = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
        let started = Instant::now();
        let error = wait_for_socket(&temp.path().join("wrangle.sock"), &mut child, &log, || {
            panic!("a failed child is not started again")
        })
        .await
        .unwrap_err()
        .to_string();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(error.contains("exit status: 3"), "{error}");
        assert!(error.ends_with("    error: the store is locked"), "{error}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_child_that_exits_zero_does_not_end_the_wait() {
        let temp = tempfile::tempdir().unwrap();
        let socket = temp.path().join("wrangle.sock");
        let log = temp.path().join("daemon.log");
        fs::write(&log, "").unwrap();
        // The child "loses the race" and exits 0; the winner binds a moment
        // later.
        let mut child = Command::new("true").spawn().unwrap();
        let binder = {
            let socket = socket.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                tokio::net::UnixListener::bind(&socket).unwrap()
            })
        };
        let mut respawned = 0;
        wait_for_socket(&socket, &mut child, &log, || {
            respawned += 1;
            Ok(Command::new("true").spawn()?)
        })
        .await
        .unwrap();
        assert!(respawned > 0, "a child that stepped aside is started again");
        drop(binder.await.unwrap());
    }

    /// A daemon killed before it answers is replaced; the one that
    /// answers ends the wait.
    #[tokio::test(flavor = "current_thread")]
    async fn a_child_killed_before_it_answers_is_replaced() {
        let temp = tempfile::tempdir().unwrap();
        let socket = temp.path().join("wrangle.sock");
        let log = temp.path().join("daemon.log");
        fs::write(&log, "").unwrap();
        let killed = || Command::new("sh").args(["-c", "kill -9 $$"]).spawn();
        let mut child = killed().unwrap();
        let mut respawned = 0;
        // Bound by the third daemon, and kept so until the wait ends.
        let mut listener = None;
        wait_for_socket(&socket, &mut child, &log, || {
            respawned += 1;
            if respawned == 2 {
                // The third daemon lives and answers.
                listener = Some(std::os::unix::net::UnixListener::bind(&socket)?);
                return Ok(Command::new("sleep").arg("0.2").spawn()?);
            }
            Ok(killed()?)
        })
        .await
        .unwrap();
        assert_eq!(respawned, 2);
    }

    /// Daemons killed again and again before they answer are replaced a
    /// few times, then the wait ends with the last one's fate.
    #[tokio::test(flavor = "current_thread")]
    async fn children_killed_again_and_again_end_the_wait() {
        let temp = tempfile::tempdir().unwrap();
        let log = temp.path().join("daemon.log");
        fs::write(&log, "").unwrap();
        let killed = || Command::new("sh").args(["-c", "kill -9 $$"]).spawn();
        let mut child = killed().unwrap();
        let mut respawned = 0;
        let error = wait_for_socket(&temp.path().join("wrangle.sock"), &mut child, &log, || {
            respawned += 1;
            Ok(killed()?)
        })
        .await
        .unwrap_err()
        .to_string();
        assert_eq!(respawned, KILLED_REPLACED);
        assert!(error.contains("signal: 9"), "{error}");
    }
}
