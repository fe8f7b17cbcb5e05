//! `wrangle-bench --telemetry`: what receiving agents' OpenTelemetry
//! costs the daemon, and how soon a record shows. Issue 13 asks that
//! "1000 agents each exporting once a second cost the daemon at most 5%
//! of a core; a record reaches `inspect` within 100 ms of its arrival."
//!
//! - The agents are this binary run through a symlink named `claude` (see
//!   [`crate::export`]): wrangle's `--telemetry auto` takes them for
//!   Claude Code and sets their OTel environment, and each posts one
//!   `claude_code.api_request` record a second to the daemon's port.
//! - The load: `--telemetry-agents` of them started over the API like the
//!   fleet benchmark's; the daemon's CPU (all threads, `/proc/PID/stat`)
//!   over a window of whole sampler ticks once every agent has been
//!   sampled and has exported. As a baseline, the same fleet with
//!   `--telemetry off` first (the same processes, posting nothing), so
//!   that the difference is what receiving costs.
//! - The latency: during the window the benchmark posts records of its
//!   own with agents' tokens and times each until `GET /v1/agents/{id}`
//!   shows it (see [`probe`]).
//! - The check: the agents post a known number of records and exit; every
//!   agent's telemetry must then count exactly those (and the probe's),
//!   with their tokens and cost, and every post must have been answered
//!   200, so that the figures are of real work.

mod probe;
mod report;

pub use report::markdown;

use crate::client::Api;
use crate::export::{self, Summary};
use crate::otlp::{self, Call};
use crate::procinfo::{self, Machine, ProcessId};
use crate::sessions::{self, Check, Window};
use crate::start::{self, ApiStart};
use crate::wrangle::Wrangle;
use crate::{cleanup, Args};
use anyhow::{bail, Context, Result};
use hyper::{Method, StatusCode};
use probe::Latency;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wrangle_wire::{RunOptions, State, TokenCounts};

/// The fleet's target: the daemon's whole CPU, in % of one core.
const CPU_TARGET: f64 = 5.0;

/// The latency's target: from a record's arrival to `inspect`.
const LATENCY_TARGET: Duration = Duration::from_millis(100);

/// One fleet, with telemetry received or not.
#[derive(Debug, Clone)]
pub struct FleetRun {
    /// Whether the agents' telemetry was received (`--telemetry auto`) or
    /// not (`off`, the baseline).
    pub telemetry: bool,
    /// How many agents.
    pub n: usize,
    /// Until `ps --json` showed all running.
    pub start: Duration,
    /// The daemon's CPU over the window.
    pub window: Window,
    /// Of that, each of its threads (by name, threads of one name
    /// together) that used any, the busiest first, in % of one core.
    pub threads: Vec<(String, f64)>,
    /// The daemon's peak resident memory (`VmHWM`) at the window's end.
    pub peak_rss_kib: u64,
    /// Records counted per second between just before and just after the
    /// window, the probe's left out (with telemetry only).
    pub records_per_second: Option<f64>,
    /// Posts the agents made, and of them answered 200 (from each one's
    /// own [`Summary`]).
    pub posts: u64,
    /// Of them, answered 200.
    pub posts_ok: u64,
    /// Kept-alive connections the daemon closed, opened again.
    pub reconnects: u64,
    /// Every agent's telemetry against what it posted.
    pub check: Check,
}

/// Everything `--telemetry` measured.
#[derive(Debug, Clone)]
pub struct Figures {
    /// The daemon's sampler tick (its default).
    pub tick: Duration,
    /// Records each agent posts before it exits.
    pub calls: u64,
    /// The fleet with `--telemetry off`, unless skipped.
    pub baseline: Option<FleetRun>,
    /// The fleet whose telemetry is received.
    pub received: FleetRun,
    /// The probe's records, during `received`'s window.
    pub latency: Latency,
}

/// What every fleet of the phase shares.
struct Setup<'a> {
    args: &'a Args,
    binary: &'a Path,
    tag: &'a cleanup::Tag,
    /// The `claude` symlink to this binary.
    program: PathBuf,
    /// The window, in whole ticks.
    window: Duration,
    /// Records each agent posts.
    calls: u64,
}

/// Runs the baseline (unless `--no-telemetry-baseline`) and the fleet
/// whose telemetry is received, with the probe.
pub async fn bench(
    args: &Args,
    binary: &Path,
    tag: &cleanup::Tag,
    machine: &mut Machine,
) -> Result<Figures> {
    let n = args.telemetry_agents;
    if n == 0 {
        bail!("--telemetry-agents needs 1 or more");
    }
    let tick = crate::SAMPLER_TICK;
    let window = sessions::whole_ticks(args.telemetry_seconds, tick);
    // Each agent posts through the start of all (about a second per
    // 1000), the waits until all are sampled and have exported (a tick or
    // two), the window, and a margin: 30 s more than the window.
    let calls = (window + Duration::from_secs(30) + tick * 4).as_secs();
    let setup = Setup {
        args,
        binary,
        tag,
        program: link_program(&args.home_base)?,
        window,
        calls,
    };
    let baseline = if args.no_telemetry_baseline {
        None
    } else {
        let busy = crate::wait_quiet(Duration::from_secs(args.quiet_wait));
        eprintln!(
            "telemetry: {n} agents with --telemetry off, the baseline (machine {busy:.0}% busy)"
        );
        let (run, _) = fleet_run(&setup, false, machine).await?;
        report_run(&run);
        Some(run)
    };
    let busy = crate::wait_quiet(Duration::from_secs(args.quiet_wait));
    eprintln!(
        "telemetry: {n} agents each exporting a record a second, {} latency samples (machine {busy:.0}% busy)",
        args.latency_samples
    );
    let (received, latency) = fleet_run(&setup, true, machine).await?;
    report_run(&received);
    Ok(Figures {
        tick,
        calls,
        baseline,
        received,
        latency: latency.context("the probe did not run")?,
    })
}

/// Says what a run measured, as it is measured.
fn report_run(run: &FleetRun) {
    eprintln!(
        "  daemon {:.2}% of a core, RSS {:.1} MiB; {}",
        run.window.daemon_cpu,
        run.window.daemon_rss_kib as f64 / 1024.0,
        match &run.check {
            Ok(agreed) => agreed.clone(),
            Err(differs) => format!("CHECK FAILED: {differs}"),
        }
    );
}

/// Makes `claude`, a symlink to this binary, in a fresh directory under
/// `base` (removed at the end with the homes), and returns its path.
fn link_program(base: &Path) -> Result<PathBuf> {
    let me = std::env::current_exe().context("cannot find this program to run it as the agents")?;
    let dir = base.join(format!("wb-{}-bin", std::process::id()));
    if procinfo::exists(&dir) {
        bail!("{} already exists: remove it or let it be", dir.display());
    }
    cleanup::register_home(&dir);
    std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let link = dir.join(export::PROGRAM);
    std::os::unix::fs::symlink(&me, &link)
        .with_context(|| format!("cannot link {} to {}", link.display(), me.display()))?;
    Ok(link)
}

/// The agents' environment: the benchmark's, with the tag, without any
/// `OTEL_*` of its own (wrangle would forward to a collector named there).
fn agent_environment(tag: &cleanup::Tag) -> BTreeMap<String, String> {
    let mut env = crate::agent_environment(tag);
    env.retain(|key, _| !key.starts_with("OTEL_"));
    env
}

/// One fleet in a fresh home: started, watched over the window (with the
/// probe when `telemetry`), then waited for until every agent has posted
/// all its records and exited, and checked.
async fn fleet_run(
    setup: &Setup<'_>,
    telemetry: bool,
    machine: &mut Machine,
) -> Result<(FleetRun, Option<Latency>)> {
    let Setup { args, calls, .. } = *setup;
    let n = args.telemetry_agents;
    let phase = if telemetry { "ton" } else { "toff" };
    let home = crate::home_for(&args.home_base, n, phase);
    let wrangle = Wrangle::new(setup.binary, home, setup.tag)?;
    let (api, daemon, info) = crate::start_daemon(&wrangle).await?;
    machine.containment = info.containment.clone();
    let argv = vec![
        setup.program.display().to_string(),
        "--calls".into(),
        calls.to_string(),
    ];
    let options = RunOptions {
        telemetry: Some(if telemetry { "auto" } else { "off" }.into()),
        ..RunOptions::default()
    };
    let started = start::start_via_api(ApiStart {
        wrangle: &wrangle,
        daemon,
        api: &api,
        n,
        connections: args.connections,
        argv: &argv,
        env: &agent_environment(setup.tag),
        options: &options,
        program: export::PROGRAM,
    })
    .await?;
    let since_start = Instant::now();
    crate::wait_sampled(&wrangle, n)?;
    let agents = if telemetry {
        wait_exporting(&api, n).await?
    } else {
        list(&api).await?
    };
    let targets = if telemetry {
        probe::targets(&agents, args.latency_samples)?
    } else {
        Vec::new()
    };
    let before = (Instant::now(), total_calls(&agents));
    let window = setup.window;
    let watching = tokio::task::spawn_blocking(move || watch(daemon, window));
    let latency = if telemetry {
        Some(probe::run(&api, &targets, window).await?)
    } else {
        None
    };
    let watched = watching.await.context("the watch panicked")??;
    let agents = list(&api).await?;
    let after = (Instant::now(), total_calls(&agents));
    let running = agents.iter().filter(|a| a.state == State::Running).count();
    if running != n {
        bail!(
            "only {running} of {n} agents still exported at the window's end ({:.0} s after the start): the start or the waits took too long",
            since_start.elapsed().as_secs_f64()
        );
    }
    let probed = latency
        .as_ref()
        .map(|l| l.posted.clone())
        .unwrap_or_default();
    let records_per_second = telemetry.then(|| {
        let probe: u64 = probed.values().sum();
        after.1.saturating_sub(before.1).saturating_sub(probe) as f64
            / (after.0 - before.0).as_secs_f64()
    });
    let left =
        Duration::from_secs(calls).saturating_sub(since_start.elapsed()) + Duration::from_secs(120);
    let ended = wait_ended(&api, n, left).await?;
    let checked = check_fleet(&ended, calls, telemetry, &probed);
    wrangle.stop_daemon(daemon)?;
    Ok((
        FleetRun {
            telemetry,
            n,
            start: started.all_running,
            window: watched.window,
            threads: watched.threads,
            peak_rss_kib: watched.peak_rss_kib,
            records_per_second,
            posts: checked.posts,
            posts_ok: checked.ok,
            reconnects: checked.reconnects,
            check: checked.check,
        },
        latency,
    ))
}

/// What [`watch`] saw of the daemon.
struct Watched {
    window: Window,
    /// Each of its threads' share, the busiest first (see
    /// [`FleetRun::threads`]).
    threads: Vec<(String, f64)>,
    /// Its peak RSS at the window's end.
    peak_rss_kib: u64,
}

/// Watches the daemon over `length` (see [`sessions::measure_window`]),
/// with each of its threads' share and its peak RSS at the end. Threads
/// that end within the window are left out of the shares (their time is
/// in the whole).
fn watch(daemon: ProcessId, length: Duration) -> Result<Watched> {
    let before = procinfo::thread_cpu_ticks(daemon.pid);
    let window = sessions::measure_window(daemon, length)?;
    let after = procinfo::thread_cpu_ticks(daemon.pid);
    let hz = procinfo::ticks_per_second() as f64;
    let mut threads: Vec<(String, f64)> = after
        .iter()
        .map(|(name, ticks)| {
            let used = ticks.saturating_sub(before.get(name).copied().unwrap_or(0));
            (name.clone(), used as f64 / hz / window.seconds * 100.0)
        })
        .filter(|(_, share)| *share > 0.0)
        .collect();
    threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(Watched {
        window,
        threads,
        peak_rss_kib: procinfo::peak_rss_kib(daemon.pid).unwrap_or(0),
    })
}

/// What the benchmark reads of an agent (`GET /v1/agents`): only the
/// fields it checks.
#[derive(Debug, serde::Deserialize)]
struct Seen {
    name: String,
    state: State,
    reason: Option<String>,
    exit_code: Option<i32>,
    pid: Option<i32>,
    stderr_log: String,
    session: Option<SeenSession>,
}

/// What the benchmark reads of a session.
#[derive(Debug, serde::Deserialize)]
struct SeenSession {
    telemetry: Option<SeenTelemetry>,
    telemetry_note: Option<String>,
}

/// What the benchmark reads of a session's telemetry.
#[derive(Debug, serde::Deserialize)]
struct SeenTelemetry {
    calls: u64,
    tokens: TokenCounts,
    cost_usd: Option<f64>,
}

impl Seen {
    /// Its telemetry, if it is received.
    fn telemetry(&self) -> Option<&SeenTelemetry> {
        self.session.as_ref()?.telemetry.as_ref()
    }

    /// Model calls its telemetry counted.
    fn calls(&self) -> u64 {
        self.telemetry().map_or(0, |t| t.calls)
    }
}

/// Calls counted of all `agents`.
fn total_calls(agents: &[Seen]) -> u64 {
    agents.iter().map(Seen::calls).sum()
}

/// Every agent of the daemon, ended ones too.
async fn list(api: &Api) -> Result<Vec<Seen>> {
    api.call(Method::GET, "/v1/agents?all=true", None)
        .await?
        .parse(StatusCode::OK, "GET /v1/agents")
}

/// Waits until every one of the `n` agents has had a record counted (30
/// s at most: each posts within a second of its start).
async fn wait_exporting(api: &Api, n: usize) -> Result<Vec<Seen>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let agents = list(api).await?;
        let silent: Vec<&Seen> = agents.iter().filter(|a| a.calls() == 0).collect();
        if agents.len() == n && silent.is_empty() {
            return Ok(agents);
        }
        if Instant::now() > deadline || cleanup::interrupted() {
            let why = silent
                .first()
                .and_then(|a| a.session.as_ref()?.telemetry_note.clone())
                .unwrap_or_else(|| "no note".into());
            bail!(
                "after 30 s, {} of {n} agents had no record counted (e.g. {}: {why})",
                silent.len(),
                silent.first().map_or("?", |a| a.name.as_str()),
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until all `n` agents have ended.
async fn wait_ended(api: &Api, n: usize, limit: Duration) -> Result<Vec<Seen>> {
    let deadline = Instant::now() + limit;
    loop {
        let agents = list(api).await?;
        let ended = agents.iter().filter(|a| a.state.is_ended()).count();
        if agents.len() == n && ended == n {
            return Ok(agents);
        }
        if Instant::now() > deadline || cleanup::interrupted() {
            bail!("only {ended} of {n} agents had ended after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `k` calls of `call`: their tokens and micro-USD.
fn times(call: &Call, k: u64) -> (TokenCounts, u64) {
    let t = call.tokens;
    let tokens = TokenCounts {
        input: t.input * k,
        output: t.output * k,
        cache_read: t.cache_read * k,
        cache_write: t.cache_write * k,
    };
    (tokens, call.micro_usd * k)
}

/// A fleet's check, with the posts its agents said they made.
struct Checked {
    check: Check,
    posts: u64,
    ok: u64,
    reconnects: u64,
}

/// Checks every ended agent (see [`check_agent`]).
fn check_fleet(
    agents: &[Seen],
    calls: u64,
    telemetry: bool,
    probed: &BTreeMap<String, u64>,
) -> Checked {
    let (mut posts, mut ok, mut reconnects) = (0, 0, 0);
    let mut failures = Vec::new();
    for agent in agents {
        let probe = probed.get(&agent.name).copied().unwrap_or(0);
        match check_agent(agent, calls, telemetry, probe) {
            Ok(summary) => {
                posts += summary.posts;
                ok += summary.ok;
                reconnects += summary.reconnects;
            }
            Err((summary, why)) => {
                if let Some(summary) = summary {
                    posts += summary.posts;
                    ok += summary.ok;
                    reconnects += summary.reconnects;
                }
                failures.push(why);
            }
        }
    }
    let (tokens, micro_usd) = times(&otlp::AGENT_CALL, calls);
    let check = match failures.first() {
        None if telemetry => Ok(format!(
            "every agent: {calls} records posted, all answered 200; {calls} calls, {} tokens, ${:.6} counted{}: all as posted",
            sessions::group(tokens.total()),
            micro_usd as f64 / 1e6,
            if probed.is_empty() { "" } else { " (and the probe's records where it posted)" }
        )),
        None => Ok("every agent: exit 0, nothing posted, no telemetry".into()),
        Some(first) => Err(format!(
            "{} of {} agents differ, e.g. {first}",
            failures.len(),
            agents.len()
        )),
    };
    Checked {
        check,
        posts,
        ok,
        reconnects,
    }
}

/// What an agent's check found: what it said it did, or why it differs
/// (with what it said, if it said anything).
type AgentCheck = std::result::Result<Summary, (Option<Summary>, String)>;

/// Checks an ended agent against what it posted (`calls` records of
/// [`otlp::AGENT_CALL`], and `probe` of the probe's with its token, with
/// `telemetry`; none without) and returns what it said it did.
fn check_agent(agent: &Seen, calls: u64, telemetry: bool, probe: u64) -> AgentCheck {
    let name = &agent.name;
    let log = std::fs::read_to_string(&agent.stderr_log).unwrap_or_default();
    let summary = Summary::find(&log);
    let fail = |why: String| -> AgentCheck { Err((summary, format!("agent {name}: {why}"))) };
    if agent.state != State::Completed || agent.exit_code != Some(0) {
        return fail(format!(
            "{} (exit {:?}): {}; its stderr ends {:?}",
            agent.state,
            agent.exit_code,
            agent.reason.as_deref().unwrap_or("no reason given"),
            log.lines().last().unwrap_or_default()
        ));
    }
    let Some(said) = summary else {
        return fail("wrote no summary on stderr".into());
    };
    let posted = if telemetry { calls } else { 0 };
    if (said.posts, said.ok) != (posted, posted) {
        return fail(format!(
            "{} posts, {} answered 200, where {posted} were due",
            said.posts, said.ok
        ));
    }
    let Some(found) = agent.telemetry() else {
        return match telemetry {
            true => fail("no telemetry received".into()),
            false => Ok(said),
        };
    };
    if !telemetry {
        return fail("telemetry received with --telemetry off".into());
    }
    let (mut tokens, mut micro_usd) = times(&otlp::AGENT_CALL, calls);
    let (probe_tokens, probe_micro_usd) = times(&otlp::PROBE_CALL, probe);
    tokens.add(&probe_tokens);
    micro_usd += probe_micro_usd;
    let wanted = (calls + probe, tokens, Some(micro_usd));
    let counted = (
        found.calls,
        found.tokens,
        found.cost_usd.map(|usd| (usd * 1e6).round() as u64),
    );
    if counted != wanted {
        return fail(format!(
            "(calls, tokens, micro-USD) counted {counted:?}, posted {wanted:?}"
        ));
    }
    Ok(said)
}
