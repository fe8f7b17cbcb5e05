//! The real agent CLIs under wrangle: the pinned `claude` (Claude Code)
//! and `codex` (Codex) from npm (tests/agent-clis/install.sh), run by the
//! real daemon against a scripted model server on loopback
//! (common/model_server.rs). What the replayed transcripts of sessions.rs
//! cannot show: that the lines the CLIs really print today, at the pace
//! they really print them, give the session a user expects: a refused
//! tool, retries and a long tool that are no hang, a stall that is, and
//! tokens and cost to the CLI's own final figures, for one agent and for
//! twenty at once.
//!
//! Without the CLIs (no npm, not installed) each test prints
//! `SKIPPED: ...` on stderr and returns.

mod common;

use common::events::stored;
use common::model_server::{ModelServer, Reply, Request, Usage};
use common::{agent_clis, procfs, wait_until, Home, SOON};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// The model every Claude run asks for (one Claude Code prices itself).
const CLAUDE_MODEL: &str = "claude-sonnet-4-5";

/// The model every Codex run asks for: one wrangle's price table knows.
const CODEX_MODEL: &str = "gpt-5";

/// A wrangle home whose daemon samples every 100 ms, and the model
/// server its agents call. The home comes first so that it is dropped
/// first: its agents are stopped before the server goes away.
struct Bench {
    home: Home,
    server: ModelServer,
}

impl Bench {
    /// A daemon and a server answering with `script`.
    fn new(script: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Bench {
        let server = ModelServer::start(script);
        let home = Home::new();
        home.ok(&["daemon", "--sample-interval", "100ms"]);
        for dir in ["agent-home", "work"] {
            std::fs::create_dir_all(home.path().join(dir)).expect("a scratch directory");
        }
        Bench { home, server }
    }

    /// The agents' scratch `HOME`: nothing of the user's configuration
    /// (nor credentials) reaches the CLIs.
    fn agent_home(&self) -> PathBuf {
        self.home.path().join("agent-home")
    }

    /// The agents' working directory.
    fn work(&self) -> PathBuf {
        self.home.path().join("work")
    }

    /// `wrangle run --name NAME OPTIONS -- claude -p PROMPT
    /// --output-format stream-json --verbose --model ... CLAUDE_ARGS`, the
    /// CLI pointed at the server; returns the agent's id.
    fn claude(
        &self,
        claude: &Path,
        name: &str,
        prompt: &str,
        options: &[&str],
        claude_args: &[&str],
    ) -> String {
        let env = [
            format!("HOME={}", self.agent_home().display()),
            format!("ANTHROPIC_BASE_URL={}", self.server.url()),
            "ANTHROPIC_API_KEY=sk-ant-test-not-a-key".to_string(),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1".to_string(),
        ];
        let mut command = vec![
            claude.display().to_string(),
            "-p".into(),
            prompt.into(),
            "--output-format".into(),
            "stream-json".into(),
            "--verbose".into(),
            "--model".into(),
            CLAUDE_MODEL.into(),
        ];
        command.extend(claude_args.iter().map(|s| s.to_string()));
        self.run(name, &env, options, &command)
    }

    /// `wrangle run --name NAME -- codex exec --json --skip-git-repo-check
    /// -m gpt-5 PROMPT`, with a `CODEX_HOME` whose provider is the server;
    /// returns the agent's id.
    fn codex(&self, codex: &Path, name: &str, prompt: &str) -> String {
        let codex_home = self.home.path().join("codex-home");
        std::fs::create_dir_all(&codex_home).expect("CODEX_HOME");
        let config = format!(
            "model = \"{CODEX_MODEL}\"\n\
             model_provider = \"scripted\"\n\n\
             [model_providers.scripted]\n\
             name = \"scripted\"\n\
             base_url = \"{}/v1\"\n\
             wire_api = \"responses\"\n\
             env_key = \"SCRIPTED_MODEL_KEY\"\n",
            self.server.url()
        );
        std::fs::write(codex_home.join("config.toml"), config).expect("config.toml");
        let env = [
            format!("HOME={}", self.agent_home().display()),
            format!("CODEX_HOME={}", codex_home.display()),
            "SCRIPTED_MODEL_KEY=not-a-key".to_string(),
        ];
        let command = [
            codex.display().to_string(),
            "exec".into(),
            "--json".into(),
            "--skip-git-repo-check".into(),
            "-m".into(),
            CODEX_MODEL.into(),
            prompt.into(),
        ];
        self.run(name, &env, &[], &command)
    }

    /// `wrangle run --name NAME --cwd WORK --env ... OPTIONS -- COMMAND`.
    fn run(&self, name: &str, env: &[String], options: &[&str], command: &[String]) -> String {
        let mut args = vec![
            "--name".to_string(),
            name.into(),
            "--cwd".into(),
            self.work().display().to_string(),
        ];
        for pair in env {
            args.push("--env".into());
            args.push(pair.clone());
        }
        args.extend(options.iter().map(|s| s.to_string()));
        args.push("--".into());
        args.extend(command.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.home.run(&args)
    }

    /// What a person reads when a test fails: the agent as `inspect`
    /// shows it and what it printed.
    fn describe(&self, name: &str) -> String {
        let logs = self.home.wrangle(&["logs", name]);
        format!(
            "{:#}\n--- its output:\n{}{}",
            self.home.inspect(name),
            logs.stdout,
            logs.stderr
        )
    }

    /// The lines of the agent's stdout, as `wrangle logs` prints them.
    fn stdout(&self, name: &str) -> Vec<String> {
        let text = self.home.ok(&["logs", "--stdout", name]);
        text.lines().map(str::to_string).collect()
    }

    /// The first (or with `last`, the last) line of the agent's stdout
    /// whose `type` is `kind`: the CLI's own word, e.g. Claude's `result`
    /// or Codex's `turn.completed`.
    fn line_of(&self, name: &str, kind: &str, last: bool) -> Value {
        let mut lines: Vec<Value> = self
            .stdout(name)
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["type"] == kind)
            .collect();
        if last {
            lines.reverse();
        }
        lines
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no {kind} line:\n{}", self.describe(name)))
    }

    /// The CLI's final line of `kind`.
    fn final_line(&self, name: &str, kind: &str) -> Value {
        self.line_of(name, kind, true)
    }

    /// Polls `inspect` until the agent is no longer running; returns each
    /// `(health, health_reason)` seen on the way.
    fn watch(&self, name: &str) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let view = self.home.inspect(name);
            if view["state"] != "running" {
                return seen;
            }
            let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
            seen.push((text(&view["health"]), text(&view["health_reason"])));
            assert!(
                Instant::now() < deadline,
                "{} still runs",
                self.describe(name)
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A session's tokens as `inspect` shows them: (input, output,
/// cache_read, cache_write).
fn tokens(view: &Value) -> (u64, u64, u64, u64) {
    let t = &view["session"]["tokens"];
    let n = |key: &str| t[key].as_u64().unwrap_or_else(|| panic!("no {key} in {t}"));
    (n("input"), n("output"), n("cache_read"), n("cache_write"))
}

/// The totals of a Claude `result` line, every model of its `modelUsage`
/// together (its `usage` alone may be the main model's or the last
/// call's: AGENT-FORMATS.md §1).
fn claude_totals(result: &Value) -> (u64, u64, u64, u64) {
    let mut sum = (0, 0, 0, 0);
    let models = result["modelUsage"]
        .as_object()
        .unwrap_or_else(|| panic!("no modelUsage in {result}"));
    for usage in models.values() {
        let n = |key: &str| usage[key].as_u64().unwrap_or(0);
        sum.0 += n("inputTokens");
        sum.1 += n("outputTokens");
        sum.2 += n("cacheReadInputTokens");
        sum.3 += n("cacheCreationInputTokens");
    }
    sum
}

/// What the server billed, in the order of [`tokens`].
fn as_tuple(usage: Usage) -> (u64, u64, u64, u64) {
    (
        usage.input,
        usage.output,
        usage.cache_read,
        usage.cache_write,
    )
}

/// The tokens of one model call, in the order of [`tokens`].
fn usage(input: u64, output: u64, cache_read: u64, cache_write: u64) -> Usage {
    Usage {
        input,
        output,
        cache_read,
        cache_write,
    }
}

/// The Claude script of a task with one shell command: the first call of
/// a conversation asks for `Bash(command)`, the call after its result
/// answers with text.
fn one_command(command: &'static str) -> impl Fn(&Request, usize) -> Reply + Send + Sync {
    move |request, _| {
        if request.tool_results() == 0 {
            Reply::Bash {
                command: command.into(),
                usage: usage(1200, 40, 5000, 3000),
            }
        } else {
            Reply::Text {
                text: "Done.".into(),
                usage: usage(300, 25, 8000, 200),
            }
        }
    }
}

#[test]
fn claude_refused_a_tool_it_was_not_granted_shows_the_denial() {
    let Some(claude) = agent_clis::find("claude") else {
        return;
    };
    let bench = Bench::new(one_command("touch refused.txt"));
    let home = &bench.home;
    // Only `sleep` is granted: `touch`, which writes, is refused at once.
    bench.claude(
        &claude,
        "refused",
        "Create refused.txt",
        &[],
        &["--allowedTools", "Bash(sleep:*)"],
    );
    home.wrangle(&["wait", "refused"]);
    let view = home.inspect("refused");
    let why = bench.describe("refused");
    // The CLI itself refused it, and said so in its result.
    assert!(!bench.work().join("refused.txt").exists(), "{why}");
    let result = bench.final_line("refused", "result");
    assert_eq!(
        result["permission_denials"][0]["tool_name"], "Bash",
        "{why}"
    );
    // wrangle: the run ended well, but a person is needed for what was
    // refused.
    assert_eq!(view["state"], "completed", "{why}");
    assert_eq!(view["session"]["result"]["success"], true, "{why}");
    assert_eq!(view["session"]["result"]["message"], "Done.", "{why}");
    assert_eq!(
        view["session"]["waiting"], "permission for Bash was denied",
        "{why}"
    );
    assert_eq!(view["session"]["tool_calls"], 1, "{why}");
    assert!(view["session"]["tool"].is_null(), "{why}");
    let waiting: Vec<Value> = stored(home, 0)
        .into_iter()
        .filter(|event| event["type"] == "agent.waiting")
        .collect();
    assert_eq!(
        waiting.last().map(|event| &event["waiting"]),
        Some(&Value::from("permission for Bash was denied")),
        "{waiting:#?}"
    );
}

#[test]
fn claude_retrying_an_overloaded_api_past_the_idle_timeout_is_not_hung() {
    let Some(claude) = agent_clis::find("claude") else {
        return;
    };
    // Four 529s: the CLI waits about 0.5, 1.2, 2.5 and 4.6 s between its
    // attempts, each a silence past the 2 s idle timeout but the first.
    let bench = Bench::new(|_, call| match call {
        0..=3 => Reply::Overloaded,
        _ => Reply::Text {
            text: "Finally.".into(),
            usage: usage(100, 10, 0, 0),
        },
    });
    let home = &bench.home;
    bench.claude(
        &claude,
        "retrying",
        "Say something",
        &["--idle-timeout", "2s", "--on-hang", "stop"],
        &[],
    );
    let started = Instant::now();
    let seen = bench.watch("retrying");
    let took = started.elapsed();
    let why = format!("{seen:#?}\n{}", bench.describe("retrying"));
    assert_eq!(
        bench.server.count(|reply| *reply == Reply::Overloaded),
        4,
        "{why}"
    );
    assert!(took > Duration::from_secs(6), "retried for {took:?}: {why}");
    assert!(seen.iter().all(|(health, _)| health != "hung"), "{why}");
    assert!(
        seen.iter().any(|(health, reason)| health == "healthy"
            && reason.contains("(idle timeout 2s), but retrying the API (attempt 4 of 10)")),
        "{why}"
    );
    let view = home.inspect("retrying");
    assert_eq!(view["state"], "completed", "{why}");
    assert_eq!(view["session"]["result"]["success"], true, "{why}");
    assert!(view["session"]["retrying"].is_null(), "{why}");
    let hung: Vec<Value> = stored(home, 0)
        .into_iter()
        .filter(|event| event["type"] == "agent.health" && event["to"] == "hung")
        .collect();
    assert!(hung.is_empty(), "{hung:#?}");
}

#[test]
fn claude_running_a_silent_bash_tool_past_the_idle_timeout_is_not_hung() {
    let Some(claude) = agent_clis::find("claude") else {
        return;
    };
    let bench = Bench::new(one_command("sleep 4"));
    let home = &bench.home;
    bench.claude(
        &claude,
        "sleeper",
        "Wait a little",
        &["--idle-timeout", "2s", "--on-hang", "stop"],
        &["--allowedTools", "Bash(sleep:*)"],
    );
    let started = Instant::now();
    let seen = bench.watch("sleeper");
    let took = started.elapsed();
    let why = format!("{seen:#?}\n{}", bench.describe("sleeper"));
    assert!(took > Duration::from_secs(4), "ran for {took:?}: {why}");
    assert!(seen.iter().all(|(health, _)| health != "hung"), "{why}");
    assert!(
        seen.iter().any(|(health, reason)| health == "healthy"
            && reason.contains("(idle timeout 2s), but running Bash")),
        "{why}"
    );
    let view = home.inspect("sleeper");
    assert_eq!(view["state"], "completed", "{why}");
    assert_eq!(view["session"]["result"]["success"], true, "{why}");
    assert_eq!(view["session"]["tool_calls"], 1, "{why}");
    assert!(view["session"]["tool"].is_null(), "{why}");
    assert!(view["session"]["waiting"].is_null(), "{why}");
}

#[test]
fn claude_tokens_and_cost_in_wrangle_equal_the_cli_own_figures() {
    let Some(claude) = agent_clis::find("claude") else {
        return;
    };
    let bench = Bench::new(one_command("sleep 0.1"));
    let home = &bench.home;
    bench.claude(
        &claude,
        "counted",
        "Count this",
        &[],
        &["--allowedTools", "Bash(sleep:*)"],
    );
    home.wrangle(&["wait", "counted"]);
    let view = home.inspect("counted");
    let why = bench.describe("counted");
    let result = bench.final_line("counted", "result");
    // The CLI counted what the server billed (two calls)...
    assert_eq!(
        claude_totals(&result),
        as_tuple(bench.server.usage_served()),
        "{why}"
    );
    assert_eq!(claude_totals(&result), (1500, 65, 13000, 3200), "{why}");
    // ... and wrangle shows the CLI's own figures.
    assert_eq!(tokens(&view), claude_totals(&result), "{why}");
    let cost = result["total_cost_usd"].as_f64().expect("total_cost_usd");
    assert!(cost > 0.0, "{why}");
    assert_eq!(view["session"]["cost_usd"].as_f64(), Some(cost), "{why}");
    assert_eq!(view["session"]["cost_source"], "agent", "{why}");
    assert_eq!(view["session"]["models"][0], CLAUDE_MODEL, "{why}");
    assert_eq!(view["session"]["session_id"], result["session_id"], "{why}");
    assert_eq!(view["session"]["turns"], result["num_turns"], "{why}");
    // Every line the CLI printed was read, and understood.
    assert_eq!(
        view["session"]["lines"],
        bench.stdout("counted").len(),
        "{why}"
    );
    assert_eq!(view["session"]["other_lines"], 0, "{why}");
    let results: Vec<Value> = stored(home, 0)
        .into_iter()
        .filter(|event| event["type"] == "agent.result")
        .collect();
    assert_eq!(results.len(), 1, "{results:#?}");
    assert_eq!(results[0]["cost_usd"].as_f64(), Some(cost), "{results:#?}");
}

#[test]
fn claude_whose_api_refuses_the_request_fails_with_the_cli_message() {
    let Some(claude) = agent_clis::find("claude") else {
        return;
    };
    let bench = Bench::new(|_, _| Reply::PromptTooLong);
    let home = &bench.home;
    bench.claude(&claude, "refusal", "Read everything", &[], &[]);
    home.wrangle(&["wait", "refusal"]);
    let view = home.inspect("refusal");
    let why = bench.describe("refusal");
    // The CLI's own word: an error result (`is_error`, with subtype
    // "success"), after a message of its own making.
    let result = bench.final_line("refusal", "result");
    assert_eq!(result["is_error"], true, "{why}");
    assert_eq!(result["api_error_status"], 400, "{why}");
    let message = result["result"].as_str().expect("the result's text");
    assert_eq!(view["state"], "failed", "{why}");
    assert_eq!(view["exit_code"], 1, "{why}");
    assert_eq!(
        view["reason"].as_str(),
        Some(format!("{message} (the agent's result is an error; exited with code 1)").as_str()),
        "{why}"
    );
    assert_eq!(view["session"]["result"]["success"], false, "{why}");
    assert_eq!(view["session"]["result"]["message"], message, "{why}");
    // The message the CLI made itself (model "<synthetic>") is no model's.
    assert_eq!(
        view["session"]["models"],
        serde_json::json!([CLAUDE_MODEL]),
        "{why}"
    );
    assert_eq!(tokens(&view), (0, 0, 0, 0), "{why}");
    assert_eq!(view["session"]["cost_usd"], 0.0, "{why}");
}

#[test]
fn codex_exec_with_a_command_gives_its_thread_total_and_succeeds() {
    let Some(codex) = agent_clis::find("codex") else {
        return;
    };
    let bench = Bench::new(|request, _| {
        if request.tool_results() == 0 {
            Reply::Bash {
                command: "echo wrangled".into(),
                usage: usage(1000, 50, 4000, 0),
            }
        } else {
            Reply::Text {
                text: "It printed wrangled.".into(),
                usage: usage(700, 30, 5000, 0),
            }
        }
    });
    let home = &bench.home;
    bench.codex(&codex, "coder", "Run echo wrangled");
    home.wrangle(&["wait", "coder"]);
    let view = home.inspect("coder");
    let why = bench.describe("coder");
    // The command really ran.
    let command = bench
        .stdout("coder")
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| {
            line["item"]["type"] == "command_execution" && line["type"] == "item.completed"
        })
        .unwrap_or_else(|| panic!("no command ran: {why}"));
    assert_eq!(command["item"]["aggregated_output"], "wrangled\n", "{why}");
    assert_eq!(command["item"]["exit_code"], 0, "{why}");
    // Codex's usage is the thread's running total (input counting the
    // cached part): the two calls summed, counted once by wrangle.
    let turn = bench.final_line("coder", "turn.completed");
    let n = |key: &str| turn["usage"][key].as_u64().unwrap_or(0);
    let reported = (
        n("input_tokens") - n("cached_input_tokens"),
        n("output_tokens"),
        n("cached_input_tokens"),
        n("cache_write_input_tokens"),
    );
    assert_eq!(reported, as_tuple(bench.server.usage_served()), "{why}");
    assert_eq!(reported, (1700, 80, 9000, 0), "{why}");
    assert_eq!(tokens(&view), reported, "{why}");
    assert_eq!(view["state"], "completed", "{why}");
    assert_eq!(view["session"]["adapter"], "codex", "{why}");
    assert_eq!(view["session"]["result"]["success"], true, "{why}");
    assert_eq!(
        view["session"]["result"]["message"], "It printed wrangled.",
        "{why}"
    );
    assert_eq!(view["session"]["tool_calls"], 1, "{why}");
    assert_eq!(view["session"]["models"][0], CODEX_MODEL, "{why}");
    assert_eq!(view["session"]["cost_source"], "prices", "{why}");
    let thread = bench.line_of("coder", "thread.started", false);
    assert_eq!(view["session"]["session_id"], thread["thread_id"], "{why}");
    assert_eq!(
        view["session"]["lines"],
        bench.stdout("coder").len(),
        "{why}"
    );
    assert_eq!(view["session"]["other_lines"], 0, "{why}");
}

#[test]
fn twenty_claude_agents_at_once_each_count_their_own_tokens() {
    let Some(claude) = agent_clis::find("claude") else {
        return;
    };
    const AGENTS: u64 = 20;
    // Each agent's figures are its own (found from `[agent N]` in its
    // prompt), so that one counted for another would show.
    let bench = Bench::new(|request, _| {
        let text = request.user_text();
        let n: u64 = text
            .split("[agent ")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if request.tool_results() == 0 {
            Reply::Bash {
                command: "sleep 0.5".into(),
                usage: usage(1000 + n, 10 + n, 100 * n, 7 * n),
            }
        } else {
            Reply::Text {
                text: format!("agent {n} done"),
                usage: usage(2000 + n, 20 + n, 200 * n, 0),
            }
        }
    });
    let home = &bench.home;
    let names: Vec<String> = (1..=AGENTS).map(|n| format!("fleet-{n:02}")).collect();
    for (n, name) in (1..).zip(&names) {
        bench.claude(
            &claude,
            name,
            &format!("[agent {n}] Do your part"),
            &[],
            &["--allowedTools", "Bash(sleep:*)"],
        );
    }
    let mut wait = vec!["wait"];
    wait.extend(names.iter().map(String::as_str));
    home.wrangle(&wait);
    let (mut starts, mut ends) = (Vec::new(), Vec::new());
    for (n, name) in (1..).zip(&names) {
        let view = home.inspect(name);
        let why = bench.describe(name);
        assert_eq!(view["state"], "completed", "{why}");
        assert_eq!(view["session"]["result"]["success"], true, "{why}");
        assert_eq!(
            view["session"]["result"]["message"],
            format!("agent {n} done"),
            "{why}"
        );
        let result = bench.final_line(name, "result");
        let expected = (3000 + 2 * n, 30 + 2 * n, 300 * n, 7 * n);
        assert_eq!(claude_totals(&result), expected, "{why}");
        assert_eq!(tokens(&view), expected, "{why}");
        assert_eq!(
            view["session"]["cost_usd"].as_f64(),
            result["total_cost_usd"].as_f64(),
            "{why}"
        );
        assert_eq!(view["session"]["session_id"], result["session_id"], "{why}");
        starts.push(common::rfc3339(&view["started_at"], "started_at"));
        ends.push(common::rfc3339(&view["ended_at"], "ended_at"));
    }
    assert_eq!(bench.server.count(|_| true), 2 * AGENTS as usize);
    // At once: the last one started before the first one ended.
    let (last_start, first_end) = (starts.iter().max(), ends.iter().min());
    assert!(last_start < first_end, "{starts:?} {ends:?}");
}

#[test]
fn claude_stalled_mid_stream_is_hung_and_stopped_with_its_tree() {
    let Some(claude) = agent_clis::find("claude") else {
        return;
    };
    let bench = Bench::new(|_, _| Reply::Stall);
    let home = &bench.home;
    bench.claude(
        &claude,
        "stalled",
        "Say something",
        &[
            "--idle-timeout",
            "2s",
            "--on-hang",
            "stop",
            "--stop-timeout",
            "2s",
        ],
        &[],
    );
    wait_until(SOON, "the CLI has called the model", || {
        bench.server.count(|reply| *reply == Reply::Stall) == 1
    });
    let tree = agent_tree(home);
    assert!(!tree.is_empty(), "{}", bench.describe("stalled"));
    home.wrangle(&["wait", "stalled"]);
    let view = home.inspect("stalled");
    let why = bench.describe("stalled");
    assert_eq!(view["state"], "failed", "{why}");
    let reason = view["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("hung (no output or heartbeat for"),
        "{why}"
    );
    assert!(view["session"]["result"].is_null(), "{why}");
    assert!(
        stored(home, 0)
            .iter()
            .any(|event| event["type"] == "agent.health" && event["to"] == "hung"),
        "{why}"
    );
    for pid in tree {
        assert!(!procfs::is_alive(pid), "{pid} of the agent lives on: {why}");
    }
    assert!(agent_tree(home).is_empty(), "{why}");
}

#[test]
fn claude_over_its_budget_mid_run_is_stopped_though_the_cli_tells_its_cost_only_at_the_end() {
    let Some(claude) = agent_clis::find("claude") else {
        return;
    };
    // Call after call asks for another command; each bills 10,000 input
    // tokens: $0.03 at claude-sonnet-4-5's $3 per million.
    let bench = Bench::new(|request, _| {
        if request.tool_results() < 20 {
            Reply::Bash {
                command: "sleep 0.3".into(),
                usage: usage(10_000, 20, 0, 0),
            }
        } else {
            Reply::Text {
                text: "Done.".into(),
                usage: usage(10, 5, 0, 0),
            }
        }
    });
    let home = &bench.home;
    bench.claude(
        &claude,
        "spender",
        "Keep going",
        &["--budget-usd", "0.05"],
        &["--allowedTools", "Bash(sleep:*)"],
    );
    wait_until(SOON, "the CLI has called the model", || {
        bench
            .server
            .count(|reply| matches!(reply, Reply::Bash { .. }))
            >= 1
    });
    let tree = agent_tree(home);
    home.wrangle(&["wait", "spender"]);
    let view = home.inspect("spender");
    let why = bench.describe("spender");
    assert_eq!(view["state"], "failed", "{why}");
    assert_eq!(view["cause"], "budget", "{why}");
    // The CLI never printed a cost: wrangle priced its lines as they came.
    assert!(view["session"]["result"].is_null(), "{why}");
    assert_eq!(view["session"]["cost_source"], "prices", "{why}");
    // The second call crossed $0.05; at most one more was made.
    let calls = bench
        .server
        .count(|reply| matches!(reply, Reply::Bash { .. }));
    assert!((2..=3).contains(&calls), "{calls} calls: {why}");
    for pid in tree {
        assert!(!procfs::is_alive(pid), "{pid} of the agent lives on: {why}");
    }
    assert!(agent_tree(home).is_empty(), "{why}");
    assert!(
        stored(home, 0)
            .iter()
            .any(|event| event["type"] == "agent.budget_exceeded"),
        "{why}"
    );
}

/// The live processes of `home`'s agents and their descendants: those
/// whose environment carries the `WRANGLE_STATUS_FILE` wrangle gives each
/// run (its daemon and shims have none).
fn agent_tree(home: &Home) -> Vec<i32> {
    let mark = format!("WRANGLE_STATUS_FILE={}/", home.path().display());
    procfs::all()
        .into_iter()
        .filter(|p| !p.is_zombie())
        .filter(|p| {
            procfs::environ(p.pid).is_some_and(|env| env.iter().any(|e| e.starts_with(&mark)))
        })
        .map(|p| p.pid)
        .collect()
}
