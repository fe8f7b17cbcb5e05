//! `POST /v1/agents`: create an agent and start its first run.

use crate::error::EngineError;
use crate::events::{self, Draft};
use crate::executor::Started;
use crate::model::{Agent, AgentSpec, Assessment, Identity, Run, Status};
use crate::{names, queue, Engine};
use chrono::Utc;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use wrangle_os::PidFd;
use wrangle_shim::protocol::ShimSpec;
use wrangle_wire::{
    parse, AgentView, Cause, CreateAgent, CreateAgents, ErrorCode, EventKind, ItemError, State,
};

/// One agent of a create, checked and ready to record.
struct Checked {
    /// The name asked for, if any.
    name: Option<String>,
    spec: AgentSpec,
    spec_json: String,
}

/// What a create recorded.
enum Recorded {
    /// New agents: each one's id and whether it is queued.
    New(Vec<(String, bool)>),
    /// None: its idempotency key made these agents before.
    Before(Vec<String>),
}

/// Most runs of a batch started at once: the zygote forks the shims one
/// by one anyway, and each start in flight holds a little memory.
const BATCH_STARTS_IN_FLIGHT: usize = 64;

impl Engine {
    /// Creates an agent and starts it; answers once the exec is confirmed
    /// (`running`) or has failed (`failed`, with the reason).
    ///
    /// With an idempotency `key` that a create made agents with already
    /// (its answer was lost: the client sends it again), nothing is
    /// created: the answer is that agent as it is now.
    pub async fn create(
        &self,
        request: CreateAgent,
        key: Option<String>,
    ) -> Result<AgentView, EngineError> {
        let checked = self.check_create(request, None)?;
        let (id, queued) = match self.record_created(vec![checked], key).await? {
            Recorded::New(mut recorded) => recorded
                .pop()
                .ok_or_else(|| EngineError::internal("an agent was not recorded"))?,
            Recorded::Before(ids) => {
                let id = ids
                    .first()
                    .ok_or_else(|| EngineError::internal("a key of no agent"))?;
                return self.view_made_before(id).await;
            }
        };
        if !queued {
            self.start_run_to_the_end(&id).await?;
        }
        self.current_view(&id)
    }

    /// Creates many agents in one go, all or none: every item is checked
    /// first and one bad item refuses the batch, naming each bad one; the
    /// agents are recorded in one transaction, then started side by side.
    /// Answers, in the batch's order, once each exec is confirmed or has
    /// failed.
    /// An idempotency `key` works as for [`Engine::create`].
    pub async fn create_batch(
        &self,
        batch: CreateAgents,
        key: Option<String>,
    ) -> Result<Vec<AgentView>, EngineError> {
        let checked = self.check_batch(batch)?;
        let recorded = match self.record_created(checked, key).await? {
            Recorded::New(recorded) => recorded,
            Recorded::Before(ids) => {
                let mut views = Vec::with_capacity(ids.len());
                for id in &ids {
                    views.push(self.view_made_before(id).await?);
                }
                return Ok(views);
            }
        };
        let to_start: Vec<String> = recorded
            .iter()
            .filter(|(_, queued)| !queued)
            .map(|(id, _)| id.clone())
            .collect();
        self.start_runs(to_start)
            .await
            .map_err(|error| EngineError::internal(format!("the starts failed: {error}")))?;
        recorded
            .iter()
            .map(|(id, _)| self.current_view(id))
            .collect()
    }

    /// Checks a batch as [`Engine::create_batch`] would, and creates
    /// nothing: everything but whether the names are free.
    pub fn validate_batch(&self, batch: CreateAgents) -> Result<(), EngineError> {
        self.check_batch(batch).map(drop)
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

    /// Checks every item of `batch`, each with the batch's environment
    /// where it has none of its own; one error for all the bad ones.
    fn check_batch(&self, batch: CreateAgents) -> Result<Vec<Checked>, EngineError> {
        let CreateAgents {
            inherit_env,
            agents,
        } = batch;
        let shared_env = inherit_env.map(Arc::new);
        let mut checked = Vec::with_capacity(agents.len());
        let mut items = Vec::new();
        let mut names = HashSet::new();
        for (index, request) in agents.into_iter().enumerate() {
            let name = request.name.clone();
            let mut refuse = |error: EngineError| {
                items.push(ItemError {
                    index,
                    name: name.clone(),
                    code: error.code,
                    message: error.message,
                })
            };
            if let Some(name) = &name {
                if !names.insert(name.clone()) {
                    refuse(EngineError::invalid(format!(
                        "the name {name:?} is given twice in the batch"
                    )));
                    continue;
                }
            }
            match self.check_create(request, shared_env.as_ref()) {
                Ok(agent) => checked.push(agent),
                Err(error) => refuse(error),
            }
        }
        if items.is_empty() {
            return Ok(checked);
        }
        Err(batch_refused(items, checked.len()))
    }

    /// The one copy of an environment agents start from.
    pub(crate) fn intern_env(
        &self,
        env: Arc<BTreeMap<String, String>>,
    ) -> Arc<BTreeMap<String, String>> {
        self.inner
            .environments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .intern(env)
    }

    /// Checks one create request: its spec, limits, group budget, name;
    /// without an environment of its own it takes `shared_env` (a
    /// batch's).
    fn check_create(
        &self,
        request: CreateAgent,
        shared_env: Option<&Arc<BTreeMap<String, String>>>,
    ) -> Result<Checked, EngineError> {
        let name = request.name.clone();
        let mut spec = AgentSpec::from_owned_request(request, shared_env, &self.inner.cwd)?;
        spec.base_env = spec.base_env.map(|env| self.intern_env(env));
        self.check_limits(&spec.limits)?;
        self.check_group_budget(spec.group.as_deref())?;
        if let Some(name) = &name {
            parse::validate_name(name).map_err(EngineError::invalid)?;
        }
        let spec_json =
            serde_json::to_string(&spec).map_err(|e| EngineError::internal(e.to_string()))?;
        Ok(Checked {
            name,
            spec,
            spec_json,
        })
    }

    /// Records `checked` agents (state `starting`, or `queued` where the
    /// limits say so) with their events in one transaction, all or none;
    /// returns each one's id and whether it is queued.
    async fn record_created(
        &self,
        checked: Vec<Checked>,
        key: Option<String>,
    ) -> Result<Recorded, EngineError> {
        let single = checked.len() == 1;
        // Held until the agents are recorded, so that they count against
        // the limits before anyone else counts (see `queue`); and so that
        // two creates of one key cannot both make agents.
        let admission = self.inner.admission.lock().await;
        if let Some(key) = &key {
            if let Some(ids) = self.store().created_by(key)? {
                return Ok(Recorded::Before(ids));
            }
        }
        let limits = self.limits();
        let mut registry = self.registry();
        let mut taken = Vec::new();
        for (index, agent) in checked.iter().enumerate() {
            let Some(name) = &agent.name else { continue };
            if let Some(existing) = registry.id_of_name(name) {
                taken.push(ItemError {
                    index,
                    name: Some(name.clone()),
                    code: ErrorCode::AlreadyExists,
                    message: format!(
                        "an agent named {name:?} already exists (id {}); choose another name or remove it with `wrangle rm {name}`",
                        &existing[..12]
                    ),
                });
            }
        }
        if !taken.is_empty() {
            if single {
                let item = taken.remove(0);
                return Err(EngineError::new(item.code, item.message));
            }
            let mut error = batch_refused(taken, checked.len());
            error.code = ErrorCode::AlreadyExists;
            return Err(error);
        }
        let now = Utc::now();
        let mut agents: Vec<Agent> = Vec::with_capacity(checked.len());
        let mut specs = Vec::with_capacity(checked.len());
        let mut drafts = Vec::with_capacity(checked.len() * 2);
        let mut made_up = HashSet::new();
        for (
            index,
            Checked {
                name,
                spec,
                spec_json,
            },
        ) in checked.into_iter().enumerate()
        {
            let name = name.unwrap_or_else(|| {
                let name = names::made_up_name(|name| {
                    registry.id_of_name(name).is_some() || made_up.contains(name)
                });
                made_up.insert(name.clone());
                name
            });
            let queued = queue::queue_reason_among(
                &limits,
                || registry.agents().chain(agents.iter()),
                spec.group.as_deref(),
                spec.priority,
            );
            let id = names::new_id();
            let run = Run {
                number: 1,
                dir: self.run_dir(&id, 1),
                ..Run::default()
            };
            let agent = Agent {
                identity: Arc::new(Identity {
                    id,
                    name,
                    spec,
                    // A microsecond apart: lists (oldest first) keep the
                    // batch's order.
                    created_at: now + chrono::Duration::microseconds(index as i64),
                }),
                status: Status {
                    state: if queued.is_some() {
                        State::Queued
                    } else {
                        State::Starting
                    },
                    reason: queued,
                    run,
                    restart_at: None,
                },
                probe: Default::default(),
                health: Assessment::UNKNOWN,
                reported: Default::default(),
                session: Default::default(),
            };
            let created = EventKind::Created {
                command: agent.identity.spec.command.clone(),
                labels: agent.identity.spec.labels.clone(),
            };
            drafts.push(Draft::about(&agent, created, now));
            drafts.push(Draft::about(&agent, events::of_state(&agent), now));
            specs.push(spec_json);
            agents.push(agent);
        }
        let rows: Vec<_> = agents
            .iter()
            .zip(specs)
            .map(|(agent, spec_json)| {
                (
                    agent.created_row(spec_json),
                    agent.status.run.row(&agent.identity.id),
                )
            })
            .collect();
        let pairs: Vec<_> = rows.iter().map(|(agent, run)| (agent, run)).collect();
        self.inner.write_with_events(drafts, |store, events| {
            store.create_many(&pairs, key.as_deref(), events)
        })?;
        let recorded = agents
            .iter()
            .map(|agent| {
                (
                    agent.identity.id.clone(),
                    agent.status.state == State::Queued,
                )
            })
            .collect();
        for agent in agents {
            registry.insert(agent);
        }
        drop(registry);
        drop(admission);
        Ok(Recorded::New(recorded))
    }

    /// An agent a create made before, as its answer would have shown it:
    /// once its start is over (a daemon that restarted may be starting it
    /// now).
    async fn view_made_before(&self, id: &str) -> Result<AgentView, EngineError> {
        let mut states = self.subscribe(id)?;
        let _ = states.wait_for(|state| *state != State::Starting).await;
        self.current_view(id)
    }

    /// Starts the current runs of agents in state `starting`, side by
    /// side, in a task of its own: a client that goes away does not cancel
    /// the starts half-way (that would leave agents `starting` for good).
    pub(crate) fn start_runs(&self, ids: Vec<String>) -> tokio::task::JoinHandle<()> {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut starting = tokio::task::JoinSet::new();
            for id in ids {
                if starting.len() >= BATCH_STARTS_IN_FLIGHT {
                    starting.join_next().await;
                }
                let engine = engine.clone();
                starting.spawn(async move {
                    if let Err(error) = engine.start_run(&id).await {
                        tracing::warn!("agent {id}: cannot start: {error}");
                    }
                });
            }
            while starting.join_next().await.is_some() {}
        })
    }

    /// [`Engine::start_run`] in a task of its own, as a batch's starts are,
    /// awaited: a client that goes away (its request's future dropped)
    /// does not cancel the start half-way, which would leave the agent
    /// `starting` for good, its shim unwatched.
    pub(crate) async fn start_run_to_the_end(&self, id: &str) -> Result<(), EngineError> {
        let (engine, id) = (self.clone(), id.to_string());
        tokio::spawn(async move { engine.start_run(&id).await })
            .await
            .map_err(|error| EngineError::internal(format!("the start failed: {error}")))?
    }

    /// Starts the agent's current run (state `starting`) in a shim, records
    /// `running` or `failed`, and watches the shim for the run's end.
    pub(crate) async fn start_run(&self, id: &str) -> Result<(), EngineError> {
        let agent = self.snapshot(id)?;
        let number = agent.status.run.number;
        if number > 1 {
            // The telemetry of earlier runs counts no more (see
            // `forget_telemetry_before`). Here, where a run begins, not in
            // `begin_session`, which a re-attach runs for every agent; a
            // failure to forget it is no reason not to start.
            if let Err(error) = self.store().forget_telemetry_before(id, number) {
                tracing::warn!(
                    "agent {id}: cannot forget the telemetry of its earlier runs: {error}"
                );
            }
        }
        // Before the sampler can see the run running, so that its adapter
        // reads from the first line. A run that begins has no calls yet.
        let telemetry = self
            .begin_session(id, number, Vec::new())
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
            logs: identity.spec.logs,
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
                let recorded = self.record_running(id, state).await;
                self.watch_run(id, number, shim);
                self.watch_timeout(id, number);
                self.start_probing(id, number);
                recorded.map(drop)
            }
            Started::Failed { shim, reason } => {
                if shim.is_none() {
                    // A shim may have been forked before the start failed
                    // (the daemon out of descriptors), and killed then:
                    // whatever it started must not run on unwatched.
                    crate::executor::kill_failed_start(&run.dir, shim_spec.cgroup.as_deref());
                }
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
        let ends = self.inner.ends.clone();
        let id = id.to_string();
        let watched = self.inner.shims.when_exited(shim, move || {
            // Recorded off the watcher thread, with the others that ended
            // meanwhile.
            let _ = ends.send((id, run));
        });
        if let Err(error) = watched {
            tracing::error!("cannot watch a shim: {error}");
        }
    }
}

/// The error that refuses a batch for its bad `items`, of `good` good ones.
fn batch_refused(items: Vec<ItemError>, good: usize) -> EngineError {
    let all = items.len() + good;
    let mut message = format!(
        "{} of the batch's {all} agents refused; nothing was created:",
        items.len()
    );
    for item in &items {
        let name = item
            .name
            .as_ref()
            .map_or_else(String::new, |name| format!(" ({name})"));
        message += &format!("\n  agents[{}]{name}: {}", item.index, item.message);
    }
    let mut error = EngineError::invalid(message);
    error.items = items;
    error
}
