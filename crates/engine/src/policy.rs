//! The restart policy: whether an agent whose run ended is started again,
//! after what delay, and when it is given up as crash-looping. Pure
//! decisions on the run history, so they are tested without processes.

use crate::error::EngineError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use wrangle_wire::parse::{self, format_seconds};
use wrangle_wire::{OnHang, RestartPolicy, RunOptions, State};

/// How an agent is restarted and limited in time; part of its spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RestartSpec {
    /// When to restart.
    pub policy: RestartPolicy,
    /// Most restarts within `window_ms`.
    pub max_restarts: u32,
    /// The window restarts are counted in.
    pub window_ms: u64,
    /// First delay before a restart.
    pub backoff_initial_ms: u64,
    /// Longest delay before a restart.
    pub backoff_max_ms: u64,
    /// A run shorter than this is a failed start.
    pub min_uptime_ms: u64,
    /// Wall-clock limit of a run.
    pub timeout_ms: Option<u64>,
    /// What to do when the agent is hung.
    pub on_hang: OnHang,
}

impl Default for RestartSpec {
    fn default() -> Self {
        RestartSpec {
            policy: RestartPolicy::Never,
            max_restarts: 5,
            window_ms: 60_000,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 60_000,
            min_uptime_ms: 1_000,
            timeout_ms: None,
            on_hang: OnHang::None,
        }
    }
}

impl RestartSpec {
    /// The restart options of the options of a run, checked.
    pub fn from_options(options: &RunOptions) -> Result<RestartSpec, EngineError> {
        let defaults = RestartSpec::default();
        let duration = |value: &Option<String>, what: &str, default: u64| match value {
            None => Ok(default),
            Some(text) => {
                let parsed = parse::parse_duration(text)
                    .map_err(|error| EngineError::invalid(format!("{what}: {error}")))?;
                if parsed.is_zero() {
                    return Err(EngineError::invalid(format!(
                        "{what} must be longer than 0"
                    )));
                }
                Ok(parsed.as_millis() as u64)
            }
        };
        let policy = match &options.restart {
            None => defaults.policy,
            Some(text) => text.parse().map_err(EngineError::invalid)?,
        };
        let spec = RestartSpec {
            policy,
            max_restarts: options.max_restarts.unwrap_or(defaults.max_restarts),
            window_ms: duration(
                &options.restart_window,
                "--restart-window",
                defaults.window_ms,
            )?,
            backoff_initial_ms: duration(
                &options.backoff_initial,
                "--backoff-initial",
                defaults.backoff_initial_ms,
            )?,
            backoff_max_ms: duration(
                &options.backoff_max,
                "--backoff-max",
                defaults.backoff_max_ms,
            )?,
            min_uptime_ms: match &options.min_uptime {
                // Zero is allowed here: no run counts as a failed start.
                Some(text) => parse::parse_duration(text)
                    .map_err(|error| EngineError::invalid(format!("--min-uptime: {error}")))?
                    .as_millis() as u64,
                None => defaults.min_uptime_ms,
            },
            timeout_ms: match &options.timeout {
                None => None,
                Some(_) => Some(duration(&options.timeout, "--timeout", 0)?),
            },
            on_hang: match &options.on_hang {
                None => OnHang::None,
                Some(text) => text.parse().map_err(EngineError::invalid)?,
            },
        };
        if spec.on_hang != OnHang::None && options.idle_timeout.is_none() {
            return Err(EngineError::invalid(
                "--on-hang needs --idle-timeout: without it the agent is never hung",
            ));
        }
        if spec.backoff_max_ms < spec.backoff_initial_ms {
            return Err(EngineError::invalid(format!(
                "--backoff-max ({}) is shorter than --backoff-initial ({})",
                format_seconds(Duration::from_millis(spec.backoff_max_ms)),
                format_seconds(Duration::from_millis(spec.backoff_initial_ms)),
            )));
        }
        Ok(spec)
    }

    /// The wall-clock limit of a run, if it has one.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }
}

/// One past run, as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PastRun {
    /// Its number, from 1.
    pub number: u32,
    /// When its exec was confirmed (none if it never started).
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
}

impl PastRun {
    fn lasted(&self) -> Option<Duration> {
        let (start, end) = (self.started_at?, self.ended_at?);
        (end - start).to_std().ok()
    }
}

/// What to do with an agent whose run just ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Record the end; nothing starts it again.
    Stay,
    /// Start run `next` after `delay`.
    Restart {
        /// Number of the next run.
        next: u32,
        /// Wait before starting it.
        delay: Duration,
        /// Why, for people: `restart 2 of at most 5 within 1m, in 2.0s`.
        reason: String,
    },
    /// Restarts are exhausted: the agent is `failed` as crash-looping.
    GiveUp {
        /// Why, for people.
        reason: String,
    },
}

/// Whether the policy restarts an agent whose run ended `state`, before
/// its limits are looked at (the past runs are needed only then).
pub fn may_restart(spec: &RestartSpec, state: State) -> bool {
    match spec.policy {
        RestartPolicy::Never => false,
        RestartPolicy::OnFailure => state == State::Failed,
        RestartPolicy::Always => matches!(state, State::Failed | State::Completed),
    }
}

/// Decides after run `ended` (the last of `history`, oldest first) ended
/// in `state`. `jitter` in [0, 1) spreads restarts of many agents apart.
pub fn decide(
    spec: &RestartSpec,
    state: State,
    history: &[PastRun],
    now: DateTime<Utc>,
    jitter: f64,
) -> Decision {
    let restart = may_restart(spec, state);
    let Some(last) = history.last() else {
        return Decision::Stay;
    };
    if !restart {
        return Decision::Stay;
    }
    let window = Duration::from_millis(spec.window_ms);
    let since = now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    // Runs after the first that started within the window are restarts
    // that happened within it.
    let recent = history
        .iter()
        .filter(|run| run.number > 1 && run.started_at.is_some_and(|at| at >= since))
        .count() as u32;
    let min_uptime = Duration::from_millis(spec.min_uptime_ms);
    let failed_start = last.lasted().is_none_or(|lasted| lasted < min_uptime);
    if recent >= spec.max_restarts {
        let how = if failed_start {
            format!(
                "it ended within --min-uptime {}",
                format_seconds(min_uptime)
            )
        } else {
            "it ended again".to_string()
        };
        return Decision::GiveUp {
            reason: format!(
                "crash-looping: restarted {recent} times within {} and {how}; not restarted again",
                format_seconds(window)
            ),
        };
    }
    // The delay doubles with each restart since the last run that lasted a
    // whole window (or since the first run).
    let streak = history
        .iter()
        .rev()
        .skip(1)
        .take_while(|run| run.lasted().is_none_or(|lasted| lasted < window))
        .count() as u32;
    let streak = if last.lasted().is_some_and(|lasted| lasted >= window) {
        0
    } else {
        streak
    };
    let base = spec
        .backoff_initial_ms
        .saturating_mul(1u64 << streak.min(32))
        .min(spec.backoff_max_ms);
    // Up to 20% less, so that agents that failed together do not all
    // restart in the same instant.
    let delay = Duration::from_millis((base as f64 * (1.0 - 0.2 * jitter.clamp(0.0, 1.0))) as u64);
    let mut reason = format!(
        "restart {} of at most {} within {}, in {}",
        recent + 1,
        spec.max_restarts,
        format_seconds(window),
        format_seconds(delay)
    );
    if failed_start {
        reason.push_str(&format!(
            " (the run ended within --min-uptime {})",
            format_seconds(min_uptime)
        ));
    }
    Decision::Restart {
        next: last.number + 1,
        delay,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + seconds, 0).unwrap()
    }

    fn run(number: u32, start: i64, end: i64) -> PastRun {
        PastRun {
            number,
            started_at: Some(at(start)),
            ended_at: Some(at(end)),
        }
    }

    fn on_failure(max_restarts: u32) -> RestartSpec {
        RestartSpec {
            policy: RestartPolicy::OnFailure,
            max_restarts,
            ..RestartSpec::default()
        }
    }

    fn delay_of(decision: &Decision) -> Duration {
        match decision {
            Decision::Restart { delay, .. } => *delay,
            other => panic!("not a restart: {other:?}"),
        }
    }

    #[test]
    fn never_and_user_stops_stay() {
        let history = [run(1, 0, 1)];
        let never = RestartSpec::default();
        assert_eq!(
            decide(&never, State::Failed, &history, at(2), 0.0),
            Decision::Stay
        );
        let always = RestartSpec {
            policy: RestartPolicy::Always,
            ..RestartSpec::default()
        };
        assert_eq!(
            decide(&always, State::Stopped, &history, at(2), 0.0),
            Decision::Stay
        );
        assert_eq!(
            decide(&on_failure(5), State::Completed, &history, at(2), 0.0),
            Decision::Stay
        );
        assert!(matches!(
            decide(&always, State::Completed, &history, at(2), 0.0),
            Decision::Restart { next: 2, .. }
        ));
    }

    #[test]
    fn delays_double_up_to_the_cap_and_restarts_run_out() {
        let spec = RestartSpec {
            backoff_max_ms: 3_000,
            ..on_failure(3)
        };
        let mut history = vec![run(1, 0, 0)];
        let first = decide(&spec, State::Failed, &history, at(0), 0.0);
        assert_eq!(delay_of(&first), Duration::from_secs(1));
        history.push(run(2, 1, 1));
        assert_eq!(
            delay_of(&decide(&spec, State::Failed, &history, at(1), 0.0)),
            Duration::from_secs(2)
        );
        history.push(run(3, 3, 3));
        let third = decide(&spec, State::Failed, &history, at(3), 0.0);
        assert_eq!(delay_of(&third), Duration::from_secs(3), "capped");
        let Decision::Restart { next, reason, .. } = third else {
            unreachable!()
        };
        assert_eq!(next, 4);
        assert!(
            reason.starts_with("restart 3 of at most 3 within 60s"),
            "{reason}"
        );
        history.push(run(4, 6, 6));
        let Decision::GiveUp { reason } = decide(&spec, State::Failed, &history, at(6), 0.0) else {
            panic!("restarts are exhausted")
        };
        assert!(
            reason.starts_with("crash-looping: restarted 3 times within 60s"),
            "{reason}"
        );
        assert!(reason.contains("--min-uptime 1s"), "{reason}");
    }

    #[test]
    fn restarts_outside_the_window_do_not_count_and_a_long_run_resets_the_backoff() {
        let spec = on_failure(2);
        // Two quick restarts long ago, then a run that lasted ten minutes.
        let history = [run(1, 0, 0), run(2, 1, 1), run(3, 3, 603)];
        let decision = decide(&spec, State::Failed, &history, at(603), 0.0);
        assert_eq!(delay_of(&decision), Duration::from_secs(1));
        let Decision::Restart { next, reason, .. } = decision else {
            unreachable!()
        };
        assert_eq!(next, 4);
        assert!(reason.starts_with("restart 1 of at most 2"), "{reason}");
        assert!(!reason.contains("min-uptime"), "{reason}");
    }

    #[test]
    fn jitter_only_shortens_the_delay_by_up_to_a_fifth() {
        let history = [run(1, 0, 5)];
        let spec = on_failure(5);
        let most = delay_of(&decide(&spec, State::Failed, &history, at(5), 0.0));
        let least = delay_of(&decide(&spec, State::Failed, &history, at(5), 0.999_999));
        assert_eq!(most, Duration::from_secs(1));
        assert!(
            least >= Duration::from_millis(800) && least < most,
            "{least:?}"
        );
    }

    #[test]
    fn bad_options_are_refused() {
        let request = |change: fn(&mut RunOptions)| {
            let mut request = RunOptions::default();
            change(&mut request);
            RestartSpec::from_options(&request)
        };
        let error = request(|r| r.restart = Some("sometimes".into())).unwrap_err();
        assert!(error.message.contains("sometimes"), "{}", error.message);
        let error = request(|r| r.timeout = Some("soon".into())).unwrap_err();
        assert!(error.message.starts_with("--timeout:"), "{}", error.message);
        let error = request(|r| r.timeout = Some("0s".into())).unwrap_err();
        assert!(error.message.contains("longer than 0"), "{}", error.message);
        let error = request(|r| {
            r.backoff_initial = Some("10s".into());
            r.backoff_max = Some("1s".into());
        })
        .unwrap_err();
        assert!(error.message.contains("shorter than"), "{}", error.message);
        let spec = request(|r| {
            r.restart = Some("always".into());
            r.timeout = Some("2s".into());
        })
        .unwrap();
        assert_eq!(spec.policy, RestartPolicy::Always);
        assert_eq!(spec.timeout(), Some(Duration::from_secs(2)));
    }
}
