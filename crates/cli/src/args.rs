//! The command line as clap types.
//!
//! Values the daemon would reject are checked here with the daemon's own
//! parsers, so a mistake fails before anything is sent and with the same
//! message. The text is kept as typed: the daemon parses it again, and the
//! request then carries exactly what the user wrote.

use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;
use wrangle_wire::options::cli::{self as checks, InvalidInput};
use wrangle_wire::{parse, RunOptions};

/// A process supervisor for fleets of long-running agents.
#[derive(Debug, Parser)]
#[command(
    name = "wrangle",
    bin_name = "wrangle",
    version,
    propagate_version = true
)]
pub struct Cli {
    /// Home of the daemon: its socket, store and logs
    /// [default: $XDG_STATE_HOME/wrangle, else ~/.local/state/wrangle]
    // An OsString, not a PathBuf: clap's path parser rejects the empty
    // value of an exported-but-empty WRANGLE_HOME, which means "default".
    #[arg(long, global = true, env = "WRANGLE_HOME", value_name = "DIR")]
    pub home: Option<OsString>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start an agent and print its id once its exec is confirmed
    Run(Box<RunArgs>),
    /// List agents
    Ps(PsArgs),
    /// Show everything about one agent
    Inspect(InspectArgs),
    /// Print an agent's output
    Logs(LogsArgs),
    /// List an agent's runs (each restart is a new run)
    Runs(RunsArgs),
    /// Say what wrangle found on this machine and what to do about problems
    Doctor(DoctorArgs),
    /// Show the fleet at a glance: counts, resource use, spend, top agents
    Summary(SummaryArgs),
    /// Show what agents' sessions spent (tokens and USD), by agent, group,
    /// model or day; removed agents included
    Cost(CostArgs),
    /// Show or set concurrency groups
    Group(GroupArgs),
    /// Start what a wrangle.toml declares: what is missing, what changed
    Up(UpArgs),
    /// Stop what a wrangle.toml declares
    Down(UpArgs),
    /// Stop agents with the staged stop and wait until they have ended
    Stop(StopArgs),
    /// Stop agents if they run, then start each again as a new run
    Restart(RestartArgs),
    /// Send a signal to an agent (SIGKILL to its whole tree by default)
    Kill(KillArgs),
    /// Remove agents and their logs
    Rm(RmArgs),
    /// Wait until agents have ended; exit with the last one's status
    Wait(WaitArgs),
    /// Print every change as it happens (follows until interrupted)
    Events(EventsArgs),
    /// Watch agents live in the terminal, like htop: sort, filter, logs, stop
    Top(TopArgs),
    /// Start the daemon (in the background unless --foreground), or stop it
    Daemon(DaemonArgs),
}

/// `wrangle run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Name of the agent (a-z, 0-9, '.', '_', '-'); one is made up when absent
    #[arg(long, value_parser = checks::name)]
    pub name: Option<String>,

    /// Set an environment variable on top of this shell's environment
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = env_pair)]
    pub env: Vec<(String, String)>,

    /// Working directory of the agent [default: the current directory]
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,

    /// How it runs: stop, health, restarts, limits, session, budget.
    #[command(flatten)]
    pub options: RunOptions,

    /// Print the agent as JSON instead of its id
    #[arg(long)]
    pub json: bool,

    /// The command to run and its arguments (put them after `--`)
    #[arg(
        value_name = "CMD",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

/// `wrangle ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show agents that have ended too
    #[arg(short, long)]
    pub all: bool,

    /// Print the agents as JSON
    #[arg(long)]
    pub json: bool,

    /// Only the agents that match, applied by the daemon: `state=running`
    /// (or several: `state=failed,backoff`), `group=G`, `label=K=V` or
    /// `label=K`; repeat to require all
    #[arg(short, long, value_name = "KEY=VALUE", value_parser = ps_filter)]
    pub filter: Vec<(String, String)>,

    /// At most this many agents (the oldest first)
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// A `ps --filter`: `state=...`, `group=...` or `label=...`.
fn ps_filter(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key @ ("state" | "group" | "label"), value)) if !value.is_empty() => {
            Ok((key.to_string(), value.to_string()))
        }
        _ => Err(format!(
            "invalid filter {text:?}: use state=STATE[,STATE...], group=GROUP or label=KEY[=VALUE]"
        )),
    }
}

/// `wrangle inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Id, name or unique id prefix of the agent
    #[arg(value_name = "AGENT", value_parser = agent_ref)]
    pub agent: String,

    /// Print the agent as JSON
    #[arg(long)]
    pub json: bool,
}

/// `wrangle logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Id, name or unique id prefix of the agent
    #[arg(value_name = "AGENT", value_parser = agent_ref)]
    pub agent: String,

    /// Keep printing new output until the agent ends
    #[arg(short, long)]
    pub follow: bool,

    /// Print only the last N lines
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,

    /// Print only the agent's standard output
    #[arg(long, conflicts_with = "stderr")]
    pub stdout: bool,

    /// Print only the agent's standard error
    #[arg(long)]
    pub stderr: bool,

    /// Start each line with the time it was captured (RFC 3339, UTC), and,
    /// where both streams are printed, the stream's name
    #[arg(short, long)]
    pub timestamps: bool,

    /// Start each line with the name of its stream (stdout or stderr)
    #[arg(long)]
    pub prefix: bool,

    /// Only lines captured since TIME (RFC 3339) or DURATION ago, e.g.
    /// 10m, 2h, 2026-12-06T10:00:00Z
    #[arg(long, value_name = "TIME|DURATION", value_parser = time_bound("--since"))]
    pub since: Option<String>,

    /// Only lines captured until TIME or DURATION ago (same forms); with
    /// --follow, stop once it has passed
    #[arg(long, value_name = "TIME|DURATION", value_parser = time_bound("--until"))]
    pub until: Option<String>,

    /// Print the output of run N (1 is the first) instead of the current run
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub run: Option<u32>,
}

/// `wrangle up` and `wrangle down`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The file that declares the agents
    #[arg(short, long, value_name = "FILE", default_value = "wrangle.toml")]
    pub file: PathBuf,
}

/// `wrangle doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the findings as JSON
    #[arg(long)]
    pub json: bool,
}

/// `wrangle summary`.
#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
}

/// `wrangle cost`.
#[derive(Debug, Args)]
pub struct CostArgs {
    /// Sum by agent, group, model or day (UTC) [default: agent]
    #[arg(long, value_name = "KEY", value_parser = cost_by)]
    pub by: Option<String>,

    /// Only what was spent from then on (to the hour): a time, a day
    /// (2026-12-06), today, or a duration ago (24h, 7d)
    #[arg(long, value_name = "WHEN", value_parser = cost_since)]
    pub since: Option<String>,

    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

/// `cost --by`.
fn cost_by(text: &str) -> Result<String, InvalidInput> {
    text.parse::<wrangle_wire::CostBy>()
        .map(|by| by.to_string())
        .map_err(InvalidInput)
}

/// `cost --since`: checked, kept as typed (the daemon's clock decides).
fn cost_since(text: &str) -> Result<String, InvalidInput> {
    wrangle_wire::cost::parse_cost_since(text, chrono::Utc::now())
        .map(|_| text.trim().to_owned())
        .map_err(InvalidInput)
}

/// `wrangle group`.
#[derive(Debug, Args)]
pub struct GroupArgs {
    /// What to do with groups.
    #[command(subcommand)]
    pub action: GroupAction,
}

/// Subcommands of `wrangle group`.
#[derive(Debug, Subcommand)]
pub enum GroupAction {
    /// List groups with their limits, running and queued agents
    Ls(GroupLsArgs),
    /// Set how many agents of a group may run at once
    Set(GroupSetArgs),
}

/// `wrangle group ls`.
#[derive(Debug, Args)]
pub struct GroupLsArgs {
    /// Print the groups as JSON
    #[arg(long)]
    pub json: bool,
}

/// `wrangle group set`.
#[derive(Debug, Args)]
pub struct GroupSetArgs {
    /// The group's name
    #[arg(value_name = "GROUP", value_parser = checks::name)]
    pub name: String,

    /// Most of its agents that run at once (at least 1), or none for no limit
    #[arg(long, value_name = "N|none", value_parser = max_running, required_unless_present = "budget_usd")]
    pub max_running: Option<MaxRunning>,

    /// Most US dollars its agents may spend together (removed ones too),
    /// or none for no budget; once spent, its running agents are stopped
    #[arg(long, value_name = "USD|none", value_parser = group_budget)]
    pub budget_usd: Option<GroupBudget>,
}

/// A group's budget, or none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupBudget(pub Option<f64>);

/// `group set --budget-usd`: dollars above 0, or `none`.
fn group_budget(text: &str) -> Result<GroupBudget, InvalidInput> {
    if text == "none" {
        return Ok(GroupBudget(None));
    }
    checks::budget_usd(text).map(|usd| GroupBudget(Some(usd)))
}

/// A limit on running agents, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxRunning(pub Option<u32>);

/// `--max-running`: a whole number of at least 1, or `none`.
fn max_running(text: &str) -> Result<MaxRunning, InvalidInput> {
    if text == "none" {
        return Ok(MaxRunning(None));
    }
    match text.parse::<u32>() {
        Ok(max) if max >= 1 => Ok(MaxRunning(Some(max))),
        _ => Err(InvalidInput(format!(
            "invalid limit {text:?}: give a whole number of agents, at least 1, or none"
        ))),
    }
}

/// `wrangle daemon --max-running`: a whole number of at least 1.
fn max_running_daemon(text: &str) -> Result<u32, InvalidInput> {
    match max_running(text)? {
        MaxRunning(Some(max)) => Ok(max),
        MaxRunning(None) => Err(InvalidInput(format!(
            "invalid limit {text:?}: give a whole number of agents, at least 1 (leave --max-running out for no limit)"
        ))),
    }
}

/// `wrangle restart`.
#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Ids, names or unique id prefixes of the agents
    #[arg(value_name = "AGENT", required = true, value_parser = agent_ref)]
    pub agents: Vec<String>,
}

/// `wrangle runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Id, name or unique id prefix of the agent
    #[arg(value_name = "AGENT", value_parser = agent_ref)]
    pub agent: String,

    /// Print the runs as JSON
    #[arg(long)]
    pub json: bool,
}

/// `wrangle stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Ids, names or unique id prefixes of the agents
    #[arg(
        value_name = "AGENT",
        value_parser = agent_ref,
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub agents: Vec<String>,

    /// Stop every agent that has not ended
    #[arg(long)]
    pub all: bool,

    /// Grace period instead of each agent's own stop timeout
    #[arg(short, long, value_name = "DURATION", value_parser = checks::duration)]
    pub timeout: Option<String>,
}

/// `wrangle kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Id, name or unique id prefix of the agent
    #[arg(value_name = "AGENT", value_parser = agent_ref)]
    pub agent: String,

    /// Signal to send, e.g. TERM, SIGINT, 9 [default: SIGKILL to the whole tree]
    #[arg(short, long, value_name = "SIGNAL", value_parser = checks::signal)]
    pub signal: Option<String>,
}

/// `wrangle rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Ids, names or unique id prefixes of the agents
    #[arg(value_name = "AGENT", value_parser = agent_ref, required = true)]
    pub agents: Vec<String>,

    /// Stop an agent first if it still runs
    #[arg(short, long)]
    pub force: bool,
}

/// `wrangle wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Ids, names or unique id prefixes of the agents
    #[arg(value_name = "AGENT", value_parser = agent_ref, required = true)]
    pub agents: Vec<String>,
}

/// `wrangle events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Start after this event id, or with the events since a time (RFC
    /// 3339) or a duration ago (10m, 2h) [default: new events only; with
    /// --no-follow, all that are kept]
    #[arg(long, value_name = "ID|TIME|DURATION", value_parser = since)]
    pub since: Option<String>,

    /// Only this agent's events: id, name or unique id prefix (an agent
    /// that is gone, or still to come, by its exact id or name)
    #[arg(long, value_name = "AGENT", value_parser = agent_ref)]
    pub agent: Option<String>,

    /// Only events of agents in this group (and of the group itself)
    #[arg(long, value_name = "GROUP", value_parser = checks::name)]
    pub group: Option<String>,

    /// Only events whose type starts with this: agent.exited, agent.health,
    /// daemon. ... (repeat it, or separate with commas)
    #[arg(long = "type", value_name = "TYPE", value_parser = event_type)]
    pub kinds: Vec<String>,

    /// Print the events recorded so far and end, instead of following
    #[arg(long)]
    pub no_follow: bool,

    /// One JSON object per line, each event as the daemon sends it
    #[arg(long)]
    pub json: bool,
}

/// The keys of `top`, for `wrangle top --help`.
const TOP_KEYS: &str = "\
Keys:
  Up/Down, j/k     select an agent (PageUp/PageDown, Home/End)
  s                sort by the next column; P cpu, M memory, N name, T uptime
  r                reverse the sort
  /                filter on name or command (Enter keeps it, Esc clears it)
  Enter, l         the selected agent's log tail (Esc back)
  x                stop the selected agent (asks y/n)
  K                kill it: SIGKILL to its whole tree (asks y/n)
  q, Ctrl-C        quit";

/// `wrangle top`.
#[derive(Debug, Args)]
#[command(after_help = TOP_KEYS)]
pub struct TopArgs {
    /// Show agents that have ended too
    #[arg(short, long)]
    pub all: bool,

    /// Time between two refreshes, e.g. 500ms, 2s (at least 100ms)
    #[arg(short = 'd', long, value_name = "DURATION", default_value = "1s", value_parser = interval)]
    pub interval: Duration,
}

/// `wrangle daemon`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DaemonArgs {
    /// Run the daemon in this process instead of in the background
    #[arg(long)]
    pub foreground: bool,

    /// Most agents that may run at once; the others wait, queued [default: no limit]
    #[arg(long, value_name = "N", value_parser = max_running_daemon)]
    pub max_running: Option<u32>,

    /// How often the daemon samples every agent's processes, e.g. 500ms
    /// [default: 2s]
    #[arg(long, value_name = "DURATION", value_parser = sample_interval)]
    pub sample_interval: Option<String>,

    /// How long events are kept for `wrangle events --since`, e.g. 30d
    /// [default: 7d]
    #[arg(long, value_name = "DURATION", value_parser = checks::positive_duration)]
    pub events_keep: Option<String>,

    /// Most events kept; the oldest past it are pruned [default: 500000]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub events_max: Option<u64>,

    /// Most agents with series of their own on /metrics [default: 1000]
    #[arg(long, value_name = "N")]
    pub metrics_agents_max: Option<usize>,

    /// Most space all runs' logs may take, e.g. 2G; over it the oldest
    /// ended runs' logs go, then the oldest rotated files [default: a
    /// tenth of the home's file system, at most 10G]
    #[arg(long, value_name = "SIZE", value_parser = logs_max_total)]
    pub logs_max_total: Option<String>,

    /// What to do with the daemon; start it when absent.
    #[command(subcommand)]
    pub action: Option<DaemonAction>,
}

/// Subcommands of `wrangle daemon`.
#[derive(Debug, Subcommand)]
pub enum DaemonAction {
    /// Stop the daemon; agents keep running unless --stop-agents
    Stop(DaemonStopArgs),
}

/// `wrangle daemon stop`.
#[derive(Debug, Args)]
pub struct DaemonStopArgs {
    /// Stop every agent before the daemon
    #[arg(long)]
    pub stop_agents: bool,
}

/// `--since` of `events`: an id, a time or a duration ago.
fn since(text: &str) -> Result<String, InvalidInput> {
    wrangle_wire::events::parse_since(text, chrono::Utc::now())
        .map(|_| text.trim().to_owned())
        .map_err(InvalidInput)
}

/// `--type` of `events`: known type prefixes.
fn event_type(text: &str) -> Result<String, InvalidInput> {
    wrangle_wire::events::parse_type_filter(text)
        .map(|prefixes| prefixes.join(","))
        .map_err(InvalidInput)
}

/// `--env KEY=VALUE`.
fn env_pair(text: &str) -> Result<(String, String), InvalidInput> {
    parse::parse_env_pair(text).map_err(InvalidInput)
}

/// `--logs-max-total`: a size, checked, kept as typed.
fn logs_max_total(text: &str) -> Result<String, InvalidInput> {
    parse::parse_size(text)
        .map(|_| text.trim().to_owned())
        .map_err(|error| InvalidInput(format!("invalid --logs-max-total: {error}")))
}

/// `--sample-interval`: checked, kept as typed.
fn sample_interval(text: &str) -> Result<String, InvalidInput> {
    parse::parse_sample_interval(text)
        .map(|_| text.to_owned())
        .map_err(InvalidInput)
}

/// Shortest `top --interval`: refreshing faster only loads the daemon
/// (htop's shortest delay is the same tenth of a second).
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// `top --interval`: parsed here, since the CLI itself uses it.
fn interval(text: &str) -> Result<Duration, InvalidInput> {
    let duration = parse::parse_duration(text).map_err(InvalidInput)?;
    if duration < MIN_INTERVAL {
        return Err(InvalidInput(format!(
            "the interval {text:?} is too short: use 100ms or more"
        )));
    }
    Ok(duration)
}

/// An agent reference: the daemon resolves it, but an empty one would
/// change the route it is sent to.
fn agent_ref(text: &str) -> Result<String, InvalidInput> {
    if text.is_empty() {
        Err(InvalidInput(
            "an agent reference cannot be empty: use an id, a name or a unique id prefix".into(),
        ))
    } else {
        Ok(text.to_owned())
    }
}

/// A `--since` or `--until`: checked here with the daemon's parser, sent
/// as typed (a duration is counted back from the daemon's clock).
fn time_bound(flag: &'static str) -> impl Fn(&str) -> Result<String, InvalidInput> + Clone {
    move |text| {
        wrangle_wire::parse::parse_time_or_ago(flag, text, chrono::Utc::now())
            .map(|_| text.trim().to_owned())
            .map_err(InvalidInput)
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;
    use std::error::Error as _;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("wrangle").chain(args.iter().copied()))
    }

    /// The message a value parser gave, as `wrangle` prints it.
    fn validation_message(args: &[&str]) -> String {
        let error = parse(args).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::ValueValidation, "{error}");
        error.source().expect("the parser's error").to_string()
    }

    #[test]
    fn the_clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_keeps_the_command_and_the_raw_values() {
        let cli = parse(&[
            "run",
            "--name",
            "build-1",
            "--env",
            "A=b=c",
            "-e",
            "EMPTY=",
            "--cwd",
            "sub",
            "--stop-signal",
            "int",
            "--stop-timeout",
            "1m30s",
            "--json",
            "--",
            "sh",
            "-c",
            "echo --json",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.name.as_deref(), Some("build-1"));
        assert_eq!(
            run.env,
            [("A".into(), "b=c".into()), ("EMPTY".into(), String::new())]
        );
        assert_eq!(run.cwd, Some(PathBuf::from("sub")));
        assert_eq!(run.options.stop_signal.as_deref(), Some("int"));
        assert_eq!(run.options.stop_timeout.as_deref(), Some("1m30s"));
        assert!(run.json);
        assert_eq!(run.command, ["sh", "-c", "echo --json"]);
    }

    #[test]
    fn run_takes_the_command_without_a_double_dash_too() {
        let cli = parse(&["run", "sleep", "--flag-of-sleep", "10"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.command, ["sleep", "--flag-of-sleep", "10"]);
        assert!(!run.json);
    }

    #[test]
    fn run_rejects_bad_values_with_the_daemons_messages() {
        assert_eq!(
            validation_message(&["run", "--env", "FOO", "--", "true"]),
            parse::parse_env_pair("FOO").unwrap_err()
        );
        assert_eq!(
            validation_message(&["run", "--name", "Bad Name", "--", "true"]),
            parse::validate_name("Bad Name").unwrap_err()
        );
        assert_eq!(
            validation_message(&["run", "--stop-timeout", "10x", "--", "true"]),
            parse::parse_duration("10x").unwrap_err()
        );
        assert_eq!(
            validation_message(&["run", "--stop-signal", "SIGFOO", "--", "true"]),
            parse::parse_signal("SIGFOO").unwrap_err()
        );
    }

    #[test]
    fn run_takes_one_health_probe_and_its_timing() {
        let cli = parse(&[
            "run",
            "--health-http",
            "http://127.0.0.1:8080/health",
            "--health-interval",
            "200ms",
            "--health-timeout",
            "1s",
            "--health-retries",
            "2",
            "--",
            "server",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(
            run.options.health_http.as_deref(),
            Some("http://127.0.0.1:8080/health")
        );
        assert_eq!(run.options.health_interval.as_deref(), Some("200ms"));
        assert_eq!(run.options.health_timeout.as_deref(), Some("1s"));
        assert_eq!(run.options.health_retries, Some(2));
        assert!(run.options.health_cmd.is_none() && run.options.health_tcp.is_none());

        let two = ["--health-cmd", "true", "--health-tcp", "127.0.0.1:9"];
        assert_eq!(
            parse(&[&["run"][..], &two, &["--", "x"]].concat())
                .unwrap_err()
                .kind(),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            parse(&["run", "--health-retries", "2", "--", "x"])
                .unwrap_err()
                .kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            validation_message(&["run", "--health-tcp", "localhost", "--", "x"]),
            parse::parse_host_port("localhost").unwrap_err()
        );
        assert_eq!(
            validation_message(&["run", "--health-http", "https://h/", "--", "x"]),
            parse::parse_http_url("https://h/").unwrap_err()
        );
        let tcp = ["run", "--health-tcp", "127.0.0.1:9"];
        assert_eq!(
            validation_message(&[&tcp[..], &["--health-interval", "0s", "--", "x"]].concat()),
            parse::parse_positive_duration("0s").unwrap_err()
        );
        assert_eq!(
            validation_message(&[&tcp[..], &["--health-retries", "0", "--", "x"]].concat()),
            "invalid health retries \"0\": give a whole number of failed probes, at least 1"
        );
        assert!(
            validation_message(&[&tcp[..], &["--health-retries", "many", "--", "x"]].concat())
                .contains("invalid health retries \"many\"")
        );
    }

    #[test]
    fn run_needs_a_command() {
        for args in [&["run", "--"][..], &["run"], &["run", "--name", "x"]] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::MissingRequiredArgument);
            assert!(error.to_string().contains("<CMD>"), "{error}");
        }
    }

    #[test]
    fn stop_takes_agents_or_all_but_not_both() {
        let cli = parse(&["stop", "a", "b", "--timeout", "5"]).unwrap();
        let Command::Stop(stop) = cli.command else {
            panic!("not stop")
        };
        assert_eq!(stop.agents, ["a", "b"]);
        assert!(!stop.all);
        assert_eq!(stop.timeout.as_deref(), Some("5"));

        let cli = parse(&["stop", "--all"]).unwrap();
        let Command::Stop(stop) = cli.command else {
            panic!("not stop")
        };
        assert!(stop.all && stop.agents.is_empty());

        assert_eq!(
            parse(&["stop"]).unwrap_err().kind(),
            ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            parse(&["stop", "a", "--all"]).unwrap_err().kind(),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            validation_message(&["stop", "--all", "--timeout", "soon"]),
            parse::parse_duration("soon").unwrap_err()
        );
    }

    #[test]
    fn logs_streams_are_exclusive() {
        let cli = parse(&["logs", "a", "-f", "--tail", "5", "--stderr", "-t"]).unwrap();
        let Command::Logs(logs) = cli.command else {
            panic!("not logs")
        };
        assert!(logs.follow && logs.stderr && logs.timestamps && !logs.stdout);
        assert_eq!(logs.tail, Some(5));
        assert_eq!(
            parse(&["logs", "a", "--stdout", "--stderr"])
                .unwrap_err()
                .kind(),
            ErrorKind::ArgumentConflict
        );
        assert!(parse(&["logs", "a", "--tail", "-1"]).is_err());
    }

    #[test]
    fn kill_checks_the_signal() {
        let cli = parse(&["kill", "a", "-s", "TERM"]).unwrap();
        let Command::Kill(kill) = cli.command else {
            panic!("not kill")
        };
        assert_eq!(kill.signal.as_deref(), Some("TERM"));
        assert_eq!(
            validation_message(&["kill", "a", "--signal", "0"]),
            parse::parse_signal("0").unwrap_err()
        );
    }

    #[test]
    fn rm_and_wait_need_agents() {
        let cli = parse(&["rm", "-f", "a", "b"]).unwrap();
        let Command::Rm(rm) = cli.command else {
            panic!("not rm")
        };
        assert!(rm.force);
        assert_eq!(rm.agents, ["a", "b"]);
        assert!(parse(&["rm"]).is_err());
        assert!(parse(&["wait"]).is_err());
        assert!(validation_message(&["wait", ""]).contains("cannot be empty"));
    }

    #[test]
    fn daemon_starts_stops_or_runs_in_the_foreground() {
        let cli = parse(&["daemon"]).unwrap();
        let Command::Daemon(daemon) = cli.command else {
            panic!("not daemon")
        };
        assert!(!daemon.foreground && daemon.action.is_none());

        let cli = parse(&["daemon", "--foreground"]).unwrap();
        let Command::Daemon(daemon) = cli.command else {
            panic!("not daemon")
        };
        assert!(daemon.foreground);

        let cli = parse(&["--home", "/tmp/h", "daemon", "stop", "--stop-agents"]).unwrap();
        assert_eq!(cli.home, Some(OsString::from("/tmp/h")));
        let Command::Daemon(DaemonArgs {
            action: Some(DaemonAction::Stop(stop)),
            ..
        }) = cli.command
        else {
            panic!("not daemon stop")
        };
        assert!(stop.stop_agents);

        assert!(parse(&["daemon", "--foreground", "stop"]).is_err());
    }

    #[test]
    fn top_refreshes_every_second_unless_told() {
        let Command::Top(top) = parse(&["top"]).unwrap().command else {
            panic!("not top")
        };
        assert!(!top.all);
        assert_eq!(top.interval, Duration::from_secs(1));

        let Command::Top(top) = parse(&["top", "-a", "--interval", "250ms"])
            .unwrap()
            .command
        else {
            panic!("not top")
        };
        assert!(top.all);
        assert_eq!(top.interval, Duration::from_millis(250));

        assert_eq!(
            validation_message(&["top", "--interval", "soon"]),
            parse::parse_duration("soon").unwrap_err()
        );
        assert_eq!(
            validation_message(&["top", "-d", "10ms"]),
            "the interval \"10ms\" is too short: use 100ms or more"
        );
        assert!(validation_message(&["top", "-d", "0"]).contains("too short"));
    }

    #[test]
    fn an_empty_home_is_accepted_and_means_the_default() {
        let cli = parse(&["--home", "", "ps"]).unwrap();
        assert_eq!(cli.home, Some(OsString::new()));
    }

    #[test]
    fn home_is_a_global_option() {
        let cli = parse(&["ps", "--home", "/tmp/elsewhere", "-a"]).unwrap();
        assert_eq!(cli.home, Some(OsString::from("/tmp/elsewhere")));
    }

    #[test]
    fn run_takes_limits_and_refuses_bad_ones_with_the_daemons_messages() {
        let cli = parse(&[
            "run",
            "--memory-max",
            "1.5G",
            "--cpu-max",
            "0.5",
            "--pids-max",
            "5",
            "--nofile",
            "32",
            "--",
            "true",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.options.memory_max.as_deref(), Some("1.5G"));
        assert_eq!(run.options.cpu_max.as_deref(), Some("0.5"));
        assert_eq!(
            (run.options.pids_max, run.options.nofile),
            (Some(5), Some(32))
        );

        assert_eq!(
            validation_message(&["run", "--memory-max", "lots", "--", "true"]),
            parse::parse_memory_max("lots").unwrap_err()
        );
        assert_eq!(
            validation_message(&["run", "--cpu-max", "0", "--", "true"]),
            parse::parse_cpu_max("0").unwrap_err()
        );
        // A negative number is the value, not another option.
        assert_eq!(
            validation_message(&["run", "--pids-max", "-1", "--", "true"]),
            parse::parse_count_limit("process limit", "-1").unwrap_err()
        );
        assert_eq!(
            validation_message(&["run", "--nofile", "0", "--", "true"]),
            parse::parse_count_limit("open-file limit", "0").unwrap_err()
        );
    }

    #[test]
    fn idle_timeout_and_sample_interval_are_checked_with_the_daemons_parsers() {
        let cli = parse(&["run", "--idle-timeout", "5m", "--", "true"]).unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.options.idle_timeout.as_deref(), Some("5m"));
        assert_eq!(
            validation_message(&["run", "--idle-timeout", "bogus", "--", "true"]),
            parse::parse_idle_timeout("bogus").unwrap_err()
        );
        assert_eq!(
            validation_message(&["run", "--idle-timeout", "0", "--", "true"]),
            parse::parse_idle_timeout("0").unwrap_err()
        );
        let cli = parse(&["daemon", "--sample-interval", "250ms"]).unwrap();
        let Command::Daemon(daemon) = cli.command else {
            panic!("not daemon")
        };
        assert_eq!(daemon.sample_interval.as_deref(), Some("250ms"));
        assert_eq!(
            validation_message(&["daemon", "--sample-interval", "1ms"]),
            parse::parse_sample_interval("1ms").unwrap_err()
        );
        assert!(parse(&["daemon", "--sample-interval", "1s", "stop"]).is_err());
    }

    #[test]
    fn summary_prints_a_table_or_json() {
        let cli = parse(&["summary", "--json"]).unwrap();
        let Command::Summary(summary) = cli.command else {
            panic!("not summary")
        };
        assert!(summary.json);
    }
}
