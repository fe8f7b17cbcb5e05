//! `wrangle-bench --sessions`: what reading agents' output costs the
//! daemon. Issue 12 asks that an agent printing stream-json at 10 MB/s
//! cost the daemon at most 10% of a core for parsing, and that 1000
//! agents each printing a line a second cost it at most 5% of a core.
//!
//! - **A**: one agent (`wrangle-bench __emit`, see [`crate::emit`])
//!   prints Claude stream-json at 10 MB/s; the daemon's CPU (all threads,
//!   `/proc/PID/stat`) is measured over a window of whole sampler ticks
//!   once the run is being read, once with `--adapter claude` and once
//!   with `--adapter none` (each in a fresh home with its own daemon). The
//!   parsing cost is the difference: with `none` the sampler still sees
//!   the log change and samples the process, but reads nothing.
//! - **B**: 1000 such agents print a line a second, started over the API
//!   like the fleet benchmark's; the daemon's CPU over a window after all
//!   run and have been sampled, with each adapter.
//!
//! Each run then waits for its agents to end and checks that the session
//! totals are those of the lines written (lines, messages, tool calls,
//! tokens, cost), so that the figure is of real work.

use crate::client::Api;
use crate::emit::{self, Expected, Script};
use crate::procinfo::{self, Machine, ProcessId};
use crate::report::{time, verdict};
use crate::start::{self, ApiStart};
use crate::wrangle::Wrangle;
use crate::{cleanup, Args};
use anyhow::{bail, Context, Result};
use hyper::{Method, StatusCode};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};
use wrangle_wire::{AdapterKind, CreateAgent, RunOptions, State, TokenCounts};

/// Phase A's target: parsing, in % of one core.
const STREAM_TARGET: f64 = 10.0;

/// Phase B's target: the daemon's whole CPU, in % of one core.
const FLEET_TARGET: f64 = 5.0;

/// The daemon's sampler thread, by its name (`/proc/PID/task/TID/comm`):
/// it reads the logs and, in the same tick, stores what it found.
const SAMPLER_THREAD: &str = "wrangle-sampler";

/// The agents' program as `/proc/PID/comm` shows it.
const EMITTER_COMM: &str = "wrangle-bench";

/// The adapters compared, in the order their runs take turns.
const ADAPTERS: [AdapterKind; 2] = [AdapterKind::None, AdapterKind::Claude];

/// The daemon's CPU over one window.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Its length.
    pub seconds: f64,
    /// The daemon, all threads, in % of one core.
    pub daemon_cpu: f64,
    /// Of that, its sampler thread.
    pub sampler_cpu: f64,
    /// Busy share of all the machine's cores meanwhile, in %.
    pub machine_busy: f64,
    /// The daemon's resident memory (`VmRSS`) at the window's end, KiB:
    /// what it keeps per run it reads shows here.
    pub daemon_rss_kib: u64,
}

/// What the session checks found: what agreed, or what did not.
pub type Check = std::result::Result<String, String>;

/// One run of phase A.
#[derive(Debug, Clone)]
pub struct StreamRun {
    /// The adapter the agent ran with.
    pub adapter: AdapterKind,
    /// The daemon's CPU over the window.
    pub window: Window,
    /// What the agent printed (the size of its stdout log).
    pub bytes: u64,
    /// Lines it printed.
    pub lines: u64,
    /// How long it ran.
    pub runtime: f64,
    /// How many seconds of output the adapter had yet to read at the
    /// window's end (up to a tick is the sampler's rhythm; more would be
    /// falling behind). Only with an adapter.
    pub behind: Option<f64>,
    /// The session against the lines written.
    pub check: Check,
}

/// One run of phase B.
#[derive(Debug, Clone)]
pub struct FleetRun {
    /// The adapter the agents ran with.
    pub adapter: AdapterKind,
    /// How many agents.
    pub n: usize,
    /// Until `ps --json` showed all running.
    pub start: Duration,
    /// The daemon's CPU over the window.
    pub window: Window,
    /// Lines each agent printed.
    pub lines: u64,
    /// Every session against the lines written.
    pub check: Check,
}

/// Everything `--sessions` measured.
#[derive(Debug, Clone)]
pub struct Figures {
    /// The daemons' sampler tick.
    pub tick: Duration,
    /// Whether that is the daemon's default (no `--sample-interval`).
    pub default_tick: bool,
    /// Phase A's asked rate, bytes per second.
    pub stream_rate: u64,
    /// Mean line size asked for.
    pub line_bytes: usize,
    /// Phase A's runs, in the order they ran.
    pub stream: Vec<StreamRun>,
    /// Phase B's runs, in the order they ran (none if skipped).
    pub fleet: Vec<FleetRun>,
}

impl Figures {
    /// Median daemon CPU of phase A with `adapter`.
    fn stream_cpu(&self, adapter: AdapterKind) -> f64 {
        median(
            self.stream
                .iter()
                .filter(|r| r.adapter == adapter)
                .map(|r| r.window.daemon_cpu),
        )
    }

    /// Median daemon CPU of phase B with `adapter`.
    fn fleet_cpu(&self, adapter: AdapterKind) -> f64 {
        median(
            self.fleet
                .iter()
                .filter(|r| r.adapter == adapter)
                .map(|r| r.window.daemon_cpu),
        )
    }
}

/// The median of some percentages (the lower middle one of an even
/// count, as [`crate::stats::Samples`] takes it), 0 when there are none.
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values
        .get(values.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0.0)
}

/// Runs phases A and B, each adapter `--sessions-runs` times in turn.
pub async fn bench(
    args: &Args,
    binary: &Path,
    tag: &cleanup::Tag,
    machine: &mut Machine,
) -> Result<Figures> {
    let tick = match &args.sample_interval {
        Some(text) => {
            wrangle_wire::parse::parse_sample_interval(text).map_err(anyhow::Error::msg)?
        }
        None => crate::SAMPLER_TICK,
    };
    let mut figures = Figures {
        tick,
        default_tick: args.sample_interval.is_none(),
        stream_rate: args.stream_bytes_per_second,
        line_bytes: args.line_bytes,
        stream: Vec::new(),
        fleet: Vec::new(),
    };
    for run in 1..=args.sessions_runs {
        for adapter in ADAPTERS {
            let busy = crate::wait_quiet(Duration::from_secs(args.quiet_wait));
            eprintln!(
                "sessions A: one agent at {:.1} MB/s, --adapter {adapter}, run {run} of {} (machine {busy:.0}% busy)",
                args.stream_bytes_per_second as f64 / 1e6,
                args.sessions_runs
            );
            let measured = stream_run(args, binary, tag, adapter, run, tick, machine).await?;
            report_window(&measured.window);
            figures.stream.push(measured);
        }
    }
    if args.fleet_agents > 0 {
        for run in 1..=args.sessions_runs {
            for adapter in ADAPTERS {
                let busy = crate::wait_quiet(Duration::from_secs(args.quiet_wait));
                eprintln!(
                    "sessions B: {} agents at a line a second, --adapter {adapter}, run {run} of {} (machine {busy:.0}% busy)",
                    args.fleet_agents, args.sessions_runs
                );
                let measured = fleet_run(args, binary, tag, adapter, run, tick).await?;
                report_window(&measured.window);
                figures.fleet.push(measured);
            }
        }
    }
    Ok(figures)
}

/// Says what a window measured, as it is measured.
fn report_window(window: &Window) {
    eprintln!(
        "  daemon {:.2}% of a core (sampler thread {:.2}%), RSS {:.1} MiB",
        window.daemon_cpu,
        window.sampler_cpu,
        window.daemon_rss_kib as f64 / 1024.0
    );
}

/// `seconds` rounded up to whole ticks: a window of k ticks holds k
/// ticks' work wherever it starts, so that where the window falls does not
/// add or drop a tick.
pub fn whole_ticks(seconds: u64, tick: Duration) -> Duration {
    let ticks = (Duration::from_secs(seconds).as_secs_f64() / tick.as_secs_f64()).ceil();
    tick.mul_f64(ticks.max(1.0))
}

/// The daemon's options: the tick, if one was asked for.
fn daemon_options(args: &Args) -> Vec<String> {
    match &args.sample_interval {
        Some(interval) => vec!["--sample-interval".into(), interval.clone()],
        None => Vec::new(),
    }
}

/// The argv of an agent that prints `lines` lines at `rate` a second.
fn emitter_argv(lines: u64, rate: f64, line_bytes: usize) -> Result<Vec<String>> {
    let me = std::env::current_exe().context("cannot find this program to run it as the agents")?;
    Ok(vec![
        me.display().to_string(),
        emit::SUBCOMMAND.into(),
        "--lines".into(),
        lines.to_string(),
        "--lines-per-second".into(),
        format!("{rate:.6}"),
        "--line-bytes".into(),
        line_bytes.to_string(),
    ])
}

/// Run options with `adapter`.
fn options_with(adapter: AdapterKind) -> RunOptions {
    RunOptions {
        adapter: Some(adapter.to_string()),
        ..RunOptions::default()
    }
}

/// Watches the daemon for `length` while the agents print.
pub fn measure_window(daemon: ProcessId, length: Duration) -> Result<Window> {
    let gone = || anyhow::anyhow!("the daemon (pid {}) is gone", daemon.pid);
    let machine_before = procinfo::machine_ticks().unwrap_or_default();
    let daemon_before = procinfo::cpu_ticks(daemon.pid).ok_or_else(gone)?;
    let threads_before = procinfo::thread_cpu_ticks(daemon.pid);
    let started = Instant::now();
    while started.elapsed() < length {
        if cleanup::interrupted() {
            bail!("interrupted");
        }
        std::thread::sleep(Duration::from_millis(50).min(length.saturating_sub(started.elapsed())));
    }
    let daemon_after = procinfo::cpu_ticks(daemon.pid).ok_or_else(gone)?;
    let threads_after = procinfo::thread_cpu_ticks(daemon.pid);
    let machine_after = procinfo::machine_ticks().unwrap_or_default();
    let seconds = started.elapsed().as_secs_f64();
    let hz = procinfo::ticks_per_second() as f64;
    let percent = |ticks: u64| ticks as f64 / hz / seconds * 100.0;
    let sampler = |threads: &std::collections::BTreeMap<String, u64>| {
        threads.get(SAMPLER_THREAD).copied().unwrap_or(0)
    };
    Ok(Window {
        seconds,
        daemon_cpu: percent(daemon_after.saturating_sub(daemon_before)),
        sampler_cpu: percent(sampler(&threads_after).saturating_sub(sampler(&threads_before))),
        machine_busy: machine_after.0.saturating_sub(machine_before.0) as f64
            / machine_after.1.saturating_sub(machine_before.1).max(1) as f64
            * 100.0,
        daemon_rss_kib: procinfo::rss_kib(daemon.pid).unwrap_or(0),
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
    containment: Option<String>,
    started_at: Option<chrono::DateTime<chrono::Utc>>,
    runtime_seconds: Option<f64>,
    stdout_log: String,
    session: Option<SeenSession>,
}

/// What the benchmark reads of a session.
#[derive(Debug, serde::Deserialize)]
struct SeenSession {
    lines: u64,
    other_lines: u64,
    turns: u32,
    tool_calls: u32,
    tokens: TokenCounts,
    cost_usd: Option<f64>,
    result: Option<SeenResult>,
}

/// The final result of a session.
#[derive(Debug, serde::Deserialize)]
struct SeenResult {
    success: bool,
}

impl Seen {
    /// Whether the agent has ended and its adapter (if any) has read the
    /// rest of its output, final result included.
    fn settled(&self, adapter: AdapterKind) -> bool {
        self.state.is_ended()
            && (adapter == AdapterKind::None
                || self.session.as_ref().is_some_and(|s| s.result.is_some()))
    }

    /// Checks the ended agent against the lines it wrote; what agreed.
    fn check(&self, adapter: AdapterKind, expected: &Expected) -> Check {
        if self.state != State::Completed || self.exit_code != Some(0) {
            return Err(format!(
                "agent {} is {} (exit {:?}): {}",
                self.name,
                self.state,
                self.exit_code,
                self.reason.as_deref().unwrap_or("no reason given")
            ));
        }
        if adapter == AdapterKind::None {
            return match &self.session {
                None => Ok("exit 0, no session read".into()),
                Some(_) => Err(format!(
                    "agent {} has a session with --adapter none",
                    self.name
                )),
            };
        }
        let Some(session) = &self.session else {
            return Err(format!("agent {} has no session", self.name));
        };
        let cost = expected.cost_micro_usd as f64 / 1e6;
        let found = (
            session.lines,
            session.other_lines,
            u64::from(session.turns),
            u64::from(session.tool_calls),
            session.tokens,
            session.cost_usd.map(|c| (c * 1e6).round() as u64),
            session.result.as_ref().map(|r| r.success),
        );
        let wanted = (
            expected.lines,
            0,
            expected.turns,
            expected.tool_calls,
            expected.tokens,
            Some(expected.cost_micro_usd),
            Some(true),
        );
        if found != wanted {
            return Err(format!(
                "agent {}: (lines, not understood, messages, tool calls, tokens, micro-USD, success) read {found:?}, written {wanted:?}",
                self.name
            ));
        }
        Ok(format!(
            "{} lines, {} messages, {} tool calls, {} tokens, ${cost:.2}, result: all as written",
            group(expected.lines),
            group(expected.turns),
            group(expected.tool_calls),
            group(expected.tokens.total())
        ))
    }
}

/// `1234567` as `1,234,567`.
pub fn group(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Registers the run's cgroup (if it has one) for cleanup.
fn register_cgroup(seen: &Seen) {
    if let Some(path) = seen
        .containment
        .as_deref()
        .and_then(|c| c.strip_prefix("cgroup "))
    {
        cleanup::register_cgroups([path.into()]);
    }
}

/// Every agent of the daemon, ended ones too.
async fn list(api: &Api) -> Result<Vec<Seen>> {
    api.call(Method::GET, "/v1/agents?all=true", None)
        .await?
        .parse(StatusCode::OK, "GET /v1/agents")
}

/// Waits until all `n` agents have ended and been read to their end.
async fn wait_settled(
    api: &Api,
    n: usize,
    adapter: AdapterKind,
    limit: Duration,
) -> Result<Vec<Seen>> {
    let deadline = Instant::now() + limit;
    loop {
        let seen = list(api).await?;
        let settled = seen.iter().filter(|agent| agent.settled(adapter)).count();
        if seen.len() == n && settled == n {
            return Ok(seen);
        }
        if Instant::now() > deadline || cleanup::interrupted() {
            bail!("only {settled} of {n} agents had ended and been read after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Phase A, once: one agent printing `--stream-bytes-per-second` with
/// `adapter`, in a fresh home.
async fn stream_run(
    args: &Args,
    binary: &Path,
    tag: &cleanup::Tag,
    adapter: AdapterKind,
    run: usize,
    tick: Duration,
    machine: &mut Machine,
) -> Result<StreamRun> {
    let home = crate::home_for(&args.home_base, 1, &format!("s{adapter}{run}"));
    let wrangle = Wrangle::new(binary, home, tag)?;
    let (api, daemon, info) = crate::start_daemon_with(&wrangle, &daemon_options(args)).await?;
    machine.containment = info.containment.clone();

    // The same size of session id as the agent's, for the same mean.
    let script = Script::new(args.line_bytes, emit::session_id());
    let rate = args.stream_bytes_per_second as f64 / script.mean_line_bytes();
    let window = whole_ticks(args.stream_seconds, tick);
    // The first tick opens the new run and reads what it printed since
    // its start; the window opens after a second, steady one.
    let warmup = tick * 2 + Duration::from_millis(200);
    // The agent goes on two ticks past the window, so that it still
    // prints at the window's end.
    let printing = warmup + window + tick * 2;
    let lines = (rate * printing.as_secs_f64()).ceil() as u64;
    let request = CreateAgent {
        name: Some("stream".into()),
        command: emitter_argv(lines, rate, args.line_bytes)?,
        inherit_env: Some(crate::agent_environment(tag)),
        cwd: Some("/tmp".into()),
        options: options_with(adapter),
        ..CreateAgent::default()
    };
    let body = serde_json::to_value(&request)?;
    let created: Seen = api
        .call(Method::POST, "/v1/agents", Some(&body))
        .await?
        .parse(StatusCode::CREATED, "POST /v1/agents")?;
    let started = Instant::now();
    register_cgroup(&created);
    if created.state != State::Running {
        bail!(
            "the agent is {}: {}",
            created.state,
            created.reason.unwrap_or_default()
        );
    }
    tokio::time::sleep(warmup.saturating_sub(started.elapsed())).await;
    let measured = measure_window(daemon, window)?;
    let now: Seen = api
        .call(Method::GET, "/v1/agents/stream", None)
        .await?
        .parse(StatusCode::OK, "GET /v1/agents/stream")?;
    if now.state != State::Running {
        bail!(
            "the agent had stopped printing before the window's end ({})",
            now.state
        );
    }
    let behind = match (&now.session, now.started_at) {
        (Some(session), Some(since)) => {
            let elapsed = (chrono::Utc::now() - since).num_microseconds().unwrap_or(0) as f64 / 1e6;
            let written = ((elapsed * rate).floor() + 1.0).min(lines as f64);
            Some(((written - session.lines as f64) / rate).max(0.0))
        }
        _ => None,
    };
    let left = printing.saturating_sub(started.elapsed()) + Duration::from_secs(60);
    let ended = wait_settled(&api, 1, adapter, left).await?;
    let agent = &ended[0];
    let bytes = std::fs::metadata(&agent.stdout_log)
        .with_context(|| format!("cannot read the size of {}", agent.stdout_log))?
        .len();
    let check = agent.check(adapter, &Script::expected(lines));
    wrangle.stop_daemon(daemon)?;
    Ok(StreamRun {
        adapter,
        window: measured,
        bytes,
        lines,
        runtime: agent.runtime_seconds.unwrap_or(0.0),
        behind,
        check,
    })
}

/// Phase B, once: `--fleet-agents` agents printing a line a second with
/// `adapter`, in a fresh home.
async fn fleet_run(
    args: &Args,
    binary: &Path,
    tag: &cleanup::Tag,
    adapter: AdapterKind,
    run: usize,
    tick: Duration,
) -> Result<FleetRun> {
    let n = args.fleet_agents;
    let home = crate::home_for(&args.home_base, n, &format!("f{adapter}{run}"));
    let wrangle = Wrangle::new(binary, home, tag)?;
    let (api, daemon, _) = crate::start_daemon_with(&wrangle, &daemon_options(args)).await?;
    let window = whole_ticks(args.fleet_seconds, tick);
    // Each agent prints for the start of all (about a second per 1000),
    // the wait until all are sampled (a tick or two), the window, and a
    // margin: 30 s more than the window.
    let lines = (window + Duration::from_secs(30) + tick * 4).as_secs();
    let argv = emitter_argv(lines, 1.0, args.line_bytes)?;
    let env = crate::agent_environment(tag);
    let options = options_with(adapter);
    let started = start::start_via_api(ApiStart {
        wrangle: &wrangle,
        daemon,
        api: &api,
        n,
        connections: args.connections,
        argv: &argv,
        env: &env,
        options: &options,
        program: EMITTER_COMM,
    })
    .await?;
    let since_start = Instant::now();
    crate::wait_sampled(&wrangle, n)?;
    let measured = measure_window(daemon, window)?;
    let running = list(&api)
        .await?
        .iter()
        .filter(|agent| agent.state == State::Running)
        .count();
    if running != n {
        bail!(
            "only {running} of {n} agents still printed at the window's end ({:.0} s after the start): the start or the wait took too long",
            since_start.elapsed().as_secs_f64()
        );
    }
    let left =
        Duration::from_secs(lines).saturating_sub(since_start.elapsed()) + Duration::from_secs(120);
    let ended = wait_settled(&api, n, adapter, left).await?;
    let expected = Script::expected(lines);
    let failures: Vec<String> = ended
        .iter()
        .filter_map(|agent| agent.check(adapter, &expected).err())
        .collect();
    let check = match failures.first() {
        None => ended[0]
            .check(adapter, &expected)
            .map(|agreed| format!("every agent: {agreed}")),
        Some(first) => Err(format!(
            "{} of {n} agents differ, e.g. {first}",
            failures.len()
        )),
    };
    wrangle.stop_daemon(daemon)?;
    Ok(FleetRun {
        adapter,
        n,
        start: started.all_running,
        window: measured,
        lines,
        check,
    })
}

/// A check as a table cell.
fn check_cell(check: &Check) -> String {
    match check {
        Ok(agreed) => agreed.clone(),
        Err(differs) => format!("**FAILED**: {differs}"),
    }
}

/// The window as table cells: daemon CPU, sampler thread, machine busy,
/// daemon RSS.
fn window_cells(window: &Window) -> String {
    format!(
        "{:.2}% over {:.0} s | {:.2}% | {:.0}% | {:.1} MiB",
        window.daemon_cpu,
        window.seconds,
        window.sampler_cpu,
        window.machine_busy,
        window.daemon_rss_kib as f64 / 1024.0
    )
}

/// The `--sessions` report.
pub fn markdown(machine: &Machine, binary: &str, figures: &Figures, left_behind: usize) -> String {
    let mut out = crate::report::header("wrangle sessions benchmark", machine, binary);
    let _ = writeln!(
        out,
        "- sampler tick: {}{}",
        time(figures.tick),
        if figures.default_tick {
            " (the daemon's default)"
        } else {
            " (`--sample-interval`)"
        }
    );
    let _ = writeln!(
        out,
        "- agents: `wrangle-bench __emit`, Claude Code stream-json lines (about {} bytes on average: assistant text, its tool_use, the user's tool_result, a new message id and usage every third line; an init line first and a result last), written a batch per wake-up, every 10 ms at most",
        figures.line_bytes
    );
    let _ = writeln!(out, "- daemon CPU: utime + stime of all its threads (`/proc/PID/stat`) over a window of whole ticks, in % of one core; the sampler thread's part from `/proc/PID/task`");
    let _ = writeln!(
        out,
        "- processes left behind after the benchmark: {left_behind}\n"
    );

    let _ = writeln!(
        out,
        "### A: one agent printing stream-json at {:.1} MB/s\n",
        figures.stream_rate as f64 / 1e6
    );
    let _ = writeln!(out, "| adapter | printed | daemon CPU | sampler thread | machine busy | daemon RSS | adapter behind the writer at the window's end | session at the end |\n|---|---|---|---|---|---|---|---|");
    for run in &figures.stream {
        let _ = writeln!(
            out,
            "| {} | {:.1} MB, {} lines of {:.0} bytes in {:.1} s ({:.2} MB/s) | {} | {} | {} |",
            run.adapter,
            run.bytes as f64 / 1e6,
            group(run.lines),
            run.bytes as f64 / run.lines.max(1) as f64,
            run.runtime,
            run.bytes as f64 / 1e6 / run.runtime.max(1e-9),
            window_cells(&run.window),
            run.behind.map_or("–".into(), |s| format!("{s:.2} s")),
            check_cell(&run.check)
        );
    }
    let (claude, none) = (
        figures.stream_cpu(AdapterKind::Claude),
        figures.stream_cpu(AdapterKind::None),
    );
    let _ = writeln!(
        out,
        "| **parsing: claude − none** | | **{:.2}%** of a core (medians) | | | | | |\n",
        claude - none
    );

    if !figures.fleet.is_empty() {
        let n = figures.fleet[0].n;
        let _ = writeln!(out, "### B: {n} agents printing a line a second\n");
        let _ = writeln!(out, "| adapter | start, until all running | lines each | daemon CPU | sampler thread | machine busy | daemon RSS | sessions at the end |\n|---|---|---|---|---|---|---|---|");
        for run in &figures.fleet {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                run.adapter,
                time(run.start),
                run.lines,
                window_cells(&run.window),
                check_cell(&run.check)
            );
        }
        let (claude, none) = (
            figures.fleet_cpu(AdapterKind::Claude),
            figures.fleet_cpu(AdapterKind::None),
        );
        let _ = writeln!(
            out,
            "| **claude − none** | | | **{:.2}%** of a core (medians) | | | | |\n",
            claude - none
        );
    }

    let _ = writeln!(
        out,
        "### Targets (issue 12)\n\n| target | measured | verdict |\n|---|---|---|"
    );
    let parsing = claude - none;
    let valid = figures.stream.iter().all(|run| run.check.is_ok());
    let _ = writeln!(
        out,
        "| an agent printing stream-json at {:.0} MB/s costs the daemon at most {STREAM_TARGET:.0}% of a core for parsing | {parsing:.2}% (claude {claude:.2}% − none {none:.2}%) | {} |",
        figures.stream_rate as f64 / 1e6,
        if valid {
            verdict(parsing <= STREAM_TARGET, format!("{:.1}x the target", parsing / STREAM_TARGET))
        } else {
            "**NOT VALID** (a session check failed)".into()
        }
    );
    if !figures.fleet.is_empty() {
        let n = figures.fleet[0].n;
        let (claude, none) = (
            figures.fleet_cpu(AdapterKind::Claude),
            figures.fleet_cpu(AdapterKind::None),
        );
        let valid = figures.fleet.iter().all(|run| run.check.is_ok());
        let _ = writeln!(
            out,
            "| {n} agents each printing a line a second cost the daemon at most {FLEET_TARGET:.0}% of a core | {claude:.2}% with claude (none {none:.2}%, difference {:.2}%) | {} |",
            claude - none,
            if valid {
                verdict(claude <= FLEET_TARGET, format!("{:.1}x the target", claude / FLEET_TARGET))
            } else {
                "**NOT VALID** (a session check failed)".into()
            }
        );
    }
    out
}
