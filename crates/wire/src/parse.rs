//! Parsers for what users type: agent names, durations, signals, sizes,
//! resource limits, `KEY=VALUE` pairs and health probe targets. The daemon
//! and the CLI use the same ones, so a mistake gets the same message
//! wherever it is made.

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

/// Longest duration taken, about 31 years: longer than any timeout needs,
/// and far from overflowing a clock (`Instant + duration` panics) or a
/// count of milliseconds.
pub const MAX_DURATION: Duration = Duration::from_secs(1_000_000_000);

/// Parses a duration: `10s`, `500ms`, `2m`, `1h30m`, or a bare number of
/// seconds (`10`, `0.5`); at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let bad = || {
        format!("invalid duration {text:?}: use a number of seconds or a value like 500ms, 10s, 2m, 1h30m")
    };
    if trimmed.is_empty() {
        return Err(bad());
    }
    let duration = match trimmed.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            // Checked before the conversion, which panics past u64 seconds.
            if seconds > MAX_DURATION.as_secs_f64() {
                MAX_DURATION + Duration::from_secs(1)
            } else {
                Duration::from_secs_f64(seconds)
            }
        }
        Ok(_) => return Err(bad()),
        Err(_) => humantime::parse_duration(trimmed).map_err(|_| bad())?,
    };
    if duration > MAX_DURATION {
        return Err(format!(
            "invalid duration {text:?}: the longest is {}s (about 31 years)",
            MAX_DURATION.as_secs()
        ));
    }
    Ok(duration)
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

/// Binary units of sizes: `K` is 1024 bytes.
const SIZE_UNITS: [(&str, u64); 5] = [
    ("", 1),
    ("k", 1 << 10),
    ("m", 1 << 20),
    ("g", 1 << 30),
    ("t", 1 << 40),
];

/// Largest size wrangle takes (1048576T): far beyond any machine, well
/// inside `u64`.
pub const MAX_SIZE: u64 = 1 << 60;

/// Parses a size: `64M`, `1.5G`, `512K`, `2T` or a plain number of bytes.
/// Units are binary (`K` = 1024) and may be written `m`, `MB` or `MiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let bad =
        || format!("invalid size {text:?}: use a number of bytes or a value like 512K, 64M, 1.5G");
    let too_large = || format!("invalid size {text:?}: the largest is 1048576T");
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let multiplier = SIZE_UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, multiplier)| *multiplier)
        .ok_or_else(bad)?;
    if !number.contains('.') {
        // Whole numbers exactly: through f64, a count of bytes past 2^53
        // would come back as another number.
        let value: u64 = match number.parse() {
            Ok(value) => value,
            Err(_) if !number.is_empty() => return Err(too_large()),
            Err(_) => return Err(bad()),
        };
        return value
            .checked_mul(multiplier)
            .filter(|bytes| *bytes <= MAX_SIZE)
            .ok_or_else(too_large);
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    if multiplier == 1 && value.fract() != 0.0 {
        return Err(bad());
    }
    let bytes = value * multiplier as f64;
    if bytes > MAX_SIZE as f64 {
        return Err(too_large());
    }
    Ok(bytes as u64)
}

/// Formats a size for people with binary units: `64 MiB`, `1.5 GiB`, `512 B`.
pub fn format_size(bytes: u64) -> String {
    let (name, unit) = [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ]
    .into_iter()
    .find(|(_, unit)| bytes >= *unit)
    .unwrap_or(("B", 1));
    let value = bytes as f64 / unit as f64;
    let text = format!("{value:.1}");
    format!("{} {name}", text.trim_end_matches(".0"))
}

/// Smallest memory limit: below it not even a shell can start.
pub const MIN_MEMORY_MAX: u64 = 1 << 20;

/// Parses `--memory-max`: a size (see [`parse_size`]) of at least 1M.
pub fn parse_memory_max(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text).map_err(|error| format!("invalid memory limit: {error}"))?;
    if bytes < MIN_MEMORY_MAX {
        return Err(format!(
            "invalid memory limit {text:?}: it must be at least 1M, or nothing could run in it"
        ));
    }
    Ok(bytes)
}

/// Smallest size a log is rotated at.
pub const MIN_LOG_MAX_SIZE: u64 = 1 << 10;

/// Parses `--log-max-size`: a size (see [`parse_size`]) of at least 1K.
pub fn parse_log_max_size(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text).map_err(|error| format!("invalid log size: {error}"))?;
    if bytes < MIN_LOG_MAX_SIZE {
        return Err(format!(
            "invalid log size {text:?}: a log is rotated at 1K or more, like 10M"
        ));
    }
    Ok(bytes)
}

/// Most log files kept per stream.
pub const MAX_LOG_FILES: u32 = 1000;

/// Checks `--log-max-files`: from 1 (the current file only) to 1000.
pub fn check_log_max_files(files: u32) -> Result<u32, String> {
    if (1..=MAX_LOG_FILES).contains(&files) {
        Ok(files)
    } else {
        Err(format!(
            "invalid number of log files {files}: keep from 1 (the current file only) to {MAX_LOG_FILES}"
        ))
    }
}

/// Parses `--log-max-files` (see [`check_log_max_files`]).
pub fn parse_log_max_files(text: &str) -> Result<u32, String> {
    let refused = || {
        format!(
            "invalid number of log files {text:?}: keep a whole number from 1 (the current file only) to {MAX_LOG_FILES}"
        )
    };
    let files = text.trim().parse::<u32>().map_err(|_| refused())?;
    check_log_max_files(files).map_err(|_| refused())
}

/// Smallest CPU limit: the kernel's shortest CFS quota (1 ms) per 100 ms.
pub const MIN_CPU_MAX: f64 = 0.01;
/// Largest CPU limit taken.
pub const MAX_CPU_MAX: f64 = 100_000.0;

/// Parses `--cpu-max`: a number of cores, e.g. `0.5`, `1`, `2.5`.
pub fn parse_cpu_max(text: &str) -> Result<f64, String> {
    let cores: f64 = text.trim().parse().map_err(|_| cpu_max_error(text))?;
    check_cpu_max(cores).map_err(|_| cpu_max_error(text))
}

/// Checks a CPU limit in cores: from 0.01 to 100000.
pub fn check_cpu_max(cores: f64) -> Result<f64, String> {
    if cores.is_finite() && (MIN_CPU_MAX..=MAX_CPU_MAX).contains(&cores) {
        Ok(cores)
    } else {
        Err(cpu_max_error(&cores.to_string()))
    }
}

fn cpu_max_error(text: &str) -> String {
    format!(
        "invalid CPU limit {text:?}: use a number of cores from {MIN_CPU_MAX} up, like 0.5, 1 or 2"
    )
}

/// Largest process or open-file limit taken (the kernel's own bound).
pub const MAX_COUNT_LIMIT: u64 = i32::MAX as u64;

/// Parses `--pids-max` or `--nofile` (named by `what`, e.g. `process
/// limit`): a whole number of at least 1.
pub fn parse_count_limit(what: &str, text: &str) -> Result<u64, String> {
    let count = text
        .trim()
        .parse::<u64>()
        .map_err(|_| count_limit_error(what, text))?;
    check_count_limit(what, count).map_err(|_| count_limit_error(what, text))
}

/// Checks a process or open-file limit: from 1 to 2147483647.
pub fn check_count_limit(what: &str, count: u64) -> Result<u64, String> {
    if (1..=MAX_COUNT_LIMIT).contains(&count) {
        Ok(count)
    } else {
        Err(count_limit_error(what, &count.to_string()))
    }
}

fn count_limit_error(what: &str, text: &str) -> String {
    format!("invalid {what} {text:?}: use a whole number from 1 to {MAX_COUNT_LIMIT}")
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

/// Parses `KEY=VALUE` of `--env`; the value may be empty or contain `=`,
/// neither may contain NUL (the daemon refuses it too).
pub fn parse_env_pair(text: &str) -> Result<(String, String), String> {
    let bad = |why: &str| format!("invalid --env {text:?}: {why}");
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| bad("expected KEY=VALUE"))?;
    if key.is_empty() {
        return Err(bad("expected KEY=VALUE, the KEY not empty"));
    }
    if text.contains('\0') {
        return Err(bad("a KEY=VALUE cannot contain NUL"));
    }
    Ok((key.to_string(), value.to_string()))
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

/// Parses a duration that must be longer than zero, such as a health
/// probe's interval or timeout.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        Err(format!(
            "invalid duration {text:?}: it must be longer than zero"
        ))
    } else {
        Ok(duration)
    }
}

/// Checks a health probe's retries: the failures in a row that make an
/// agent unhealthy; at least one.
pub fn validate_health_retries(retries: u32) -> Result<u32, String> {
    if retries == 0 {
        Err(
            "invalid health retries 0: it takes at least 1 failed probe to make an agent unhealthy"
                .into(),
        )
    } else {
        Ok(retries)
    }
}

/// Where a TCP connection goes: a host name or IP address and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name, IPv4 address, or IPv6 address without its brackets.
    pub host: String,
    /// Port, 1 to 65535.
    pub port: u16,
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses `HOST:PORT` of `--health-tcp`: `127.0.0.1:8080`,
/// `localhost:5432`, `[::1]:80`.
pub fn parse_host_port(text: &str) -> Result<HostPort, String> {
    let bad = |why: &str| format!("invalid --health-tcp {text:?}: {why}");
    match split_authority(text).map_err(|why| bad(&why))? {
        (host, Some(port)) => Ok(HostPort { host, port }),
        (_, None) => Err(bad("expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080")),
    }
}

/// An `http://` URL split into what a probe needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host and port (80 when the URL gives none).
    pub address: HostPort,
    /// Path and query, from the first `/`; `/` when the URL has none.
    pub path: String,
}

/// Parses the URL of `--health-http`: `http://HOST[:PORT][/PATH]`. Only
/// plain http is spoken; https is refused with a way out.
pub fn parse_http_url(text: &str) -> Result<HttpUrl, String> {
    let bad = |why: &str| format!("invalid --health-http {text:?}: {why}");
    let example = "expected a URL like http://127.0.0.1:8080/health";
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(bad(example));
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(bad(
            "https is not supported by health probes; use an http:// URL, or --health-cmd with a client that speaks TLS (e.g. `curl -fsS https://...`)",
        ));
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(bad(example));
    }
    // The fragment is the client's business; it is never sent.
    let rest = rest.split('#').next().unwrap_or_default();
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    if authority.contains('@') {
        return Err(bad("user names and passwords in the URL are not supported"));
    }
    let (host, port) = split_authority(authority).map_err(|why| bad(&why))?;
    let address = HostPort {
        host,
        port: port.unwrap_or(80),
    };
    if path
        .chars()
        .any(|c| c.is_ascii_whitespace() || c.is_ascii_control())
    {
        return Err(bad("the path contains spaces or control characters"));
    }
    let path = match path {
        "" => "/".to_string(),
        query if query.starts_with('?') => format!("/{query}"),
        path => path.to_string(),
    };
    Ok(HttpUrl { address, path })
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port` and checks both
/// parts; the port is `None` when none is written.
fn split_authority(text: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = match text.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or("an IPv6 address lacks its closing ']'")?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("{host:?} is not an IPv6 address"));
            }
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(format!("unexpected {after:?} after the address")),
                },
            }
        }
        None => match text.split_once(':') {
            Some((_, rest)) if rest.contains(':') => {
                return Err("write an IPv6 address in brackets, e.g. [::1]:8080".into())
            }
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        },
    };
    if host.is_empty() {
        return Err("the host is missing".into());
    }
    let is_name = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if !is_name && !text.starts_with('[') {
        return Err(format!("{host:?} is not a host name or IP address"));
    }
    let port = match port {
        Some("") => return Err("the port after ':' is missing".into()),
        Some(port) => Some(parse_port(port)?),
        None => None,
    };
    Ok((host.to_string(), port))
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 && text.chars().all(|c| c.is_ascii_digit()) => Ok(port),
        _ => Err(format!(
            "invalid port {text:?}: a port is a number from 1 to 65535"
        )),
    }
}

/// Parses an adapter choice: `auto` (`None`) or an adapter's name.
pub fn parse_adapter(text: &str) -> Result<Option<crate::AdapterKind>, String> {
    match text.trim() {
        "auto" => Ok(None),
        name => name.parse().map(Some),
    }
}

/// Parses `--linger`: how long an agent may go on after its final result
/// (a duration), or `never` (`None`).
pub fn parse_linger(text: &str) -> Result<Option<Duration>, String> {
    match text.trim() {
        "never" => Ok(None),
        _ => parse_duration(text).map(Some).map_err(|_| {
            format!("invalid linger {text:?}: give a duration like 30s or 2m, or never")
        }),
    }
}

/// Parses `--budget-usd`: a number of US dollars above zero.
pub fn parse_budget_usd(text: &str) -> Result<f64, String> {
    let usd = text
        .trim()
        .trim_start_matches('$')
        .parse::<f64>()
        .map_err(|_| format!("invalid budget {text:?}: give a number of US dollars, e.g. 0.50"))?;
    check_budget_usd(usd).map_err(|_| {
        format!("invalid budget {text:?}: give a number of US dollars above 0, e.g. 0.50")
    })
}

/// Checks a budget in US dollars: finite and above zero.
pub fn check_budget_usd(usd: f64) -> Result<f64, String> {
    if usd.is_finite() && usd > 0.0 {
        Ok(usd)
    } else {
        Err(format!(
            "invalid budget {usd}: it must be a number of US dollars above 0"
        ))
    }
}

/// Parses `--budget-tokens`: a whole number of tokens, at least 1.
pub fn parse_budget_tokens(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid token budget {text:?}: give a whole number of tokens from 1 up, e.g. 200000"
        )
    };
    let tokens = text
        .trim()
        .replace('_', "")
        .parse::<u64>()
        .map_err(|_| bad())?;
    check_budget_tokens(tokens).map_err(|_| bad())
}

/// Checks a token budget: at least one token.
pub fn check_budget_tokens(tokens: u64) -> Result<u64, String> {
    if tokens == 0 {
        Err("invalid token budget 0: it must be at least 1 token".to_string())
    } else {
        Ok(tokens)
    }
}

/// Parses a point in time given as `what` (e.g. `--since`): an RFC 3339
/// time (`2026-12-06T10:00:00Z`) or a duration before `now` (`90s`, `10m`,
/// `1h30m`).
pub fn parse_time_or_ago(
    what: &str,
    text: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let trimmed = text.trim();
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(trimmed) {
        return Ok(time.with_timezone(&chrono::Utc));
    }
    match humantime::parse_duration(trimmed) {
        Ok(ago) => chrono::Duration::from_std(ago)
            .ok()
            .and_then(|ago| now.checked_sub_signed(ago))
            .ok_or_else(|| {
                format!("invalid {what} {text:?}: too far back; give a time or a shorter duration")
            }),
        Err(_) => Err(format!(
            "invalid {what} {text:?}: give a time (2026-12-06T10:00:00Z) or a duration ago (10m, 2h)"
        )),
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
    fn sizes_take_binary_units_and_plain_bytes() {
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert_eq!(parse_size("64 MB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("512K").unwrap(), 512 << 10);
        assert_eq!(parse_size("2t").unwrap(), 2 << 40);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("100b").unwrap(), 100);
        for bad in [
            "",
            "lots",
            "M",
            "-1M",
            "1.5",
            "1e3",
            "10X",
            "1..2M",
            "99999999999T",
        ] {
            let err = parse_size(bad).unwrap_err();
            assert!(err.contains("invalid size"), "{bad}: {err}");
        }
    }

    #[test]
    fn sizes_are_formatted_with_binary_units() {
        assert_eq!(format_size(64 << 20), "64 MiB");
        assert_eq!(format_size(3 << 29), "1.5 GiB");
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(1536), "1.5 KiB");
    }

    #[test]
    fn limits_refuse_what_cannot_be_enforced() {
        assert_eq!(parse_memory_max("64M").unwrap(), 64 << 20);
        assert!(parse_memory_max("lots")
            .unwrap_err()
            .contains("invalid memory limit"));
        assert!(parse_memory_max("100K")
            .unwrap_err()
            .contains("at least 1M"));
        assert_eq!(parse_cpu_max("0.5").unwrap(), 0.5);
        assert_eq!(parse_cpu_max("2").unwrap(), 2.0);
        for bad in ["0", "-1", "0.001", "NaN", "inf", "half", ""] {
            let err = parse_cpu_max(bad).unwrap_err();
            assert!(err.contains("invalid CPU limit"), "{bad}: {err}");
        }
        assert!(check_cpu_max(0.0).is_err());
        assert_eq!(parse_count_limit("process limit", "5").unwrap(), 5);
        for bad in ["0", "-1", "1.5", "many", "", "99999999999"] {
            let err = parse_count_limit("process limit", bad).unwrap_err();
            assert!(err.starts_with("invalid process limit"), "{bad}: {err}");
        }
        assert!(check_count_limit("open-file limit", 0).is_err());
        assert_eq!(check_count_limit("open-file limit", 32).unwrap(), 32);
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

    #[test]
    fn probe_periods_and_retries_must_be_positive() {
        assert_eq!(
            parse_positive_duration("200ms").unwrap(),
            Duration::from_millis(200)
        );
        for zero in ["0", "0s", "0ms"] {
            let err = parse_positive_duration(zero).unwrap_err();
            assert!(err.contains("must be longer than zero"), "{zero}: {err}");
        }
        assert!(parse_positive_duration("soon")
            .unwrap_err()
            .contains("invalid duration"));
        assert_eq!(validate_health_retries(3), Ok(3));
        assert!(validate_health_retries(0)
            .unwrap_err()
            .contains("at least 1"));
    }

    #[test]
    fn tcp_addresses_need_a_host_and_a_port() {
        let parsed = parse_host_port("127.0.0.1:8080").unwrap();
        assert_eq!((parsed.host.as_str(), parsed.port), ("127.0.0.1", 8080));
        assert_eq!(parsed.to_string(), "127.0.0.1:8080");
        let v6 = parse_host_port("[::1]:9").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 9));
        assert_eq!(v6.to_string(), "[::1]:9");
        assert_eq!(parse_host_port("db.local:5432").unwrap().host, "db.local");
        for (bad, why) in [
            ("localhost", "expected HOST:PORT"),
            ("localhost:", "the port after ':' is missing"),
            (":8080", "the host is missing"),
            ("::1", "write an IPv6 address in brackets"),
            ("[::1]", "expected HOST:PORT"),
            ("host:0", "invalid port \"0\""),
            ("host:65536", "invalid port \"65536\""),
            ("host:+80", "invalid port \"+80\""),
            ("host:http", "invalid port \"http\""),
            ("two words:80", "is not a host name"),
            ("[nope]:80", "\"nope\" is not an IPv6 address"),
            ("[::1:80", "lacks its closing"),
        ] {
            let err = parse_host_port(bad).unwrap_err();
            assert!(
                err.starts_with(&format!("invalid --health-tcp {bad:?}: ")) && err.contains(why),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn http_urls_give_host_port_and_path() {
        let url = parse_http_url("http://127.0.0.1:8080/health?full=1#top").unwrap();
        assert_eq!(url.address.to_string(), "127.0.0.1:8080");
        assert_eq!(url.path, "/health?full=1");
        let url = parse_http_url("HTTP://example.com").unwrap();
        assert_eq!(url.address.to_string(), "example.com:80");
        assert_eq!(url.path, "/");
        let url = parse_http_url("http://[::1]:81?x").unwrap();
        assert_eq!((url.address.host.as_str(), url.address.port), ("::1", 81));
        assert_eq!(url.path, "/?x");
        assert_eq!(
            parse_http_url("http://[::1]/").unwrap().address.to_string(),
            "[::1]:80"
        );
        for (bad, why) in [
            ("https://127.0.0.1/health", "https is not supported"),
            ("127.0.0.1:8080/health", "expected a URL like http://"),
            ("ftp://host/", "expected a URL like http://"),
            ("http://", "the host is missing"),
            ("http://:80/", "the host is missing"),
            ("http://host:/x", "the port after ':' is missing"),
            ("http://host:99999/", "invalid port \"99999\""),
            ("http://user:pw@host/", "user names and passwords"),
            ("http://host/a b", "spaces"),
            ("http://ho st/", "is not a host name"),
        ] {
            let err = parse_http_url(bad).unwrap_err();
            assert!(
                err.starts_with(&format!("invalid --health-http {bad:?}: ")) && err.contains(why),
                "{bad}: {err}"
            );
        }
    }
}
