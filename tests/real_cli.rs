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

use common::cli_bench::*;
use common::events::stored;
use common::model_server::{Reply, Request};
use common::{agent_clis, procfs, wait_until, SOON};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

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

/// The Codex script of `echo wrangled` and a last answer (1700/80/9000/0
/// tokens in all), after `failures` answers of 503.
fn codex_echo(failures: usize) -> impl Fn(&Request, usize) -> Reply + Send + Sync {
    move |request, index| {
        if index < failures {
            Reply::Overloaded
        } else if request.tool_results() == 0 {
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
    }
}

#[test]
fn codex_exec_with_a_command_gives_its_thread_total_and_succeeds() {
    let Some(codex) = agent_clis::find("codex") else {
        return;
    };
    let bench = Bench::new(codex_echo(0));
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

/// A real claude whose every model call bills 10,000 input tokens ($0.03
/// at claude-sonnet-4-5's $3 per million) and asks for another command,
/// run with `--budget-usd 0.05` and `--telemetry TELEMETRY`: the agent as
/// `inspect` shows it at the end, and the calls it made.
fn over_budget(claude: &Path, telemetry: &str) -> (Value, usize) {
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
        claude,
        "spender",
        "Keep going",
        &["--budget-usd", "0.05", "--telemetry", telemetry],
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
    assert!(view["session"]["result"].is_null(), "{why}");
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
    let calls = bench
        .server
        .count(|reply| matches!(reply, Reply::Bash { .. }));
    (view, calls)
}

#[test]
fn claude_over_its_budget_mid_run_is_stopped_on_its_own_telemetry() {
    let Some(claude) = agent_clis::find("claude") else {
        return;
    };
    let (view, calls) = over_budget(&claude, "auto");
    // Each call's own cost came over telemetry as it happened.
    let session = &view["session"];
    assert_eq!(session["figures_from_telemetry"], true, "{view:#}");
    assert_eq!(session["cost_source"], "agent", "{view:#}");
    let telemetry = &session["telemetry"];
    let reported = telemetry["calls"].as_u64().unwrap();
    assert!(reported >= 2, "{view:#}");
    assert_eq!(telemetry["cost_usd"], session["cost_usd"], "{view:#}");
    // The second call crossed $0.05; at most one more was made.
    assert!((2..=3).contains(&calls), "{calls} calls: {view:#}");
}

#[test]
fn claude_over_its_budget_without_telemetry_is_stopped_on_its_lines_priced() {
    let Some(claude) = agent_clis::find("claude") else {
        return;
    };
    let (view, calls) = over_budget(&claude, "off");
    // The CLI prints no cost until its result: wrangle priced its lines.
    assert_eq!(view["session"]["cost_source"], "prices", "{view:#}");
    assert!(view["session"]["telemetry"].is_null(), "{view:#}");
    assert!((2..=3).contains(&calls), "{calls} calls: {view:#}");
}

#[test]
fn codex_retrying_in_silence_says_so_and_counts_each_call_once() {
    let Some(codex) = agent_clis::find("codex") else {
        return;
    };
    // Four 503s: Codex retries them with nothing on stdout, backing off
    // 0.2, 0.4, 0.8 and 1.6 s, some 3 s of silence that only its
    // telemetry explains. The idle timeout is shorter than that, but not
    // shorter than Codex's own start before its first word (over 1 s on a
    // busy machine).
    let bench = Bench::new(codex_echo(4));
    let home = &bench.home;
    bench.codex_with(
        &codex,
        "patient",
        "Run echo wrangled",
        &["--idle-timeout", "2s", "--on-hang", "stop"],
    );
    let seen = bench.watch("patient");
    let view = home.inspect("patient");
    let why = format!("{seen:#?}\n{}", bench.describe("patient"));
    assert_eq!(view["state"], "completed", "{why}");
    assert!(seen.iter().all(|(health, _)| health != "hung"), "{why}");
    assert!(
        seen.iter()
            .any(|(_, reason)| reason.contains("retrying the API (attempt")),
        "{why}"
    );
    // Each call once: the two that went through, as stdout's total says.
    let telemetry = &view["session"]["telemetry"];
    assert_eq!(telemetry["calls"], 2, "{why}");
    assert_eq!(tokens(&view), (1700, 80, 9000, 0), "{why}");
    let t = &telemetry["tokens"];
    assert_eq!(
        (
            t["input"].as_u64(),
            t["output"].as_u64(),
            t["cache_read"].as_u64()
        ),
        (Some(1700), Some(80), Some(9000)),
        "{why}"
    );
    assert!(telemetry["difference"].is_null(), "{why}");
}

#[test]
fn a_resumed_codex_thread_counts_only_its_own_calls() {
    let Some(codex) = agent_clis::find("codex") else {
        return;
    };
    // The first run: a command and an answer; the resumed run: one more
    // answer.
    let bench = Bench::new(|request: &Request, index| match index {
        0 if request.tool_results() == 0 => Reply::Bash {
            command: "echo wrangled".into(),
            usage: usage(1000, 50, 4000, 0),
        },
        0 | 1 => Reply::Text {
            text: "It printed wrangled.".into(),
            usage: usage(700, 30, 5000, 0),
        },
        _ => Reply::Text {
            text: "Still wrangled.".into(),
            usage: usage(400, 20, 8000, 0),
        },
    });
    let home = &bench.home;
    bench.codex(&codex, "first", "Run echo wrangled");
    home.wrangle(&["wait", "first"]);
    let thread = bench.line_of("first", "thread.started", false)["thread_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no thread: {}", bench.describe("first")))
        .to_string();
    bench.codex_exec(&codex, "again", &["resume", &thread, "Say it again"], &[]);
    home.wrangle(&["wait", "again"]);
    let view = home.inspect("again");
    let why = bench.describe("again");
    assert_eq!(view["state"], "completed", "{why}");
    assert_eq!(view["session"]["session_id"], thread.as_str(), "{why}");
    // Its output's total is the thread's: both runs.
    let turn = bench.final_line("again", "turn.completed");
    assert_eq!(
        turn["usage"]["output_tokens"], 100,
        "the thread's total: {why}"
    );
    // The run's own figures are its one call, as its telemetry says, and
    // the difference is said.
    assert_eq!(tokens(&view), (400, 20, 8000, 0), "{why}");
    assert_eq!(view["session"]["figures_from_telemetry"], true, "{why}");
    let telemetry = &view["session"]["telemetry"];
    assert_eq!(telemetry["calls"], 1, "{why}");
    let difference = telemetry["difference"].as_str().unwrap_or_default();
    assert!(difference.contains("earlier runs"), "{why}");
    // The ledger: each of the three calls once.
    let ledger = home.json(&["cost", "--json"]);
    let total = &ledger["total"]["tokens"];
    assert_eq!(
        (
            total["input"].as_u64(),
            total["output"].as_u64(),
            total["cache_read"].as_u64()
        ),
        (Some(2100), Some(100), Some(17000)),
        "{ledger:#}"
    );
    assert_eq!(
        as_tuple(bench.server.usage_served()),
        (2100, 100, 17000, 0),
        "the server served three calls"
    );
}
