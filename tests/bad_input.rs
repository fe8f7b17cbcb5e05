//! Bad input changes nothing and says what is wrong: through the CLI, and
//! straight to the API with hand-written HTTP requests. After each mistake
//! `ps -a --json` and the processes of the home are what they were.

mod common;

use common::{marker, Home, Output};
use serde_json::Value;

/// A home with one running agent (`worker`) and one ended one (`done`).
fn home_with_agents() -> (Home, String) {
    let home = Home::new();
    let seconds = marker();
    let worker = home.run(&["--name", "worker", "--", "sleep", &seconds]);
    let done = home.run(&["--name", "done", "--", "true"]);
    home.ok(&["wait", &done]);
    (home, worker)
}

/// What must not change: the agents as `ps -a --json` shows them, and the
/// home's processes (no shim started or lost).
fn observe(home: &Home) -> (Value, Vec<i32>) {
    let mut processes = home.processes();
    processes.sort();
    (home.snapshot(), processes)
}

/// Runs the CLI with `args`, expects it to fail with exit code `code` and
/// a message on stderr containing `message`, and checks nothing changed.
fn rejected(home: &Home, args: &[&str], code: i32, message: &str) -> Output {
    let before = observe(home);
    let output = home.fails(args);
    assert_eq!(output.code(), code, "wrangle {args:?}: {output:?}");
    assert!(
        output.stderr.contains(message),
        "wrangle {args:?}: stderr {:?} lacks {message:?}",
        output.stderr
    );
    assert_eq!(output.stdout, "", "wrangle {args:?} printed a result");
    assert_eq!(observe(home), before, "wrangle {args:?} changed something");
    output
}

/// Sends a raw request, expects a JSON error with `status`, `code` and a
/// message containing `message`, and checks nothing changed.
fn rejected_by_api(
    home: &Home,
    (method, path): (&str, &str),
    content_type: Option<&str>,
    body: &str,
    (status, code, message): (u16, &str, &str),
) {
    let before = observe(home);
    let response = home.http(method, path, content_type, body);
    assert_eq!(
        response.status, status,
        "{method} {path} {body}: {response:?}"
    );
    let (got_code, got_message) = response.error();
    assert_eq!(got_code, code, "{method} {path} {body}");
    assert!(
        got_message.contains(message),
        "{method} {path} {body}: {got_message:?} lacks {message:?}"
    );
    assert_eq!(
        observe(home),
        before,
        "{method} {path} {body} changed something"
    );
}

const JSON: Option<&str> = Some("application/json");

#[test]
fn an_invalid_name_is_refused() {
    let (home, _) = home_with_agents();
    let pattern = "a name is 1 to 63 characters of a-z, 0-9, '.', '_' or '-', and starts with a letter or digit";
    for name in ["Bad", "has space", "-dash", ".dot", &"a".repeat(64), "a/b"] {
        let output = rejected(&home, &["run", "--name", name, "--", "true"], 2, pattern);
        assert!(
            output
                .stderr
                .starts_with(&format!("wrangle: invalid agent name {name:?}")),
            "{}",
            output.stderr
        );
    }
    // The daemon applies the same rule to whoever calls it.
    rejected_by_api(
        &home,
        ("POST", "/v1/agents"),
        JSON,
        r#"{"name": "Bad Name", "command": ["true"]}"#,
        (400, "invalid_argument", "invalid agent name \"Bad Name\""),
    );
}

#[test]
fn a_duplicate_name_is_refused() {
    let (home, worker) = home_with_agents();
    for name in ["worker", "done"] {
        rejected(
            &home,
            &["run", "--name", name, "--", "true"],
            1,
            &format!("an agent named \"{name}\" already exists"),
        );
    }
    rejected_by_api(
        &home,
        ("POST", "/v1/agents"),
        JSON,
        r#"{"name": "worker", "command": ["true"]}"#,
        (409, "already_exists", &format!("(id {})", &worker[..12])),
    );
}

#[test]
fn an_unknown_agent_is_named_in_the_error() {
    let (home, _) = home_with_agents();
    let missing = "no agent named \"ghost\"";
    for args in [
        &["inspect", "ghost"][..],
        &["logs", "ghost"],
        &["stop", "ghost"],
        &["kill", "ghost"],
        &["rm", "ghost"],
        &["wait", "ghost"],
    ] {
        rejected(&home, args, 1, missing);
    }
    rejected(
        &home,
        &["inspect", "workr"],
        1,
        "no agent named \"workr\" (did you mean \"worker\"?)",
    );
    // One bad name among good ones stops nothing.
    rejected(&home, &["stop", "worker", "ghost"], 1, missing);
    rejected_by_api(
        &home,
        ("GET", "/v1/agents/ghost"),
        None,
        "",
        (404, "not_found", missing),
    );
}

#[test]
fn a_bad_duration_is_refused() {
    let (home, _) = home_with_agents();
    let message =
        "invalid duration \"10x\": use a number of seconds or a value like 500ms, 10s, 2m, 1h30m";
    rejected(
        &home,
        &["run", "--stop-timeout", "10x", "--", "true"],
        2,
        message,
    );
    rejected(&home, &["stop", "--timeout", "10x", "worker"], 2, message);
    rejected(
        &home,
        &["stop", "--timeout=-1", "worker"],
        2,
        "invalid duration \"-1\"",
    );
    rejected_by_api(
        &home,
        ("POST", "/v1/stop"),
        JSON,
        r#"{"agents": ["worker"], "timeout": "soon"}"#,
        (400, "invalid_argument", "invalid duration \"soon\""),
    );
    rejected_by_api(
        &home,
        ("POST", "/v1/agents"),
        JSON,
        r#"{"command": ["true"], "stop_timeout": "forever"}"#,
        (400, "invalid_argument", "invalid duration \"forever\""),
    );
}

#[test]
fn a_bad_signal_is_refused() {
    let (home, _) = home_with_agents();
    let message = "use a name like TERM, SIGINT, KILL or a number from 1 to 31";
    rejected(&home, &["kill", "--signal", "SIGFOO", "worker"], 2, message);
    rejected(
        &home,
        &["kill", "--signal", "0", "worker"],
        2,
        "invalid signal \"0\"",
    );
    rejected(
        &home,
        &["kill", "--signal", "64", "worker"],
        2,
        "invalid signal \"64\"",
    );
    rejected(
        &home,
        &["run", "--stop-signal", "NOPE", "--", "true"],
        2,
        "invalid signal \"NOPE\"",
    );
    rejected_by_api(
        &home,
        ("POST", "/v1/agents/worker/kill"),
        JSON,
        r#"{"signal": "SIGNOPE"}"#,
        (400, "invalid_argument", "invalid signal \"SIGNOPE\""),
    );
    rejected_by_api(
        &home,
        ("POST", "/v1/agents"),
        JSON,
        r#"{"command": ["true"], "stop_signal": "99"}"#,
        (400, "invalid_argument", "invalid signal \"99\""),
    );
}

#[test]
fn an_env_without_equals_is_refused() {
    let (home, _) = home_with_agents();
    rejected(
        &home,
        &["run", "--env", "FOO", "--", "true"],
        2,
        "wrangle: invalid --env \"FOO\": expected KEY=VALUE",
    );
    rejected(
        &home,
        &["run", "-e", "=value", "--", "true"],
        2,
        "wrangle: invalid --env \"=value\": expected KEY=VALUE, the KEY not empty",
    );
    rejected_by_api(
        &home,
        ("POST", "/v1/agents"),
        JSON,
        r#"{"command": ["true"], "env": {"A=B": "c"}}"#,
        (
            400,
            "invalid_argument",
            "invalid environment variable name \"A=B\"",
        ),
    );
}

#[test]
fn a_bad_health_probe_is_refused() {
    let (home, _) = home_with_agents();
    for (options, message) in [
        (
            &["--health-http", "https://127.0.0.1/health"][..],
            "invalid --health-http \"https://127.0.0.1/health\": https is not supported by health probes",
        ),
        (
            &["--health-http", "localhost:8080/health"],
            "expected a URL like http://127.0.0.1:8080/health",
        ),
        (
            &["--health-tcp", "localhost"],
            "invalid --health-tcp \"localhost\": expected HOST:PORT",
        ),
        (
            &["--health-tcp", "127.0.0.1:99999"],
            "invalid port \"99999\": a port is a number from 1 to 65535",
        ),
        (
            &["--health-tcp", "127.0.0.1:9", "--health-interval", "0s"],
            "invalid duration \"0s\": it must be longer than zero",
        ),
        (
            &["--health-cmd", "true", "--health-timeout", "10x"],
            "invalid duration \"10x\"",
        ),
        (
            &["--health-cmd", "true", "--health-retries", "0"],
            "invalid health retries \"0\": give a whole number of failed probes, at least 1",
        ),
        (
            &["--health-cmd", "true", "--health-tcp", "127.0.0.1:9"],
            "'--health-cmd <CMD>' cannot be used with '--health-tcp <HOST:PORT>'",
        ),
        (&["--health-retries", "2"], "--health-cmd"),
    ] {
        let args = [&["run"][..], options, &["--", "true"]].concat();
        rejected(&home, &args, 2, message);
    }
    // The daemon checks the same for whoever calls it, and says why.
    for (fields, message) in [
        (
            r#""health_cmd": "true", "health_http": "http://127.0.0.1:1/""#,
            "an agent has at most one health probe, but both --health-cmd and --health-http were given",
        ),
        (
            r#""health_http": "https://127.0.0.1/""#,
            "https is not supported by health probes",
        ),
        (
            r#""health_http": "http://:80/""#,
            "the host is missing",
        ),
        (
            r#""health_tcp": "127.0.0.1""#,
            "expected HOST:PORT",
        ),
        (
            r#""health_tcp": "127.0.0.1:9", "health_interval": "0""#,
            "invalid duration \"0\": it must be longer than zero",
        ),
        (
            r#""health_tcp": "127.0.0.1:9", "health_retries": 0"#,
            "invalid health retries 0",
        ),
        (
            r#""health_cmd": "  ""#,
            "the --health-cmd is empty",
        ),
        (
            r#""health_interval": "1s""#,
            "--health-interval needs a probe: add --health-cmd, --health-http or --health-tcp",
        ),
    ] {
        rejected_by_api(
            &home,
            ("POST", "/v1/agents"),
            JSON,
            &format!(r#"{{"command": ["true"], {fields}}}"#),
            (400, "invalid_argument", message),
        );
    }
}

#[test]
fn an_empty_command_is_refused() {
    let (home, _) = home_with_agents();
    rejected(&home, &["run", "--"], 2, "<CMD>");
    rejected(&home, &["run", "--name", "x"], 2, "<CMD>");
    rejected(&home, &["run", "--", ""], 1, "the command is empty");
    for body in [r#"{"command": []}"#, r#"{"command": [""]}"#] {
        rejected_by_api(
            &home,
            ("POST", "/v1/agents"),
            JSON,
            body,
            (400, "invalid_argument", "the command is empty"),
        );
    }
}

#[test]
fn malformed_json_sent_to_the_api_is_refused() {
    let (home, _) = home_with_agents();
    let malformed = "malformed request body";
    for body in [
        r#"{"command": ["#,
        "not json at all",
        r#"{"command": "true"}"#,
        r#"{"name": "x"}"#,
        r#"{"command": ["true"], "bogus": 1}"#,
        r#"["true"]"#,
        "",
    ] {
        rejected_by_api(
            &home,
            ("POST", "/v1/agents"),
            JSON,
            body,
            (400, "invalid_argument", malformed),
        );
    }
    rejected_by_api(
        &home,
        ("POST", "/v1/agents"),
        None,
        r#"{"command": ["true"]}"#,
        (400, "invalid_argument", "Content-Type: application/json"),
    );
    rejected_by_api(
        &home,
        ("POST", "/v1/stop"),
        JSON,
        r#"{"agents": "worker"}"#,
        (400, "invalid_argument", malformed),
    );
    // An array is not the object it would spell field by field: this one
    // read as `{"agents": [], "all": true}` and stopped every agent.
    for (path, body) in [
        ("/v1/stop", r#"[[], true]"#),
        ("/v1/agents", r#"[["sleep", "1"]]"#),
    ] {
        rejected_by_api(
            &home,
            ("POST", path),
            JSON,
            body,
            (400, "invalid_argument", "expected a JSON object"),
        );
    }
    // Over the 2 MiB a create may be: 413, with the JSON error.
    let huge = format!(
        r#"{{"command": ["true"], "name": "{}"}}"#,
        "a".repeat(3 << 20)
    );
    rejected_by_api(
        &home,
        ("POST", "/v1/agents"),
        JSON,
        &huge,
        (413, "payload_too_large", malformed),
    );
    rejected_by_api(
        &home,
        ("POST", "/v1/agents"),
        JSON,
        r#"{"command": ["true"], "cwd": "relative/dir"}"#,
        (400, "invalid_argument", "must be an absolute path"),
    );
    rejected_by_api(
        &home,
        ("GET", "/v1/agents?all=maybe"),
        None,
        "",
        (400, "invalid_argument", "malformed query string"),
    );
    rejected_by_api(
        &home,
        ("GET", "/v1/nothing-here"),
        None,
        "",
        (404, "not_found", "no such route"),
    );
}

#[test]
fn the_api_accepts_what_the_cli_would_send() {
    // The other tests' refusals are not just a broken API.
    let (home, _) = home_with_agents();
    let response = home.http(
        "POST",
        "/v1/agents",
        JSON,
        r#"{"name": "by-hand", "command": ["true"], "cwd": "/"}"#,
    );
    assert_eq!(response.status, 201, "{response:?}");
    assert_eq!(response.json()["name"], "by-hand");
    home.ok(&["wait", "by-hand"]);
    assert_eq!(home.state("by-hand"), "completed");
}

#[test]
fn conflicting_or_missing_arguments_are_refused() {
    let (home, _) = home_with_agents();
    rejected(&home, &["stop"], 2, "<AGENT>");
    rejected(
        &home,
        &["stop", "--all", "worker"],
        2,
        "cannot be used with",
    );
    rejected(&home, &["logs", "--tail", "many", "worker"], 2, "--tail");
    rejected(
        &home,
        &["inspect", ""],
        2,
        "an agent reference cannot be empty",
    );
    rejected(&home, &["frobnicate"], 2, "unrecognized subcommand");
}

#[test]
fn a_home_too_long_for_a_socket_is_refused() {
    let home = Home::new();
    let long = home.path().join("x".repeat(100));
    let output = home.fails(&["--home", long.to_str().unwrap(), "ps"]);
    assert_eq!(output.code(), 1);
    assert!(
        output
            .stderr
            .contains(&format!("{}/wrangle.sock", long.display())),
        "{}",
        output.stderr
    );
    assert!(home.daemons().is_empty(), "no daemon was started");
}
