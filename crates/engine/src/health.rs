//! How an agent is doing, composed in one place from everything that has a
//! say: its state, what the sampler saw of its main process, how long it
//! has been silent against its idle timeout, its health probe and its
//! status file. The answer carries a reason a person can read.

use chrono::{DateTime, Utc};
use std::time::Duration;
use wrangle_wire::parse::format_seconds;
use wrangle_wire::{Health, State};

/// The agent's main process at the sampler's last tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MainProcess {
    /// The sampler has not looked at this run yet.
    #[default]
    NotSampled,
    /// It was not found (it has just ended, or it is not this run's).
    Missing,
    /// It runs.
    Alive,
    /// It has exited (or its main thread has) and is not reaped.
    Zombie,
}

/// Everything the health of an agent depends on.
#[derive(Debug, Clone)]
pub struct HealthInputs<'a> {
    /// Lifecycle state.
    pub state: State,
    /// The main process as last sampled.
    pub main: MainProcess,
    /// Time since the last output, heartbeat, end of a retry the
    /// telemetry reported, or the start of the run, whichever came last.
    pub silence: Option<Duration>,
    /// Silence after which the agent is hung.
    pub idle_timeout: Option<Duration>,
    /// Why the health probe fails, when it does (enough failures in a row).
    pub probe_failure: Option<&'a str>,
    /// Why the status file was not taken, when it was not.
    pub status_file_error: Option<&'a str>,
    /// What the agent waits for a person for, as its adapter read.
    pub waiting: Option<&'a str>,
    /// What explains a silence, as its adapter read: a tool that runs, an
    /// API call retried, a rate limit.
    pub explained: Option<String>,
}

/// Health and the reason for it, from the inputs. The worst finding
/// decides: zombie, then a failing probe, then waiting for a person, then
/// hung (a silence nothing explains); a bad status file is only
/// mentioned, since the agent itself may be fine.
pub fn assess(inputs: &HealthInputs<'_>) -> (Health, Option<String>) {
    if !matches!(inputs.state, State::Running | State::Stopping) {
        return (Health::Unknown, None);
    }
    let (health, reason) = match inputs.main {
        MainProcess::Missing => (
            Health::Unknown,
            Some("the main process was not found at the last sample".to_owned()),
        ),
        MainProcess::Zombie => (
            Health::Zombie,
            Some("the main process is a zombie: it has exited but is not reaped".to_owned()),
        ),
        // Before the first sample the exec is just confirmed: nothing says
        // otherwise, and probes and the idle timeout already count.
        MainProcess::NotSampled | MainProcess::Alive => {
            match (inputs.probe_failure, inputs.waiting, hung(inputs)) {
                (Some(failure), _, _) => (Health::Unhealthy, Some(failure.to_owned())),
                (None, Some(waiting), _) => (
                    Health::Waiting,
                    Some(format!("waiting for a person: {waiting}")),
                ),
                (None, None, Some(hung)) => match &inputs.explained {
                    Some(explained) => (Health::Healthy, Some(format!("{hung}, but {explained}"))),
                    None => (Health::Hung, Some(hung)),
                },
                (None, None, None) => (Health::Healthy, None),
            }
        }
    };
    let reason = match (reason, inputs.status_file_error) {
        (Some(reason), Some(error)) => Some(format!("{reason}; status file: {error}")),
        (None, Some(error)) => Some(format!("status file: {error}")),
        (reason, None) => reason,
    };
    (health, reason)
}

/// How long the agent has said nothing: the time since the last of
/// `marks` (its start, its last output or heartbeat, the end of a retry).
pub fn silence(
    now: DateTime<Utc>,
    marks: impl IntoIterator<Item = Option<DateTime<Utc>>>,
) -> Option<Duration> {
    let last = marks.into_iter().flatten().max()?;
    Some((now - last).to_std().unwrap_or_default())
}

/// `no output or heartbeat for 31s (idle timeout 30s)`, when it is so.
fn hung(inputs: &HealthInputs<'_>) -> Option<String> {
    let (silence, timeout) = (inputs.silence?, inputs.idle_timeout?);
    (silence > timeout).then(|| {
        format!(
            "no output or heartbeat for {} (idle timeout {})",
            seconds_past(silence, timeout),
            format_seconds(timeout)
        )
    })
}

/// A silence in whole seconds (`31s`) where that still shows it is past
/// the timeout, else to a tenth (`30.4s`, not `30s (idle timeout 30s)`).
fn seconds_past(silence: Duration, timeout: Duration) -> String {
    let whole = Duration::from_secs(silence.as_secs());
    if whole > timeout {
        format!("{}s", whole.as_secs())
    } else {
        format!("{:.1}s", silence.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(main: MainProcess) -> HealthInputs<'static> {
        HealthInputs {
            state: State::Running,
            main,
            silence: None,
            idle_timeout: None,
            probe_failure: None,
            status_file_error: None,
            waiting: None,
            explained: None,
        }
    }

    #[test]
    fn only_a_running_agent_has_a_health() {
        for state in [
            State::Queued,
            State::Starting,
            State::Completed,
            State::Failed,
        ] {
            let inputs = HealthInputs {
                state,
                ..running(MainProcess::Zombie)
            };
            assert_eq!(assess(&inputs), (Health::Unknown, None), "{state}");
        }
        assert_eq!(
            assess(&running(MainProcess::NotSampled)),
            (Health::Healthy, None)
        );
        assert_eq!(assess(&running(MainProcess::Missing)).0, Health::Unknown);
        assert_eq!(
            assess(&running(MainProcess::Alive)),
            (Health::Healthy, None)
        );
        let stopping = HealthInputs {
            state: State::Stopping,
            ..running(MainProcess::Alive)
        };
        assert_eq!(assess(&stopping).0, Health::Healthy);
    }

    #[test]
    fn silence_counts_from_the_latest_sign_of_life() {
        let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |seconds| Some(start + chrono::Duration::seconds(seconds));
        let now = start + chrono::Duration::seconds(100);
        assert_eq!(
            silence(now, [at(0), None, None]),
            Some(Duration::from_secs(100))
        );
        assert_eq!(
            silence(now, [at(0), at(70), at(40)]),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            silence(now, [at(0), at(10), at(95)]),
            Some(Duration::from_secs(5))
        );
        // A clock that went back is no silence at all.
        assert_eq!(silence(now, [at(120), None, None]), Some(Duration::ZERO));
        assert_eq!(silence(now, [None, None, None]), None);
    }

    #[test]
    fn silence_past_the_idle_timeout_is_hung() {
        let inputs = HealthInputs {
            silence: Some(Duration::from_millis(31_400)),
            idle_timeout: Some(Duration::from_secs(30)),
            ..running(MainProcess::Alive)
        };
        assert_eq!(
            assess(&inputs),
            (
                Health::Hung,
                Some("no output or heartbeat for 31s (idle timeout 30s)".into())
            )
        );
        let just_past = HealthInputs {
            silence: Some(Duration::from_millis(30_400)),
            ..inputs.clone()
        };
        assert_eq!(
            assess(&just_past).1.unwrap(),
            "no output or heartbeat for 30.4s (idle timeout 30s)"
        );
        let quiet_enough = HealthInputs {
            silence: Some(Duration::from_secs(30)),
            ..inputs.clone()
        };
        assert_eq!(assess(&quiet_enough).0, Health::Healthy);
        let no_timeout = HealthInputs {
            idle_timeout: None,
            ..inputs
        };
        assert_eq!(assess(&no_timeout).0, Health::Healthy);
    }

    #[test]
    fn a_person_awaited_is_waiting_and_an_explained_silence_is_not_hung() {
        let silent = HealthInputs {
            silence: Some(Duration::from_secs(40)),
            idle_timeout: Some(Duration::from_secs(30)),
            ..running(MainProcess::Alive)
        };
        assert_eq!(assess(&silent).0, Health::Hung);
        let retrying = HealthInputs {
            explained: Some("retrying the API (attempt 2 of 10)".into()),
            ..silent.clone()
        };
        assert_eq!(
            assess(&retrying),
            (
                Health::Healthy,
                Some(
                    "no output or heartbeat for 40s (idle timeout 30s), but retrying the API (attempt 2 of 10)"
                        .into()
                )
            )
        );
        let waiting = HealthInputs {
            waiting: Some("permission to use Bash: rm -rf build"),
            ..silent
        };
        assert_eq!(
            assess(&waiting),
            (
                Health::Waiting,
                Some("waiting for a person: permission to use Bash: rm -rf build".into())
            )
        );
    }

    #[test]
    fn the_worst_finding_decides_and_a_bad_status_file_is_mentioned() {
        let everything = HealthInputs {
            silence: Some(Duration::from_secs(100)),
            idle_timeout: Some(Duration::from_secs(1)),
            probe_failure: Some("http probe: connection refused"),
            status_file_error: Some("invalid JSON"),
            ..running(MainProcess::Zombie)
        };
        let (health, reason) = assess(&everything);
        assert_eq!(health, Health::Zombie);
        assert!(reason.unwrap().ends_with("; status file: invalid JSON"));

        let alive = HealthInputs {
            main: MainProcess::Alive,
            ..everything.clone()
        };
        assert_eq!(
            assess(&alive),
            (
                Health::Unhealthy,
                Some("http probe: connection refused; status file: invalid JSON".into())
            )
        );
        let no_probe = HealthInputs {
            probe_failure: None,
            ..alive.clone()
        };
        assert_eq!(assess(&no_probe).0, Health::Hung);
        let only_the_file = HealthInputs {
            probe_failure: None,
            silence: None,
            ..alive
        };
        assert_eq!(
            assess(&only_the_file),
            (Health::Healthy, Some("status file: invalid JSON".into()))
        );
    }
}
