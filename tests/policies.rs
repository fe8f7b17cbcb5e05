//! Restart policies and timeouts, against a real daemon: agents that fail
//! are started again after growing delays until the policy gives up, each
//! restart is a new run with its own logs, and a run that outlives its
//! timeout is stopped and recorded as failed.

mod common;

use common::{marker, procfs, rfc3339, wait_until, Home, SOON};
use serde_json::Value;

/// The agent's runs as `wrangle runs --json` lists them.
fn runs(home: &Home, agent: &str) -> Vec<Value> {
    home.json(&["runs", agent, "--json"])
        .as_array()
        .expect("an array of runs")
        .clone()
}

/// Milliseconds from the end of run `i` to the start of run `i + 1`.
fn gaps_ms(runs: &[Value]) -> Vec<i64> {
    runs.windows(2)
        .map(|pair| {
            let ended = rfc3339(&pair[0]["ended_at"], "ended_at");
            let started = rfc3339(&pair[1]["started_at"], "started_at");
            (started - ended).num_milliseconds()
        })
        .collect()
}

#[test]
fn on_failure_restarts_with_growing_delays_until_it_gives_up() {
    let home = Home::new();
    let id = home.run(&[
        "--restart",
        "on-failure",
        "--max-restarts",
        "3",
        "--backoff-initial",
        "200ms",
        "--",
        "sh",
        "-c",
        "echo \"run $WRANGLE_RUN\"; exit 1",
    ]);
    wait_until(SOON, "the restarts are exhausted", || {
        home.state(&id) == "failed"
    });
    let agent = home.inspect(&id);
    assert_eq!(agent["run"], 4, "{agent}");
    assert_eq!(agent["restarts"], 3, "{agent}");
    assert_eq!(agent["restart"], "on-failure");
    let reason = agent["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("exited with code 1; crash-looping"),
        "{reason}"
    );

    let runs = runs(&home, &id);
    assert_eq!(runs.len(), 4);
    for (index, run) in runs.iter().enumerate() {
        assert_eq!(run["run"], index + 1);
        assert_eq!(run["exit_code"], 1, "{run}");
    }
    // 200 ms, 400 ms, 800 ms, each up to a fifth shorter (jitter).
    let gaps = gaps_ms(&runs);
    assert!(gaps[0] >= 150, "{gaps:?}");
    assert!(gaps[1] > gaps[0] && gaps[2] > gaps[1], "growing: {gaps:?}");

    // Each run has its own log.
    for run in 1..=4 {
        let text = home.ok(&["logs", &id, "--run", &run.to_string()]);
        assert_eq!(text, format!("run {run}\n"));
    }
    let missing = home.fails(&["logs", &id, "--run", "5"]);
    assert!(missing.stderr.contains("has no run 5"), "{missing:?}");
}

#[test]
fn always_restarts_an_agent_that_exits_zero_and_never_does_not() {
    let home = Home::new();
    let always = home.run(&[
        "--restart",
        "always",
        "--max-restarts",
        "2",
        "--backoff-initial",
        "100ms",
        "--",
        "true",
    ]);
    let never = home.run(&["--", "true"]);
    wait_until(SOON, "the restarts are exhausted", || {
        home.state(&always) == "failed"
    });
    let runs = runs(&home, &always);
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert!(runs.iter().all(|run| run["exit_code"] == 0), "{runs:?}");
    home.ok(&["wait", &never]);
    assert_eq!(home.state(&never), "completed");
    assert_eq!(home.inspect(&never)["run"], 1);
}

#[test]
fn an_agent_waiting_to_restart_is_in_backoff_and_a_stop_cancels_the_restart() {
    let home = Home::new();
    let id = home.run(&[
        "--restart",
        "on-failure",
        "--backoff-initial",
        "3s",
        "--",
        "sh",
        "-c",
        "exit 7",
    ]);
    home.wait_for_state(&id, "backoff");
    let reason = home.inspect(&id)["reason"].as_str().unwrap().to_string();
    assert!(
        reason.starts_with("exited with code 7; restart 1 of at most 5 within 60s"),
        "{reason}"
    );
    let stopped = home.ok(&["stop", &id]);
    assert!(
        stopped.contains("stopped while waiting to restart"),
        "{stopped}"
    );
    assert_eq!(home.state(&id), "stopped");
    // The restart that was due does not happen.
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(home.inspect(&id)["run"], 1);
    assert_eq!(home.state(&id), "stopped");
}

#[test]
fn an_agent_in_backoff_is_restarted_by_a_new_daemon() {
    let home = Home::new();
    let seconds = marker();
    let flag = home.path().join("failed-once");
    // Fails the first time, then runs for good.
    let script = format!(
        "if [ -e {flag} ]; then exec sleep {seconds}; else touch {flag}; exit 1; fi",
        flag = flag.display()
    );
    let id = home.run(&[
        "--restart",
        "on-failure",
        "--backoff-initial",
        "2s",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    home.wait_for_state(&id, "backoff");
    let daemon = home.daemon_pid().expect("the daemon runs");
    common::kill(daemon);
    wait_until(SOON, "the daemon is gone", || {
        procfs::stat(daemon).is_none_or(|p| p.is_zombie())
    });
    // Any call starts a new daemon, which restarts the agent.
    wait_until(SOON, "the agent runs again", || {
        home.state(&id) == "running"
    });
    let agent = home.inspect(&id);
    assert_eq!(agent["run"], 2);
    let pid = agent["pid"].as_i64().unwrap() as i32;
    assert_eq!(
        procfs::cmdline(pid).as_deref(),
        Some(format!("sleep {seconds}").as_str())
    );
    home.ok(&["stop", &id]);
}

#[test]
fn a_run_that_outlives_its_timeout_is_stopped_and_fails_with_reason_timeout() {
    let home = Home::new();
    let id = home.run(&["--timeout", "2s", "--", "sleep", &marker()]);
    let pid = home.pid(&id);
    home.wrangle(&["wait", &id]);
    let agent = home.inspect(&id);
    assert_eq!(agent["state"], "failed", "{agent}");
    let reason = agent["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("timeout: ran longer than 2s; stopped by SIGTERM"),
        "{reason}"
    );
    let runtime = agent["runtime_seconds"].as_f64().unwrap();
    assert!((2.0..10.0).contains(&runtime), "ran {runtime}s");
    assert_eq!(agent["timeout_seconds"], 2.0);
    assert!(!procfs::is_alive(pid));
}

#[test]
fn bad_policy_options_are_refused_and_create_nothing() {
    let home = Home::new();
    for (args, message) in [
        (
            vec!["--restart", "sometimes"],
            "invalid restart policy \"sometimes\"",
        ),
        (vec!["--timeout", "soon"], "soon"),
        (vec!["--max-restarts", "-1"], "-1"),
        (
            vec!["--backoff-initial", "10s", "--backoff-max", "1s"],
            "--backoff-max (1s) is shorter than --backoff-initial (10s)",
        ),
    ] {
        let mut full = vec!["run"];
        full.extend(args.iter().copied());
        full.extend(["--", "true"]);
        let output = home.fails(&full);
        assert!(output.stderr.contains(message), "{full:?}: {output:?}");
    }
    assert_eq!(home.ps_all(), Vec::<Value>::new());
}

#[test]
fn restart_stops_the_agent_and_starts_a_new_run_of_it() {
    let home = Home::new();
    let seconds = marker();
    let id = home.run(&["--name", "svc", "--", "sleep", &seconds]);
    let first = home.pid(&id);
    let output = home.ok(&["restart", "svc"]);
    assert_eq!(output, "svc: run 2 running\n");
    assert!(!procfs::is_alive(first), "the first run is stopped");
    let second = home.pid(&id);
    assert_ne!(second, first);
    assert!(procfs::is_alive(second));
    let runs = runs(&home, &id);
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["state"], "stopped");
    assert_eq!(runs[1]["state"], "running");

    // An ended agent is simply started again.
    home.ok(&["stop", "svc"]);
    assert_eq!(home.ok(&["restart", "svc"]), "svc: run 3 running\n");
    assert!(procfs::is_alive(home.pid(&id)));
    home.ok(&["stop", "svc"]);

    let unknown = home.fails(&["restart", "nope"]);
    assert!(unknown.stderr.contains("nope"), "{unknown:?}");
}

/// A home whose daemon samples every 100 ms, so that hung is seen soon.
fn fast_sampling_home() -> Home {
    let home = Home::new();
    home.ok(&["daemon", "--sample-interval", "100ms"]);
    home
}

#[test]
fn on_hang_stop_ends_a_silent_agent_failed_with_reason_hung() {
    let home = fast_sampling_home();
    let id = home.run(&[
        "--idle-timeout",
        "1s",
        "--on-hang",
        "stop",
        "--",
        "sleep",
        &marker(),
    ]);
    let pid = home.pid(&id);
    assert_eq!(home.inspect(&id)["on_hang"], "stop");
    home.wrangle(&["wait", &id]);
    let agent = home.inspect(&id);
    assert_eq!(agent["state"], "failed", "{agent}");
    let reason = agent["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("hung (no output or heartbeat for"),
        "{reason}"
    );
    assert!(reason.contains("stopped by SIGTERM"), "{reason}");
    assert!(!procfs::is_alive(pid));
    assert_eq!(agent["run"], 1, "stop does not restart");
}

#[test]
fn on_hang_restart_starts_a_new_run_of_a_silent_agent() {
    let home = fast_sampling_home();
    let id = home.run(&[
        "--idle-timeout",
        "1s",
        "--on-hang",
        "restart",
        "--backoff-initial",
        "100ms",
        "--",
        "sh",
        "-c",
        "echo started; exec sleep 1000",
    ]);
    let first = home.pid(&id);
    wait_until(SOON, "a second run runs", || {
        let agent = home.inspect(&id);
        agent["run"].as_u64() >= Some(2) && agent["state"] == "running"
    });
    assert!(!procfs::is_alive(first));
    let runs = runs(&home, &id);
    let reason = runs[0]["reason"].as_str().unwrap();
    assert!(reason.starts_with("hung ("), "{reason}");
    home.ok(&["stop", &id]);
}

#[test]
fn on_hang_without_an_idle_timeout_is_refused() {
    let home = Home::new();
    let cli = home.fails(&["run", "--on-hang", "stop", "--", "true"]);
    assert!(cli.stderr.contains("--idle-timeout"), "{cli:?}");
    let bad = home.fails(&[
        "run",
        "--idle-timeout",
        "1s",
        "--on-hang",
        "maybe",
        "--",
        "true",
    ]);
    assert!(
        bad.stderr.contains("invalid --on-hang \"maybe\""),
        "{bad:?}"
    );
    // The daemon refuses it too (the CLI checked above, before starting one).
    home.ok(&["daemon"]);
    let response = home.http(
        "POST",
        "/v1/agents",
        Some("application/json"),
        r#"{"command": ["true"], "on_hang": "stop"}"#,
    );
    assert_eq!(response.status, 400, "{response:?}");
    assert!(home.ps_all().is_empty());
}

#[test]
fn a_shim_killed_ends_its_run_as_lost_stops_its_tree_and_the_policy_restarts_it() {
    let home = Home::new();
    let seconds = marker();
    home.ok(&["daemon", "--sample-interval", "200ms"]);
    let id = home.run(&[
        "--restart",
        "on-failure",
        "--backoff-initial",
        "100ms",
        "--",
        "sh",
        "-c",
        &format!("sleep {seconds} & sleep {seconds}"),
    ]);
    wait_until(SOON, "the tree runs", || sleepers(&seconds).len() == 2);
    let agent = home.inspect(&id);
    let shim = agent["shim_pid"].as_i64().unwrap() as i32;
    common::kill(shim);
    wait_until(SOON, "the next run starts", || {
        home.inspect(&id)["run"] == 2 && home.state(&id) == "running"
    });
    // The first run ended as lost, and the policy took it as a failure.
    let first = &runs(&home, &id)[0];
    let reason = first["reason"].as_str().unwrap();
    assert!(reason.starts_with("shim lost"), "{first:#}");
    assert!(reason.contains("restart 1 of"), "{first:#}");
    assert!(first["exit_code"].is_null(), "{first:#}");
    // The first run's tree is gone; the second's runs (two of the marker).
    wait_until(SOON, "only the new run's tree is left", || {
        sleepers(&seconds).len() == 2
    });
    let pid = home.inspect(&id)["pid"].as_i64().unwrap() as i32;
    assert!(procfs::is_alive(pid));
    let old = agent["pid"].as_i64().unwrap() as i32;
    assert!(
        pid != old && !procfs::is_alive(old),
        "the first run's main process is gone"
    );
}

/// Live `sleep SECONDS` processes.
fn sleepers(seconds: &str) -> Vec<procfs::Proc> {
    let line = format!("sleep {seconds}");
    procfs::with_marker(seconds)
        .into_iter()
        .filter(|p| procfs::cmdline(p.pid).as_deref() == Some(line.as_str()))
        .collect()
}
