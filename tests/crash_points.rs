//! Crash safety at the worst moments: the daemon SIGKILLed in the middle of
//! a `run` (the agent is then either recorded and running, or not started
//! at all; never running unlisted, never listed without running, never
//! started twice) and in the middle of a `stop` (the shim carries the stop
//! through, and the next daemon records how it ended).

mod common;

use common::crash;
use common::{marker, procfs, wait_until, Home, SOON};
use serde_json::Value;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

/// Rounds of `run` cut short by a SIGKILL.
const RUN_ROUNDS: u32 = 30;

/// The agents whose command carries `marker`, from a `ps -a --json` list.
fn agents_with<'a>(agents: &'a [Value], marker: &str) -> Vec<&'a Value> {
    agents
        .iter()
        .filter(|agent| {
            agent["command"]
                .as_array()
                .is_some_and(|argv| argv.iter().any(|arg| arg.as_str() == Some(marker)))
        })
        .collect()
}

/// How a `run` cut by a SIGKILL went, once the next daemon has settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// `run` printed the id: recorded and running.
    Answered,
    /// `run` failed, but the agent was recorded and is running.
    StartedUnanswered,
    /// Recorded, never started: `failed`, lost while the daemon was down.
    RecordedLost,
    /// Neither recorded nor started.
    NeverRecorded,
}

/// Checks /proc against wrangle for the agent `run … sleep <marker>`: a
/// process with the marker exists if and only if wrangle lists exactly one
/// agent running it, with its pid; nothing runs twice. `answered` is the id
/// `run` printed, if it printed one.
fn check_run(agents: &[Value], marker: &str, answered: Option<&str>) -> Outcome {
    let processes = procfs::with_marker(marker);
    let agents = agents_with(agents, marker);
    assert!(processes.len() <= 1, "started twice: {processes:?}");
    assert!(
        agents.len() <= 1,
        "one `run` made several agents: {agents:?}"
    );
    let running = agents.iter().find(|agent| agent["state"] == "running");
    match (processes.first(), running) {
        (Some(process), Some(agent)) => {
            assert_eq!(
                agent["pid"].as_i64(),
                Some(i64::from(process.pid)),
                "wrangle lists another pid: {agent}"
            );
            match answered {
                Some(id) => {
                    assert_eq!(agent["id"], id, "`run` printed another id");
                    Outcome::Answered
                }
                None => Outcome::StartedUnanswered,
            }
        }
        (Some(process), None) => {
            panic!("{process:?} runs, but wrangle lists no running agent for it: {agents:?}")
        }
        (None, Some(agent)) => panic!("wrangle lists {agent} as running, but no process is"),
        (None, None) => {
            assert_eq!(answered, None, "`run` printed an id, but nothing runs");
            for agent in &agents {
                assert_eq!(agent["state"], "failed", "{agent}");
                let reason = agent["reason"].as_str().unwrap_or_default();
                assert!(
                    reason.starts_with("lost while the daemon was down: "),
                    "{agent}"
                );
            }
            if agents.is_empty() {
                Outcome::NeverRecorded
            } else {
                Outcome::RecordedLost
            }
        }
    }
}

#[test]
fn a_daemon_killed_during_run_leaves_the_agent_recorded_and_running_or_not_started() {
    let home = Home::new();
    // How long a `run` takes here, to spread the kills over all of it.
    let probe = marker();
    let started = Instant::now();
    home.run(&["--", "sleep", &probe]);
    let one_run = started.elapsed();
    let mut rounds: Vec<(String, Option<String>)> = Vec::new();
    let mut outcomes = Vec::new();
    for round in 0..RUN_ROUNDS {
        let seconds = marker();
        home.ok(&["daemon"]);
        let mut run = home
            .command(&[
                "run",
                "--name",
                &format!("r{round}"),
                "--",
                "sleep",
                &seconds,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wrangle run");
        // From before the request is sent to after its answer.
        thread::sleep(one_run * round * 6 / (RUN_ROUNDS * 5));
        crash::kill_daemon(&home);
        let output = common::finish(&mut run, common::COMMAND_TIMEOUT, "wrangle run");
        let answered = output
            .status
            .success()
            .then(|| output.stdout.trim().to_string());
        rounds.push((seconds, answered));

        // The next daemon settles (a shim found before its exec has
        // reported it), then /proc and wrangle agree on every run so far.
        home.ok(&["daemon"]);
        wait_until(SOON, "no agent is still starting", || {
            home.ps_all()
                .iter()
                .all(|agent| agent["state"] != "starting")
        });
        let agents = home.ps_all();
        outcomes = rounds
            .iter()
            .map(|(seconds, answered)| check_run(&agents, seconds, answered.as_deref()))
            .collect();
    }
    let count = |outcome: Outcome| outcomes.iter().filter(|o| **o == outcome).count();
    eprintln!(
        "of {RUN_ROUNDS} runs cut by a SIGKILL: {} answered, {} started without an answer, \
         {} recorded as lost, {} never recorded",
        count(Outcome::Answered),
        count(Outcome::StartedUnanswered),
        count(Outcome::RecordedLost),
        count(Outcome::NeverRecorded),
    );

    // Every agent that runs is held: one stop ends them all.
    home.ok(&["stop", "--all"]);
    for seconds in rounds.iter().map(|(seconds, _)| seconds).chain([&probe]) {
        assert!(
            procfs::with_marker(seconds).is_empty(),
            "{seconds} outlived"
        );
    }
    assert!(home.shims().is_empty(), "{:?}", home.shims());
}

/// An agent that ignores SIGTERM, so that its stop takes the whole
/// sequence: SIGTERM, 2 s, SIGTERM again, 2 s, SIGKILL.
fn start_stubborn(home: &Home) -> (String, Vec<procfs::Proc>) {
    let seconds = marker();
    let id = home.run(&[
        "--stop-timeout",
        "2s",
        "--",
        "sh",
        "-c",
        &format!("trap '' TERM; sleep {seconds} & (trap '' TERM; exec sleep {seconds}) & wait"),
    ]);
    let pid = home.pid(&id);
    wait_until(SOON, "the agent has started its sleepers", || {
        procfs::with_marker(&seconds).len() == 3
    });
    let mut tree = procfs::with_marker(&seconds);
    tree.push(procfs::stat(pid).expect("the agent runs"));
    (id, tree)
}

/// The stop completes although its daemon died: the tree goes from
/// /proc, and the next daemon records `stopped` with how far it went.
fn assert_the_stop_completes(home: &Home, id: &str, tree: &[procfs::Proc]) {
    home.ok(&["daemon"]);
    wait_until(Duration::from_secs(30), "the whole tree is gone", || {
        tree.iter().all(|process| !process.still_exists())
    });
    home.wait_for_state(id, "stopped");
    let agent = home.inspect(id);
    let reason = agent["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("killed by SIGKILL after ") && reason.ends_with("(ignored SIGTERM)"),
        "{agent}"
    );
    assert!(home.shims().is_empty(), "{:?}", home.shims());
}

#[test]
fn a_stop_completes_when_the_daemon_dies_right_after_accepting_it() {
    let home = Home::new();
    let (id, tree) = start_stubborn(&home);
    let mut stop = home
        .command(&["stop", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("wrangle stop");
    // The moment the store says `stopping`: the shim may or may not have
    // been told yet.
    wait_until(SOON, "the store records the stop", || {
        home.stored_state(&id).as_deref() == Some("stopping")
    });
    crash::kill_daemon(&home);
    // It lost its daemon: it ends, with an error or not.
    common::finish(&mut stop, common::COMMAND_TIMEOUT, "wrangle stop");
    assert!(tree.iter().any(procfs::Proc::is_alive), "not stopped yet");
    assert_the_stop_completes(&home, &id, &tree);
}

#[test]
fn a_stop_completes_when_the_daemon_dies_before_telling_the_shim() {
    let home = Home::new();
    let (id, tree) = start_stubborn(&home);
    // The daemon killed after it recorded `stopping` and before it wrote
    // to the shim's FIFO: what the store then holds, made by hand.
    crash::kill_daemon(&home);
    let changed = crash::writable_database(&home)
        .execute(
            "UPDATE agents SET state = 'stopping', reason = 'stop requested' WHERE id = ?1",
            [&id],
        )
        .expect("update the store");
    assert_eq!(changed, 1);
    assert!(crash::shim_state(&home, &id, 1).expect("state.json")["stop"].is_null());
    assert_the_stop_completes(&home, &id, &tree);
}

#[test]
fn a_stop_completes_when_the_daemon_dies_while_the_shim_escalates() {
    let home = Home::new();
    let (id, tree) = start_stubborn(&home);
    let mut stop = home
        .command(&["stop", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("wrangle stop");
    let mut requested_at = None;
    wait_until(SOON, "the shim has started the stop", || {
        requested_at = crash::shim_state(&home, &id, 1)
            .filter(|state| !state["stop"].is_null())
            .map(|state| common::rfc3339(&state["stop"]["requested_at"], "requested_at"));
        requested_at.is_some()
    });
    // The shim repeats SIGTERM 2 s after the first and SIGKILLs 2 s later:
    // kill the daemon between the two.
    let repeated = requested_at.unwrap() + chrono::Duration::milliseconds(2500);
    wait_until(SOON, "the shim has sent SIGTERM twice", || {
        chrono::Utc::now() > repeated
    });
    crash::kill_daemon(&home);
    // It lost its daemon: it ends, with an error or not.
    common::finish(&mut stop, common::COMMAND_TIMEOUT, "wrangle stop");
    assert_the_stop_completes(&home, &id, &tree);
}
