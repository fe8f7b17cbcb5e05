//! Many agents in one request (`POST /v1/batch`), as `wrangle up` sends
//! them: all or none, each agent once in `/proc`, and after a daemon
//! SIGKILL in the middle of a batch every agent of it either runs once or
//! does not exist: never twice, never listed as running without a process.

mod common;

use common::{crash, procfs, wait_until, Home, SOON};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::thread;

/// How many live processes there are of each command line.
fn processes_by_command() -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for process in procfs::all().into_iter().filter(|p| !p.is_zombie()) {
        if let Some(line) = procfs::cmdline(process.pid) {
            *counts.entry(line).or_insert(0) += 1;
        }
    }
    counts
}

/// A batch of `count` agents `NAME-I` running `sleep SECONDS+I` (a command
/// line of its own each, to find it in `/proc`).
fn batch(name: &str, count: usize, seconds: u64) -> Value {
    let agents: Vec<Value> = (0..count)
        .map(|i| {
            json!({
                "name": format!("{name}-{i}"),
                "command": ["sleep", (seconds + i as u64).to_string()],
            })
        })
        .collect();
    json!({ "inherit_env": { "PATH": std::env::var("PATH").unwrap_or_default() }, "agents": agents })
}

fn post_batch(home: &Home, body: &Value) -> common::http::Response {
    home.http(
        "POST",
        "/v1/batch",
        Some("application/json"),
        &body.to_string(),
    )
}

#[test]
fn a_batch_with_bad_items_creates_nothing_and_names_each_bad_one() {
    let home = Home::new();
    home.ok(&["ps"]);
    let mut body = batch("bad", 5, 7_100_000);
    body["agents"][1]["stop_timeout"] = json!("soon");
    body["agents"][3]["command"] = json!([]);
    body["agents"][4]["name"] = json!("bad-0");
    let answer = post_batch(&home, &body);
    assert_eq!(answer.status, 400, "{}", answer.body);
    let error = &answer.json()["error"];
    let items = error["items"].as_array().expect("items");
    let named: Vec<(u64, &str)> = items
        .iter()
        .map(|item| {
            (
                item["index"].as_u64().unwrap(),
                item["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        named,
        [(1, "bad-1"), (3, "bad-3"), (4, "bad-0")],
        "{error:#}"
    );
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("agents[1] (bad-1)"), "{message}");
    assert!(message.contains("soon"), "{message}");
    assert!(message.contains("given twice"), "{message}");
    // Nothing of the batch exists, nor runs.
    assert_eq!(home.json(&["ps", "--all", "--json"]), json!([]));
    let running = processes_by_command();
    assert!(running.keys().all(|line| !line.starts_with("sleep 71000")));

    // A name that is taken refuses the batch too (409), naming it.
    home.run(&["--name", "taken-2", "--", "sleep", "7200000"]);
    let answer = post_batch(&home, &batch("taken", 4, 7_300_000));
    assert_eq!(answer.status, 409, "{}", answer.body);
    let error = &answer.json()["error"];
    assert_eq!(error["items"][0]["name"], "taken-2", "{error:#}");
    assert_eq!(home.json(&["ps", "--json"]).as_array().unwrap().len(), 1);

    // A check alone (`dry_run`) answers 204 and creates nothing.
    let answer = home.http(
        "POST",
        "/v1/batch?dry_run=true",
        Some("application/json"),
        &batch("checked", 3, 7_400_000).to_string(),
    );
    assert_eq!(answer.status, 204, "{}", answer.body);
    assert_eq!(home.json(&["ps", "--json"]).as_array().unwrap().len(), 1);
}

#[test]
fn a_batch_of_200_runs_each_agent_once() {
    let home = Home::new();
    home.ok(&["ps"]);
    let answer = post_batch(&home, &batch("many", 200, 7_500_000));
    assert_eq!(answer.status, 201, "{}", answer.body);
    let agents = answer.json();
    let agents = agents.as_array().unwrap();
    assert_eq!(agents.len(), 200);
    let running = processes_by_command();
    for (i, agent) in agents.iter().enumerate() {
        assert_eq!(agent["name"], format!("many-{i}"), "in the batch's order");
        assert_eq!(agent["state"], "running", "{agent:#}");
        let pid = agent["pid"].as_i64().expect("a pid") as i32;
        let command = format!("sleep {}", 7_500_000 + i);
        assert_eq!(procfs::cmdline(pid).as_deref(), Some(command.as_str()));
        assert_eq!(running.get(&command), Some(&1), "{command} once");
        // The batch's environment is the agent's.
        let env = procfs::environ(pid).unwrap();
        assert!(
            env.iter().any(|entry| entry.starts_with("PATH=")),
            "{env:?}"
        );
    }
    let listed = home.json(&["ps", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 200);
}

#[test]
fn a_daemon_killed_during_a_batch_leaves_each_agent_running_once_or_absent() {
    let home = Home::new();
    home.ok(&["ps"]);
    const COUNT: usize = 300;
    const SECONDS: u64 = 7_600_000;
    let body = batch("crash", COUNT, SECONDS).to_string();
    let sender = {
        let socket = home.socket();
        thread::spawn(move || {
            // The answer is lost with the daemon: the test reads the
            // outcome from the next daemon.
            use std::io::{Read, Write};
            let mut stream = std::os::unix::net::UnixStream::connect(&socket).expect("connect");
            let request = format!(
                "POST /v1/batch HTTP/1.1\r\nhost: wrangle\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(request.as_bytes());
            let _ = stream.read_to_end(&mut Vec::new());
        })
    };
    // Once some agents of the batch run, and before all do.
    wait_until(SOON, "the batch starts", || {
        processes_by_command()
            .keys()
            .any(|line| line.starts_with("sleep 76"))
    });
    crash::kill_daemon(&home);
    let _ = sender.join();
    // The next daemon re-attaches what runs, and starts what was
    // recorded but never started.
    let listed = home.json(&["ps", "--all", "--json"]);
    let mut listed_after = listed.clone();
    wait_until(SOON, "no agent of the batch is starting", || {
        listed_after = home.json(&["ps", "--all", "--json"]);
        listed_after
            .as_array()
            .unwrap()
            .iter()
            .all(|agent| agent["state"] != "starting")
    });
    let running = processes_by_command();
    let agents: HashMap<String, Value> = listed_after
        .as_array()
        .unwrap()
        .iter()
        .map(|agent| (agent["name"].as_str().unwrap().to_string(), agent.clone()))
        .collect();
    let mut ran = 0;
    for i in 0..COUNT {
        let command = format!("sleep {}", SECONDS + i as u64);
        let processes = running.get(&command).copied().unwrap_or(0);
        let why = format!("agent crash-{i}: {processes} processes; listed: {listed:#}");
        assert!(processes <= 1, "twice: {why}");
        match agents.get(&format!("crash-{i}")) {
            Some(agent) if agent["state"] == "running" => {
                assert_eq!(processes, 1, "running without its process: {why}");
                let pid = agent["pid"].as_i64().unwrap() as i32;
                assert_eq!(procfs::cmdline(pid).as_deref(), Some(command.as_str()));
                ran += 1;
            }
            Some(agent) => {
                assert_eq!(processes, 0, "not running, yet its process is: {why}");
                assert!(agent["state"] != "starting", "half-made: {why}");
            }
            None => assert_eq!(processes, 0, "absent, yet its process runs: {why}"),
        }
    }
    assert!(ran > 0, "some agents of the batch ran: {listed:#}");
    let mut states: HashMap<String, usize> = HashMap::new();
    for agent in agents.values() {
        *states
            .entry(agent["state"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    eprintln!(
        "after the crash: {states:?}, {} absent",
        COUNT - agents.len()
    );
    wait_until(SOON, "nothing is left behind by the stop", || {
        home.ok(&["stop", "--all"]);
        processes_by_command()
            .keys()
            .all(|line| !line.starts_with("sleep 76"))
    });
}

#[test]
fn ps_filters_in_the_daemon_by_state_group_and_label_and_limits() {
    let home = Home::new();
    home.ok(&["ps"]);
    let body = json!({
        "agents": [
            {"name": "web-1", "command": ["sleep", "7700001"], "group": "web", "labels": {"team": "a"}},
            {"name": "web-2", "command": ["sleep", "7700002"], "group": "web", "labels": {"team": "b"}},
            {"name": "job-1", "command": ["sleep", "7700003"], "labels": {"team": "a", "urgent": "yes"}},
            {"name": "done-1", "command": ["true"], "labels": {"team": "a"}},
        ]
    });
    assert_eq!(post_batch(&home, &body).status, 201);
    home.ok(&["wait", "done-1"]);
    let names = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["ps", "--json"];
        full.extend_from_slice(args);
        home.json(&full)
            .as_array()
            .unwrap()
            .iter()
            .map(|agent| agent["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&[]), ["web-1", "web-2", "job-1"]);
    assert_eq!(names(&["--filter", "group=web"]), ["web-1", "web-2"]);
    assert_eq!(names(&["--filter", "label=team=a"]), ["web-1", "job-1"]);
    assert_eq!(
        names(&["--filter", "label=team=a", "--filter", "label=urgent"]),
        ["job-1"]
    );
    assert_eq!(names(&["--filter", "state=completed"]), ["done-1"]);
    assert_eq!(
        names(&[
            "--filter",
            "state=running",
            "--filter",
            "state=completed",
            "--limit",
            "2"
        ]),
        ["web-1", "web-2"]
    );
    assert_eq!(
        names(&["--all", "--filter", "label=team=a"]),
        ["web-1", "job-1", "done-1"]
    );
    // A filter that cannot be read says what can, in the CLI or the daemon.
    let refused = home.fails(&["ps", "--filter", "colour=red"]);
    assert!(refused.stderr.contains("state=STATE"), "{}", refused.stderr);
    let refused = home.fails(&["ps", "--filter", "state=sleepy"]);
    assert!(
        refused.stderr.contains("unknown state \"sleepy\""),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("running"), "{}", refused.stderr);
    // `--json` prints the list indented as serde_json indents it (the
    // daemon does the indenting), one value, with a final newline.
    let printed = home.ok(&["ps", "--json", "--all"]);
    let value: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(
        printed,
        serde_json::to_string_pretty(&value).unwrap() + "\n"
    );
    assert_eq!(value.as_array().unwrap().len(), 4);
    let compact = home.http("GET", "/v1/agents?all=true", None, "");
    let pretty = home.http("GET", "/v1/agents?all=true&pretty=true", None, "");
    assert!(!compact.body.contains('\n'), "{}", compact.body);
    assert!(
        pretty.body.starts_with("[\n  {\n    \"id\": "),
        "{}",
        pretty.body
    );
    let ids = |list: Value| -> Vec<Value> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|agent| agent["id"].clone())
            .collect()
    };
    assert_eq!(ids(compact.json()), ids(pretty.json()));
    assert_eq!(ids(compact.json()), ids(value));
    let refused = home.http("GET", "/v1/agents?pretty=perhaps", None, "");
    assert_eq!(refused.status, 400, "{}", refused.body);
}

#[test]
fn a_daemon_out_of_descriptors_leaves_no_agent_unwatched() {
    out_of_descriptors(Home::new(), &[], 7_800_000);
}

#[test]
fn without_cgroups_a_daemon_out_of_descriptors_leaves_no_agent_unwatched() {
    // No cgroup to kill: a shim killed once it may have started its
    // agent is found by its children.
    out_of_descriptors(
        Home::without_cgroups(),
        &[("WRANGLE_CGROUP", "off")],
        7_900_000,
    );
}

/// A daemon allowed 256 open files (soft and hard: it cannot raise them),
/// asked for 300 agents `sleep SECONDS+I`: some cannot be started, and
/// none of those may run on unwatched.
fn out_of_descriptors(home: Home, env: &[(&str, &str)], seconds: u64) {
    let started = std::process::Command::new("prlimit")
        .arg("--nofile=256")
        .arg(env!("CARGO_BIN_EXE_wrangle"))
        .arg("daemon")
        .env("WRANGLE_HOME", home.path())
        .envs(env.iter().copied())
        .status()
        .expect("prlimit (util-linux)");
    assert!(started.success());
    const COUNT: usize = 300;
    let prefix = format!("sleep {}", seconds / 100_000);
    let answer = post_batch(&home, &batch("tight", COUNT, seconds));
    assert_eq!(answer.status, 201, "{}", answer.body);
    let agents = answer.json();
    let running = processes_by_command();
    let mut states: HashMap<String, usize> = HashMap::new();
    for (i, agent) in agents.as_array().unwrap().iter().enumerate() {
        let command = format!("sleep {}", seconds + i as u64);
        let processes = running.get(&command).copied().unwrap_or(0);
        let state = agent["state"].as_str().unwrap();
        *states.entry(state.to_string()).or_default() += 1;
        if state == "running" {
            assert_eq!(processes, 1, "{agent:#}");
        } else {
            assert_eq!(processes, 0, "not running, yet its process runs: {agent:#}");
            assert_eq!(state, "failed", "{agent:#}");
        }
    }
    eprintln!("out of descriptors: {states:?}");
    assert!(
        states.contains_key("failed"),
        "some starts fail: {states:?}"
    );
    home.ok(&["stop", "--all"]);
    assert!(processes_by_command()
        .keys()
        .all(|line| !line.starts_with(&prefix)));
}
