//! The adapters against the fixture transcripts of AGENT-FORMATS.md §9
//! (real lines of the CLIs), checked against the totals worked out there.

use super::*;
use wrangle_wire::TokenCounts;

const CLAUDE: &str = include_str!("../../../../tests/fixtures/agents/claude-stream.jsonl");
const CODEX: &str = include_str!("../../../../tests/fixtures/agents/codex-exec.jsonl");

fn at() -> DateTime<Utc> {
    Utc::now()
}

fn tokens(input: u64, output: u64, cache_read: u64, cache_write: u64) -> TokenCounts {
    TokenCounts {
        input,
        output,
        cache_read,
        cache_write,
    }
}

fn reader(kind: AdapterKind, model: Option<&str>) -> Reader {
    Reader::new(kind, "test".into(), model.map(str::to_string))
}

fn feed(reader: &mut Reader, lines: &str) -> Vec<Changed> {
    feed_at(reader, lines, at())
}

/// Feeds `lines` as if all were written at `at`.
fn feed_at(reader: &mut Reader, lines: &str, at: DateTime<Utc>) -> Vec<Changed> {
    lines
        .lines()
        .map(|line| reader.line(line.as_bytes(), at))
        .collect()
}

#[test]
fn claude_counts_each_message_once_then_takes_the_results_totals() {
    let mut claude = reader(AdapterKind::Claude, None);
    let lines: Vec<&str> = CLAUDE.lines().collect();
    assert_eq!(lines.len(), 9);
    feed(&mut claude, &lines[..7].join("\n"));
    let session = claude.session();
    assert_eq!(
        session.session_id.as_deref(),
        Some("d49d1efb-0239-4aa2-a2b0-f6c86b2320a6")
    );
    // Line 7: an API retry, neither hung nor failed.
    let retry = session.retrying.as_ref().expect("retrying");
    assert_eq!((retry.attempt, retry.max), (1, Some(10)));
    assert_eq!(retry.error.as_deref(), Some("529 overloaded"));
    assert_eq!(session.tool_calls, 2);
    assert!(session.tool.is_none(), "the tool results came");
    feed(&mut claude, lines[7]);
    let session = claude.session();
    assert!(session.retrying.is_none());
    // Live: each message id once (lines 2-4 are one message).
    assert_eq!(session.total_tokens(), tokens(6, 583, 42853, 8982));
    assert_eq!(session.turns, 2);
    let prices = Prices::shipped();
    let live = claude.view(&prices, None);
    assert_eq!(
        live.cost_source,
        Some(wrangle_wire::session::CostSource::Prices)
    );
    let changed = claude.line(lines[8].as_bytes(), at());
    assert!(changed.result && changed.usage);
    let view = claude.view(&prices, None);
    assert_eq!(view.tokens, tokens(12, 932, 80746, 8982));
    assert_eq!(
        view.tokens_by_model["claude-opus-4-5-20251101"],
        tokens(4, 224, 22959, 0)
    );
    assert_eq!(
        view.tokens_by_model["claude-haiku-4-5-20251001"],
        tokens(2, 125, 14934, 0)
    );
    assert_eq!(view.cost_usd, Some(0.0745213));
    assert_eq!(
        view.cost_source,
        Some(wrangle_wire::session::CostSource::Agent)
    );
    assert_eq!(view.models[0], "claude-sonnet-4-5-20250929");
    assert_eq!(view.models.len(), 3);
    assert_eq!(view.turns, 3);
    let result = view.result.expect("a result");
    assert!(result.success);
    assert!(result.message.unwrap().starts_with("Now let me verify"));
    assert_eq!(view.waiting, None);
    assert_eq!((view.lines, view.other_lines), (9, 0));
    // The price table, fed the same tokens, gives the agent's own figure.
    let priced = prices.cost(&claude.session().tokens).unwrap().unwrap();
    assert!((priced - 0.0745213).abs() < 1e-9, "{priced}");
}

#[test]
fn claude_errors_denials_permission_requests_and_rate_limits() {
    let mut claude = reader(AdapterKind::Claude, None);
    // An error is an error even where the subtype says success.
    claude.line(
        br#"{"type":"result","subtype":"success","is_error":true,"result":"API Error: 503","session_id":"s"}"#,
        at(),
    );
    let result = claude.session().result.clone().unwrap();
    assert!(!result.success);
    assert_eq!(result.message.as_deref(), Some("API Error: 503"));

    let mut claude = reader(AdapterKind::Claude, None);
    claude.line(br#"{"type":"control_request","request_id":"f5","request":{"subtype":"can_use_tool","tool_name":"Bash","input":{"command":"./gradlew :web:testApi","timeout":300000},"tool_use_id":"toolu_01"}}"#, at());
    assert_eq!(
        claude.session().waiting.as_deref(),
        Some("permission to use Bash: ./gradlew :web:testApi")
    );
    assert!(claude.session().busy(at()).unwrap().starts_with("waiting"));
    claude.line(
        br#"{"type":"control_cancel_request","request_id":"f5"}"#,
        at(),
    );
    assert_eq!(claude.session().waiting, None);

    claude.line(br#"{"type":"rate_limit_event","rate_limit_info":{"status":"rejected","resetsAt":4102444800,"rateLimitType":"five_hour"},"session_id":"s"}"#, at());
    let until = claude.session().rate_limited_until.unwrap();
    assert_eq!(until.timestamp(), 4102444800);
    claude.line(
        br#"{"type":"rate_limit_event","rate_limit_info":{"status":"allowed"},"session_id":"s"}"#,
        at(),
    );
    assert_eq!(claude.session().rate_limited_until, None);

    // A tool that was not granted: done, blocked on permission.
    claude.line(br#"{"type":"result","subtype":"error_max_budget_usd","is_error":true,"total_cost_usd":0.0609,"errors":["Reached maximum budget ($0.05)"],"usage":{"input_tokens":10000,"output_tokens":30},"modelUsage":{"claude-sonnet-4-5":{"inputTokens":20000,"outputTokens":60,"cacheReadInputTokens":0,"cacheCreationInputTokens":0,"costUSD":0.0609}},"permission_denials":[{"tool_name":"Write","tool_use_id":"t","tool_input":{}}]}"#, at());
    let session = claude.session();
    assert_eq!(session.total_tokens(), tokens(20000, 60, 0, 0));
    assert_eq!(session.reported_cost_usd, Some(0.0609));
    let result = session.result.clone().unwrap();
    assert!(!result.success);
    assert_eq!(
        result.message.as_deref(),
        Some("Reached maximum budget ($0.05)")
    );
    assert_eq!(
        session.waiting.as_deref(),
        Some("permission for Write was denied")
    );
}

#[test]
fn claude_shows_a_running_bash_tool_between_task_lines() {
    let mut claude = reader(AdapterKind::Claude, None);
    claude.line(br#"{"type":"system","subtype":"task_started","task_id":"b1","tool_use_id":"toolu_01","description":"run sleep","task_type":"local_bash"}"#, at());
    assert_eq!(claude.session().busy(at()).as_deref(), Some("running Bash"));
    claude.line(br#"{"type":"system","subtype":"task_notification","task_id":"b1","tool_use_id":"toolu_01","status":"completed"}"#, at());
    assert_eq!(claude.session().busy(at()), None);
}

#[test]
fn codex_counts_the_growth_of_a_threads_total() {
    let mut codex = reader(AdapterKind::Codex, None);
    let lines: Vec<&str> = CODEX.lines().collect();
    feed(&mut codex, &lines[..4].join("\n"));
    let tool = codex.session().tool.clone().expect("a command runs");
    assert_eq!(tool.detail.as_deref(), Some("bash -lc ls"));
    feed(&mut codex, &lines[4..7].join("\n"));
    let session = codex.session();
    assert_eq!(session.total_tokens(), tokens(315, 122, 24448, 0));
    assert_eq!(
        session.last_text.as_deref(),
        Some("Yep — there’s a `README.md` in the repository root.")
    );
    assert!(session.result.as_ref().unwrap().success);
    feed(&mut codex, &lines[7..].join("\n"));
    let view = codex.view(&Prices::shipped(), None);
    // The thread's total, not both lines summed.
    assert_eq!(view.tokens, tokens(6134, 128, 31360, 0));
    assert_eq!(view.turns, 2);
    assert_eq!(
        view.session_id.as_deref(),
        Some("0199a213-81c0-7800-8aa1-bbab2a035a53")
    );
    // No model named anywhere: no cost, not $0, not a guess.
    assert_eq!(view.cost_usd, None);
    assert!(view.cost_note.unwrap().contains("no model is named"));

    // With the model the run's arguments name, priced from the table.
    let mut codex = reader(AdapterKind::Codex, Some("gpt-5"));
    feed(&mut codex, CODEX);
    let view = codex.view(&Prices::shipped(), None);
    let expected = (6134.0 * 1.25 + 31360.0 * 0.125 + 128.0 * 10.0) / 1e6;
    assert!((view.cost_usd.unwrap() - expected).abs() < 1e-12);
    assert_eq!(view.models, ["gpt-5"]);
}

#[test]
fn codex_retries_and_failures() {
    let mut codex = reader(AdapterKind::Codex, None);
    codex.line(
        br#"{"type":"error","message":"Reconnecting... 2/5 (stream disconnected)"}"#,
        at(),
    );
    let retry = codex.session().retrying.clone().unwrap();
    assert_eq!((retry.attempt, retry.max), (2, Some(5)));
    assert!(codex.session().result.is_none());
    codex.line(
        br#"{"type":"turn.failed","error":{"message":"unexpected status 401 Unauthorized"}}"#,
        at(),
    );
    let result = codex.session().result.clone().unwrap();
    assert!(!result.success);
    assert_eq!(
        result.message.as_deref(),
        Some("unexpected status 401 Unauthorized")
    );
}

#[test]
fn gemini_takes_its_tokens_from_the_result_and_reads_retries_on_stderr() {
    let mut gemini = reader(AdapterKind::Gemini, None);
    let transcript = r#"{"type":"init","timestamp":"2025-10-10T12:00:00.000Z","session_id":"test-session-123","model":"gemini-2.0-flash-exp"}
{"type":"message","timestamp":"2025-10-10T12:00:01.000Z","role":"assistant","content":"4","delta":true}
{"type":"message","timestamp":"2025-10-10T12:00:01.100Z","role":"assistant","content":"2","delta":true}
{"type":"tool_use","timestamp":"2025-10-10T12:00:02.000Z","tool_name":"Read","tool_id":"read-123","parameters":{"file_path":"/path/to/file.txt"}}"#;
    feed(&mut gemini, transcript);
    assert_eq!(gemini.session().last_text.as_deref(), Some("42"));
    assert_eq!(
        gemini.session().tool.as_ref().unwrap().detail.as_deref(),
        Some("/path/to/file.txt")
    );
    let changed = gemini.stderr_line(
        b"Attempt 1 failed with status 429. Retrying with backoff... _ApiError: {}",
        at(),
    );
    assert!(changed.attention && gemini.session().retrying.is_some());
    feed(
        &mut gemini,
        r#"{"type":"tool_result","timestamp":"2025-10-10T12:00:03.000Z","tool_id":"read-123","status":"error","error":{"type":"FILE_NOT_FOUND","message":"File not found"}}
{"type":"result","timestamp":"2025-10-10T12:00:04.000Z","status":"error","error":{"type":"MaxSessionTurnsError","message":"Maximum session turns exceeded"},"stats":{"total_tokens":100,"input_tokens":50,"output_tokens":50,"cached":0,"input":50,"duration_ms":1200,"tool_calls":0,"models":{}}}"#,
    );
    let view = gemini.view(&Prices::shipped(), None);
    assert!(view.retrying.is_none());
    assert_eq!(view.tokens, tokens(50, 50, 0, 0));
    assert_eq!(
        view.tokens_by_model.keys().next().map(String::as_str),
        Some("gemini-2.0-flash-exp")
    );
    let result = view.result.unwrap();
    assert!(!result.success);
    assert_eq!(
        result.message.as_deref(),
        Some("Maximum session turns exceeded")
    );
    // A model the table does not know: no cost, and why.
    assert_eq!(view.cost_usd, None);
    assert!(view.cost_note.unwrap().contains("gemini-2.0-flash-exp"));
}

#[test]
fn opencode_sums_each_steps_tokens_and_cost() {
    let mut opencode = reader(AdapterKind::Opencode, Some("anthropic/claude-sonnet-4-5"));
    let step = r#"{"type":"step_finish","timestamp":1755402002000,"sessionID":"ses_fe6da2c1effe8Yz","part":{"type":"step-finish","reason":"tool-calls","cost":0.0125,"tokens":{"total":5725,"input":5696,"output":4,"reasoning":25,"cache":{"read":0,"write":0}}}}"#;
    feed(
        &mut opencode,
        &format!("{step}\n{}", step.replace("tool-calls", "stop")),
    );
    let view = opencode.view(&Prices::shipped(), None);
    assert_eq!(view.session_id.as_deref(), Some("ses_fe6da2c1effe8Yz"));
    assert_eq!(view.tokens, tokens(11392, 58, 0, 0));
    assert_eq!(view.cost_usd, Some(0.025));
    assert!(view.result.unwrap().success);
}

#[test]
fn generic_json_lines_take_the_last_totals() {
    let mut jsonl = reader(AdapterKind::Jsonl, None);
    feed(
        &mut jsonl,
        r#"{"progress": 10, "message": "cloning", "model": "claude-haiku-4-5"}
{"tokens": {"input": 100, "output": 20, "cache_read": 0, "cache_write": 0}, "tool": "git"}
{"tokens": {"input": 300, "output": 40, "cache_read": 0, "cache_write": 0}, "tool": null, "waiting": "approve the push"}
{"cost_usd": 0.5, "progress": 100, "waiting": null, "result": {"success": true, "message": "pushed"}}"#,
    );
    let view = jsonl.view(&Prices::shipped(), None);
    assert_eq!(view.tokens, tokens(300, 40, 0, 0));
    assert_eq!(view.progress, Some(100.0));
    assert_eq!(view.cost_usd, Some(0.5));
    assert_eq!((view.tool_calls, view.tool, view.waiting), (1, None, None));
    assert_eq!(view.result.unwrap().message.as_deref(), Some("pushed"));
    let mut priced = reader(AdapterKind::Jsonl, None);
    priced.line(br#"{"model": "claude-haiku-4-5", "tokens": 1000000}"#, at());
    assert_eq!(priced.view(&Prices::shipped(), None).cost_usd, Some(5.0));
}

#[test]
fn any_line_at_all_is_counted_and_never_breaks_a_reader() {
    for kind in AdapterKind::ALL {
        let mut any = reader(kind, None);
        let huge = format!(
            "{{\"type\":\"assistant\",\"message\":{{\"content\":\"{}\"}}}}",
            "x".repeat(4 << 20)
        );
        let inputs: [&[u8]; 8] = [
            b"Welcome to the agent!",
            b"",
            b"{\"type\":\"assistant\",\"message\":{\"id\":\"m\",\"usage\":{\"input_t",
            b"{\"type\": \"\xff\xfe\"}",
            b"[1, 2, 3]",
            b"{\"type\": 5}",
            b"{\"usage\": \"lots\"}",
            huge.as_bytes(),
        ];
        for input in inputs {
            any.line(input, at());
        }
        let session = any.session();
        assert_eq!(session.lines, 8, "{kind}");
        assert!(session.other_lines >= 5, "{kind}: {}", session.other_lines);
        assert_eq!(session.total_tokens(), TokenCounts::default(), "{kind}");
    }
}

#[test]
fn a_reader_stored_mid_transcript_goes_on_to_the_same_totals() {
    let when = at();
    let mut whole = reader(AdapterKind::Claude, None);
    feed_at(&mut whole, CLAUDE, when);
    let lines: Vec<&str> = CLAUDE.lines().collect();
    for cut in 1..lines.len() {
        let mut first = reader(AdapterKind::Claude, None);
        feed_at(&mut first, &lines[..cut].join("\n"), when);
        let stored = serde_json::to_string(&first).unwrap();
        let mut second: Reader = serde_json::from_str(&stored).unwrap();
        feed_at(&mut second, &lines[cut..].join("\n"), when);
        assert_eq!(second.session(), whole.session(), "cut after line {cut}");
    }
}

#[test]
fn auto_picks_by_program_and_output_flag_and_says_why() {
    let argv = |line: &str| -> Vec<String> { line.split(' ').map(str::to_string).collect() };
    let pick = |line: &str| choose(None, &argv(line));
    let (kind, why, model) =
        pick("claude -p hi --output-format stream-json --verbose --model claude-opus-4-5");
    assert_eq!(kind, AdapterKind::Claude);
    assert_eq!(
        why,
        "auto: the program is claude with --output-format stream-json"
    );
    assert_eq!(model.as_deref(), Some("claude-opus-4-5"));
    assert_eq!(
        pick("/usr/local/bin/claude -p hi --output-format=json").0,
        AdapterKind::Claude
    );
    let (kind, why, _) = pick("claude -p hi");
    assert_eq!(kind, AdapterKind::None);
    assert!(why.contains("plain text"), "{why}");
    let (kind, _, model) = pick("codex exec --json -c model=gpt-5-codex fix");
    assert_eq!(
        (kind, model.as_deref()),
        (AdapterKind::Codex, Some("gpt-5-codex"))
    );
    assert_eq!(pick("codex exec fix").0, AdapterKind::None);
    assert_eq!(
        pick("gemini -p hi -o stream-json -m gemini-3.5-flash").0,
        AdapterKind::Gemini
    );
    assert_eq!(
        pick("opencode run --format json hi").0,
        AdapterKind::Opencode
    );
    assert_eq!(
        pick("npx @anthropic-ai/claude-code -p hi --output-format stream-json").0,
        AdapterKind::Claude
    );
    let (kind, why, _) = pick("sleep 10");
    assert_eq!(kind, AdapterKind::None);
    assert!(why.contains("sleep is not an agent CLI"), "{why}");
    let (kind, why, _) = choose(Some(AdapterKind::Jsonl), &argv("./my-agent"));
    assert_eq!(
        (kind, why.as_str()),
        (AdapterKind::Jsonl, "--adapter jsonl")
    );
}

#[test]
fn costs_by_model_take_the_agents_own_split_else_share_out_its_total() {
    let prices = Prices::shipped();
    let mut claude = reader(AdapterKind::Claude, None);
    feed(&mut claude, CLAUDE);
    let costs = claude.session().figures(None).costs(&prices);
    assert_eq!(costs.len(), 3);
    assert_eq!(costs["claude-sonnet-4-5-20250929"].1, Some(0.0553014));
    let sum: f64 = costs.values().filter_map(|(_, cost)| *cost).sum();
    assert!((sum - 0.0745213).abs() < 1e-12, "{sum}");
    assert!(claude.session().result_at.is_some());

    // A total without a split: shared out as the price table would.
    let mut session = Session::default();
    session.add_tokens(Some("claude-sonnet-4-5"), &tokens(1_000_000, 0, 0, 0));
    session.add_tokens(Some("claude-haiku-4-5"), &tokens(1_000_000, 0, 0, 0));
    session.reported_cost_usd = Some(8.0);
    let costs = session.figures(None).costs(&prices);
    let sonnet = costs["claude-sonnet-4-5"].1.unwrap();
    let haiku = costs["claude-haiku-4-5"].1.unwrap();
    assert!((sonnet + haiku - 8.0).abs() < 1e-9);
    assert!(sonnet > haiku, "{sonnet} {haiku}");

    // A model without a price and no figure of the agent's: no cost.
    let mut unknown = Session::default();
    unknown.add_tokens(Some("mystery-1"), &tokens(10, 10, 0, 0));
    assert_eq!(unknown.figures(None).costs(&prices)["mystery-1"].1, None);
}

#[test]
fn one_shot_runs_end_after_their_result_and_stdin_sessions_do_not() {
    let argv = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(ends_after_result(
        AdapterKind::Claude,
        &argv(&["claude", "-p", "x", "--output-format", "stream-json"])
    ));
    assert!(!ends_after_result(
        AdapterKind::Claude,
        &argv(&[
            "claude",
            "--output-format",
            "stream-json",
            "--input-format",
            "stream-json"
        ])
    ));
    assert!(!ends_after_result(
        AdapterKind::Claude,
        &argv(&[
            "npx",
            "@anthropic-ai/claude-code",
            "--input-format=stream-json"
        ])
    ));
    assert!(ends_after_result(
        AdapterKind::Codex,
        &argv(&["codex", "exec", "--json", "x"])
    ));
    assert!(!ends_after_result(AdapterKind::Jsonl, &argv(&["my-agent"])));
}
