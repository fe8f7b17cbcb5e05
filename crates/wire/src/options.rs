//! The options of a run, described once: the same struct is the JSON of
//! `POST /v1/agents` (flattened into [`CreateAgent`](crate::CreateAgent)),
//! the keys of an agent in `wrangle.toml`, and, with the `clap` feature,
//! the flags of `wrangle run`. A new option is one field here, with its
//! doc (the help of the flag and of the API), its check (the same parser
//! on both sides) and its meaning in the engine.
//!
//! Values are kept as the user typed them: the daemon parses them again,
//! so a request carries exactly what was written and is refused with the
//! same message wherever it was made.

use serde::{Deserialize, Serialize};

#[cfg(feature = "clap")]
pub mod cli;

/// How an agent runs: stop, health, restarts, limits, its session and its
/// budget. Every option is optional; the daemon fills in the defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct RunOptions {
    /// Signal that starts the staged stop [default: SIGTERM]
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "SIGNAL", value_parser = cli::signal))]
    pub stop_signal: Option<String>,

    /// Grace period after the stop signal, e.g. 500ms, 10s, 2m [default: 10s]
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "DURATION", value_parser = cli::duration))]
    pub stop_timeout: Option<String>,

    /// Memory limit of the agent's whole tree, e.g. 512K, 64M, 1.5G; going
    /// over it ends the agent failed (memory limit exceeded)
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "SIZE", value_parser = cli::memory_max, allow_hyphen_values = true))]
    pub memory_max: Option<String>,

    /// CPU limit of the agent's whole tree in cores, e.g. 0.5 or 2
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "CORES", value_parser = cli::cpu_max, allow_hyphen_values = true))]
    pub cpu_max: Option<String>,

    /// Most processes (threads included) the agent's tree may hold at once
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "N", value_parser = cli::pids_max, allow_hyphen_values = true))]
    pub pids_max: Option<u64>,

    /// Most open files per process of the agent (RLIMIT_NOFILE)
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "N", value_parser = cli::nofile, allow_hyphen_values = true))]
    pub nofile: Option<u64>,

    /// Size at which each output stream's log is rotated, e.g. 10M, 1G
    /// [default: 20M]
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "SIZE", value_parser = cli::log_max_size, help_heading = "Logs"))]
    pub log_max_size: Option<String>,

    /// Log files kept per output stream, the current one included; the
    /// oldest goes at each rotation [default: 5]
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "N", value_parser = cli::log_max_files, help_heading = "Logs"))]
    pub log_max_files: Option<u32>,

    /// Call the agent hung after this long without output, a write to its
    /// status file, or anything its session explains (a running tool, an
    /// API retry, a rate limit), e.g. 5m [default: never]
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "DURATION", value_parser = cli::idle_timeout))]
    pub idle_timeout: Option<String>,

    /// What to do when the agent is hung (needs --idle-timeout): none, stop
    /// (the run ends failed) or restart [default: none]
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "ACTION", value_parser = cli::on_hang, requires = "idle_timeout"))]
    pub on_hang: Option<String>,

    /// What reads the agent's output into its session (tokens, cost,
    /// waiting, result): auto (by the program and its output flag), claude,
    /// codex, gemini, opencode, jsonl or none [default: auto]
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "ADAPTER", value_parser = cli::adapter))]
    pub adapter: Option<String>,

    /// How long an agent may go on after its final result before it is
    /// stopped (cause lingered), e.g. 30s, or never [default: 30s; never
    /// for a session that takes its prompts on stdin]
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "DURATION", value_parser = cli::linger))]
    pub linger: Option<String>,

    /// Receive the agent's own OpenTelemetry (each model call's tokens and
    /// cost as it happens): auto (for Claude Code, Codex and Gemini CLI),
    /// on or off [default: auto]
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "WHEN", value_parser = cli::telemetry))]
    pub telemetry: Option<String>,

    /// Stop the agent (cause budget) once its session has cost this many
    /// US dollars, e.g. 0.50
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "USD", value_parser = cli::budget_usd, help_heading = "Budget"))]
    pub budget_usd: Option<f64>,

    /// Stop the agent (cause budget) once its session has used this many
    /// tokens (input, output and cache together)
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "N", value_parser = cli::budget_tokens, help_heading = "Budget"))]
    pub budget_tokens: Option<u64>,

    /// Start the agent again when it ends: never, on-failure (non-zero exit,
    /// fatal signal, timeout) or always [default: never]
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "POLICY", value_parser = cli::restart_policy))]
    pub restart: Option<String>,

    /// Most restarts within the restart window; one more end and the agent
    /// is failed as crash-looping [default: 5]
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "N"))]
    pub max_restarts: Option<u32>,

    /// The window restarts are counted in [default: 60s]
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "DURATION", value_parser = cli::duration))]
    pub restart_window: Option<String>,

    /// First delay before a restart; it doubles with each one [default: 1s]
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "DURATION", value_parser = cli::duration))]
    pub backoff_initial: Option<String>,

    /// Longest delay before a restart [default: 60s]
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "DURATION", value_parser = cli::duration))]
    pub backoff_max: Option<String>,

    /// A run that ends sooner counts as a failed start [default: 1s]
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "DURATION", value_parser = cli::duration))]
    pub min_uptime: Option<String>,

    /// Wall-clock limit of each run: then the staged stop runs and the run
    /// ends failed with reason timeout
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "DURATION", value_parser = cli::duration))]
    pub timeout: Option<String>,

    /// A shell command (sh -c, in the agent's directory and environment);
    /// healthy when it exits 0
    #[serde(default)]
    #[cfg_attr(
        feature = "clap",
        arg(
            long,
            value_name = "CMD",
            group = "probe",
            help_heading = "Health probe"
        )
    )]
    pub health_cmd: Option<String>,

    /// An http:// URL; healthy when it answers 2xx or 3xx
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "URL", group = "probe", value_parser = cli::http_url, help_heading = "Health probe"))]
    pub health_http: Option<String>,

    /// HOST:PORT; healthy when it accepts a TCP connection
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "HOST:PORT", group = "probe", value_parser = cli::host_port, help_heading = "Health probe"))]
    pub health_tcp: Option<String>,

    /// Time between probes, e.g. 500ms, 10s [default: 10s]
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "DURATION", requires = "probe", value_parser = cli::positive_duration, help_heading = "Health probe"))]
    pub health_interval: Option<String>,

    /// Time a probe may take before it counts as failed [default: 5s]
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "DURATION", requires = "probe", value_parser = cli::positive_duration, help_heading = "Health probe"))]
    pub health_timeout: Option<String>,

    /// Failed probes in a row that make the agent unhealthy [default: 3]
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "N", requires = "probe", value_parser = cli::retries, help_heading = "Health probe"))]
    pub health_retries: Option<u32>,

    /// Concurrency group: its limit (wrangle group set) caps how many of
    /// its agents run at once, the others wait queued; its budget caps
    /// what they spend together
    #[serde(default)]
    #[cfg_attr(feature = "clap", arg(long, value_name = "GROUP", value_parser = cli::name))]
    pub group: Option<String>,

    /// Queued agents start highest priority first, then in order [default: 0]
    #[serde(default)]
    #[cfg_attr(
        feature = "clap",
        arg(long, value_name = "N", allow_hyphen_values = true)
    )]
    pub priority: Option<i32>,
}
