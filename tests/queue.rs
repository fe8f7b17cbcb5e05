//! Concurrency limits: a group's `max_running` and the daemon's
//! `--max-running` keep agents `queued` until a slot frees; queued agents
//! start highest priority first, then in the order they came, also after a
//! daemon restart.

mod common;

use common::{procfs, wait_until, Home, SOON};
use std::path::Path;

/// A script that notes its start and end in `journal` (as `start NAME` and
/// `end NAME`) and lives `seconds` in between.
fn noting(journal: &Path, name: &str, seconds: &str) -> String {
    format!(
        "echo start {name} >> {journal}; sleep {seconds}; echo end {name} >> {journal}",
        journal = journal.display()
    )
}

fn journal_lines(journal: &Path) -> Vec<String> {
    std::fs::read_to_string(journal)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The most agents the journal shows running at once.
fn most_at_once(lines: &[String]) -> usize {
    let mut running = 0usize;
    let mut most = 0;
    for line in lines {
        if line.starts_with("start ") {
            running += 1;
            most = most.max(running);
        } else {
            running = running.saturating_sub(1);
        }
    }
    most
}

fn starts(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|line| line.strip_prefix("start "))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_group_runs_at_most_its_limit_and_starts_the_queue_by_priority() {
    let home = Home::new();
    let journal = home.path().join("journal");
    let set = home.ok(&["group", "set", "builds", "--max-running", "2"]);
    assert!(set.contains("builds"), "{set}");
    // Two take the slots; three wait, and start by priority.
    let mut ids = Vec::new();
    for (name, priority) in [
        ("a", "0"),
        ("b", "0"),
        ("low", "1"),
        ("high", "5"),
        ("mid", "3"),
    ] {
        let script = noting(&journal, name, "0.4");
        ids.push(home.run(&[
            "--name",
            name,
            "--group",
            "builds",
            "--priority",
            priority,
            "--",
            "sh",
            "-c",
            &script,
        ]));
    }
    let queued = home.inspect("high");
    assert_eq!(queued["state"], "queued", "{queued}");
    assert_eq!(queued["group"], "builds");
    assert_eq!(queued["priority"], 5);
    let reason = queued["reason"].as_str().unwrap();
    assert!(reason.contains("group builds"), "{reason}");
    assert!(queued["pid"].is_null());
    let groups = home.json(&["group", "ls", "--json"]);
    assert_eq!(groups[0]["name"], "builds");
    assert_eq!(groups[0]["max_running"], 2);
    assert_eq!(groups[0]["running"], 2);
    assert_eq!(groups[0]["queued"], 3);

    for id in &ids {
        home.ok(&["wait", id]);
    }
    let lines = journal_lines(&journal);
    assert_eq!(lines.len(), 10, "every agent ran: {lines:?}");
    assert!(most_at_once(&lines) <= 2, "{lines:?}");
    assert_eq!(&starts(&lines)[2..], ["high", "mid", "low"], "{lines:?}");
    for id in &ids {
        assert_eq!(home.state(id), "completed");
    }
}

#[test]
fn queued_agents_survive_a_daemon_restart_and_start_in_order() {
    let home = Home::new();
    let journal = home.path().join("journal");
    home.ok(&["group", "set", "one", "--max-running", "1"]);
    let blocker = home.run(&["--group", "one", "--", "sleep", "1000"]);
    for name in ["first", "second", "third"] {
        let script = noting(&journal, name, "0.1");
        home.run(&["--name", name, "--group", "one", "--", "sh", "-c", &script]);
    }
    assert_eq!(home.state("third"), "queued");
    let daemon = home.daemon_pid().expect("the daemon runs");
    common::kill(daemon);
    wait_until(SOON, "the daemon is gone", || {
        procfs::stat(daemon).is_none_or(|p| p.is_zombie())
    });
    // A new daemon keeps them queued: the blocker still holds the slot.
    for name in ["first", "second", "third"] {
        assert_eq!(home.state(name), "queued", "{name}");
    }
    assert_eq!(home.state(&blocker), "running");
    home.ok(&["stop", &blocker]);
    for name in ["first", "second", "third"] {
        home.ok(&["wait", name]);
    }
    let lines = journal_lines(&journal);
    assert_eq!(starts(&lines), ["first", "second", "third"], "{lines:?}");
    assert_eq!(most_at_once(&lines), 1, "{lines:?}");
}

#[test]
fn the_daemons_max_running_queues_every_agent_over_it() {
    let home = Home::new();
    let started = home.ok(&["daemon", "--max-running", "1"]);
    assert!(started.contains("started the daemon"), "{started}");
    let first = home.run(&["--", "sleep", "1000"]);
    let second = home.run(&["--", "sleep", "1000"]);
    assert_eq!(home.state(&first), "running");
    assert_eq!(home.state(&second), "queued");
    let reason = home.inspect(&second)["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("--max-running 1"), "{reason}");
    let listed = home.ok(&["group", "ls"]);
    assert!(listed.contains("at most 1 run at once"), "{listed}");

    // A stop of a queued agent never starts it; the running one's stop
    // frees its slot for nobody.
    let stopped = home.ok(&["stop", &second]);
    assert!(stopped.contains("stopped while queued"), "{stopped}");
    assert!(home.inspect(&second)["started_at"].is_null());
    home.ok(&["stop", &first]);
    assert_eq!(home.state(&second), "stopped");
}

#[test]
fn bad_group_input_is_refused() {
    let home = Home::new();
    let zero = home.fails(&["group", "set", "g", "--max-running", "0"]);
    assert!(zero.stderr.contains("at least 1"), "{zero:?}");
    let name = home.fails(&["run", "--group", "Bad Name", "--", "true"]);
    assert!(name.stderr.contains("Bad Name"), "{name:?}");
    assert_eq!(home.ps_all().len(), 0);
    let response = home.http(
        "PUT",
        "/v1/groups/g",
        Some("application/json"),
        r#"{"max_running": 0}"#,
    );
    assert_eq!(response.status, 400, "{response:?}");
    assert!(home
        .json(&["group", "ls", "--json"])
        .as_array()
        .unwrap()
        .is_empty());
}
