//! The declarative path, timed as a user runs it: a `wrangle.toml` that
//! declares N agents, then `wrangle up -f FILE`, `up` again on the same
//! file (which must start nothing), and `wrangle down -f FILE`, each a
//! process of its own whose clock stops when it exits.
//!
//! Each is checked after its clock has stopped: after the first `up`,
//! `wrangle ps --json` shows all N running and every pid is a live
//! `sleep` in `/proc`; after the second, `up` said every agent was
//! unchanged and the agents are the same processes (pid and start time);
//! after `down`, no agent is left in `/proc` and every shim has exited.

use crate::measure::{self, Stop};
use crate::procinfo::ProcessId;
use crate::start::{self, CpuMark, Fleet, StartCpu};
use crate::wrangle::Wrangle;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// One round of the declarative path on a file of N agents.
#[derive(Debug, Clone)]
pub struct UpRun {
    /// The first `wrangle up`, until the process exited.
    pub up: Duration,
    /// Until `wrangle ps --json`, run once `up` had exited, showed all N
    /// running (the `ps` process included).
    pub up_all_running: Duration,
    /// CPU of the daemon, shims and agents during the first `up`.
    pub up_cpu: StartCpu,
    /// CPU of the `wrangle up` process itself (user + system), in seconds.
    pub up_cli_cpu: f64,
    /// The second `wrangle up` on the same file, until it exited.
    pub again: Duration,
    /// `wrangle down`: until it exited, until no agent was left in
    /// `/proc`, until every shim had exited.
    pub down: Stop,
}

/// The file's name in the home.
const FILE_NAME: &str = "wrangle.toml";

/// The text of a `wrangle.toml` declaring `n` agents running `argv` in
/// `/tmp`, named as every other path of the benchmark names them.
pub fn file_text(n: usize, argv: &[String]) -> String {
    let command = argv
        .iter()
        .map(|arg| format!("{arg:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text = String::with_capacity(n * 64);
    for index in 0..n {
        let _ = write!(
            text,
            "[agents.{}]\ncommand = [{command}]\ncwd = \"/tmp\"\n\n",
            start::agent_name(index)
        );
    }
    text
}

/// Writes the file of `n` agents into `wrangle`'s home (which the daemon
/// has made) and returns its path.
fn write_file(wrangle: &Wrangle, n: usize, argv: &[String]) -> Result<PathBuf> {
    let path = wrangle.home().join(FILE_NAME);
    std::fs::write(&path, file_text(n, argv))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// User + system CPU of this process's reaped children so far, in seconds.
fn children_cpu() -> f64 {
    // SAFETY: getrusage writes one struct through a valid pointer.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Runs `wrangle VERB -f FILE` to its end, its output read whole, and
/// fails unless it exited 0; the time until it exited, and its output.
fn timed(wrangle: &Wrangle, verb: &str, file: &Path) -> Result<(Duration, Output)> {
    let mut command = wrangle.command([verb, "-f"]);
    command
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let output = command
        .output()
        .with_context(|| format!("cannot run `wrangle {verb}`"))?;
    let took = started.elapsed();
    if !output.status.success() {
        bail!(
            "`wrangle {verb} -f {}` failed ({}): {}",
            file.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok((took, output))
}

/// How many lines of `output`'s stdout end with `suffix` after the
/// agent's name and `: `, e.g. `created (` or `unchanged (running)`.
fn lines_saying(output: &Output, said: &str) -> usize {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| {
            line.split_once(": ")
                .is_some_and(|(_, rest)| rest.starts_with(said))
        })
        .count()
}

/// The fleet's processes as a set, for comparing two looks at it.
fn identities(fleet: &Fleet) -> BTreeSet<(i32, u64)> {
    fleet
        .agents
        .iter()
        .map(|ProcessId { pid, start }| (*pid, *start))
        .collect()
}

/// The declarative path for `n` agents running `argv` (whose `comm` is
/// `program`) through the daemon `daemon` of `wrangle`'s home, which must
/// run no agent yet. Leaves the fleet stopped (by `down`) and the daemon
/// running.
pub fn measure(
    wrangle: &Wrangle,
    daemon: ProcessId,
    n: usize,
    argv: &[String],
    program: &str,
) -> Result<UpRun> {
    let file = write_file(wrangle, n, argv)?;
    let names: HashSet<String> = (0..n).map(start::agent_name).collect();

    let mark = CpuMark::now(daemon);
    let cpu_before = children_cpu();
    let started = Instant::now();
    let (up, output) = timed(wrangle, "up", &file)?;
    let up_cli_cpu = children_cpu() - cpu_before;
    let created = lines_saying(&output, "created (");
    if created != n {
        bail!("the first `wrangle up` said it created {created} agents, not {n}");
    }
    let (seen, fleet) = start::wait_all_running(wrangle, &names, program)?;
    let up_all_running = seen - started;
    let up_cpu = mark.since(daemon, &fleet);

    let (again, output) = timed(wrangle, "up", &file)?;
    let unchanged = lines_saying(&output, "unchanged (running)");
    if unchanged != n {
        bail!(
            "the second `wrangle up` said {unchanged} of {n} agents were unchanged: {}",
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .find(|line| !line.ends_with("unchanged (running)"))
                .unwrap_or("")
        );
    }
    let (_, after) = start::wait_all_running(wrangle, &names, program)?;
    if identities(&after) != identities(&fleet) {
        let before = identities(&fleet);
        let changed = identities(&after).difference(&before).count();
        bail!("after the second `wrangle up` {changed} of {n} agents are other processes");
    }

    let started = Instant::now();
    let (answered, output) = timed(wrangle, "down", &file)?;
    let stopped = String::from_utf8_lossy(&output.stdout).lines().count();
    if stopped != n {
        eprintln!("note: `wrangle down` printed {stopped} lines for {n} agents");
    }
    let down = measure::until_stopped(&fleet, started, answered)?;
    Ok(UpRun {
        up,
        up_all_running,
        up_cpu,
        up_cli_cpu,
        again,
        down,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_declares_every_agent_by_the_benchmark_s_names() {
        let argv = vec!["sleep".to_string(), "3600".to_string()];
        let text = file_text(2, &argv);
        assert_eq!(
            text,
            "[agents.bench-0]\ncommand = [\"sleep\", \"3600\"]\ncwd = \"/tmp\"\n\n\
             [agents.bench-1]\ncommand = [\"sleep\", \"3600\"]\ncwd = \"/tmp\"\n\n"
        );
        let parsed: toml::Table = text.parse().expect("valid TOML");
        let agents = parsed["agents"].as_table().expect("a table of agents");
        assert_eq!(agents.len(), 2);
        assert_eq!(agents["bench-1"]["command"][0].as_str(), Some("sleep"));
    }
}
