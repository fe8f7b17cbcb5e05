//! Health probes: a shell command, an HTTP GET or a TCP connect, repeated
//! on an interval for every running run whose agent has one.
//!
//! A probe task starts when a run is recorded `running` (or re-attached
//! after a daemon restart) and ends with the run. What it finds is kept on
//! the agent ([`ProbeStatus`]); [`Agent::probe_failure`] turns it into the
//! verdict: `retries` failures in a row make the agent unhealthy, one
//! success makes it healthy again. Running one probe is [`check`]'s job.

mod check;

use crate::error::EngineError;
use crate::model::Agent;
use crate::Engine;
use check::Target;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use wrangle_wire::{parse, RunOptions, State};

/// Time between probes when none is given.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Time a probe may take when none is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Failures in a row that make an agent unhealthy when none is given.
pub const DEFAULT_RETRIES: u32 = 3;

/// What a health probe tries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Probe {
    /// A command run with `sh -c` in the agent's cwd and environment; well
    /// when it exits 0.
    Cmd {
        /// The shell command, as typed.
        command: String,
    },
    /// An `http://` URL; well when it answers 2xx or 3xx.
    Http {
        /// The URL, as typed.
        url: String,
    },
    /// `HOST:PORT`; well when it accepts a TCP connection.
    Tcp {
        /// The address, as typed.
        address: String,
    },
}

impl fmt::Display for Probe {
    /// `cmd test -e ready`, `http http://127.0.0.1:8080/health`,
    /// `tcp 127.0.0.1:5432`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Cmd { command } => write!(f, "cmd {command}"),
            Probe::Http { url } => write!(f, "http {url}"),
            Probe::Tcp { address } => write!(f, "tcp {address}"),
        }
    }
}

/// An agent's health probe and its timing, part of its stored spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// What is tried.
    pub probe: Probe,
    /// Time between probes, in milliseconds.
    pub interval_ms: u64,
    /// Time one probe may take before it counts as failed, in milliseconds.
    pub timeout_ms: u64,
    /// Failures in a row that make the agent unhealthy (at least 1).
    pub retries: u32,
}

impl HealthCheck {
    /// Checks the probe options of the options of a run; `None` when it asks
    /// for no probe. At most one kind of probe, and timing options only
    /// with a probe.
    pub fn from_options(options: &RunOptions) -> Result<Option<HealthCheck>, EngineError> {
        let mut probes = Vec::new();
        if let Some(command) = &options.health_cmd {
            if command.trim().is_empty() {
                return Err(EngineError::invalid(
                    "the --health-cmd is empty: give a shell command that exits 0 when the agent is well, e.g. --health-cmd 'test -e ready'",
                ));
            }
            if command.contains('\0') {
                return Err(EngineError::invalid(format!(
                    "--health-cmd {command:?} contains a NUL byte"
                )));
            }
            probes.push((
                "--health-cmd",
                Probe::Cmd {
                    command: command.clone(),
                },
            ));
        }
        if let Some(url) = &options.health_http {
            parse::parse_http_url(url).map_err(EngineError::invalid)?;
            probes.push(("--health-http", Probe::Http { url: url.clone() }));
        }
        if let Some(address) = &options.health_tcp {
            parse::parse_host_port(address).map_err(EngineError::invalid)?;
            probes.push((
                "--health-tcp",
                Probe::Tcp {
                    address: address.clone(),
                },
            ));
        }
        let probe = match probes.as_slice() {
            [] => {
                let timing = [
                    ("--health-interval", options.health_interval.is_some()),
                    ("--health-timeout", options.health_timeout.is_some()),
                    ("--health-retries", options.health_retries.is_some()),
                ];
                return match timing.iter().find(|(_, given)| *given) {
                    Some((option, _)) => Err(EngineError::invalid(format!(
                        "{option} needs a probe: add --health-cmd, --health-http or --health-tcp"
                    ))),
                    None => Ok(None),
                };
            }
            [(_, probe)] => probe.clone(),
            [(first, _), (second, _), ..] => {
                let message = format!(
                    "an agent has at most one health probe, but both {first} and {second} were given"
                );
                return Err(EngineError::invalid(message));
            }
        };
        let period = |text: &Option<String>, default: Duration| match text {
            Some(text) => parse::parse_positive_duration(text).map_err(EngineError::invalid),
            None => Ok(default),
        };
        let interval = period(&options.health_interval, DEFAULT_INTERVAL)?;
        let timeout = period(&options.health_timeout, DEFAULT_TIMEOUT)?;
        let retries = match options.health_retries {
            Some(retries) => {
                parse::validate_health_retries(retries).map_err(EngineError::invalid)?
            }
            None => DEFAULT_RETRIES,
        };
        Ok(Some(HealthCheck {
            probe,
            // Under a millisecond rounds up: zero would mean "never wait".
            interval_ms: (interval.as_millis() as u64).max(1),
            timeout_ms: (timeout.as_millis() as u64).max(1),
            retries,
        }))
    }

    /// Time between probes.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// Time one probe may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The probe for people, as `inspect` shows it:
    /// `http http://127.0.0.1:8080/health every 10s (timeout 5s, retries 3)`.
    pub fn describe(&self) -> String {
        format!(
            "{} every {} (timeout {}, retries {})",
            self.probe,
            humantime::format_duration(self.interval()),
            humantime::format_duration(self.timeout()),
            self.retries
        )
    }
}

/// What the probes of an agent's current run have found so far. Kept on
/// the agent beside its status, and stored whenever a failure count
/// changes: a restarted daemon goes on counting where the last one was.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeStatus {
    /// The run these findings are about.
    pub run: u32,
    /// Probes that failed since the last success.
    pub failures: u32,
    /// Why the last failed probe failed, e.g. `connection refused`.
    pub last_error: Option<String>,
    /// When a probe last succeeded.
    pub last_success: Option<DateTime<Utc>>,
}

impl Agent {
    /// Why the agent's probe says it is unwell, e.g. `health check failed 3
    /// times in a row: connection refused (tcp 127.0.0.1:9)`; `None` when it
    /// has no probe, or fewer failures in a row than its retries.
    pub fn probe_failure(&self) -> Option<String> {
        let check = self.identity.spec.health_check.as_ref()?;
        let found = &self.probe;
        if found.run != self.status.run.number || found.failures < check.retries {
            return None;
        }
        let error = found.last_error.as_deref()?;
        let times = match found.failures {
            1 => String::new(),
            n => format!(" {n} times in a row"),
        };
        Some(format!(
            "health check failed{times}: {error} ({})",
            check.probe
        ))
    }
}

/// Where a probed run is in its life.
#[derive(Debug, PartialEq, Eq)]
enum Phase {
    /// Not yet exec'd: nothing to probe yet.
    Waiting,
    /// Running or stopping: probe it.
    Probing,
    /// Ended, replaced by a later run, or the agent was removed.
    Over,
}

impl Engine {
    /// Starts probing run `run` of agent `id` if the agent has a health
    /// probe; the probing ends by itself with the run.
    pub(crate) fn start_probing(&self, id: &str, run: u32) {
        let Ok(agent) = self.snapshot(id) else {
            return;
        };
        let Some(check) = agent.identity.spec.health_check.clone() else {
            return;
        };
        let target = match Target::of(&check.probe, &agent) {
            Ok(target) => target,
            Err(error) => {
                // The spec was checked when the agent was created.
                tracing::error!("agent {id}: cannot probe {}: {error}", check.probe);
                return;
            }
        };
        let Ok(states) = self.subscribe(id) else {
            return;
        };
        // Findings of this run stored by an earlier daemon count on.
        self.update_probe(id, run, |found| {
            if found.run != run {
                *found = ProbeStatus {
                    run,
                    ..ProbeStatus::default()
                }
            }
        });
        let engine = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            engine.probe_run(&id, run, &check, &target, states).await;
            engine.update_probe(&id, run, |found| {
                *found = ProbeStatus {
                    run,
                    ..ProbeStatus::default()
                }
            });
        });
    }

    /// Probes on every tick until the run is over; a probe under way when
    /// it ends is dropped, which kills what it started.
    async fn probe_run(
        &self,
        id: &str,
        run: u32,
        check: &HealthCheck,
        target: &Target,
        mut states: watch::Receiver<State>,
    ) {
        let mut ticks =
            tokio::time::interval_at(Instant::now() + check.interval(), check.interval());
        // A probe slower than the interval is followed by the next one at
        // once, not by a burst of the ticks it missed.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = self.run_over(id, run, &mut states) => return,
            }
            match self.phase(id, run) {
                Phase::Over => return,
                Phase::Waiting => continue,
                Phase::Probing => {}
            }
            let outcome = tokio::select! {
                outcome = target.check(check.timeout()) => outcome,
                () = self.run_over(id, run, &mut states) => return,
            };
            self.record_probe(id, run, outcome);
        }
    }

    /// Returns once run `run` is over (see [`Phase::Over`]).
    async fn run_over(&self, id: &str, run: u32, states: &mut watch::Receiver<State>) {
        while self.phase(id, run) != Phase::Over {
            if states.changed().await.is_err() {
                return;
            }
        }
    }

    fn phase(&self, id: &str, run: u32) -> Phase {
        let Ok(agent) = self.snapshot(id) else {
            return Phase::Over;
        };
        let state = agent.status.state;
        if agent.status.run.number != run || state.is_ended() {
            Phase::Over
        } else if matches!(state, State::Running | State::Stopping) {
            Phase::Probing
        } else {
            Phase::Waiting
        }
    }

    /// Adds one probe's outcome to the run's findings, logs a change of
    /// verdict and has the health assessed again (which stores findings
    /// that changed: a restarted daemon counts on from them).
    fn record_probe(&self, id: &str, run: u32, outcome: Result<(), String>) {
        let (before, after, changed) = {
            let mut registry = self.registry();
            let Ok(agent) = registry.get(id) else {
                return;
            };
            let before = agent.probe_failure();
            let mut changed = false;
            registry.update_findings(id, |found| {
                let probe = found.probe;
                if found.status.run.number != run || probe.run != run {
                    return;
                }
                let was = probe.clone();
                match outcome {
                    Ok(()) => {
                        probe.failures = 0;
                        probe.last_success = Some(Utc::now());
                    }
                    Err(error) => {
                        probe.failures = probe.failures.saturating_add(1);
                        probe.last_error = Some(error);
                    }
                }
                // A success after a success changes nothing worth a write.
                changed = (probe.failures, &probe.last_error) != (was.failures, &was.last_error);
            });
            let Ok(agent) = registry.get(id) else {
                return;
            };
            (before, agent.probe_failure(), changed)
        };
        match (before, after) {
            (None, Some(failure)) => tracing::warn!("agent {id} is unhealthy: {failure}"),
            (Some(_), None) => tracing::info!("agent {id} is healthy again"),
            _ => {}
        }
        self.assess_one(id, changed);
    }

    /// Edits the findings of run `run`'s probe, if that is still the
    /// agent's run.
    fn update_probe(&self, id: &str, run: u32, change: impl FnOnce(&mut ProbeStatus)) {
        self.registry().update_findings(id, |found| {
            if found.status.run.number == run {
                change(found.probe);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AgentSpec, Assessment, Identity, Run, Status};
    use std::path::Path;
    use std::sync::Arc;

    fn request(change: impl FnOnce(&mut RunOptions)) -> RunOptions {
        let mut request = RunOptions::default();
        change(&mut request);
        request
    }

    /// The spec of `sleep 60` with `options`.
    fn spec_of(options: RunOptions) -> Result<AgentSpec, crate::error::EngineError> {
        let request = wrangle_wire::CreateAgent {
            command: vec!["sleep".into(), "60".into()],
            options,
            ..Default::default()
        };
        AgentSpec::from_request(&request, Path::new("/"))
    }

    fn refused(change: impl FnOnce(&mut RunOptions)) -> String {
        HealthCheck::from_options(&request(change))
            .unwrap_err()
            .message
    }

    #[test]
    fn a_probe_takes_the_defaults() {
        assert_eq!(HealthCheck::from_options(&request(|_| {})), Ok(None));
        let check = HealthCheck::from_options(&request(|r| {
            r.health_tcp = Some("127.0.0.1:9".into());
        }))
        .unwrap()
        .unwrap();
        assert_eq!(
            check,
            HealthCheck {
                probe: Probe::Tcp {
                    address: "127.0.0.1:9".into()
                },
                interval_ms: 10_000,
                timeout_ms: 5_000,
                retries: 3,
            }
        );
        assert_eq!(
            check.describe(),
            "tcp 127.0.0.1:9 every 10s (timeout 5s, retries 3)"
        );
    }

    #[test]
    fn a_probe_keeps_what_was_asked() {
        let check = HealthCheck::from_options(&request(|r| {
            r.health_http = Some("http://127.0.0.1:8080/health".into());
            r.health_interval = Some("200ms".into());
            r.health_timeout = Some("1.5".into());
            r.health_retries = Some(1);
        }))
        .unwrap()
        .unwrap();
        assert_eq!(check.interval(), Duration::from_millis(200));
        assert_eq!(check.timeout(), Duration::from_millis(1500));
        assert_eq!(check.retries, 1);
        assert_eq!(
            check.describe(),
            "http http://127.0.0.1:8080/health every 200ms (timeout 1s 500ms, retries 1)"
        );
        let cmd = HealthCheck::from_options(&request(|r| {
            r.health_cmd = Some("test -e ready".into());
        }))
        .unwrap()
        .unwrap();
        assert_eq!(cmd.probe.to_string(), "cmd test -e ready");
    }

    #[test]
    fn bad_probe_options_are_refused() {
        assert!(refused(|r| {
            r.health_cmd = Some("true".into());
            r.health_tcp = Some("127.0.0.1:9".into());
        })
        .contains("at most one health probe, but both --health-cmd and --health-tcp"));
        assert!(refused(|r| r.health_cmd = Some("  ".into())).contains("--health-cmd is empty"));
        assert!(refused(|r| r.health_http = Some("https://x/".into()))
            .contains("https is not supported"));
        assert!(refused(|r| r.health_tcp = Some("localhost".into())).contains("HOST:PORT"));
        assert!(refused(|r| {
            r.health_tcp = Some("127.0.0.1:9".into());
            r.health_interval = Some("0s".into());
        })
        .contains("invalid duration \"0s\": it must be longer than zero"));
        assert!(refused(|r| {
            r.health_tcp = Some("127.0.0.1:9".into());
            r.health_timeout = Some("soon".into());
        })
        .contains("invalid duration \"soon\""));
        assert!(refused(|r| {
            r.health_tcp = Some("127.0.0.1:9".into());
            r.health_retries = Some(0);
        })
        .contains("invalid health retries 0"));
        assert!(refused(|r| r.health_retries = Some(2)).contains(
            "--health-retries needs a probe: add --health-cmd, --health-http or --health-tcp"
        ));
    }

    #[test]
    fn a_spec_stored_without_a_probe_still_loads() {
        let spec = AgentSpec::from_request(
            &wrangle_wire::CreateAgent {
                command: vec!["sleep".into()],
                options: request(|_| {}),
                ..Default::default()
            },
            Path::new("/"),
        )
        .unwrap();
        let mut json: serde_json::Value = serde_json::to_value(&spec).unwrap();
        assert!(json.get("health_check").is_none(), "{json}");
        json.as_object_mut().unwrap().remove("health_check");
        let loaded: AgentSpec = serde_json::from_value(json).unwrap();
        assert_eq!(loaded.health_check, None);
        let probed = spec_of(request(|r| r.health_cmd = Some("true".into()))).unwrap();
        let text = serde_json::to_string(&probed).unwrap();
        assert_eq!(serde_json::from_str::<AgentSpec>(&text).unwrap(), probed);
    }

    fn agent(retries: u32, found: ProbeStatus) -> Agent {
        let spec = spec_of(request(|r| {
            r.health_tcp = Some("127.0.0.1:9".into());
            r.health_retries = Some(retries);
        }))
        .unwrap();
        Agent {
            identity: Arc::new(Identity {
                id: "a".into(),
                name: "a".into(),
                spec,
                created_at: Utc::now(),
            }),
            status: Status {
                state: State::Running,
                reason: None,
                run: Run {
                    number: 1,
                    ..Run::default()
                },
                restart_at: None,
            },
            probe: found,
            health: Assessment::HEALTHY,
            reported: Default::default(),
            session: Default::default(),
        }
    }

    #[test]
    fn the_verdict_waits_for_the_retries() {
        let failing = |failures| ProbeStatus {
            run: 1,
            failures,
            last_error: Some("connection refused".into()),
            last_success: None,
        };
        assert_eq!(agent(3, failing(2)).probe_failure(), None);
        assert_eq!(
            agent(3, failing(3)).probe_failure().as_deref(),
            Some("health check failed 3 times in a row: connection refused (tcp 127.0.0.1:9)")
        );
        assert_eq!(
            agent(1, failing(1)).probe_failure().as_deref(),
            Some("health check failed: connection refused (tcp 127.0.0.1:9)")
        );
        // Findings about another run say nothing about this one.
        let stale = ProbeStatus {
            run: 2,
            ..failing(5)
        };
        assert_eq!(agent(1, stale).probe_failure(), None);
        assert_eq!(agent(1, ProbeStatus::default()).probe_failure(), None);
    }
}
