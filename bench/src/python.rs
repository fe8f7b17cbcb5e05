//! `--python PYTHON`: starting N agents from Python with the client
//! (`python/bench/start.py`, run by PYTHON, a Python with httpx such as
//! `.cache/python/bin/python`; the client's source is taken from
//! `python/src`) against the same start through the API from Rust, taking
//! turns in this run, each in a fresh home with a fresh daemon. Issue 14:
//! the Python start is within 1.5x of the Rust one.
//!
//! Both start `sleep 3600` agents with the caller's environment as the
//! base and `--connections` requests at a time (threads sharing one
//! client's keep-alive pool in Python, connections in Rust), and stop the
//! clock when the agents' list shows all N running; both check every pid
//! in `/proc` afterwards.

use crate::cleanup::Tag;
use crate::procinfo::Machine;
use crate::stats::Samples;
use crate::wrangle::Wrangle;
use crate::{measure, Args};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One N: the starts of each side, in the order they ran.
#[derive(Debug, Clone)]
pub struct PythonStart {
    /// Agents per start.
    pub n: usize,
    /// Requests at a time, on each side.
    pub connections: usize,
    /// Until all were running, started from Rust over the API.
    pub rust: Vec<Duration>,
    /// Until all were running, started from Python with the client.
    pub python: Vec<Duration>,
    /// The Python process's CPU during each of its starts, in seconds.
    pub python_cpu: Vec<f64>,
}

impl PythonStart {
    /// Median of the Python starts over the median of the Rust ones.
    pub fn ratio(&self) -> f64 {
        let rust = Samples::new(self.rust.clone()).median().as_secs_f64();
        let python = Samples::new(self.python.clone()).median().as_secs_f64();
        python / rust.max(f64::EPSILON)
    }
}

/// What `start.py` prints.
#[derive(Debug, serde::Deserialize)]
struct Printed {
    n: usize,
    all_running_s: f64,
    client_cpu_s: f64,
}

/// The client's directory in the repository.
fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|workspace| workspace.join("python"))
        .unwrap_or_else(|| PathBuf::from("python"))
}

/// `--start-runs` starts of `n` agents from each side, taking turns.
pub async fn compare(
    args: &Args,
    interpreter: &Path,
    binary: &Path,
    tag: &Tag,
    n: usize,
    machine: &mut Machine,
) -> Result<PythonStart> {
    let mut figures = PythonStart {
        n,
        connections: args.connections,
        rust: Vec::new(),
        python: Vec::new(),
        python_cpu: Vec::new(),
    };
    for round in 1..=args.start_runs {
        eprintln!(
            "N = {n}: start over the API from Rust, for Python's ratio, run {round} of {}",
            args.start_runs
        );
        let started =
            crate::start_fleet(args, binary, tag, n, &format!("r{round}"), machine).await?;
        figures.rust.push(started.start.all_running);
        measure::stop_via_cli(&started.wrangle, &started.start.fleet)?;
        started.wrangle.stop_daemon(started.daemon)?;
        std::thread::sleep(Duration::from_millis(200));

        eprintln!(
            "N = {n}: start from Python with the client, run {round} of {}",
            args.start_runs
        );
        let home = crate::home_for(&args.home_base, n, &format!("p{round}"));
        // Registers the home for cleanup; start.py's daemon and agents
        // carry the tag in their environment.
        Wrangle::new(binary, home.clone(), tag)?;
        let printed = run_script(interpreter, binary, tag, &home, n, args.connections)?;
        figures
            .python
            .push(Duration::from_secs_f64(printed.all_running_s));
        figures.python_cpu.push(printed.client_cpu_s);
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(figures)
}

/// Runs `start.py` for one start and reads what it printed.
fn run_script(
    interpreter: &Path,
    binary: &Path,
    tag: &Tag,
    home: &Path,
    n: usize,
    connections: usize,
) -> Result<Printed> {
    let dir = python_dir();
    // Absolute but not resolved: a virtualenv's python finds its packages
    // by the path it was called by.
    let interpreter = std::path::absolute(interpreter)
        .with_context(|| format!("cannot resolve {}", interpreter.display()))?;
    let output = Command::new(&interpreter)
        .arg(dir.join("bench/start.py"))
        .args(["--agents", &n.to_string()])
        .args(["--connections", &connections.to_string()])
        .arg("--wrangle")
        .arg(binary)
        .arg("--home")
        .arg(home)
        .env("PYTHONPATH", dir.join("src"))
        .env(&tag.key, &tag.value)
        .current_dir("/tmp")
        .output()
        .with_context(|| format!("cannot run {}", interpreter.display()))?;
    if !output.status.success() {
        bail!(
            "python/bench/start.py failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let printed: Printed = serde_json::from_str(line)
        .with_context(|| format!("python/bench/start.py printed {stdout:?}"))?;
    if printed.n != n {
        bail!(
            "python/bench/start.py started {} agents, not {n}",
            printed.n
        );
    }
    Ok(printed)
}

/// The section of the report, if Python was measured.
pub fn markdown(starts: &[PythonStart]) -> String {
    if starts.is_empty() {
        return String::new();
    }
    let ms = |d: &Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    let list = |runs: &[Duration]| runs.iter().map(ms).collect::<Vec<_>>().join(", ");
    let mut text = String::from(
        "\n## Starting agents from Python (`--python`)\n\n\
         `python/bench/start.py` with `wrangle.Client` against the API start from Rust, \
         taking turns, each in a fresh home; until all N run.\n\n\
         | N | from Rust (runs) | from Python (runs) | Python's CPU | ratio of medians | target (issue 14) |\n\
         |---|---|---|---|---|---|\n",
    );
    for start in starts {
        let cpu = start
            .python_cpu
            .iter()
            .map(|s| format!("{s:.2} s"))
            .collect::<Vec<_>>()
            .join(", ");
        let ratio = start.ratio();
        let _ = writeln!(
            text,
            "| {} ({} at a time) | {} | {} | {cpu} | **{ratio:.2}x** | within 1.5x: {} |",
            start.n,
            start.connections,
            list(&start.rust),
            list(&start.python),
            if ratio <= 1.5 { "met" } else { "**not met**" }
        );
    }
    text
}
