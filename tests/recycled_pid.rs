//! A recycled pid is never signalled or adopted. The daemon is SIGKILLed,
//! an agent and its shim are SIGKILLed from outside, and the kernel is made
//! to hand the agent's (or the shim's) pid to an unrelated process, the
//! leader of its own process group. The next daemon must see the run as
//! lost, not as that process, and no stop may reach it.
//!
//! Choosing the next pid means writing `/proc/sys/kernel/ns_last_pid`,
//! which needs root; tests that cannot do it, or lose the race for the pid
//! to other processes every time, say so and pass.

mod common;

use common::crash::{self, become_subreaper, kill_and_reap, spawn_with_pid, Recycle};
use common::{marker, procfs, wait_until, Home, SOON};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// How many times the race for a pid is tried before giving up.
const ATTEMPTS: u32 = 200;

/// Which of the run's processes gives its pid away.
#[derive(Debug, Clone, Copy)]
enum Recycled {
    Agent,
    Shim,
}

/// An unrelated process, killed when the test ends however it ends.
struct Unrelated(Child);

impl Drop for Unrelated {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the scenario in `home`; false when the pid could not be recycled
/// (the test is then skipped).
fn recycled_pid_is_left_alone(home: &Home, recycled: Recycled) -> bool {
    let seconds = marker();
    let id = home.run(&["--name", "victim", "--", "sleep", &seconds]);
    let bystander = home.run(&["--name", "bystander", "--", "sleep", &seconds]);
    let agent = home.inspect(&id);
    let agent_process = procfs::stat(agent["pid"].as_i64().unwrap() as i32).unwrap();
    let shim_process = procfs::stat(agent["shim_pid"].as_i64().unwrap() as i32).unwrap();
    let bystander_pid = home.pid(&bystander);

    crash::kill_daemon(home);
    // The shim first, so that nobody records the agent's end.
    kill_and_reap(&shim_process);
    kill_and_reap(&agent_process);
    let original = match recycled {
        Recycled::Agent => &agent_process,
        Recycled::Shim => &shim_process,
    };
    let pid = original.pid;
    let other = marker();
    let child = spawn_with_pid(pid, ATTEMPTS, || {
        let mut command = Command::new("sleep");
        command
            .arg(&other)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    });
    let unrelated = match child {
        Ok(child) => Unrelated(child),
        Err(Recycle::NotPermitted(why)) => {
            eprintln!("skipped: the pid cannot be chosen here ({why}); this needs root");
            return false;
        }
        Err(Recycle::Lost) => {
            eprintln!("skipped: other processes took pid {pid} first {ATTEMPTS} times in a row");
            return false;
        }
    };
    let stranger = procfs::stat(pid).expect("the unrelated process runs");
    assert_eq!(stranger.pgrp, pid, "it leads its own process group");
    assert_ne!(
        stranger.start_time, original.start_time,
        "pid and start time name another process"
    );

    // The next daemon sees the run as lost, not as the stranger.
    home.ok(&["daemon"]);
    let agent = home.inspect(&id);
    assert_eq!(agent["state"], "failed", "{recycled:?}: {agent}");
    let reason = agent["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("lost while the daemon was down: "),
        "{recycled:?}: {agent}"
    );
    assert!(stranger.is_alive(), "{recycled:?}: the stranger was killed");
    assert_eq!(home.state(&bystander), "running");
    assert_eq!(home.pid(&bystander), bystander_pid);

    // Nothing wrangle is asked to do reaches it.
    let kill = home.fails(&["kill", &id]);
    assert!(kill.stderr.contains("is not running"), "{kill:?}");
    home.ok(&["stop", "--all"]);
    assert_eq!(home.state(&bystander), "stopped");
    assert_eq!(home.state(&id), "failed");
    assert!(procfs::with_marker(&seconds).is_empty());
    assert!(
        stranger.is_alive(),
        "{recycled:?}: `stop --all` killed the stranger"
    );
    home.ok(&["daemon", "stop", "--stop-agents"]);
    assert!(
        stranger.is_alive(),
        "{recycled:?}: `daemon stop --stop-agents` killed the stranger"
    );
    drop(unrelated);
    wait_until(SOON, "the stranger is gone", || !stranger.is_alive());
    true
}

#[test]
fn a_recycled_agent_pid_is_never_signalled_or_adopted() {
    become_subreaper();
    for home in [Home::new(), Home::without_cgroups()] {
        if !recycled_pid_is_left_alone(&home, Recycled::Agent) {
            return;
        }
    }
}

#[test]
fn a_recycled_shim_pid_is_never_signalled_or_adopted() {
    become_subreaper();
    for home in [Home::new(), Home::without_cgroups()] {
        if !recycled_pid_is_left_alone(&home, Recycled::Shim) {
            return;
        }
    }
}
