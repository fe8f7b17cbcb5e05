//! Stop: the staged stop covers the whole process tree, with a cgroup per
//! run and without, escalates to SIGKILL for agents that ignore the stop
//! signal, and says how each agent ended.

mod common;

use common::procfs::{self, Proc};
use common::{cgroup_v2_writable, marker, wait_until, Home, SOON};
use std::path::Path;

/// Starts an agent whose tree spreads every way a process can leave its
/// parent: a plain child, a child in a new session (`setsid`), an orphan
/// of a subshell, and an orphan of a subshell in a new session. Returns
/// the agent's id and its processes as /proc shows them.
fn start_escaping_tree(home: &Home, name: &str) -> (String, Vec<Proc>) {
    let seconds = marker();
    let script = format!(
        "sleep {seconds} & setsid sleep {seconds} & (sleep {seconds} &); (setsid sleep {seconds} &); wait"
    );
    let id = home.run(&["--name", name, "--", "sh", "-c", &script]);
    let pid = home.pid(&id);
    let sleeper = format!("sleep {seconds}");
    let sleepers = || -> Vec<Proc> {
        procfs::with_marker(&seconds)
            .into_iter()
            .filter(|p| procfs::cmdline(p.pid).as_deref() == Some(sleeper.as_str()))
            .collect()
    };
    wait_until(SOON, "the agent has started its four sleepers", || {
        sleepers().len() == 4
    });
    let sleepers = sleepers();
    let escaped = sleepers.iter().filter(|p| p.session != pid).count();
    assert_eq!(escaped, 2, "two sleepers left the session: {sleepers:?}");
    let mut tree = sleepers;
    tree.push(procfs::stat(pid).expect("the agent runs"));
    (id, tree)
}

/// Stops the agent and checks in /proc that none of `tree` is left, not
/// even as a zombie.
fn stop_and_check_nothing_is_left(home: &Home, name: &str, tree: &[Proc]) {
    let output = home.ok(&["stop", name]);
    assert!(
        output.starts_with(&format!("{name}: stopped by SIGTERM in ")),
        "{output}"
    );
    for process in tree {
        assert!(!process.still_exists(), "{process:?} outlived the stop");
    }
    assert_eq!(home.state(name), "stopped");
}

#[test]
fn stop_kills_setsid_grandchildren() {
    let home = Home::new();
    let (id, tree) = start_escaping_tree(&home, "tree");
    let containment = home.inspect(&id)["containment"]
        .as_str()
        .expect("a containment")
        .to_string();
    let cgroup = containment.strip_prefix("cgroup ").map(str::to_string);
    if cgroup_v2_writable() {
        let cgroup = cgroup
            .as_deref()
            .unwrap_or_else(|| panic!("cgroup v2 is writable but the run is in {containment:?}"));
        let members = std::fs::read_to_string(Path::new(cgroup).join("cgroup.procs"))
            .expect("the run's cgroup");
        for process in &tree {
            assert!(
                members.lines().any(|l| l == process.pid.to_string()),
                "{process:?} is not in {cgroup}: {members}"
            );
        }
    } else {
        eprintln!("cgroup v2 cannot be written here: testing the fallback ({containment})");
    }
    stop_and_check_nothing_is_left(&home, "tree", &tree);
    if let Some(cgroup) = cgroup {
        // The daemon removes it once it has recorded the end.
        wait_until(SOON, &format!("the run's cgroup {cgroup} to go"), || {
            !Path::new(&cgroup).exists()
        });
    }
}

#[test]
fn stop_kills_setsid_grandchildren_without_cgroups() {
    let home = Home::without_cgroups();
    let (id, tree) = start_escaping_tree(&home, "tree");
    assert_eq!(
        home.inspect(&id)["containment"],
        "process group + subreaper",
        "WRANGLE_CGROUP=off turns cgroups off"
    );
    stop_and_check_nothing_is_left(&home, "tree", &tree);
}

#[test]
fn sigterm_ignorer_is_killed_after_timeout() {
    let home = Home::new();
    let seconds = marker();
    // The agent notes each SIGTERM and carries on; its child ignores
    // SIGTERM altogether.
    let script = format!(
        "trap 'echo TERM' TERM; (trap '' TERM; exec sleep {seconds}) & echo ready; while :; do sleep 0.05; done"
    );
    let id = home.run(&[
        "--name",
        "stubborn",
        "--stop-timeout",
        "1s",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    wait_until(SOON, "the agent is ready", || {
        home.ok(&["logs", &id]).contains("ready")
            && procfs::with_marker(&seconds)
                .iter()
                .any(|p| procfs::cmdline(p.pid).as_deref() == Some(&*format!("sleep {seconds}")))
    });
    let mut tree = procfs::with_marker(&seconds);
    tree.push(procfs::stat(home.pid(&id)).expect("the agent runs"));

    let output = home.ok(&["stop", "stubborn"]);
    let agent = home.inspect(&id);
    let reason = agent["reason"].as_str().expect("a reason");
    assert_eq!(output, format!("stubborn: {reason}\n"));
    let took = reason
        .strip_prefix("killed by SIGKILL after ")
        .and_then(|rest| rest.strip_suffix("s (ignored SIGTERM)"))
        .and_then(|seconds| seconds.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("unexpected reason {reason:?}"));
    // SIGTERM, the 1s grace, SIGTERM again, min(5s, grace) = 1s, SIGKILL.
    assert!(took >= 1.9, "SIGKILL came after only {took}s");
    assert_eq!(agent["state"], "stopped");
    assert_eq!(agent["signal"], "SIGKILL");
    assert_eq!(agent["exit_code"], serde_json::Value::Null);

    // The stop signal was sent twice, a grace period apart.
    let logs = home.ok(&["logs", "--timestamps", &id]);
    let terms: Vec<chrono::DateTime<chrono::FixedOffset>> = logs
        .lines()
        .filter(|line| line.ends_with(" TERM"))
        .map(|line| {
            let stamp = line.split(' ').next().expect("a timestamp");
            chrono::DateTime::parse_from_rfc3339(stamp).expect("an RFC 3339 timestamp")
        })
        .collect();
    assert_eq!(terms.len(), 2, "SIGTERM twice, then SIGKILL:\n{logs}");
    let gap = (terms[1] - terms[0]).num_milliseconds();
    assert!(
        gap >= 500,
        "the second SIGTERM came {gap}ms after the first"
    );

    for process in &tree {
        assert!(!process.still_exists(), "{process:?} outlived the stop");
    }
}

#[test]
fn the_stop_timeout_flag_overrides_the_agents_own() {
    let home = Home::new();
    let seconds = marker();
    // Without the override the stop would take an hour and five seconds,
    // far longer than the harness waits for one command.
    let id = home.run(&[
        "--stop-timeout",
        "1h",
        "--",
        "sh",
        "-c",
        &format!("trap '' TERM; exec sleep {seconds}"),
    ]);
    let pid = procfs::stat(home.pid(&id)).expect("the agent runs");
    let output = home.ok(&["stop", "--timeout", "200ms", &id]);
    assert!(output.contains("killed by SIGKILL after"), "{output}");
    assert!(!pid.still_exists());
    assert_eq!(home.state(&id), "stopped");
}

#[test]
fn stop_prints_how_each_agent_ended() {
    let home = Home::new();
    let seconds = marker();
    home.run(&["--name", "plain", "--", "sleep", &seconds]);
    home.run(&[
        "--name",
        "polite",
        "--",
        "sh",
        "-c",
        &format!("trap 'exit 0' TERM; sleep {seconds} & wait"),
    ]);
    let output = home.ok(&["stop", "plain", "polite"]);
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(lines.len(), 2, "{output}");
    assert!(
        lines[0].starts_with("plain: stopped by SIGTERM in "),
        "{output}"
    );
    assert!(
        lines[1].starts_with("polite: stopped by SIGTERM in "),
        "{output}"
    );
    for name in ["plain", "polite"] {
        assert_eq!(home.state(name), "stopped");
    }
    assert!(procfs::with_marker(&seconds).is_empty());
}

#[test]
fn stopping_an_ended_agent_is_not_an_error() {
    let home = Home::new();
    let id = home.run(&["--name", "done", "--", "true"]);
    home.ok(&["wait", &id]);
    let before = home.inspect(&id);
    let output = home.ok(&["stop", "done"]);
    assert_eq!(output, "done: already completed (exited with code 0)\n");
    assert_eq!(home.inspect(&id), before, "the stop changed nothing");
}

#[test]
fn stop_all_stops_every_running_agent() {
    let home = Home::new();
    let seconds = marker();
    let done = home.run(&["--name", "done", "--", "true"]);
    home.ok(&["wait", &done]);
    let mut pids = Vec::new();
    for name in ["one", "two", "three"] {
        let id = home.run(&["--name", name, "--", "sleep", &seconds]);
        pids.push(procfs::stat(home.pid(&id)).expect("the agent runs"));
    }
    let output = home.ok(&["stop", "--all"]);
    let mut names: Vec<&str> = output
        .lines()
        .map(|line| line.split(':').next().unwrap_or_default())
        .collect();
    names.sort();
    assert_eq!(names, ["one", "three", "two"], "{output}");
    for process in pids {
        assert!(!process.still_exists(), "{process:?} outlived stop --all");
    }
    for name in ["one", "two", "three"] {
        assert_eq!(home.state(name), "stopped");
    }
    assert_eq!(home.state("done"), "completed");
    assert!(home.ps_all().iter().all(|a| a["state"] != "running"));
}

#[test]
fn what_an_exited_agent_leaves_behind_is_stopped() {
    let home = Home::new();
    let seconds = marker();
    let id = home.run(&[
        "--",
        "sh",
        "-c",
        &format!("setsid sleep {seconds} & echo started; exit 0"),
    ]);
    home.ok(&["wait", &id]);
    let agent = home.inspect(&id);
    assert_eq!(agent["state"], "completed");
    assert_eq!(
        agent["reason"],
        "exited with code 0; 1 leftover process of its tree stopped"
    );
    assert!(procfs::with_marker(&seconds).is_empty());
}

#[test]
fn a_suspended_agent_is_woken_to_handle_the_stop_signal() {
    let home = Home::new();
    let seconds = marker();
    let id = home.run(&[
        "--stop-timeout",
        "1h",
        "--",
        "sh",
        "-c",
        &format!("sleep {seconds} & kill -STOP $$; wait"),
    ]);
    let pid = home.pid(&id);
    wait_until(SOON, "the agent is suspended", || {
        procfs::stat(pid).is_some_and(|p| p.state == 'T')
    });
    let tree = procfs::with_marker(&seconds);
    // With an hour of grace, only a SIGTERM it can act on ends it in time.
    let output = home.ok(&["stop", &id]);
    assert!(output.contains(": stopped by SIGTERM in "), "{output}");
    for process in tree {
        assert!(!process.still_exists(), "{process:?} outlived the stop");
    }
}
