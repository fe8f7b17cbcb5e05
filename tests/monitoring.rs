//! Monitoring: the daemon's sampler shows each agent's process and whole
//! tree (CPU, memory, processes, zombies), what the agent writes to its
//! status file, and its health (hung after its idle timeout, zombie when
//! its main process is not reaped); `ps` and `summary` add it up. Checked
//! against `/proc`, with and without cgroups, with a daemon that samples
//! every 250 ms.

mod common;

use common::{cgroup_v2_writable, kill, marker, procfs, Home, SOON};
use serde_json::{json, Value};
use std::fs;
use std::path::PathBuf;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// The sampler's tick in these tests.
const TICK: &str = "250ms";

/// Long enough for a busy process to get a tick's worth of CPU on a
/// machine shared with other work.
const PATIENCE: Duration = Duration::from_secs(60);

/// Tests that need a core for themselves take turns.
static CPU: Mutex<()> = Mutex::new(());

/// `home` with its daemon started with the short tick.
fn sampled(home: Home) -> Home {
    home.ok(&["daemon", "--sample-interval", TICK]);
    home
}

/// Inspects the agent until `check` holds; returns what it last showed.
fn wait_for(
    home: &Home,
    agent: &str,
    timeout: Duration,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let view = home.inspect(agent);
        if check(&view) {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}; last seen: {view:#}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// The tree's metrics, which must be there.
fn tree(view: &Value) -> &Value {
    &view["tree"]
}

fn number(value: &Value) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{value} is not a number"))
}

/// The live processes below `pid`, as `/proc` shows them.
fn descendants_in_proc(pid: i32) -> Vec<procfs::Proc> {
    let all = procfs::all();
    let mut found = Vec::new();
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for child in all.iter().filter(|p| p.ppid == parent) {
            parents.push(child.pid);
            found.push(child.clone());
        }
    }
    found
}

/// Checks that the home runs its agents the way its name says.
fn assert_containment(home: &Home, agent: &str, cgroups: bool) {
    let containment = home.inspect(agent)["containment"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if cgroups && cgroup_v2_writable() {
        assert!(containment.starts_with("cgroup "), "{containment}");
    } else {
        assert_eq!(containment, "process group + subreaper");
    }
}

fn busy_tree_shows_its_cpu_and_processes(home: Home, cgroups: bool) {
    let _turn = CPU.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let home = sampled(home);
    let sleep = marker();
    let id = home.run(&[
        "--",
        "sh",
        "-c",
        &format!("yes > /dev/null & sleep {sleep}"),
    ]);
    assert_containment(&home, &id, cgroups);
    let view = wait_for(
        &home,
        &id,
        PATIENCE,
        "the tree uses most of a core",
        |view| tree(view)["processes"] == 3 && number(&tree(view)["cpu_percent"]) > 80.0,
    );
    assert_eq!(view["health"], "healthy", "{view:#}");
    assert!(view["health_reason"].is_null(), "{view:#}");
    // The main process is the shell, which only waits.
    let main = &view["process"];
    assert!(number(&main["cpu_percent"]) < 50.0, "{view:#}");
    assert_eq!(main["threads"], 1);
    assert!(number(&main["rss_bytes"]) > 0.0);
    assert!(number(&main["fds"]) >= 3.0, "{view:#}");
    let tree = tree(&view);
    assert_eq!(tree["zombies"], 0);
    assert_eq!(tree["threads"], 3);
    assert!(number(&tree["rss_bytes"]) > number(&main["rss_bytes"]));
    assert!(number(&tree["fds"]) > number(&main["fds"]));
    // The same three processes as /proc shows: the shell, yes and sleep.
    let pid = home.pid(&id);
    let mut names: Vec<String> = descendants_in_proc(pid)
        .into_iter()
        .map(|p| p.comm)
        .collect();
    names.sort();
    assert_eq!(names, ["sleep", "yes"]);

    // ps shows the tree's CPU and memory.
    let ps = home.ok(&["ps"]);
    let header = ps.lines().next().unwrap();
    assert!(header.contains(" CPU ") && header.contains(" MEM "), "{ps}");
    let row = ps.lines().find(|line| line.starts_with(&id[..12])).unwrap();
    let cells: Vec<&str> = row.split_whitespace().collect();
    let column = |title: &str| header.split_whitespace().position(|t| t == title).unwrap();
    assert!(cells[column("CPU")].ends_with('%'), "{ps}");
    assert_ne!(cells[column("MEM")], "-", "{ps}");
}

#[test]
fn a_busy_tree_shows_its_cpu_and_processes() {
    busy_tree_shows_its_cpu_and_processes(Home::new(), true);
}

#[test]
fn a_busy_tree_shows_its_cpu_and_processes_without_cgroups() {
    busy_tree_shows_its_cpu_and_processes(Home::without_cgroups(), false);
}

#[test]
fn the_tree_memory_counts_every_process() {
    let home = sampled(Home::new());
    // tail keeps the last 200 MiB of its input, and then blocks writing
    // them to sleep, which never reads: it holds them.
    let sleep = marker();
    let id = home.run(&[
        "--",
        "sh",
        "-c",
        &format!("head -c 200M /dev/zero | tail -c 200M | sleep {sleep}"),
    ]);
    let pid = home.pid(&id);
    let tail_rss = || {
        let tail = descendants_in_proc(pid)
            .into_iter()
            .find(|p| p.comm == "tail")?;
        procfs::rss_bytes(tail.pid)
    };
    const HELD: u64 = 200 << 20;
    common::wait_until(PATIENCE, "tail holds 200 MiB", || {
        tail_rss().is_some_and(|rss| rss >= HELD)
    });
    // Once head has ended and been reaped: the shell, tail and sleep.
    let view = wait_for(&home, &id, SOON, "the tree's memory is sampled", |view| {
        tree(view)["rss_bytes"]
            .as_u64()
            .is_some_and(|rss| rss >= HELD)
            && tree(view)["processes"] == 3
    });
    // The main process (the shell) holds little of it.
    assert!(
        number(&view["process"]["rss_bytes"]) < (50 << 20) as f64,
        "{view:#}"
    );
}

#[test]
fn memory_a_quiet_tree_gives_back_shows() {
    let home = sampled(Home::new());
    // The agent maps a file, reads every page of it, and sleeps.
    const MAPPED: u64 = 64 << 20;
    let data = home.path().join("mapped");
    fs::write(&data, vec![1u8; MAPPED as usize]).unwrap();
    let script = "import mmap, sys, time\n\
                  f = open(sys.argv[1], 'rb')\n\
                  m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)\n\
                  sum(m[i] for i in range(0, len(m), 4096))\n\
                  time.sleep(3600)\n";
    let id = home.run(&["--", "python3", "-c", script, data.to_str().unwrap()]);
    wait_for(
        &home,
        &id,
        PATIENCE,
        "the mapped file is in its memory",
        |view| {
            tree(view)["rss_bytes"]
                .as_u64()
                .is_some_and(|rss| rss >= MAPPED)
        },
    );
    // Another process truncates the file: its pages leave the agent's
    // memory while the agent sleeps. A tree that uses no CPU is not walked
    // again, but its memory is read again now and then.
    fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .set_len(0)
        .unwrap();
    assert!(procfs::rss_bytes(home.pid(&id)).is_some_and(|rss| rss < MAPPED / 2));
    wait_for(
        &home,
        &id,
        SOON,
        "its memory shows what it gave back",
        |view| {
            tree(view)["rss_bytes"]
                .as_u64()
                .is_some_and(|rss| rss < MAPPED / 2)
        },
    );
}

fn zombies_in_the_tree_are_counted(home: Home, cgroups: bool) {
    let home = sampled(home);
    // The child ends at once, and the shell that started it becomes
    // `sleep`, which never reaps it.
    let sleep = marker();
    let id = home.run(&["--", "sh", "-c", &format!("sleep 0.1 & exec sleep {sleep}")]);
    assert_containment(&home, &id, cgroups);
    let pid = home.pid(&id);
    common::wait_until(SOON, "/proc shows the zombie", || {
        procfs::all().iter().any(|p| p.ppid == pid && p.is_zombie())
    });
    let view = wait_for(&home, &id, SOON, "the zombie is counted", |view| {
        tree(view)["zombies"] == 1
    });
    assert_eq!(tree(&view)["processes"], 2, "{view:#}");
    // A zombie in the tree is not the agent's own health.
    assert_eq!(view["health"], "healthy", "{view:#}");
}

#[test]
fn zombies_in_the_tree_are_counted_with_cgroups() {
    zombies_in_the_tree_are_counted(Home::new(), true);
}

#[test]
fn zombies_in_the_tree_are_counted_without_cgroups() {
    zombies_in_the_tree_are_counted(Home::without_cgroups(), false);
}

fn an_unreaped_main_process_makes_the_agent_a_zombie(home: Home) {
    let home = sampled(home);
    let sleep = marker();
    let id = home.run(&["--", "sleep", &sleep]);
    wait_for(&home, &id, SOON, "the agent is sampled", |view| {
        view["health"] == "healthy"
    });
    let view = home.inspect(&id);
    let shim = view["shim_pid"].as_i64().unwrap() as i32;
    let pid = view["pid"].as_i64().unwrap() as i32;
    // A stopped shim cannot reap its agent.
    let signal =
        |pid: i32, signal| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
    signal(shim, nix::sys::signal::Signal::SIGSTOP);
    kill(pid);
    let view = wait_for(&home, &id, SOON, "the agent is a zombie", |view| {
        view["health"] == "zombie"
    });
    signal(shim, nix::sys::signal::Signal::SIGCONT);
    assert_eq!(view["state"], "running", "{view:#}");
    assert!(
        view["health_reason"]
            .as_str()
            .unwrap()
            .contains("main process is a zombie"),
        "{view:#}"
    );
    assert_eq!(tree(&view)["zombies"], 1, "{view:#}");
    // Reaped, the run ends and has no health any more.
    home.wait_for_state(&id, "failed");
    let view = home.inspect(&id);
    assert_eq!(view["health"], "unknown", "{view:#}");
    assert!(
        view["tree"].is_null() && view["process"].is_null(),
        "{view:#}"
    );
}

#[test]
fn an_unreaped_main_process_makes_the_agent_a_zombie_with_cgroups() {
    an_unreaped_main_process_makes_the_agent_a_zombie(Home::new());
}

#[test]
fn an_unreaped_main_process_makes_the_agent_a_zombie_without_cgroups() {
    an_unreaped_main_process_makes_the_agent_a_zombie(Home::without_cgroups());
}

/// Starts an agent that prints its status file's path, and then prints
/// `spoke` each time a file `speak` appears in its working directory (the
/// home); returns its id and the status file's path.
fn agent_with_status_file(home: &Home, extra: &[&str]) -> (String, PathBuf) {
    let script = "echo \"$WRANGLE_STATUS_FILE\"; \
                  while :; do if [ -e speak ]; then rm -f speak; echo spoke; fi; sleep 0.05; done";
    let mut args: Vec<&str> = extra.to_vec();
    args.extend(["--", "sh", "-c", script]);
    let id = home.run(&args);
    let mut path = String::new();
    common::wait_until(SOON, "the agent printed its status file", || {
        path = home.ok(&["logs", &id]).trim().to_string();
        !path.is_empty()
    });
    (id, PathBuf::from(path))
}

#[test]
fn the_status_file_shows_in_status_and_bad_versions_are_reported() {
    let home = sampled(Home::new());
    let (id, status_file) = agent_with_status_file(&home, &[]);
    assert!(
        status_file.starts_with(home.runs_dir(&id)),
        "{status_file:?}"
    );

    fs::write(
        &status_file,
        r#"{"progress": 40, "message": "running tests", "tokens": 1200}"#,
    )
    .unwrap();
    let view = wait_for(&home, &id, SOON, "the report shows", |view| {
        view["progress"] == 40.0
    });
    assert_eq!(view["message"], "running tests");
    assert_eq!(view["details"], json!({"tokens": 1200}));
    assert_eq!(view["health"], "healthy");
    assert!(view["health_reason"].is_null(), "{view:#}");
    let first_heartbeat = common::rfc3339(&view["last_heartbeat_at"], "last_heartbeat_at");
    assert!(
        view["last_output_at"].is_string(),
        "it printed a line: {view:#}"
    );

    // Invalid JSON is reported; the last good report stays.
    thread::sleep(Duration::from_millis(20));
    fs::write(&status_file, r#"{"progress": 50"#).unwrap();
    let view = wait_for(&home, &id, SOON, "the bad version is reported", |view| {
        view["health_reason"]
            .as_str()
            .is_some_and(|reason| reason.starts_with("status file: invalid JSON"))
    });
    assert_eq!(view["health"], "healthy", "{view:#}");
    assert_eq!(view["progress"], 40.0);
    assert_eq!(view["message"], "running tests");
    // Writing it, even badly, was a heartbeat.
    let heartbeat = common::rfc3339(&view["last_heartbeat_at"], "last_heartbeat_at");
    assert!(heartbeat > first_heartbeat, "{view:#}");

    fs::write(&status_file, r#"{"progress": 150}"#).unwrap();
    wait_for(&home, &id, SOON, "the progress is refused", |view| {
        view["health_reason"] == "status file: progress must be from 0 to 100, not 150"
    });

    fs::write(&status_file, r#"{"progress": 100, "message": "done"}"#).unwrap();
    let view = wait_for(&home, &id, SOON, "a good version clears it", |view| {
        view["progress"] == 100.0
    });
    assert_eq!(view["message"], "done");
    assert!(view["details"].is_null(), "{view:#}");
    assert!(view["health_reason"].is_null(), "{view:#}");
    // inspect says it in words.
    let text = home.ok(&["inspect", &id]);
    assert!(text.contains("\nprogress:            100%\n"), "{text}");
    assert!(text.contains("\nmessage:             done\n"), "{text}");
}

#[test]
fn a_silent_agent_is_hung_until_it_speaks_or_beats() {
    let home = sampled(Home::new());
    let (id, status_file) = agent_with_status_file(&home, &["--idle-timeout", "1s"]);
    let view = home.inspect(&id);
    assert_eq!(view["idle_timeout_seconds"], 1.0);

    let view = wait_for(&home, &id, SOON, "the agent is hung", |view| {
        view["health"] == "hung"
    });
    let reason = view["health_reason"].as_str().unwrap();
    assert!(
        reason.starts_with("no output or heartbeat for ") && reason.ends_with(" (idle timeout 1s)"),
        "{reason}"
    );
    // A heartbeat makes it healthy again, and silence hung again.
    fs::write(&status_file, r#"{"message": "still here"}"#).unwrap();
    wait_for(&home, &id, SOON, "the heartbeat is seen", |view| {
        view["health"] == "healthy" && view["message"] == "still here"
    });
    wait_for(&home, &id, SOON, "the agent is hung again", |view| {
        view["health"] == "hung"
    });
    // So does output.
    let before = common::rfc3339(&view["last_output_at"], "last_output_at");
    fs::write(home.path().join("speak"), "").unwrap();
    let view = wait_for(&home, &id, SOON, "the output is seen", |view| {
        view["health"] == "healthy"
    });
    let after = common::rfc3339(&view["last_output_at"], "last_output_at");
    assert!(after > before, "{view:#}");
    assert!(home.ok(&["logs", &id]).ends_with("spoke\n"));
}

#[test]
fn summary_counts_and_totals_match_ps() {
    let home = sampled(Home::new());
    let ids: Vec<String> = (0..3)
        .map(|_| home.run(&["--", "sleep", &marker()]))
        .collect();
    let done = home.run(&["--", "true"]);
    home.wait_for_state(&done, "completed");
    for id in &ids {
        wait_for(&home, id, SOON, "the agent is sampled", |view| {
            view["tree"].is_object()
        });
    }

    // Sleeping agents use a steady amount: two lists the same around a
    // summary were taken from the same tick as the summary (or equal ones).
    let trees = |agents: &[Value]| -> Vec<Value> {
        agents.iter().map(|agent| agent["tree"].clone()).collect()
    };
    let (agents, summary) = {
        let deadline = Instant::now() + SOON;
        loop {
            let before = home.ps_all();
            let summary = home.json(&["summary", "--json"]);
            let after = home.ps_all();
            if trees(&before) == trees(&after) {
                break (after, summary);
            }
            assert!(Instant::now() < deadline, "the fleet never held still");
        }
    };
    assert_eq!(summary["agents"], agents.len());
    assert_eq!(summary["by_state"]["running"], 3, "{summary:#}");
    assert_eq!(summary["by_state"]["completed"], 1, "{summary:#}");
    assert_eq!(summary["by_state"]["failed"], 0, "{summary:#}");
    assert_eq!(summary["by_health"]["healthy"], 3, "{summary:#}");
    assert_eq!(summary["by_health"]["unknown"], 0, "{summary:#}");
    let running: Vec<&Value> = agents.iter().filter(|a| a["state"] == "running").collect();
    let total = |key: &str| -> f64 { running.iter().map(|a| number(&a["tree"][key])).sum() };
    assert_eq!(number(&summary["rss_bytes"]), total("rss_bytes"));
    assert_eq!(number(&summary["processes"]), total("processes"));
    assert_eq!(summary["processes"], 3);
    assert!((number(&summary["cpu_percent"]) - total("cpu_percent")).abs() < 1e-6);
    assert!(summary["sampled_at"].is_string());
    let top_memory = summary["top_memory"].as_array().unwrap();
    assert_eq!(top_memory.len(), 3, "{summary:#}");
    let biggest = running
        .iter()
        .map(|a| number(&a["tree"]["rss_bytes"]))
        .fold(0.0, f64::max);
    assert_eq!(number(&top_memory[0]["rss_bytes"]), biggest);
    for entry in top_memory {
        assert!(ids.iter().any(|id| entry["id"] == id.as_str()), "{entry}");
    }

    // The same over the API, and in the OpenAPI document.
    let answer = home.http("GET", "/v1/summary", None, "");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["agents"], 4);
    let document = home.http("GET", "/openapi.json", None, "").json();
    assert!(document["paths"]["/v1/summary"]["get"].is_object());
    // And for people.
    let text = home.ok(&["summary"]);
    assert!(
        text.starts_with("agents:       4 (running 3, completed 1)\nhealth:       healthy 3\n"),
        "{text}"
    );
}

#[test]
fn bad_idle_timeouts_and_sample_intervals_change_nothing() {
    let home = Home::new();
    let output = home.fails(&["daemon", "--sample-interval", "1ms"]);
    assert!(output.stderr.contains("at least 10ms"), "{}", output.stderr);
    assert!(home.daemon_pid().is_none(), "no daemon was started");

    let output = home.fails(&["run", "--idle-timeout", "bogus", "--", "sleep", "1"]);
    assert!(
        output.stderr.contains("invalid duration \"bogus\""),
        "{}",
        output.stderr
    );
    let output = home.fails(&["run", "--idle-timeout", "0", "--", "sleep", "1"]);
    assert!(output.stderr.contains("longer than 0"), "{}", output.stderr);
    // The daemon says the same to any client.
    home.ok(&["daemon"]);
    // A running daemon keeps its tick, and says so.
    let text = home.ok(&["daemon", "--sample-interval", "1s"]);
    assert!(
        text.contains("--sample-interval 1s is not applied to it"),
        "{text}"
    );
    let answer = home.http(
        "POST",
        "/v1/agents",
        Some("application/json"),
        r#"{"command": ["sleep", "1"], "idle_timeout": "bogus"}"#,
    );
    assert_eq!(answer.status, 400, "{}", answer.body);
    let (code, message) = answer.error();
    assert_eq!(code, "invalid_argument");
    assert!(message.contains("invalid duration \"bogus\""), "{message}");
    assert!(home.ps_all().is_empty(), "nothing was created");
    assert!(
        !home.path().join("runs").exists()
            || fs::read_dir(home.path().join("runs"))
                .unwrap()
                .next()
                .is_none()
    );
}
