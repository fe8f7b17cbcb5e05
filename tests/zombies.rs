//! Zombies: a thousand short agents, started at once, leave none behind.
//! The shim reaps its agent and the daemon reaps its shims.

mod common;

use common::{procfs, wait_until, wait_until_showing, Home, SOON};
use std::collections::BTreeSet;
use std::fs;
use std::thread;
use std::time::Duration;

const AGENTS: usize = 1000;
const CALLERS: usize = 16;

/// Where `true` is, as the agent's `PATH` would find it.
fn true_program() -> &'static str {
    ["/usr/bin/true", "/bin/true"]
        .into_iter()
        .find(|path| fs::metadata(path).is_ok())
        .expect("a true program")
}

#[test]
fn a_thousand_short_agents_leave_no_zombie() {
    let home = Home::new();
    // A copy of `true` with a command name of its own: a zombie has no
    // command line left, but it keeps its name.
    let name = format!("true-{}", std::process::id() % 1_000_000);
    let program = home.path().join(&name);
    fs::copy(true_program(), &program).unwrap();
    let program = program.to_str().unwrap().to_string();
    home.ok(&["daemon"]);
    let daemon = home.daemon_pid().expect("a daemon");
    let open_files = || procfs::open_file_targets(daemon);
    let files_before = open_files();

    let ids: Vec<String> = thread::scope(|scope| {
        let callers: Vec<_> = (0..CALLERS)
            .map(|caller| {
                let home = &home;
                let program = &program;
                scope.spawn(move || {
                    (caller..AGENTS)
                        .step_by(CALLERS)
                        .map(|_| home.run(&["--", program]))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        callers
            .into_iter()
            .flat_map(|caller| caller.join().unwrap())
            .collect()
    });
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), AGENTS, "every run printed its own id");

    wait_until(Duration::from_secs(60), "every agent has ended", || {
        home.json(&["ps", "--json"]) == serde_json::json!([])
    });
    let agents = home.ps_all();
    assert_eq!(agents.len(), AGENTS);
    for agent in &agents {
        assert_eq!(agent["state"], "completed", "{agent}");
        assert_eq!(agent["exit_code"], 0, "{agent}");
    }
    assert!(home.shims().is_empty(), "every shim has exited");

    // An ended agent was reaped by its shim, and its shim by the daemon,
    // before the end was recorded: no zombie is left, at once.
    let zombies: Vec<procfs::Proc> = procfs::zombies()
        .into_iter()
        .filter(|z| z.comm == name || z.ppid == daemon)
        .collect();
    assert!(zombies.is_empty(), "zombies left by wrangle: {zombies:?}");
    assert!(home.zombie_children().is_empty());
    assert_eq!(home.daemon_pid(), Some(daemon), "one daemon did it all");
    // Nor does the daemon keep a handle (pidfd, pipe) on any of them.
    wait_until_showing(
        SOON,
        "the daemon holds as many files as before",
        || open_files().len() <= files_before.len() + 2,
        || format!("; before: {files_before:?}, now: {:?}", open_files()),
    );
}
