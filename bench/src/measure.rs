//! The measurements of a running fleet: status calls, the idle cost of
//! the daemon and the shims, and stop all until `/proc` shows none left.

use crate::cleanup;
use crate::client::Api;
use crate::procinfo::{self, ProcessId};
use crate::start::{Fleet, PHASE_TIMEOUT};
use crate::stats::Samples;
use crate::wrangle::Wrangle;
use anyhow::{anyhow, bail, Context, Result};
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Timings of the status call, and what it answered.
#[derive(Debug, Clone)]
pub struct Status {
    /// Wall time of each run of the call.
    pub samples: Samples,
    /// Size of one answer, in bytes.
    pub bytes: usize,
}

/// Checks that a `ps`/`GET /v1/agents` answer lists `n` agents.
fn check_listed(body: &[u8], n: usize, what: &str) -> Result<usize> {
    let listed: Vec<Value> = serde_json::from_slice(body)
        .with_context(|| format!("{what} did not answer a JSON list"))?;
    if listed.len() != n {
        bail!("{what} listed {} agents, not {n}", listed.len());
    }
    Ok(body.len())
}

/// Runs `wrangle ARGS` `runs` times: wall time of the whole process,
/// output read to its end; `check` looks at each output and gives its size.
fn time_cli(
    wrangle: &Wrangle,
    args: [&str; 2],
    runs: usize,
    check: impl Fn(&[u8]) -> Result<usize>,
) -> Result<Status> {
    let shown = format!("`wrangle {}`", args.join(" "));
    let mut samples = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let output = wrangle
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("cannot run {shown}"))?;
        samples.push(started.elapsed());
        if !output.status.success() {
            bail!("{shown} failed ({})", output.status);
        }
        bytes = check(&output.stdout)?;
    }
    Ok(Status {
        samples: Samples::new(samples),
        bytes,
    })
}

/// Runs the `wrangle ps --json` CLI `runs` times and checks it lists `n`.
pub fn time_ps_cli(wrangle: &Wrangle, runs: usize, n: usize) -> Result<Status> {
    time_cli(wrangle, ["ps", "--json"], runs, |out| {
        check_listed(out, n, "`wrangle ps --json`")
    })
}

/// Runs the `wrangle summary --json` CLI `runs` times. Checks that the
/// summary counts `n` running agents and that the sampler has seen every
/// one of their processes (so the figure is taken with sampling on).
pub fn time_summary_cli(wrangle: &Wrangle, runs: usize, n: usize) -> Result<Status> {
    time_cli(wrangle, ["summary", "--json"], runs, |out| {
        let summary: wrangle_wire::Summary =
            serde_json::from_slice(out).context("`wrangle summary --json` printed no summary")?;
        let running = summary
            .by_state
            .get(&wrangle_wire::State::Running)
            .copied()
            .unwrap_or(0);
        if running as usize != n || summary.sampled_at.is_none() || (summary.processes as usize) < n
        {
            bail!(
                "`wrangle summary --json` counts {running} running agents and {} sampled processes, not {n}",
                summary.processes
            );
        }
        Ok(out.len())
    })
}

/// Sends `GET path` `runs` times, each on a new connection as a CLI or a
/// scraper does: connect, request, whole answer read; `check` looks at
/// each answer's body and gives its size.
async fn time_api(
    api: &Api,
    path: &str,
    runs: usize,
    check: impl Fn(&[u8]) -> Result<usize>,
) -> Result<Status> {
    let mut samples = Vec::with_capacity(runs);
    let mut bytes = 0;
    for _ in 0..runs {
        let started = Instant::now();
        let answer = api.call(Method::GET, path, None).await?;
        samples.push(started.elapsed());
        if answer.status != StatusCode::OK {
            bail!("GET {path} answered {}", answer.status);
        }
        bytes = check(&answer.body)?;
    }
    Ok(Status {
        samples: Samples::new(samples),
        bytes,
    })
}

/// Times `GET /v1/agents?all=false` and checks it lists `n`.
pub async fn time_list_api(api: &Api, runs: usize, n: usize) -> Result<Status> {
    time_api(api, "/v1/agents?all=false", runs, |body| {
        check_listed(body, n, "GET /v1/agents")
    })
    .await
}

/// Times `GET /metrics` and checks it counts `n` running agents.
pub async fn time_metrics_api(api: &Api, runs: usize, n: usize) -> Result<Status> {
    let expected = format!("wrangle_agents{{state=\"running\"}} {n}\n");
    time_api(api, "/metrics", runs, |body| {
        if !String::from_utf8_lossy(body).contains(&expected) {
            bail!("GET /metrics does not count {n} running agents");
        }
        Ok(body.len())
    })
    .await
}

/// What the daemon and the shims cost while nothing happens.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    /// Length of the window.
    pub window: Duration,
    /// Daemon CPU (all threads) over the window, in % of one core.
    pub daemon_cpu: f64,
    /// Daemon `VmRSS` at the end of the window, KiB.
    pub daemon_rss_kib: u64,
    /// Daemon `VmHWM` (peak RSS so far), KiB.
    pub daemon_peak_kib: u64,
    /// All shims' CPU over the window, in % of one core.
    pub shims_cpu: f64,
    /// All shims' proportional set size, summed, KiB.
    pub shims_pss_kib: u64,
    /// Median `VmRSS` of one shim, KiB.
    pub shim_rss_kib: u64,
    /// Busy share of all the machine's cores meanwhile, in %: anything
    /// well above zero means something else ran and disturbed the figures.
    pub machine_busy: f64,
}

/// Watches the daemon and the shims for `window` while nothing is asked
/// of them.
pub fn idle(daemon: ProcessId, shims: &[ProcessId], window: Duration) -> Result<Idle> {
    let cpu = |pid| procinfo::cpu_ticks(pid).ok_or_else(|| anyhow!("the daemon is gone"));
    let machine_before = procinfo::machine_ticks().unwrap_or_default();
    let daemon_before = cpu(daemon.pid)?;
    let shims_before = procinfo::cpu_ns_of(shims);
    let started = Instant::now();
    while started.elapsed() < window {
        if cleanup::interrupted() {
            bail!("interrupted");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let daemon_after = cpu(daemon.pid)?;
    let shims_after = procinfo::cpu_ns_of(shims);
    let machine_after = procinfo::machine_ticks().unwrap_or_default();
    let elapsed = started.elapsed().as_secs_f64();
    let hz = procinfo::ticks_per_second() as f64;
    let percent = |ticks: u64| ticks as f64 / hz / elapsed * 100.0;
    let mut shim_rss: Vec<u64> = shims
        .iter()
        .filter_map(|shim| procinfo::rss_kib(shim.pid))
        .collect();
    shim_rss.sort_unstable();
    Ok(Idle {
        window: started.elapsed(),
        daemon_cpu: percent(daemon_after.saturating_sub(daemon_before)),
        daemon_rss_kib: procinfo::rss_kib(daemon.pid).unwrap_or(0),
        daemon_peak_kib: procinfo::peak_rss_kib(daemon.pid).unwrap_or(0),
        shims_cpu: shims_after.saturating_sub(shims_before) as f64 / 1e9 / elapsed * 100.0,
        shims_pss_kib: shims
            .iter()
            .filter_map(|shim| procinfo::pss_kib(shim.pid))
            .sum(),
        shim_rss_kib: shim_rss.get(shim_rss.len() / 2).copied().unwrap_or(0),
        machine_busy: machine_after.0.saturating_sub(machine_before.0) as f64
            / machine_after.1.saturating_sub(machine_before.1).max(1) as f64
            * 100.0,
    })
}

/// How a stop of all agents went.
#[derive(Debug, Clone, Copy)]
pub struct Stop {
    /// Until the stop command (or request) answered.
    pub answered: Duration,
    /// Until no agent process was left in `/proc`.
    pub agents_gone: Duration,
    /// Until every shim had exited. A zombie counts as exited: after the
    /// re-attach the shims' parent is init (their zygote died with the
    /// killed daemon), and how soon init reaps is not wrangle's doing.
    pub shims_exited: Duration,
}

/// Waits until none of `processes` is in `/proc`; the time since `since`.
fn wait_gone(processes: &[ProcessId], since: Instant, what: &str) -> Result<Duration> {
    wait_until_none(processes, ProcessId::exists, since, what)
}

/// Waits until each of `processes` has exited (a zombie has); the time
/// since `since`.
fn wait_exited(processes: &[ProcessId], since: Instant, what: &str) -> Result<Duration> {
    wait_until_none(processes, ProcessId::is_running, since, what)
}

/// Waits until `left_in` holds for none of `processes`.
fn wait_until_none(
    processes: &[ProcessId],
    left_in: fn(&ProcessId) -> bool,
    since: Instant,
    what: &str,
) -> Result<Duration> {
    let mut left: Vec<ProcessId> = processes.to_vec();
    loop {
        left.retain(left_in);
        if left.is_empty() {
            return Ok(since.elapsed());
        }
        if since.elapsed() > PHASE_TIMEOUT || cleanup::interrupted() {
            bail!("{} {what} processes are still in /proc", left.len());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits, after a stop that began at `started` and answered after
/// `answered`, until no agent of `fleet` is left in `/proc` and every
/// shim has exited; the times of each, since `started`.
pub fn until_stopped(fleet: &Fleet, started: Instant, answered: Duration) -> Result<Stop> {
    Ok(Stop {
        answered,
        agents_gone: wait_gone(&fleet.agents, started, "agent")?,
        shims_exited: wait_exited(&fleet.shims, started, "shim")?,
    })
}

/// Stops all with `wrangle stop --all`, then checks `/proc`.
pub fn stop_via_cli(wrangle: &Wrangle, fleet: &Fleet) -> Result<Stop> {
    let started = Instant::now();
    let output = wrangle.run(["stop", "--all"])?;
    let answered = started.elapsed();
    let stopped = String::from_utf8_lossy(&output.stdout).lines().count();
    if stopped != fleet.agents.len() {
        eprintln!(
            "note: `wrangle stop --all` printed {stopped} lines for {} agents",
            fleet.agents.len()
        );
    }
    until_stopped(fleet, started, answered)
}

/// Stops all with `POST /v1/stop {"all": true}`, then checks `/proc`.
pub async fn stop_via_api(api: &Api, fleet: &Fleet) -> Result<Stop> {
    let started = Instant::now();
    let answer = api
        .call(Method::POST, "/v1/stop", Some(&json!({"all": true})))
        .await?;
    let answered = started.elapsed();
    let results = answer.json(StatusCode::OK, "POST /v1/stop")?;
    let count = results.as_array().map_or(0, Vec::len);
    if count != fleet.agents.len() {
        bail!(
            "POST /v1/stop reported {count} agents, not {}",
            fleet.agents.len()
        );
    }
    until_stopped(fleet, started, answered)
}

/// How a daemon crash with the fleet running went.
#[derive(Debug, Clone)]
pub struct Reattach {
    /// From the SIGKILL of the daemon until a new one (autostarted by
    /// `wrangle ps --json`) listed every agent `running` with its pid.
    pub took: Duration,
    /// The new daemon.
    pub daemon: ProcessId,
}

/// SIGKILLs the daemon with the fleet running, then runs `wrangle ps
/// --json` (which starts a new daemon) until it lists every agent of the
/// fleet `running` with the same pid; the agents themselves must never
/// have stopped.
pub fn reattach(wrangle: &Wrangle, daemon: ProcessId, fleet: &Fleet) -> Result<Reattach> {
    let wanted: std::collections::BTreeSet<i32> = fleet.agents.iter().map(|a| a.pid).collect();
    // SAFETY: kill(2) with plain integers; the pid is the daemon's, checked
    // by start time just before.
    if daemon.is_running() && unsafe { libc::kill(daemon.pid, libc::SIGKILL) } != 0 {
        bail!("cannot SIGKILL the daemon (pid {})", daemon.pid);
    }
    let started = Instant::now();
    let deadline = started + PHASE_TIMEOUT;
    while daemon.is_running() {
        if Instant::now() > deadline {
            bail!("the daemon (pid {}) survived SIGKILL", daemon.pid);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    loop {
        let output = wrangle
            .command(["ps", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .context("cannot run `wrangle ps --json`")?;
        if output.status.success() {
            let listed: Vec<Value> = serde_json::from_slice(&output.stdout)?;
            let running: std::collections::BTreeSet<i32> = listed
                .iter()
                .filter(|agent| agent["state"] == "running")
                .filter_map(|agent| agent["pid"].as_i64().map(|pid| pid as i32))
                .collect();
            if running == wanted {
                let took = started.elapsed();
                if let Some(lost) = fleet.agents.iter().find(|agent| !agent.is_running()) {
                    bail!("agent pid {} did not survive the daemon's crash", lost.pid);
                }
                let pid = wrangle
                    .daemon_pid()
                    .ok_or_else(|| anyhow!("the new daemon wrote no pid file"))?;
                let daemon = ProcessId::of(pid)
                    .ok_or_else(|| anyhow!("the new daemon (pid {pid}) is not in /proc"))?;
                return Ok(Reattach { took, daemon });
            }
        }
        if Instant::now() > deadline {
            bail!("no daemon re-attached all {} agents in time", wanted.len());
        }
    }
}
