//! Starting N agents: over the API with a few parallel keep-alive
//! connections, or with a shell-style loop of `wrangle run`; timed until
//! `wrangle ps --json` shows all of them `running`, with their processes
//! checked in `/proc` and the CPU the start cost.

use crate::cleanup;
use crate::client::{json_body, Api};
use crate::procinfo::{self, ProcessId};
use crate::wrangle::Wrangle;
use anyhow::{anyhow, bail, Context, Result};
use hyper::{Method, StatusCode};
use std::collections::{BTreeMap, HashSet};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wrangle_wire::{CreateAgent, RunOptions, State};

/// How long any one phase may take before the benchmark gives up.
pub const PHASE_TIMEOUT: Duration = Duration::from_secs(300);

/// The processes of a started fleet, by pid and start time.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// The agents' main processes.
    pub agents: Vec<ProcessId>,
    /// Their shims.
    pub shims: Vec<ProcessId>,
}

/// How a start of N agents went.
#[derive(Debug, Clone)]
pub struct Start {
    /// Until the last create request (or `wrangle run`) had answered.
    pub answered: Duration,
    /// Until `wrangle ps --json` showed all N `running`.
    pub all_running: Duration,
    /// The processes, checked in `/proc` to be `sleep` processes.
    pub fleet: Fleet,
    /// Where the CPU went meanwhile.
    pub cpu: StartCpu,
}

/// CPU used during a start, in seconds of one core.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartCpu {
    /// Busy share of all the machine's cores, in %.
    pub machine_busy: f64,
    /// The daemon, all threads, and its shim zygote (which forks every
    /// shim).
    pub daemon: f64,
    /// All shims, over their whole life so far (almost all of it is the
    /// start: exec of wrangle, setup, spawn of the agent).
    pub shims: f64,
    /// All agents, over their whole life so far (fork child + exec of
    /// `sleep`).
    pub agents: f64,
}

/// The counters a [`StartCpu`] is the difference of: taken just before a
/// start, and turned into the start's CPU once its fleet is known.
pub struct CpuMark {
    machine: (u64, u64),
    daemon: u64,
    /// The zygote's CPU in ns; it starts with the first run, so it is
    /// usually 0 here.
    zygote: u64,
}

impl CpuMark {
    /// The counters now, for the daemon `daemon` (and its zygote).
    pub fn now(daemon: ProcessId) -> CpuMark {
        CpuMark {
            machine: procinfo::machine_ticks().unwrap_or_default(),
            daemon: procinfo::cpu_ticks(daemon.pid).unwrap_or_default(),
            zygote: procinfo::zygote_of(daemon.pid)
                .and_then(procinfo::main_thread_cpu_ns)
                .unwrap_or_default(),
        }
    }

    /// The CPU used since this mark by the daemon (and its zygote), and
    /// over their whole lives by the fleet's shims and agents.
    pub fn since(&self, daemon: ProcessId, fleet: &Fleet) -> StartCpu {
        let now = CpuMark::now(daemon);
        let hz = procinfo::ticks_per_second() as f64;
        let busy = now.machine.0.saturating_sub(self.machine.0) as f64;
        let total = now.machine.1.saturating_sub(self.machine.1).max(1) as f64;
        StartCpu {
            machine_busy: busy / total * 100.0,
            daemon: now.daemon.saturating_sub(self.daemon) as f64 / hz
                + now.zygote.saturating_sub(self.zygote) as f64 / 1e9,
            shims: procinfo::cpu_ns_of(&fleet.shims) as f64 / 1e9,
            agents: procinfo::cpu_ns_of(&fleet.agents) as f64 / 1e9,
        }
    }
}

/// What the load generator reads of a create's answer: as little as
/// tells whether the agent runs, so that its own CPU (on the same cores as
/// the daemon) stays small.
#[derive(Debug, serde::Deserialize)]
struct Created {
    name: String,
    state: State,
    reason: Option<String>,
}

/// What the start reads of each agent in `ps --json`.
#[derive(Debug, serde::Deserialize)]
struct Listed {
    name: String,
    state: State,
    reason: Option<String>,
    pid: Option<i32>,
    shim_pid: Option<i32>,
    containment: Option<String>,
}

/// The name of the `index`th agent (the same on every path: the API, the
/// loop of `wrangle run` and the `wrangle.toml` of `up`).
pub fn agent_name(index: usize) -> String {
    format!("bench-{index}")
}

/// Polls `wrangle ps --json` until every agent in `names` is `running`;
/// returns when it saw that, and the agents' processes, checked in `/proc`
/// afterwards (so that the check is not timed as part of the start) to
/// be `program`.
pub fn wait_all_running(
    wrangle: &Wrangle,
    names: &HashSet<String>,
    program: &str,
) -> Result<(Instant, Fleet)> {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let agents: Vec<Listed> = wrangle
            .ps_as::<Listed>()?
            .into_iter()
            .filter(|agent| names.contains(&agent.name))
            .collect();
        let running = agents
            .iter()
            .filter(|agent| agent.state == State::Running)
            .count();
        if running == names.len() {
            let seen = Instant::now();
            return Ok((seen, fleet_of(&agents, program)?));
        }
        if let Some(failed) = agents.iter().find(|agent| agent.state.is_ended()) {
            bail!(
                "agent {} is {}: {}",
                failed.name,
                failed.state,
                failed.reason.as_deref().unwrap_or("no reason given")
            );
        }
        if Instant::now() > deadline || cleanup::interrupted() {
            bail!("only {running} of {} agents are running", names.len());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The processes of `agents`, checked in `/proc`: each main process must be
/// a live `program` (its `comm`). Registers their cgroups for cleanup.
fn fleet_of(agents: &[Listed], program: &str) -> Result<Fleet> {
    cleanup::register_cgroups(agents.iter().filter_map(|agent| {
        let path = agent.containment.as_deref()?.strip_prefix("cgroup ")?;
        Some(path.into())
    }));
    let mut fleet = Fleet::default();
    for agent in agents {
        let pid = agent
            .pid
            .ok_or_else(|| anyhow!("agent {} has no pid", agent.name))?;
        let process = ProcessId::of(pid)
            .ok_or_else(|| anyhow!("agent {} (pid {pid}) is not in /proc", agent.name))?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() != program {
            bail!(
                "pid {pid} of agent {} is {:?}, not {program}",
                agent.name,
                comm.trim()
            );
        }
        fleet.agents.push(process);
        if let Some(shim) = agent.shim_pid.and_then(ProcessId::of) {
            fleet.shims.push(shim);
        }
    }
    Ok(fleet)
}

/// A start over the API: what it starts, and through which daemon.
#[derive(Clone, Copy)]
pub struct ApiStart<'a> {
    /// The home and its CLI.
    pub wrangle: &'a Wrangle,
    /// Its daemon, whose CPU is measured.
    pub daemon: ProcessId,
    /// Its API.
    pub api: &'a Api,
    /// How many agents.
    pub n: usize,
    /// Parallel keep-alive connections.
    pub connections: usize,
    /// The agents' argv.
    pub argv: &'a [String],
    /// Their base environment.
    pub env: &'a BTreeMap<String, String>,
    /// Their run options (the adapter, ...).
    pub options: &'a RunOptions,
    /// What `/proc/PID/comm` of each agent must say once it runs (the
    /// argv's program, cut to 15 bytes as the kernel does).
    pub program: &'a str,
}

/// Starts `n` agents running `argv` over the API: `connections` keep-alive
/// connections, each sending `POST /v1/agents` one after another until all
/// `n` are asked for. Each request carries `env` as the base environment,
/// as `wrangle run` sends the caller's.
pub async fn start_via_api(how: ApiStart<'_>) -> Result<Start> {
    let ApiStart {
        wrangle,
        daemon,
        api,
        n,
        connections,
        argv,
        env,
        options,
        program,
    } = how;
    let bodies: Vec<_> = (0..n)
        .map(|index| {
            let request = CreateAgent {
                name: Some(agent_name(index)),
                command: argv.to_vec(),
                inherit_env: Some(env.clone()),
                cwd: Some("/tmp".into()),
                options: options.clone(),
                ..CreateAgent::default()
            };
            json_body(&serde_json::to_value(request)?)
        })
        .collect::<Result<_>>()?;
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));

    let mark = CpuMark::now(daemon);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections.max(1) {
        let (api, bodies, next) = (api.clone(), bodies.clone(), next.clone());
        tasks.spawn(async move {
            let mut connection = api.connect().await?;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= bodies.len() || cleanup::interrupted() {
                    return Ok::<_, anyhow::Error>(());
                }
                let answer = connection
                    .send(Method::POST, "/v1/agents", Some(bodies[index].clone()))
                    .await?;
                let view: Created = answer.parse(StatusCode::CREATED, "POST /v1/agents")?;
                if view.state != State::Running {
                    bail!(
                        "agent {} is {}: {}",
                        view.name,
                        view.state,
                        view.reason.unwrap_or_default()
                    );
                }
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a client task panicked")??;
    }
    let answered = started.elapsed();
    let names = (0..n).map(agent_name).collect();
    let (seen, fleet) = wait_all_running(wrangle, &names, program)?;
    let all_running = seen - started;
    Ok(Start {
        answered,
        all_running,
        cpu: mark.since(daemon, &fleet),
        fleet,
    })
}

/// Starts `n` agents with a shell-style loop: one `wrangle run --name NAME
/// -- ARGV...` process after another.
pub fn start_via_cli(
    wrangle: &Wrangle,
    daemon: ProcessId,
    n: usize,
    argv: &[String],
) -> Result<Start> {
    let mark = CpuMark::now(daemon);
    let started = Instant::now();
    for index in 0..n {
        if cleanup::interrupted() {
            bail!("interrupted");
        }
        let status = wrangle
            .command(["run", "--name", &agent_name(index), "--"])
            .args(argv)
            .stdout(Stdio::null())
            .status()
            .context("cannot run `wrangle run`")?;
        if !status.success() {
            bail!("`wrangle run` #{index} failed ({status})");
        }
    }
    let answered = started.elapsed();
    let names = (0..n).map(agent_name).collect();
    let (seen, fleet) = wait_all_running(wrangle, &names, "sleep")?;
    let all_running = seen - started;
    Ok(Start {
        answered,
        all_running,
        cpu: mark.since(daemon, &fleet),
        fleet,
    })
}
