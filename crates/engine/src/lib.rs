//! wrangle's engine: the agents, their runs and states, and the shims that
//! hold them. The API layer calls it; it calls the store and the OS layer.
//!
//! Every state change goes through one function, [`Engine::transition`]
//! (private), which writes the store first and only then changes memory
//! and wakes whoever waits. Each verb of the API has its own module
//! (`create`, `stop`, `kill`, `remove`, `wait`, `follow`), `recover`
//! re-attaches to the shims that outlived a previous daemon, and `probe`
//! runs the agents' health probes.

mod create;
mod doctor;
mod ended;
pub mod error;
pub mod executor;
mod follow;
pub mod health;
mod kill;
pub mod limits;
pub mod logs;
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
mod stop;
mod summary;
mod wait;
mod zygote;

use chrono::{DateTime, Utc};
use error::EngineError;
use executor::LocalShims;
use model::{Agent, Status};
use registry::Registry;
use sampler::Snapshot;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use wrangle_os::limits::LimitSupport;
use wrangle_os::Containment;
use wrangle_store::Store;
use wrangle_wire::{AgentView, DaemonInfo};

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
}

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
}

impl Inner {
    fn lock_registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
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
        let store = Store::open(&config.home.join("wrangle.db"))?;
        let loaded = store.load()?;
        let limits = queue::Limits {
            global: config.max_running,
            groups: store.group_limits()?.into_iter().collect(),
        };
        let engine = Engine {
            inner: Arc::new(Inner {
                shims: LocalShims::new(config.shim_program.clone(), config.home.join("runs"))
                    .map_err(|e| {
                        EngineError::internal(format!("cannot start the exit watcher: {e}"))
                    })?,
                limit_support: LimitSupport::detect(&config.containment),
                config,
                store: Mutex::new(store),
                registry: Mutex::new(Registry::default()),
                observations: Mutex::new(Snapshot::default()),
                cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
                started_at: Utc::now(),
                limits: Mutex::new(limits),
                admission: tokio::sync::Mutex::new(()),
            }),
        };
        engine.recover(loaded).await?;
        let interval = engine.inner.config.sample_interval;
        sampler::start(Arc::downgrade(&engine.inner), interval)
            .map_err(|e| EngineError::internal(format!("cannot start the sampler: {e}")))?;
        Ok(engine)
    }

    /// Every agent (ended ones only with `all`), oldest first.
    pub fn list(&self, all: bool) -> Vec<AgentView> {
        let now = Utc::now();
        let registry = self.registry();
        let mut agents: Vec<&Agent> = registry
            .agents()
            .filter(|agent| all || !agent.status.state.is_ended())
            .collect();
        agents.sort_by(|a, b| {
            (a.identity.created_at, &a.identity.id).cmp(&(b.identity.created_at, &b.identity.id))
        });
        let observations = self.inner.lock_observations();
        agents
            .into_iter()
            .map(|agent| agent.view(now, observations.of(agent)))
            .collect()
    }

    /// One agent by id, name or unique id prefix.
    pub fn inspect(&self, reference: &str) -> Result<AgentView, EngineError> {
        let id = self.registry().resolve(reference)?;
        self.current_view(&id)
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
        self.inner
            .store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
        Ok(agent.view(Utc::now(), observations.of(&agent)))
    }

    /// Waits for state changes of an agent.
    fn subscribe(&self, id: &str) -> Result<watch::Receiver<wrangle_wire::State>, EngineError> {
        self.registry().subscribe(id)
    }

    /// The one place an agent's status changes. `change` edits a copy; if
    /// it changed anything, the copy is written to the store (state, run
    /// and an event in one transaction) and only then becomes the agent's
    /// status, and waiters are woken. A failed write changes nothing.
    fn transition(&self, id: &str, change: impl FnOnce(&mut Status)) -> Result<Agent, EngineError> {
        let mut registry = self.registry();
        let current = registry.get(id)?;
        let mut status = current.status.clone();
        change(&mut status);
        if status == current.status {
            return Ok(current.clone());
        }
        let updated = Agent {
            identity: current.identity.clone(),
            status,
            probe: current.probe.clone(),
        };
        self.store()
            .record(&updated.row(), &updated.status.run.row(id), Utc::now())?;
        registry.replace(updated.clone());
        Ok(updated)
    }
}
