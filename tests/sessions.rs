//! Agents that talk: real transcripts of the agent CLIs (AGENT-FORMATS.md
//! §9), replayed at a realistic pace by a fake `claude` / `codex`, read by
//! the daemon's adapters into each agent's session: tokens and cost to the
//! exact totals, waiting for a person, retries that are not hangs, an
//! error result that fails the run, and totals that survive a daemon
//! SIGKILL in the middle of a transcript.

mod common;

use common::agents::{fake, fast_home, fixture, replay, tokens, transcript, CLAUDE_ARGS};
use common::events::stored;
use common::{crash, marker, wait_until, Home, SOON};
use serde_json::Value;
use std::time::Duration;

#[test]
fn a_claude_transcript_gives_its_exact_totals_cost_and_result() {
    let home = fast_home();
    let claude = fake("claude");
    let file = fixture("claude-stream.jsonl");
    replay(&home, "review", &claude, &CLAUDE_ARGS, &file, "0.05", &[]);
    home.wrangle(&["wait", "review"]);
    let view = home.inspect("review");
    assert_eq!(view["state"], "completed", "{view}");
    let session = &view["session"];
    assert_eq!(session["adapter"], "claude");
    assert_eq!(
        session["adapter_reason"],
        "auto: the program is claude with --output-format stream-json"
    );
    assert_eq!(
        session["session_id"],
        "d49d1efb-0239-4aa2-a2b0-f6c86b2320a6"
    );
    assert_eq!(tokens(&view), (12, 932, 80746, 8982));
    assert_eq!(session["cost_usd"], 0.0745213);
    assert_eq!(session["cost_source"], "agent");
    assert_eq!(session["result"]["success"], true);
    assert_eq!(session["lines"], 9);
    assert_eq!(session["other_lines"], 0);
    // Its events: who it is, what it used, how it ended, once.
    let events: Vec<Value> = stored(&home, 0)
        .into_iter()
        .filter(|event| event["agent"]["name"] == "review")
        .collect();
    let results: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "agent.result")
        .collect();
    assert_eq!(results.len(), 1, "{events:#?}");
    assert_eq!(results[0]["cost_usd"], 0.0745213);
    assert_eq!(results[0]["tokens"]["output"], 932);
    assert!(events.iter().any(|e| e["type"] == "agent.session"));
    let usage_times: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "agent.usage")
        .map(|e| common::rfc3339(&e["time"], "time"))
        .collect();
    for pair in usage_times.windows(2) {
        assert!(
            (pair[1] - pair[0]).num_milliseconds() >= 5000,
            "usage more than once every five seconds"
        );
    }
    // A retry is no hang and waiting never came.
    assert!(
        !events.iter().any(|e| e["type"] == "agent.health"),
        "{events:#?}"
    );
}

#[test]
fn a_daemon_sigkill_mid_transcript_leaves_the_same_totals() {
    let home = fast_home();
    let claude = fake("claude");
    let file = fixture("claude-stream.jsonl");
    replay(&home, "crashy", &claude, &CLAUDE_ARGS, &file, "0.4", &[]);
    wait_until(SOON, "the adapter has read a few lines", || {
        home.inspect("crashy")["session"]["lines"]
            .as_u64()
            .unwrap_or(0)
            >= 3
    });
    crash::kill_daemon(&home);
    std::thread::sleep(Duration::from_millis(600));
    home.ok(&["daemon", "--sample-interval", "100ms"]);
    home.wrangle(&["wait", "crashy"]);
    let view = home.inspect("crashy");
    assert_eq!(tokens(&view), (12, 932, 80746, 8982), "{view}");
    assert_eq!(view["session"]["cost_usd"], 0.0745213);
    assert_eq!(view["session"]["lines"], 9, "no line read twice");
    assert_eq!(view["session"]["turns"], 3);
    // The ledger counted nothing twice either.
    let ledger = home.json(&["cost", "--json"]);
    let spent = ledger["total"]["cost_usd"].as_f64().unwrap();
    assert!((spent - 0.0745213).abs() < 1e-9, "{ledger}");
    assert_eq!(ledger["total"]["tokens"]["cache_read"], 80746);
}

#[test]
fn waiting_shows_for_a_permission_request_and_clears_when_answered() {
    let home = fast_home();
    let claude = fake("claude");
    let file = transcript(
        &home,
        "ask.jsonl",
        &[
            r#"{"type":"system","subtype":"init","session_id":"s1","model":"claude-sonnet-4-5"}"#,
            r#"{"type":"control_request","request_id":"r1","request":{"subtype":"can_use_tool","tool_name":"Bash","input":{"command":"rm -rf build"},"tool_use_id":"t1"}}"#,
            "#sleep 3",
            r#"{"type":"assistant","message":{"id":"m1","model":"claude-sonnet-4-5","content":[{"type":"text","text":"done"}],"usage":{"input_tokens":10,"output_tokens":5}},"session_id":"s1"}"#,
            "#sleep 1",
        ],
    );
    replay(&home, "asker", &claude, &CLAUDE_ARGS, &file, "0.05", &[]);
    wait_until(SOON, "the agent waits for a person", || {
        home.inspect("asker")["health"] == "waiting"
    });
    let view = home.inspect("asker");
    assert_eq!(
        view["health_reason"],
        "waiting for a person: permission to use Bash: rm -rf build"
    );
    assert_eq!(
        view["session"]["waiting"],
        "permission to use Bash: rm -rf build"
    );
    wait_until(SOON, "the permission was answered", || {
        home.inspect("asker")["session"]["waiting"].is_null()
    });
    assert_eq!(home.inspect("asker")["health"], "healthy");
    let kinds: Vec<Value> = stored(&home, 0)
        .into_iter()
        .filter(|e| e["type"] == "agent.waiting" || e["type"] == "agent.health")
        .collect();
    assert_eq!(kinds[0]["type"], "agent.waiting");
    assert_eq!(kinds[0]["waiting"], "permission to use Bash: rm -rf build");
    assert!(kinds
        .iter()
        .any(|e| e["type"] == "agent.waiting" && e["waiting"].is_null()));
    assert!(kinds
        .iter()
        .any(|e| e["type"] == "agent.health" && e["to"] == "waiting"));
}

#[test]
fn a_retried_api_is_not_hung_and_a_silence_nothing_explains_is() {
    let home = fast_home();
    let claude = fake("claude");
    let file = transcript(
        &home,
        "retry.jsonl",
        &[
            r#"{"type":"system","subtype":"init","session_id":"s2","model":"claude-sonnet-4-5"}"#,
            r#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":10,"retry_delay_ms":600,"error_status":529,"error":"overloaded","session_id":"s2"}"#,
            "#sleep 3",
            r#"{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"s2","total_cost_usd":0.01,"usage":{"input_tokens":1,"output_tokens":1}}"#,
        ],
    );
    // Stopped if hung: a retried API must not be taken for a hang.
    replay(
        &home,
        "retrying",
        &claude,
        &CLAUDE_ARGS,
        &file,
        "0.05",
        &["--idle-timeout", "1s", "--on-hang", "stop"],
    );
    let silent = home.run(&[
        "--name",
        "silent",
        "--idle-timeout",
        "1s",
        "--",
        "sleep",
        &marker(),
    ]);
    wait_until(SOON, "the silent agent is hung", || {
        home.inspect(&silent)["health"] == "hung"
    });
    // The retrying agent's own silence may pass its timeout a tick later
    // than the other's (its fake took longer to print): wait until its
    // health says something, whatever that is.
    wait_until(
        SOON,
        "the retrying agent is silent past its timeout",
        || {
            let view = home.inspect("retrying");
            view["health"] != "healthy" || !view["health_reason"].is_null()
        },
    );
    let during = home.inspect("retrying");
    assert_eq!(during["health"], "healthy", "{during}");
    let reason = during["health_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("but retrying the API (attempt 1 of 10)"),
        "{reason}"
    );
    home.wrangle(&["wait", "retrying"]);
    let view = home.inspect("retrying");
    assert_eq!(view["state"], "completed", "{view}");
}

#[test]
fn an_error_result_fails_the_run_whatever_its_exit_code() {
    let home = fast_home();
    let claude = fake("claude");
    let file = transcript(
        &home,
        "error.jsonl",
        &[
            r#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 503","session_id":"s3","total_cost_usd":0.002}"#,
        ],
    );
    replay(&home, "erring", &claude, &CLAUDE_ARGS, &file, "0.05", &[]);
    assert_eq!(home.wrangle(&["wait", "erring"]).code(), 0, "it exited 0");
    let view = home.inspect("erring");
    assert_eq!(view["state"], "failed", "{view}");
    let reason = view["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("API Error: 503 (the agent's result is an error"),
        "{reason}"
    );
}

#[test]
fn a_codex_thread_counts_its_growth_and_prices_the_model_it_was_given() {
    let home = fast_home();
    let codex = fake("codex");
    let file = fixture("codex-exec.jsonl");
    let args = ["exec", "--json", "-m", "gpt-5", "find the readme"];
    replay(&home, "coder", &codex, &args, &file, "0.05", &[]);
    home.wrangle(&["wait", "coder"]);
    let view = home.inspect("coder");
    assert_eq!(view["session"]["adapter"], "codex");
    assert_eq!(tokens(&view), (6134, 128, 31360, 0));
    let expected = (6134.0 * 1.25 + 31360.0 * 0.125 + 128.0 * 10.0) / 1e6;
    let cost = view["session"]["cost_usd"].as_f64().unwrap();
    assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
    assert_eq!(view["session"]["cost_source"], "prices");
    assert_eq!(view["session"]["models"][0], "gpt-5");
}

#[test]
fn the_adapter_can_be_chosen_or_refused() {
    let home = Home::new();
    let claude = fake("claude");
    let file = fixture("claude-stream.jsonl");
    replay(
        &home,
        "plain",
        &claude,
        &CLAUDE_ARGS,
        &file,
        "0.01",
        &["--adapter", "none", "--telemetry", "off"],
    );
    home.wrangle(&["wait", "plain"]);
    assert!(home.inspect("plain")["session"].is_null());
    // With its telemetry received, it has a session, but no line of its
    // output is read for it.
    replay(
        &home,
        "told",
        &claude,
        &CLAUDE_ARGS,
        &file,
        "0.01",
        &["--adapter", "none"],
    );
    home.wrangle(&["wait", "told"]);
    let session = &home.inspect("told")["session"];
    assert_eq!(session["adapter"], "none", "{session}");
    assert_eq!(session["lines"], 0, "{session}");
    assert!(session["telemetry"]["endpoint"].is_string(), "{session}");
    let output = home.fails(&["run", "--adapter", "claud", "--", "true"]);
    assert!(
        output.stderr.contains("unknown adapter \"claud\""),
        "{}",
        output.stderr
    );
    // The API says the same.
    let answer = home.http(
        "POST",
        "/v1/agents",
        Some("application/json"),
        r#"{"command": ["true"], "adapter": "gpt"}"#,
    );
    assert_eq!(answer.status, 400, "{}", answer.body);
}

#[test]
fn the_adapter_reads_on_across_rotated_logs() {
    let home = fast_home();
    // 3000 lines of about 40 bytes into files of 4K: some thirty rotations
    // while the adapter reads.
    let script = r#"i=1; while [ $i -le 3000 ]; do echo "{\"message\":\"step $i\",\"tokens\":$i}"; i=$((i+1)); done; echo '{"result":{"success":true,"message":"fin"}}'"#;
    let id = home.run(&[
        "--adapter",
        "jsonl",
        "--log-max-size",
        "4K",
        "--log-max-files",
        "1000",
        "--",
        "sh",
        "-c",
        script,
    ]);
    home.ok(&["wait", &id]);
    let session = &home.inspect(&id)["session"];
    assert_eq!(session["lines"], 3001, "{session}");
    assert_eq!(
        session["other_lines"], 0,
        "no line cut where a file ends: {session}"
    );
    assert_eq!(session["result"]["message"], "fin", "{session}");
    assert_eq!(session["tokens"]["output"], 3000, "{session}");
}
