//! `wrangle up` / `down` on a declarative file: up starts what is missing,
//! recreates what changed and leaves the rest alone; up twice starts
//! nothing twice; down stops what the file declares. Mistakes name the
//! file, the line and the key, and start nothing.

mod common;

use common::{marker, procfs, Home};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A file of ten sleepers, `agent-0` to `agent-9`, in a group of at most
/// ten, `agent-3` sleeping `special` seconds.
fn fleet(seconds: &str, special: &str) -> String {
    let mut text = String::from("[groups.fleet]\nmax_running = 10\n");
    for index in 0..10 {
        let sleep = if index == 3 { special } else { seconds };
        text.push_str(&format!(
            "\n[agents.agent-{index}]\ncommand = [\"sleep\", \"{sleep}\"]\ngroup = \"fleet\"\nenv = {{ INDEX = \"{index}\" }}\n"
        ));
    }
    text
}

fn write(home: &Home, text: &str) -> PathBuf {
    let path = home.path().join("wrangle.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Name to pid of every running agent.
fn pids(home: &Home) -> BTreeMap<String, i64> {
    home.json(&["ps", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|agent| {
            (
                agent["name"].as_str().unwrap().to_string(),
                agent["pid"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn up_up_change_and_down_on_a_file_of_ten_agents() {
    let home = Home::new();
    let seconds = marker();
    let other = marker();
    write(&home, &fleet(&seconds, &seconds));
    // The file is found in the current directory (the home, in tests).
    let first = home.ok(&["up"]);
    assert_eq!(first.matches(": created").count(), 10, "{first}");
    let before = pids(&home);
    assert_eq!(before.len(), 10);
    for pid in before.values() {
        assert!(procfs::is_alive(*pid as i32));
    }
    let agent = home.inspect("agent-3");
    assert_eq!(agent["group"], "fleet");
    assert_eq!(agent["cwd"], home.path().to_str().unwrap());
    assert!(agent["env"]
        .as_array()
        .unwrap()
        .contains(&Value::from("INDEX")));
    let groups = home.json(&["group", "ls", "--json"]);
    assert_eq!(groups[0]["max_running"], 10);

    let second = home.ok(&["up"]);
    assert_eq!(second.matches(": unchanged").count(), 10, "{second}");
    assert_eq!(pids(&home), before, "up twice starts nothing twice");

    // One agent changes: only it is recreated.
    write(&home, &fleet(&seconds, &other));
    let third = home.ok(&["up", "-f", "wrangle.toml"]);
    assert!(third.contains("agent-3: recreated"), "{third}");
    assert_eq!(third.matches(": unchanged").count(), 9, "{third}");
    let after = pids(&home);
    for (name, pid) in &before {
        if name == "agent-3" {
            assert_ne!(after[name], *pid);
            assert!(!procfs::is_alive(*pid as i32), "the old agent-3 is stopped");
            assert_eq!(
                procfs::cmdline(after[name] as i32).as_deref(),
                Some(format!("sleep {other}").as_str())
            );
        } else {
            assert_eq!(after[name], *pid, "{name} was left alone");
        }
    }
    // An agent the file does not declare is left alone by up and down.
    let outsider = home.run(&["--name", "outsider", "--", "sleep", &seconds]);

    let down = home.ok(&["down"]);
    assert_eq!(down.matches("stopped by SIGTERM").count(), 10, "{down}");
    for pid in after.values() {
        assert!(!procfs::is_alive(*pid as i32));
    }
    assert_eq!(home.state(&outsider), "running");
    let again = home.ok(&["down"]);
    assert_eq!(again.matches("not running").count(), 10, "{again}");

    // Up after down starts them again.
    let restarted = home.ok(&["up"]);
    assert_eq!(restarted.matches(": recreated").count(), 10, "{restarted}");
    home.ok(&["down"]);
    home.ok(&["stop", &outsider]);
}

/// `up` with `text` fails naming `file:line` and `key`, and starts nothing.
fn refused(home: &Home, text: &str, line: usize, key: &str) {
    let path = write(home, text);
    let before = home.snapshot();
    let output = home.fails(&["up"]);
    let expected = format!("{}:{line}: {key}", path.display());
    assert!(
        output.stderr.contains(&expected),
        "{text}\nwanted {expected:?} in {:?}",
        output.stderr
    );
    assert_eq!(home.snapshot(), before, "{text}: something changed");
}

#[test]
fn mistakes_in_the_file_name_the_line_and_the_key_and_start_nothing() {
    let home = Home::new();
    let good = "[agents.fine]\ncommand = [\"sleep\", \"100\"]\n\n";
    refused(
        &home,
        &format!("{good}[agents.x]\ncommand = [\"true\"]\ncolour = \"red\"\n"),
        6,
        "agents.x.colour: unknown field `colour`",
    );
    refused(
        &home,
        &format!("{good}[agents.x]\ncommand = [\"true\"]\ntimeout = \"soon\"\n"),
        6,
        "agents.x.timeout: --timeout: invalid duration",
    );
    refused(
        &home,
        &format!("{good}[agents.x]\ncommand = [\"true\"]\nrestart = \"sometimes\"\n"),
        6,
        "agents.x.restart: invalid restart policy",
    );
    refused(
        &home,
        &format!("{good}[agents.x]\ncommand = [\"true\"]\npriority = \"high\"\n"),
        6,
        "agents.x.priority:",
    );
    refused(
        &home,
        "[groups.g]\nmax_running = -2\n",
        2,
        "groups.g.max_running",
    );
    let missing = home.fails(&["up", "-f", "/nonexistent/wrangle.toml"]);
    assert!(
        missing
            .stderr
            .contains("cannot read /nonexistent/wrangle.toml"),
        "{missing:?}"
    );
    assert!(home.ps_all().is_empty());
}

#[test]
fn up_leaves_an_agent_of_the_same_name_from_elsewhere_alone() {
    let home = Home::new();
    let seconds = marker();
    let mine = home.run(&["--name", "web", "--", "sleep", &seconds]);
    let pid = home.pid(&mine);
    write(&home, "[agents.web]\ncommand = [\"sleep\", \"5\"]\n");
    let output = home.fails(&["up"]);
    assert!(
        output.stderr.contains("web: an agent of this name exists"),
        "{output:?}"
    );
    assert_eq!(home.pid(&mine), pid);
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    home.ok(&["stop", &mine]);
}

#[test]
fn up_twice_of_a_thousand_agents_starts_nothing_the_second_time() {
    let home = Home::new();
    let seconds = marker();
    let mut text = String::new();
    for index in 0..1000 {
        text.push_str(&format!(
            "[agents.sleeper-{index}]\ncommand = [\"sleep\", \"{seconds}\"]\n\n"
        ));
    }
    write(&home, &text);
    let first = home.ok(&["up"]);
    assert_eq!(first.matches(": created").count(), 1000, "{first}");
    let before = pids(&home);
    assert_eq!(before.len(), 1000);
    assert_eq!(procfs::with_marker(&seconds).len(), 1000);
    let second = home.ok(&["up"]);
    assert_eq!(
        second.matches(": unchanged (running)").count(),
        1000,
        "{second}"
    );
    assert_eq!(pids(&home), before, "the same processes");
    assert_eq!(
        procfs::with_marker(&seconds).len(),
        1000,
        "nothing started twice"
    );
    home.ok(&["down"]);
    assert!(procfs::with_marker(&seconds).is_empty());
}
