//! A full disk: with `$WRANGLE_HOME` on a tmpfs of a few MiB, a chatty
//! agent fills it. Its shim drops what it cannot write and counts it (the
//! agent is never blocked or killed for it), changes the store cannot
//! record are refused with HTTP 507 and a message that names the disk
//! (nothing half made), reads go on working, and once space is freed
//! everything works again without a restart: every exit status that
//! happened meanwhile is recorded, and a marker line says where output
//! was dropped.

mod common;

use common::disk::{free_bytes, SmallDisk};
use common::http::request;
use common::{marker, wait_until, Home, SOON};

fn state(home: &Home, id: &str) -> (String, serde_json::Value) {
    let agent = home.inspect(id);
    (
        agent["state"].as_str().unwrap().to_string(),
        agent["exit_code"].clone(),
    )
}

#[test]
fn a_full_disk_loses_no_exit_and_everything_works_again_once_freed() {
    let mut disk = SmallDisk::default();
    let home = Home::new();
    disk.mount(home.path(), "4m");
    home.ok(&["daemon", "--sample-interval", "100ms"]);
    let daemon = home.daemon_pid().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let go = outside.path().join("go");

    // One agent that will exit while the disk is full, one that ticks all
    // along (its marker shows once space is back), then the one that
    // fills the disk: 8 MB of output in a moment, then it exits 0.
    let waiter = home.run(&[
        "--",
        "sh",
        "-c",
        &format!("until [ -e {} ]; do sleep 0.02; done; exit 3", go.display()),
    ]);
    // Some 300 KB a second: more than its shim keeps while the disk is
    // full; its own rotation keeps it to 512K once there is room.
    let ticker = home.run(&[
        "--log-max-size",
        "256K",
        "--log-max-files",
        "2",
        "--",
        "sh",
        "-c",
        &format!(
            "i=0; while true; do seq $i $((i+99)) | sed 's/^/tick {} /'; i=$((i+100)); sleep 0.01; done",
            marker()
        ),
    ]);
    let chatty = home.run(&[
        "--log-max-files",
        "1000",
        "--",
        "sh",
        "-c",
        "seq 1 1000000 | sed 's/$/ padding padding/'",
    ]);
    // It is not blocked by its log: it runs to its end, though the end
    // cannot be recorded yet.
    let pid = home.inspect(&chatty)["pid"].as_i64().unwrap() as i32;
    wait_until(SOON, "the chatty agent to run to its end", || {
        !common::procfs::is_alive(pid)
    });
    let (_, free) = free_bytes(home.path());
    assert_eq!(free, 0, "the disk is full");

    // A change is refused with 507, naming the disk, and nothing is made.
    let output = home.fails(&["run", "--name", "refused", "--", "sleep", "1"]);
    assert!(
        output.stderr.contains("is full")
            && output.stderr.contains(&home.path().display().to_string()),
        "{}",
        output.stderr
    );
    let answer = request(
        &home.socket(),
        "POST",
        "/v1/agents",
        Some("application/json"),
        r#"{"name": "refused-too", "command": ["sleep", "1"]}"#,
    );
    assert_eq!(answer.status, 507, "{}", answer.body);
    assert_eq!(answer.error().0, "insufficient_storage");
    // Reads work, and show nothing of the refused agents.
    let listed = home.json(&["ps", "--all", "--json"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(!names.contains(&"refused"));

    // The waiter exits while nothing can be recorded.
    std::fs::write(&go, "").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));

    // Space is freed: the chatty agent's logs go.
    for entry in std::fs::read_dir(home.runs_dir(&chatty).join("1")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("stdout.log")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    // Every end that happened meanwhile is recorded, with its status.
    wait_until(SOON, "the waiter's end to be recorded", || {
        state(&home, &waiter) == ("failed".to_string(), serde_json::json!(3))
    });
    let chatty_view = home.inspect(&chatty);
    assert_eq!(chatty_view["state"], "completed", "{chatty_view}");
    let reason = chatty_view["reason"].as_str().unwrap();
    assert!(reason.contains("bytes of output dropped"), "{reason}");
    // The ticker was never blocked: it goes on, and its log says where
    // its output was dropped.
    assert_eq!(state(&home, &ticker).0, "running");
    wait_until(SOON, "the ticker's marker", || {
        home.ok(&["logs", &ticker]).lines().any(|line| {
            line.starts_with("[wrangle: ")
                && line.ends_with(" bytes dropped: no space left on device]")
        })
    });
    // And changes work again, with the same daemon.
    let again = home.run(&["--name", "after", "--", "sleep", "60"]);
    assert_eq!(state(&home, &again).0, "running");
    assert_eq!(home.daemon_pid(), Some(daemon), "no restart was needed");
}
