//! The daemon: every state change is in SQLite before the API answers, a
//! restart (clean or after SIGKILL) shows the same agents with the same
//! states and pids, `daemon stop` leaves agents running unless asked, two
//! daemons never serve one home, and the socket is private.

mod common;

use common::{marker, procfs, wait_until, Home, SOON};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::Stdio;
use std::thread;

/// One agent in each state a user can reach without a restart policy.
/// Returns the running agent's id.
fn agents_in_every_state(home: &Home) -> String {
    let seconds = marker();
    let running = home.run(&["--name", "running", "--", "sleep", &seconds]);
    let completed = home.run(&["--name", "completed", "--", "true"]);
    let failed = home.run(&["--name", "failed", "--", "sh", "-c", "echo bye; exit 3"]);
    home.fails(&["run", "--name", "unstartable", "--", "no-such-program-here"]);
    let stopped = home.run(&["--name", "stopped", "--", "sleep", &seconds]);
    home.ok(&["stop", &stopped]);
    home.wrangle(&["wait", &completed, &failed]);
    running
}

#[test]
fn a_daemon_restart_shows_the_same_agents_with_the_same_states() {
    let home = Home::new();
    let running = agents_in_every_state(&home);
    let before = home.snapshot();
    let agent = home.inspect(&running);
    let pid = procfs::stat(agent["pid"].as_i64().unwrap() as i32).expect("the agent runs");
    let daemon = procfs::stat(home.daemon_pid().expect("a daemon")).unwrap();

    let output = home.ok(&["daemon", "stop"]);
    assert_eq!(
        output,
        format!(
            "stopped the daemon (pid {}) for {}\n",
            daemon.pid,
            home.path().display()
        )
    );
    assert!(!daemon.is_alive(), "the daemon is gone");
    assert!(pid.is_alive(), "the agent outlives the daemon");

    // Any call starts a new daemon, which knows everything the old one did.
    let after = home.snapshot();
    let new_daemon = home.daemon_pid().expect("a new daemon");
    assert_ne!(new_daemon, daemon.pid);
    assert_eq!(after, before);
    assert!(pid.is_alive());
    assert_eq!(home.inspect(&running)["pid"], agent["pid"]);
    assert_eq!(home.inspect(&running)["shim_pid"], agent["shim_pid"]);

    // The new daemon holds the agent: it can stop it.
    home.ok(&["stop", &running]);
    assert!(!pid.still_exists());
    assert_eq!(home.state(&running), "stopped");
}

#[test]
fn every_state_change_is_in_the_store_before_the_api_answers() {
    let home = Home::new();
    let seconds = marker();
    let id = home.run(&["--", "sleep", &seconds]);
    assert_eq!(home.stored_state(&id).as_deref(), Some("running"));
    home.ok(&["stop", &id]);
    assert_eq!(home.stored_state(&id).as_deref(), Some("stopped"));

    let broken = home.fails(&["run", "--name", "broken", "--", "no-such-program-here"]);
    assert_eq!(broken.code(), 1);
    let broken = home.inspect("broken")["id"].as_str().unwrap().to_string();
    assert_eq!(home.stored_state(&broken).as_deref(), Some("failed"));

    let quick = home.run(&["--", "sh", "-c", "exit 2"]);
    assert_eq!(home.wrangle(&["wait", &quick]).code(), 2);
    assert_eq!(home.stored_state(&quick).as_deref(), Some("failed"));

    let killed = home.run(&["--", "sleep", &seconds]);
    home.ok(&["kill", &killed]);
    assert_eq!(home.stored_state(&killed).as_deref(), Some("stopped"));

    home.ok(&["rm", &quick]);
    assert_eq!(home.stored_state(&quick), None);

    // Each step is an event, once, in order; a removed agent's events
    // stay, with its removal last.
    let database = home.open_database();
    let mut statement = database
        .prepare("SELECT type FROM events WHERE agent_id = ?1 ORDER BY seq")
        .unwrap();
    let mut types = |agent: &str| -> Vec<String> {
        statement
            .query_map([agent], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        types(&id),
        [
            "agent.created",
            "agent.starting",
            "agent.running",
            "agent.stopping",
            "agent.exited"
        ]
    );
    assert_eq!(
        types(&quick),
        [
            "agent.created",
            "agent.starting",
            "agent.running",
            "agent.exited",
            "agent.removed"
        ]
    );
    let (exit_signal, reason): (Option<i64>, Option<String>) = database
        .query_row(
            "SELECT r.signal, a.reason FROM agents a JOIN runs r ON r.agent_id = a.id AND r.run = a.run WHERE a.id = ?1",
            [&id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(exit_signal, Some(15));
    assert_eq!(
        reason.as_deref(),
        home.inspect(&id)["reason"].as_str(),
        "the store has the reason the API gives"
    );
}

#[test]
fn a_killed_daemon_comes_back_with_the_same_agents() {
    let home = Home::new();
    let running = agents_in_every_state(&home);
    let go = home.path().join("go");
    let ending = home.run(&[
        "--name",
        "ends-while-down",
        "--",
        "sh",
        "-c",
        &format!(
            "echo before; until [ -e {} ]; do sleep 0.01; done; echo while down; exit 7",
            go.display()
        ),
    ]);
    let ending_pid = procfs::stat(home.pid(&ending)).unwrap();
    let before = home.snapshot();
    let running_pid = procfs::stat(home.pid(&running)).unwrap();
    let daemon = procfs::stat(home.daemon_pid().expect("a daemon")).unwrap();

    common::kill(daemon.pid);
    wait_until(SOON, "the daemon is dead", || {
        common::crash::has_exited_entirely(&daemon)
    });
    fs::write(&go, "").unwrap();
    wait_until(SOON, "the agent has ended", || !ending_pid.is_alive());

    let mut after = home.snapshot();
    assert!(home.daemon_pid().is_some_and(|pid| pid != daemon.pid));
    assert!(running_pid.is_alive(), "agents outlive a crashed daemon");
    let agent = home.inspect(&ending);
    assert_eq!(agent["state"], "failed");
    assert_eq!(agent["exit_code"], 7, "the real exit status: {agent}");
    assert_eq!(agent["reason"], "exited with code 7");
    assert_eq!(home.ok(&["logs", &ending]), "before\nwhile down\n");

    // Apart from the agent that ended meanwhile, nothing changed.
    let strip = |agents: &mut Value| {
        agents
            .as_array_mut()
            .unwrap()
            .retain(|agent| agent["id"] != ending.as_str());
    };
    let mut before = before;
    strip(&mut before);
    strip(&mut after);
    assert_eq!(after, before);
    assert_eq!(home.pid(&running), running_pid.pid);
}

#[test]
fn a_stop_completes_even_if_the_daemon_dies_during_it() {
    let home = Home::new();
    let seconds = marker();
    let id = home.run(&[
        "--stop-timeout",
        "1s",
        "--",
        "sh",
        "-c",
        &format!("trap '' TERM; exec sleep {seconds}"),
    ]);
    let agent = procfs::stat(home.pid(&id)).unwrap();
    let mut stop = home
        .command(&["stop", &id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    home.wait_for_state(&id, "stopping");
    let daemon = procfs::stat(home.daemon_pid().expect("a daemon")).unwrap();
    common::kill(daemon.pid);
    let status = stop.wait().unwrap();
    assert!(!status.success(), "the stop lost its daemon: {status}");

    // The shim carries the stop through on its own.
    wait_until(SOON, "the agent is killed", || !agent.still_exists());
    home.wait_for_state(&id, "stopped");
    let after = home.inspect(&id);
    assert_eq!(after["state"], "stopped");
    let reason = after["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("killed by SIGKILL after ") && reason.ends_with("(ignored SIGTERM)"),
        "{reason}"
    );
}

#[test]
fn daemon_stop_leaves_agents_running() {
    let home = Home::new();
    let seconds = marker();
    let ids: Vec<String> = (0..3)
        .map(|_| home.run(&["--", "sleep", &seconds]))
        .collect();
    let agents: Vec<procfs::Proc> = ids
        .iter()
        .map(|id| procfs::stat(home.pid(id)).unwrap())
        .collect();
    let shims = home.shims();
    assert_eq!(shims.len(), 3);
    let daemon = procfs::stat(home.daemon_pid().unwrap()).unwrap();
    home.ok(&["daemon", "stop"]);
    assert!(!daemon.is_alive());
    assert!(!home.socket().exists(), "the socket is removed");
    for agent in &agents {
        assert!(agent.is_alive(), "{agent:?} was stopped with the daemon");
    }
    let mut still = home.shims();
    still.sort();
    let mut shims = shims;
    shims.sort();
    assert_eq!(still, shims, "the shims run on");
    for id in &ids {
        assert_eq!(home.state(id), "running");
    }
}

#[test]
fn daemon_stop_with_stop_agents_stops_them_first() {
    let home = Home::new();
    let seconds = marker();
    let ids: Vec<String> = (0..3)
        .map(|_| home.run(&["--", "sleep", &seconds]))
        .collect();
    let agents: Vec<procfs::Proc> = ids
        .iter()
        .map(|id| procfs::stat(home.pid(id)).unwrap())
        .collect();
    let daemon = procfs::stat(home.daemon_pid().unwrap()).unwrap();
    home.ok(&["daemon", "stop", "--stop-agents"]);
    assert!(!daemon.is_alive());
    for agent in &agents {
        assert!(!agent.still_exists(), "{agent:?} outlived the daemon");
    }
    assert!(home.shims().is_empty());
    assert!(procfs::with_marker(&seconds).is_empty());
    for id in &ids {
        assert_eq!(home.state(id), "stopped");
    }
}

#[test]
fn daemon_stop_without_a_daemon_is_not_an_error() {
    let home = Home::new();
    assert_eq!(
        home.ok(&["daemon", "stop"]),
        format!("no daemon is running for {}\n", home.path().display())
    );
    assert!(home.daemons().is_empty(), "daemon stop starts nothing");
}

#[test]
fn two_foreground_daemons_on_one_home_one_serves() {
    let home = Home::new();
    let start = |n: usize| {
        let log = fs::File::create(home.path().join(format!("foreground-{n}.log"))).unwrap();
        home.command(&["daemon", "--foreground"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a daemon")
    };
    let mut daemons = [start(0), start(1)];
    let mut exited = None;
    wait_until(SOON, "one of the two daemons exits", || {
        exited = daemons
            .iter_mut()
            .position(|daemon| daemon.try_wait().unwrap().is_some());
        exited.is_some()
    });
    let loser = exited.unwrap();
    let winner = 1 - loser;
    let status = daemons[loser].wait().unwrap();
    assert!(status.success(), "the second daemon steps aside: {status}");
    let said = fs::read_to_string(home.path().join(format!("foreground-{loser}.log"))).unwrap();
    assert!(
        said.contains(&format!(
            "a daemon already runs for {}",
            home.path().display()
        )),
        "{said}"
    );
    assert!(daemons[winner].try_wait().unwrap().is_none(), "one serves");
    let winner_pid = daemons[winner].id() as i32;
    wait_until(SOON, "the winner has written its pid file", || {
        home.daemon_pid().is_some()
    });
    assert_eq!(home.json(&["ps", "--json"]), serde_json::json!([]));
    assert_eq!(home.daemon_pid(), Some(winner_pid));
    assert_eq!(home.daemons(), [winner_pid]);

    home.ok(&["daemon", "stop"]);
    let status = daemons[winner].wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn concurrent_autostarts_end_with_exactly_one_daemon() {
    let home = Home::new();
    let seconds = marker();
    let results: Vec<common::Output> = thread::scope(|scope| {
        let calls: Vec<_> = (0..16)
            .map(|n| {
                let home = &home;
                let seconds = &seconds;
                scope.spawn(move || {
                    if n % 2 == 0 {
                        home.wrangle(&["ps", "--json"])
                    } else {
                        home.wrangle(&["run", "--name", &format!("a{n}"), "--", "sleep", seconds])
                    }
                })
            })
            .collect();
        calls.into_iter().map(|call| call.join().unwrap()).collect()
    });
    for output in &results {
        assert_eq!(output.code(), 0, "{output:?}");
    }
    wait_until(SOON, "the daemons that lost the race have exited", || {
        home.daemons().len() == 1
    });
    assert_eq!(home.daemons(), [home.daemon_pid().expect("a daemon")]);
    let agents = home.ps_all();
    assert_eq!(agents.len(), 8, "every run reached the one daemon");
    assert!(agents.iter().all(|agent| agent["state"] == "running"));
}

#[test]
fn cli_calls_racing_a_daemon_stop_still_get_an_answer() {
    let home = Home::new();
    let seconds = marker();
    let id = home.run(&["--name", "steady", "--", "sleep", &seconds]);
    let agent = procfs::stat(home.pid(&id)).unwrap();
    for round in 0..5 {
        home.ok(&["daemon"]);
        let results: Vec<common::Output> = thread::scope(|scope| {
            let stop = scope.spawn(|| home.wrangle(&["daemon", "stop"]));
            let calls: Vec<_> = (0..6)
                .map(|_| scope.spawn(|| home.wrangle(&["inspect", "--json", "steady"])))
                .collect();
            let mut results: Vec<_> = calls.into_iter().map(|c| c.join().unwrap()).collect();
            results.push(stop.join().unwrap());
            results
        });
        for output in &results {
            assert_eq!(output.code(), 0, "round {round}: {output:?}");
        }
        wait_until(SOON, "at most one daemon is left", || {
            home.daemons().len() <= 1
        });
    }
    assert!(agent.is_alive(), "the agent ran through it all");
    assert_eq!(home.pid("steady"), agent.pid);
    assert_eq!(home.daemons().len(), 1);
}

#[test]
fn the_socket_is_0600_in_a_0700_directory() {
    let home = Home::new();
    fs::set_permissions(home.path(), fs::Permissions::from_mode(0o755)).unwrap();
    home.ok(&["ps"]);
    let socket = fs::symlink_metadata(home.socket()).expect("the socket exists");
    assert!(socket.file_type().is_socket());
    assert_eq!(socket.permissions().mode() & 0o7777, 0o600);
    let dir = fs::metadata(home.path()).unwrap();
    assert_eq!(dir.permissions().mode() & 0o7777, 0o700);
}

/// SIGCHLD's number on Linux.
const SIGCHLD: u32 = 17;

/// Whether SIGCHLD is among the ignored signals of `status` (the text of a
/// `/proc/PID/status`).
fn ignores_sigchld(status: &str) -> bool {
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .map(|mask| u64::from_str_radix(mask.trim(), 16).unwrap())
        .unwrap();
    mask & (1 << (SIGCHLD - 1)) != 0
}

#[test]
fn exit_statuses_are_kept_when_wrangle_starts_with_sigchld_ignored() {
    // bash passes a signal it was told to ignore on to what it execs; an
    // ignored SIGCHLD makes the kernel reap children as they exit.
    let ignoring = "trap '' CHLD; exec \"$@\"";
    let probe = std::process::Command::new("bash")
        .args(["-c", ignoring, "bash", "cat", "/proc/self/status"])
        .output()
        .expect("run bash");
    assert!(
        ignores_sigchld(&String::from_utf8_lossy(&probe.stdout)),
        "bash did not pass SIGCHLD on ignored: this test would test nothing"
    );

    let home = Home::new();
    let mut daemon = std::process::Command::new("bash")
        .args([
            "-c",
            ignoring,
            "bash",
            common::WRANGLE,
            "daemon",
            "--foreground",
        ])
        .env("WRANGLE_HOME", home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a daemon with SIGCHLD ignored");
    wait_until(SOON, "the daemon has written its pid file", || {
        home.daemon_pid().is_some()
    });

    let failed = home.run(&["--", "sh", "-c", "exit 3"]);
    let output = home.wrangle(&["wait", &failed]);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let agent = home.inspect(&failed);
    assert_eq!(agent["state"], "failed");
    assert_eq!(agent["exit_code"], 3);

    home.ok(&["daemon", "stop"]);
    daemon.wait().unwrap();
}
