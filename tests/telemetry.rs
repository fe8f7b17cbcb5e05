//! The agents' own telemetry, received: the real `claude` exports each
//! model call's cost and tokens to the daemon as it happens (with
//! `--telemetry auto`, wrangle sets its OTel environment), so `inspect`
//! has a call's exact cost while the agent still runs a tool, across a
//! daemon SIGKILL too; and a record counts only with its run's token,
//! once, as JSON, protobuf or gzip alike.

mod common;

use common::agents::{fake, fast_home, replay, transcript, CLAUDE_ARGS};
use common::cli_bench::*;
use common::model_server::Reply;
use common::{agent_clis, crash, procfs, wait_until, Home, SOON};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// What claude-sonnet-4-5 costs at $3, $15, $0.30 and $3.75 per million
/// input, output, cache-read and cache-write tokens.
fn sonnet_usd(input: u64, output: u64, cache_read: u64, cache_write: u64) -> f64 {
    (input as f64 * 3.0
        + output as f64 * 15.0
        + cache_read as f64 * 0.3
        + cache_write as f64 * 3.75)
        / 1e6
}

/// The model server of two tool calls (`sleep SECONDS` each) and a last
/// answer, each call with tokens of its own.
fn two_tools(
    seconds: &'static str,
) -> impl Fn(&common::model_server::Request, usize) -> Reply + Send + Sync {
    move |request, _| match request.tool_results() {
        0 => Reply::Bash {
            command: format!("sleep {seconds}"),
            usage: usage(1200, 40, 5000, 3000),
        },
        1 => Reply::Bash {
            command: format!("sleep {seconds}"),
            usage: usage(600, 30, 9000, 100),
        },
        _ => Reply::Text {
            text: "Done.".into(),
            usage: usage(300, 25, 9500, 50),
        },
    }
}

/// The session's telemetry as `inspect` shows it.
fn telemetry(home: &Home, agent: &str) -> Value {
    home.inspect(agent)["session"]["telemetry"].clone()
}

fn calls(home: &Home, agent: &str) -> u64 {
    telemetry(home, agent)["calls"].as_u64().unwrap_or(0)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn claude_calls_cost_is_known_while_its_tool_runs_and_survives_a_daemon_sigkill() {
    let Some(claude) = agent_clis::find("claude") else {
        return;
    };
    let bench = Bench::new(two_tools("3"));
    let home = &bench.home;
    bench.claude(
        &claude,
        "teller",
        "Do two things",
        &[],
        &["--allowedTools", "Bash(sleep:*)"],
    );
    // The first call's record, while its tool sleeps.
    wait_until(SOON, "the first call is reported", || {
        calls(home, "teller") >= 1
    });
    let view = home.inspect("teller");
    let why = bench.describe("teller");
    assert_eq!(view["state"], "running", "{why}");
    let session = &view["session"];
    assert_eq!(session["figures_from_telemetry"], true, "{why}");
    let first = sonnet_usd(1200, 40, 5000, 3000);
    assert!(close(session["cost_usd"].as_f64().unwrap(), first), "{why}");
    assert_eq!(tokens(&view), (1200, 40, 5000, 3000), "{why}");
    let endpoint = telemetry(home, "teller")["endpoint"]
        .as_str()
        .unwrap()
        .to_string();
    let added = telemetry(home, "teller")["added"].to_string();
    assert!(added.contains("OTEL_EXPORTER_OTLP_ENDPOINT="), "{added}");
    assert!(
        added.contains("Bearer <run token>"),
        "the token is shown: {added}"
    );

    // The daemon dies; the next one binds the same port, and the second
    // call's record (during the second tool) adds to the first.
    crash::kill_daemon(home);
    home.ok(&["daemon", "--sample-interval", "100ms"]);
    wait_until(SOON, "the second call is reported", || {
        calls(home, "teller") >= 2
    });
    let view = home.inspect("teller");
    assert_eq!(
        telemetry(home, "teller")["endpoint"].as_str().unwrap(),
        endpoint
    );
    let both = first + sonnet_usd(600, 30, 9000, 100);
    if view["state"] == "running" {
        assert!(
            close(view["session"]["cost_usd"].as_f64().unwrap(), both),
            "{}",
            bench.describe("teller")
        );
    }

    // At the end: the CLI's own figures, the calls agreeing with them,
    // and the ledger counting each call once.
    home.wrangle(&["wait", "teller"]);
    let view = home.inspect("teller");
    let why = bench.describe("teller");
    let result = bench.final_line("teller", "result");
    assert_eq!(tokens(&view), claude_totals(&result), "{why}");
    let cost = result["total_cost_usd"].as_f64().unwrap();
    assert_eq!(view["session"]["cost_usd"].as_f64(), Some(cost), "{why}");
    assert_eq!(view["session"]["figures_from_telemetry"], false, "{why}");
    let telemetry = &view["session"]["telemetry"];
    assert_eq!(telemetry["calls"], 3, "{why}");
    // The CLI rounds each call's cost to the micro-dollar.
    let reported = telemetry["cost_usd"].as_f64().unwrap();
    assert!((reported - cost).abs() <= 3e-6, "{why}");
    assert!(telemetry["difference"].is_null(), "{why}");
    let ledger = home.json(&["cost", "--json"]);
    assert!(
        close(ledger["total"]["cost_usd"].as_f64().unwrap(), cost),
        "{ledger}"
    );
}

#[test]
fn a_users_own_collector_gets_every_call_while_wrangle_counts_them_too() {
    let Some(claude) = agent_clis::find("claude") else {
        return;
    };
    let collector = common::collector::Collector::start();
    let bench = Bench::new(two_tools("0.2"));
    let home = &bench.home;
    let own = [
        format!("OTEL_EXPORTER_OTLP_ENDPOINT={}", collector.endpoint()),
        "OTEL_EXPORTER_OTLP_PROTOCOL=http/json".to_string(),
        "OTEL_EXPORTER_OTLP_HEADERS=x-team=core".to_string(),
    ];
    let mut options = Vec::new();
    for pair in &own {
        options.push("--env");
        options.push(pair.as_str());
    }
    bench.claude(
        &claude,
        "shared",
        "Do two things",
        &options,
        &["--allowedTools", "Bash(sleep:*)"],
    );
    home.wrangle(&["wait", "shared"]);
    let view = home.inspect("shared");
    let why = bench.describe("shared");
    let telemetry = &view["session"]["telemetry"];
    assert_eq!(telemetry["calls"], 3, "{why}");
    assert_eq!(
        telemetry["forwarded_to"],
        collector.endpoint().as_str(),
        "{why}"
    );
    // The collector got every call's record, with the user's header and
    // not the run's token.
    wait_until(SOON, "the collector has every call", || {
        api_requests(&collector.posted()) == 3
    });
    let logs: Vec<_> = collector
        .posted()
        .into_iter()
        .filter(|posted| posted.path == "/v1/logs")
        .collect();
    for posted in &logs {
        assert_eq!(
            posted.headers.get("x-team").map(String::as_str),
            Some("core")
        );
        assert!(
            !posted.headers.contains_key("authorization"),
            "{:?}",
            posted.headers
        );
        assert_eq!(
            posted.headers.get("content-type").map(String::as_str),
            Some("application/json")
        );
    }
}

/// Claude `api_request` records in the bodies a collector got.
fn api_requests(posted: &[common::collector::Posted]) -> usize {
    posted
        .iter()
        .filter(|posted| posted.path == "/v1/logs")
        .map(|posted| {
            String::from_utf8_lossy(&posted.body)
                .matches("\"claude_code.api_request\"")
                .count()
        })
        .sum()
}

/// The token wrangle gave a run, as its environment holds it.
fn token_of(home: &Home, agent: &str) -> String {
    let pid = home.pid(agent);
    let env = procfs::environ(pid).expect("the agent's environment");
    env.iter()
        .find_map(|entry| entry.strip_prefix("OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer "))
        .expect("the token in the agent's environment")
        .to_string()
}

/// The headers of an OTLP/JSON post from `agent`, with its run's token.
fn json_headers(home: &Home, agent: &str) -> [String; 2] {
    [
        "Content-Type: application/json".to_string(),
        format!("Authorization: Bearer {}", token_of(home, agent)),
    ]
}

/// `POST PATH` to the telemetry endpoint with `headers` and `body`: the
/// status and the answer.
fn post(endpoint: &str, path: &str, headers: &[String], body: &[u8]) -> (u16, String) {
    send(endpoint, "POST", path, headers, body)
}

/// `METHOD PATH` to the telemetry endpoint with `headers` and `body`: the
/// status and the answer.
fn send(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[String],
    body: &[u8],
) -> (u16, String) {
    let address = endpoint.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("the telemetry port");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for header in headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

/// A Claude `api_request` record in an OTLP JSON body.
fn api_request(time: &str, input: u64, micros: u64) -> String {
    format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[]}},"scopeLogs":[{{"scope":{{"name":"com.anthropic.claude_code.events"}},"logRecords":[{{"timeUnixNano":"{time}","body":{{"stringValue":"claude_code.api_request"}},"attributes":[{{"key":"event.name","value":{{"stringValue":"api_request"}}}},{{"key":"model","value":{{"stringValue":"claude-sonnet-4-5"}}}},{{"key":"input_tokens","value":{{"intValue":{input}}}}},{{"key":"output_tokens","value":{{"intValue":10}}}},{{"key":"cache_read_tokens","value":{{"intValue":0}}}},{{"key":"cache_creation_tokens","value":{{"intValue":0}}}},{{"key":"cost_usd_micros","value":{{"intValue":{micros}}}}}]}}]}}]}}]}}"#
    )
}

/// The time `ago` before now, in Unix nanoseconds, as OTLP/JSON sends
/// it: a model call made more than an hour ago is not counted (see
/// [`a_call_made_over_an_hour_ago_is_taken_and_not_counted`]).
fn nanos_ago(ago: Duration) -> String {
    let at = std::time::SystemTime::now() - ago;
    let nanos = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    nanos.to_string()
}

/// Claude agents `names` that wait, printing nothing more (only what a
/// test posts counts), run with `extra` options, and the endpoint they
/// export to; keep the fake CLI while they run.
fn waiting_claudes(
    home: &Home,
    names: &[&str],
    extra: &[&str],
) -> (common::agents::FakeCli, String) {
    let claude = fake("claude");
    let file = transcript(
        home,
        "quiet.jsonl",
        &[
            r#"{"type":"system","subtype":"init","session_id":"q1","model":"claude-sonnet-4-5"}"#,
            "#sleep 120",
        ],
    );
    for name in names {
        replay(home, name, &claude, &CLAUDE_ARGS, &file, "0.05", extra);
    }
    let endpoint = telemetry(home, names[0])["endpoint"]
        .as_str()
        .expect("telemetry is received")
        .to_string();
    (claude, endpoint)
}

/// Posts `body` (an [`api_request`] of 1000 input tokens and $0.00315)
/// `times` times, each answered 200: `agent` counts it once.
fn posted_and_counted_once(
    home: &Home,
    agent: &str,
    (endpoint, headers): (&str, &[String]),
    body: &str,
    times: usize,
) {
    for _ in 0..times {
        let (status, answer) = post(endpoint, "/v1/logs", headers, body.as_bytes());
        assert_eq!(status, 200, "{answer}");
    }
    assert_eq!(calls(home, agent), 1);
    let view = home.inspect(agent);
    assert!(
        close(view["session"]["cost_usd"].as_f64().unwrap(), 0.00315),
        "{view:#}"
    );
}

#[test]
fn a_record_counts_only_with_its_runs_token_once_whatever_its_encoding() {
    let home = fast_home();
    let (_claude, endpoint) = waiting_claudes(&home, &["json", "proto"], &[]);
    let token = token_of(&home, "json");
    let json = ["Content-Type: application/json".to_string()];
    let body = api_request(&nanos_ago(Duration::ZERO), 1000, 3150);

    // No token, a wrong one, another run's: refused, nothing counted.
    let (status, _) = post(&endpoint, "/v1/logs", &json, body.as_bytes());
    assert_eq!(status, 401);
    let (agent, rest) = token.split_once('.').unwrap();
    let (run, mac) = rest.split_once('.').unwrap();
    let flipped = format!(
        "{}{}",
        &mac[..mac.len() - 1],
        if mac.ends_with('0') { "1" } else { "0" }
    );
    let other = token_of(&home, "proto");
    for forged in [
        format!("{agent}.{run}.{flipped}"),
        format!("{agent}.{}.{mac}", run.parse::<u32>().unwrap() + 1),
        format!("{}.{run}.{mac}", other.split('.').next().unwrap()),
    ] {
        let headers = [json[0].clone(), format!("Authorization: Bearer {forged}")];
        let (status, answer) = post(&endpoint, "/v1/logs", &headers, body.as_bytes());
        assert_eq!(status, 401, "{forged}: {answer}");
    }
    assert_eq!(calls(&home, "json"), 0);
    assert_eq!(calls(&home, "proto"), 0);

    // The right token: counted, and counted once however often it comes.
    let headers = [json[0].clone(), format!("Authorization: Bearer {token}")];
    posted_and_counted_once(&home, "json", (&endpoint, &headers), &body, 3);

    // The same record as protobuf, gzipped, to the other agent: the same
    // session.
    let request: ExportLogsServiceRequest = serde_json::from_str(&body).unwrap();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&request.encode_to_vec()).unwrap();
    let protobuf = gzip.finish().unwrap();
    let headers = [
        "Content-Type: application/x-protobuf".to_string(),
        "Content-Encoding: gzip".to_string(),
        format!("Authorization: Bearer {other}"),
    ];
    let (status, answer) = post(&endpoint, "/v1/logs", &headers, &protobuf);
    assert_eq!(status, 200, "{answer}");
    let (a, b) = (
        home.inspect("json")["session"].clone(),
        home.inspect("proto")["session"].clone(),
    );
    for key in [
        "tokens",
        "cost_usd",
        "cost_source",
        "figures_from_telemetry",
    ] {
        assert_eq!(a[key], b[key], "{key}");
    }
    assert_eq!(a["telemetry"]["calls"], b["telemetry"]["calls"]);

    // Bad bodies are refused and change nothing.
    let headers = [json[0].clone(), format!("Authorization: Bearer {token}")];
    let (status, _) = post(&endpoint, "/v1/logs", &headers, b"{not json");
    assert_eq!(status, 400);
    let (status, _) = post(&endpoint, "/v1/metrics", &headers, b"{}");
    assert_eq!(status, 200, "metrics are taken and dropped");
    let (status, _) = post(&endpoint, "/v1/log", &headers, body.as_bytes());
    assert_eq!(status, 404, "a path OTLP does not have");
    let (status, answer) = send(&endpoint, "GET", "/v1/logs", &headers, b"");
    assert_eq!(status, 405, "{answer}");
    assert!(answer.to_lowercase().contains("allow: post"), "{answer}");
    assert_eq!(calls(&home, "json"), 1);
}

/// A running agent's call goes into the ledger on disk once deliveries
/// stop, with nobody asking for a report (which would write it first) and
/// no other write to take it along (the sampler's tick is a minute): its
/// change of the ledger waits in memory only while more come, and a
/// daemon killed after that has lost none of it.
#[test]
fn a_calls_cost_reaches_the_ledger_on_disk_once_deliveries_stop() {
    let home = Home::new();
    home.ok(&["daemon", "--sample-interval", "60s"]);
    let (_claude, endpoint) = waiting_claudes(&home, &["spender"], &[]);
    let headers = json_headers(&home, "spender");
    let body = api_request(&nanos_ago(Duration::ZERO), 1000, 3150);
    let (status, answer) = post(&endpoint, "/v1/logs", &headers, body.as_bytes());
    assert_eq!(status, 200, "{answer}");
    let on_disk = || -> (i64, f64) {
        home.open_database()
            .query_row(
                "SELECT coalesce(sum(input), 0), coalesce(sum(cost_usd), 0)
                 FROM costs WHERE agent_name = 'spender'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("read the ledger")
    };
    wait_until(SOON, "the call's cost is in the ledger on disk", || {
        on_disk().0 == 1000
    });
    crash::kill_daemon(&home);
    let (input, cost) = on_disk();
    assert_eq!(input, 1000);
    assert!(close(cost, 0.00315), "{cost}");
}

/// A model call's record made more than an hour ago is taken (200) and
/// not counted: a call is told apart from the others by its key for an
/// hour (exporters retry for minutes), then folded into its run's
/// figures, and an older record could be one of those.
#[test]
fn a_call_made_over_an_hour_ago_is_taken_and_not_counted() {
    let home = fast_home();
    let (_claude, endpoint) = waiting_claudes(&home, &["late"], &[]);
    let headers = json_headers(&home, "late");
    let old = api_request(&nanos_ago(Duration::from_secs(7200)), 1000, 3150);
    let (status, answer) = post(&endpoint, "/v1/logs", &headers, old.as_bytes());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(calls(&home, "late"), 0, "{:#}", home.inspect("late"));
    let recent = api_request(&nanos_ago(Duration::from_secs(60)), 1000, 3150);
    posted_and_counted_once(&home, "late", (&endpoint, &headers), &recent, 2);
}

/// A call stamped a year ahead (a clock that runs fast, or a time made
/// up) counts, as made when it came: kept with its own time, the fold of
/// calls older than an hour would never take it, nor those behind it.
#[test]
fn a_call_stamped_ahead_counts_as_made_when_it_came() {
    let home = fast_home();
    let (_claude, endpoint) = waiting_claudes(&home, &["ahead"], &[]);
    let headers = json_headers(&home, "ahead");
    let year = Duration::from_secs(365 * 24 * 3600);
    let nanos = std::time::SystemTime::now() + year;
    let nanos = nanos
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let ahead = api_request(&nanos.to_string(), 1000, 3150);
    posted_and_counted_once(&home, "ahead", (&endpoint, &headers), &ahead, 2);
    let came_by = chrono::Utc::now().timestamp_micros();
    let stored: Vec<i64> = home
        .open_database()
        .prepare("SELECT at FROM telemetry_calls")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(
        stored[0] <= came_by,
        "the call is kept as made {} s from now",
        (stored[0] - came_by) / 1_000_000
    );
}

/// A record that arrives while the disk is full is not taken: the
/// exporter is told to come back (503 and `Retry-After`, which OTLP
/// exporters retry; 507 they would drop), nothing of it counts, and sent
/// again once there is room it counts once.
#[test]
fn a_record_that_cannot_be_stored_counts_nothing_and_once_when_sent_again() {
    let mut disk = common::disk::SmallDisk::default();
    let home = Home::new();
    disk.mount(home.path(), "4m");
    home.ok(&["daemon", "--sample-interval", "100ms"]);
    let (_claude, endpoint) = waiting_claudes(&home, &["quiet"], &[]);
    let headers = json_headers(&home, "quiet");
    let body = api_request(&nanos_ago(Duration::ZERO), 1000, 3150);

    let filler = common::disk::fill(home.path());
    let (status, answer) = post(&endpoint, "/v1/logs", &headers, body.as_bytes());
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer.contains("Retry-After") || answer.contains("retry-after"),
        "{answer}"
    );
    assert!(
        answer.contains("full"),
        "the answer names the full disk: {answer}"
    );
    assert_eq!(calls(&home, "quiet"), 0, "nothing of it counts");

    std::fs::remove_file(filler).unwrap();
    posted_and_counted_once(&home, "quiet", (&endpoint, &headers), &body, 2);
}

/// A Codex `api_request` attempt in an OTLP JSON body: `attempt` (from
/// 0) answered with `status`.
fn attempt(time: &str, attempt: u64, status: u64) -> String {
    format!(
        r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{{"timeUnixNano":"{time}","attributes":[{{"key":"event.name","value":{{"stringValue":"codex.api_request"}}}},{{"key":"attempt","value":{{"intValue":{attempt}}}}},{{"key":"http.response.status_code","value":{{"intValue":{status}}}}}]}}]}}]}}]}}"#
    )
}

/// Retries the telemetry reports explain an agent's silence on stdout
/// past its idle timeout while they last; once the last attempt goes
/// through, the timeout counts from there (its answer may take a moment
/// to reach stdout), and the agent is hung only after it.
#[test]
fn a_silence_its_retries_explained_counts_from_their_end() {
    let home = fast_home();
    let (_claude, endpoint) = waiting_claudes(&home, &["patient"], &["--idle-timeout", "1s"]);
    let headers = json_headers(&home, "patient");
    let post_attempt = |number: u64, status: u64| {
        let time = format!("{}", 1_765_000_000_000_000_000u64 + number * 1_000_000_000);
        let body = attempt(&time, number, status);
        let (code, answer) = post(&endpoint, "/v1/logs", &headers, body.as_bytes());
        assert_eq!(code, 200, "{answer}");
    };
    let health = || {
        let view = home.inspect("patient");
        let health = view["health"].as_str().unwrap().to_string();
        let reason = view["health_reason"].as_str().unwrap_or("").to_string();
        (health, reason)
    };
    // Five failed attempts over 2 s, twice the idle timeout: not hung,
    // and the reason says why.
    let mut explained = false;
    for number in 0..5 {
        post_attempt(number, 503);
        std::thread::sleep(std::time::Duration::from_millis(400));
        let (health, reason) = health();
        assert_ne!(health, "hung", "{reason}");
        explained |= reason.contains("retrying the API (attempt");
    }
    assert!(
        explained,
        "the retries were never said to explain the silence"
    );
    // The attempt that goes through: not hung for a while after it...
    post_attempt(5, 200);
    let ended = std::time::Instant::now();
    while ended.elapsed() < std::time::Duration::from_millis(600) {
        let (health, reason) = health();
        assert_ne!(health, "hung", "{reason}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // ...and hung once the idle timeout has passed with nothing.
    wait_until(SOON, "the silent agent to be hung", || health().0 == "hung");
}

#[test]
fn telemetry_off_leaves_the_agent_as_given_and_other_programs_are_not_touched() {
    let home = fast_home();
    let claude = fake("claude");
    let file = transcript(&home, "wait.jsonl", &["#sleep 120"]);
    replay(
        &home,
        "untouched",
        &claude,
        &CLAUDE_ARGS,
        &file,
        "0.05",
        &["--telemetry", "off"],
    );
    let pid = home.pid("untouched");
    let env = procfs::environ(pid).unwrap();
    assert!(
        env.iter().all(|entry| !entry.starts_with("OTEL_")),
        "{env:?}"
    );
    let session = &home.inspect("untouched")["session"];
    assert!(session["telemetry"].is_null());
    assert_eq!(session["telemetry_note"], "--telemetry off");
    let refused = home.fails(&["run", "--telemetry", "sometimes", "--", "true"]);
    assert!(
        refused.stderr.contains("invalid telemetry"),
        "{}",
        refused.stderr
    );
}

#[test]
fn claude_printing_text_shows_its_tool_and_waits_for_the_one_its_settings_refused() {
    let Some(claude) = agent_clis::find("claude") else {
        return;
    };
    // A tool it may run (for three seconds), one it may not, an answer.
    let bench = Bench::new(|request, _| match request.tool_results() {
        0 => Reply::Bash {
            command: "sleep 3".into(),
            usage: usage(1200, 40, 5000, 3000),
        },
        1 => Reply::Bash {
            command: "touch refused".into(),
            usage: usage(600, 30, 9000, 100),
        },
        _ => Reply::Text {
            text: "Done.".into(),
            usage: usage(300, 25, 9500, 50),
        },
    });
    let home = &bench.home;
    // `-p` with its default text output: no adapter reads it, and it
    // prints no usage at all.
    let command = [
        claude.display().to_string(),
        "-p".into(),
        "Do two things".into(),
        "--model".into(),
        CLAUDE_MODEL.into(),
        "--allowedTools".into(),
        "Bash(sleep:*)".into(),
    ];
    bench.run("texter", &bench.claude_env(), &[], &command);
    wait_until(SOON, "the running tool is reported", || {
        home.inspect("texter")["session"]["tool"]["name"] == "Bash"
    });
    let view = home.inspect("texter");
    let why = bench.describe("texter");
    assert_eq!(view["session"]["adapter"], "none", "{why}");
    assert_eq!(view["session"]["turns"], 1, "{why}");
    assert!(view["session"]["waiting"].is_null(), "{why}");
    assert_eq!(view["health"], "healthy", "{why}");

    home.wrangle(&["wait", "texter"]);
    let view = home.inspect("texter");
    let why = bench.describe("texter");
    assert!(
        std::fs::metadata(bench.work().join("refused")).is_err(),
        "the refused command ran: {why}"
    );
    let session = &view["session"];
    assert_eq!(
        session["waiting"], "permission for Bash was denied",
        "{why}"
    );
    assert!(session["tool"].is_null(), "{why}");
    assert_eq!(session["turns"], 3, "{why}");
    let telemetry = &session["telemetry"];
    assert_eq!(
        telemetry["denials"],
        serde_json::json!(["Bash (settings)"]),
        "{why}"
    );
    assert!(telemetry["tools_run"].as_u64().unwrap() >= 1, "{why}");
    assert!(
        telemetry["tools_ms"].as_u64().unwrap() >= 3000,
        "the sleep's time: {why}"
    );
    // Tokens and cost of every call, though stdout said none.
    let all = (2100, 95, 23500, 3150);
    assert_eq!(tokens(&view), all, "{why}");
    let cost = sonnet_usd(all.0, all.1, all.2, all.3);
    assert!(
        (session["cost_usd"].as_f64().unwrap() - cost).abs() <= 3e-6,
        "{why}"
    );
    // The change was an event.
    let events = home.ok(&[
        "events",
        "--no-follow",
        "--agent",
        "texter",
        "--type",
        "agent.waiting",
        "--json",
    ]);
    assert!(
        events.contains("permission for Bash was denied"),
        "{events}"
    );
}
