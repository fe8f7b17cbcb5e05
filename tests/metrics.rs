//! `GET /metrics` against a real daemon: accepted by a real parser
//! (`promtool check metrics`, else Python's `prometheus_client`), and its
//! numbers agree with `summary --json` and with `/proc`.

mod common;

use common::{marker, procfs, wait_until, Home, SOON};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// One sample: the metric's name and its labels, as written.
type Series = (String, BTreeMap<String, String>);

/// The samples of an exposition in the Prometheus text format.
fn samples(text: &str) -> BTreeMap<Series, f64> {
    let mut samples = BTreeMap::new();
    for line in text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("NAME VALUE");
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        // Values here hold no commas or quotes.
        for pair in labels.split(',').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').expect("KEY=VALUE");
            map.insert(key.to_string(), value.trim_matches('"').to_string());
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("a number in {line:?}"));
        assert!(
            samples.insert((name.to_string(), map), value).is_none(),
            "{line:?} twice"
        );
    }
    samples
}

/// The value of one series; panics when it is not there.
fn value(samples: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    *samples
        .get(&(name.to_string(), labels.clone()))
        .unwrap_or_else(|| panic!("no {name}{labels:?} in the scrape"))
}

/// The series of `name` that have the label `agent`.
fn agents_of(samples: &BTreeMap<Series, f64>, name: &str) -> Vec<String> {
    samples
        .keys()
        .filter(|(metric, _)| metric == name)
        .filter_map(|(_, labels)| labels.get("agent").cloned())
        .collect()
}

/// Runs `program ARGS` with `input` on its stdin; `None` when it cannot
/// be started (it is not installed).
fn run_with_input(program: &str, args: &[&str], input: &str) -> Option<Output> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    Some(child.wait_with_output().unwrap())
}

/// What a command said on stdout and stderr.
fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Checks the exposition with a real parser: `promtool check metrics`
/// (Debian's `prometheus` package, which `.ci/run` installs), else
/// Python's `prometheus_client`.
fn check_with_a_real_parser(text: &str) {
    if let Some(output) = run_with_input("promtool", &["check", "metrics"], text) {
        let said = said(&output);
        assert!(
            output.status.success(),
            "promtool refused the metrics: {said}"
        );
        // It lints too: names, units, `_total` on counters.
        assert!(said.trim().is_empty(), "promtool has remarks: {said}");
        return;
    }
    let script = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as parse\nprint(len(list(parse(sys.stdin.read()))))";
    let output = run_with_input("python3", &["-c", script], text).expect("python3");
    assert!(
        output.status.success(),
        "no parser of the Prometheus format could check the metrics: install promtool \
         (apt-get install prometheus) or prometheus_client (pip install prometheus-client): {}",
        said(&output)
    );
}

fn scrape(home: &Home) -> (String, BTreeMap<Series, f64>) {
    let answer = home.http("GET", "/metrics", None, "");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let samples = samples(&answer.body);
    (answer.body, samples)
}

#[test]
fn metrics_parse_and_agree_with_summary_and_proc() {
    let home = Home::new();
    home.ok(&["daemon", "--sample-interval", "100ms"]);
    let seconds = marker();
    let tree = format!("sleep {seconds} & sleep {seconds} & wait");
    home.run(&["--name", "tree", "--group", "ci", "--", "sh", "-c", &tree]);
    home.run(&["--name", "crash", "--", "sh", "-c", "exit 3"]);
    home.run(&["--name", "stopped", "--", "sleep", &seconds]);
    home.wrangle(&["wait", "crash"]);
    home.ok(&["stop", "stopped"]);
    wait_until(SOON, "the tree is sampled whole", || {
        home.inspect("tree")["tree"]["processes"] == 3
    });
    let (text, samples) = scrape(&home);
    check_with_a_real_parser(&text);

    // The fleet, as `summary` counts it.
    let summary = home.json(&["summary", "--json"]);
    for (state, count) in summary["by_state"].as_object().unwrap() {
        let scraped = value(&samples, "wrangle_agents", &[("state", state)]);
        assert_eq!(Some(scraped), count.as_f64(), "{state}");
    }
    for (health, count) in summary["by_health"].as_object().unwrap() {
        let scraped = value(&samples, "wrangle_agents_health", &[("health", health)]);
        assert_eq!(Some(scraped), count.as_f64(), "{health}");
    }
    assert_eq!(value(&samples, "wrangle_agent_starts_total", &[]), 3.0);
    assert_eq!(
        value(&samples, "wrangle_agent_exits_total", &[("cause", "exit")]),
        1.0
    );
    assert_eq!(
        value(&samples, "wrangle_agent_exits_total", &[("cause", "user")]),
        1.0
    );
    assert_eq!(
        value(
            &samples,
            "wrangle_agent_exits_total",
            &[("cause", "timeout")]
        ),
        0.0
    );
    assert_eq!(
        value(
            &samples,
            "wrangle_events_total",
            &[("type", "agent.created")]
        ),
        3.0
    );
    assert_eq!(
        value(
            &samples,
            "wrangle_api_requests_total",
            &[("route", "/v1/agents"), ("code", "201")]
        ),
        3.0
    );
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(&samples, "wrangle_build_info", &[("version", version)]),
        1.0
    );

    // One agent, as inspect and /proc see it.
    let view = home.inspect("tree");
    let id = view["id"].as_str().unwrap();
    assert_eq!(
        value(
            &samples,
            "wrangle_agent_info",
            &[("agent", "tree"), ("id", id), ("group", "ci")]
        ),
        1.0
    );
    let pids: Vec<i32> = procfs::with_marker(&seconds)
        .iter()
        .map(|process| process.pid)
        .chain([view["pid"].as_i64().unwrap() as i32])
        .filter(|pid| procfs::stat(*pid).is_some_and(|p| p.ppid != std::process::id() as i32))
        .collect();
    // The stopped agent's sleep is gone; the tree's sh and two sleeps are
    // what is left with the marker.
    let live: Vec<i32> = pids
        .iter()
        .copied()
        .filter(|pid| procfs::is_alive(*pid))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(live.len(), 3, "{live:?}");
    assert_eq!(
        value(&samples, "wrangle_agent_processes", &[("agent", "tree")]),
        3.0
    );
    let rss: u64 = live
        .iter()
        .map(|pid| procfs::rss_bytes(*pid).unwrap())
        .sum();
    let scraped = value(&samples, "wrangle_agent_memory_bytes", &[("agent", "tree")]);
    // `VmRSS` sums the kernel's per-CPU counters; `stat`, which the
    // sampler reads, takes them as they are: a few hundred KiB apart on a
    // process that just started.
    let off = (scraped - rss as f64).abs() / rss as f64;
    assert!(off < 0.2, "scraped {scraped}, /proc says {rss}");
    assert!(value(&samples, "wrangle_agent_open_fds", &[("agent", "tree")]) >= 3.0);
    assert!(
        value(
            &samples,
            "wrangle_agent_cpu_seconds_total",
            &[("agent", "tree")]
        ) >= 0.0
    );
    let started =
        common::rfc3339(&view["started_at"], "started_at").timestamp_millis() as f64 / 1e3;
    let scraped = value(
        &samples,
        "wrangle_agent_start_time_seconds",
        &[("agent", "tree")],
    );
    assert!((scraped - started).abs() < 0.01, "{scraped} vs {started}");
    assert_eq!(
        value(
            &samples,
            "wrangle_agent_restarts_total",
            &[("agent", "tree")]
        ),
        0.0
    );
    // Ended agents keep their info, but have no tree.
    assert!(agents_of(&samples, "wrangle_agent_info").contains(&"crash".to_string()));
    assert_eq!(agents_of(&samples, "wrangle_agent_memory_bytes"), ["tree"]);

    // The daemon itself.
    let daemon = home.daemon_pid().unwrap();
    let rss = procfs::rss_bytes(daemon).unwrap() as f64;
    let scraped = value(&samples, "process_resident_memory_bytes", &[]);
    assert!(
        (scraped - rss).abs() / rss < 0.5,
        "scraped {scraped}, /proc says {rss}"
    );
    assert!(value(&samples, "process_open_fds", &[]) > 3.0);
    assert!(value(&samples, "process_cpu_seconds_total", &[]) > 0.0);
    let info = home.json(&["inspect", "--json", "tree"]);
    assert!(info.is_object());

    // A removed agent's series are gone with it.
    home.ok(&["rm", "crash"]);
    let (_, samples) = scrape(&home);
    assert!(!agents_of(&samples, "wrangle_agent_info").contains(&"crash".to_string()));
    assert_eq!(
        value(&samples, "wrangle_agents", &[("state", "failed")]),
        0.0
    );
}

#[test]
fn per_agent_series_stop_at_the_most_asked_for_running_ones_first() {
    let home = Home::new();
    home.ok(&["daemon", "--metrics-agents-max", "2"]);
    home.run(&["--name", "old-done", "--", "true"]);
    home.wrangle(&["wait", "old-done"]);
    home.run(&["--name", "first", "--", "sleep", &marker()]);
    home.run(&["--name", "second", "--", "sleep", &marker()]);
    let (text, samples) = scrape(&home);
    check_with_a_real_parser(&text);
    let mut named = agents_of(&samples, "wrangle_agent_info");
    named.sort();
    assert_eq!(named, ["first", "second"]);
    assert_eq!(value(&samples, "wrangle_agent_series_omitted", &[]), 1.0);
    // The fleet counts every agent all the same.
    assert_eq!(
        value(&samples, "wrangle_agents", &[("state", "completed")]),
        1.0
    );
}

#[test]
fn spend_and_waiting_series_parse_and_agree_with_the_ledger() {
    let home = Home::new();
    home.ok(&["daemon", "--sample-interval", "100ms"]);
    let line = r#"{"model":"claude-sonnet-4-5","tokens":{"input":1000,"output":200,"cache_read":30,"cache_write":4},"cost_usd":0.25,"waiting":"approval of the deploy"}"#;
    let script = format!("echo '{line}'; exec sleep {}", marker());
    home.run(&[
        "--name",
        "spender",
        "--adapter",
        "jsonl",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    wait_until(SOON, "the agent waits for a person", || {
        home.inspect("spender")["health"] == "waiting"
    });
    let (text, samples) = scrape(&home);
    check_with_a_real_parser(&text);
    for (kind, count) in [
        ("input", 1000.0),
        ("output", 200.0),
        ("cache_read", 30.0),
        ("cache_write", 4.0),
    ] {
        let scraped = value(
            &samples,
            "wrangle_agent_tokens_total",
            &[("agent", "spender"), ("kind", kind)],
        );
        assert_eq!(scraped, count, "{kind}");
    }
    assert_eq!(
        value(
            &samples,
            "wrangle_agent_cost_usd_total",
            &[("agent", "spender")]
        ),
        0.25
    );
    assert_eq!(value(&samples, "wrangle_cost_usd_total", &[]), 0.25);
    assert_eq!(value(&samples, "wrangle_agents_waiting", &[]), 1.0);
    let ledger = home.json(&["cost", "--json"]);
    assert_eq!(ledger["total"]["cost_usd"], 0.25);
}

#[test]
fn openmetrics_is_sent_to_who_asks_for_it() {
    let home = Home::new();
    home.ok(&["daemon"]);
    let answer = common::http::request_with_headers(
        &home.socket(),
        "GET",
        "/metrics",
        &["Accept: application/openmetrics-text; version=1.0.0"],
    );
    assert_eq!(answer.status, 200);
    assert!(answer.body.trim_end().ends_with("# EOF"), "{}", answer.body);
    assert!(answer.body.contains("# TYPE wrangle_agent_starts counter"));
    let plain = home.http("GET", "/metrics", None, "");
    assert!(!plain.body.contains("# EOF"));
    let json: Value = home.json(&["summary", "--json"]);
    assert_eq!(json["agents"], 0);
    // Both are in the OpenAPI document, with the event stream.
    let document = home.http("GET", "/openapi.json", None, "").json();
    for path in ["/metrics", "/v1/events"] {
        assert!(document["paths"][path]["get"].is_object(), "{path}");
    }
    assert!(document["components"]["schemas"]["EventKind"].is_object());
}
