//! `wrangle-bench`: wrangle against the floor of what one process can do,
//! for N agents (`sleep 3600`), in one run:
//!
//! 0. whether the machine can hold N at all (`kernel.pid_max`, open
//!    files...: see [`capacity`]), before anything starts;
//! 1. floor: posix_spawnp N, then SIGTERM + waitpid N (`--floor-runs`
//!    times, median);
//! 2. start N through a daemon in a fresh home, over the API (a few
//!    parallel keep-alive connections), until `ps --json` shows all
//!    running (`--start-runs` times, each in a fresh home, median; all but
//!    the last fleet are stopped at once, the last goes on to the phases
//!    below); the declarative path as a user runs it: `wrangle up` of a
//!    file of N, `up` again, `wrangle down` (`--up-runs` times, each in a
//!    fresh home, see [`declared`]); the floor runs, the start runs and
//!    the `up` runs take turns, so that a slow drift of the machine hits
//!    them alike, and only one fleet runs at a time; and, once, a loop of
//!    `wrangle run` of `--cli-loop` agents (100);
//! 3. `wrangle ps --json`, `GET /v1/agents`, `wrangle summary --json`
//!    and `GET /metrics` with N running;
//! 4. the daemon's (and the shims') idle CPU and memory, with the sampler
//!    on at its default tick (2 s);
//! 5. stop all until `/proc` shows none left;
//! 6. start N over the API while `--subscribers` processes of `wrangle
//!    events --json` follow the event stream (taking turns with the floor
//!    and the plain starts; for N up to `--subscribers-max`): how fast
//!    every one of them has every event of the start, none lost, none
//!    twice.
//!
//! The report judges each figure against its target (see [`targets`]).
//!
//! With `--sessions` it measures instead what reading agents' output
//! costs the daemon (see [`sessions`]): one agent printing Claude
//! stream-json at 10 MB/s, and 1000 agents printing a line a second, each
//! with `--adapter claude` and with `--adapter none`. The agents are this
//! binary itself, run as `wrangle-bench __emit` (see [`emit`]).
//!
//! With `--telemetry` it measures what receiving agents' OpenTelemetry
//! costs the daemon and how soon a record shows in `inspect` (see
//! [`telemetry`]): 1000 agents each posting a Claude Code
//! `claude_code.api_request` record a second. The agents are this binary
//! again, run through a symlink named `claude` (see [`export`]).
//!
//! Run it with `cargo run --release -p wrangle-bench -- --agents 100,1000`
//! (see BENCHMARKS.md).

mod capacity;
mod cleanup;
mod client;
mod declared;
mod emit;
mod events;
mod export;
mod floor;
mod measure;
mod otlp;
mod procinfo;
mod python;
mod report;
mod sessions;
mod start;
mod stats;
mod targets;
mod telemetry;
mod wrangle;

use anyhow::{bail, Context, Result};
use clap::Parser;
use cleanup::Tag;
use client::Api;
use hyper::{Method, StatusCode};
use procinfo::{Machine, ProcessId};
use report::{Figures, StartRun};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use wrangle::Wrangle;
use wrangle_wire::{DaemonInfo, RunOptions};

/// Benchmark wrangle against posix_spawn/kill/waitpid from one process.
#[derive(Debug, Parser)]
#[command(name = "wrangle-bench", version)]
struct Args {
    /// Fleet sizes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000])]
    agents: Vec<usize>,
    /// The wrangle binary; by default this workspace's, built first as
    /// `cargo install` builds it (static on glibc, see `.cargo/static.toml`)
    /// into target/<host triple>/release/wrangle.
    #[arg(long, value_name = "PATH")]
    wrangle: Option<PathBuf>,
    /// Do not run `cargo build --release -p wrangle --config
    /// .cargo/static.toml` first.
    #[arg(long)]
    no_build: bool,
    /// Parallel connections for the API start.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Agents the loop of `wrangle run` starts at each N (at most N; 0
    /// skips the loop).
    #[arg(long, default_value_t = 100)]
    cli_loop: usize,
    /// Rounds of the declarative path per N (`wrangle up` of a file of N,
    /// `up` again, `wrangle down`), each in a fresh home, taking turns
    /// with the floor runs (the medians are used; 0 skips it).
    #[arg(long, default_value_t = 3)]
    up_runs: usize,
    /// Runs of the floor per N (the median is used).
    #[arg(long, default_value_t = 3)]
    floor_runs: usize,
    /// Runs of the start over the API per N, each with a fresh daemon in a
    /// fresh home (the median is used), taking turns with the floor runs.
    #[arg(long, default_value_t = 3)]
    start_runs: usize,
    /// Runs of each status call.
    #[arg(long, default_value_t = 20)]
    status_runs: usize,
    /// `wrangle events` processes that follow the stream during starts of
    /// their own, as many as `--start-runs` and taking turns with them (0
    /// to skip).
    #[arg(long, default_value_t = 10)]
    subscribers: usize,
    /// Follow the stream with `--subscribers` only for N up to this.
    #[arg(long, default_value_t = 1000)]
    subscribers_max: usize,
    /// Seconds to watch the idle daemon: a multiple of 30 s, so that the
    /// daemon's periodic work (each run's memory read again, the look at
    /// the logs' cap) is in the window as often as it comes.
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// Before each N, wait up to this many seconds for the machine to be
    /// quiet (under 10% busy over a second), so that other work does not
    /// disturb the figures; 0 to start at once.
    #[arg(long, default_value_t = 120)]
    quiet_wait: u64,
    /// Directory to make the homes in (a short path: the socket path must
    /// fit in 107 bytes). The homes hold the store and the logs, so the
    /// file system under it matters.
    #[arg(long, value_name = "DIR", default_value = "/tmp")]
    home_base: PathBuf,
    /// Also write the Markdown report to this file.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Measure only what reading agents' output costs the daemon (phase A:
    /// one agent printing Claude stream-json at `--stream-bytes-per-second`;
    /// phase B: `--fleet-agents` agents printing a line a second), each
    /// with `--adapter claude` and `--adapter none`, instead of the fleet
    /// benchmark.
    #[arg(long)]
    sessions: bool,
    /// Phase A: bytes per second the one agent prints.
    #[arg(long, default_value_t = 10_000_000)]
    stream_bytes_per_second: u64,
    /// Phase A: seconds the daemon's CPU is measured over (rounded up to
    /// whole sampler ticks).
    #[arg(long, default_value_t = 16)]
    stream_seconds: u64,
    /// Phase B: how many agents print a line a second (0 skips phase B).
    #[arg(long, default_value_t = 1000)]
    fleet_agents: usize,
    /// Phase B: seconds the daemon's CPU is measured over (rounded up to
    /// whole sampler ticks).
    #[arg(long, default_value_t = 60)]
    fleet_seconds: u64,
    /// Mean size of the agents' lines in bytes.
    #[arg(long, default_value_t = 1500)]
    line_bytes: usize,
    /// Runs of each phase with each adapter (claude and none taking
    /// turns, each in a fresh home; the medians are used).
    #[arg(long, default_value_t = 1)]
    sessions_runs: usize,
    /// The daemons' sampler tick (`wrangle daemon --sample-interval`), e.g.
    /// 500ms; by default the daemon's own (2 s).
    #[arg(long, value_name = "DURATION")]
    sample_interval: Option<String>,
    /// Measure only what receiving agents' OpenTelemetry costs the daemon
    /// (`--telemetry-agents` agents each posting a Claude Code
    /// `api_request` record a second, and a baseline of the same fleet
    /// with `--telemetry off`) and how soon a record shows in `GET
    /// /v1/agents/{id}`, instead of the fleet benchmark.
    #[arg(long)]
    telemetry: bool,
    /// How many agents export a record a second.
    #[arg(long, default_value_t = 1000)]
    telemetry_agents: usize,
    /// Seconds the daemon's CPU is measured over (rounded up to whole
    /// sampler ticks); the latency samples are spread over them.
    #[arg(long, default_value_t = 60)]
    telemetry_seconds: u64,
    /// Records the benchmark posts itself (as one agent after another)
    /// and times until `GET /v1/agents/{id}` shows them.
    #[arg(long, default_value_t = 100)]
    latency_samples: usize,
    /// Skip the baseline fleet with `--telemetry off`.
    #[arg(long)]
    no_telemetry_baseline: bool,
    /// Also start N agents from Python with the client (python/bench/start.py,
    /// run by this Python, which needs httpx: e.g. .cache/python/bin/python),
    /// taking turns with as many starts over the API from Rust (see python.rs).
    #[arg(long, value_name = "PYTHON")]
    python: Option<PathBuf>,
}

/// The agents' command.
const AGENT_ARGV: [&str; 2] = ["sleep", "3600"];

fn main() -> ExitCode {
    // The agents of `--sessions` are this binary: it prints their lines
    // before anything else (no runtime, no cleanup thread) is set up.
    if std::env::args().nth(1).as_deref() == Some(emit::SUBCOMMAND) {
        return emit::main(std::env::args().skip(1));
    }
    // The agents of `--telemetry` are this binary too, run through a
    // symlink named `claude` (so that wrangle sets Claude Code's OTel
    // environment for them), or as `wrangle-bench __export` by hand.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if Path::new(&argv0).file_name() == Some(std::ffi::OsStr::new(export::PROGRAM)) {
        return export::main(std::env::args());
    }
    if std::env::args().nth(1).as_deref() == Some(export::SUBCOMMAND) {
        return export::main(std::env::args().skip(1));
    }
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("wrangle-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<ExitCode> {
    if args.agents.is_empty() || args.agents.contains(&0) {
        bail!("--agents needs one or more sizes above 0");
    }
    if args.floor_runs == 0 || args.start_runs == 0 || args.sessions_runs == 0 {
        bail!("--floor-runs, --start-runs and --sessions-runs need 1 or more");
    }
    if args.sessions && args.telemetry {
        bail!("--sessions and --telemetry are phases of their own: run one at a time");
    }
    // The largest fleet this run will start, checked before anything is
    // built or started.
    let largest = if args.sessions {
        args.fleet_agents.max(1)
    } else if args.telemetry {
        args.telemetry_agents
    } else {
        args.agents.iter().copied().max().unwrap_or(0)
    };
    let limits = capacity::Limits::read();
    limits.check(largest)?;
    let binary = wrangle::locate(args.wrangle.clone(), args.no_build)?;
    let tag = Tag::new();
    cleanup::init(&binary, &tag);
    let guard = cleanup::Guard;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut machine = Machine::describe();
    machine.home_filesystem = procinfo::filesystem_of(&args.home_base);
    machine.limits = limits.to_string();

    if args.sessions {
        let figures = runtime.block_on(sessions::bench(&args, &binary, &tag, &mut machine))?;
        drop(guard);
        let left = cleanup::leftovers();
        if !left.is_empty() {
            eprintln!("processes left behind: {left:?}");
        }
        let text = sessions::markdown(
            &machine,
            &binary.display().to_string(),
            &figures,
            left.len(),
        );
        return finish(&args, &text, left.is_empty());
    }

    if args.telemetry {
        let figures = runtime.block_on(telemetry::bench(&args, &binary, &tag, &mut machine))?;
        drop(guard);
        let left = cleanup::leftovers();
        if !left.is_empty() {
            eprintln!("processes left behind: {left:?}");
        }
        let text = telemetry::markdown(
            &machine,
            &binary.display().to_string(),
            &figures,
            left.len(),
        );
        return finish(&args, &text, left.is_empty());
    }

    let mut figures = Vec::new();
    let mut python_starts = Vec::new();
    for &n in &args.agents {
        figures.push(runtime.block_on(bench_one(&args, &binary, &tag, n, &mut machine))?);
        if let Some(python) = &args.python {
            python_starts.push(runtime.block_on(python::compare(
                &args,
                python,
                &binary,
                &tag,
                n,
                &mut machine,
            ))?);
        }
    }
    drop(guard);
    let left = cleanup::leftovers();
    if !left.is_empty() {
        eprintln!("processes left behind: {left:?}");
    }

    let mut text = report::markdown(
        &machine,
        &binary.display().to_string(),
        &figures,
        left.len(),
    );
    text.push_str(&python::markdown(&python_starts));
    finish(&args, &text, left.is_empty())
}

/// Prints the report (and writes it to `--markdown`); fails when
/// processes were left behind (`clean`: none were).
fn finish(args: &Args, text: &str, clean: bool) -> Result<ExitCode> {
    println!("{text}");
    if let Some(path) = &args.markdown {
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The environment the agents get: this process's, plus the tag.
fn agent_environment(tag: &Tag) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = std::env::vars().collect();
    env.insert(tag.key.clone(), tag.value.clone());
    env
}

/// The daemon's sampler tick (its default).
const SAMPLER_TICK: Duration = Duration::from_secs(2);

/// Waits until the sampler has looked at all `n` agents once (each shows
/// process metrics) and one more tick has passed: the idle window then
/// holds steady ticks, not the first look at N new runs (which opens
/// their files) right after the start.
fn wait_sampled(wrangle: &Wrangle, n: usize) -> Result<()> {
    let deadline = Instant::now() + start::PHASE_TIMEOUT;
    loop {
        let sampled = wrangle
            .ps()?
            .iter()
            .filter(|agent| agent.process.is_some())
            .count();
        if sampled >= n {
            break;
        }
        if Instant::now() > deadline || cleanup::interrupted() {
            bail!(
                "after {} s the sampler had seen only {sampled} of {n} agents",
                start::PHASE_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    std::thread::sleep(SAMPLER_TICK);
    Ok(())
}

/// Waits until the machine is under 10% busy over one second, or `limit`
/// has passed; returns the last busy share seen, in %.
fn wait_quiet(limit: Duration) -> f64 {
    let started = std::time::Instant::now();
    loop {
        let busy = procinfo::machine_busy_over(Duration::from_secs(1));
        if busy < 10.0 || started.elapsed() >= limit || cleanup::interrupted() {
            return busy;
        }
        eprintln!("waiting for a quiet machine ({busy:.0}% busy)");
    }
}

/// A fresh home under `base`, short enough for a socket path.
fn home_for(base: &Path, n: usize, phase: &str) -> PathBuf {
    base.join(format!("wb-{}-{n}{phase}", std::process::id()))
}

/// Starts a daemon in `wrangle`'s home and returns it by pid and start
/// time, with its description.
async fn start_daemon(wrangle: &Wrangle) -> Result<(Api, ProcessId, DaemonInfo)> {
    start_daemon_with(wrangle, &[]).await
}

/// Starts a daemon in `wrangle`'s home with `options` (`wrangle daemon
/// OPTIONS...`) and returns it by pid and start time, with its
/// description.
async fn start_daemon_with(
    wrangle: &Wrangle,
    options: &[String],
) -> Result<(Api, ProcessId, DaemonInfo)> {
    wrangle.start_daemon(options)?;
    let api = Api::new(&wrangle.socket());
    let value = api
        .call(Method::GET, "/v1/daemon", None)
        .await?
        .json(StatusCode::OK, "GET /v1/daemon")?;
    let info: DaemonInfo = serde_json::from_value(value)?;
    let daemon = ProcessId::of(info.pid)
        .with_context(|| format!("the daemon (pid {}) is not in /proc", info.pid))?;
    Ok((api, daemon, info))
}

/// A fleet started over the API in its own fresh home, with its daemon.
struct Started {
    wrangle: Wrangle,
    api: Api,
    daemon: ProcessId,
    start: start::Start,
}

/// Starts a daemon in a fresh home for phase `phase` and `n` agents in it
/// over the API.
async fn start_fleet(
    args: &Args,
    binary: &Path,
    tag: &Tag,
    n: usize,
    phase: &str,
    machine: &mut Machine,
) -> Result<Started> {
    let argv: Vec<String> = AGENT_ARGV.iter().map(|s| s.to_string()).collect();
    let env = agent_environment(tag);
    let wrangle = Wrangle::new(binary, home_for(&args.home_base, n, phase), tag)?;
    let (api, daemon, info) = start_daemon(&wrangle).await?;
    machine.containment = info.containment.clone();
    let start = start::start_via_api(start::ApiStart {
        wrangle: &wrangle,
        daemon,
        api: &api,
        n,
        connections: args.connections,
        argv: &argv,
        env: &env,
        options: &RunOptions::default(),
        program: AGENT_ARGV[0],
    })
    .await?;
    Ok(Started {
        wrangle,
        api,
        daemon,
        start,
    })
}

/// Every measurement for one N.
async fn bench_one(
    args: &Args,
    binary: &Path,
    tag: &Tag,
    n: usize,
    machine: &mut Machine,
) -> Result<Figures> {
    let argv: Vec<String> = AGENT_ARGV.iter().map(|s| s.to_string()).collect();
    let env = agent_environment(tag);
    let env_entries: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();

    let busy = wait_quiet(Duration::from_secs(args.quiet_wait));
    // Checked again now: what else runs may have taken pids since.
    let warnings = capacity::Limits::read().check(n)?;
    eprintln!("N = {n}: machine {busy:.0}% busy");
    let mut not_measured = Vec::new();
    let subscribers = if n <= args.subscribers_max {
        args.subscribers
    } else {
        if args.subscribers > 0 {
            not_measured.push(format!(
                "the start with {} `wrangle events` subscribers (N above --subscribers-max {})",
                args.subscribers, args.subscribers_max
            ));
        }
        0
    };
    // Floor, starts and `up` take turns (the extra runs of any come last),
    // so that a slow drift of the machine hits them alike. One fleet runs
    // at a time: the start over the API comes last in a round, and the
    // last one's fleet goes on to the phases after the rounds.
    let mut floor_runs = Vec::new();
    let mut api_start_runs = Vec::new();
    let mut events = Vec::new();
    let mut up_runs = Vec::new();
    let mut kept = None;
    let rounds = args.floor_runs.max(args.start_runs).max(args.up_runs);
    for round in 0..rounds {
        if round < args.floor_runs {
            eprintln!("N = {n}: floor, run {} of {}", round + 1, args.floor_runs);
            floor_runs.push(floor::measure(n, &argv, &env_entries)?);
            std::thread::sleep(Duration::from_millis(200));
        }
        if round < args.start_runs && subscribers > 0 {
            eprintln!(
                "N = {n}: start over the API with {subscribers} `wrangle events` subscribers, run {} of {}",
                round + 1,
                args.start_runs
            );
            let phase = format!("e{}", round + 1);
            let wrangle = Wrangle::new(binary, home_for(&args.home_base, n, &phase), tag)?;
            let (api, daemon, _) = start_daemon(&wrangle).await?;
            let how = start::ApiStart {
                wrangle: &wrangle,
                daemon,
                api: &api,
                n,
                connections: args.connections,
                argv: &argv,
                env: &env,
                options: &RunOptions::default(),
                program: AGENT_ARGV[0],
            };
            let delivery = events::start_with_subscribers(how, subscribers).await?;
            measure::stop_via_cli(&wrangle, &delivery.start.fleet)?;
            wrangle.stop_daemon(daemon)?;
            events.push(delivery);
            std::thread::sleep(Duration::from_millis(200));
        }
        if round < args.up_runs {
            eprintln!(
                "N = {n}: `wrangle up` of a file of {n}, `up` again, `wrangle down`, run {} of {}",
                round + 1,
                args.up_runs
            );
            let phase = format!("u{}", round + 1);
            let wrangle = Wrangle::new(binary, home_for(&args.home_base, n, &phase), tag)?;
            let (_, daemon, _) = start_daemon(&wrangle).await?;
            up_runs.push(declared::measure(
                &wrangle,
                daemon,
                n,
                &argv,
                AGENT_ARGV[0],
            )?);
            wrangle.stop_daemon(daemon)?;
            std::thread::sleep(Duration::from_millis(200));
        }
        if round < args.start_runs {
            eprintln!(
                "N = {n}: start over the API ({} connections), run {} of {}",
                args.connections,
                round + 1,
                args.start_runs
            );
            let phase = format!("a{}", round + 1);
            let started = start_fleet(args, binary, tag, n, &phase, machine).await?;
            api_start_runs.push(StartRun::of(&started.start));
            if round + 1 == args.start_runs {
                kept = Some(started);
            } else {
                // Its home stays until the end, as every home does (see
                // the stop all below).
                measure::stop_via_cli(&started.wrangle, &started.start.fleet)?;
                started.wrangle.stop_daemon(started.daemon)?;
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    if args.up_runs == 0 {
        not_measured.push("`wrangle up` and `wrangle down` (--up-runs 0)".into());
    }
    let Started {
        wrangle,
        api,
        daemon,
        start: api_start,
    } = kept.context("no start over the API was run")?;
    wait_sampled(&wrangle, n)?;
    eprintln!("N = {n}: idle for {} s", args.idle_seconds);
    let idle = measure::idle(
        daemon,
        &api_start.fleet.shims,
        Duration::from_secs(args.idle_seconds),
    )?;
    eprintln!("N = {n}: status calls");
    let ps_cli = measure::time_ps_cli(&wrangle, args.status_runs, n)?;
    let ps_api = measure::time_list_api(&api, args.status_runs, n).await?;
    // A binary from before `wrangle summary` (an A/B with --wrangle) has
    // no such figure.
    let summary_cli = measure::time_summary_cli(&wrangle, args.status_runs, n)
        .map_err(|error| eprintln!("note: summary not measured: {error:#}"))
        .ok();
    let metrics = measure::time_metrics_api(&api, args.status_runs, n)
        .await
        .map_err(|error| eprintln!("note: /metrics not measured: {error:#}"))
        .ok();
    eprintln!("N = {n}: SIGKILL the daemon, time the re-attach");
    let reattach = measure::reattach(&wrangle, daemon, &api_start.fleet)?;
    let daemon = reattach.daemon;
    eprintln!("N = {n}: stop all");
    let stop_cli = measure::stop_via_cli(&wrangle, &api_start.fleet)?;
    // The home stays until the end: deleting thousands of files now would
    // slow the next phase's file creation on some file systems (ext4
    // without a journal skips recently freed inodes).
    wrangle.stop_daemon(daemon)?;

    let loop_agents = args.cli_loop.min(n);
    let (cli_start, stop_api) = if loop_agents > 0 {
        eprintln!("N = {n}: start {loop_agents} with a loop of `wrangle run`");
        let wrangle = Wrangle::new(binary, home_for(&args.home_base, n, "b"), tag)?;
        let (api, daemon, _) = start_daemon(&wrangle).await?;
        let start = start::start_via_cli(&wrangle, daemon, loop_agents, &argv)?;
        let stop = measure::stop_via_api(&api, &start.fleet).await?;
        wrangle.stop_daemon(daemon)?;
        (Some(start), Some(stop))
    } else {
        not_measured.push("the loop of `wrangle run` (--cli-loop 0)".into());
        (None, None)
    };

    Ok(Figures {
        n,
        busy_before: busy,
        floor: floor_runs,
        api_start,
        api_start_runs,
        connections: args.connections,
        cli_start,
        up: up_runs,
        ps_cli,
        ps_api,
        summary_cli,
        metrics,
        events,
        idle,
        reattach,
        stop_cli,
        stop_api,
        not_measured,
        warnings,
    })
}
