//! Crash safety with users at work (issue 16): the daemon is SIGKILLed at
//! seeded random moments, some 20 to 40 times, while 8 users start and
//! stop agents with the CLI, which starts the next daemon by itself. Each
//! agent appends a line to a file of its own and exits with a code of its
//! own (or sleeps until its user stops it).
//!
//! Afterwards, in `/proc`, in those files and through the CLI: every
//! `run` answered with an id, and that id names the agent it started; no
//! agent was created twice (one agent per `run`, names unique) nor run
//! twice (run 1, one line in its file); every exit code is kept, also of
//! agents that ended while no daemon ran; every stop took; no zombie is
//! left and, after `stop --all`, no agent process. `WRANGLE_CRASH_SEED=N`
//! tries other moments.

mod common;

use common::{crash, marker, procfs, wait_until, Home, Output, SOON};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Users starting and stopping agents at once.
const CLIENTS: usize = 8;
/// Agents each user starts, one after another.
const RUNS: usize = 12;
/// The seed when `WRANGLE_CRASH_SEED` gives none.
const DEFAULT_SEED: u64 = 16;
/// How many times a user tries a `stop` whose daemon was killed under it.
const STOP_ATTEMPTS: usize = 30;

/// What one user's agent was to do.
#[derive(Debug, Clone)]
struct Plan {
    name: String,
    /// Exits with this code by itself, or (`None`) sleeps until stopped.
    exit_code: Option<i32>,
}

/// What one `run` answered.
#[derive(Debug)]
struct Ran {
    plan: Plan,
    output: Output,
    /// How many `stop`s it took until one succeeded (0: none needed).
    stops: usize,
}

/// One user: runs its agents one after another; those that sleep are
/// stopped (again, when the daemon died under the stop).
fn user(home: &Home, tag: &str, marks: &Path, client: usize, seed: u64) -> Vec<Ran> {
    let mut rng = StdRng::seed_from_u64(seed ^ ((client as u64 + 1) * 0x9E37_79B9));
    (0..RUNS)
        .map(|i| {
            let n = client * RUNS + i;
            let name = format!("u{client}-{i}");
            // Two in three exit by themselves, each with a code of its own
            // (0 to 95, 0 once); the others sleep until stopped.
            let exit_code = (n % 3 != 2).then_some(n as i32);
            let pause = format!("{:.2}", rng.random_range(0.05..1.5));
            let script = match exit_code {
                Some(code) => format!("echo run >> \"$1\"; sleep {pause}; exit {code}"),
                None => "echo run >> \"$1\"; sleep 600".to_string(),
            };
            let mark = marks.join(&name);
            let output = home.wrangle(&[
                "run",
                "--name",
                &name,
                "--",
                "sh",
                "-c",
                &script,
                &format!("{tag}-{name}"),
                mark.to_str().unwrap(),
            ]);
            let mut stops = 0;
            if exit_code.is_none() && output.status.success() {
                thread::sleep(Duration::from_millis(rng.random_range(100..1000)));
                while stops < STOP_ATTEMPTS {
                    stops += 1;
                    if home.wrangle(&["stop", &name]).status.success() {
                        break;
                    }
                    thread::sleep(Duration::from_millis(50));
                }
            }
            // The user thinks a moment before the next one.
            thread::sleep(Duration::from_millis(rng.random_range(100..800)));
            Ran {
                plan: Plan { name, exit_code },
                output,
                stops,
            }
        })
        .collect()
}

#[test]
fn agents_started_and_stopped_while_the_daemon_is_killed_are_each_kept_once() {
    let seed = std::env::var("WRANGLE_CRASH_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    eprintln!("crash_clients: seed {seed} (WRANGLE_CRASH_SEED={seed} to replay it)");
    let started = Instant::now();
    let home = Home::new();
    home.ok(&["ps"]);
    let tag = format!("crash-clients-{}", marker());
    let marks = home.path().join("marks");
    fs::create_dir(&marks).expect("a directory for the agents' marks");
    let done = AtomicBool::new(false);

    let (runs, kills) = thread::scope(|scope| {
        let users: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (home, tag, marks) = (&home, &tag, &marks);
                scope.spawn(move || user(home, tag, marks, client, seed))
            })
            .collect();
        let killer = scope.spawn(|| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut kills = 0;
            while !done.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(rng.random_range(100..500)));
                if let Some(pid) = home.daemon_pid() {
                    if procfs::is_alive(pid) {
                        crash::kill_daemon(&home);
                        kills += 1;
                    }
                }
            }
            kills
        });
        let runs: Vec<Ran> = users
            .into_iter()
            .flat_map(|user| user.join().expect("a user"))
            .collect();
        done.store(true, Ordering::SeqCst);
        (runs, killer.join().expect("the killer"))
    });
    eprintln!(
        "crash_clients: {} runs by {CLIENTS} users while the daemon was SIGKILLed {kills} times, in {:.1?}",
        runs.len(),
        started.elapsed()
    );
    assert!(kills >= 10, "the daemon was killed only {kills} times");
    let retried = runs.iter().filter(|ran| ran.stops > 1).count();
    eprintln!("crash_clients: {retried} stops were tried again after the daemon died under them");

    // Every run answered with an id; every stop took, at last.
    let mut ids: HashMap<String, &Ran> = HashMap::new();
    for ran in &runs {
        assert!(
            ran.output.status.success(),
            "run {} failed (seed {seed}): {:?}",
            ran.plan.name,
            ran.output
        );
        let id = ran.output.stdout.trim().to_string();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "run {} printed {:?}, not an id",
            ran.plan.name,
            ran.output.stdout
        );
        assert!(
            ids.insert(id.clone(), ran).is_none(),
            "two runs printed the id {id}"
        );
        if ran.plan.exit_code.is_none() {
            assert!(
                ran.stops < STOP_ATTEMPTS,
                "{} could not be stopped in {STOP_ATTEMPTS} tries (seed {seed})",
                ran.plan.name
            );
        }
    }

    // The daemon settles: every agent has ended.
    home.ok(&["daemon"]);
    wait_until(SOON, "every agent has ended", || {
        home.ps_all().iter().all(|agent| {
            matches!(
                agent["state"].as_str(),
                Some("completed" | "failed" | "stopped")
            )
        })
    });
    let agents = home.ps_all();
    let names: HashSet<&str> = agents.iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(names.len(), agents.len(), "a name twice: {agents:#?}");
    assert_eq!(
        agents.len(),
        runs.len(),
        "one agent per run (seed {seed}): {:?}",
        names
    );
    for agent in &agents {
        let id = agent["id"].as_str().expect("an id");
        let ran = ids
            .get(id)
            .unwrap_or_else(|| panic!("no run printed the id of {agent}"));
        let plan = &ran.plan;
        assert_eq!(agent["name"], plan.name.as_str(), "{agent}");
        // Run once: its first run, and one line in its file.
        assert_eq!(
            agent["run"], 1,
            "{} ran again (seed {seed}): {agent}",
            plan.name
        );
        let mark = fs::read_to_string(marks.join(&plan.name)).unwrap_or_default();
        assert_eq!(
            mark,
            "run\n",
            "{} started {} times (seed {seed})",
            plan.name,
            mark.lines().count()
        );
        // Its end as it was.
        match plan.exit_code {
            Some(code) => {
                let state = if code == 0 { "completed" } else { "failed" };
                assert_eq!(
                    (agent["state"].as_str(), agent["exit_code"].as_i64()),
                    (Some(state), Some(i64::from(code))),
                    "{} exited with {code} (seed {seed}): {agent}",
                    plan.name
                );
            }
            None => assert_eq!(
                agent["state"], "stopped",
                "{} was stopped (seed {seed}): {agent}",
                plan.name
            ),
        }
    }

    // Nothing of it is left: no agent process after `stop --all`, no
    // shim, no zombie of the daemon, its shims or this test.
    home.ok(&["stop", "--all"]);
    let me = std::process::id() as i32;
    wait_until(SOON, "no agent, shim or zombie is left", || {
        procfs::with_marker(&tag).is_empty()
            && home.shims().is_empty()
            && home.zombie_children().is_empty()
            && procfs::zombies().iter().all(|zombie| zombie.ppid != me)
    });
    eprintln!("crash_clients: took {:.1?} in all", started.elapsed());
}
