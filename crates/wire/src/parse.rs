//! Parsers for what users type: agent names, durations, signals and
//! `KEY=VALUE` pairs. The daemon and the CLI use the same ones, so a
//! mistake gets the same message wherever it is made.

use std::time::Duration;

/// Longest agent name.
pub const MAX_NAME_LEN: usize = 63;

/// Checks an agent name against `[a-z0-9][a-z0-9._-]{0,62}`.
pub fn validate_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid_first = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let valid_rest =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if valid_first && valid_rest && name.len() <= MAX_NAME_LEN {
        Ok(())
    } else {
        Err(format!(
            "invalid agent name {name:?}: a name is 1 to {MAX_NAME_LEN} characters of a-z, 0-9, '.', '_' or '-', and starts with a letter or digit"
        ))
    }
}

/// Parses a duration: `10s`, `500ms`, `2m`, `1h30m`, or a bare number of
/// seconds (`10`, `0.5`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let bad = || {
        format!("invalid duration {text:?}: use a number of seconds or a value like 500ms, 10s, 2m, 1h30m")
    };
    if trimmed.is_empty() {
        return Err(bad());
    }
    if let Ok(seconds) = trimmed.parse::<f64>() {
        return if seconds.is_finite() && (0.0..1e9).contains(&seconds) {
            Ok(Duration::from_secs_f64(seconds))
        } else {
            Err(bad())
        };
    }
    humantime::parse_duration(trimmed).map_err(|_| bad())
}

/// Parses an idle timeout: a duration ([`parse_duration`]) above zero.
pub fn parse_idle_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_duration(text)?;
    if timeout.is_zero() {
        return Err(format!(
            "invalid idle timeout {text:?}: it must be longer than 0 (leave it out to never call the agent hung)"
        ));
    }
    Ok(timeout)
}

/// Shortest tick the daemon's sampler takes.
pub const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(10);

/// Parses the sampler's tick: a duration of at least
/// [`MIN_SAMPLE_INTERVAL`].
pub fn parse_sample_interval(text: &str) -> Result<Duration, String> {
    let interval = parse_duration(text)?;
    if interval < MIN_SAMPLE_INTERVAL {
        return Err(format!(
            "invalid sample interval {text:?}: it must be at least {}ms",
            MIN_SAMPLE_INTERVAL.as_millis()
        ));
    }
    Ok(interval)
}

/// Formats a duration the way wrangle prints it: `0.02s`, `1.5s`, `15s`.
pub fn format_seconds(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds >= 10.0 {
        format!("{seconds:.0}s")
    } else if seconds >= 1.0 {
        let text = format!("{seconds:.1}");
        format!("{}s", text.trim_end_matches(".0"))
    } else {
        format!("{seconds:.2}s")
    }
}

/// Linux signal numbers and names (x86_64, arm64 and most others).
const SIGNALS: [(i32, &str); 31] = [
    (1, "SIGHUP"),
    (2, "SIGINT"),
    (3, "SIGQUIT"),
    (4, "SIGILL"),
    (5, "SIGTRAP"),
    (6, "SIGABRT"),
    (7, "SIGBUS"),
    (8, "SIGFPE"),
    (9, "SIGKILL"),
    (10, "SIGUSR1"),
    (11, "SIGSEGV"),
    (12, "SIGUSR2"),
    (13, "SIGPIPE"),
    (14, "SIGALRM"),
    (15, "SIGTERM"),
    (16, "SIGSTKFLT"),
    (17, "SIGCHLD"),
    (18, "SIGCONT"),
    (19, "SIGSTOP"),
    (20, "SIGTSTP"),
    (21, "SIGTTIN"),
    (22, "SIGTTOU"),
    (23, "SIGURG"),
    (24, "SIGXCPU"),
    (25, "SIGXFSZ"),
    (26, "SIGVTALRM"),
    (27, "SIGPROF"),
    (28, "SIGWINCH"),
    (29, "SIGIO"),
    (30, "SIGPWR"),
    (31, "SIGSYS"),
];

/// Parses a signal: `TERM`, `SIGTERM`, `sigterm` or `15`.
pub fn parse_signal(text: &str) -> Result<i32, String> {
    let trimmed = text.trim();
    if let Ok(number) = trimmed.parse::<i32>() {
        if SIGNALS.iter().any(|(n, _)| *n == number) {
            return Ok(number);
        }
    } else {
        let upper = trimmed.to_ascii_uppercase();
        let wanted = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        if let Some((number, _)) = SIGNALS.iter().find(|(_, name)| *name == wanted) {
            return Ok(*number);
        }
    }
    Err(format!(
        "invalid signal {text:?}: use a name like TERM, SIGINT, KILL or a number from 1 to 31"
    ))
}

/// The name of a signal number, e.g. `SIGTERM`; `signal N` when unknown.
pub fn signal_name(number: i32) -> String {
    SIGNALS
        .iter()
        .find(|(n, _)| *n == number)
        .map(|(_, name)| (*name).to_string())
        .unwrap_or_else(|| format!("signal {number}"))
}

/// Parses `KEY=VALUE` of `--env`; the value may be empty or contain `=`.
pub fn parse_env_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) => {
            validate_env_key(key)?;
            Ok((key.to_string(), value.to_string()))
        }
        None => Err(format!("invalid --env {text:?}: expected KEY=VALUE")),
    }
}

/// Checks an environment variable name: not empty, no `=` and no NUL.
pub fn validate_env_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.contains('=') || key.contains('\0') {
        Err(format!(
            "invalid environment variable name {key:?}: it must be non-empty and contain neither '=' nor NUL"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_pattern() {
        for good in ["a", "build-1", "x.y_z", "0abc", &"a".repeat(63)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            ".a",
            "A",
            "has space",
            "ümlaut",
            &"a".repeat(64),
            "a/b",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_accept_units_and_bare_seconds() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("0.25").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "ten", "-1", "10x", "inf", "NaN"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("invalid duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn idle_timeouts_and_sample_intervals_have_a_floor() {
        assert_eq!(parse_idle_timeout("30s").unwrap(), Duration::from_secs(30));
        assert!(parse_idle_timeout("0")
            .unwrap_err()
            .contains("longer than 0"));
        assert!(parse_idle_timeout("bogus")
            .unwrap_err()
            .contains("invalid duration"));
        assert_eq!(
            parse_sample_interval("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            parse_sample_interval("1ms").unwrap_err(),
            "invalid sample interval \"1ms\": it must be at least 10ms"
        );
        assert!(parse_sample_interval("x").is_err());
    }

    #[test]
    fn seconds_are_formatted_for_people() {
        assert_eq!(format_seconds(Duration::from_millis(20)), "0.02s");
        assert_eq!(format_seconds(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_seconds(Duration::from_secs(2)), "2s");
        assert_eq!(format_seconds(Duration::from_secs(15)), "15s");
    }

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("TERM").unwrap(), 15);
        assert_eq!(parse_signal("sigint").unwrap(), 2);
        assert_eq!(parse_signal("SIGKILL").unwrap(), 9);
        assert_eq!(parse_signal("1").unwrap(), 1);
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("SIGFOO").is_err());
        assert!(parse_signal("").is_err());
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(64), "signal 64");
    }

    #[test]
    fn env_pairs_need_an_equals_sign() {
        assert_eq!(parse_env_pair("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(
            parse_env_pair("EMPTY=").unwrap(),
            ("EMPTY".into(), String::new())
        );
        assert!(parse_env_pair("NOEQUALS").is_err());
        assert!(parse_env_pair("=value").is_err());
    }
}
