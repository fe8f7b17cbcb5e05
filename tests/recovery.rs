//! Crash safety, the whole fleet: a daemon SIGKILLed (or stopped) while
//! agents run comes back to find every agent as it really is. Sleepers run
//! on with the same pids and nothing is started twice; agents that ended
//! while it was down have their real exit status and end time; a log
//! written all along has every line exactly once. All of it is checked in
//! /proc and in the files the shims write, not only by asking wrangle.

mod common;

use common::crash::{self, assert_counts_up_from_one, counter_command, numbers};
use common::{marker, procfs, rfc3339, wait_until, Home, SOON};
use serde_json::Value;
use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

/// Agents of the fleet that sleep until stopped.
const SLEEPERS: usize = 40;
/// Agents of the fleet that exit with code 3 two seconds after they start.
const SHORT: usize = 9;

/// Starts one agent per command, on `threads` threads at a time; returns
/// their ids in the order of `commands`.
fn start_all(home: &Home, commands: &[Vec<String>], threads: usize) -> Vec<String> {
    let chunk = commands.len().div_ceil(threads).max(1);
    thread::scope(|scope| {
        let starters: Vec<_> = commands
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|command| {
                            let mut args = vec!["--"];
                            args.extend(command.iter().map(String::as_str));
                            home.run(&args)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        starters
            .into_iter()
            .flat_map(|starter| starter.join().expect("a starter thread"))
            .collect()
    })
}

/// `ps -a --json`, by id.
fn agents_by_id(home: &Home) -> HashMap<String, Value> {
    home.ps_all()
        .into_iter()
        .map(|agent| (agent["id"].as_str().expect("an id").to_string(), agent))
        .collect()
}

/// The one live process in /proc that carries `marker`; panics when there
/// is none or more than one.
fn only_process_with(marker: &str) -> procfs::Proc {
    let found = procfs::with_marker(marker);
    assert_eq!(
        found.len(),
        1,
        "exactly one process must carry {marker}: {found:?}"
    );
    found.into_iter().next().unwrap()
}

#[test]
fn a_sigkilled_daemon_readopts_its_fleet_with_real_exits_and_whole_logs() {
    let home = Home::new();
    let sleeper_markers: Vec<String> = (0..SLEEPERS).map(|_| marker()).collect();
    let sleeper_commands: Vec<Vec<String>> = sleeper_markers
        .iter()
        .map(|m| vec!["sleep".to_string(), m.clone()])
        .collect();
    let counter_marker = marker();
    let mut commands = sleeper_commands;
    commands.push(counter_command(&counter_marker));
    let mut ids = start_all(&home, &commands, 8);
    let counter = ids.pop().expect("the counter's id");
    let sleepers = ids;
    wait_until(SOON, "the counter has printed a few lines", || {
        crash::stdout_log(&home, &counter, 1).lines().count() >= 5
    });

    let before = agents_by_id(&home);
    assert_eq!(before.len(), SLEEPERS + 1);

    // The short agents last, all at once, so that they end while the
    // daemon is down; the daemon is killed as soon as they run.
    let short_markers: Vec<String> = (0..SHORT).map(|_| marker()).collect();
    let short_commands: Vec<Vec<String>> = short_markers
        .iter()
        .map(|m| {
            vec![
                "sh".into(),
                "-c".into(),
                "sleep 2; exit 3".into(),
                format!("short-{m}"),
            ]
        })
        .collect();
    let starting = Instant::now();
    let short = start_all(&home, &short_commands, SHORT);
    let killed_at = chrono::Utc::now();
    let daemon = crash::kill_daemon(&home);
    let took = starting.elapsed();
    let lines_at_kill = crash::stdout_log(&home, &counter, 1).lines().count();

    // In /proc: the short agents and their shims end (as their shims
    // recorded them), and nothing starts them again.
    let short_processes: Vec<(i64, i64)> = short
        .iter()
        .flat_map(|id| {
            let state = crash::shim_state(&home, id, 1).expect("the shim's state.json");
            ["agent", "shim"].map(|key| {
                let process = &state[key];
                (
                    process["pid"].as_i64().expect("a pid"),
                    process["start_time"].as_i64().expect("a start time"),
                )
            })
        })
        .collect();
    let gone = |(pid, start_time): (i64, i64)| {
        procfs::stat(pid as i32)
            .is_none_or(|now| now.start_time as i64 != start_time || now.is_zombie())
    };
    wait_until(SOON, "the short agents and their shims have ended", || {
        short_processes.iter().all(|process| gone(*process))
    });
    wait_until(
        SOON,
        "the counter writes on while the daemon is down",
        || crash::stdout_log(&home, &counter, 1).lines().count() >= lines_at_kill + 10,
    );
    assert!(
        home.daemons().is_empty(),
        "no daemon runs: {:?}",
        home.daemons()
    );

    let restarted_at = chrono::Utc::now();
    let after = agents_by_id(&home);
    let new_daemon = home.daemon_pid().expect("the CLI started a new daemon");
    assert_ne!(new_daemon, daemon.pid);
    assert_eq!(after.len(), SLEEPERS + SHORT + 1, "no agent lost or added");

    for (id, seconds) in sleepers
        .iter()
        .chain([&counter])
        .zip(sleeper_markers.iter().chain([&counter_marker]))
    {
        let agent = &after[id];
        assert_eq!(agent["state"], "running", "{agent}");
        assert_eq!(agent["pid"], before[id]["pid"], "same pid: {agent}");
        assert_eq!(agent["shim_pid"], before[id]["shim_pid"], "{agent}");
        let process = only_process_with(seconds);
        assert_eq!(Some(i64::from(process.pid)), agent["pid"].as_i64());
    }

    let mut ended_while_down = 0;
    for id in &short {
        let agent = &after[id];
        assert_eq!(agent["state"], "failed", "{agent}");
        assert_eq!(agent["exit_code"], 3, "the real exit status: {agent}");
        assert_eq!(agent["reason"], "exited with code 3", "{agent}");
        let started = rfc3339(&agent["started_at"], "started_at");
        let ended = rfc3339(&agent["ended_at"], "ended_at");
        assert!(ended < restarted_at, "the real end time: {agent}");
        if ended > killed_at {
            ended_while_down += 1;
        }
        let ran = (ended - started).to_std().expect("ended after it started");
        assert!(
            ran >= Duration::from_millis(1990) && ran < Duration::from_secs(10),
            "it ran about 2 s, not {ran:?}: {agent}"
        );
    }
    // Unless starting them took most of their two seconds (a machine
    // under heavy load), every one of them ended while the daemon was down.
    if took < Duration::from_millis(1500) {
        assert_eq!(ended_while_down, SHORT, "started in {took:?}");
    } else {
        eprintln!(
            "starting the short agents took {took:?}: \
             {ended_while_down} of {SHORT} ended while the daemon was down"
        );
        assert!(ended_while_down > 0, "started in {took:?}");
    }
    for process in &short_processes {
        assert!(gone(*process), "{process:?} was started again");
    }
    for marker in &short_markers {
        assert!(
            procfs::with_marker(marker).is_empty(),
            "{marker} runs again"
        );
    }

    // One shim per running agent, one daemon.
    assert_eq!(home.shims().len(), SLEEPERS + 1);
    assert_eq!(home.daemons(), [new_daemon]);

    // The counter ran through it all, and its log has every line once.
    let counter_pid = only_process_with(&counter_marker).pid;
    assert_eq!(after[&counter]["state"], "running");
    assert_eq!(
        after[&counter]["pid"].as_i64(),
        Some(i64::from(counter_pid))
    );
    let lines_at_restart = crash::stdout_log(&home, &counter, 1).lines().count();
    wait_until(SOON, "the counter writes on after the restart", || {
        crash::stdout_log(&home, &counter, 1).lines().count() >= lines_at_restart + 10
    });
    home.ok(&["stop", &counter]);
    assert_eq!(home.state(&counter), "stopped");
    let file = crash::stdout_log(&home, &counter, 1);
    let numbers = numbers(&file);
    assert!(numbers.len() >= lines_at_restart + 10, "{}", numbers.len());
    assert_counts_up_from_one(&numbers);
    assert_eq!(home.ok(&["logs", &counter]), file, "logs shows the file");

    // The new daemon holds every sleeper: one stop ends them all.
    home.ok(&["stop", "--all"]);
    for marker in &sleeper_markers {
        assert!(procfs::with_marker(marker).is_empty(), "{marker} outlived");
    }
    assert!(home.shims().is_empty(), "shims left: {:?}", home.shims());
}

#[test]
fn daemon_stop_and_a_new_daemon_keep_every_agent_attached() {
    let home = Home::new();
    let seconds = marker();
    let sleepers: Vec<String> = (0..3)
        .map(|_| home.run(&["--", "sleep", &seconds]))
        .collect();
    let counter_marker = marker();
    let mut args = vec!["--"];
    let command = counter_command(&counter_marker);
    args.extend(command.iter().map(String::as_str));
    let counter = home.run(&args);
    wait_until(SOON, "the counter has printed a few lines", || {
        crash::stdout_log(&home, &counter, 1).lines().count() >= 5
    });
    let before = agents_by_id(&home);
    let processes: Vec<procfs::Proc> = before
        .values()
        .flat_map(|agent| {
            ["pid", "shim_pid"].map(|key| {
                procfs::stat(agent[key].as_i64().expect("a pid") as i32).expect("it runs")
            })
        })
        .collect();
    let daemon = procfs::stat(home.daemon_pid().expect("a daemon")).unwrap();

    home.ok(&["daemon", "stop"]);
    assert!(!daemon.is_alive());
    let lines_at_stop = crash::stdout_log(&home, &counter, 1).lines().count();
    wait_until(SOON, "the counter writes on without a daemon", || {
        crash::stdout_log(&home, &counter, 1).lines().count() >= lines_at_stop + 10
    });
    for process in &processes {
        assert!(process.is_alive(), "{process:?} did not outlive the daemon");
    }

    home.ok(&["daemon"]);
    let new_daemon = home.daemon_pid().expect("a new daemon");
    assert_ne!(new_daemon, daemon.pid);
    let after = agents_by_id(&home);
    assert_eq!(after.len(), before.len());
    for (id, agent) in &after {
        assert_eq!(agent["state"], "running", "{agent}");
        assert_eq!(agent["pid"], before[id]["pid"], "{agent}");
        assert_eq!(agent["shim_pid"], before[id]["shim_pid"], "{agent}");
    }
    assert_eq!(procfs::with_marker(&seconds).len(), sleepers.len());
    assert_eq!(procfs::with_marker(&counter_marker).len(), 1);

    // Attached: `logs -f` follows the running counter, and ends with it.
    let lines_at_restart = crash::stdout_log(&home, &counter, 1).lines().count();
    let mut follow = home
        .command(&["logs", "-f", &counter])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("logs -f");
    wait_until(SOON, "the counter writes on after the restart", || {
        crash::stdout_log(&home, &counter, 1).lines().count() >= lines_at_restart + 10
    });
    home.ok(&["stop", &counter]);
    let followed = common::finish(&mut follow, common::COMMAND_TIMEOUT, "logs -f");
    assert!(followed.status.success(), "{followed:?}");
    let file = crash::stdout_log(&home, &counter, 1);
    assert_eq!(followed.stdout, file, "logs -f saw every line, to the end");
    assert_counts_up_from_one(&numbers(&file));

    // A later stop works and leaves nothing.
    home.ok(&["stop", "--all"]);
    for process in &processes {
        assert!(!process.is_alive(), "{process:?} outlived the stop");
    }
    assert!(procfs::with_marker(&seconds).is_empty());
    assert!(procfs::with_marker(&counter_marker).is_empty());
    assert!(home.shims().is_empty());
    for id in after.keys() {
        assert_eq!(home.state(id), "stopped");
    }
}

/// A daemon that dies between recording a run's end and removing its
/// cgroup leaves the cgroup behind; the next daemon of the home removes
/// the cgroups of its agents' earlier runs, and leaves the current run's
/// and every other home's alone.
#[test]
fn a_new_daemon_removes_the_cgroups_of_earlier_runs_left_behind() {
    if !common::cgroup_v2_writable() {
        eprintln!("cgroup v2 cannot be written here: no run cgroups to leave behind");
        return;
    }
    let home = Home::new();
    let id = home.run(&["--", "sleep", &marker()]);
    home.ok(&["restart", &id]);
    wait_until(SOON, "the second run is running", || {
        home.inspect(&id)["run"] == 2 && home.state(&id) == "running"
    });
    let current = run_cgroup(&home, &id);
    let base = current.parent().expect("the directory of run cgroups");
    let first = base.join(format!("{id}-1"));
    wait_until(SOON, "the daemon removes the first run's cgroup", || {
        !first.exists()
    });

    // As a daemon SIGKILLed before its removal would leave them: the first
    // run's cgroup, and one of an agent of another home.
    let elsewhere = OtherHomesCgroup(base.join(format!("{}-1", marker())));
    std::fs::create_dir(&first).expect("a cgroup as the first run left it");
    std::fs::create_dir(&elsewhere.0).expect("another home's run cgroup");
    crash::kill_daemon(&home);
    home.ok(&["daemon"]);

    wait_until(
        SOON,
        "the new daemon removes the first run's cgroup",
        || !first.exists(),
    );
    assert!(elsewhere.0.exists(), "another home's cgroup was removed");
    assert!(current.exists(), "the running run's cgroup was removed");
    assert_eq!(home.state(&id), "running");
    let members = std::fs::read_to_string(current.join("cgroup.procs")).unwrap();
    assert!(
        members.lines().any(|pid| pid == home.pid(&id).to_string()),
        "the agent left its cgroup: {members}"
    );
    home.ok(&["stop", &id]);
}

/// A home deleted while its daemon was down and its agent ran leaves no
/// cgroup behind once the agent ends: no daemon will come back for that
/// run, so its shim removes the run's cgroup itself.
#[test]
fn a_run_whose_home_was_deleted_leaves_no_cgroup_behind() {
    if !common::cgroup_v2_writable() {
        eprintln!("cgroup v2 cannot be written here: no run cgroups to leave behind");
        return;
    }
    let home = Home::new();
    let id = home.run(&["--", "sleep", &marker()]);
    home.wait_for_state(&id, "running");
    let cgroup = run_cgroup(&home, &id);
    let agent = home.pid(&id);
    crash::kill_daemon(&home);
    std::fs::remove_dir_all(home.path()).expect("the home deleted");

    common::kill(agent);
    wait_until(SOON, "the shim ends", || home.shims().is_empty());
    wait_until(SOON, "the run's cgroup is removed", || !cgroup.exists());
}

/// The cgroup v2 directory that holds the current run of agent `id`.
fn run_cgroup(home: &Home, id: &str) -> std::path::PathBuf {
    let containment = home.inspect(id)["containment"]
        .as_str()
        .expect("a containment")
        .to_string();
    std::path::PathBuf::from(
        containment
            .strip_prefix("cgroup ")
            .unwrap_or_else(|| panic!("cgroups are writable but the run is in {containment:?}")),
    )
}

/// A cgroup made as another home's run would have it, removed when the
/// test ends, passed or not.
struct OtherHomesCgroup(std::path::PathBuf);

impl Drop for OtherHomesCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}
