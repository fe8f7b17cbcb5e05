//! The harness of wrangle's end-to-end tests: a private wrangle home per
//! test that runs the real `wrangle` binary, and helpers that look at the
//! machine itself (`/proc`, files, exit codes) instead of taking wrangle's
//! word for it.
//!
//! Every test works in its own [`Home`], whose daemon is autostarted by the
//! first CLI call, and marks the commands it runs with a unique [`marker`]
//! so that its processes can be told apart in `/proc` from those of tests
//! running in parallel. Dropping a `Home` stops its daemon and agents and
//! then SIGKILLs anything of it that is still alive, so no test leaks a
//! process, whatever it asserted.

// Each test file uses its own part of this module.
#![allow(dead_code)]

pub mod agent_clis;
pub mod agents;
pub mod cli_bench;
pub mod collector;
pub mod crash;
pub mod disk;
pub mod events;
pub mod http;
pub mod model_server;
pub mod procfs;
pub mod tmux;

use serde_json::Value;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The binary under test.
pub const WRANGLE: &str = env!("CARGO_BIN_EXE_wrangle");

/// Upper bound for one CLI call, so that a hang fails the test instead of
/// blocking the suite. Not a speed requirement.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Upper bound for a condition that should become true soon.
pub const SOON: Duration = Duration::from_secs(20);

/// Waits until `condition` holds, checking every few milliseconds; panics
/// with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, condition: impl FnMut() -> bool) {
    wait_until_showing(timeout, what, condition, String::new);
}

/// Waits like [`wait_until`]; a timeout's panic also tells what `shown`
/// says then.
pub fn wait_until_showing(
    timeout: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
    shown: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}{}",
            shown()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// A number of seconds to give `sleep` that no other process on the machine
/// has in its command line: `1000.<pid><counter><noise>`. Search `/proc`
/// for it with [`procfs::with_marker`].
pub fn marker() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let noise = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos()
        % 1000;
    format!("1000.{:07}{n:04}{noise:03}", std::process::id())
}

/// How a finished command went.
#[derive(Debug)]
pub struct Output {
    /// Its exit status.
    pub status: ExitStatus,
    /// What it wrote to stdout.
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
}

impl Output {
    /// The exit code; panics when a signal ended the command.
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("the command was killed by a signal: {self:?}"))
    }
}

/// Runs `command` to its end with stdout and stderr captured; panics after
/// `timeout` (and kills it).
pub fn run_command(mut command: Command, timeout: Duration) -> Output {
    let described = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {described}: {error}"));
    finish(&mut child, timeout, &described)
}

/// Waits for a child started with piped stdout and stderr and collects
/// its output; kills it and panics after `timeout`.
pub fn finish(child: &mut Child, timeout: Duration, described: &str) -> Output {
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{described} did not finish within {timeout:?}");
        }
        thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn reader(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// How a [`Home`] runs wrangle.
#[derive(Debug, Clone, Default)]
pub struct HomeOptions {
    /// Run every command as this uid (and gid) with `setpriv`; the home is
    /// given to that user.
    pub user: Option<u32>,
    /// The wrangle binary to run instead of the one cargo built.
    pub binary: Option<PathBuf>,
    /// Extra environment for every command (and so for an autostarted
    /// daemon), e.g. `WRANGLE_CGROUP=off`.
    pub env: Vec<(String, String)>,
}

/// A private wrangle home in a short directory under /tmp (a Unix socket
/// path holds at most 107 bytes), and the CLI run against it.
pub struct Home {
    dir: tempfile::TempDir,
    options: HomeOptions,
}

impl Home {
    /// A new, empty home; its daemon starts with the first CLI call.
    pub fn new() -> Home {
        Home::with(HomeOptions::default())
    }

    /// A new home whose daemon runs without cgroups (`WRANGLE_CGROUP=off`):
    /// process group plus subreaper.
    pub fn without_cgroups() -> Home {
        Home::with(HomeOptions {
            env: vec![("WRANGLE_CGROUP".into(), "off".into())],
            ..HomeOptions::default()
        })
    }

    /// A new home run with `options`.
    pub fn with(options: HomeOptions) -> Home {
        let dir = tempfile::Builder::new()
            .prefix("wr")
            .tempdir_in("/tmp")
            .expect("a temporary home");
        if let Some(uid) = options.user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid)).expect("chown the home");
        }
        Home { dir, options }
    }

    /// The home directory (`WRANGLE_HOME`).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The daemon's socket.
    pub fn socket(&self) -> PathBuf {
        self.path().join("wrangle.sock")
    }

    /// The daemon's SQLite store.
    pub fn database(&self) -> PathBuf {
        self.path().join("wrangle.db")
    }

    /// The directories of an agent's runs.
    pub fn runs_dir(&self, id: &str) -> PathBuf {
        self.path().join("runs").join(id)
    }

    /// `wrangle ARGS` for this home, not yet started: `WRANGLE_HOME` set,
    /// the home as working directory, stdin from /dev/null.
    pub fn command(&self, args: &[&str]) -> Command {
        let binary = self
            .options
            .binary
            .clone()
            .unwrap_or_else(|| PathBuf::from(WRANGLE));
        let mut command = match self.options.user {
            Some(uid) => {
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={uid}"))
                    .arg("--clear-groups")
                    .arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .args(args)
            .env("WRANGLE_HOME", self.path())
            .env_remove("WRANGLE_CGROUP")
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.path())
            .stdin(Stdio::null());
        command
    }

    /// Runs `wrangle ARGS` to its end.
    pub fn wrangle(&self, args: &[&str]) -> Output {
        run_command(self.command(args), COMMAND_TIMEOUT)
    }

    /// Runs `wrangle ARGS`, asserts it succeeded and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.wrangle(args);
        assert!(
            output.status.success(),
            "wrangle {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            output.status,
            output.stdout,
            output.stderr
        );
        output.stdout
    }

    /// Runs `wrangle ARGS`, asserts it failed and returns how.
    pub fn fails(&self, args: &[&str]) -> Output {
        let output = self.wrangle(args);
        assert!(
            !output.status.success(),
            "wrangle {args:?} succeeded but should have failed:\nstdout: {}\nstderr: {}",
            output.stdout,
            output.stderr
        );
        output
    }

    /// Runs `wrangle ARGS`, asserts it succeeded and parses its stdout as
    /// JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let stdout = self.ok(args);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|error| panic!("wrangle {args:?} printed no JSON ({error}): {stdout}"))
    }

    /// `wrangle run ARGS`: asserts it succeeded and printed one id, which
    /// it returns.
    pub fn run(&self, args: &[&str]) -> String {
        let mut full = vec!["run"];
        full.extend_from_slice(args);
        let stdout = self.ok(&full);
        let id = stdout.trim_end_matches('\n');
        assert!(
            id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()) && !id.contains('\n'),
            "wrangle run printed {stdout:?}, not one id"
        );
        id.to_string()
    }

    /// `wrangle inspect --json AGENT`.
    pub fn inspect(&self, agent: &str) -> Value {
        self.json(&["inspect", "--json", agent])
    }

    /// The state of an agent, as `inspect` says.
    pub fn state(&self, agent: &str) -> String {
        self.inspect(agent)["state"]
            .as_str()
            .expect("a state")
            .to_string()
    }

    /// The pid of the agent's main process.
    pub fn pid(&self, agent: &str) -> i32 {
        let agent = self.inspect(agent);
        agent["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("no pid: {agent}")) as i32
    }

    /// `wrangle ps -a --json`.
    pub fn ps_all(&self) -> Vec<Value> {
        match self.json(&["ps", "-a", "--json"]) {
            Value::Array(agents) => agents,
            other => panic!("ps --json printed no array: {other}"),
        }
    }

    /// `ps -a --json` with what changes by itself left out (the running
    /// time of running agents, and what the sampler sees of them): equal
    /// snapshots mean nothing changed.
    pub fn snapshot(&self) -> Value {
        const CHANGING: [&str; 10] = [
            "runtime_seconds",
            "health",
            "health_reason",
            "process",
            "tree",
            "progress",
            "message",
            "details",
            "last_output_at",
            "last_heartbeat_at",
        ];
        let mut agents = self.ps_all();
        for agent in &mut agents {
            let agent = agent.as_object_mut().expect("an agent object");
            for key in CHANGING {
                agent.remove(key);
            }
        }
        Value::Array(agents)
    }

    /// Waits until the agent's state is `state`.
    pub fn wait_for_state(&self, agent: &str, state: &str) {
        wait_until(SOON, &format!("agent {agent} is {state}"), || {
            self.state(agent) == state
        });
    }

    /// The pid in the daemon's pid file, if it runs.
    pub fn daemon_pid(&self) -> Option<i32> {
        let pid: i32 = fs::read_to_string(self.path().join("daemon.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        procfs::is_alive(pid).then_some(pid)
    }

    /// The daemons of this home (by their environment), alive ones only.
    pub fn daemons(&self) -> Vec<i32> {
        let home = format!("WRANGLE_HOME={}", self.path().display());
        procfs::all()
            .into_iter()
            .filter(|p| !p.is_zombie())
            .filter(|p| {
                procfs::cmdline(p.pid).is_some_and(|c| c.contains("daemon --foreground"))
                    && procfs::environ(p.pid).is_some_and(|env| env.contains(&home))
            })
            .map(|p| p.pid)
            .collect()
    }

    /// The shims of this home (by their command line), alive ones only.
    pub fn shims(&self) -> Vec<i32> {
        let runs = format!("__shim {}/runs/", self.path().display());
        procfs::all()
            .into_iter()
            .filter(|p| !p.is_zombie())
            .filter(|p| procfs::cmdline(p.pid).is_some_and(|c| c.contains(&runs)))
            .map(|p| p.pid)
            .collect()
    }

    /// Every live process that belongs to this home: its daemons, its
    /// shims, every agent and agent descendant (they carry
    /// `WRANGLE_STATUS_FILE=<home>/...`) and CLIs running against it.
    pub fn processes(&self) -> Vec<i32> {
        let home = self.path().display().to_string();
        let in_env = [
            format!("WRANGLE_HOME={home}"),
            format!("WRANGLE_STATUS_FILE={home}/"),
        ];
        let shim = format!("__shim {home}/runs/");
        let me = std::process::id() as i32;
        procfs::all()
            .into_iter()
            .filter(|p| p.pid != me && !p.is_zombie())
            .filter(|p| {
                procfs::cmdline(p.pid).is_some_and(|c| c.contains(&shim))
                    || procfs::environ(p.pid)
                        .is_some_and(|env| in_env.iter().any(|needle| env.contains(needle)))
            })
            .map(|p| p.pid)
            .collect()
    }

    /// Zombies whose parent is this home's daemon or one of its shims.
    pub fn zombie_children(&self) -> Vec<procfs::Proc> {
        let mut parents = self.daemons();
        parents.extend(self.shims());
        procfs::zombies()
            .into_iter()
            .filter(|z| parents.contains(&z.ppid))
            .collect()
    }

    /// Sends a raw HTTP request to the daemon's socket (the daemon must
    /// run) and returns the status and the body.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> http::Response {
        http::request(&self.socket(), method, path, content_type, body)
    }

    /// Opens the daemon's store read-only, as any tool could.
    pub fn open_database(&self) -> rusqlite::Connection {
        let connection = rusqlite::Connection::open_with_flags(
            self.database(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open wrangle.db");
        connection
            .busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        connection
    }

    /// The state of an agent as the store holds it.
    pub fn stored_state(&self, id: &str) -> Option<String> {
        use rusqlite::OptionalExtension;
        self.open_database()
            .query_row("SELECT state FROM agents WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .optional()
            .expect("query wrangle.db")
    }

    /// Stops everything of this home: the daemon with its agents, then a
    /// SIGKILL for whatever is left; removes cgroups its runs left.
    fn clean_up(&self) {
        if self.daemon_pid().is_some() {
            let mut command = self.command(&["daemon", "stop", "--stop-agents"]);
            command.stdout(Stdio::null()).stderr(Stdio::null());
            if let Ok(mut child) = command.spawn() {
                let deadline = Instant::now() + Duration::from_secs(30);
                while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(10));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for _ in 0..200 {
            let left = self.processes();
            if left.is_empty() {
                break;
            }
            for pid in left {
                kill(pid);
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.remove_cgroups();
    }

    /// Removes the (empty) cgroups, v2 and v1, that runs of this home
    /// recorded in their state.json, in case a shim was killed before it
    /// removed its own.
    fn remove_cgroups(&self) {
        let Ok(agents) = fs::read_dir(self.path().join("runs")) else {
            return;
        };
        for agent in agents.flatten() {
            let Ok(runs) = fs::read_dir(agent.path()) else {
                continue;
            };
            for run in runs.flatten() {
                let Ok(text) = fs::read_to_string(run.path().join("state.json")) else {
                    continue;
                };
                let state: Value = serde_json::from_str(&text).unwrap_or_default();
                if let Some(cgroup) = state["cgroup"].as_str() {
                    let _ = fs::remove_dir(cgroup);
                }
                // The cgroup v1 groups of the run's limits.
                for limit in ["memory_max", "cpu_max", "pids_max"] {
                    if let Some(group) = state["limits"][limit]["by"]["cgroup_v1"]["group"].as_str()
                    {
                        let _ = fs::remove_dir(group);
                    }
                }
            }
        }
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        self.clean_up();
    }
}

/// True when this process can create a cgroup v2 below its own, as the
/// daemon tries to: then wrangle is expected to give each run a cgroup.
pub fn cgroup_v2_writable() -> bool {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let mount = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))
            .flatten()
    });
    let Some(mount) = mount else {
        return false;
    };
    let own = fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        })
        .unwrap_or_else(|| "/".into());
    static PROBES: AtomicU32 = AtomicU32::new(0);
    let probe = mount.join(own.trim_start_matches('/')).join(format!(
        "wrangle-test-probe-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    ));
    let writable = fs::create_dir(&probe).is_ok() && probe.join("cgroup.procs").exists();
    let _ = fs::remove_dir(&probe);
    writable
}

/// True when the tests run as root (needed to switch to another user).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Sends SIGKILL to `pid`; one that is gone already is fine.
pub fn kill(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Copies the wrangle binary into a fresh directory anyone can read and
/// execute (cargo's target directory may be private), and returns the
/// directory (to keep) and the copy's path.
pub fn public_copy_of_wrangle() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("wrbin")
        .tempdir_in("/tmp")
        .expect("a directory for the binary");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod 755");
    let copy = dir.path().join("wrangle");
    fs::copy(WRANGLE, &copy).expect("copy the binary");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod 755");
    (dir, copy)
}

/// Parses an RFC 3339 timestamp, panicking with `what` when it is not one.
pub fn rfc3339(value: &Value, what: &str) -> chrono::DateTime<chrono::FixedOffset> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|error| panic!("{what} {text:?} is not RFC 3339: {error}"))
}
