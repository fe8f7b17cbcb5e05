//! Recording how a run ended, once its shim has exited (or was found gone
//! after a restart).

use crate::error::EngineError;
use crate::executor::{kill_leftovers, kill_tree, read_state};
use crate::outcome::{classify, Ending};
use crate::policy::Decision;
use crate::Engine;
use chrono::Utc;
use std::time::Duration;
use wrangle_shim::protocol::ShimState;
use wrangle_wire::{Cause, ErrorCode, State};

/// First pause before an end the store refused is recorded again; it
/// doubles up to [`RECORD_RETRY_MAX`].
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest pause between two attempts at recording an end.
const RECORD_RETRY_MAX: Duration = Duration::from_secs(5);

impl Engine {
    /// The shim of run `run` has exited: read its last state and record the
    /// end. Does nothing if that run's end is already recorded.
    pub(crate) fn run_ended(&self, id: &str, run: u32) {
        let dir = self.run_dir(id, run);
        let ending = match read_state(&dir) {
            Ok(state) => self.ending_of(&state),
            Err(error) => {
                // Without the shim's word, what the daemon recorded of the
                // run still finds its tree: nothing is left unwatched.
                if let Ok(agent) = self.snapshot(id) {
                    let run = &agent.status.run;
                    kill_tree(run.cgroup.as_deref(), run.process);
                }
                Ending {
                    state: State::Failed,
                    reason: format!("the shim ended and its state cannot be read: {error}"),
                    cause: Cause::Lost,
                    exit_code: None,
                    signal: None,
                    ended_at: Some(Utc::now()),
                }
            }
        };
        self.record_ending(id, run, ending);
    }

    /// Classifies a shim's last state; if the shim did not finish its
    /// cleanup (it was killed), kills what is left of the tree first.
    pub(crate) fn ending_of(&self, state: &ShimState) -> Ending {
        if state.finished_at.is_none() {
            kill_leftovers(state);
        }
        classify(state)
    }

    /// Records the end of run `run`, unless the agent has moved on or the
    /// end is recorded already. When the store refuses the write (another
    /// process holds it locked, the disk is full), it is tried again in the
    /// background until it succeeds: an end that is never recorded would
    /// leave the agent listed as running for good, and a stop of it waiting
    /// for an end that has come already.
    pub(crate) fn record_ending(&self, id: &str, run: u32, mut ending: Ending) {
        ending.ended_at = Some(ending.ended_at.unwrap_or_else(Utc::now));
        let error = match self.try_record_ending(id, run, &ending) {
            Ok(()) => return,
            Err(error) => error,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!("cannot record the end of agent {id} run {run}: {error}");
            return;
        };
        tracing::warn!("cannot record the end of agent {id} run {run} yet, will retry: {error}");
        let engine = self.clone();
        let id = id.to_string();
        runtime.spawn(async move {
            let mut pause = RECORD_RETRY_FIRST;
            loop {
                tokio::time::sleep(pause).await;
                let attempt = {
                    let (engine, id, ending) = (engine.clone(), id.clone(), ending.clone());
                    // Off the async threads: the store may wait for its lock.
                    tokio::task::spawn_blocking(move || engine.try_record_ending(&id, run, &ending))
                        .await
                };
                match attempt {
                    Ok(Ok(())) => {
                        tracing::info!("recorded the end of agent {id} run {run} at last");
                        return;
                    }
                    // Removed meanwhile: nothing left to record it on.
                    Ok(Err(error)) if error.code == ErrorCode::NotFound => return,
                    Ok(Err(_)) => pause = (pause * 2).min(RECORD_RETRY_MAX),
                    // The daemon is shutting down; the next one reads the
                    // end from the shim's state again.
                    Err(_) => return,
                }
            }
        });
    }

    /// Records the end under the agent's policies (see `apply_policies`)
    /// and schedules the restart they ask for.
    fn try_record_ending(&self, id: &str, run: u32, ending: &Ending) -> Result<(), EngineError> {
        if !self
            .snapshot(id)
            .is_ok_and(|agent| is_current(agent.status.state, agent.status.run.number, run))
        {
            return Ok(());
        }
        // The last lines of its output, its final result among them.
        self.finish_session(id, run);
        let agent = self.snapshot(id)?;
        let ending = with_agents_result(&agent, run, ending);
        let (ending, decision) = self.apply_policies(&agent, &ending)?;
        let mut recorded = false;
        let restart_at = match &decision {
            Decision::Restart { delay, .. } => chrono::Duration::from_std(*delay)
                .ok()
                .map(|delay| Utc::now() + delay),
            _ => None,
        };
        self.transition(id, |status| {
            if !is_current(status.state, status.run.number, run) {
                return;
            }
            status.state = ending.state;
            status.reason = Some(ending.reason.clone());
            status.run.exit_code = ending.exit_code;
            status.run.signal = ending.signal;
            status.run.ended_at = ending.ended_at;
            status.run.cause = Some(ending.cause);
            status.restart_at = restart_at;
            recorded = true;
        })?;
        match decision {
            Decision::Restart { next, delay, .. } if recorded => {
                self.schedule_restart(id, next, delay)
            }
            // A slot may have freed.
            _ if recorded => self.admit_queued(),
            _ => {}
        }
        Ok(())
    }
}

/// A run whose agent reported an error as its final result has failed,
/// whatever its exit code, with the agent's message as the reason. A stop
/// or a kill stays what it was.
fn with_agents_result(agent: &crate::model::Agent, run: u32, ending: &Ending) -> Ending {
    let mut ending = ending.clone();
    let result = agent
        .session
        .read
        .as_ref()
        .filter(|_| agent.session.run == run)
        .and_then(|read| read.reader.session().result.clone());
    if let Some(result) = result.filter(|result| !result.success) {
        if ending.cause == Cause::Exit {
            let message = result.message.unwrap_or_else(|| "an error".into());
            ending.state = State::Failed;
            ending.reason = format!(
                "{message} (the agent's result is an error; {})",
                ending.reason
            );
        }
    }
    ending
}

/// True while run `run` is the agent's current run and its end is not
/// recorded yet.
fn is_current(state: State, current: u32, run: u32) -> bool {
    current == run && !state.is_ended() && state != State::Backoff
}
