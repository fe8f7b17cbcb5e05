//! A real terminal for the tests of `wrangle top`: a tmux server of the
//! test's own (its socket in a private directory), one session of a given
//! size, keys typed with `send-keys`, the screen read with `capture-pane`.
//! Dropping it kills the server, whatever the test asserted.

use super::{run_command, wait_until, Home, Output, COMMAND_TIMEOUT, SOON};
use std::path::PathBuf;
use std::process::Command;

/// The session every command addresses.
const SESSION: &str = "top";

/// A tmux server with one session, for one test.
pub struct Tmux {
    /// Holds the server's socket.
    dir: tempfile::TempDir,
}

impl Tmux {
    /// Starts a server and a `width` x `height` session running `command`
    /// (one string, run by tmux with `sh -c`) with `WRANGLE_HOME` set to
    /// `home`'s and no configuration file.
    pub fn start(home: &Home, width: u16, height: u16, command: &str) -> Tmux {
        let dir = tempfile::Builder::new()
            .prefix("wrtmux")
            .tempdir_in("/tmp")
            .expect("a directory for the tmux socket");
        let tmux = Tmux { dir };
        let home_env = format!("WRANGLE_HOME={}", home.path().display());
        tmux.ok(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            SESSION,
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "-e",
            &home_env,
            command,
        ]);
        tmux
    }

    /// The server's socket.
    fn socket(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    /// Runs `tmux ARGS` against this server.
    pub fn tmux(&self, args: &[&str]) -> Output {
        let mut command = Command::new("tmux");
        command
            .arg("-S")
            .arg(self.socket())
            .args(args)
            // A test run from inside tmux must not talk to that one.
            .env_remove("TMUX");
        run_command(command, COMMAND_TIMEOUT)
    }

    /// Runs `tmux ARGS`, asserts it succeeded and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.tmux(args);
        assert!(
            output.status.success(),
            "tmux {args:?} failed: {}",
            output.stderr
        );
        output.stdout
    }

    /// Presses keys, each as tmux names them: `Enter`, `Escape`, `C-c`,
    /// `j`, `Down`.
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", SESSION];
        args.extend_from_slice(keys);
        self.ok(&args);
    }

    /// Types `text` as it is, character by character.
    pub fn type_text(&self, text: &str) {
        self.ok(&["send-keys", "-t", SESSION, "-l", text]);
    }

    /// The visible screen, one line per row.
    pub fn screen(&self) -> String {
        self.ok(&["capture-pane", "-p", "-t", SESSION])
    }

    /// A tmux format about the pane, e.g. `#{pane_dead}`.
    pub fn pane(&self, format: &str) -> String {
        self.ok(&["display-message", "-p", "-t", SESSION, format])
            .trim_end()
            .to_owned()
    }

    /// Waits until the screen satisfies `condition` and returns it; panics
    /// with `what` and the last screen after a while.
    pub fn wait_for(&self, what: &str, condition: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let deadline = std::time::Instant::now() + SOON;
        while std::time::Instant::now() < deadline {
            last = self.screen();
            if condition(&last) {
                return last;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("timed out waiting until {what}; the screen:\n{last}");
    }

    /// Waits until the pane's format `format` reads `value`.
    ///
    /// (A test reads a program's exit status from a shell in the pane,
    /// not from tmux's `pane_dead_status` with `remain-on-exit`: tmux 3.3
    /// sometimes never reaps the pane's program, and loses what it wrote
    /// just before it exited.)
    pub fn wait_for_pane(&self, format: &str, value: &str) {
        wait_until(SOON, &format!("{format} is {value}"), || {
            self.pane(format) == value
        });
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// The row of the screen that shows the agent `name` (a cell of its own),
/// if any.
pub fn row<'s>(screen: &'s str, name: &str) -> Option<&'s str> {
    screen
        .lines()
        .find(|line| line.split_whitespace().any(|cell| cell == name))
}

/// The rows of these agents' names top to bottom, as the screen orders
/// them; an agent not shown is left out.
pub fn order(screen: &str, names: &[&str]) -> Vec<String> {
    let mut found: Vec<(usize, &str)> = names
        .iter()
        .filter_map(|name| {
            let at = screen
                .lines()
                .position(|line| line.split_whitespace().any(|cell| cell == *name))?;
            Some((at, *name))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, name)| name.to_owned()).collect()
}
