//! `wrangle logs`: both streams to standard output in capture order, one
//! stream only, the last N lines, capture timestamps, `--since` and
//! `--until`, `-f` that follows the agent until it ends, and all of it
//! across the files of a log rotated by size.

mod common;

use common::{rfc3339, run_command, Home, COMMAND_TIMEOUT};
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A script that writes `lines` (`out:TEXT` to stdout, `err:TEXT` to
/// stderr) one at a time, each only once the shim has put the previous one
/// in its log: so their capture times are in the order written.
fn ordered_output(lines: &[&str]) -> String {
    let mut script = String::from("dir=$(dirname \"$WRANGLE_STATUS_FILE\"); ");
    for line in lines {
        let (stream, text) = line.split_once(':').expect("out:TEXT or err:TEXT");
        let (redirect, log) = match stream {
            "out" => ("", "stdout.log"),
            _ => (" >&2", "stderr.log"),
        };
        script.push_str(&format!(
            "echo {text}{redirect}; until grep -sqx {text} \"$dir/{log}\"; do sleep 0.01; done; "
        ));
    }
    script
}

/// Runs `wrangle ARGS 2>&1` for `home`: stdout and stderr in one stream,
/// in the order written.
fn combined(home: &Home, args: &[&str]) -> String {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("exec \"$@\" 2>&1")
        .arg("sh")
        .arg(common::WRANGLE)
        .args(args)
        .env("WRANGLE_HOME", home.path());
    let output = run_command(command, COMMAND_TIMEOUT);
    assert!(output.status.success(), "{output:?}");
    output.stdout
}

#[test]
fn logs_prints_both_streams_to_stdout_in_capture_order() {
    let home = Home::new();
    let script = ordered_output(&["out:o1", "err:e1", "out:o2", "err:e2"]);
    let id = home.run(&["--", "sh", "-c", &script]);
    home.ok(&["wait", &id]);

    let output = home.wrangle(&["logs", &id]);
    assert_eq!(output.code(), 0);
    assert_eq!(output.stdout, "o1\ne1\no2\ne2\n");
    assert_eq!(output.stderr, "");
    // Where both are merged, a prefix (or --timestamps) tells them apart.
    assert_eq!(
        home.ok(&["logs", "--prefix", &id]),
        "stdout o1\nstderr e1\nstdout o2\nstderr e2\n"
    );

    // The logs are plain files where inspect says, with their indexes.
    let agent = home.inspect(&id);
    let stdout_log = agent["stdout_log"].as_str().unwrap();
    let stderr_log = agent["stderr_log"].as_str().unwrap();
    assert_eq!(std::fs::read_to_string(stdout_log).unwrap(), "o1\no2\n");
    assert_eq!(std::fs::read_to_string(stderr_log).unwrap(), "e1\ne2\n");
    for log in [stdout_log, stderr_log] {
        let index = std::fs::metadata(format!("{log}.idx")).expect("an index");
        assert!(
            index.len() > 0 && index.len() % 16 == 0,
            "{log}.idx: {index:?}"
        );
    }
}

#[test]
fn logs_stdout_and_stderr_select_one_stream() {
    let home = Home::new();
    let script = ordered_output(&["out:o1", "err:e1", "out:o2"]);
    let id = home.run(&["--", "sh", "-c", &script]);
    home.ok(&["wait", &id]);

    let output = home.wrangle(&["logs", "--stdout", &id]);
    assert_eq!(
        (output.stdout.as_str(), output.stderr.as_str()),
        ("o1\no2\n", "")
    );
    // stderr's lines go to stdout too, so that `logs --stderr a | grep`
    // works.
    let output = home.wrangle(&["logs", "--stderr", &id]);
    assert_eq!(
        (output.stdout.as_str(), output.stderr.as_str()),
        ("e1\n", "")
    );
    let output = home.fails(&["logs", "--stdout", "--stderr", &id]);
    assert_eq!(output.code(), 2, "the flags exclude each other");
}

#[test]
fn logs_tail_prints_the_last_lines() {
    let home = Home::new();
    let id = home.run(&[
        "--",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do echo $i; done",
    ]);
    home.ok(&["wait", &id]);
    assert_eq!(home.ok(&["logs", "--tail", "3", &id]), "8\n9\n10\n");
    assert_eq!(home.ok(&["logs", "--tail", "100", &id]).lines().count(), 10);
    assert_eq!(home.ok(&["logs", "--tail", "0", &id]), "");

    // Over both streams, the last lines by capture time.
    let script = ordered_output(&["out:o1", "err:e1", "out:o2", "err:e2", "out:o3"]);
    let both = home.run(&["--", "sh", "-c", &script]);
    home.ok(&["wait", &both]);
    assert_eq!(
        combined(&home, &["logs", "--tail", "3", &both]),
        "o2\ne2\no3\n"
    );
    assert_eq!(
        combined(&home, &["logs", "--stderr", "--tail", "1", &both]),
        "e2\n"
    );
}

#[test]
fn logs_timestamps_start_each_line_with_its_capture_time() {
    let home = Home::new();
    let script = ordered_output(&["out:first", "err:second", "out:third"]);
    let id = home.run(&["--", "sh", "-c", &script]);
    home.ok(&["wait", &id]);
    let agent = home.inspect(&id);
    let started = rfc3339(&agent["started_at"], "started_at");
    let ended = rfc3339(&agent["ended_at"], "ended_at");

    let text = combined(&home, &["logs", "--timestamps", &id]);
    let lines: Vec<(&str, &str)> = text
        .lines()
        .map(|line| line.split_once(' ').expect("TIME TEXT"))
        .collect();
    let texts: Vec<&str> = lines.iter().map(|(_, text)| *text).collect();
    // Both streams merged: the stream follows the time.
    assert_eq!(
        texts,
        ["stdout first", "stderr second", "stdout third"],
        "{text}"
    );
    let stdout_only = home.ok(&["logs", "--timestamps", "--stdout", &id]);
    assert!(
        stdout_only.lines().all(|line| !line.contains("stdout")),
        "{stdout_only}"
    );
    let times: Vec<_> = lines
        .iter()
        .map(|(time, _)| rfc3339(&serde_json::json!(time), "a line's time"))
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "{text}");
    assert!(
        started <= times[0] && times[2] <= ended,
        "captured between {started} and {ended}: {text}"
    );
}

#[test]
fn logs_keeps_a_last_line_without_newline() {
    let home = Home::new();
    let id = home.run(&["--", "printf", "one\\ntwo"]);
    home.ok(&["wait", &id]);
    assert_eq!(home.ok(&["logs", &id]), "one\ntwo");
}

#[test]
fn logs_follow_prints_new_output_and_exits_when_the_agent_ends() {
    let home = Home::new();
    let go = home.path().join("go");
    let script = format!(
        "echo first; until [ -e {go} ]; do sleep 0.01; done; echo second; echo oops >&2; exit 4",
        go = go.display()
    );
    let id = home.run(&["--", "sh", "-c", &script]);
    let mut follower = home
        .command(&["logs", "-f", &id])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start logs -f");
    let stdout = follower.stdout.take().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines.send(line.expect("a line")).is_err() {
                return;
            }
        }
    });
    let first = received
        .recv_timeout(Duration::from_secs(20))
        .expect("logs -f prints what is there");
    assert_eq!(first, "first");
    assert!(
        follower.try_wait().unwrap().is_none(),
        "logs -f waits while the agent runs"
    );

    std::fs::write(&go, "").unwrap();
    let second = received
        .recv_timeout(Duration::from_secs(20))
        .expect("logs -f prints new output");
    assert_eq!(second, "second");
    let third = received
        .recv_timeout(Duration::from_secs(20))
        .expect("logs -f prints stderr's output");
    assert_eq!(third, "oops");
    let output = common::finish(&mut follower, COMMAND_TIMEOUT, "logs -f");
    assert_eq!(output.code(), 0, "{output:?}");
    assert!(
        received.recv_timeout(Duration::from_secs(5)).is_err(),
        "nothing more on stdout"
    );
    assert_eq!(output.stderr, "");
    assert_eq!(home.state(&id), "failed");
}

#[test]
fn logs_follow_of_an_ended_agent_prints_everything_and_exits() {
    let home = Home::new();
    let id = home.run(&["--", "sh", "-c", "echo a; echo b"]);
    home.ok(&["wait", &id]);
    assert_eq!(home.ok(&["logs", "-f", &id]), "a\nb\n");
}

#[test]
fn logs_of_an_unknown_agent_is_an_error() {
    let home = Home::new();
    let output = home.fails(&["logs", "nobody-here"]);
    assert_eq!(output.code(), 1);
    assert!(
        output.stderr.contains("no agent named \"nobody-here\""),
        "{}",
        output.stderr
    );
}

#[test]
fn logs_survive_a_lot_of_output() {
    let home = Home::new();
    // Far more than a pipe holds: the agent blocks unless the shim reads.
    let id = home.run(&["--", "sh", "-c", "seq 1 200000; seq 1 1000 >&2"]);
    home.ok(&["wait", &id]);
    let mut output = String::new();
    let mut child = home
        .command(&["logs", "--stdout", &id])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let expected: String = (1..=200_000).map(|n| format!("{n}\n")).collect();
    assert!(
        output == expected,
        "{} bytes, not the 200000 lines",
        output.len()
    );
    assert_eq!(
        home.ok(&["logs", "--stdout", "--tail", "1", &id]),
        "200000\n"
    );
}

/// A shell loop printing the numbers from 1 in `blocks` blocks of 1000,
/// pausing `pause` seconds after each.
fn counting(blocks: u32, pause: &str) -> String {
    format!(
        "i=0; while [ $i -lt {blocks} ]; do seq $((i*1000+1)) $((i*1000+1000)); i=$((i+1)); sleep {pause}; done"
    )
}

/// Runs `sh -c script` with its logs rotated at `size`, keeping 100 files.
fn run_rotated(home: &Home, size: &str, script: &str) -> String {
    home.run(&[
        "--log-max-size",
        size,
        "--log-max-files",
        "100",
        "--",
        "sh",
        "-c",
        script,
    ])
}

/// The numbers of a log of `seq` output, checked to be whole lines.
fn numbers(text: &str) -> Vec<u64> {
    text.lines()
        .map(|line| {
            line.parse()
                .unwrap_or_else(|_| panic!("not a number: {line:?}"))
        })
        .collect()
}

#[test]
fn a_log_is_rotated_by_size_and_read_back_as_one() {
    let home = Home::new();
    // About 1.3 MB of numbered lines into files of 64K, three kept.
    let id = home.run(&[
        "--log-max-size",
        "64K",
        "--log-max-files",
        "3",
        "--",
        "sh",
        "-c",
        "seq 1 200000; echo done >&2",
    ]);
    home.ok(&["wait", &id]);
    let agent = home.inspect(&id);
    // `inspect` says how its logs rotate, in JSON and in words.
    assert_eq!(agent["log_max_size_bytes"], 64 * 1024, "{agent}");
    assert_eq!(agent["log_max_files"], 3, "{agent}");
    let words = home.ok(&["inspect", &id]);
    assert!(
        words.contains("at 64 KiB, 3 files kept per stream"),
        "{words}"
    );
    let stdout_log = std::path::PathBuf::from(agent["stdout_log"].as_str().unwrap());
    let dir = stdout_log.parent().unwrap();
    let mut rotated: Vec<(u64, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let number = name.strip_prefix("stdout.log.")?.parse().ok()?;
            Some((number, entry.metadata().unwrap().len()))
        })
        .collect();
    rotated.sort();
    // Three files kept: the current one and the two newest rotated, each
    // of exactly the size asked for, each with its index.
    assert_eq!(rotated.len(), 2, "{rotated:?}");
    assert_eq!(rotated[1].0, rotated[0].0 + 1);
    assert!(
        rotated.iter().all(|(_, length)| *length == 64 * 1024),
        "{rotated:?}"
    );
    for (number, _) in &rotated {
        assert!(dir.join(format!("stdout.log.{number}.idx")).exists());
    }
    let current = std::fs::metadata(&stdout_log).unwrap().len();
    assert!(current <= 64 * 1024, "{current}");

    // Read as one: consecutive numbers up to the last, the oldest gone,
    // no line cut where one file ends and the next begins.
    let all = numbers(&home.ok(&["logs", "--stdout", &id]));
    assert_eq!(*all.last().unwrap(), 200_000);
    assert!(
        all.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "a gap or a cut line"
    );
    let kept_bytes: u64 = 2 * 64 * 1024 + current;
    let read_bytes: u64 = all.iter().map(|n| n.to_string().len() as u64 + 1).sum();
    assert!(
        kept_bytes - read_bytes < 8,
        "{kept_bytes} kept, {read_bytes} read"
    );
    // The tail reaches back across files.
    let tail = numbers(&home.ok(&["logs", "--stdout", "--tail", "20000", &id]));
    assert_eq!(tail, ((200_000 - 19_999)..=200_000).collect::<Vec<_>>());
    assert_eq!(home.ok(&["logs", "--tail", "1", &id]), "done\n");
}

#[test]
fn logs_follow_reads_on_across_rotations_and_misses_nothing() {
    let home = Home::new();
    let go = home.path().join("go");
    // Slow enough to be followed, fast enough to rotate a few times.
    let script = format!(
        "until [ -e {go} ]; do sleep 0.01; done; {}",
        counting(40, "0.02"),
        go = go.display()
    );
    let id = run_rotated(&home, "16K", &script);
    let mut follower = home
        .command(&["logs", "-f", &id])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start logs -f");
    std::fs::write(&go, "").unwrap();
    let output = common::finish(&mut follower, COMMAND_TIMEOUT, "logs -f");
    let followed = numbers(&output.stdout);
    assert_eq!(followed, (1..=40_000).collect::<Vec<_>>());
    let agent = home.inspect(&id);
    let dir = std::path::Path::new(agent["stdout_log"].as_str().unwrap())
        .parent()
        .unwrap()
        .to_owned();
    assert!(
        dir.join("stdout.log.10").exists(),
        "it rotated more than ten times"
    );
}

#[test]
fn logs_since_and_until_pick_lines_by_capture_time() {
    let home = Home::new();
    let go = home.path().join("go");
    let script = format!(
        "echo early; until [ -e {go} ]; do sleep 0.01; done; echo late",
        go = go.display()
    );
    let id = home.run(&["--", "sh", "-c", &script]);
    common::wait_until(common::SOON, "the first line", || {
        home.ok(&["logs", &id]) == "early\n"
    });
    std::thread::sleep(Duration::from_millis(50));
    let between = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    std::thread::sleep(Duration::from_millis(50));
    std::fs::write(&go, "").unwrap();
    home.ok(&["wait", &id]);
    assert_eq!(home.ok(&["logs", "--since", &between, &id]), "late\n");
    assert_eq!(home.ok(&["logs", "--until", &between, &id]), "early\n");
    assert_eq!(home.ok(&["logs", "--since", "1h", &id]), "early\nlate\n");
    assert_eq!(home.ok(&["logs", "--until", "1h", &id]), "");
    assert_eq!(
        home.ok(&["logs", "--until", &between, "--tail", "1", &id]),
        "early\n"
    );
    // A followed log ends once --until has passed.
    assert_eq!(
        home.ok(&["logs", "-f", "--until", &between, &id]),
        "early\n"
    );
    // Bad bounds are refused, naming the flag and what it takes.
    let output = home.fails(&["logs", "--since", "yesterday-ish", &id]);
    assert!(
        output.stderr.contains("invalid --since \"yesterday-ish\"")
            && output.stderr.contains("10m"),
        "{}",
        output.stderr
    );
    let output = home.fails(&["logs", "--since", "1m", "--until", "1h", &id]);
    assert!(
        output.stderr.contains("is after --until"),
        "{}",
        output.stderr
    );
}

#[test]
fn the_homes_logs_stay_under_their_cap_oldest_ended_runs_first() {
    let home = Home::new();
    home.ok(&[
        "daemon",
        "--sample-interval",
        "100ms",
        "--logs-max-total",
        "256K",
    ]);
    // An ended run with about 190K of logs, the oldest.
    let old = home.run(&["--", "sh", "-c", "seq 1 30000"]);
    home.ok(&["wait", &old]);
    assert_eq!(home.ok(&["logs", "--tail", "1", &old]), "30000\n");
    // A running agent that writes on, rotated at 32K, keeping many files.
    let go = home.path().join("go");
    let script = format!(
        "{}; until [ -e {go} ]; do sleep 0.05; done",
        counting(60, "0.05"),
        go = go.display()
    );
    let live = run_rotated(&home, "32K", &script);
    let doctor = || home.json(&["doctor", "--json"])["logs"].clone();
    common::wait_until(Duration::from_secs(30), "the old run's logs to go", || {
        home.ok(&["logs", &old]).is_empty()
    });
    common::wait_until(
        Duration::from_secs(30),
        "the live run's oldest rotated files to go",
        || {
            let logs = doctor();
            logs["deleted_files"].as_u64().unwrap() > 2
                && logs["used_bytes"].as_u64().unwrap() <= 256 * 1024
        },
    );
    // What the running agent writes now is never deleted, and what is
    // left of it still reads as consecutive lines.
    std::fs::write(&go, "").unwrap();
    home.ok(&["wait", &live]);
    let numbers = numbers(&home.ok(&["logs", &live]));
    assert_eq!(*numbers.last().unwrap(), 60_000);
    assert!(numbers[0] > 1, "its oldest lines went");
    let gaps: Vec<&[u64]> = numbers
        .windows(2)
        .filter(|pair| pair[1] != pair[0] + 1)
        .collect();
    assert!(gaps.is_empty(), "gaps {gaps:?} in {} lines", numbers.len());
    let logs = doctor();
    assert_eq!(logs["max_total_bytes"], 256 * 1024);
    assert!(logs["deleted_bytes"].as_u64().unwrap() > 190_000, "{logs}");
    let text = home.ok(&["doctor"]);
    assert!(text.contains("old files deleted"), "{text}");
}
