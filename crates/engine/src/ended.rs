//! Recording how a run ended, once its shim has exited (or was found gone
//! after a restart).

use crate::error::EngineError;
use crate::executor::{kill_leftovers, kill_tree, read_state};
use crate::outcome::{classify, Ending};
use crate::policy::Decision;
use crate::{Engine, Inner};
use chrono::Utc;
use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedReceiver;
use wrangle_shim::protocol::ShimState;
use wrangle_wire::{Cause, ErrorCode, State};

/// First pause before an end the store refused is recorded again; it
/// doubles up to [`RECORD_RETRY_MAX`].
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(100);
/// Longest pause between two attempts at recording an end.
const RECORD_RETRY_MAX: Duration = Duration::from_secs(5);

/// Most ends recorded in one transaction.
const MAX_BATCH: usize = 1024;

/// Starts the task that records the runs whose shims exited, as many at
/// once as have ended meanwhile: a thousand agents stopped together are
/// recorded in a few transactions, not a thousand.
pub(crate) fn start_recording(engine: Weak<Inner>, ends: UnboundedReceiver<(String, u32)>) {
    crate::batched::record_in_batches(engine, ends, MAX_BATCH, Engine::runs_ended);
}

impl Engine {
    /// The shims of these runs have exited: read their last states and
    /// record the ends, together. An end already recorded is left alone.
    pub(crate) fn runs_ended(&self, runs: Vec<(String, u32)>) {
        let _timing = BatchTiming(std::time::Instant::now(), runs.len());
        let mut endings: Vec<(String, u32, Ending)> = runs
            .into_iter()
            .map(|(id, run)| {
                let ending = self.ending_of_run(&id, run);
                (id, run, ending)
            })
            .collect();
        for (_, _, ending) in &mut endings {
            ending.ended_at = Some(ending.ended_at.unwrap_or_else(Utc::now));
        }
        if endings.len() > 1 {
            match self.try_record_endings(&endings) {
                Ok(()) => return,
                Err(error) => tracing::warn!(
                    "cannot record {} ends together ({error}); recording each on its own",
                    endings.len()
                ),
            }
        }
        for (id, run, ending) in endings {
            self.record_ending(&id, run, ending);
        }
    }

    /// How run `run` ended, from its shim's last state.
    fn ending_of_run(&self, id: &str, run: u32) -> Ending {
        let dir = self.run_dir(id, run);
        match read_state(&dir) {
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
        }
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
        self.try_record_endings(&[(id.to_string(), run, ending.clone())])
    }

    /// Records the ends in one transaction, each under its agent's
    /// policies, and schedules the restarts they ask for.
    fn try_record_endings(&self, endings: &[(String, u32, Ending)]) -> Result<(), EngineError> {
        let mut planned: HashMap<&str, PlannedEnd> = HashMap::new();
        for (id, run, ending) in endings {
            let run = *run;
            if !self
                .snapshot(id)
                .is_ok_and(|agent| is_current(agent.status.state, agent.status.run.number, run))
            {
                continue;
            }
            // The last lines of its output, its final result among them.
            self.finish_session(id, run);
            let Ok(agent) = self.snapshot(id) else {
                continue; // removed meanwhile
            };
            let ending = with_agents_result(&agent, run, ending);
            let (ending, decision) = self.apply_policies(&agent, &ending)?;
            let restart_at = match &decision {
                Decision::Restart { delay, .. } => chrono::Duration::from_std(*delay)
                    .ok()
                    .map(|delay| Utc::now() + delay),
                _ => None,
            };
            planned.insert(
                id,
                PlannedEnd {
                    run,
                    cgroup: agent.status.run.cgroup.clone(),
                    ending,
                    decision,
                    restart_at,
                    recorded: false,
                },
            );
        }
        if planned.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = planned.keys().map(|id| id.to_string()).collect();
        self.transition_by(&ids, |id, status| {
            let Some(end) = planned.get_mut(id) else {
                return;
            };
            if !is_current(status.state, status.run.number, end.run) {
                return;
            }
            let ending = &end.ending;
            status.state = ending.state;
            status.reason = Some(ending.reason.clone());
            status.run.exit_code = ending.exit_code;
            status.run.signal = ending.signal;
            status.run.ended_at = ending.ended_at;
            status.run.cause = Some(ending.cause);
            status.restart_at = end.restart_at;
            end.recorded = true;
        })?;
        // The shims leave their runs' (empty) cgroups to be removed, on a
        // thread of its own: the next batch of ends does not wait for it.
        let cgroups: Vec<std::path::PathBuf> = planned
            .values()
            .filter(|end| end.recorded)
            .filter_map(|end| end.cgroup.clone())
            .collect();
        self.inner.cgroup_removal.remove(cgroups);
        let mut slot_freed = false;
        for (id, end) in planned {
            match end.decision {
                Decision::Restart { next, delay, .. } if end.recorded => {
                    self.schedule_restart(id, next, delay)
                }
                _ if end.recorded => slot_freed = true,
                _ => {}
            }
        }
        if slot_freed {
            self.admit_queued();
        }
        Ok(())
    }
}

/// An end about to be recorded, and what its policy decided.
struct PlannedEnd {
    run: u32,
    /// The run's cgroup, removed once the end is recorded.
    cgroup: Option<std::path::PathBuf>,
    ending: Ending,
    decision: Decision,
    restart_at: Option<chrono::DateTime<Utc>>,
    /// Whether the transition recorded it (the run was still current).
    recorded: bool,
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

/// Logs (at debug, `WRANGLE_LOG=wrangle_engine::ended=debug`) how long
/// recording a batch of ends took, when dropped.
struct BatchTiming(std::time::Instant, usize);

impl Drop for BatchTiming {
    fn drop(&mut self) {
        tracing::debug!(ends = self.1, took = ?self.0.elapsed(), "recorded ends");
    }
}
