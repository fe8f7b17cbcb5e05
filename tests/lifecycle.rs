//! An agent's life through the CLI: `run`, `ps`, `inspect`, `kill`,
//! `wait` and `rm`, and agents named by id, name or unique id prefix.

mod common;

use common::{marker, procfs, rfc3339, wait_until, Home, SOON};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;

#[test]
fn run_prints_the_id_once_the_exec_is_confirmed() {
    let home = Home::new();
    let seconds = marker();
    let output = home.wrangle(&["run", "--name", "worker", "--", "sleep", &seconds]);
    assert_eq!(output.code(), 0, "{output:?}");
    assert_eq!(output.stderr, "");
    let id = output.stdout.trim_end();
    assert_eq!(output.stdout, format!("{id}\n"), "one line");
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));

    // When `run` returns, the exec has happened: the pid runs the command.
    let agent = home.inspect(id);
    assert_eq!(agent["state"], "running");
    let pid = agent["pid"].as_i64().expect("a pid") as i32;
    assert!(procfs::is_alive(pid));
    assert_eq!(
        procfs::cmdline(pid).as_deref(),
        Some(format!("sleep {seconds}").as_str())
    );
}

/// An agent that starts and exits non-zero at once is `failed`, but its
/// exec succeeded: `run` prints its id and exits 0 however quickly it
/// ended (the daemon may have recorded the end before it answered).
#[test]
fn run_of_an_agent_that_exits_non_zero_at_once_still_succeeds() {
    let home = Home::new();
    // Several at once, so that some ends are recorded before the answer.
    std::thread::scope(|scope| {
        for _ in 0..6 {
            scope.spawn(|| {
                for _ in 0..8 {
                    let output = home.wrangle(&["run", "--", "sh", "-c", "exit 3"]);
                    assert_eq!(output.code(), 0, "{output:?}");
                    let id = output.stdout.trim_end().to_string();
                    assert_eq!(id.len(), 32, "{output:?}");
                    assert_eq!(home.wrangle(&["wait", &id]).code(), 3);
                    assert_eq!(home.inspect(&id)["exit_code"], 3);
                }
            });
        }
    });
}

/// Runs a command that cannot start: `run` must fail naming it and the OS
/// error, and the agent must be recorded `failed` with that reason.
fn assert_start_fails(home: &Home, args: &[&str], reason: &str) {
    let mut full = vec!["run", "--name", "broken"];
    full.extend_from_slice(args);
    let output = home.fails(&full);
    assert_eq!(output.code(), 1);
    assert_eq!(output.stdout, "", "no id for an agent that never ran");
    assert!(
        output.stderr.contains(reason),
        "stderr {:?} lacks {reason:?}",
        output.stderr
    );
    let agent = home.inspect("broken");
    assert_eq!(agent["state"], "failed");
    assert_eq!(agent["reason"], reason);
    assert_eq!(agent["pid"], Value::Null);
    assert!(agent["ended_at"].is_string());
    home.ok(&["rm", "broken"]);
}

#[test]
fn run_of_a_missing_command_fails_naming_it() {
    let home = Home::new();
    assert_start_fails(
        &home,
        &["--", "claud-does-not-exist", "-p"],
        "No such file or directory: claud-does-not-exist",
    );
    let missing = home.path().join("nowhere/agent");
    assert_start_fails(
        &home,
        &["--", missing.to_str().unwrap()],
        &format!("No such file or directory: {}", missing.display()),
    );
}

#[test]
fn run_of_a_non_executable_file_fails_naming_it() {
    let home = Home::new();
    let script = home.path().join("script.sh");
    fs::write(&script, "#!/bin/sh\necho never\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
    assert_start_fails(
        &home,
        &["--", script.to_str().unwrap()],
        &format!("Permission denied: {}", script.display()),
    );
}

#[test]
fn run_with_a_bad_cwd_fails_naming_the_directory() {
    let home = Home::new();
    let missing = home.path().join("no-such-dir");
    assert_start_fails(
        &home,
        &["--cwd", missing.to_str().unwrap(), "--", "true"],
        &format!(
            "No such file or directory: cannot change to working directory {}",
            missing.display()
        ),
    );
    let file = home.path().join("a-file");
    fs::write(&file, "").unwrap();
    assert_start_fails(
        &home,
        &["--cwd", file.to_str().unwrap(), "--", "true"],
        &format!(
            "Not a directory: cannot change to working directory {}",
            file.display()
        ),
    );
}

#[test]
fn ps_lists_agents_that_run_and_ps_all_those_that_ended_too() {
    let home = Home::new();
    let seconds = marker();
    let running = home.run(&["--name", "runner", "--", "sleep", &seconds]);
    let done = home.run(&["--name", "finisher", "--", "true"]);
    home.ok(&["wait", &done]);

    let table = home.ok(&["ps"]);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 2, "a header and one agent:\n{table}");
    for column in ["ID", "NAME", "STATE", "PID", "COMMAND"] {
        assert!(rows[0].contains(column), "{table}");
    }
    assert!(rows[1].starts_with(&running[..12]), "{table}");
    assert!(rows[1].contains("runner") && rows[1].contains("running"));
    assert!(rows[1].contains(&format!("sleep {seconds}")));
    assert!(rows[1].contains(&home.pid(&running).to_string()));

    let table = home.ok(&["ps", "-a"]);
    assert_eq!(table.lines().count(), 3, "{table}");
    let finisher = table
        .lines()
        .find(|row| row.contains("finisher"))
        .expect("ps -a lists the ended agent");
    assert!(finisher.starts_with(&done[..12]) && finisher.contains("completed"));

    let listed: Vec<Value> = match home.json(&["ps", "--json"]) {
        Value::Array(agents) => agents,
        other => panic!("not an array: {other}"),
    };
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], running.as_str());
}

#[test]
fn ps_json_is_an_array_of_the_objects_inspect_prints() {
    let home = Home::new();
    let seconds = marker();
    let done = home.run(&["--name", "first", "--", "true"]);
    home.ok(&["wait", &done]);
    home.run(&["--name", "second", "--", "sleep", &seconds]);
    let mut listed = home.ps_all();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["name"], "first", "oldest first");
    assert_eq!(listed[1]["name"], "second");
    for agent in &mut listed {
        let id = agent["id"].as_str().unwrap().to_string();
        let mut inspected = home.inspect(&id);
        // The only field that moves by itself.
        for object in [&mut *agent, &mut inspected] {
            object.as_object_mut().unwrap().remove("runtime_seconds");
        }
        assert_eq!(*agent, inspected);
    }
}

#[test]
fn inspect_json_shows_every_field() {
    let home = Home::new();
    let id = home.run(&[
        "--name",
        "fields",
        "--env",
        "SECRET_TOKEN=hunter2",
        "--env",
        "MODE=fast",
        "--cwd",
        "/tmp",
        "--",
        "sh",
        "-c",
        "echo \"$SECRET_TOKEN\"; exit 3",
    ]);
    assert_eq!(home.wrangle(&["wait", &id]).code(), 3);
    let text = home.ok(&["inspect", "--json", "fields"]);
    assert!(
        !text.contains("hunter2"),
        "inspect shows env names only: {text}"
    );
    let agent: Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&String> = agent.as_object().unwrap().keys().collect();
    for key in [
        "id",
        "name",
        "state",
        "health",
        "run",
        "pid",
        "command",
        "cwd",
        "env",
        "created_at",
        "started_at",
        "ended_at",
        "exit_code",
        "signal",
        "reason",
        "runtime_seconds",
        "stdout_log",
        "stderr_log",
    ] {
        assert!(agent.get(key).is_some(), "no {key} in {keys:?}");
    }
    assert_eq!(agent["id"], id.as_str());
    assert_eq!(agent["name"], "fields");
    assert_eq!(agent["state"], "failed");
    assert!(agent["health"].is_string());
    assert_eq!(agent["run"], 1);
    assert!(agent["pid"].is_i64());
    assert_eq!(
        agent["command"],
        serde_json::json!(["sh", "-c", "echo \"$SECRET_TOKEN\"; exit 3"])
    );
    assert_eq!(agent["cwd"], "/tmp");
    assert_eq!(agent["env"], serde_json::json!(["MODE", "SECRET_TOKEN"]));
    let created = rfc3339(&agent["created_at"], "created_at");
    let started = rfc3339(&agent["started_at"], "started_at");
    let ended = rfc3339(&agent["ended_at"], "ended_at");
    assert!(created <= started && started <= ended);
    assert_eq!(agent["exit_code"], 3);
    assert_eq!(agent["signal"], Value::Null);
    assert_eq!(agent["reason"], "exited with code 3");
    let runtime = agent["runtime_seconds"].as_f64().expect("a runtime");
    assert!(runtime >= 0.0);
    let run_dir = home.runs_dir(&id).join("1");
    assert_eq!(
        agent["stdout_log"],
        run_dir.join("stdout.log").to_str().unwrap()
    );
    assert_eq!(
        agent["stderr_log"],
        run_dir.join("stderr.log").to_str().unwrap()
    );
    // The agent did get the value, and the log is where inspect says.
    assert_eq!(
        fs::read_to_string(agent["stdout_log"].as_str().unwrap()).unwrap(),
        "hunter2\n"
    );

    // While it runs: no end yet, a live pid.
    let seconds = marker();
    let running = home.inspect(&home.run(&["--", "sleep", &seconds]));
    assert_eq!(running["state"], "running");
    assert_eq!(running["ended_at"], Value::Null);
    assert_eq!(running["exit_code"], Value::Null);
    assert_eq!(running["env"], serde_json::json!([]));
    rfc3339(&running["started_at"], "started_at");
    assert!(procfs::is_alive(running["pid"].as_i64().unwrap() as i32));
}

#[test]
fn agents_are_named_by_id_name_or_unique_id_prefix() {
    let home = Home::new();
    // Seventeen ids: two of them must share their first hex digit.
    let ids: Vec<String> = (0..17)
        .map(|n| home.run(&["--name", &format!("agent-{n}"), "--", "true"]))
        .collect();
    let dotted = home.run(&["--name", "v1.2_x-y", "--", "true"]);
    assert_eq!(home.inspect("v1.2_x-y")["id"], dotted.as_str());
    let longest = "n".repeat(63);
    let named = home.run(&["--name", &longest, "--", "true"]);
    assert_eq!(home.inspect(&longest)["id"], named.as_str());
    for (n, id) in ids.iter().enumerate() {
        let name = format!("agent-{n}");
        assert_eq!(home.inspect(id)["name"], name.as_str(), "by id");
        assert_eq!(home.inspect(&name)["id"], id.as_str(), "by name");
        assert_eq!(home.inspect(&id[..12])["id"], id.as_str(), "by prefix");
    }
    let shared = ids
        .iter()
        .map(|id| &id[..1])
        .find(|prefix| ids.iter().filter(|id| id.starts_with(*prefix)).count() > 1)
        .expect("a shared first digit");
    let matching = ids
        .iter()
        .chain([&dotted, &named])
        .filter(|id| id.starts_with(shared))
        .count();
    let output = home.fails(&["inspect", shared]);
    assert!(
        output
            .stderr
            .contains(&format!("\"{shared}\" matches {matching} agents")),
        "{}",
        output.stderr
    );
    let output = home.fails(&["inspect", "agent-99"]);
    assert!(
        output.stderr.contains("no agent named \"agent-99\""),
        "{}",
        output.stderr
    );
}

#[test]
fn kill_sends_a_signal_to_the_agent() {
    let home = Home::new();
    let id = home.run(&[
        "--",
        "sh",
        "-c",
        "trap 'echo got USR1' USR1; echo ready; while :; do sleep 0.05; done",
    ]);
    wait_until(SOON, "the agent is ready", || {
        home.ok(&["logs", &id]) == "ready\n"
    });
    let output = home.ok(&["kill", "--signal", "USR1", &id]);
    assert!(
        output.ends_with('\n') && !output.trim().is_empty(),
        "{output:?}"
    );
    wait_until(SOON, "the agent got SIGUSR1", || {
        home.ok(&["logs", &id]).contains("got USR1")
    });
    assert_eq!(home.state(&id), "running", "a trapped signal ends nothing");

    let pid = procfs::stat(home.pid(&id)).expect("the agent runs");
    home.ok(&["kill", "--signal", "TERM", &id]);
    assert_eq!(home.wrangle(&["wait", &id]).code(), 128 + 15);
    let agent = home.inspect(&id);
    assert_eq!(agent["state"], "stopped");
    assert_eq!(agent["signal"], "SIGTERM");
    // The signal went to the main process only; its `sleep 0.05` may be
    // stopped as a leftover.
    let reason = agent["reason"].as_str().expect("a reason");
    assert!(
        reason.starts_with("killed by SIGTERM (wrangle kill)"),
        "{reason}"
    );
    assert!(!pid.still_exists());
}

#[test]
fn kill_without_a_signal_kills_the_whole_tree() {
    let home = Home::new();
    let seconds = marker();
    let id = home.run(&[
        "--",
        "sh",
        "-c",
        &format!("trap '' TERM; setsid sleep {seconds} & (sleep {seconds} &); wait"),
    ]);
    let sleeper = format!("sleep {seconds}");
    wait_until(SOON, "the tree has started", || {
        procfs::with_marker(&seconds)
            .iter()
            .filter(|p| procfs::cmdline(p.pid).as_deref() == Some(sleeper.as_str()))
            .count()
            == 2
    });
    let mut tree: Vec<procfs::Proc> = procfs::with_marker(&seconds)
        .into_iter()
        .filter(|p| procfs::cmdline(p.pid).as_deref() == Some(sleeper.as_str()))
        .collect();
    tree.push(procfs::stat(home.pid(&id)).expect("the agent runs"));
    home.ok(&["kill", &id]);
    let agent = home.inspect(&id);
    assert_eq!(agent["state"], "stopped");
    assert_eq!(agent["signal"], "SIGKILL");
    assert_eq!(agent["reason"], "killed by SIGKILL (wrangle kill)");
    for process in tree {
        assert!(!process.still_exists(), "{process:?} outlived the kill");
    }
    let output = home.fails(&["kill", &id]);
    assert!(
        output.stderr.contains("is not running"),
        "{}",
        output.stderr
    );
}

#[test]
fn wait_exits_with_the_exit_code_of_the_last_agent() {
    let home = Home::new();
    let seconds = marker();
    let three = home.run(&["--", "sh", "-c", "exit 3"]);
    let five = home.run(&["--", "sh", "-c", "exit 5"]);
    let zero = home.run(&["--", "true"]);
    assert_eq!(home.wrangle(&["wait", &three, &five]).code(), 5);
    assert_eq!(home.wrangle(&["wait", &five, &three]).code(), 3);
    assert_eq!(home.wrangle(&["wait", &three, &zero]).code(), 0);

    let killed = home.run(&["--", "sleep", &seconds]);
    let waiter = home.command(&["wait", &killed]);
    let waiting = std::thread::spawn(move || common::run_command(waiter, common::COMMAND_TIMEOUT));
    home.ok(&["kill", &killed]);
    assert_eq!(waiting.join().unwrap().code(), 128 + 9);

    let stopped = home.run(&["--", "sleep", &seconds]);
    home.ok(&["stop", &stopped]);
    assert_eq!(home.wrangle(&["wait", &stopped]).code(), 128 + 15);

    let crashed = home.run(&["--", "sh", "-c", "kill -SEGV $$"]);
    assert_eq!(home.wrangle(&["wait", &crashed]).code(), 128 + 11);
    let agent = home.inspect(&crashed);
    assert_eq!(agent["state"], "failed");
    assert_eq!(agent["signal"], "SIGSEGV");
    assert_eq!(agent["reason"], "killed by signal SIGSEGV");

    let output = home.fails(&["wait", "no-such-agent"]);
    assert!(output.stderr.contains("no-such-agent"), "{}", output.stderr);
}

#[test]
fn rm_forgets_an_ended_agent_and_deletes_its_logs() {
    let home = Home::new();
    let id = home.run(&["--name", "gone", "--", "sh", "-c", "echo output"]);
    home.ok(&["wait", &id]);
    let logs = home.runs_dir(&id);
    assert!(logs.join("1/stdout.log").exists());
    assert_eq!(home.ok(&["rm", "gone"]), "gone\n");
    assert!(!logs.exists(), "{} is left", logs.display());
    let output = home.fails(&["inspect", &id]);
    assert!(output.stderr.contains("no agent"), "{}", output.stderr);
    assert!(home.ps_all().is_empty());
    assert_eq!(home.stored_state(&id), None, "gone from the store too");
    // The name is free again.
    home.run(&["--name", "gone", "--", "true"]);
}

#[test]
fn rm_refuses_a_running_agent_without_force() {
    let home = Home::new();
    let seconds = marker();
    let id = home.run(&["--name", "busy", "--", "sleep", &seconds]);
    let process = procfs::stat(home.pid(&id)).expect("the agent runs");
    let before = home.snapshot();
    let output = home.fails(&["rm", "busy"]);
    assert_eq!(output.code(), 1);
    assert!(
        output.stderr.contains("busy is running") && output.stderr.contains("--force"),
        "{}",
        output.stderr
    );
    assert!(process.is_alive());
    assert!(home.runs_dir(&id).exists());
    assert_eq!(home.snapshot(), before);

    assert_eq!(home.ok(&["rm", "--force", "busy"]), "busy\n");
    assert!(!process.still_exists(), "rm --force stops the agent first");
    assert!(!home.runs_dir(&id).exists());
    assert!(home.ps_all().is_empty());
}

#[test]
fn a_shim_writes_its_own_log_only_once_it_has_something_to_say() {
    let home = Home::new();
    let seconds = marker();
    let id = home.run(&["--", "sleep", &seconds]);
    let agent = home.inspect(&id);
    let stdout_log = agent["stdout_log"].as_str().unwrap().to_owned();
    let run_dir = std::path::Path::new(&stdout_log).parent().unwrap();
    let shim_log = run_dir.join("shim.log");
    assert!(!shim_log.exists(), "a quiet shim has no log yet");

    // A line the shim does not understand, sent the way the daemon sends
    // its commands: the shim says so in its log, created for it.
    fs::write(run_dir.join("control"), "nonsense\n").unwrap();
    wait_until(SOON, "the shim logs the line it ignored", || {
        fs::read_to_string(&shim_log).is_ok_and(|log| log.contains("nonsense"))
    });
    let log = fs::read_to_string(&shim_log).unwrap();
    assert!(log.contains("ignoring unknown control line"), "{log}");
    assert_eq!(home.state(&id), "running", "the shim carries on");
    home.ok(&["stop", &id]);
}
