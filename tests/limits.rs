//! Resource limits, checked on the machine itself: an agent over its
//! memory limit ends `failed` with `memory limit exceeded` while the daemon
//! and other agents go on, forks beyond `--pids-max` fail, `--cpu-max`
//! holds a busy loop well under a core, `--nofile` is in the agent's
//! `/proc/PID/limits`, and `wrangle doctor` reports what this machine has.

mod common;

use common::{is_root, marker, procfs, wait_until, Home, SOON};
use serde_json::{json, Value};
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::Duration;

/// A shell that holds about 300 MB in a variable, then sleeps `seconds`.
fn memory_hog(seconds: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(r#"x=$(head -c 300000000 /dev/zero | tr "\0" a); sleep {seconds}"#),
    ]
}

/// Resident memory of process `pid` in bytes (0 when it is gone).
fn resident_bytes(pid: i32) -> u64 {
    let pages: u64 = fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// CPU time process `pid` has used (user + system), in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process is alive");
    let fields: Vec<&str> = text[text.rfind(')').expect("a stat line") + 2..]
        .split_whitespace()
        .collect();
    // Fields 14 and 15 of stat; fields[0] is field 3.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clock ticks per second, as `getconf CLK_TCK` says.
fn ticks_per_second() -> u64 {
    let output = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("a number of ticks")
}

/// `wrangle run ARGS -- COMMAND`, the command given as an argv.
fn run_with(home: &Home, args: &[&str], command: &[String]) -> String {
    let mut full: Vec<&str> = args.to_vec();
    full.push("--");
    full.extend(command.iter().map(String::as_str));
    home.run(&full)
}

/// What `wrangle doctor --json` says enforces `limit` (`memory`, `cpu`,
/// `pids`, `nofile`); `None` when nothing can.
fn enforced_here(home: &Home, limit: &str) -> Option<String> {
    home.json(&["doctor", "--json"])[limit]["enforced_by"]
        .as_str()
        .map(str::to_string)
}

/// Waits until the agent has ended and returns it as `inspect` shows it.
fn ended(home: &Home, id: &str) -> Value {
    let mut agent = Value::Null;
    wait_until(SOON, &format!("agent {id} ends"), || {
        agent = home.inspect(id);
        !matches!(agent["state"].as_str(), Some("running" | "starting"))
    });
    agent
}

/// The cgroup v1 groups the run's shim recorded in its state.
fn v1_groups(home: &Home, id: &str) -> Vec<PathBuf> {
    let state: Value = serde_json::from_str(
        &fs::read_to_string(home.runs_dir(id).join("1/state.json")).expect("state.json"),
    )
    .expect("state.json is JSON");
    ["memory_max", "cpu_max", "pids_max"]
        .iter()
        .filter_map(|limit| state["limits"][limit]["by"]["cgroup_v1"]["group"].as_str())
        .map(PathBuf::from)
        .collect()
}

/// The hog really grows past the limits used below when nothing stops it.
fn assert_the_hog_grows(home: &Home) {
    let id = run_with(home, &[], &memory_hog(&marker()));
    let pid = home.pid(&id);
    wait_until(SOON, "the unlimited hog holds over 200 MB", || {
        resident_bytes(pid) > 200 << 20
    });
    home.ok(&["rm", "--force", &id]);
}

/// Over its memory limit, an agent ends `failed` with the reason; another
/// agent and the daemon go on untouched; what the run made is removed.
fn memory_limit_ends_only_the_agent_over_it(home: &Home, expected_by: &str) {
    assert_the_hog_grows(home);
    let daemon = home.daemon_pid().expect("the daemon runs");
    let calm_seconds = marker();
    let calm = home.run(&["--name", "calm", "--", "sleep", &calm_seconds]);
    let calm_pid = home.pid(&calm);
    let hog = run_with(
        home,
        &["--name", "hog", "--memory-max", "64M"],
        &memory_hog(&marker()),
    );
    let started = home.inspect(&hog);
    assert_eq!(started["limits"]["memory_max_bytes"], json!(64 << 20));
    assert_eq!(
        started["limits"]["enforced_by"]["memory"],
        json!(expected_by)
    );

    let agent = ended(home, &hog);
    assert_eq!(agent["state"], "failed", "{agent}");
    let reason = agent["reason"].as_str().expect("a reason");
    assert!(
        reason.starts_with("memory limit exceeded (64 MiB)"),
        "{reason}"
    );
    assert_eq!(agent["signal"], "SIGKILL", "{agent}");

    assert_eq!(home.state(&calm), "running");
    assert!(procfs::is_alive(calm_pid), "the other agent was touched");
    assert_eq!(home.daemon_pid(), Some(daemon), "the daemon was touched");
    for group in v1_groups(home, &hog) {
        assert!(!group.exists(), "{} is left behind", group.display());
    }
}

#[test]
fn an_agent_over_its_memory_limit_fails_and_nothing_else_does() {
    let home = Home::new();
    let by = enforced_here(&home, "memory").expect("memory is always enforced");
    memory_limit_ends_only_the_agent_over_it(&home, &by);
}

#[test]
fn without_cgroups_a_watchdog_enforces_the_memory_limit() {
    let home = Home::without_cgroups();
    memory_limit_ends_only_the_agent_over_it(&home, "watchdog");
    let hog = home.inspect("hog");
    let reason = hog["reason"].as_str().unwrap();
    assert!(reason.contains("the tree held"), "{reason}");
}

/// A script that tries to start 20 sleeps, saying `started` after each.
fn forker(seconds: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "i=0; while [ $i -lt 20 ]; do sleep {seconds} & echo started; i=$((i+1)); done; echo all; wait"
        ),
    ]
}

/// How many `started` lines the agent wrote.
fn started_lines(home: &Home, id: &str) -> usize {
    home.ok(&["logs", "--stdout", id])
        .lines()
        .filter(|line| *line == "started")
        .count()
}

#[test]
fn forks_beyond_the_process_limit_fail() {
    let home = Home::new();
    let Some(by) = enforced_here(&home, "pids") else {
        let output = home.fails(&["run", "--pids-max", "5", "--", "true"]);
        assert!(
            output.stderr.contains("cannot be enforced here"),
            "{output:?}"
        );
        return;
    };
    // Without the limit all 20 start.
    let free = run_with(&home, &[], &forker(&marker()));
    wait_until(SOON, "20 sleeps started", || {
        started_lines(&home, &free) == 20
    });
    home.ok(&["rm", "--force", &free]);

    let limited = run_with(&home, &["--pids-max", "5"], &forker(&marker()));
    assert_eq!(
        home.inspect(&limited)["limits"]["enforced_by"]["pids"],
        json!(by)
    );
    let agent = ended(&home, &limited);
    // The shell and four sleeps make five; the fifth fork fails and the
    // shell gives up.
    let started = started_lines(&home, &limited);
    assert_eq!(started, 4, "{agent}");
    let stderr = home.ok(&["logs", "--stderr", &limited]);
    assert!(stderr.contains("fork"), "{stderr}");
}

#[test]
fn the_cpu_limit_holds_a_busy_loop_well_under_a_core() {
    let home = Home::new();
    let Some(by) = enforced_here(&home, "cpu") else {
        let output = home.fails(&["run", "--cpu-max", "0.2", "--", "true"]);
        assert!(
            output.stderr.contains("cannot be enforced here"),
            "{output:?}"
        );
        return;
    };
    let id = home.run(&["--cpu-max", "0.2", "--", "sh", "-c", "exec yes > /dev/null"]);
    let agent = home.inspect(&id);
    assert_eq!(agent["limits"]["cpu_max_cores"], json!(0.2));
    assert_eq!(agent["limits"]["enforced_by"]["cpu"], json!(by));
    let pid = home.pid(&id);
    let before = cpu_ticks(pid);
    let window = Duration::from_secs(2);
    thread::sleep(window);
    let used = (cpu_ticks(pid) - before) as f64 / ticks_per_second() as f64;
    let share = used / window.as_secs_f64();
    assert!(share > 0.0, "the busy loop did not run");
    assert!(share < 0.5, "yes used {:.0}% of a core", share * 100.0);
}

#[test]
fn the_open_file_limit_is_the_agents() {
    let home = Home::new();
    let seconds = marker();
    let id = home.run(&["--nofile", "32", "--", "sleep", &seconds]);
    let limits = fs::read_to_string(format!("/proc/{}/limits", home.pid(&id))).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("an open-file line");
    let values: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(values[3..5], ["32", "32"], "{line}");
    let agent = home.inspect(&id);
    assert_eq!(agent["limits"]["nofile"], json!(32));
    assert_eq!(agent["limits"]["enforced_by"]["nofile"], json!("rlimit"));
}

#[test]
fn a_restarted_daemon_still_says_how_limits_are_enforced() {
    let home = Home::new();
    let seconds = marker();
    let id = home.run(&[
        "--memory-max",
        "512M",
        "--nofile",
        "64",
        "--",
        "sleep",
        &seconds,
    ]);
    let before = home.inspect(&id)["limits"].clone();
    assert!(before["enforced_by"]["memory"].is_string(), "{before}");
    common::crash::kill_daemon(&home);
    let after = home.inspect(&id);
    assert_eq!(after["state"], "running");
    assert_eq!(after["limits"], before);
}

#[test]
fn groups_of_a_run_whose_shim_was_killed_are_removed() {
    let home = Home::new();
    if enforced_here(&home, "pids").as_deref() != Some("cgroup_v1") {
        eprintln!("no cgroup v1 pids hierarchy here; nothing to test");
        return;
    }
    let seconds = marker();
    let id = home.run(&["--pids-max", "50", "--", "sleep", &seconds]);
    let groups = v1_groups(&home, &id);
    assert!(
        !groups.is_empty() && groups.iter().all(|g| g.is_dir()),
        "{groups:?}"
    );
    let agent = home.inspect(&id);
    let pid = home.pid(&id);
    common::kill(agent["shim_pid"].as_i64().unwrap() as i32);
    let agent = ended(&home, &id);
    assert_eq!(agent["state"], "failed", "{agent}");
    wait_until(SOON, "the agent is killed with its shim", || {
        !procfs::is_alive(pid)
    });
    wait_until(SOON, "the run's groups are removed", || {
        groups.iter().all(|group| !group.exists())
    });
}

#[test]
fn bad_limits_are_refused_and_create_nothing() {
    let home = Home::new();
    for (flag, value, message) in [
        ("--memory-max", "lots", "invalid memory limit"),
        ("--memory-max", "10K", "at least 1M"),
        ("--cpu-max", "0", "invalid CPU limit"),
        ("--pids-max", "-1", "invalid process limit"),
        ("--nofile", "0", "invalid open-file limit"),
    ] {
        let output = home.fails(&["run", flag, value, "--", "true"]);
        assert_eq!(output.code(), 2, "{flag} {value}: {output:?}");
        assert!(
            output.stderr.contains(message),
            "{flag} {value}: {:?}",
            output.stderr
        );
    }
    // Straight to the API, past the CLI's checks.
    home.ok(&["daemon"]);
    for body in [
        json!({"command": ["true"], "memory_max": "lots"}),
        json!({"command": ["true"], "cpu_max": "-0.5"}),
        json!({"command": ["true"], "pids_max": 0}),
        json!({"command": ["true"], "pids_max": -1}),
    ] {
        let response = home.http(
            "POST",
            "/v1/agents",
            Some("application/json"),
            &body.to_string(),
        );
        assert_eq!(response.status, 400, "{body}: {}", response.body);
        let (code, message) = response.error();
        assert_eq!(code, "invalid_argument", "{body}: {message}");
    }
    assert!(home.ps_all().is_empty(), "something was created");
    assert!(home.shims().is_empty(), "a shim was started");
}

#[test]
fn without_cgroups_cpu_and_process_limits_are_refused() {
    let home = Home::without_cgroups();
    for flag in ["--cpu-max", "--pids-max"] {
        let output = home.fails(&["run", flag, "1", "--", "true"]);
        assert!(
            output
                .stderr
                .contains(&format!("{flag} cannot be enforced here")),
            "{output:?}"
        );
    }
    assert!(home.ps_all().is_empty(), "something was created");
}

/// What enforces `controller` on this machine, found the way an
/// administrator would: a cgroup v2 controller delegated to the daemon's
/// cgroup tree, else a mounted cgroup v1 hierarchy (writable by root).
fn expected_enforcement(controller: &str) -> Option<&'static str> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mounts: Vec<(String, String, String)> = mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut right = right.split_whitespace();
            let fstype = right.next()?.to_string();
            let options = right.nth(1)?.to_string();
            let point = left.split_whitespace().nth(4)?.to_string();
            Some((point, fstype, options))
        })
        .collect();
    let own_v2 = fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("0::").map(str::to_string))
        .unwrap_or_else(|| "/".into());
    let v2_has_it = mounts
        .iter()
        .find(|(_, fstype, _)| fstype == "cgroup2")
        .and_then(|(point, _, _)| {
            let own = PathBuf::from(point).join(own_v2.trim_start_matches('/'));
            fs::read_to_string(own.join("cgroup.subtree_control")).ok()
        })
        .is_some_and(|enabled| enabled.split_whitespace().any(|c| c == controller));
    let v1_has_it = mounts.iter().any(|(_, fstype, options)| {
        fstype == "cgroup" && options.split(',').any(|option| option == controller)
    });
    if v2_has_it && common::cgroup_v2_writable() {
        Some("cgroup_v2")
    } else if v1_has_it && is_root() {
        Some("cgroup_v1")
    } else if controller == "memory" {
        Some("watchdog")
    } else {
        None
    }
}

#[test]
fn doctor_reports_what_this_machine_has() {
    let home = Home::new();
    let output = home.wrangle(&["doctor", "--json"]);
    assert_eq!(output.code(), 0, "{output:?}");
    let report: Value = serde_json::from_str(&output.stdout).unwrap();
    assert_eq!(report["ok"], json!(true), "{report:#}");
    assert_eq!(report["root"], json!(is_root()));
    assert_eq!(report["pidfd"], json!(true));
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(report["kernel"], json!(kernel.trim()));
    assert_eq!(
        report["home"],
        json!(fs::canonicalize(home.path()).unwrap().display().to_string())
    );
    assert!(report["home_filesystem"]
        .as_str()
        .is_some_and(|fs| !fs.is_empty()));
    let kind = if common::cgroup_v2_writable() {
        "cgroup_v2"
    } else {
        "process_group"
    };
    assert_eq!(report["containment"]["kind"], json!(kind), "{report:#}");
    for controller in ["memory", "cpu", "pids"] {
        assert_eq!(
            report[controller]["enforced_by"].as_str(),
            expected_enforcement(controller),
            "{controller}: {report:#}"
        );
    }
    assert_eq!(report["nofile"]["enforced_by"], json!("rlimit"));
    // Room for agents by the kernel's limits, read from where they are.
    let capacity = &report["capacity"];
    let sysctl = |name: &str| -> u64 {
        fs::read_to_string(format!("/proc/sys/{name}"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(
        capacity["pid_max"],
        json!(sysctl("kernel/pid_max")),
        "{report:#}"
    );
    assert_eq!(
        capacity["inotify_watches"],
        json!(sysctl("fs/inotify/max_user_watches")),
        "{report:#}"
    );
    let agents = capacity["agents"].as_u64().unwrap();
    assert!(
        agents > 0 && agents <= sysctl("kernel/pid_max") / 2,
        "{report:#}"
    );
    let limited_by = capacity["limited_by"].as_str().unwrap();
    if agents < 10_000 {
        let problems = report["problems"].to_string();
        assert!(problems.contains(limited_by), "{report:#}");
    }
    // The telemetry endpoint is a loopback port that answers.
    let endpoint = report["telemetry"].as_str().unwrap_or_default();
    let port = endpoint
        .strip_prefix("http://127.0.0.1:")
        .and_then(|port| port.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no telemetry endpoint: {report:#}"));
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    // The people's version says the same.
    let text = home.ok(&["doctor"]);
    assert!(text.contains("memory limits:"), "{text}");
}

#[test]
fn doctor_without_cgroups_names_the_fallbacks_and_their_fixes() {
    let home = Home::without_cgroups();
    let output = home.wrangle(&["doctor", "--json"]);
    assert_eq!(output.code(), 0, "{output:?}");
    let report: Value = serde_json::from_str(&output.stdout).unwrap();
    assert_eq!(report["containment"]["kind"], json!("process_group"));
    assert!(report["containment"]["why"]
        .as_str()
        .is_some_and(|why| why.contains("WRANGLE_CGROUP=off")));
    assert_eq!(report["memory"]["enforced_by"], json!("watchdog"));
    assert_eq!(report["cpu"]["enforced_by"], Value::Null);
    assert_eq!(report["pids"]["enforced_by"], Value::Null);
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["problem"]
            .as_str()
            .is_some_and(|text| text.contains("--cpu-max cannot be enforced"))
            && p["fix"].as_str().is_some_and(|fix| !fix.is_empty())),
        "{report:#}"
    );
    assert!(problems.iter().all(|p| p["essential"] == json!(false)));
}

/// The soft and hard open-file limits of `pid`, from `/proc/PID/limits`.
fn open_file_limits(pid: i32) -> (String, String) {
    let limits = fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap()
        .to_string();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_string(), fields[4].to_string())
}

#[test]
fn the_daemon_raises_its_open_files_and_agents_get_the_limit_it_was_started_with() {
    let home = Home::new();
    let started = Command::new("prlimit")
        .arg("--nofile=4096:8192")
        .arg(env!("CARGO_BIN_EXE_wrangle"))
        .arg("daemon")
        .env("WRANGLE_HOME", home.path())
        .status()
        .expect("prlimit (util-linux)");
    assert!(started.success());
    let daemon = home.daemon_pid().unwrap();
    let (soft, hard) = open_file_limits(daemon);
    // Raised to the hard limit, and past it where the daemon may
    // (CAP_SYS_RESOURCE, which this machine's root may lack).
    assert_eq!(
        soft, hard,
        "the daemon's soft limit is raised to its hard one"
    );
    assert!(soft.parse::<u64>().unwrap() >= 8192, "{soft}");
    let id = home.run(&["--", "sleep", &marker()]);
    assert_eq!(
        open_file_limits(home.pid(&id)),
        ("4096".to_string(), "8192".to_string()),
        "the agent has the limit the daemon was started with"
    );
}
