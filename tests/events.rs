//! The event stream against a real daemon: every change once, in order,
//! with ids that only grow; resumed after a SIGKILL of the daemon with
//! nothing lost and nothing twice; filters; gaps when the store no longer
//! keeps what a client asks for; a client that never reads cut off with
//! `lagged` while the daemon's memory stays bounded.

mod common;

use common::events::{ids, last_id, stored, types, Follower, Sse};
use common::{crash, marker, procfs, wait_until, Home, SOON};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::Read;
use std::time::{Duration, Instant};

/// A home whose daemon samples every 100 ms, so that health changes soon.
fn fast_home() -> Home {
    let home = Home::new();
    home.ok(&["daemon", "--sample-interval", "100ms"]);
    home
}

/// Runs a sleeping agent named `name` whose health is `probe`, tried every
/// 100 ms, unhealthy after two failures; returns its id.
fn probed(home: &Home, name: &str, probe: &str) -> String {
    home.run(&[
        "--name",
        name,
        "--health-cmd",
        probe,
        "--health-interval",
        "100ms",
        "--health-retries",
        "2",
        "--",
        "sleep",
        &marker(),
    ])
}

#[test]
fn one_lifecycle_gives_each_event_once_in_order() {
    let home = fast_home();
    let since = last_id(&home);
    let follower = Follower::start(&home, &["--since", &since.to_string(), "--agent", "web"]);
    let ready = home.path().join("ready");
    let probe = format!("test -e {}", ready.display());
    // Healthy while `ready` exists; it is removed once the agent runs.
    std::fs::write(&ready, "").unwrap();
    let id = probed(&home, "web", &probe);
    std::fs::remove_file(&ready).unwrap();
    follower.wait_for("the agent is unhealthy", |messages| {
        types(messages).contains(&"agent.health".to_string())
    });
    home.ok(&["stop", "web"]);
    let messages = follower.wait_for("the agent has exited", |messages| {
        types(messages).contains(&"agent.exited".to_string())
    });
    assert_eq!(
        types(&messages),
        [
            "agent.created",
            "agent.starting",
            "agent.running",
            "agent.health",
            "agent.stopping",
            "agent.exited"
        ],
        "{messages:#?}"
    );
    let ids = ids(&messages);
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    assert!(ids[0] > since);
    for message in &messages {
        assert_eq!(message["agent"]["id"], id.as_str());
        assert_eq!(message["agent"]["name"], "web");
        assert_eq!(message["run"], 1);
        common::rfc3339(&message["time"], "time");
    }
    let health = &messages[3];
    assert_eq!(
        (health["from"].as_str(), health["to"].as_str()),
        (Some("healthy"), Some("unhealthy"))
    );
    assert!(
        health["reason"]
            .as_str()
            .unwrap()
            .contains("health check failed 2 times"),
        "{health}"
    );
    assert_eq!(messages[2]["pid"], home.inspect("web")["pid"]);
    let exited = &messages[5];
    assert_eq!(exited["state"], "stopped");
    assert_eq!(exited["cause"], "user");
    assert_eq!(exited["signal"], "SIGTERM");
    assert_eq!(messages[4]["cause"], "user");
    // What the follower got is what the store holds, byte for byte.
    let kept: Vec<Value> = stored(&home, since)
        .into_iter()
        .filter(|event| event["agent"]["id"] == id.as_str())
        .collect();
    assert_eq!(kept, messages);
    // And the SSE stream says the same, with each event's id and type.
    let mut sse = Sse::open(
        &home,
        &format!("/v1/events?since={since}&agent=web&follow=false"),
        &[],
    );
    assert_eq!(sse.status, 200);
    assert!(
        sse.head.contains("content-type: text/event-stream"),
        "{}",
        sse.head
    );
    let frames = sse.rest();
    assert_eq!(frames.len(), 6, "{frames:#?}");
    for (frame, message) in frames.iter().zip(&messages) {
        assert_eq!(frame.id, message["id"].as_u64());
        assert_eq!(frame.event.as_deref(), message["type"].as_str());
        assert_eq!(&frame.json(), message);
    }
}

#[test]
fn a_stream_resumes_across_a_daemon_sigkill_with_nothing_lost_or_twice() {
    let home = fast_home();
    let since = last_id(&home);
    // This one reconnects by itself after the daemon is gone.
    let follower = Follower::start(&home, &["--since", &since.to_string()]);
    let sleeper = marker();
    for index in 0..6 {
        // Each ends at its own time, some while no daemon runs.
        let script = format!("sleep 0.{}; exit {index}", 3 + index * 2);
        home.run(&[
            "--name",
            &format!("quick{index}"),
            "--",
            "sh",
            "-c",
            &script,
        ]);
    }
    home.run(&["--name", "long", "--", "sleep", &sleeper]);
    // A subscriber notes the last event it got, and the daemon is killed
    // while the agents go on changing state.
    let seen = follower.wait_for("some agent has exited", |messages| {
        types(messages).contains(&"agent.exited".to_string())
    });
    let last_seen = *ids(&seen).last().unwrap();
    crash::kill_daemon(&home);
    std::thread::sleep(Duration::from_millis(1500));
    // The next daemon (started by this call) records the ends it finds.
    home.ok(&["ps"]);
    wait_until(SOON, "every quick agent has ended", || {
        (0..6).all(|index| home.state(&format!("quick{index}")) == "failed" || index == 0)
            && home.state("quick0") == "completed"
    });
    home.ok(&["stop", "long"]);
    let everything = stored(&home, since);
    let newest = *ids(&everything).last().unwrap();

    // A new subscriber from the id noted gets exactly what came after it.
    let missed = home.ok(&[
        "events",
        "--json",
        "--no-follow",
        "--since",
        &last_seen.to_string(),
    ]);
    let missed: Vec<Value> = missed
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let expected: Vec<Value> = everything
        .iter()
        .filter(|event| event["id"].as_u64().unwrap() > last_seen)
        .cloned()
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(missed, expected);
    let types_missed = types(&missed);
    assert!(
        types_missed.contains(&"daemon.started".to_string()),
        "{types_missed:?}"
    );
    assert!(
        types_missed.contains(&"agent.exited".to_string()),
        "{types_missed:?}"
    );

    // The follower came back by itself: every event once, in order.
    let all = follower.wait_for_id(newest);
    assert_eq!(ids(&all), ids(&everything), "{}", follower.stderr());
    let unique: BTreeSet<u64> = ids(&all).into_iter().collect();
    assert_eq!(unique.len(), all.len());
    // The exits recorded by the new daemon carry the agents' real codes.
    for index in 1..6 {
        let name = format!("quick{index}");
        let exit = all
            .iter()
            .find(|event| {
                event["type"] == "agent.exited" && event["agent"]["name"] == name.as_str()
            })
            .unwrap_or_else(|| panic!("no exit of {name}"));
        assert_eq!(exit["exit_code"], index, "{exit}");
        assert_eq!(exit["cause"], "exit");
    }
}

/// Which events a filter is to let through.
type Share = Box<dyn Fn(&Value) -> bool>;

#[test]
fn filtered_subscribers_each_get_exactly_their_share() {
    let home = fast_home();
    let since = last_id(&home).to_string();
    let names: Vec<String> = (0..8).map(|index| format!("agent{index}")).collect();
    let mut filters: Vec<(Vec<String>, Share)> = Vec::new();
    for name in names.iter().take(8) {
        let wanted = name.clone();
        filters.push((
            vec!["--agent".into(), name.clone()],
            Box::new(move |event: &Value| event["agent"]["name"] == wanted.as_str()),
        ));
    }
    for group in ["odd", "even"] {
        filters.push((
            vec!["--group".into(), group.into()],
            Box::new(move |event: &Value| {
                event["agent"]["group"] == group || event["group"] == group
            }),
        ));
    }
    let prefixes = [
        "agent.exited",
        "agent.created",
        "agent.running",
        "agent.",
        "group.",
        "agent.exited,group.changed",
        "agent.stopping,agent.removed",
        "agent.start",
    ];
    for prefix in prefixes {
        filters.push((
            vec!["--type".into(), prefix.into()],
            Box::new(move |event: &Value| {
                let kind = event["type"].as_str().unwrap();
                prefix.split(',').any(|prefix| kind.starts_with(prefix))
            }),
        ));
    }
    filters.push((
        vec![
            "--group".into(),
            "odd".into(),
            "--type".into(),
            "agent.exited".into(),
        ],
        Box::new(|event: &Value| {
            event["agent"]["group"] == "odd" && event["type"] == "agent.exited"
        }),
    ));
    filters.push((vec![], Box::new(|_: &Value| true)));
    assert_eq!(filters.len(), 20);
    let followers: Vec<Follower> = filters
        .iter()
        .map(|(args, _)| {
            let mut full = vec!["--since", since.as_str()];
            full.extend(args.iter().map(String::as_str));
            Follower::start(&home, &full)
        })
        .collect();

    for (index, name) in names.iter().enumerate() {
        let group = if index % 2 == 0 { "even" } else { "odd" };
        let script = format!("exit {}", index % 3);
        home.run(&["--name", name, "--group", group, "--", "sh", "-c", &script]);
    }
    home.ok(&["group", "set", "odd", "--max-running", "3"]);
    for name in &names {
        home.wrangle(&["wait", name]);
    }
    home.ok(&["rm", "agent0", "agent1"]);
    let everything = stored(&home, since.parse().unwrap());
    let newest = *ids(&everything).last().unwrap();
    // Wait for the unfiltered one to see it all, then for each to see the
    // last event of its share.
    for ((_, wanted), follower) in filters.iter().zip(&followers) {
        let share: Vec<Value> = everything
            .iter()
            .filter(|event| wanted(event))
            .cloned()
            .collect();
        assert!(!share.is_empty(), "nothing for one of the filters");
        let last = share.last().unwrap()["id"].as_u64().unwrap();
        let got = follower.wait_for_id(last);
        assert_eq!(got, share, "{}", follower.stderr());
    }
    assert_eq!(followers.last().unwrap().ids().last(), Some(&newest));
}

#[test]
fn a_subscriber_that_never_reads_is_cut_off_with_lagged_and_memory_stays_bounded() {
    let home = Home::new();
    home.ok(&["daemon"]);
    let daemon = home.daemon_pid().unwrap();
    let rss = || procfs::rss_bytes(daemon).expect("the daemon's RSS");
    // A stream whose client reads nothing at all.
    let mut stalled = Sse::open(&home, "/v1/events", &[]);
    assert_eq!(stalled.status, 200);
    let before = rss();
    let started = Instant::now();
    let lagged = || {
        common::http::request(&home.socket(), "GET", "/metrics", None, "")
            .body
            .contains("wrangle_event_streams_lagged_total 1\n")
    };
    // Group changes are the cheapest events to make: enough of them fill
    // the socket, the server's buffers and the stream's queue, and past
    // the lag timeout the stream is cut off. How many that takes depends
    // on the machine's socket buffers: they are made until it is so.
    let mut events = 0;
    let mut grown = 0;
    while !lagged() {
        assert!(events < 100_000, "no cut-off after {events} events");
        for _ in 0..2000 {
            let body = format!(r#"{{"max_running": {}}}"#, events % 7 + 1);
            let answer = home.http("PUT", "/v1/groups/busy", Some("application/json"), &body);
            assert_eq!(answer.status, 200, "{}", answer.body);
            events += 1;
        }
        grown = grown.max(rss().saturating_sub(before));
        if events >= 10_000 {
            // Time for the lag timeout to pass.
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let made = started.elapsed();
    eprintln!(
        "{events} events in {made:?}; daemon RSS {} MiB before, at most {} MiB more",
        before >> 20,
        grown >> 20
    );
    assert!(grown < 48 << 20, "the daemon grew by {} MiB", grown >> 20);
    // The client finally reads: events in order, then `lagged` naming the
    // last of them, then the end.
    let frames = stalled.rest();
    let (last, events_got) = frames.split_last().expect("frames");
    assert_eq!(last.event.as_deref(), Some("lagged"), "{last:?}");
    assert_eq!(last.id, None);
    let got = ids(&events_got
        .iter()
        .filter(|f| f.id.is_some())
        .map(|f| f.json())
        .collect::<Vec<_>>());
    assert!(
        !got.is_empty() && got.len() < events,
        "{} events before the cut",
        got.len()
    );
    assert!(
        got.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "ids skip"
    );
    assert_eq!(last.json()["last_id"].as_u64(), got.last().copied());
    // The daemon is well, and the client resumes where it was cut.
    let resumed = home.ok(&[
        "events",
        "--json",
        "--no-follow",
        "--since",
        &got.last().unwrap().to_string(),
        "--type",
        "group.",
    ]);
    let resumed_ids: Vec<u64> = resumed
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(resumed_ids.first(), Some(&(got.last().unwrap() + 1)));
    assert_eq!(got.len() + resumed_ids.len(), events);
    let _ = stalled.stream().peer_addr();
}

#[test]
fn a_since_older_than_what_is_kept_says_gap_first_and_ids_never_come_again() {
    let home = Home::new();
    home.ok(&["daemon", "--events-max", "20"]);
    for index in 0..12 {
        home.run(&["--name", &format!("short{index}"), "--", "true"]);
    }
    let newest_before = last_id(&home);
    home.ok(&["daemon", "stop"]);
    // The next daemon prunes at its start: only the 20 newest are kept.
    home.ok(&["daemon", "--events-max", "20"]);
    wait_until(SOON, "old events are pruned", || {
        stored(&home, 0).len() <= 21
    });
    let kept = stored(&home, 0);
    let oldest = kept[0]["id"].as_u64().unwrap();
    assert!(oldest > 1);
    assert_eq!(
        kept[0]["id"].as_u64().unwrap(),
        last_id(&home) + 1 - kept.len() as u64
    );
    let output = home.ok(&["events", "--json", "--no-follow", "--since", "1"]);
    let lines: Vec<Value> = output
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "gap", "{output}");
    assert_eq!(lines[0]["since"], 1);
    assert_eq!(lines[0]["oldest"], oldest);
    assert_eq!(lines[1]["id"], oldest);
    // Said in words on stderr without --json.
    let text = home.wrangle(&["events", "--no-follow", "--since", "1"]);
    assert!(text.stderr.contains("no longer kept"), "{}", text.stderr);
    // A time before what is kept is a gap too.
    let output = home.ok(&["events", "--json", "--no-follow", "--since", "1h"]);
    let first: Value = serde_json::from_str(output.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "gap");
    assert_eq!(first["since"], Value::Null);
    // Ids go on from the highest ever handed out, pruned or not.
    home.run(&["--name", "after", "--", "true"]);
    let created = stored(&home, newest_before)
        .into_iter()
        .find(|event| event["type"] == "agent.created" && event["agent"]["name"] == "after")
        .expect("the new agent's event");
    assert!(created["id"].as_u64().unwrap() > newest_before);
}

#[test]
fn bad_queries_are_refused_and_change_nothing() {
    let home = Home::new();
    home.ok(&["daemon"]);
    let newest = last_id(&home);
    let cases = [
        ("/v1/events?since=yesterday", "invalid `since`"),
        ("/v1/events?type=container.die", "no event type starts with"),
        ("/v1/events?group=Not%20A%20Name", "group name"),
        ("/v1/events?follow=maybe", "malformed query string"),
        ("/v1/events?heartbeat=0", "heartbeat"),
        (
            &format!("/v1/events?since={}", newest + 1000),
            "beyond the newest event",
        ),
    ];
    for (path, message) in cases {
        let answer = home.http("GET", path, None, "");
        assert_eq!(answer.status, 400, "{path}: {}", answer.body);
        let (code, text) = answer.error();
        assert_eq!(code, "invalid_argument");
        assert!(text.contains(message), "{path}: {text}");
    }
    let answer = home.http("GET", "/v1/events?agent=", None, "");
    assert_eq!(answer.status, 400, "{}", answer.body);
    // The CLI says so before it asks.
    let output = home.fails(&["events", "--type", "nope"]);
    assert!(
        output.stderr.contains("no event type starts with \"nope\""),
        "{}",
        output.stderr
    );
    let output = home.fails(&["events", "--since", "last tuesday"]);
    assert!(
        output.stderr.contains("invalid `since`"),
        "{}",
        output.stderr
    );
    assert_eq!(last_id(&home), newest);
}

#[test]
fn an_idle_stream_gets_keep_alives_and_last_event_id_wins_over_since() {
    let home = Home::new();
    home.ok(&["daemon"]);
    let newest = last_id(&home);
    let mut idle = Sse::open(&home, "/v1/events?heartbeat=0.2", &[]);
    let started = Instant::now();
    let frame = idle.next().expect("a frame");
    assert!(frame.comment, "{frame:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // JSON lines: an empty line.
    let lines = Sse::open(
        &home,
        "/v1/events?heartbeat=0.2",
        &["Accept: application/x-ndjson"],
    );
    assert!(lines.head.contains("content-type: application/x-ndjson"));
    assert!(
        lines.head.contains(&format!("wrangle-event-id: {newest}")),
        "{}",
        lines.head
    );
    let mut chunk = [0u8; 1];
    lines
        .stream()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut raw = Vec::new();
    while !raw.ends_with(b"\r\n\n\r\n") && raw.len() < 64 {
        let mut reader = lines.stream();
        reader.read_exact(&mut chunk).expect("a keep-alive");
        raw.push(chunk[0]);
    }
    assert_eq!(raw, b"1\r\n\n\r\n");

    home.run(&["--name", "one", "--", "true"]);
    home.run(&["--name", "two", "--", "true"]);
    // A browser reconnecting sends the URL it had and the last id it got.
    let mut resumed = Sse::open(
        &home,
        &format!("/v1/events?since={newest}&follow=false&type=agent.created"),
        &[&format!("Last-Event-ID: {}", newest + 2)],
    );
    let frames = resumed.rest();
    let names: Vec<String> = frames
        .iter()
        .map(|frame| frame.json()["agent"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["two"]);
}

#[test]
fn health_and_probe_findings_survive_a_daemon_sigkill() {
    let home = fast_home();
    probed(&home, "sick", "false");
    wait_until(SOON, "the agent is unhealthy", || {
        home.inspect("sick")["health"] == "unhealthy"
    });
    let changes = |home: &Home| -> Vec<Value> {
        stored(home, 0)
            .into_iter()
            .filter(|event| event["type"] == "agent.health")
            .collect()
    };
    assert_eq!(changes(&home).len(), 1);
    crash::kill_daemon(&home);
    // At once, before any new probe: the findings were kept.
    home.ok(&["daemon", "--sample-interval", "100ms"]);
    let view = home.inspect("sick");
    assert_eq!(view["health"], "unhealthy", "{view}");
    std::thread::sleep(Duration::from_millis(800));
    let view = home.inspect("sick");
    assert_eq!(view["health"], "unhealthy", "{view}");
    let reason = view["health_reason"].as_str().unwrap();
    // The count went on from where the last daemon left it.
    let count: u32 = reason
        .split("failed ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {reason:?}"));
    assert!(count > 2, "{reason}");
    assert_eq!(changes(&home).len(), 1, "{:#?}", changes(&home));
}

#[test]
fn wait_gets_the_exit_that_came_while_the_daemon_was_killed() {
    let home = Home::new();
    let go = home.path().join("go");
    let script = format!("until [ -e {} ]; do sleep 0.02; done; exit 7", go.display());
    home.run(&["--name", "slow", "--", "sh", "-c", &script]);
    let mut waiter = home.command(&["wait", "slow"]);
    waiter
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut waiter = waiter.spawn().expect("wrangle wait");
    wait_until(SOON, "wait follows the agent's events", || {
        common::http::request(&home.socket(), "GET", "/metrics", None, "")
            .body
            .contains("route=\"/v1/events\",code=\"200\"")
    });
    crash::kill_daemon(&home);
    // The agent ends while no daemon runs; wait starts the next one.
    std::fs::write(&go, "").unwrap();
    let output = common::finish(&mut waiter, SOON, "wrangle wait");
    assert_eq!(output.code(), 7, "{output:?}");
    assert_eq!(home.state("slow"), "failed");
}

#[test]
fn progress_is_published_at_most_once_a_second_the_latest_report_last() {
    let home = fast_home();
    let since = last_id(&home);
    let script = "for p in 10 20 30; do \
                  printf '{\"progress\": %s, \"message\": \"step %s\"}' $p $p > \"$WRANGLE_STATUS_FILE\"; \
                  sleep 0.2; done; exec sleep 600";
    home.run(&["--name", "reporter", "--", "sh", "-c", script]);
    let follower = Follower::start(
        &home,
        &["--since", &since.to_string(), "--type", "agent.progress"],
    );
    let events = follower.wait_for("the last report is published", |messages| {
        messages.last().is_some_and(|last| last["progress"] == 30.0)
    });
    assert_eq!(events[0]["progress"], 10.0, "{events:#?}");
    assert_eq!(events.last().unwrap()["message"], "step 30");
    let times: Vec<_> = events
        .iter()
        .map(|event| common::rfc3339(&event["time"], "time"))
        .collect();
    for pair in times.windows(2) {
        assert!(
            (pair[1] - pair[0]).num_milliseconds() >= 1000,
            "two progress events within a second: {events:#?}"
        );
    }
    // Nothing more while the report stays the same.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(follower.messages().len(), events.len());
}

#[test]
fn a_timeout_and_a_restart_say_their_cause_and_when_the_next_run_starts() {
    let home = fast_home();
    let since = last_id(&home).to_string();
    home.run(&[
        "--name",
        "slow",
        "--timeout",
        "500ms",
        "--",
        "sleep",
        &marker(),
    ]);
    home.run(&[
        "--name",
        "flaky",
        "--restart",
        "on-failure",
        "--max-restarts",
        "1",
        "--backoff-initial",
        "300ms",
        "--",
        "sh",
        "-c",
        "exit 4",
    ]);
    home.wrangle(&["wait", "slow", "flaky"]);
    let events = stored(&home, since.parse().unwrap());
    let of = |name: &str, kind: &str| -> Vec<Value> {
        events
            .iter()
            .filter(|e| e["agent"]["name"] == name && e["type"] == kind)
            .cloned()
            .collect()
    };
    let stopping = &of("slow", "agent.stopping")[0];
    assert_eq!(stopping["cause"], "timeout", "{stopping}");
    let exited = &of("slow", "agent.exited")[0];
    assert_eq!(
        (exited["state"].as_str(), exited["cause"].as_str()),
        (Some("failed"), Some("timeout"))
    );
    assert!(exited["reason"]
        .as_str()
        .unwrap()
        .starts_with("timeout: ran longer than"));
    assert_eq!(home.inspect("slow")["cause"], "timeout");

    let backoff = &of("flaky", "agent.backoff")[0];
    assert_eq!(
        (backoff["exit_code"].as_i64(), backoff["cause"].as_str()),
        (Some(4), Some("exit"))
    );
    let restart_at = common::rfc3339(&backoff["restart_at"], "restart_at");
    let time = common::rfc3339(&backoff["time"], "time");
    let delay = (restart_at - time).num_milliseconds();
    assert!(
        (200..=400).contains(&delay),
        "restart {delay} ms after the backoff"
    );
    let starts = of("flaky", "agent.running");
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[1]["run"], 2);
    let last = &of("flaky", "agent.exited")[0];
    assert_eq!(last["run"], 2);
    assert!(
        last["reason"].as_str().unwrap().contains("crash-looping"),
        "{last}"
    );
}
