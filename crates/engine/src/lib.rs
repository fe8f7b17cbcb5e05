//! wrangle's engine: the agents, their runs and states, and the shims that
//! hold them. The API layer calls it; it calls the store and the OS layer.
//!
//! Every state change goes through one function, [`Engine::transition`]
//! (private), which writes the store first (with the change's event) and
//! only then changes memory, announces the event and wakes whoever waits.
//! Health changes go through `assess`, once per sampler tick and on each
//! probe result; both publish through [`events`]. Each verb of the API has
//! its own module
//! (`create`, `stop`, `kill`, `remove`, `wait`, `follow`), `recover`
//! re-attaches to the shims that outlived a previous daemon, and `probe`
//! runs the agents' health probes.

pub mod adapters;
mod assess;
mod batched;
mod cgroup_removal;
mod create;
mod doctor;
mod ended;
pub mod error;
pub mod events;
pub mod executor;
mod follow;
pub mod health;
mod kill;
pub mod limits;
mod list;
pub mod logcap;
pub mod logs;
pub mod metrics;
pub mod model;
mod names;
pub mod outcome;
pub mod policy;
pub mod probe;
mod queue;
mod recover;
mod registry;
mod remove;
mod restart;
pub mod sampler;
mod sessions;
pub mod spec;
pub mod spend;
mod started;
mod stop;
mod summary;
pub mod telemetry;
mod view;
mod wait;
mod zygote;

use chrono::{DateTime, Utc};
use error::EngineError;
use events::{Draft, EventBus, EventsConfig};
use executor::LocalShims;
use model::{Agent, Assessment, Status};
use registry::Registry;
use sampler::Snapshot;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use wrangle_os::limits::LimitSupport;
use wrangle_os::Containment;
pub use wrangle_store::Retention;
use wrangle_store::{EventRecord, Store};
use wrangle_wire::{AgentView, DaemonInfo, EventKind, ListQuery};

/// Where the engine keeps things and how it runs agents.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `$WRANGLE_HOME`: the store and the run directories live here.
    pub home: PathBuf,
    /// The wrangle binary, run as `wrangle __shim` for each run.
    pub shim_program: PathBuf,
    /// How run process trees are contained, detected once at start.
    pub containment: Containment,
    /// Most agents that may run at once; the rest are queued.
    pub max_running: Option<u32>,
    /// Tick of the sampler (see [`sampler::DEFAULT_INTERVAL`]).
    pub sample_interval: Duration,
    /// How the event stream runs.
    pub events: EventsConfig,
    /// How long events are kept.
    pub retention: Retention,
    /// Most bytes the logs of all runs may take (see [`logcap`]).
    pub logs_max_total: u64,
    /// Binds the loopback port agents export their telemetry to, given
    /// the one kept from before (bound again if it can be); returns the
    /// port bound, if any. Called once the store is open, before any run
    /// starts.
    pub bind_telemetry: TelemetryBinder,
}

/// See [`EngineConfig::bind_telemetry`].
#[derive(Clone)]
pub struct TelemetryBinder(pub Arc<dyn Fn(Option<u16>) -> Option<u16> + Send + Sync>);

impl TelemetryBinder {
    /// Binds nothing: no telemetry is received.
    pub fn none() -> TelemetryBinder {
        TelemetryBinder(Arc::new(|_| None))
    }
}

impl std::fmt::Debug for TelemetryBinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TelemetryBinder")
    }
}

/// Where the agents' telemetry is received, and how its senders are told
/// apart.
struct TelemetryEndpoint {
    /// The loopback port, when one could be bound.
    port: Option<u16>,
    credentials: telemetry::Credentials,
    /// The user's own collector of each agent that has one, with the run
    /// it is of.
    forwards: std::sync::RwLock<std::collections::HashMap<String, (u32, telemetry::Forward)>>,
}

/// How often old events are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The engine; cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: EngineConfig,
    shims: LocalShims,
    store: Mutex<Store>,
    registry: Mutex<Registry>,
    /// What the sampler saw at its last tick.
    observations: Mutex<Snapshot>,
    /// Working directory of agents created without one.
    cwd: PathBuf,
    /// What can enforce resource limits, detected once at start.
    limit_support: LimitSupport,
    started_at: DateTime<Utc>,
    /// Concurrency limits in force.
    limits: Mutex<queue::Limits>,
    /// Held from counting slots to recording a start (see `queue`).
    admission: tokio::sync::Mutex<()>,
    /// What the cap on the home's logs has done.
    log_cap: Mutex<logcap::CapStats>,
    /// Removes the cgroups of ended runs.
    cgroup_removal: cgroup_removal::CgroupRemoval,
    /// Runs whose shim has exited, to be recorded (in batches).
    ends: tokio::sync::mpsc::UnboundedSender<(String, u32)>,
    /// Runs whose shim confirmed the exec, to be recorded (in batches).
    confirmations: started::Confirmations,
    /// The environments agents start from, each kept once.
    environments: Mutex<spec::Environments>,
    /// Events announced to subscribers.
    events: EventBus,
    /// The price table of costs agents do not report.
    prices: Arc<adapters::Prices>,
    /// What agents have spent, and groups' budgets.
    spending: Mutex<spend::Spending>,
    /// Where the agents' telemetry is received.
    telemetry: TelemetryEndpoint,
}

impl Inner {
    fn lock_store(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes a change with its events in one transaction (`write` gets
    /// the events, numbered on from the store's last), and announces the
    /// events once it is committed, with the store still held so that
    /// they go out in the order of their ids. A failed write announces
    /// nothing.
    fn write_with_events<T>(
        &self,
        drafts: Vec<Draft>,
        write: impl FnOnce(&mut Store, &[EventRecord]) -> wrangle_store::Result<T>,
    ) -> Result<T, EngineError> {
        let mut store = self.lock_store();
        let batch = events::number(store.next_event_id(), drafts);
        let value = write(&mut store, &batch.records)?;
        self.events.announce(batch);
        Ok(value)
    }

    fn lock_registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Taken after the registry when both are held, never before it.
    fn lock_spending(&self) -> MutexGuard<'_, spend::Spending> {
        self.spending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_observations(&self) -> MutexGuard<'_, Snapshot> {
        self.observations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Engine {
    /// Opens the store in `config.home`, loads every agent and re-attaches
    /// to the shims of those that were running: agents keep running, and
    /// runs that ended meanwhile get their real exit status.
    pub async fn open(config: EngineConfig) -> Result<Engine, EngineError> {
        error::name_home(&config.home);
        let mut store = Store::open(&config.home.join("wrangle.db"))?;
        store.start_pruning(config.retention, PRUNE_EVERY)?;
        let loaded = store.load()?;
        let last_event = store.next_event_id() - 1;
        let spending = spend::Spending::load(&mut store)?;
        let credentials = telemetry::Credentials::of_home(&config.home).map_err(|error| {
            EngineError::internal(format!("cannot read or make the telemetry key: {error}"))
        })?;
        let telemetry_port = (config.bind_telemetry.0)(store.telemetry_port()?);
        if let Some(port) = telemetry_port {
            store.set_telemetry_port(port)?;
        }
        let limits = queue::Limits {
            global: config.max_running,
            groups: store.group_limits()?.into_iter().collect(),
        };
        let (ends, ended_runs) = tokio::sync::mpsc::unbounded_channel();
        let (confirmations, confirmed_starts) = tokio::sync::mpsc::unbounded_channel();
        let engine = Engine {
            inner: Arc::new(Inner {
                shims: LocalShims::new(config.shim_program.clone(), config.home.join("runs"))
                    .map_err(|e| {
                        EngineError::internal(format!("cannot start the exit watcher: {e}"))
                    })?,
                limit_support: LimitSupport::detect(&config.containment),
                events: EventBus::new(config.events.clone(), last_event),
                prices: Arc::new(adapters::Prices::for_home(&config.home).unwrap_or_else(
                    |error| {
                        tracing::warn!("the home's price table is not used: {error}");
                        adapters::Prices::shipped()
                    },
                )),
                spending: Mutex::new(spending),
                telemetry: TelemetryEndpoint {
                    port: telemetry_port,
                    credentials,
                    forwards: Default::default(),
                },
                config,
                store: Mutex::new(store),
                registry: Mutex::new(Registry::default()),
                observations: Mutex::new(Snapshot::default()),
                cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
                started_at: Utc::now(),
                limits: Mutex::new(limits),
                admission: tokio::sync::Mutex::new(()),
                log_cap: Mutex::default(),
                ends,
                confirmations,
                cgroup_removal: cgroup_removal::CgroupRemoval::start(),
                environments: Mutex::default(),
            }),
        };
        // Before the re-attach, which may start agents.
        started::start_recording(Arc::downgrade(&engine.inner), confirmed_starts);
        let reattached = engine.recover(loaded).await?;
        engine.publish(EventKind::DaemonStarted {
            pid: std::process::id() as i32,
            version: env!("CARGO_PKG_VERSION").to_string(),
            reattached,
            agents: engine.registry().len() as u32,
        })?;
        ended::start_recording(Arc::downgrade(&engine.inner), ended_runs);
        let interval = engine.inner.config.sample_interval;
        sampler::start(Arc::downgrade(&engine.inner), interval)
            .map_err(|e| EngineError::internal(format!("cannot start the sampler: {e}")))?;
        // The logs are looked at as often as the sampler walks every run
        // whole: a walk of ten thousand run directories is not free.
        logcap::start(Arc::downgrade(&engine.inner), interval * 15)
            .map_err(|e| EngineError::internal(format!("cannot start the log cap: {e}")))?;
        Ok(engine)
    }

    /// Every agent (ended ones only with `all`), oldest first.
    pub fn list(&self, all: bool) -> Vec<AgentView> {
        let query = ListQuery {
            all,
            ..ListQuery::default()
        };
        self.list_with_event_id(&query)
            .map(|(_, views)| views)
            .unwrap_or_default()
    }

    /// The agents `query` asks for, oldest first, with the id of the last
    /// event the list reflects: events after it are changes after the
    /// list. A filter that cannot be read is an error that says why.
    pub fn list_with_event_id(
        &self,
        query: &ListQuery,
    ) -> Result<(u64, Vec<AgentView>), EngineError> {
        let filter = list::Filter::parse(query)?;
        let now = Utc::now();
        let registry = self.registry();
        // Changes of agents are written and announced with the registry
        // held: under it, the last id and the agents agree.
        let event_id = self.inner.events.last_id();
        let mut agents: Vec<&Agent> = registry
            .agents()
            .filter(|agent| filter.matches(agent))
            .collect();
        agents.sort_by(|a, b| {
            (a.identity.created_at, &a.identity.id).cmp(&(b.identity.created_at, &b.identity.id))
        });
        agents.truncate(filter.limit);
        let observations = self.inner.lock_observations();
        let spending = self.inner.lock_spending();
        let views = agents
            .into_iter()
            .map(|agent| self.view_of(agent, &observations, &spending, now))
            .collect();
        Ok((event_id, views))
    }

    /// One agent by id, name or unique id prefix.
    pub fn inspect(&self, reference: &str) -> Result<AgentView, EngineError> {
        self.inspect_with_event_id(reference).map(|(_, view)| view)
    }

    /// [`Engine::inspect`], with the id of the last event it reflects.
    pub fn inspect_with_event_id(&self, reference: &str) -> Result<(u64, AgentView), EngineError> {
        let registry = self.registry();
        let id = registry.resolve(reference)?;
        let event_id = self.inner.events.last_id();
        let agent = registry.get(&id)?;
        let observations = self.inner.lock_observations();
        let spending = self.inner.lock_spending();
        Ok((
            event_id,
            self.view_of(agent, &observations, &spending, Utc::now()),
        ))
    }

    /// The event bus: its last id and what it counted.
    pub fn event_bus(&self) -> &EventBus {
        &self.inner.events
    }

    /// Records and announces an event about no agent (the daemon).
    fn publish(&self, kind: EventKind) -> Result<(), EngineError> {
        self.inner
            .write_with_events(vec![Draft::general(kind, Utc::now())], |store, events| {
                store.append_events(events)
            })
    }

    /// Announces that the daemon is going away (`daemon.stopping`), and
    /// ends every event stream once it is sent.
    pub fn shutting_down(&self, stop_agents: bool) {
        if let Err(error) = self.publish(EventKind::DaemonStopping { stop_agents }) {
            tracing::warn!("cannot record daemon.stopping: {error}");
        }
    }

    /// Ends every event stream (after the events already queued).
    pub fn close_streams(&self) {
        self.inner.events.close();
    }

    /// The daemon is about to exit: the cgroups of runs whose ends are
    /// recorded are removed first (waiting at most `patience`).
    pub fn finish_cleanup(&self, patience: std::time::Duration) {
        self.inner.cgroup_removal.finish(patience);
    }

    /// Who answers: pid, version, home, containment, counts.
    pub fn info(&self) -> DaemonInfo {
        let registry = self.registry();
        DaemonInfo {
            pid: std::process::id() as i32,
            version: env!("CARGO_PKG_VERSION").to_string(),
            home: self.inner.config.home.display().to_string(),
            started_at: self.inner.started_at,
            containment: self.inner.config.containment.describe(),
            agents: registry.len(),
            active: registry
                .agents()
                .filter(|a| !a.status.state.is_ended())
                .count(),
            max_running: self.inner.config.max_running,
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.inner.lock_registry()
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.inner.lock_store()
    }

    /// The store's database file.
    fn database(&self) -> PathBuf {
        self.inner.config.home.join("wrangle.db")
    }

    fn runs_dir(&self, agent_id: &str) -> PathBuf {
        self.inner.config.home.join("runs").join(agent_id)
    }

    fn run_dir(&self, agent_id: &str, run: u32) -> PathBuf {
        self.runs_dir(agent_id).join(run.to_string())
    }

    /// The cgroup a new run gets, when cgroups are in force.
    fn cgroup_for(&self, agent_id: &str, run: u32) -> Option<PathBuf> {
        match &self.inner.config.containment {
            Containment::Cgroup { base } => Some(base.join(format!("{agent_id}-{run}"))),
            Containment::ProcessGroup { .. } => None,
        }
    }

    /// A copy of the agent as it is now.
    fn snapshot(&self, id: &str) -> Result<Agent, EngineError> {
        self.registry().get(id).cloned()
    }

    /// The agent as the API shows it now, with what the sampler saw.
    fn current_view(&self, id: &str) -> Result<AgentView, EngineError> {
        let agent = self.snapshot(id)?;
        let observations = self.inner.lock_observations();
        let spending = self.inner.lock_spending();
        Ok(self.view_of(&agent, &observations, &spending, Utc::now()))
    }

    /// The agent as the API shows it at `now`, with what the sampler saw
    /// and what it has spent.
    fn view_of(
        &self,
        agent: &Agent,
        observations: &Snapshot,
        spending: &spend::Spending,
        now: DateTime<Utc>,
    ) -> AgentView {
        let spent = spending.of_agent(&agent.identity.id);
        agent.view(now, observations.of(agent), &self.inner.prices, spent)
    }

    /// Waits for state changes of an agent.
    fn subscribe(&self, id: &str) -> Result<watch::Receiver<wrangle_wire::State>, EngineError> {
        self.registry().subscribe(id)
    }

    /// The one place an agent's status changes. `change` edits a copy; if
    /// it changed anything, the copy is written to the store (state, run
    /// and the event of a new state in one transaction) and only then
    /// becomes the agent's status; then the event is announced and
    /// waiters are woken. A failed write changes nothing. A run's health
    /// starts `healthy` with its exec and is `unknown` once it ended.
    fn transition(&self, id: &str, change: impl FnOnce(&mut Status)) -> Result<Agent, EngineError> {
        let mut registry = self.registry();
        let current = registry.get(id)?;
        let mut status = current.status.clone();
        change(&mut status);
        if status == current.status {
            return Ok(current.clone());
        }
        let updated = changed(current, status);
        let now = Utc::now();
        let drafts = events::of_transition(current, &updated, now);
        let (row, run) = (updated.row(), updated.status.run.row(id));
        self.inner.write_with_events(drafts, |store, events| {
            store.record(&row, &run, now, events)
        })?;
        registry.replace(updated.clone());
        Ok(updated)
    }

    /// [`Engine::transition`] of many agents by the same `change`, in one
    /// transaction (a stop of a thousand writes once, not a thousand
    /// times). Unknown ids are passed over.
    fn transition_each(
        &self,
        ids: &[String],
        change: impl Fn(&mut Status),
    ) -> Result<(), EngineError> {
        self.transition_by(ids, |_, status| change(status))
    }

    /// [`Engine::transition_each`] with a change of its own for each agent,
    /// given its id.
    fn transition_by(
        &self,
        ids: &[String],
        mut change: impl FnMut(&str, &mut Status),
    ) -> Result<(), EngineError> {
        let mut registry = self.registry();
        let now = Utc::now();
        let mut updates = Vec::new();
        let mut drafts = Vec::new();
        for id in ids {
            let Ok(current) = registry.get(id) else {
                continue;
            };
            let mut status = current.status.clone();
            change(id, &mut status);
            if status == current.status {
                continue;
            }
            let updated = changed(current, status);
            drafts.extend(events::of_transition(current, &updated, now));
            updates.push(updated);
        }
        if updates.is_empty() {
            return Ok(());
        }
        let rows: Vec<_> = updates
            .iter()
            .map(|agent| (agent.row(), agent.status.run.row(&agent.identity.id)))
            .collect();
        let pairs: Vec<_> = rows.iter().map(|(agent, run)| (agent, run)).collect();
        self.inner.write_with_events(drafts, |store, events| {
            store.record_many(&pairs, now, events)
        })?;
        for agent in updates {
            registry.replace(agent);
        }
        Ok(())
    }
}

/// `current` with its status changed to `status`, and its health as the
/// change makes it: healthy when it comes alive, unknown once it is not.
fn changed(current: &Agent, status: Status) -> Agent {
    let health = match (current.status.is_live(), status.is_live()) {
        (false, true) => Assessment::HEALTHY,
        (_, false) => Assessment::UNKNOWN,
        (true, true) => current.health.clone(),
    };
    Agent {
        identity: current.identity.clone(),
        status,
        probe: current.probe.clone(),
        health,
        reported: current.reported.clone(),
        session: current.session.clone(),
    }
}

/// How this crate's property tests run (see
/// [`wrangle_wire::testing::proptest_config`]).
#[cfg(test)]
pub(crate) fn proptest_config() -> proptest::test_runner::Config {
    wrangle_wire::testing::proptest_config()
}
