//! Small formatters for what the CLI shows people: uptimes, command lines,
//! times.

use chrono::{DateTime, SecondsFormat, Utc};
use std::borrow::Cow;
use std::fmt::Write as _;

/// `3s`, `5m12s`, `2h3m`, `4d5h`: the two largest units of a run time;
/// `-` when there is none.
pub fn uptime(seconds: Option<f64>) -> String {
    let Some(seconds) = seconds.filter(|s| s.is_finite() && *s >= 0.0) else {
        return "-".into();
    };
    // Whole seconds: a table has no room for fractions.
    let total = seconds as u64;
    let (days, hours, minutes, secs) = (
        total / 86_400,
        total / 3_600 % 24,
        total / 60 % 60,
        total % 60,
    );
    if total < 60 {
        format!("{secs}s")
    } else if total < 3_600 {
        format!("{minutes}m{secs}s")
    } else if total < 86_400 {
        format!("{hours}h{minutes}m")
    } else {
        format!("{days}d{hours}h")
    }
}

/// One argument as a POSIX shell would need it written: as it is when
/// that is safe, else in single quotes, or `$'...'` when it holds control
/// characters (which must not break a table's line).
pub fn shell_quote(arg: &str) -> Cow<'_, str> {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-+=:,./@%".contains(c);
    if !arg.is_empty() && arg.chars().all(safe) {
        return Cow::Borrowed(arg);
    }
    if !arg.chars().any(char::is_control) {
        return Cow::Owned(format!("'{}'", arg.replace('\'', r"'\''")));
    }
    let mut quoted = String::from("$'");
    for c in arg.chars() {
        match c {
            '\n' => quoted.push_str(r"\n"),
            '\t' => quoted.push_str(r"\t"),
            '\r' => quoted.push_str(r"\r"),
            '\\' => quoted.push_str(r"\\"),
            '\'' => quoted.push_str(r"\'"),
            c if c.is_control() => {
                // `\u` keeps the escape readable for the few non-ASCII
                // control characters.
                if (c as u32) < 0x80 {
                    let _ = write!(quoted, r"\x{:02x}", c as u32);
                } else {
                    let _ = write!(quoted, r"\u{:04x}", c as u32);
                }
            }
            c => quoted.push(c),
        }
    }
    quoted.push('\'');
    Cow::Owned(quoted)
}

/// An argv as one line a person could paste into a shell.
pub fn command_line(argv: &[String]) -> String {
    argv.iter()
        .map(|arg| shell_quote(arg))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` cut to at most `max` characters, ending in `…` when cut.
pub fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    if text.chars().count() <= max {
        return Cow::Borrowed(text);
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    Cow::Owned(format!("{kept}…"))
}

/// RFC 3339 in UTC with microseconds, as `logs --timestamps` prints it:
/// `2024-05-01T12:00:00.000001Z`.
pub fn timestamp_micros(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// RFC 3339 in UTC with milliseconds, as `inspect` prints times.
pub fn timestamp_millis(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Bytes for people, in binary units: `812K`, `1.4M`, `3.2G`.
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if count < 1024 {
        return format!("{count}B");
    }
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1}{}", UNITS[unit])
    } else {
        format!("{value:.0}{}", UNITS[unit])
    }
}

/// CPU for people: `0.0%`, `12.5%`, `180%`.
pub fn cpu_percent(percent: f64) -> String {
    if percent < 100.0 {
        format!("{percent:.1}%")
    } else {
        format!("{percent:.0}%")
    }
}

/// US dollars for people: four places under a dollar, where single runs
/// cost (`$0.0523`), two from there on (`$12.34`).
pub fn usd(amount: f64) -> String {
    if amount.abs() < 1.0 {
        format!("${amount:.4}")
    } else {
        format!("${amount:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn dollars_show_cents_or_finer() {
        assert_eq!(usd(0.0523), "$0.0523");
        assert_eq!(usd(0.0), "$0.0000");
        assert_eq!(usd(12.345), "$12.35");
    }

    #[test]
    fn uptimes_show_two_units() {
        assert_eq!(uptime(None), "-");
        assert_eq!(uptime(Some(f64::NAN)), "-");
        assert_eq!(uptime(Some(-1.0)), "-");
        assert_eq!(uptime(Some(0.4)), "0s");
        assert_eq!(uptime(Some(3.9)), "3s");
        assert_eq!(uptime(Some(59.0)), "59s");
        assert_eq!(uptime(Some(60.0)), "1m0s");
        assert_eq!(uptime(Some(312.0)), "5m12s");
        assert_eq!(uptime(Some(3_600.0)), "1h0m");
        assert_eq!(uptime(Some(7_380.0)), "2h3m");
        assert_eq!(uptime(Some(86_399.0)), "23h59m");
        assert_eq!(uptime(Some(4.0 * 86_400.0 + 5.0 * 3_600.0 + 59.0)), "4d5h");
    }

    #[test]
    fn arguments_are_quoted_only_when_needed() {
        assert_eq!(shell_quote("sleep"), "sleep");
        assert_eq!(shell_quote("--model=opus/4.1"), "--model=opus/4.1");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("two words"), "'two words'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(shell_quote("a*"), "'a*'");
        assert_eq!(shell_quote("~"), "'~'");
        assert_eq!(shell_quote("line\nnext"), r"$'line\nnext'");
        assert_eq!(shell_quote("it's\t\x01"), r"$'it\'s\t\x01'");
        assert_eq!(shell_quote("ümlaut"), "'ümlaut'");
    }

    #[test]
    fn command_lines_join_quoted_arguments() {
        let argv = ["sh", "-c", "echo hi; sleep 1"].map(String::from);
        assert_eq!(command_line(&argv), "sh -c 'echo hi; sleep 1'");
        assert_eq!(command_line(&[]), "");
    }

    #[test]
    fn truncation_counts_characters_and_marks_the_cut() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("exactly10!", 10), "exactly10!");
        assert_eq!(truncate("this is too long", 10), "this is t…");
        assert_eq!(truncate("ééééé", 3), "éé…");
        assert_eq!(truncate("abc", 10).chars().count(), 3);
        assert_eq!(truncate(&"x".repeat(80), 50).chars().count(), 50);
    }

    #[test]
    fn bytes_and_cpu_fit_a_narrow_column() {
        assert_eq!(bytes(1023), "1023B");
        assert_eq!(bytes(1536), "1.5K");
        assert_eq!(bytes(1023 * 1024 * 1024), "1023M");
        assert_eq!(bytes(3 << 30), "3.0G");
        assert_eq!(cpu_percent(0.0), "0.0%");
        assert_eq!(cpu_percent(99.94), "99.9%");
        assert_eq!(cpu_percent(180.4), "180%");
    }

    #[test]
    fn timestamps_are_utc_rfc3339() {
        let time = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 7).unwrap()
            + chrono::Duration::microseconds(42);
        assert_eq!(timestamp_micros(&time), "2024-05-01T12:00:07.000042Z");
        assert_eq!(timestamp_millis(&time), "2024-05-01T12:00:07.000Z");
    }
}
