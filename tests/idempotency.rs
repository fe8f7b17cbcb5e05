//! A create whose answer was lost (the daemon was SIGKILLed in between) is
//! sent again with its idempotency key, and makes its agent once: the
//! daemon answers a key it has seen with the agent it made. `wrangle run`
//! does this by itself, so that a user gets exactly one agent and its id,
//! never an error and never two, while the daemon is killed under it.

mod common;

use common::http::request_with_body;
use common::{crash, procfs, wait_until, Home, SOON};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::thread;
use std::time::Duration;

fn create(home: &Home, path: &str, key: &str, body: &Value) -> common::http::Response {
    request_with_body(
        &home.socket(),
        "POST",
        path,
        &[
            "Content-Type: application/json",
            &format!("Idempotency-Key: {key}"),
        ],
        &body.to_string(),
    )
}

#[test]
fn a_create_sent_again_with_its_key_makes_nothing_new() {
    let home = Home::new();
    home.ok(&["ps"]);
    let body = json!({"name": "once", "command": ["sleep", "7900001"]});
    let first = create(&home, "/v1/agents", "key-1", &body);
    assert_eq!(first.status, 201, "{}", first.body);
    let again = create(&home, "/v1/agents", "key-1", &body);
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(first.json()["id"], again.json()["id"]);
    assert_eq!(again.json()["state"], "running");
    assert_eq!(home.json(&["ps", "--json"]).as_array().unwrap().len(), 1);
    // A batch, too: the same agents, in the same order.
    let batch = json!({"agents": [
        {"name": "b-0", "command": ["sleep", "7900002"]},
        {"name": "b-1", "command": ["sleep", "7900003"]},
    ]});
    let first = create(&home, "/v1/batch", "key-2", &batch);
    let again = create(&home, "/v1/batch", "key-2", &batch);
    assert_eq!(first.status, 201, "{}", first.body);
    let ids = |answer: &common::http::Response| -> Vec<Value> {
        answer
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].clone())
            .collect()
    };
    assert_eq!(ids(&first), ids(&again));
    assert_eq!(home.json(&["ps", "--json"]).as_array().unwrap().len(), 3);
    // A new key makes a new agent (and a taken name is refused as ever).
    let other = create(&home, "/v1/agents", "key-3", &body);
    assert_eq!(other.status, 409, "{}", other.body);
    // A bad key is refused and changes nothing.
    let bad = create(&home, "/v1/agents", "a,b", &json!({"command": ["true"]}));
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(
        home.json(&["ps", "--all", "--json"])
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn runs_while_the_daemon_is_killed_each_make_one_agent_and_say_its_id() {
    let home = Home::new();
    home.ok(&["ps"]);
    const RUNS: usize = 60;
    const SECONDS: u64 = 7_910_000;
    // Runs from 4 threads, one after another in each, while the daemon
    // is SIGKILLed three times.
    let outputs: Vec<_> = thread::scope(|scope| {
        let runners: Vec<_> = (0..4)
            .map(|thread| {
                let home = &home;
                scope.spawn(move || {
                    (0..RUNS / 4)
                        .map(|i| {
                            let n = thread * (RUNS / 4) + i;
                            let seconds = (SECONDS + n as u64).to_string();
                            (
                                n,
                                home.wrangle(&[
                                    "run",
                                    "--name",
                                    &format!("r-{n}"),
                                    "--",
                                    "sleep",
                                    &seconds,
                                ]),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for _ in 0..3 {
            thread::sleep(Duration::from_millis(150));
            if home.daemon_pid().is_some() {
                crash::kill_daemon(&home);
            }
        }
        runners
            .into_iter()
            .flat_map(|runner| runner.join().unwrap())
            .collect()
    });
    let listed = home.json(&["ps", "--all", "--json"]);
    let by_name: HashMap<String, Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|agent| (agent["name"].as_str().unwrap().to_string(), agent.clone()))
        .collect();
    assert_eq!(by_name.len(), RUNS, "one agent per run: {listed:#}");
    let mut ids = HashSet::new();
    for (n, output) in &outputs {
        assert_eq!(output.code(), 0, "run {n}: {output:?}");
        let id = output.stdout.trim().to_string();
        assert!(ids.insert(id.clone()), "run {n} said an id twice: {id}");
        assert_eq!(by_name[&format!("r-{n}")]["id"], id.as_str(), "run {n}");
    }
    wait_until(SOON, "every agent runs, once", || {
        let running: Vec<String> = procfs::all()
            .into_iter()
            .filter_map(|p| procfs::cmdline(p.pid))
            .filter(|line| line.starts_with("sleep 791"))
            .collect();
        let unique: HashSet<&String> = running.iter().collect();
        running.len() == RUNS && unique.len() == RUNS
    });
}
