//! `wrangle top` driven as a person would: in a real 80x24 terminal
//! (tmux), with keys typed and the screen read, against a real daemon and
//! real agents, checked against `ps --json` and `/proc`.

mod common;

use common::tmux::{order, row, Tmux};
use common::{marker, procfs, wait_until, Home, SOON, WRANGLE};

/// Waits until no process of the agent with this marker is left.
fn wait_gone(marker: &str, agent: &str) {
    wait_until(SOON, &format!("no process of {agent} is left"), || {
        procfs::with_marker(marker).is_empty()
    });
}

/// The state of the agent named `name` in `ps -a --json`.
fn listed_state(home: &Home, name: &str) -> String {
    home.ps_all()
        .iter()
        .find(|agent| agent["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in ps -a --json"))["state"]
        .as_str()
        .expect("a state")
        .to_owned()
}

#[test]
fn top_lists_sorts_filters_shows_logs_stops_kills_and_quits() {
    let home = Home::new();
    let (alpha, printer, zulu) = (marker(), marker(), marker());
    let go = home.path().join("go");
    home.run(&["--name", "alpha", "--", "sleep", &alpha]);
    // The file's path goes by the environment: in the command line, the
    // home's random name could match the filters typed below ("zu").
    home.run(&[
        "--name",
        "printer",
        "--env",
        &format!("TOP_TEST_GO={}", go.display()),
        "--",
        "sh",
        "-c",
        &format!(
            "echo top-line-1; echo top-line-2; echo top-line-3 >&2; \
             while [ ! -e \"$TOP_TEST_GO\" ]; do sleep 0.05; done; echo top-line-4; exec sleep {printer}"
        ),
    ]);
    home.run(&["--name", "zulu", "--", "sleep", &zulu]);
    let done = home.run(&["--name", "done", "--", "true"]);
    home.ok(&["wait", &done]);

    // A shell in the terminal, and top started from it as a person would.
    let tmux = Tmux::start(&home, 80, 24, "sh");
    tmux.wait_for("the shell prompts", |s| !s.trim().is_empty());
    tmux.type_text(&format!("{WRANGLE} top --interval 300ms"));
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("top lists the three running agents", |s| {
        ["alpha", "printer", "zulu"]
            .iter()
            .all(|name| row(s, name).is_some_and(|r| r.contains("running")))
    });
    assert!(
        screen.contains("3 of 3 running"),
        "no totals on the screen:\n{screen}"
    );
    assert!(
        row(&screen, "done").is_none(),
        "an ended agent is listed:\n{screen}"
    );
    assert!(screen.contains("q quit"), "no key help:\n{screen}");
    assert!(
        screen.lines().all(|line| line.chars().count() <= 80),
        "{screen}"
    );
    assert_eq!(tmux.pane("#{pane_current_command}"), "wrangle");

    // Sort by name, then the other way round.
    tmux.keys(&["N"]);
    tmux.wait_for("sorted by name", |s| {
        s.contains("sort: name, a-z")
            && order(s, &["zulu", "printer", "alpha"]) == ["alpha", "printer", "zulu"]
    });
    tmux.keys(&["r"]);
    tmux.wait_for("sorted by name, reversed", |s| {
        s.contains("sort: name, reversed")
            && order(s, &["alpha", "printer", "zulu"]) == ["zulu", "printer", "alpha"]
    });
    tmux.keys(&["r"]);
    tmux.wait_for("sorted by name again", |s| {
        order(s, &["zulu", "printer", "alpha"]) == ["alpha", "printer", "zulu"]
    });

    // A filter on the name, then on the command line; Esc clears it.
    tmux.keys(&["/"]);
    tmux.type_text("zu");
    let screen = tmux.wait_for("only zulu is shown", |s| {
        row(s, "zulu").is_some() && row(s, "alpha").is_none()
    });
    assert!(row(&screen, "printer").is_none(), "{screen}");
    assert!(screen.contains("filter: zu_"), "{screen}");
    tmux.keys(&["Escape"]);
    tmux.wait_for("all three are back", |s| {
        order(s, &["alpha", "printer", "zulu"]).len() == 3 && !s.contains("filter:")
    });
    tmux.keys(&["/"]);
    tmux.type_text("echo top-line");
    tmux.keys(&["Enter"]);
    tmux.wait_for("only printer matches its command", |s| {
        order(s, &["alpha", "printer", "zulu"]) == ["printer"]
    });
    tmux.keys(&["Escape"]);
    tmux.wait_for("the filter is cleared", |s| {
        order(s, &["alpha", "printer", "zulu"]).len() == 3
    });

    // The selection stayed on printer, the one row the filter showed; up
    // to alpha and down again, then Enter: printer's log lines, refreshed
    // as it writes.
    let selected =
        |name: &'static str| move |s: &str| row(s, name).is_some_and(|r| r.starts_with("> "));
    tmux.wait_for("printer is still selected", selected("printer"));
    tmux.keys(&["k"]);
    tmux.wait_for("alpha is selected", selected("alpha"));
    tmux.keys(&["Down"]);
    tmux.wait_for("printer is selected", selected("printer"));
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("printer's log lines", |s| {
        s.contains("logs of printer") && s.contains("top-line-3")
    });
    let lines: Vec<&str> = screen.lines().collect();
    for line in ["top-line-1", "top-line-2", "top-line-3"] {
        assert!(lines.contains(&line), "no {line} in:\n{screen}");
    }
    assert!(!screen.contains("top-line-4"), "{screen}");
    std::fs::write(&go, "").unwrap();
    tmux.wait_for("the pane shows the new line", |s| {
        s.lines().any(|l| l == "top-line-4")
    });
    tmux.keys(&["Escape"]);
    tmux.wait_for("the table is back", |s| {
        s.contains("NAME") && row(s, "zulu").is_some()
    });

    // x asks first; n leaves zulu running.
    tmux.keys(&["j"]);
    tmux.wait_for("zulu is selected", selected("zulu"));
    tmux.keys(&["x"]);
    tmux.wait_for("top asks before stopping zulu", |s| {
        s.contains("Stop zulu? (y/n)")
    });
    tmux.keys(&["n"]);
    tmux.wait_for("the question is gone", |s| s.contains("q quit"));
    assert_eq!(listed_state(&home, "zulu"), "running");
    assert!(!procfs::with_marker(&zulu).is_empty());

    // x and y: zulu is stopped, its process gone, its row too.
    tmux.keys(&["x"]);
    tmux.wait_for("top asks again", |s| s.contains("Stop zulu? (y/n)"));
    tmux.keys(&["y"]);
    wait_until(SOON, "ps says zulu is stopped", || {
        listed_state(&home, "zulu") == "stopped"
    });
    wait_gone(&zulu, "zulu");
    let screen = tmux.wait_for("zulu leaves the table", |s| {
        row(s, "zulu").is_none() && row(s, "alpha").is_some()
    });
    assert!(screen.contains("zulu: stopped by SIGTERM"), "{screen}");
    assert!(screen.contains("2 of 2 running"), "{screen}");

    // K and y: alpha is killed.
    tmux.keys(&["Home"]);
    tmux.wait_for("alpha is selected", selected("alpha"));
    tmux.keys(&["K"]);
    tmux.wait_for("top asks before killing alpha", |s| {
        s.contains("Kill alpha (SIGKILL to its whole tree)? (y/n)")
    });
    tmux.keys(&["y"]);
    wait_until(SOON, "ps says alpha is stopped", || {
        listed_state(&home, "alpha") == "stopped"
    });
    wait_gone(&alpha, "alpha");
    let agent = home.inspect("alpha");
    assert_eq!(agent["signal"], "SIGKILL", "{agent}");
    tmux.wait_for("alpha leaves the table", |s| row(s, "alpha").is_none());
    assert_eq!(listed_state(&home, "printer"), "running");

    // q: back to the shell, its screen as it was, the terminal usable.
    tmux.keys(&["q"]);
    tmux.wait_for_pane("#{pane_current_command}", "sh");
    let screen = tmux.wait_for("the shell's screen is back", |s| {
        s.contains("top --interval 300ms")
    });
    assert!(
        !screen.contains("NAME"),
        "top's table is still shown:\n{screen}"
    );
    assert_eq!(tmux.pane("#{cursor_flag}"), "1", "the cursor is hidden");
    tmux.type_text("echo \"top exited with $?\"; stty -a");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the shell ran the line", |s| {
        s.contains("top exited with") && s.contains("icanon")
    });
    assert!(screen.contains("top exited with 0"), "{screen}");
    let modes: Vec<&str> = screen.split_whitespace().collect();
    for mode in ["icanon", "echo", "isig", "icrnl", "opost"] {
        assert!(
            modes.contains(&mode),
            "the terminal is left without {mode}:\n{screen}"
        );
    }
    // Only the agent that was left alone still runs.
    assert!(!procfs::with_marker(&printer).is_empty());
}

#[test]
fn top_all_shows_ended_agents_and_rides_out_a_daemon_restart() {
    let home = Home::new();
    let seconds = marker();
    home.run(&["--name", "worker", "--", "sleep", &seconds]);
    let done = home.run(&["--name", "finished", "--", "true"]);
    home.ok(&["wait", &done]);

    let tmux = Tmux::start(&home, 80, 24, "sh");
    tmux.wait_for("the shell prompts", |s| !s.trim().is_empty());
    tmux.type_text(&format!("{WRANGLE} top --all -d 200ms"));
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("ended agents are listed too", |s| {
        row(s, "finished").is_some_and(|r| r.contains("completed"))
            && row(s, "worker").is_some_and(|r| r.contains("running"))
    });
    assert!(screen.contains("1 of 2 running"), "{screen}");
    assert!(screen.contains("ended ones too"), "{screen}");

    // A narrower terminal: fewer columns, no line wider than the screen;
    // back to 80, all of them again.
    tmux.ok(&["resize-window", "-t", "top", "-x", "50", "-y", "20"]);
    let screen = tmux.wait_for("the table fits 50 columns", |s| {
        s.contains("CPU%") && !s.contains("UPTIME") && row(s, "worker").is_some()
    });
    assert!(
        screen.lines().all(|line| line.chars().count() <= 50),
        "{screen}"
    );
    tmux.ok(&["resize-window", "-t", "top", "-x", "80", "-y", "24"]);
    tmux.wait_for("the table is 80 columns wide again", |s| {
        s.contains("UPTIME") && row(s, "finished").is_some()
    });

    // The daemon goes away: top says so and keeps the last table.
    home.ok(&["daemon", "stop"]);
    let screen = tmux.wait_for("top says the daemon is gone", |s| {
        s.contains("daemon unreachable, retrying every 0.20s")
    });
    assert!(row(&screen, "worker").is_some(), "{screen}");
    assert_eq!(
        tmux.pane("#{pane_current_command}"),
        "wrangle",
        "top ended:\n{screen}"
    );
    assert!(home.daemon_pid().is_none(), "top started a daemon");

    // A new daemon (started by any CLI call): top picks it up.
    home.ok(&["ps"]);
    tmux.wait_for("top reads the new daemon", |s| {
        !s.contains("daemon unreachable") && row(s, "worker").is_some_and(|r| r.contains("running"))
    });

    // Ctrl-C quits cleanly.
    tmux.keys(&["C-c"]);
    tmux.wait_for_pane("#{pane_current_command}", "sh");
    tmux.type_text("echo \"top exited with $?\"");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("the shell says how top ended", |s| {
        s.lines().any(|l| l.starts_with("top exited with"))
    });
    assert!(screen.contains("top exited with 0"), "{screen}");
    assert!(
        !screen.contains("NAME"),
        "top's screen was not left:\n{screen}"
    );
    assert_eq!(listed_state(&home, "worker"), "running");
}

#[test]
fn top_needs_a_terminal_and_a_sane_interval() {
    let home = Home::new();
    let output = home.fails(&["top"]);
    assert_eq!(
        output.stderr,
        "wrangle: top needs a terminal; `wrangle ps` lists agents as text\n"
    );
    // Nothing was started for it.
    assert!(home.daemon_pid().is_none());
    let output = home.fails(&["top", "--interval", "10ms"]);
    assert_eq!(output.code(), 2);
    assert!(output.stderr.contains("too short"), "{}", output.stderr);
}

#[test]
fn top_shows_a_change_as_it_happens_not_at_its_next_refresh() {
    let home = Home::new();
    let seconds = marker();
    home.run(&["--name", "steady", "--", "sleep", &seconds]);
    let tmux = Tmux::start(&home, 80, 24, "sh");
    tmux.wait_for("the shell prompts", |s| !s.trim().is_empty());
    // An hour between refreshes: only the event stream can update it.
    tmux.type_text(&format!("{WRANGLE} top --all --interval 1h"));
    tmux.keys(&["Enter"]);
    tmux.wait_for("top lists the agent", |s| {
        row(s, "steady").is_some_and(|r| r.contains("running"))
    });
    home.run(&["--name", "newcomer", "--", "sleep", &seconds]);
    tmux.wait_for("top lists the new agent", |s| {
        row(s, "newcomer").is_some_and(|r| r.contains("running"))
    });
    home.ok(&["stop", "steady"]);
    let screen = tmux.wait_for("top shows the stop", |s| {
        row(s, "steady").is_some_and(|r| r.contains("stopped"))
    });
    assert!(screen.contains("1 of 2 running"), "{screen}");
    tmux.keys(&["q"]);
    tmux.wait_for("top has quit", |_| {
        tmux.pane("#{pane_current_command}") != "wrangle"
    });
}
