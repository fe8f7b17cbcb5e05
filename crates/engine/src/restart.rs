//! Policies in time: starting an agent's next run after its backoff, and
//! ending a run that outlived its `--timeout`. The decisions themselves
//! are in [`crate::policy`].

use crate::error::EngineError;
use crate::model::{Agent, Run};
use crate::outcome::Ending;
use crate::policy::{self, Decision, PastRun};
use crate::Engine;
use chrono::Utc;
use std::time::Duration;
use wrangle_wire::parse::{format_seconds, signal_name};
use wrangle_wire::{AgentView, Cause, OnHang, RestartPolicy, RunView, State};

impl Engine {
    /// What an ending becomes under the agent's policies: a timeout is a
    /// failure, and a failure may lead to a restart (state `backoff`) or to
    /// giving up. Returns the ending to record and the decision.
    pub(crate) fn apply_policies(
        &self,
        agent: &Agent,
        ending: &Ending,
    ) -> Result<(Ending, Decision), EngineError> {
        let mut ending = ending.clone();
        let spec = &agent.identity.spec.restart;
        // Why the stop under way was asked for, stored with the run: a
        // daemon that restarts mid-stop still knows.
        let asked = match agent.status.state {
            State::Stopping => agent.status.run.cause,
            _ => None,
        };
        if let (Cause::User, Some(asked)) = (ending.cause, asked) {
            ending.cause = asked;
        }
        if asked == Some(Cause::Timeout) {
            let limit = spec.timeout().map(format_seconds).unwrap_or_default();
            ending.state = State::Failed;
            ending.cause = Cause::Timeout;
            ending.reason = format!("timeout: ran longer than {limit}; {}", ending.reason);
        }
        let mut spec = spec.clone();
        // Why it was stopped, as the stop said it.
        let why = |default: &'static str| {
            let why = agent.status.reason.as_deref().unwrap_or(default);
            why.strip_suffix(", stopping").unwrap_or(why).to_string()
        };
        match asked {
            Some(Cause::Hang) => {
                ending.state = State::Failed;
                ending.cause = Cause::Hang;
                ending.reason = format!("{}; {}", why("hung"), ending.reason);
                // `--on-hang restart` restarts whatever `--restart` says,
                // within the same limits.
                if spec.on_hang == OnHang::Restart {
                    spec.policy = RestartPolicy::Always;
                }
            }
            Some(Cause::Budget) => {
                ending.state = State::Failed;
                ending.cause = Cause::Budget;
                ending.reason = format!("{}; {}", why("over budget"), ending.reason);
                // Another run would only spend more.
                spec.policy = RestartPolicy::Never;
            }
            Some(Cause::Lingered) => {
                // Its work was done: the run ends as its result says.
                let success = agent
                    .session
                    .read
                    .as_ref()
                    .filter(|_| agent.session.run == agent.status.run.number)
                    .and_then(|read| read.reader.session().result.as_ref())
                    .is_none_or(|result| result.success);
                ending.state = if success {
                    State::Completed
                } else {
                    State::Failed
                };
                ending.cause = Cause::Lingered;
                ending.reason = format!("{}; {}", why("lingered"), ending.reason);
            }
            _ => {}
        }
        // Most ends restart nothing (a stop, a policy of never): the store
        // is asked for the past runs only when they count.
        let history = if policy::may_restart(&spec, ending.state) {
            self.past_runs(agent, &ending)?
        } else {
            Vec::new()
        };
        let now = ending.ended_at.unwrap_or_else(Utc::now);
        let decision = policy::decide(&spec, ending.state, &history, now, rand::random::<f64>());
        match &decision {
            Decision::Stay => {}
            Decision::Restart { reason, .. } => {
                ending.state = State::Backoff;
                ending.reason = format!("{}; {reason}", ending.reason);
            }
            Decision::GiveUp { reason } => {
                ending.state = State::Failed;
                ending.reason = format!("{}; {reason}", ending.reason);
            }
        }
        Ok((ending, decision))
    }

    /// Every run of the agent as the policy sees it, the one that just
    /// ended with its end time.
    fn past_runs(&self, agent: &Agent, ending: &Ending) -> Result<Vec<PastRun>, EngineError> {
        let current = agent.status.run.number;
        let mut runs: Vec<PastRun> = self
            .store()
            .run_history(&agent.identity.id)?
            .into_iter()
            .filter(|record| record.row.run < current)
            .map(|record| PastRun {
                number: record.row.run,
                started_at: record.row.started_at,
                ended_at: record.row.ended_at,
            })
            .collect();
        runs.push(PastRun {
            number: current,
            started_at: agent.status.run.started_at,
            ended_at: ending.ended_at,
        });
        Ok(runs)
    }

    /// Every run of an agent, oldest first, as the store recorded it (the
    /// current one as it is now).
    pub fn runs(&self, reference: &str) -> Result<Vec<RunView>, EngineError> {
        let agent = {
            let registry = self.registry();
            let id = registry.resolve(reference)?;
            registry.get(&id)?.clone()
        };
        let now = Utc::now();
        let records = self.store().run_history(&agent.identity.id)?;
        Ok(records
            .into_iter()
            .map(|record| {
                let current = record.row.run == agent.status.run.number;
                let run = if current {
                    agent.status.run.clone()
                } else {
                    Run::from_row(&record.row)
                };
                let (state, reason) = if current {
                    (agent.status.state, agent.status.reason.clone())
                } else {
                    (record.state, record.reason)
                };
                RunView {
                    run: run.number,
                    state,
                    pid: run.process.map(|process| process.pid),
                    started_at: run.started_at,
                    ended_at: run.ended_at,
                    runtime_seconds: run.runtime_seconds(now),
                    exit_code: run.exit_code,
                    signal: run.signal.map(signal_name),
                    reason,
                    stdout_log: run.stdout_log().display().to_string(),
                    stderr_log: run.stderr_log().display().to_string(),
                }
            })
            .collect())
    }

    /// `wrangle restart`: stops the agent if it runs (the staged stop),
    /// then starts a new run of it, queued if a limit says so. Answers once
    /// the new run's exec is confirmed (or has failed, or it is queued).
    pub async fn restart(&self, reference: &str) -> Result<AgentView, EngineError> {
        let id = self.registry().resolve(reference)?;
        self.check_budgets(&self.snapshot(&id)?)?;
        if !self.snapshot(&id)?.status.state.is_ended() {
            self.stop_one(&id, None, Cause::Restart).await?;
        }
        let queued = {
            let _admission = self.inner.admission.lock().await;
            let agent = self.snapshot(&id)?;
            let queued = self.queue_reason(
                agent.identity.spec.group.as_deref(),
                agent.identity.spec.priority,
            );
            let next = agent.status.run.number + 1;
            let dir = self.run_dir(&id, next);
            let mut moved = false;
            self.transition(&id, |status| {
                if status.state.is_ended() {
                    status.state = if queued.is_some() {
                        State::Queued
                    } else {
                        State::Starting
                    };
                    status.reason = queued.clone();
                    status.restart_at = None;
                    status.run = Run {
                        number: next,
                        dir,
                        ..Run::default()
                    };
                    moved = true;
                }
            })?;
            if !moved {
                return Err(EngineError::precondition(format!(
                    "agent {reference} was started again meanwhile"
                )));
            }
            queued
        };
        if queued.is_none() {
            self.start_run_to_the_end(&id).await?;
        }
        self.current_view(&id)
    }

    /// Starts run `next` of the agent after `delay`, unless it has left
    /// `backoff` meanwhile (stopped, removed).
    pub(crate) fn schedule_restart(&self, id: &str, next: u32, delay: Duration) {
        let engine = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Err(error) = engine.begin_run(&id, next).await {
                tracing::error!("cannot restart agent {id} (run {next}): {error}");
            }
        });
    }

    /// Moves an agent in `backoff` to its run `next` and starts it.
    async fn begin_run(&self, id: &str, next: u32) -> Result<(), EngineError> {
        let dir = self.run_dir(id, next);
        let mut moved = false;
        let result = self.transition(id, |status| {
            if status.state == State::Backoff && status.run.number + 1 == next {
                status.state = State::Starting;
                status.reason = None;
                status.restart_at = None;
                status.run = Run {
                    number: next,
                    dir,
                    ..Run::default()
                };
                moved = true;
            }
        });
        match result {
            Ok(_) if moved => self.start_run(id).await,
            Ok(_) => Ok(()),
            // Removed while it waited.
            Err(error) if error.code == wrangle_wire::ErrorCode::NotFound => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Ends run `run` when it outlives the agent's timeout, counted from
    /// its start (so a daemon restart does not extend it).
    pub(crate) fn watch_timeout(&self, id: &str, run: u32) {
        let Ok(agent) = self.snapshot(id) else { return };
        let (Some(limit), Some(started)) = (
            agent.identity.spec.restart.timeout(),
            agent.status.run.started_at,
        ) else {
            return;
        };
        let elapsed = (Utc::now() - started).to_std().unwrap_or_default();
        let remaining = limit.saturating_sub(elapsed);
        let engine = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(remaining).await;
            if let Err(error) = engine.time_out(&id, run, limit) {
                tracing::error!("cannot stop agent {id} at its timeout: {error}");
            }
        });
    }

    fn time_out(&self, id: &str, run: u32, limit: Duration) -> Result<(), EngineError> {
        let why = format!("timeout: ran longer than {}", format_seconds(limit));
        self.stop_for(id, run, Cause::Timeout, why)
    }

    /// Starts the staged stop of run `run`, if it still runs, for `cause`
    /// (a timeout, a hang), recording `why` (with `, stopping`) as the
    /// reason: the ending is then taken for a failure (see
    /// `apply_policies`).
    pub(crate) fn stop_for(
        &self,
        id: &str,
        run: u32,
        cause: Cause,
        why: String,
    ) -> Result<(), EngineError> {
        let mut stopping = false;
        let agent = match self.transition(id, |status| {
            if status.run.number == run && status.state == State::Running {
                status.state = State::Stopping;
                status.reason = Some(format!("{why}, stopping"));
                status.run.cause = Some(cause);
                stopping = true;
            }
        }) {
            Ok(agent) => agent,
            Err(error) if error.code == wrangle_wire::ErrorCode::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        if !stopping {
            return Ok(());
        }
        self.send_to_shim(&agent.status.run.dir, agent.identity.spec.stop_command())
    }
}
