//! How a run ended, in the engine's terms: the final state, its reason in
//! words, and the exit status, all read from the shim's last state.

use chrono::{DateTime, Utc};
use std::time::Duration;
use wrangle_shim::protocol::{Escalation, ShimState};
use wrangle_wire::parse::{format_seconds, signal_name};
use wrangle_wire::{Cause, State};

/// The end of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    /// `completed`, `failed` or `stopped`.
    pub state: State,
    /// Why, in words: `exited with code 3`, `stopped by SIGTERM in 0.02s`.
    pub reason: String,
    /// Why, as a value. A stop the shim ran is [`Cause::User`] here; the
    /// engine puts the cause recorded when the stop was asked for in its
    /// place.
    pub cause: Cause,
    /// Exit code, when the main process exited.
    pub exit_code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
    /// When the main process ended.
    pub ended_at: Option<DateTime<Utc>>,
}

/// Classifies the shim's final state.
pub fn classify(shim: &ShimState) -> Ending {
    if let Some(error) = &shim.spawn_error {
        return Ending {
            state: State::Failed,
            reason: error.clone(),
            cause: Cause::SpawnError,
            exit_code: None,
            signal: None,
            ended_at: shim.finished_at,
        };
    }
    let Some(exit) = shim.exit else {
        return Ending {
            state: State::Failed,
            reason: "shim lost: it was killed (or crashed) before it recorded the agent's exit; what it held was stopped".into(),
            cause: Cause::Lost,
            exit_code: None,
            signal: None,
            ended_at: shim.finished_at,
        };
    };
    let ended_at = shim.ended_at;
    let (state, mut reason, cause) = if let Some(outcome) = stop_outcome(shim) {
        (State::Stopped, outcome, Cause::User)
    } else if let Some(kill) = shim
        .kill
        .as_ref()
        .filter(|kill| exit.signal == Some(kill.signal) || kill.signal == libc::SIGKILL)
    {
        (
            State::Stopped,
            format!("killed by {} (wrangle kill)", signal_name(kill.signal)),
            Cause::Kill,
        )
    } else if let Some(reason) = crate::limits::memory_exceeded(shim, exit) {
        (State::Failed, reason, Cause::Memory)
    } else {
        let (state, reason) = match (exit.code, exit.signal) {
            (Some(0), _) => (State::Completed, "exited with code 0".to_string()),
            (Some(code), _) => (State::Failed, format!("exited with code {code}")),
            (None, Some(signal)) => (
                State::Failed,
                format!("killed by signal {}", signal_name(signal)),
            ),
            (None, None) => (State::Failed, "ended in an unknown way".to_string()),
        };
        (state, reason, Cause::Exit)
    };
    if shim.leftovers > 0 {
        let plural = if shim.leftovers == 1 {
            "process"
        } else {
            "processes"
        };
        reason.push_str(&format!(
            "; {} leftover {plural} of its tree stopped",
            shim.leftovers
        ));
    }
    if cause != Cause::Memory {
        reason.push_str(&crate::limits::oom_note(shim).unwrap_or_default());
    }
    if shim.log_dropped_bytes > 0 {
        let why = shim
            .log_error
            .as_deref()
            .unwrap_or("the log could not be written");
        reason.push_str(&format!(
            "; {} bytes of output dropped ({why}; a marker line in the log says where, once it could be written)",
            shim.log_dropped_bytes
        ));
    } else if let Some(error) = &shim.log_error {
        reason.push_str(&format!("; output not fully recorded: {error}"));
    }
    Ending {
        state,
        reason,
        cause,
        exit_code: exit.code,
        signal: exit.signal,
        ended_at,
    }
}

/// `stopped by SIGTERM in 0.02s`, `killed by SIGKILL after 15s`, when a
/// stop was asked for before the main process ended.
pub fn stop_outcome(shim: &ShimState) -> Option<String> {
    let stop = shim.stop.as_ref()?;
    let ended = shim.ended_at?;
    if ended < stop.requested_at {
        return None;
    }
    let finished = shim.finished_at.unwrap_or(ended);
    let took = (finished - stop.requested_at)
        .to_std()
        .unwrap_or(Duration::ZERO);
    let took = format_seconds(took);
    let signal = signal_name(stop.signal);
    Some(match stop.escalation {
        _ if stop.signal == libc::SIGKILL => format!("killed by SIGKILL in {took}"),
        Escalation::Signaled => format!("stopped by {signal} in {took}"),
        Escalation::Repeated => format!("stopped by {signal} (sent twice) in {took}"),
        Escalation::Killed => format!("killed by SIGKILL after {took} (ignored {signal})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use wrangle_shim::protocol::{ExitRecord, KillRecord, Phase, ProcessRef, StopRecord};

    fn at(millis: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(1_800_000_000_000 + millis)
            .unwrap()
    }

    fn ended(code: Option<i32>, signal: Option<i32>) -> ShimState {
        ShimState {
            phase: Phase::Exited,
            shim: ProcessRef {
                pid: 10,
                start_time: 1,
            },
            agent: Some(ProcessRef {
                pid: 11,
                start_time: 2,
            }),
            cgroup: None,
            started_at: Some(at(0)),
            spawn_error: None,
            exit: Some(ExitRecord { code, signal }),
            ended_at: Some(at(5_000)),
            stop: None,
            kill: None,
            leftovers: 0,
            log_error: None,
            log_dropped_bytes: 0,
            finished_at: Some(at(5_010)),
            limits: Default::default(),
            oom_kills: 0,
            memory_watchdog: None,
        }
    }

    #[test]
    fn exits_map_to_completed_and_failed() {
        assert_eq!(classify(&ended(Some(0), None)).state, State::Completed);
        let failed = classify(&ended(Some(3), None));
        assert_eq!(
            (failed.state, failed.reason.as_str()),
            (State::Failed, "exited with code 3")
        );
        let crashed = classify(&ended(None, Some(11)));
        assert_eq!(crashed.reason, "killed by signal SIGSEGV");
        assert_eq!(crashed.signal, Some(11));
    }

    #[test]
    fn a_stop_says_how_far_it_went() {
        let mut state = ended(None, Some(15));
        state.stop = Some(StopRecord {
            requested_at: at(4_990),
            signal: 15,
            timeout_ms: 10_000,
            escalation: Escalation::Signaled,
        });
        let ending = classify(&state);
        assert_eq!(ending.state, State::Stopped);
        assert_eq!(ending.reason, "stopped by SIGTERM in 0.02s");

        state.stop.as_mut().unwrap().escalation = Escalation::Killed;
        state.stop.as_mut().unwrap().requested_at = at(-10_000);
        assert_eq!(
            classify(&state).reason,
            "killed by SIGKILL after 15s (ignored SIGTERM)"
        );
    }

    #[test]
    fn a_stop_after_the_end_does_not_count_and_kills_do() {
        let mut state = ended(Some(1), None);
        state.stop = Some(StopRecord {
            requested_at: at(6_000),
            signal: 15,
            timeout_ms: 1_000,
            escalation: Escalation::Signaled,
        });
        assert_eq!(classify(&state).state, State::Failed);

        let mut killed = ended(None, Some(9));
        killed.kill = Some(KillRecord {
            signal: 9,
            at: at(4_000),
        });
        let ending = classify(&killed);
        assert_eq!(
            (ending.state, ending.reason.as_str()),
            (State::Stopped, "killed by SIGKILL (wrangle kill)")
        );
    }

    #[test]
    fn a_run_ended_for_its_memory_says_so() {
        use wrangle_shim::protocol::{Enforce, Limit, WatchdogKill};
        let limited = |by: Enforce| {
            let mut state = ended(None, Some(libc::SIGKILL));
            state.limits.memory_max = Some(Limit {
                value: 64 << 20,
                by,
            });
            state
        };
        let mut oom = limited(Enforce::CgroupV2);
        oom.oom_kills = 1;
        let ending = classify(&oom);
        assert_eq!(
            (ending.state, ending.reason.as_str()),
            (
                State::Failed,
                "memory limit exceeded (64 MiB): killed by SIGKILL"
            )
        );

        let mut watched = limited(Enforce::Watchdog);
        watched.memory_watchdog = Some(WatchdogKill {
            at: at(4_900),
            rss_bytes: 70 << 20,
        });
        assert_eq!(
            classify(&watched).reason,
            "memory limit exceeded (64 MiB): the tree held 70 MiB, killed by SIGKILL"
        );

        // A SIGKILL from elsewhere, with no OOM kill, is no memory matter.
        let plain = limited(Enforce::CgroupV2);
        assert_eq!(classify(&plain).reason, "killed by signal SIGKILL");

        // The OOM killer took a child; the agent went on and failed.
        let mut child_killed = limited(Enforce::CgroupV1 {
            group: "/sys/fs/cgroup/memory/wrangle/a-1".into(),
        });
        child_killed.exit = Some(ExitRecord {
            code: Some(1),
            signal: None,
        });
        child_killed.oom_kills = 2;
        assert_eq!(
            classify(&child_killed).reason,
            "exited with code 1; 2 processes of its tree killed by the OOM killer (memory limit 64 MiB)"
        );

        // wrangle kill is the user's doing, whatever else happened.
        oom.kill = Some(KillRecord {
            signal: 9,
            at: at(4_000),
        });
        assert_eq!(classify(&oom).state, State::Stopped);
    }

    #[test]
    fn spawn_errors_and_leftovers_are_in_the_reason() {
        let mut state = ended(None, None);
        state.exit = None;
        state.spawn_error = Some("No such file or directory: claud".into());
        assert_eq!(classify(&state).reason, "No such file or directory: claud");

        let mut leftovers = ended(Some(0), None);
        leftovers.leftovers = 2;
        assert_eq!(
            classify(&leftovers).reason,
            "exited with code 0; 2 leftover processes of its tree stopped"
        );
    }
}
