//! Process ownership: the shim is the parent of every agent, the agent
//! leads its own session with stdin from /dev/null, and the shim, a child
//! subreaper, adopts and reaps every orphan of the agent's tree.

mod common;

use common::{marker, procfs, wait_until, Home, SOON};

#[test]
fn the_shim_is_the_parent_of_the_agent_which_leads_its_own_session() {
    let home = Home::new();
    let seconds = marker();
    let id = home.run(&["--", "sleep", &seconds]);
    let agent = home.inspect(&id);
    let pid = agent["pid"].as_i64().expect("a pid") as i32;
    let shim = agent["shim_pid"].as_i64().expect("a shim pid") as i32;

    let process = procfs::stat(pid).expect("the agent runs");
    assert!(!process.is_zombie(), "{process:?}");
    assert_eq!(
        procfs::cmdline(pid).as_deref(),
        Some(format!("sleep {seconds}").as_str())
    );
    assert_eq!(process.ppid, shim, "the shim is the agent's parent");
    let shim_line = procfs::cmdline(shim).expect("the shim runs");
    assert!(
        shim_line.contains(&format!("__shim {}/runs/{id}/1", home.path().display())),
        "{shim_line}"
    );
    assert_eq!(process.session, pid, "the agent leads its own session");
    assert_eq!(process.pgrp, pid, "the agent leads its own process group");
    assert_eq!(procfs::fd_target(pid, 0).as_deref(), Some("/dev/null"));
    for fd in [1, 2] {
        let target = procfs::fd_target(pid, fd).expect("an output");
        assert!(target.starts_with("pipe:"), "fd {fd} is {target}");
    }

    // The daemon's zygote forks shims; the daemon is never the agent's
    // parent, and the shim is not in the agent's session (a hang-up there
    // does not reach it).
    let daemon = home.daemon_pid().expect("the daemon runs");
    let shim_process = procfs::stat(shim).expect("the shim runs");
    assert_eq!(
        shim_process.ppid,
        zygote_of(daemon),
        "the zygote forked the shim"
    );
    assert_ne!(shim_process.session, pid);
}

/// The pid of the daemon's shim zygote, its child `wrangle __zygote`.
fn zygote_of(daemon: i32) -> i32 {
    let zygotes: Vec<i32> = procfs::all()
        .into_iter()
        .filter(|p| p.ppid == daemon && !p.is_zombie())
        .filter(|p| procfs::cmdline(p.pid).is_some_and(|c| c.contains(" __zygote ")))
        .map(|p| p.pid)
        .collect();
    assert_eq!(zygotes.len(), 1, "one zygote per daemon: {zygotes:?}");
    zygotes[0]
}

/// A zygote that dies takes no running agent with it, and the next run
/// gets a new one.
#[test]
fn a_killed_zygote_loses_no_agent_and_is_replaced() {
    let home = Home::new();
    let first = home.run(&["--", "sleep", &marker()]);
    let daemon = home.daemon_pid().expect("the daemon runs");
    let zygote = zygote_of(daemon);
    let agent = home.pid(&first);
    common::kill(zygote);
    wait_until(SOON, "the zygote is gone", || {
        procfs::stat(zygote).is_none_or(|p| p.is_zombie())
    });

    let second = home.run(&["--", "sleep", &marker()]);
    assert_ne!(zygote_of(daemon), zygote, "a new zygote");
    assert!(procfs::is_alive(agent), "the first agent still runs");
    assert_eq!(home.state(&first), "running");
    assert_eq!(home.state(&second), "running");
    let stopped = home.ok(&["stop", &first, &second]);
    assert!(stopped.contains("stopped by SIGTERM"), "{stopped}");
    assert!(!procfs::is_alive(agent));
    assert!(home.zombie_children().is_empty());
}

/// With `WRANGLE_ZYGOTE=off` each shim is an exec of the wrangle binary,
/// a child of the daemon, and works the same.
#[test]
fn without_the_zygote_the_daemon_execs_each_shim() {
    let home = Home::with(common::HomeOptions {
        env: vec![("WRANGLE_ZYGOTE".into(), "off".into())],
        ..common::HomeOptions::default()
    });
    let id = home.run(&["--", "sh", "-c", "echo started; exec sleep 1000"]);
    let daemon = home.daemon_pid().expect("the daemon runs");
    let shim = home.inspect(&id)["shim_pid"].as_i64().expect("a shim") as i32;
    assert_eq!(procfs::stat(shim).expect("the shim runs").ppid, daemon);
    wait_until(SOON, "the output is logged", || {
        home.ok(&["logs", &id]) == "started\n"
    });
    assert!(home.ok(&["stop", &id]).contains("stopped by SIGTERM"));
}

#[test]
fn the_agent_gets_the_wrangle_variables_and_its_env() {
    let home = Home::new();
    let id = home.run(&[
        "--env",
        "GREETING=hello world",
        "--",
        "sh",
        "-c",
        "echo \"$GREETING|$WRANGLE_AGENT_ID|$WRANGLE_RUN|$WRANGLE_STATUS_FILE\"",
    ]);
    home.ok(&["wait", &id]);
    let output = home.ok(&["logs", &id]);
    let status_file = home.runs_dir(&id).join("1/status.json");
    assert_eq!(
        output,
        format!("hello world|{id}|1|{}\n", status_file.display())
    );
}

#[test]
fn the_agent_starts_from_the_callers_environment_and_directory() {
    let home = Home::new();
    // The daemon is started by another call, without the variable.
    home.ok(&["daemon"]);
    std::fs::create_dir(home.path().join("sub")).unwrap();
    let mut command = home.command(&[
        "run",
        "--cwd",
        "sub",
        "--",
        "sh",
        "-c",
        "echo \"$CALLER_ONLY\"; pwd",
    ]);
    command.env("CALLER_ONLY", "from the caller");
    let output = common::run_command(command, common::COMMAND_TIMEOUT);
    assert!(output.status.success(), "{output:?}");
    let id = output.stdout.trim().to_string();
    home.ok(&["wait", &id]);
    assert_eq!(
        home.ok(&["logs", &id]),
        format!("from the caller\n{}/sub\n", home.path().display())
    );
    assert_eq!(
        home.inspect(&id)["cwd"],
        home.path().join("sub").to_str().unwrap()
    );
}

#[test]
fn orphans_of_the_agent_are_adopted_and_reaped_by_the_shim() {
    let home = Home::new();
    let adopted = marker();
    let short_lived = marker();
    let main = marker();
    let done = home.path().join("done");
    // Subshells start background processes and exit at once, so their
    // children become orphans: one lives on, twenty note that they ran
    // and exit.
    let script = format!(
        "(sleep {adopted} &); i=0; while [ $i -lt 20 ]; do (sh -c 'echo ran >> {done}' {short_lived} &); i=$((i+1)); done; exec sleep {main}",
        done = done.display()
    );
    let id = home.run(&["--", "sh", "-c", &script]);
    let shim = home.inspect(&id)["shim_pid"].as_i64().expect("a shim pid") as i32;

    let sleeper = format!("sleep {adopted}");
    wait_until(SOON, "the orphan is adopted by the shim", || {
        procfs::with_marker(&adopted)
            .iter()
            .any(|p| procfs::cmdline(p.pid).as_deref() == Some(sleeper.as_str()) && p.ppid == shim)
    });
    // Once the twenty have run and none is alive any more, each of them
    // is either reaped or a zombie; an orphan's zombie is the shim's.
    wait_until(SOON, "the short-lived orphans have run and exited", || {
        std::fs::read_to_string(&done).is_ok_and(|text| text.lines().count() == 20)
            && procfs::with_marker(&short_lived).is_empty()
    });
    wait_until(SOON, "the shim has reaped every orphan that exited", || {
        procfs::zombies().iter().all(|z| z.ppid != shim)
    });

    let tree = procfs::with_marker(&adopted);
    home.ok(&["stop", &id]);
    for process in tree {
        assert!(!process.still_exists(), "{process:?} outlived the stop");
    }
    assert!(procfs::zombies().iter().all(|z| z.ppid != shim));
}
