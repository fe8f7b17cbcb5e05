//! The wrangle under test: finding (or building) its binary, and driving
//! one daemon in one fresh home through the CLI.

use crate::cleanup::{self, Tag};
use crate::procinfo::{self, ProcessId};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use wrangle_wire::AgentView;

/// Returns the wrangle binary to measure: `explicit` if given, else the
/// workspace's wrangle as `cargo install` builds it (with
/// `.cargo/static.toml`), built first unless `no_build`.
pub fn locate(explicit: Option<PathBuf>, no_build: bool) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return std::path::absolute(&path)
            .with_context(|| format!("cannot resolve {}", path.display()));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the bench crate has no parent directory")?
        .to_path_buf();
    if !no_build {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        eprintln!("building wrangle: cargo build --release -p wrangle --config .cargo/static.toml");
        let status = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--quiet",
                "-p",
                "wrangle",
                "--bin",
                "wrangle",
            ])
            .args(["--config", ".cargo/static.toml"])
            .current_dir(&workspace)
            .status()
            .context("cannot run cargo to build wrangle")?;
        if !status.success() {
            bail!("cargo build --release -p wrangle failed ({status})");
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                workspace.join(dir)
            }
        })
        .unwrap_or_else(|| workspace.join("target"));
    // The config names the target (the host's triple), so the build lands
    // in a directory of that name.
    let binary = target.join(host_triple()?).join("release/wrangle");
    if !binary.is_file() {
        bail!(
            "{} does not exist: build it with `cargo build --release --config .cargo/static.toml` or pass --wrangle PATH",
            binary.display()
        );
    }
    Ok(binary)
}

/// The triple of this machine, as rustc names it (`host: ...` of `rustc -vV`).
fn host_triple() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(rustc)
        .arg("-vV")
        .output()
        .context("cannot run rustc -vV")?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .map(str::to_string)
        .context("rustc -vV names no host")
}

/// One daemon in one fresh home, driven through the `wrangle` CLI.
#[derive(Debug, Clone)]
pub struct Wrangle {
    binary: PathBuf,
    home: PathBuf,
    tag: Tag,
}

impl Wrangle {
    /// A handle on `home` (created fresh; it must not exist yet). The home
    /// is registered for cleanup before anything is started in it.
    pub fn new(binary: &Path, home: PathBuf, tag: &Tag) -> Result<Wrangle> {
        if procinfo::exists(&home) {
            bail!("{} already exists: remove it or let it be", home.display());
        }
        cleanup::register_home(&home);
        Ok(Wrangle {
            binary: binary.to_path_buf(),
            home,
            tag: tag.clone(),
        })
    }

    /// The home.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The API socket in the home.
    pub fn socket(&self) -> PathBuf {
        self.home.join("wrangle.sock")
    }

    /// The pid in the home's `daemon.pid`, if any.
    pub fn daemon_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.home.join("daemon.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// `wrangle ARGS...` with this home and the benchmark's tag in its
    /// environment (so the daemon and every agent it starts carry it).
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .env("WRANGLE_HOME", &self.home)
            .env(&self.tag.key, &self.tag.value)
            .current_dir("/tmp")
            .stdin(Stdio::null());
        command
    }

    /// Runs `wrangle ARGS...`, captures its output and fails on a non-zero
    /// exit.
    pub fn run<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut command = self.command(args);
        let output = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("cannot run {}", self.binary.display()))?;
        if !output.status.success() {
            bail!(
                "{:?} failed ({}): {}",
                command,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(output)
    }

    /// `wrangle daemon OPTIONS...`: starts the daemon in the background.
    pub fn start_daemon(&self, options: &[String]) -> Result<()> {
        let args = std::iter::once("daemon".to_string()).chain(options.iter().cloned());
        self.run(args).map(drop)
    }

    /// `wrangle ps --json`, decoded.
    pub fn ps(&self) -> Result<Vec<AgentView>> {
        self.ps_as()
    }

    /// `wrangle ps --json`, each agent read into `T` (which may name only
    /// the fields it needs: the rest are skipped, not built).
    pub fn ps_as<T: serde::de::DeserializeOwned>(&self) -> Result<Vec<T>> {
        let output = self.run(["ps", "--json"])?;
        serde_json::from_slice(&output.stdout).context("`wrangle ps --json` printed no agent list")
    }

    /// `wrangle daemon stop`, then waits (up to 30 s) until `daemon` is
    /// gone from `/proc`.
    pub fn stop_daemon(&self, daemon: ProcessId) -> Result<()> {
        self.run(["daemon", "stop", "--stop-agents"])?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while daemon.is_running() {
            if Instant::now() > deadline {
                bail!("the daemon (pid {}) did not exit", daemon.pid);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}
