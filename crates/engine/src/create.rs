//! `POST /v1/agents`: create an agent and start its first run.

use crate::error::EngineError;
use crate::events::{self, Draft};
use crate::executor::Started;
use crate::model::{Agent, AgentSpec, Assessment, Identity, Run, Status};
use crate::{names, Engine};
use chrono::Utc;
use std::sync::Arc;
use wrangle_os::PidFd;
use wrangle_shim::protocol::ShimSpec;
use wrangle_wire::{parse, AgentView, Cause, CreateAgent, ErrorCode, EventKind, State};

impl Engine {
    /// Creates an agent and starts it; answers once the exec is confirmed
    /// (`running`) or has failed (`failed`, with the reason).
    pub async fn create(&self, request: CreateAgent) -> Result<AgentView, EngineError> {
        let requested_name = request.name.clone();
        let spec = AgentSpec::from_owned_request(request, &self.inner.cwd)?;
        self.check_limits(&spec.limits)?;
        self.check_group_budget(spec.group.as_deref())?;
        if let Some(name) = &requested_name {
            parse::validate_name(name).map_err(EngineError::invalid)?;
        }
        let spec_json =
            serde_json::to_string(&spec).map_err(|e| EngineError::internal(e.to_string()))?;
        let id = names::new_id();
        let run = Run {
            number: 1,
            dir: self.run_dir(&id, 1),
            ..Run::default()
        };
        // Held until the agent is recorded, so that it counts against the
        // limits before anyone else counts (see `queue`).
        let admission = self.inner.admission.lock().await;
        let queued = self.queue_reason(spec.group.as_deref(), spec.priority);
        {
            let mut registry = self.registry();
            let name = match &requested_name {
                Some(name) => {
                    if let Some(existing) = registry.id_of_name(name) {
                        return Err(EngineError::new(
                            ErrorCode::AlreadyExists,
                            format!(
                                "an agent named {name:?} already exists (id {}); choose another name or remove it with `wrangle rm {name}`",
                                &existing[..12]
                            ),
                        ));
                    }
                    name.clone()
                }
                None => names::made_up_name(|name| registry.id_of_name(name).is_some()),
            };
            let agent = Agent {
                identity: Arc::new(Identity {
                    id: id.clone(),
                    name,
                    spec,
                    spec_json,
                    created_at: Utc::now(),
                }),
                status: Status {
                    state: if queued.is_some() {
                        State::Queued
                    } else {
                        State::Starting
                    },
                    reason: queued.clone(),
                    run: run.clone(),
                    restart_at: None,
                },
                probe: Default::default(),
                health: Assessment::UNKNOWN,
                reported: Default::default(),
                session: Default::default(),
            };
            let now = Utc::now();
            let created = EventKind::Created {
                command: agent.identity.spec.command.clone(),
                labels: agent.identity.spec.labels.clone(),
            };
            let drafts = vec![
                Draft::about(&agent, created, now),
                Draft::about(&agent, events::of_state(&agent), now),
            ];
            let (row, run_row) = (agent.row(), run.row(&id));
            self.inner
                .write_with_events(drafts, |store, events| store.create(&row, &run_row, events))?;
            registry.insert(agent);
        }
        drop(admission);
        if queued.is_none() {
            self.start_run(&id).await?;
        }
        self.current_view(&id)
    }

    /// Checks a create request as `create` would, and creates nothing:
    /// everything but whether the name is free.
    pub fn validate(&self, request: &CreateAgent) -> Result<(), EngineError> {
        AgentSpec::from_request(request, &self.inner.cwd)?;
        if let Some(name) = &request.name {
            parse::validate_name(name).map_err(EngineError::invalid)?;
        }
        Ok(())
    }

    /// Starts the agent's current run (state `starting`) in a shim, records
    /// `running` or `failed`, and watches the shim for the run's end.
    pub(crate) async fn start_run(&self, id: &str) -> Result<(), EngineError> {
        let agent = self.snapshot(id)?;
        // Before the sampler can see the run running, so that its adapter
        // reads from the first line.
        let telemetry = self
            .begin_session(id, agent.status.run.number)
            .unwrap_or_else(|error| {
                tracing::warn!("agent {id}: its output is not read for a session: {error}");
                None
            });
        let run = &agent.status.run;
        let identity = &agent.identity;
        let status_file = run.status_file();
        let mut env = identity.spec.environment(id, run.number, &status_file);
        let mut argv = identity.spec.command.clone();
        if let Some(plan) = &telemetry {
            env.retain(|(key, _)| !plan.env.iter().any(|(set, _)| set == key));
            env.extend(plan.env.iter().cloned());
            argv = plan.command(&argv);
        }
        let mut shim_spec = ShimSpec {
            agent_id: id.to_string(),
            run: run.number,
            argv,
            env,
            cwd: identity.spec.cwd.clone(),
            stop_signal: identity.spec.stop_signal,
            stop_timeout_ms: identity.spec.stop_timeout_ms,
            cgroup: self.cgroup_for(id, run.number),
            limits: Default::default(),
        };
        let number = run.number;
        let started = match self.limit_plan(id, number, &identity.spec.limits) {
            Ok(limits) => {
                shim_spec.limits = limits;
                self.inner.shims.start(&run.dir, &shim_spec).await
            }
            // The machine changed since the agent was created.
            Err(reason) => Started::Failed { shim: None, reason },
        };
        match started {
            Started::Running { shim, state } => {
                let recorded = self.transition(id, |status| {
                    if status.state == State::Starting {
                        status.state = State::Running;
                        status.reason = None;
                    }
                    status.run.shim = Some(state.shim.into());
                    status.run.process = state.agent.map(Into::into);
                    status.run.cgroup = state.cgroup.clone();
                    status.run.started_at = state.started_at;
                    status.run.limits = state.limits.clone();
                });
                self.watch_run(id, number, shim);
                self.watch_timeout(id, number);
                self.start_probing(id, number);
                recorded.map(drop)
            }
            Started::Failed { shim, reason } => {
                let recorded = self.transition(id, |status| {
                    status.state = State::Failed;
                    status.reason = Some(reason);
                    status.run.ended_at = Some(Utc::now());
                    status.run.cause = Some(Cause::SpawnError);
                });
                if let Some(shim) = shim {
                    self.watch_run(id, number, shim);
                }
                recorded.map(drop)
            }
        }
    }

    /// Records how the run ended once its shim has exited.
    pub(crate) fn watch_run(&self, id: &str, run: u32, shim: PidFd) {
        let engine = self.clone();
        let id = id.to_string();
        let runtime = tokio::runtime::Handle::current();
        let watched = self.inner.shims.when_exited(shim, move || {
            // Off the watcher thread: recording may touch the disk.
            runtime.spawn_blocking(move || engine.run_ended(&id, run));
        });
        if let Err(error) = watched {
            tracing::error!("cannot watch a shim: {error}");
        }
    }
}
