//! Crash safety when the home itself is damaged: a shim's state file that
//! is garbage or gone, a store another process holds locked, a home that
//! cannot be written. Each gives a clear error, or a clear reason on the
//! one agent concerned, and loses nothing else: other agents stay as they
//! were, running ones keep running and are held again once the damage is
//! repaired.

mod common;

use common::crash::{self, kill_and_wait};
use common::{is_root, marker, procfs, wait_until, Home, SOON};
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Starts an agent that waits for the file `go` and then exits with code 5.
fn start_waiting(home: &Home, name: &str, go: &Path) -> String {
    home.run(&[
        "--name",
        name,
        "--",
        "sh",
        "-c",
        &format!("until [ -e {} ]; do sleep 0.01; done; exit 5", go.display()),
    ])
}

/// `ps -a --json` restricted to `ids`, for comparing before and after.
fn snapshot_of(home: &Home, ids: &[&str]) -> Vec<Value> {
    let mut agents: Vec<Value> = home
        .snapshot()
        .as_array()
        .expect("an array")
        .iter()
        .filter(|agent| ids.iter().any(|id| agent["id"] == *id))
        .cloned()
        .collect();
    agents.sort_by_key(|agent| agent["id"].as_str().unwrap_or_default().to_string());
    agents
}

/// Waits until the shim of run 1 of `id` has exited with its final state
/// written: the run has ended while the daemon is down.
fn wait_for_shim_to_finish(home: &Home, id: &str, shim: &procfs::Proc) {
    wait_until(SOON, "the shim has recorded the end and exited", || {
        !shim.is_alive()
            && crash::shim_state(home, id, 1).is_some_and(|state| !state["finished_at"].is_null())
    });
}

#[test]
fn a_corrupt_or_missing_state_file_costs_only_that_run_its_exit_status() {
    for home in [Home::new(), Home::without_cgroups()] {
        corrupt_or_missing_state_files(&home);
    }
}

fn corrupt_or_missing_state_files(home: &Home) {
    let seconds = marker();
    let go = home.path().join("go");
    let live_garbage = home.run(&["--name", "live-garbage", "--", "sleep", &seconds]);
    let live_missing = home.run(&["--name", "live-missing", "--", "sleep", &seconds]);
    let ended_garbage = start_waiting(home, "ended-garbage", &go);
    let ended_missing = start_waiting(home, "ended-missing", &go);
    let orphan = marker();
    let orphaned = home.run(&["--name", "orphaned", "--", "sleep", &orphan]);
    let intact = marker();
    let orphaned_intact = home.run(&["--name", "orphaned-intact", "--", "sleep", &intact]);
    let bystander = home.run(&["--name", "bystander", "--", "sleep", &seconds]);
    let completed = home.run(&["--name", "completed", "--", "true"]);
    home.ok(&["wait", &completed]);
    let untouched = [bystander.as_str(), completed.as_str()];
    let before = snapshot_of(home, &untouched);
    let pid_of = |id: &str| procfs::stat(home.pid(id)).expect("the agent runs");
    let shim_of = |id: &str| {
        let pid = home.inspect(id)["shim_pid"].as_i64().expect("a shim") as i32;
        procfs::stat(pid).expect("the shim runs")
    };
    let live = [
        (live_garbage.as_str(), pid_of(&live_garbage)),
        (live_missing.as_str(), pid_of(&live_missing)),
    ];
    let ended_shims = [shim_of(&ended_garbage), shim_of(&ended_missing)];
    let orphans = [pid_of(&orphaned), pid_of(&orphaned_intact)];
    let orphan_shims = [shim_of(&orphaned), shim_of(&orphaned_intact)];

    crash::kill_daemon(home);
    fs::write(&go, "").unwrap();
    wait_for_shim_to_finish(home, &ended_garbage, &ended_shims[0]);
    wait_for_shim_to_finish(home, &ended_missing, &ended_shims[1]);
    // Shims killed from outside: their agents run on, orphaned.
    for (shim, orphan) in orphan_shims.iter().zip(&orphans) {
        kill_and_wait(shim);
        assert!(orphan.is_alive());
    }
    let state = |id: &str| crash::run_dir(home, id, 1).join("state.json");
    for id in [&live_garbage, &ended_garbage, &orphaned] {
        fs::write(state(id), "{\"phase\": \"runn").unwrap();
    }
    for id in [&live_missing, &ended_missing] {
        fs::remove_file(state(id)).unwrap();
    }

    home.ok(&["daemon"]);
    // Live agents are found by the pid and start time the store holds.
    for (id, process) in &live {
        let agent = home.inspect(id);
        assert_eq!(agent["state"], "running", "{agent}");
        assert_eq!(agent["pid"], process.pid, "{agent}");
        assert!(process.is_alive());
    }
    // Ended ones lost their exit status, and say why.
    let garbage = home.inspect(&ended_garbage);
    assert_eq!(garbage["state"], "failed", "{garbage}");
    let reason = garbage["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("lost while the daemon was down: ")
            && reason.contains("state.json is not a valid shim state"),
        "{garbage}"
    );
    let missing = home.inspect(&ended_missing);
    assert_eq!(missing["state"], "failed", "{missing}");
    let reason = missing["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("lost while the daemon was down: ")
            && reason.contains("state.json is missing"),
        "{missing}"
    );
    // An orphan is a leftover of a lost run, found by the pid and start
    // time its shim recorded, or the store did when that record is garbage,
    // and killed.
    for id in [&orphaned, &orphaned_intact] {
        let agent = home.inspect(id);
        assert_eq!(agent["state"], "failed", "{agent}");
        assert!(
            agent["reason"]
                .as_str()
                .unwrap_or_default()
                .starts_with("lost while the daemon was down: "),
            "{agent}"
        );
    }
    assert_eq!(
        home.inspect(&orphaned_intact)["reason"],
        "lost while the daemon was down: its shim was killed, so its exit status is unknown"
    );
    wait_until(SOON, "the orphaned agents are killed", || {
        orphans.iter().all(|orphan| !orphan.is_alive())
    });
    assert!(procfs::with_marker(&orphan).is_empty());
    assert!(procfs::with_marker(&intact).is_empty());
    // Nothing else changed.
    assert_eq!(snapshot_of(home, &untouched), before);

    // The live ones are held: a stop ends them and rewrites their state.
    for (id, process) in &live {
        home.ok(&["stop", id]);
        assert_eq!(home.state(id), "stopped");
        assert!(!process.still_exists());
        assert!(crash::shim_state(home, id, 1).is_some_and(|s| !s["finished_at"].is_null()));
    }
    home.ok(&["stop", "--all"]);
    assert!(procfs::with_marker(&seconds).is_empty());
    assert!(home.shims().is_empty(), "{:?}", home.shims());
}

/// How long a CLI call may take to report a damaged home: the store's
/// busy timeout and the daemon's start-up, not the CLI's own time limit.
const PROMPTLY: Duration = Duration::from_secs(20);

#[test]
fn a_store_locked_by_another_process_is_a_clear_error_and_loses_nothing() {
    let home = Home::new();
    let seconds = marker();
    let go = home.path().join("go");
    let sleeper = home.run(&["--name", "sleeper", "--", "sleep", &seconds]);
    let waiting = start_waiting(&home, "waiting", &go);
    let sleeper_process = procfs::stat(home.pid(&sleeper)).unwrap();
    let waiting_shim = procfs::stat(home.inspect(&waiting)["shim_pid"].as_i64().unwrap() as i32)
        .expect("the shim runs");

    // The daemon is killed; while it is down, an agent ends, and another
    // program locks the store.
    crash::kill_daemon(&home);
    fs::write(&go, "").unwrap();
    wait_for_shim_to_finish(&home, &waiting, &waiting_shim);
    let lock = crash::lock_database(&home);
    let started = Instant::now();
    let output = home.fails(&["ps"]);
    assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
    assert!(
        output.stderr.contains("is locked by another process"),
        "{output:?}"
    );
    assert!(output.stderr.contains("wrangle.db"), "{output:?}");
    assert!(home.daemons().is_empty(), "{:?}", home.daemons());
    let output = home.fails(&["run", "--", "sleep", &seconds]);
    assert!(
        output.stderr.contains("is locked by another process"),
        "{output:?}"
    );
    assert_eq!(
        procfs::with_marker(&seconds),
        std::slice::from_ref(&sleeper_process)
    );

    // Once the lock is gone, everything is as it was.
    drop(lock);
    let agent = home.inspect(&sleeper);
    assert_eq!(agent["state"], "running");
    assert_eq!(agent["pid"], sleeper_process.pid);
    let agent = home.inspect(&waiting);
    assert_eq!(agent["state"], "failed", "{agent}");
    assert_eq!(agent["exit_code"], 5, "{agent}");
    assert_eq!(home.ps_all().len(), 2, "the failed `run` created nothing");
    home.ok(&["stop", &sleeper]);
    assert!(!sleeper_process.still_exists());
}

#[test]
fn a_store_locked_while_the_daemon_runs_fails_requests_and_loses_nothing() {
    let home = Home::new();
    let seconds = marker();
    let go = home.path().join("go");
    let sleeper = home.run(&["--name", "sleeper", "--", "sleep", &seconds]);
    let waiting = start_waiting(&home, "waiting", &go);
    let sleeper_process = procfs::stat(home.pid(&sleeper)).unwrap();

    let lock = crash::lock_database(&home);
    let started = Instant::now();
    let output = home.fails(&["run", "--name", "refused", "--", "sleep", &seconds]);
    assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
    assert!(
        output.stderr.contains("is locked by another process"),
        "{output:?}"
    );
    assert_eq!(
        procfs::with_marker(&seconds),
        std::slice::from_ref(&sleeper_process)
    );
    // An agent that ends meanwhile: its end is recorded once the lock is
    // gone, not forgotten.
    fs::write(&go, "").unwrap();
    wait_until(SOON, "the shim has recorded the end", || {
        crash::shim_state(&home, &waiting, 1).is_some_and(|state| !state["finished_at"].is_null())
    });
    assert_eq!(home.state(&sleeper), "running");
    drop(lock);

    home.wait_for_state(&waiting, "failed");
    assert_eq!(home.inspect(&waiting)["exit_code"], 5);
    assert_eq!(home.stored_state(&waiting).as_deref(), Some("failed"));
    assert!(home
        .fails(&["inspect", "refused"])
        .stderr
        .contains("no agent"));
    assert_eq!(home.pid(&sleeper), sleeper_process.pid);
    home.ok(&["stop", &sleeper]);
    assert!(!sleeper_process.still_exists());
}

/// A read-only bind mount of a directory on itself, undone on drop.
struct ReadOnly<'a>(&'a Path);

impl<'a> ReadOnly<'a> {
    /// Makes `dir` read-only; `None` when this process may not mount.
    fn mount(dir: &'a Path) -> Option<ReadOnly<'a>> {
        let bind = Command::new("mount")
            .arg("--bind")
            .arg(dir)
            .arg(dir)
            .output()
            .ok()?;
        if !bind.status.success() {
            eprintln!(
                "cannot bind-mount: {}",
                String::from_utf8_lossy(&bind.stderr)
            );
            return None;
        }
        let guard = ReadOnly(dir);
        let remount = Command::new("mount")
            .args(["-o", "remount,ro,bind"])
            .arg(dir)
            .output()
            .ok()?;
        remount.status.success().then_some(guard)
    }
}

impl Drop for ReadOnly<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).output();
    }
}

#[test]
fn a_home_that_cannot_be_written_is_a_clear_error_and_loses_nothing() {
    if !is_root() {
        eprintln!("skipped: making the home read-only with a bind mount needs root");
        return;
    }
    let home = Home::new();
    let seconds = marker();
    let sleeper = home.run(&["--name", "sleeper", "--", "sleep", &seconds]);
    let completed = home.run(&["--name", "completed", "--", "true"]);
    home.ok(&["wait", &completed]);
    let sleeper_process = procfs::stat(home.pid(&sleeper)).unwrap();
    let before = home.snapshot();
    home.ok(&["daemon", "stop"]);

    let Some(read_only) = ReadOnly::mount(home.path()) else {
        eprintln!("skipped: this machine does not allow a read-only bind mount");
        return;
    };
    assert!(fs::write(home.path().join("probe"), "").is_err());
    for args in [&["ps"][..], &["run", "--", "sleep", &seconds][..]] {
        let started = Instant::now();
        let output = home.fails(args);
        assert!(started.elapsed() < PROMPTLY, "{:?}", started.elapsed());
        assert!(
            output.stderr.contains(&format!(
                "the wrangle home {} is not writable",
                home.path().display()
            )),
            "{args:?}: {output:?}"
        );
    }
    assert!(home.daemons().is_empty(), "{:?}", home.daemons());
    assert!(sleeper_process.is_alive(), "the agent runs on");
    assert_eq!(
        procfs::with_marker(&seconds),
        std::slice::from_ref(&sleeper_process)
    );

    drop(read_only);
    assert_eq!(home.snapshot(), before, "everything is as it was");
    assert_eq!(home.pid(&sleeper), sleeper_process.pid);
    home.ok(&["stop", &sleeper]);
    assert!(!sleeper_process.still_exists());
}
