//! clap's side of the options: each flag's value is checked with the
//! daemon's own parser, so a mistake fails before anything is sent and
//! with the same message; the text is kept as typed.

use crate::parse;

/// A value one of wrangle's own parsers rejected, with the parser's
/// message; told apart from clap's errors so it is printed as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidInput(pub String);

impl std::fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidInput {}

/// Checks `text` with `parser` and keeps it as typed.
fn typed<T>(
    text: &str,
    parser: impl FnOnce(&str) -> Result<T, String>,
) -> Result<String, InvalidInput> {
    parser(text)
        .map(|_| text.trim().to_owned())
        .map_err(InvalidInput)
}

/// A name of an agent or a group: the daemon's name rule.
pub fn name(text: &str) -> Result<String, InvalidInput> {
    parse::validate_name(text)
        .map(|()| text.to_owned())
        .map_err(InvalidInput)
}

/// A signal by name or number.
pub fn signal(text: &str) -> Result<String, InvalidInput> {
    typed(text, parse::parse_signal)
}

/// A duration (`--stop-timeout`, `--timeout`, the restart options).
pub fn duration(text: &str) -> Result<String, InvalidInput> {
    typed(text, parse::parse_duration)
}

/// A duration above zero (the probe's interval and timeout).
pub fn positive_duration(text: &str) -> Result<String, InvalidInput> {
    typed(text, parse::parse_positive_duration)
}

/// `--memory-max`.
pub fn memory_max(text: &str) -> Result<String, InvalidInput> {
    typed(text, parse::parse_memory_max)
}

/// `--log-max-size`.
pub fn log_max_size(text: &str) -> Result<String, InvalidInput> {
    typed(text, parse::parse_log_max_size)
}

/// `--log-max-files`.
pub fn log_max_files(text: &str) -> Result<u32, InvalidInput> {
    parse::parse_log_max_files(text).map_err(InvalidInput)
}

/// `--cpu-max`.
pub fn cpu_max(text: &str) -> Result<String, InvalidInput> {
    typed(text, parse::parse_cpu_max)
}

/// `--pids-max`.
pub fn pids_max(text: &str) -> Result<u64, InvalidInput> {
    parse::parse_count_limit("process limit", text).map_err(InvalidInput)
}

/// `--nofile`.
pub fn nofile(text: &str) -> Result<u64, InvalidInput> {
    parse::parse_count_limit("open-file limit", text).map_err(InvalidInput)
}

/// `--idle-timeout`.
pub fn idle_timeout(text: &str) -> Result<String, InvalidInput> {
    typed(text, parse::parse_idle_timeout)
}

/// `--on-hang`.
pub fn on_hang(text: &str) -> Result<String, InvalidInput> {
    typed(text, |text| text.parse::<crate::OnHang>())
}

/// `--restart`.
pub fn restart_policy(text: &str) -> Result<String, InvalidInput> {
    typed(text, |text| text.parse::<crate::RestartPolicy>())
}

/// `--adapter`: `auto` or an adapter's name.
pub fn adapter(text: &str) -> Result<String, InvalidInput> {
    typed(text, parse::parse_adapter)
}

/// `--linger`: a duration or `never`.
pub fn linger(text: &str) -> Result<String, InvalidInput> {
    typed(text, parse::parse_linger)
}

/// `--telemetry`: auto, on or off.
pub fn telemetry(text: &str) -> Result<String, InvalidInput> {
    typed(text, |text| text.parse::<crate::TelemetryMode>())
}

/// `--budget-usd`.
pub fn budget_usd(text: &str) -> Result<f64, InvalidInput> {
    parse::parse_budget_usd(text).map_err(InvalidInput)
}

/// `--budget-tokens`.
pub fn budget_tokens(text: &str) -> Result<u64, InvalidInput> {
    parse::parse_budget_tokens(text).map_err(InvalidInput)
}

/// `--health-http`.
pub fn http_url(text: &str) -> Result<String, InvalidInput> {
    typed(text, parse::parse_http_url)
}

/// `--health-tcp`.
pub fn host_port(text: &str) -> Result<String, InvalidInput> {
    typed(text, parse::parse_host_port)
}

/// `--health-retries`: a number, at least 1.
pub fn retries(text: &str) -> Result<u32, InvalidInput> {
    // One message for both, naming what was typed (the daemon's names the
    // number it was sent).
    let bad = || {
        InvalidInput(format!(
            "invalid health retries {text:?}: give a whole number of failed probes, at least 1"
        ))
    };
    let number = text.parse::<u32>().map_err(|_| bad())?;
    parse::validate_health_retries(number).map_err(|_| bad())
}
