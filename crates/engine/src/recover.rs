//! Start-up after a crash or an upgrade: load every agent from the store
//! and re-attach to the shims that outlived the previous daemon. Agents
//! keep running, runs that ended meanwhile get their real exit status, and
//! nothing is started twice. A recycled pid is never mistaken for a shim:
//! shims are found by pid *and* start time.

use crate::error::EngineError;
use crate::executor::{kill_leftovers, kill_tree, read_state, Found};
use crate::model::{Agent, AgentSpec, Assessment, Identity, Run, Status};
use crate::outcome::Ending;
use crate::Engine;
use chrono::Utc;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wrangle_os::{Containment, PidFd};
use wrangle_shim::protocol::{Phase, ShimState};
use wrangle_store::{AgentRow, CallsByRun, RunRow};
use wrangle_wire::{Cause, State};

/// How long a shim found in `starting` is given to report its exec.
const STARTING_GRACE: Duration = Duration::from_secs(30);

impl Engine {
    /// Loads the stored agents and re-attaches those that had not ended;
    /// returns how many runs were found alive and re-attached.
    pub(crate) async fn recover(
        &self,
        loaded: Vec<(AgentRow, Option<RunRow>)>,
    ) -> Result<u32, EngineError> {
        let mut active = Vec::new();
        let mut ended_cgroups = Vec::new();
        // Each agent's current run.
        let mut current_runs = HashMap::new();
        {
            let mut registry = self.registry();
            for (row, run) in loaded {
                let mut spec: AgentSpec = serde_json::from_str(&row.spec).map_err(|error| {
                    EngineError::internal(format!(
                        "the store holds an unreadable spec for agent {} ({}): {error}",
                        row.name, row.id
                    ))
                })?;
                spec.base_env = spec.base_env.map(|env| self.intern_env(env));
                let run = match &run {
                    Some(run) => Run::from_row(run),
                    None => Run {
                        number: row.run,
                        dir: self.run_dir(&row.id, row.run),
                        ..Run::default()
                    },
                };
                current_runs.insert(row.id.clone(), row.run);
                if !row.state.is_ended() {
                    active.push(row.id.clone());
                } else if let Some(cgroup) = &run.cgroup {
                    // An end recorded just before the daemon died may
                    // have left its run's cgroup.
                    ended_cgroups.push(cgroup.clone());
                }
                // Findings of a probe stored by an older wrangle, or
                // unreadable, start afresh: the probe runs again.
                let probe = row
                    .probe
                    .as_deref()
                    .and_then(|json| serde_json::from_str(json).ok())
                    .unwrap_or_default();
                registry.insert(Agent {
                    identity: Arc::new(Identity {
                        id: row.id,
                        name: row.name,
                        spec,
                        created_at: row.created_at,
                    }),
                    status: Status {
                        state: row.state,
                        reason: row.reason,
                        run,
                        restart_at: row.restart_at,
                    },
                    probe,
                    health: Assessment {
                        health: row.health,
                        reason: row.health_reason,
                    },
                    reported: Default::default(),
                    session: Default::default(),
                });
            }
        }
        ended_cgroups.extend(self.earlier_runs_cgroups(&current_runs));
        self.inner.cgroup_removal.remove(ended_cgroups);
        let mut reattached = 0;
        let mut never_started = Vec::new();
        // Read in one pass: the calls are stored in the order they came,
        // not by run.
        let mut calls = self.store().telemetry_calls_of_current_runs()?;
        for id in active {
            let agent = self.snapshot(&id)?;
            if agent.status.state == State::Queued {
                // Never started: admitted below, in queue order.
                continue;
            }
            if agent.status.state == State::Backoff {
                // What is left of the delay (the first one again for an
                // agent stored before the time was).
                let delay = match agent.status.restart_at {
                    Some(at) => (at - Utc::now()).to_std().unwrap_or_default(),
                    None => Duration::from_millis(agent.identity.spec.restart.backoff_initial_ms),
                };
                self.schedule_restart(&id, agent.status.run.number + 1, delay);
                continue;
            }
            match self.reattach(&id, &mut calls)? {
                Reattached::Alive => reattached += 1,
                Reattached::Ended => {}
                Reattached::NeverStarted => never_started.push(id),
            }
        }
        if !never_started.is_empty() {
            tracing::info!(
                "{} agents were recorded but not yet started when the last daemon stopped; starting them",
                never_started.len()
            );
            drop(self.start_runs(never_started));
        }
        self.admit_queued();
        Ok(reattached)
    }

    /// The cgroups of this home's agents' earlier runs: ended, but the
    /// previous daemon died, or gave up waiting at its stop, before it
    /// removed them (it removes a run's cgroup after the end is recorded,
    /// on a thread of its own). Cgroups of other homes share the directory
    /// and are left alone, as are those of agents removed meanwhile, which
    /// no name here tells apart from another home's.
    fn earlier_runs_cgroups(&self, current_runs: &HashMap<String, u32>) -> Vec<PathBuf> {
        let Containment::Cgroup { base } = &self.inner.config.containment else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(base) else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| {
                let name = entry.ok()?.file_name();
                let (id, run) = name.to_str()?.rsplit_once('-')?;
                let run: u32 = run.parse().ok()?;
                // Only earlier runs: the current one's, if it ended, is
                // among the ended ones already, and a later one may be a
                // start the store has not caught up with.
                (run < *current_runs.get(id)?).then(|| base.join(&name))
            })
            .collect()
    }

    /// Finds the shim of one agent's current run and takes it back, with
    /// its telemetry calls out of `calls`.
    fn reattach(&self, id: &str, calls: &mut CallsByRun) -> Result<Reattached, EngineError> {
        let agent = self.snapshot(id)?;
        let run = agent.status.run.clone();
        // What its adapter stored, to go on from (and to read the rest of
        // a run that ended meanwhile).
        let its_calls = calls
            .remove(&(id.to_string(), run.number))
            .unwrap_or_default();
        if let Err(error) = self.begin_session(id, run.number, its_calls) {
            tracing::warn!("agent {id}: its output is not read for a session: {error}");
        }
        match self.inner.shims.find(&run.dir, run.shim) {
            Found::Alive { shim, state } => self
                .adopt(id, &agent, shim, state)
                .map(|()| Reattached::Alive),
            Found::Ended { state } => {
                let ending = self.ending_of(&state);
                self.record_run_facts(id, &state)?;
                self.record_ending(id, run.number, ending);
                Ok(Reattached::Ended)
            }
            // Recorded, but its shim never got as far as its state file: a
            // shim dies with its parent until it has written it, so no
            // agent was started, nor ever will be by that shim. Started
            // now, it runs once (a batch cut short by a crash).
            Found::Lost { state: None, .. }
                if agent.status.state == State::Starting && run.shim.is_none() =>
            {
                Ok(Reattached::NeverStarted)
            }
            Found::Lost { state, why } => {
                match &state {
                    Some(state) => {
                        kill_leftovers(state);
                        self.record_run_facts(id, state)?;
                    }
                    // The shim's state is unreadable or gone, but the store
                    // knows the run's cgroup and main process: an agent that
                    // outlived its shim is not left running unwatched.
                    None => kill_tree(run.cgroup.as_deref(), run.process),
                }
                self.record_ending(
                    id,
                    run.number,
                    Ending {
                        state: State::Failed,
                        reason: format!("lost while the daemon was down: {why}"),
                        cause: Cause::Lost,
                        exit_code: None,
                        signal: None,
                        ended_at: None,
                    },
                );
                Ok(Reattached::Ended)
            }
        }
    }

    /// Re-attaches to a live shim: records what it knows, finishes an
    /// interrupted stop, and watches it to the end.
    fn adopt(
        &self,
        id: &str,
        agent: &Agent,
        shim: PidFd,
        state: Option<ShimState>,
    ) -> Result<(), EngineError> {
        let number = agent.status.run.number;
        if let Some(state) = &state {
            self.record_run_facts(id, state)?;
            if state.phase == Phase::Starting {
                self.await_start(id, number);
            }
            // The daemon died between recording `stopping` and telling the
            // shim: tell it now, so the stop completes (with its own
            // signal and grace: a `--timeout` of the stop was not kept).
            if agent.status.state == State::Stopping && state.stop.is_none() {
                self.send_to_shim(&agent.status.run.dir, agent.identity.spec.stop_command())?;
            }
        }
        self.watch_run(id, number, shim);
        self.watch_timeout(id, number);
        self.start_probing(id, number);
        Ok(())
    }

    /// Copies what the shim's state says about the run into the agent:
    /// pids, cgroup, start time, and `running` once the exec is confirmed.
    fn record_run_facts(&self, id: &str, state: &ShimState) -> Result<(), EngineError> {
        self.transition(id, |status| {
            status.run.shim = Some(state.shim.into());
            if let Some(agent) = state.agent {
                status.run.process = Some(agent.into());
            }
            if state.cgroup.is_some() {
                status.run.cgroup = state.cgroup.clone();
            }
            if state.started_at.is_some() {
                status.run.started_at = state.started_at;
            }
            status.run.limits = state.limits.clone();
            if status.state == State::Starting && state.agent.is_some() {
                status.state = State::Running;
            }
        })
        .map(drop)
    }

    /// A shim found before its exec was confirmed: re-read its state until
    /// it reports the exec (its end is caught by the shim watcher).
    fn await_start(&self, id: &str, run: u32) {
        let engine = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let dir = engine.run_dir(&id, run);
            let deadline = Instant::now() + STARTING_GRACE;
            while Instant::now() < deadline {
                if let Ok(state) = read_state(&dir) {
                    if state.phase != Phase::Starting {
                        let _ = engine.record_run_facts(&id, &state);
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tracing::warn!("agent {id}: its shim never reported its exec");
        });
    }
}

/// What re-attaching to an agent's run found.
enum Reattached {
    /// Its shim runs: watched again.
    Alive,
    /// The run ended (its ending is recorded).
    Ended,
    /// It was recorded but never started: start it.
    NeverStarted,
}
