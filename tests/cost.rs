//! What agents spend, held to account: budgets that stop an agent (or a
//! group) within a line of crossing them, agents stopped for lingering
//! after their final result, and the cost ledger that outlives `rm` and
//! is summed by `wrangle cost`, `summary`, `ps` and `/metrics`.

mod common;

use common::agents::{fake, fast_home, fixture, replay, transcript, CLAUDE_ARGS};
use common::events::stored;
use common::{procfs, wait_until, Home, SOON};
use serde_json::Value;

/// One Claude message of 5000 input tokens and 1 output token: $0.015015
/// at claude-sonnet-4-5's $3 and $15 per million.
const MESSAGE_USD: f64 = 0.015015;

/// A Claude transcript of `messages` such messages, then a result.
fn spending_transcript(home: &Home, name: &str, messages: usize) -> String {
    let mut lines = vec![
        r#"{"type":"system","subtype":"init","session_id":"b1","model":"claude-sonnet-4-5"}"#
            .to_string(),
    ];
    for n in 1..=messages {
        lines.push(format!(
            r#"{{"type":"assistant","message":{{"id":"msg_{n}","model":"claude-sonnet-4-5","content":[{{"type":"text","text":"step {n}"}}],"usage":{{"input_tokens":5000,"output_tokens":1}}}},"session_id":"b1"}}"#
        ));
    }
    lines.push(r#"{"type":"result","subtype":"success","is_error":false,"result":"done","session_id":"b1"}"#.to_string());
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    transcript(home, name, &lines)
}

/// A delay between lines that no other process has in its command line
/// (`sleep 0.4<pid>`), to look for the replayer's children in `/proc`.
fn unique_delay() -> String {
    format!("0.4{:07}", std::process::id())
}

/// Assistant lines the agent wrote to its stdout log.
fn messages_written(home: &Home, agent: &str) -> usize {
    let log = home.inspect(agent)["stdout_log"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(r#""type":"assistant""#))
        .count()
}

/// `wrangle cost ARGS --json`.
fn cost(home: &Home, args: &[&str]) -> Value {
    let mut full = vec!["cost"];
    full.extend_from_slice(args);
    full.push("--json");
    home.json(&full)
}

#[test]
fn a_budget_stops_the_agent_within_a_line_of_crossing_it_and_its_tree_is_gone() {
    let home = fast_home();
    let claude = fake("claude");
    let file = spending_transcript(&home, "spend.jsonl", 10);
    let delay = unique_delay();
    replay(
        &home,
        "spender",
        &claude,
        &CLAUDE_ARGS,
        &file,
        &delay,
        &["--budget-usd", "0.05"],
    );
    let pid = home.pid("spender");
    home.wrangle(&["wait", "spender"]);
    let view = home.inspect("spender");
    assert_eq!(view["state"], "failed", "{view}");
    assert_eq!(view["cause"], "budget", "{view}");
    let reason = view["reason"].as_str().unwrap();
    assert!(reason.starts_with("over budget: spent $0.06"), "{reason}");
    // The 4th message crossed $0.05; at most one more was written.
    let written = messages_written(&home, "spender");
    assert!((4..=5).contains(&written), "{written} messages written");
    let spent = view["total_cost_usd"].as_f64().unwrap();
    assert!(
        (0.05..=0.05 + 2.0 * MESSAGE_USD).contains(&spent),
        "spent {spent}"
    );
    // The whole tree is gone, the replayer's sleeps with it.
    assert!(!procfs::is_alive(pid), "the main process lives on");
    assert!(procfs::with_marker(&delay).is_empty(), "a sleep lives on");
    let exceeded: Vec<Value> = stored(&home, 0)
        .into_iter()
        .filter(|event| event["type"] == "agent.budget_exceeded")
        .collect();
    assert_eq!(exceeded.len(), 1, "{exceeded:#?}");
    assert_eq!(exceeded[0]["budget"], "--budget-usd $0.0500");
    assert_eq!(exceeded[0]["agent"]["name"], "spender");
    // It is not restarted, whatever its policy: that would only spend more.
    assert_eq!(view["run"], 1);
    let refused = home.fails(&["restart", "spender"]);
    assert!(
        refused.stderr.contains("agent spender is over budget"),
        "{}",
        refused.stderr
    );
    assert_eq!(home.inspect("spender")["run"], 1);
}

#[test]
fn a_token_budget_counts_every_kind_of_token() {
    let home = fast_home();
    let claude = fake("claude");
    let file = spending_transcript(&home, "tokens.jsonl", 10);
    replay(
        &home,
        "counter",
        &claude,
        &CLAUDE_ARGS,
        &file,
        "0.4",
        &["--budget-tokens", "12000", "--restart", "always"],
    );
    home.wrangle(&["wait", "counter"]);
    let view = home.inspect("counter");
    assert_eq!(view["cause"], "budget", "{view}");
    assert_eq!(view["run"], 1, "a budget stop is not restarted: {view}");
    let reason = view["reason"].as_str().unwrap();
    assert!(reason.contains("tokens of its 12000"), "{reason}");
    let written = messages_written(&home, "counter");
    assert!((3..=4).contains(&written), "{written} messages written");
}

#[test]
fn a_group_budget_stops_every_running_agent_of_the_group() {
    let home = fast_home();
    let claude = fake("claude");
    home.ok(&["group", "set", "team", "--budget-usd", "0.05"]);
    let file = spending_transcript(&home, "team.jsonl", 20);
    for name in ["team-a", "team-b"] {
        replay(
            &home,
            name,
            &claude,
            &CLAUDE_ARGS,
            &file,
            "0.5",
            &["--group", "team"],
        );
    }
    let outsider = spending_transcript(&home, "outsider.jsonl", 3);
    replay(
        &home,
        "outsider",
        &claude,
        &CLAUDE_ARGS,
        &outsider,
        "0.5",
        &[],
    );
    for name in ["team-a", "team-b"] {
        home.wrangle(&["wait", name]);
        let view = home.inspect(name);
        assert_eq!(view["cause"], "budget", "{view}");
        assert!(
            view["reason"]
                .as_str()
                .unwrap()
                .starts_with("over budget: group team spent"),
            "{view}"
        );
    }
    home.wrangle(&["wait", "outsider"]);
    assert_eq!(home.inspect("outsider")["state"], "completed");
    let groups = home.json(&["group", "ls", "--json"]);
    let team = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|group| group["name"] == "team")
        .unwrap()
        .clone();
    assert_eq!(team["budget_usd"], 0.05);
    let spent = team["spent_usd"].as_f64().unwrap();
    assert!(spent >= 0.05, "{team}");
    // Two agents at a line each per tick: each at most a line past.
    assert!(spent <= 0.05 + 4.0 * MESSAGE_USD, "{team}");
    // A new agent of the spent group is refused, and nothing is made.
    let refused = home.fails(&["run", "--group", "team", "--name", "late", "--", "true"]);
    assert!(
        refused.stderr.contains("group team has spent $0.0"),
        "{}",
        refused.stderr
    );
    assert!(home.ps_all().iter().all(|agent| agent["name"] != "late"));
    // A raised budget lets it in.
    home.ok(&["group", "set", "team", "--budget-usd", "5"]);
    home.run(&["--group", "team", "--name", "late", "--", "true"]);
}

#[test]
fn an_agent_that_lingers_after_its_result_is_stopped_and_ends_as_its_result_says() {
    let home = fast_home();
    let claude = fake("claude");
    let file = transcript(
        &home,
        "linger.jsonl",
        &[
            r#"{"type":"system","subtype":"init","session_id":"l1","model":"claude-sonnet-4-5"}"#,
            r#"{"type":"result","subtype":"success","is_error":false,"result":"all done","session_id":"l1","total_cost_usd":0.01}"#,
            "#sleep 120",
        ],
    );
    replay(
        &home,
        "lingerer",
        &claude,
        &CLAUDE_ARGS,
        &file,
        "0.05",
        &["--linger", "1s"],
    );
    let started = std::time::Instant::now();
    home.wrangle(&["wait", "lingerer"]);
    let view = home.inspect("lingerer");
    assert_eq!(view["state"], "completed", "{view}");
    assert_eq!(view["cause"], "lingered", "{view}");
    assert!(
        view["reason"]
            .as_str()
            .unwrap()
            .starts_with("lingered: still running 1s after its final result"),
        "{view}"
    );
    assert!(started.elapsed() < SOON, "stopped long after its linger");
    // `--linger never` leaves it be.
    replay(
        &home,
        "patient",
        &claude,
        &CLAUDE_ARGS,
        &file,
        "0.05",
        &["--linger", "never"],
    );
    wait_until(SOON, "its result is read", || {
        !home.inspect("patient")["session"]["result"].is_null()
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(home.inspect("patient")["state"], "running");
}

#[test]
fn the_ledger_outlives_rm_and_sums_by_agent_model_group_and_day() {
    let home = fast_home();
    let claude = fake("claude");
    let file = fixture("claude-stream.jsonl");
    replay(
        &home,
        "review",
        &claude,
        &CLAUDE_ARGS,
        &file,
        "0.02",
        &["--group", "reviews"],
    );
    home.wrangle(&["wait", "review"]);
    let spent = home.inspect("review")["total_cost_usd"].as_f64().unwrap();
    assert!((spent - 0.0745213).abs() < 1e-9, "{spent}");
    let ps = home.ok(&["ps", "--all"]);
    assert!(ps.contains("$0.0745"), "{ps}");
    home.ok(&["rm", "review"]);

    let by_agent = cost(&home, &[]);
    assert_eq!(by_agent["by"], "agent");
    assert_eq!(by_agent["rows"][0]["key"], "review");
    let total = by_agent["total"]["cost_usd"].as_f64().unwrap();
    assert!((total - 0.0745213).abs() < 1e-9, "{by_agent}");
    assert_eq!(by_agent["total"]["tokens"]["output"], 932);
    assert_eq!(by_agent["total"]["runs"], 1);

    // Each model at the cost the agent gave for it.
    let by_model = cost(&home, &["--by", "model"]);
    let models: Vec<(String, f64)> = by_model["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["key"].as_str().unwrap().to_string(),
                row["cost_usd"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(models.len(), 3, "{by_model}");
    assert_eq!(models[0].0, "claude-sonnet-4-5-20250929");
    assert!((models[0].1 - 0.0553014).abs() < 1e-9, "{models:?}");
    let by_group = cost(&home, &["--by", "group"]);
    assert_eq!(by_group["rows"][0]["key"], "reviews");
    let today = cost(&home, &["--by", "day", "--since", "today"]);
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(today["rows"][0]["key"], day.as_str(), "{today}");
    let text = home.ok(&["cost", "--by", "model"]);
    assert!(text.contains("claude-opus-4-5-20251101"), "{text}");
    assert!(text.contains("TOTAL"), "{text}");

    // The summary's spend, and /metrics, say the same.
    let summary = home.json(&["summary", "--json"]);
    assert!((summary["spent_today_usd"].as_f64().unwrap() - 0.0745213).abs() < 1e-9);
    let metrics = home.http("GET", "/metrics", None, "");
    assert!(
        metrics.body.contains("wrangle_cost_usd_total 0.0745213"),
        "{}",
        metrics.body
    );
}

#[test]
fn bad_budgets_and_queries_are_refused_and_change_nothing() {
    let home = Home::new();
    home.ok(&["daemon"]);
    for (args, said) in [
        (
            vec!["run", "--budget-usd", "-1", "--", "true"],
            "invalid budget",
        ),
        (
            vec!["run", "--budget-usd", "lots", "--", "true"],
            "invalid budget",
        ),
        (
            vec!["run", "--budget-tokens", "0", "--", "true"],
            "invalid token budget",
        ),
        (
            vec!["run", "--linger", "soon", "--", "true"],
            "invalid linger",
        ),
        (vec!["cost", "--by", "cost"], "invalid --by"),
        (vec!["cost", "--since", "yesterdayish"], "invalid --since"),
        (
            vec!["group", "set", "g", "--budget-usd", "0"],
            "invalid budget",
        ),
    ] {
        let output = home.fails(&args);
        assert!(output.stderr.contains(said), "{args:?}: {}", output.stderr);
    }
    for body in [
        r#"{"command": ["true"], "budget_usd": 0}"#,
        r#"{"command": ["true"], "budget_usd": "cheap"}"#,
        r#"{"command": ["true"], "budget_tokens": -5}"#,
        r#"{"command": ["true"], "linger": "later"}"#,
    ] {
        let answer = home.http("POST", "/v1/agents", Some("application/json"), body);
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
    }
    let answer = home.http("PUT", "/v1/groups/g", Some("application/json"), "{}");
    assert_eq!(answer.status, 400, "{}", answer.body);
    let answer = home.http("GET", "/v1/cost?by=agents", None, "");
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(home.ps_all().is_empty(), "nothing was created");
    assert_eq!(home.json(&["group", "ls", "--json"]), serde_json::json!([]));
}
