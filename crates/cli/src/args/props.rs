//! Property tests of the command line's values (issue 16): whatever is
//! given to a flag that wrangle checks itself, clap answers with the
//! value taken or an error, never a panic; and a value wrangle refuses is
//! named in the message, which says what is accepted.

use super::Cli;
use clap::error::ErrorKind;
use clap::Parser;
use proptest::prelude::*;
use std::error::Error as _;

/// Each checked value: the arguments around it (`{}` is the value) and
/// words of which the refusal says one (what is accepted).
const FLAGS: &[(&[&str], &[&str])] = &[
    (&["ps", "--filter", "{}"], &["state=STATE"]),
    (
        &["group", "set", "g", "--max-running", "{}"],
        &["whole number of agents"],
    ),
    (
        &["group", "set", "g", "--budget-usd", "{}"],
        &["US dollars"],
    ),
    (
        &["daemon", "--max-running", "{}"],
        &["whole number of agents"],
    ),
    (
        &["daemon", "--sample-interval", "{}"],
        &["500ms", "at least 10ms", "the longest is"],
    ),
    (
        &["daemon", "--events-keep", "{}"],
        &["500ms", "longer than zero", "the longest is"],
    ),
    (&["cost", "--by", "{}"], &["agent, group, model or day"]),
    (&["cost", "--since", "{}"], &["today"]),
    (
        &["events", "--since", "{}"],
        &[
            "a duration like 10m",
            "duration ago",
            "at most",
            "shorter duration",
        ],
    ),
    (
        &["events", "--type", "{}"],
        &["the types are", "give a type such as"],
    ),
    (&["events", "--group", "{}"], &["a-z, 0-9"]),
    (
        &["top", "--interval", "{}"],
        &["500ms", "100ms or more", "the longest is"],
    ),
    (&["kill", "a", "--signal", "{}"], &["TERM"]),
    (
        &["stop", "--all", "--timeout", "{}"],
        &["500ms", "the longest is"],
    ),
    (&["logs", "{}"], &["id, a name or a unique id prefix"]),
    (&["run", "--name", "{}", "--", "true"], &["a-z, 0-9"]),
    (&["run", "--env", "{}", "--", "true"], &["KEY=VALUE"]),
    (&["run", "--stop-signal", "{}", "--", "true"], &["TERM"]),
    (
        &["run", "--memory-max", "{}", "--", "true"],
        &["64M", "at least 1M", "1048576T"],
    ),
    (&["run", "--cpu-max", "{}", "--", "true"], &["cores"]),
    (
        &["run", "--pids-max", "{}", "--", "true"],
        &["whole number"],
    ),
    (
        &["run", "--idle-timeout", "{}", "--", "true"],
        &["500ms", "longer than 0", "the longest is"],
    ),
    (&["run", "--linger", "{}", "--", "true"], &["never"]),
    (&["run", "--adapter", "{}", "--", "true"], &["use auto"]),
    (
        &["run", "--telemetry", "{}", "--", "true"],
        &["auto, on or off"],
    ),
    (&["run", "--restart", "{}", "--", "true"], &["on-failure"]),
    (
        &["run", "--budget-tokens", "{}", "--", "true"],
        &["whole number of tokens"],
    ),
    (
        &["run", "--health-tcp", "{}", "--", "true"],
        &["invalid --health-tcp"],
    ),
    (
        &["run", "--health-http", "{}", "--", "true"],
        &["invalid --health-http"],
    ),
    (
        &[
            "run",
            "--health-cmd",
            "x",
            "--health-retries",
            "{}",
            "--",
            "true",
        ],
        &["at least 1"],
    ),
];

/// Values near valid ones, and any text.
fn value() -> impl Strategy<Value = String> {
    let valid = prop::sample::select(vec![
        "state=running",
        "label=team=a",
        "5",
        "none",
        "1.5",
        "250ms",
        "1h",
        "model",
        "today",
        "2026-12-06",
        "1234",
        "agent.exited",
        "web-1",
        "TERM",
        "64M",
        "0.5",
        "never",
        "claude",
        "on",
        "on-failure",
        "200_000",
        "127.0.0.1:80",
        "http://[::1]:8080/x",
        "3",
        "",
    ]);
    let odd = prop::sample::select(vec![
        "",
        "0",
        "-",
        "-1",
        "=",
        ",",
        " ",
        "\0",
        "é",
        "\u{202e}",
        "99999999999999999999",
        "1e400",
        "NaN",
        "s",
        "T",
        "SIG",
        "[",
        ":",
        "none",
    ]);
    prop_oneof![
        1 => any::<String>(),
        3 => (valid, odd, any::<prop::sample::Index>(), 0..4u8).prop_map(|(valid, odd, at, how)| {
            let at = valid.char_indices().map(|(i, _)| i).chain([valid.len()]).nth(at.index(valid.chars().count() + 1)).unwrap_or(0);
            match how {
                0 => format!("{}{odd}{}", &valid[..at], &valid[at..]),
                1 => valid[..at].to_string(),
                2 => format!("{valid}{odd}"),
                _ => valid.to_string(),
            }
        }),
    ]
}

/// Whether `message` names `value`: as given or trimmed in its `{:?}`
/// form, one of its comma-separated parts, or, when it is blank (or only
/// commas), by saying so.
fn names(message: &str, value: &str) -> bool {
    let quoted = |text: &str| message.contains(&format!("{text:?}"));
    quoted(value)
        || quoted(value.trim())
        || value.split(',').any(|part| quoted(part.trim()))
        || (value.split(',').all(|part| part.trim().is_empty()) && message.contains("empty"))
}

proptest! {
    // Many cases, as each is cheap (a clap parse) and there are 30 flags.
    #![proptest_config(ProptestConfig { cases: crate::proptest_config().cases * 8, ..crate::proptest_config() })]

    #[test]
    fn any_value_is_taken_or_refused_by_name(flag in prop::sample::select(FLAGS), value in value()) {
        let (args, says) = flag;
        let args: Vec<String> = std::iter::once("wrangle".to_string())
            .chain(args.iter().map(|arg| arg.replace("{}", &value)))
            .collect();
        let Err(error) = Cli::try_parse_from(&args) else {
            return Ok(());
        };
        // A value that starts like a flag is clap's to refuse; one of
        // wrangle's parsers refused the others.
        if error.kind() == ErrorKind::ValueValidation {
            let message = error.source().map(ToString::to_string).unwrap_or_default();
            prop_assert!(names(&message, &value), "{args:?}: {message:?} does not name {value:?}");
            prop_assert!(says.iter().any(|said| message.contains(said)), "{args:?}: {message:?} says none of {says:?}");
        }
    }
}
