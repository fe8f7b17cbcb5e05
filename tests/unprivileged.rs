//! wrangle for an ordinary user: the run/ps/stop cycle as uid 65534, with
//! a home that user owns and a copy of the binary it can execute. Such a
//! user cannot create cgroups, so the process group + subreaper fallback
//! holds the tree, and the stop must still leave nothing behind.

mod common;

use common::{
    is_root, marker, procfs, public_copy_of_wrangle, wait_until, Home, HomeOptions, SOON,
};
use std::os::unix::fs::MetadataExt;

const NOBODY: u32 = 65534;

#[test]
fn an_ordinary_user_runs_lists_and_stops_a_whole_tree() {
    if !is_root() {
        eprintln!("skipped: switching to uid {NOBODY} needs root");
        return;
    }
    let (_binary_dir, binary) = public_copy_of_wrangle();
    let home = Home::with(HomeOptions {
        user: Some(NOBODY),
        binary: Some(binary),
        env: Vec::new(),
    });
    let seconds = marker();
    let script = format!(
        "sleep {seconds} & setsid sleep {seconds} & (sleep {seconds} &); (setsid sleep {seconds} &); wait"
    );
    let id = home.run(&["--name", "mine", "--", "sh", "-c", &script]);

    let sleeper = format!("sleep {seconds}");
    let sleepers = || -> Vec<procfs::Proc> {
        procfs::with_marker(&seconds)
            .into_iter()
            .filter(|p| procfs::cmdline(p.pid).as_deref() == Some(sleeper.as_str()))
            .collect()
    };
    wait_until(SOON, "the agent has started its four sleepers", || {
        sleepers().len() == 4
    });
    let agent = home.inspect("mine");
    let pid = agent["pid"].as_i64().expect("a pid") as i32;
    let mut tree = sleepers();
    tree.push(procfs::stat(pid).expect("the agent runs"));
    assert_eq!(tree.iter().filter(|p| p.session != pid).count(), 2);

    // Everything runs as the user: daemon, shim, agent and its children.
    let daemon = home.daemon_pid().expect("a daemon");
    let shim = agent["shim_pid"].as_i64().expect("a shim") as i32;
    for process in [daemon, shim]
        .iter()
        .map(|&pid| procfs::stat(pid).expect("it runs"))
        .chain(tree.iter().cloned())
    {
        assert_eq!(process.uid, NOBODY, "{process:?} runs as another user");
    }
    let socket = std::fs::metadata(home.socket()).expect("the socket");
    assert_eq!(socket.uid(), NOBODY);
    assert_eq!(
        agent["containment"], "process group + subreaper",
        "an ordinary user cannot create cgroups here"
    );

    let table = home.ok(&["ps"]);
    assert!(
        table
            .lines()
            .any(|row| row.starts_with(&id[..12]) && row.contains("running")),
        "{table}"
    );
    let output = home.ok(&["stop", "mine"]);
    assert!(
        output.starts_with("mine: stopped by SIGTERM in "),
        "{output}"
    );
    for process in &tree {
        assert!(!process.still_exists(), "{process:?} outlived the stop");
    }
    assert!(procfs::with_marker(&seconds).is_empty());
    assert_eq!(home.state("mine"), "stopped");
    home.ok(&["daemon", "stop"]);
    assert!(!procfs::is_alive(daemon));
}

#[test]
fn a_client_of_another_user_is_refused_even_through_a_loosened_socket() {
    if !is_root() {
        eprintln!("skipped: switching users needs root");
        return;
    }
    let (_binary_dir, binary) = public_copy_of_wrangle();
    let home = Home::with(HomeOptions {
        user: Some(NOBODY),
        binary: Some(binary),
        env: Vec::new(),
    });
    home.ok(&["ps"]);
    // Someone loosened the modes: anyone may reach the socket now.
    use std::os::unix::fs::PermissionsExt;
    for path in [home.path().to_path_buf(), home.socket()] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let as_other_user = |path: &str| {
        std::process::Command::new("setpriv")
            .args([
                "--reuid=65533",
                "--regid=65533",
                "--clear-groups",
                "curl",
                "-s",
                "-w",
                "\n%{http_code}",
                "--unix-socket",
            ])
            .arg(home.socket())
            .arg(format!("http://wrangle{path}"))
            .output()
            .expect("setpriv and curl")
    };
    let answer = as_other_user("/v1/agents");
    let text = String::from_utf8_lossy(&answer.stdout);
    assert!(text.ends_with("\n403"), "{text}");
    assert!(text.contains("permission_denied"), "{text}");
    assert!(text.contains("takes no requests of uid 65533"), "{text}");
    // Its own user, and root, are still let in.
    assert_eq!(home.json(&["ps", "--json"]), serde_json::json!([]));
    let root = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--unix-socket",
        ])
        .arg(home.socket())
        .arg("http://wrangle/v1/agents")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&root.stdout), "200");
}
