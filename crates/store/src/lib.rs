//! wrangle's persistence: one SQLite file (WAL) with the agents, their
//! runs, and an append-only log of events (see [`events`]).
//!
//! The engine writes through this store before it answers: a state change
//! is one transaction that updates the agent, its run and appends its
//! events, so a daemon killed at any moment leaves a consistent file.
//! `synchronous=NORMAL` in WAL mode keeps every committed transaction
//! across a crash of the process (not across a power cut, which the
//! agents do not survive either).

mod checkpoint;
pub mod events;
pub mod idempotency;
pub mod ledger;
pub mod prune;
mod schema;
pub mod telemetry;

pub use events::{AgentMatch, EventReader, EventRecord, Kept};
pub use ledger::{CostDelta, CostKey, CostSum, Ledgered, SignedTokens};
pub use prune::Retention;
pub use telemetry::{CallsByRun, FoldedCalls, TelemetryCall};

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use std::path::Path;
use std::time::Duration;
use wrangle_wire::{Cause, Health, State};

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The name is used by another agent.
    #[error("an agent named {0:?} already exists")]
    NameTaken(String),
    /// Another process holds the database locked.
    #[error("the store {path} is locked by another process (is another wrangle daemon using it?)")]
    Locked {
        /// The database file.
        path: String,
    },
    /// The file was written by a newer wrangle.
    #[error("the store {path} has schema version {found}, newer than this wrangle knows ({known}); upgrade wrangle")]
    TooNew {
        /// The database file.
        path: String,
        /// Schema version in the file.
        found: i64,
        /// Newest version this build knows.
        known: i64,
    },
    /// Any other SQLite error.
    #[error("store error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A value in the file cannot be understood.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The system refused something the store needs (a thread).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Result of a store operation.
pub type Result<T> = std::result::Result<T, StoreError>;

/// An agent as stored: its identity, its spec (JSON owned by the engine)
/// and where it is in its lifecycle.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRow {
    /// Unique id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The agent's spec as JSON; the engine defines its shape.
    pub spec: String,
    /// Lifecycle state.
    pub state: State,
    /// Why it is in that state.
    pub reason: Option<String>,
    /// Number of the current run (0 before the first).
    pub run: u32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Health as last assessed.
    pub health: Health,
    /// Why, as last assessed.
    pub health_reason: Option<String>,
    /// What the health probe found of the current run, as JSON the engine
    /// defines.
    pub probe: Option<String>,
    /// In `backoff`: when the next run starts.
    pub restart_at: Option<DateTime<Utc>>,
}

/// One run of an agent as stored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunRow {
    /// The agent it belongs to.
    pub agent_id: String,
    /// Its number, from 1.
    pub run: u32,
    /// The run directory (logs and shim files).
    pub dir: String,
    /// The shim's pid and start time, once spawned.
    pub shim: Option<(i32, u64)>,
    /// The agent's main process pid and start time, once exec'd.
    pub process: Option<(i32, u64)>,
    /// The run's cgroup, if one holds its tree.
    pub cgroup: Option<String>,
    /// When the exec was confirmed.
    pub started_at: Option<DateTime<Utc>>,
    /// When the main process ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
    /// Why it is being stopped, or why it ended.
    pub cause: Option<Cause>,
}

/// A run as the store last recorded it, with the agent's state and reason
/// at that time (for an ended run: how it ended).
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The run.
    pub row: RunRow,
    /// The state recorded with it.
    pub state: State,
    /// The reason recorded with it.
    pub reason: Option<String>,
}

/// An agent's health as assessed, to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthRow {
    /// The agent.
    pub agent_id: String,
    /// Its health.
    pub health: Health,
    /// Why.
    pub reason: Option<String>,
    /// What its probe found, as JSON the engine defines.
    pub probe: Option<String>,
}

/// What an adapter has read of a run's output, to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// The agent.
    pub agent_id: String,
    /// Its run.
    pub run: u32,
    /// The offset in the run's stdout up to which it has read.
    pub read_to: u64,
    /// What it counted up to there, as JSON the engine defines.
    pub reader: String,
}

/// The SQLite store of one wrangle home.
pub struct Store {
    connection: Connection,
    path: String,
    /// The id of the next event.
    next_event: u64,
    /// Ends its thread when the store is dropped.
    _checkpointer: Option<checkpoint::Checkpointer>,
    /// Ends its thread when the store is dropped.
    pruner: Option<prune::Pruner>,
    /// Changes of the ledger that telemetry made, not written yet (see
    /// [`Store::record_telemetry`]).
    deferred_costs: ledger::Deferred,
}

impl Drop for Store {
    /// Writes the changes of the ledger that wait (see
    /// [`Store::record_telemetry`]): a daemon that stops leaves none to be
    /// made up by the next.
    fn drop(&mut self) {
        if let Err(error) = self.write_deferred_costs() {
            tracing::warn!("the ledger's last changes from telemetry are not written: {error}");
        }
    }
}

/// Whether a transaction writes the deferred changes of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deferred {
    Written,
    Left,
}

/// Page cache of the daemon's connection. SQLite's default (2 MiB) holds
/// a few hundred agents' rows and indexes: a stop of 10,000 read its
/// pages back from the file again and again (a tenth of the daemon's
/// time). At 10,000 agents 8 MiB adds 6 MiB to the daemon's RSS, and 16
/// MiB read no fewer pages; the cache grows only as the store is used.
const WRITER_CACHE_KIB: i64 = 8 * 1024;

impl Store {
    /// Opens (creating if needed) the store at `path` and brings its schema
    /// up to date.
    pub fn open(path: &Path) -> Result<Store> {
        let display = path.display().to_string();
        let mut connection = Connection::open(path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        let locked = |error: rusqlite::Error| explain_busy(error.into(), &display);
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(locked)?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        // A burst can make the log long before a checkpoint catches up;
        // past this it is cut back once checkpointed.
        connection.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
        connection.pragma_update(None, "foreign_keys", true)?;
        connection.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        let checkpointer = checkpoint_in_background(&mut connection, path);
        let mut store = Store {
            connection,
            path: display.clone(),
            next_event: 1,
            _checkpointer: checkpointer,
            pruner: None,
            deferred_costs: ledger::Deferred::default(),
        };
        schema::migrate(&mut store.connection, &display)
            .map_err(|error| explain_busy(error, &display))?;
        store.next_event = events::next_id(&store.connection)?;
        // Reading works while another process holds the write lock, so a
        // daemon could start, list its agents and then fail to record any
        // change, even the end of a run it re-attached: say it now.
        store
            .connection
            .execute_batch("BEGIN IMMEDIATE; ROLLBACK;")
            .map_err(locked)?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Prunes the event log on a thread of its own, now and every `every`,
    /// keeping what `retention` says; replaces an earlier pruner.
    pub fn start_pruning(&mut self, retention: Retention, every: Duration) -> Result<()> {
        self.pruner = None;
        self.pruner = Some(prune::Pruner::start(
            Path::new(&self.path),
            retention,
            every,
        )?);
        Ok(())
    }

    /// The id the next event gets. Events handed to the writing methods
    /// below are numbered from it, in order.
    pub fn next_event_id(&self) -> u64 {
        self.next_event
    }

    /// Runs `write` in a transaction that also appends `events` and
    /// writes the deferred changes of the ledger; the next event id moves
    /// on only once it is committed. Every change of an agent's state thus
    /// writes the costs its run made before it: a run that ended and was
    /// followed by another is never left with costs that only memory held.
    fn write_with_events<T>(
        &mut self,
        events: &[EventRecord],
        write: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        self.write_with(events, Deferred::Written, write)
    }

    /// [`Store::write_with_events`], the deferred changes of the ledger
    /// written or left as `deferred` says.
    fn write_with<T>(
        &mut self,
        events: &[EventRecord],
        deferred: Deferred,
        write: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        if let Some((index, event)) = events
            .iter()
            .enumerate()
            .find(|(index, event)| event.id != self.next_event + *index as u64)
        {
            return Err(StoreError::Corrupt(format!(
                "event {index} of a write has id {}, expected {}",
                event.id,
                self.next_event + index as u64
            )));
        }
        let path = self.path.clone();
        // IMMEDIATE: the write lock is taken first, so that a write that
        // waits for the pruner's (see `prune`) waits in the busy handler;
        // a deferred one that read before the pruner committed would fail
        // at once (SQLITE_BUSY_SNAPSHOT).
        let written = (|| {
            let transaction = self
                .connection
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = write(&transaction)?;
            if deferred == Deferred::Written && !self.deferred_costs.deltas().is_empty() {
                ledger::add(&transaction, self.deferred_costs.deltas())?;
            }
            events::insert(&transaction, events)?;
            transaction.commit()?;
            Ok(value)
        })()
        .map_err(|error| explain_busy(error, &path))?;
        self.next_event += events.len() as u64;
        if deferred == Deferred::Written {
            self.deferred_costs.clear();
        }
        Ok(written)
    }

    /// Writes the changes of the ledger that telemetry made and that wait
    /// (see [`Store::record_telemetry`]); nothing when none wait.
    pub fn write_deferred_costs(&mut self) -> Result<()> {
        if self.deferred_costs.deltas().is_empty() {
            return Ok(());
        }
        self.write_with_events(&[], |_| Ok(()))
    }

    /// Appends events that change nothing else (daemon events, progress).
    pub fn append_events(&mut self, events: &[EventRecord]) -> Result<()> {
        self.write_with_events(events, |_| Ok(()))
    }

    /// Records assessed healths (and probe findings) and what adapters
    /// read of runs' output with the changes of the ledger it makes, and
    /// their events, in one transaction. A session is only moved forward:
    /// a row that has read less than the one stored changes nothing.
    pub fn record_findings(
        &mut self,
        healths: &[HealthRow],
        sessions: &[SessionRow],
        costs: &[CostDelta],
        events: &[EventRecord],
    ) -> Result<()> {
        self.write_with_events(events, |transaction| {
            ledger::add(transaction, costs)?;
            let mut statement = transaction.prepare_cached(
                "UPDATE agents SET health = ?2, health_reason = ?3, probe = ?4 WHERE id = ?1",
            )?;
            for update in healths {
                statement.execute(params![
                    update.agent_id,
                    update.health.as_str(),
                    update.reason,
                    update.probe
                ])?;
            }
            let mut statement = transaction.prepare_cached(
                "INSERT INTO sessions (agent_id, run, read_to, reader) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (agent_id, run) DO UPDATE SET read_to = ?3, reader = ?4
                 WHERE excluded.read_to > sessions.read_to",
            )?;
            for session in sessions {
                statement.execute(params![
                    session.agent_id,
                    session.run,
                    session.read_to as i64,
                    session.reader
                ])?;
            }
            Ok(())
        })
    }

    /// Records model calls agents reported over telemetry (new ones: the
    /// engine tells a call delivered again), the changes of the ledger
    /// they make and their events, in one transaction. The changes of runs
    /// that go on (`running_costs`) may wait, up to
    /// [`ledger::DEFER_AT_MOST`], to be written together with later ones,
    /// or with any other write that comes first, such as the end of their
    /// run: a thousand agents each reporting a call a second change a
    /// thousand rows of the ledger, on pages of their own, and each turn's
    /// commit wrote a score of those pages again for a few calls. What
    /// waits is not lost in a crash: its calls are stored, and the ledger
    /// of a running agent's run is brought up to them when the next daemon
    /// reads its session again. `costs` (those of runs that ended) are
    /// written at once.
    pub fn record_telemetry(
        &mut self,
        calls: &[TelemetryCall],
        costs: &[CostDelta],
        running_costs: &[CostDelta],
        events: &[EventRecord],
    ) -> Result<()> {
        if self.deferred_costs.due() {
            return self.write_with_events(events, |transaction| {
                telemetry::add(transaction, calls)?;
                ledger::add(transaction, costs)?;
                ledger::add(transaction, running_costs)
            });
        }
        self.write_with(events, Deferred::Left, |transaction| {
            telemetry::add(transaction, calls)?;
            ledger::add(transaction, costs)
        })?;
        self.deferred_costs.add(running_costs);
        Ok(())
    }

    /// What an adapter has read of run `run` of the agent, if anything.
    pub fn session(&self, agent_id: &str, run: u32) -> Result<Option<SessionRow>> {
        self.connection
            .prepare_cached(
                "SELECT read_to, reader FROM sessions WHERE agent_id = ?1 AND run = ?2",
            )?
            .query_row(params![agent_id, run], |row| {
                Ok(SessionRow {
                    agent_id: agent_id.to_string(),
                    run,
                    read_to: row.get::<_, i64>(0)? as u64,
                    reader: row.get(1)?,
                })
            })
            .optional()
            .map_err(Into::into)
    }

    /// Records a new agent with its first run and its events, in one
    /// transaction. Fails with [`StoreError::NameTaken`] if the name is in
    /// use, and then changes nothing.
    pub fn create(&mut self, agent: &AgentRow, run: &RunRow, events: &[EventRecord]) -> Result<()> {
        self.create_many(&[(agent, run)], None, events)
    }

    /// Inserts many new agents, each with its first run, and their events,
    /// in one transaction: all of them or none (a name taken refuses the
    /// whole batch with [`StoreError::NameTaken`]). With an idempotency
    /// `key`, the key is recorded with them (see [`Store::created_by`]).
    pub fn create_many(
        &mut self,
        agents: &[(&AgentRow, &RunRow)],
        key: Option<&str>,
        events: &[EventRecord],
    ) -> Result<()> {
        self.write_with_events(events, |transaction| {
            if let Some(key) = key {
                let ids: Vec<&str> = agents.iter().map(|(agent, _)| agent.id.as_str()).collect();
                let at = agents
                    .first()
                    .map_or_else(Utc::now, |(agent, _)| agent.created_at);
                idempotency::add(transaction, key, &ids, at)?;
            }
            let mut insert = transaction.prepare_cached(
                "INSERT INTO agents (id, name, state, reason, run, created_at, updated_at,
                     health, health_reason, probe, restart_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9, ?10)",
            )?;
            let mut insert_spec =
                transaction.prepare_cached("INSERT INTO agent_specs (id, spec) VALUES (?1, ?2)")?;
            for (agent, run) in agents {
                let inserted = insert.execute(params![
                    agent.id,
                    agent.name,
                    agent.state.as_str(),
                    agent.reason,
                    agent.run,
                    agent.created_at,
                    agent.health.as_str(),
                    agent.health_reason,
                    agent.probe,
                    agent.restart_at,
                ]);
                match inserted {
                    Ok(_) => {}
                    Err(error)
                        if error.sqlite_error_code()
                            == Some(rusqlite::ErrorCode::ConstraintViolation)
                            && error.to_string().contains("agents.name") =>
                    {
                        return Err(StoreError::NameTaken(agent.name.clone()));
                    }
                    Err(error) => return Err(error.into()),
                }
                insert_spec.execute(params![agent.id, agent.spec])?;
                write_run(transaction, agent, run)?;
            }
            Ok(())
        })
    }

    /// Writes a change of an agent in one transaction: its state, reason,
    /// health and current run number, the run's row (inserted or
    /// updated), and its events.
    pub fn record(
        &mut self,
        agent: &AgentRow,
        run: &RunRow,
        at: DateTime<Utc>,
        events: &[EventRecord],
    ) -> Result<()> {
        self.record_many(&[(agent, run)], at, events)
    }

    /// [`Store::record`] of many agents' changes in one transaction.
    pub fn record_many(
        &mut self,
        changes: &[(&AgentRow, &RunRow)],
        at: DateTime<Utc>,
        events: &[EventRecord],
    ) -> Result<()> {
        self.write_with_events(events, |transaction| {
            let mut update = transaction.prepare_cached(
                "UPDATE agents SET state = ?2, reason = ?3, run = ?4, updated_at = ?5,
                     health = ?6, health_reason = ?7, probe = ?8, restart_at = ?9
                 WHERE id = ?1",
            )?;
            for (agent, run) in changes {
                update.execute(params![
                    agent.id,
                    agent.state.as_str(),
                    agent.reason,
                    agent.run,
                    at,
                    agent.health.as_str(),
                    agent.health_reason,
                    agent.probe,
                    agent.restart_at,
                ])?;
                write_run(transaction, agent, run)?;
            }
            Ok(())
        })
    }

    /// Every agent with its current run (if it has one), oldest first.
    pub fn load(&self) -> Result<Vec<(AgentRow, Option<RunRow>)>> {
        let mut statement = self.connection.prepare(
            "SELECT a.id, a.name, s.spec, a.state, a.reason, a.run, a.created_at,
                    a.health, a.health_reason, a.probe, a.restart_at,
                    r.agent_id, r.run, r.dir, r.shim_pid, r.shim_start_time, r.pid, r.pid_start_time,
                    r.cgroup, r.started_at, r.ended_at, r.exit_code, r.signal, r.cause
             FROM agents a JOIN agent_specs s ON s.id = a.id
                 LEFT JOIN runs r ON r.agent_id = a.id AND r.run = a.run
             ORDER BY a.created_at, a.id",
        )?;
        let rows = statement.query_map([], |row| {
            let agent = agent_from(row)?;
            let run = match row.get::<_, Option<String>>(11)? {
                Some(_) => Some(run_from(row, 11)?),
                None => None,
            };
            Ok((agent, run))
        })?;
        let mut loaded = Vec::new();
        for row in rows {
            let (agent, run) = row?;
            loaded.push((agent?, run.transpose()?));
        }
        Ok(loaded)
    }

    /// Every run of one agent, oldest first.
    pub fn runs(&self, agent_id: &str) -> Result<Vec<RunRow>> {
        Ok(self
            .run_history(agent_id)?
            .into_iter()
            .map(|record| record.row)
            .collect())
    }

    /// Every run of one agent with the state and reason it was last
    /// recorded with, oldest first.
    pub fn run_history(&self, agent_id: &str) -> Result<Vec<RunRecord>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT agent_id, run, dir, shim_pid, shim_start_time, pid, pid_start_time, cgroup,
                    started_at, ended_at, exit_code, signal, cause, state, reason
             FROM runs WHERE agent_id = ?1 ORDER BY run",
        )?;
        let rows = statement.query_map([agent_id], |row| {
            Ok((
                run_from(row, 0)?,
                row.get::<_, String>(13)?,
                row.get::<_, Option<String>>(14)?,
            ))
        })?;
        let mut records = Vec::new();
        for row in rows {
            let (row, state, reason) = row?;
            records.push(RunRecord {
                row: row?,
                state: parse_state(&state)?,
                reason,
            });
        }
        Ok(records)
    }

    /// Sets group `name`'s limit of running agents and its budget (each
    /// `None` removes it), with their events.
    pub fn set_group(
        &mut self,
        name: &str,
        max_running: Option<u32>,
        budget_usd: Option<f64>,
        events: &[EventRecord],
    ) -> Result<()> {
        self.write_with_events(events, |transaction| {
            match max_running {
                Some(max) => transaction.execute(
                    "INSERT INTO groups (name, max_running) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET max_running = ?2",
                    params![name, max],
                )?,
                None => transaction.execute("DELETE FROM groups WHERE name = ?1", params![name])?,
            };
            match budget_usd {
                Some(budget) => transaction.execute(
                    "INSERT INTO group_budgets (name, budget_usd) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET budget_usd = ?2",
                    params![name, budget],
                )?,
                None => transaction
                    .execute("DELETE FROM group_budgets WHERE name = ?1", params![name])?,
            };
            Ok(())
        })
    }

    /// Every group with a budget, by name.
    pub fn group_budgets(&self) -> Result<Vec<(String, f64)>> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT name, budget_usd FROM group_budgets ORDER BY name")?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(Into::into)
    }

    /// Every group with a limit, by name.
    pub fn group_limits(&self) -> Result<Vec<(String, u32)>> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT name, max_running FROM groups ORDER BY name")?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(Into::into)
    }

    /// Forgets an agent and its runs, and appends `events` (its removal);
    /// its earlier events stay in the log until retention takes them.
    /// Returns false if it was not there.
    pub fn delete_agent(&mut self, agent_id: &str, events: &[EventRecord]) -> Result<bool> {
        self.write_with_events(events, |transaction| {
            let deleted = transaction.execute("DELETE FROM agents WHERE id = ?1", [agent_id])?;
            Ok(deleted > 0)
        })
    }

    /// The id of the agent with this exact name, if any.
    pub fn id_by_name(&self, name: &str) -> Result<Option<String>> {
        self.connection
            .prepare_cached("SELECT id FROM agents WHERE name = ?1")?
            .query_row([name], |row| row.get(0))
            .optional()
            .map_err(Into::into)
    }
}

/// How long a write waits for another process's lock before it fails
/// with [`StoreError::Locked`].
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Bytes of write-ahead log kept after a checkpoint (64 MiB).
const JOURNAL_SIZE_LIMIT: i64 = 64 << 20;

/// Turns SQLite's "database is locked" into [`StoreError::Locked`], which
/// names the file and the likely culprit.
impl StoreError {
    /// True when the write failed because the disk is full (SQLite's
    /// `SQLITE_FULL`, or `ENOSPC`/`EDQUOT` from a file of the store).
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Sqlite(error) => {
                error.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
            }
            StoreError::Io(error) => matches!(
                error.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ),
            _ => false,
        }
    }
}

fn explain_busy(error: StoreError, path: &str) -> StoreError {
    match error {
        StoreError::Sqlite(error)
            if matches!(
                error.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ) =>
        {
            StoreError::Locked {
                path: path.to_string(),
            }
        }
        other => other,
    }
}

fn write_run(transaction: &Transaction<'_>, agent: &AgentRow, run: &RunRow) -> Result<()> {
    transaction
        .prepare_cached(
            // An upsert, not INSERT OR REPLACE: the row is updated where
            // it is instead of deleted and inserted again (fewer pages
            // written per state change).
            "INSERT INTO runs (agent_id, run, state, dir, shim_pid, shim_start_time,
                 pid, pid_start_time, cgroup, started_at, ended_at, exit_code, signal, reason, cause)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
             ON CONFLICT (agent_id, run) DO UPDATE SET state = ?3, dir = ?4, shim_pid = ?5,
                 shim_start_time = ?6, pid = ?7, pid_start_time = ?8, cgroup = ?9,
                 started_at = ?10, ended_at = ?11, exit_code = ?12, signal = ?13, reason = ?14,
                 cause = ?15",
        )?
        .execute(params![
            run.agent_id,
            run.run,
            agent.state.as_str(),
            run.dir,
            run.shim.map(|(pid, _)| pid),
            run.shim.map(|(_, start)| start as i64),
            run.process.map(|(pid, _)| pid),
            run.process.map(|(_, start)| start as i64),
            run.cgroup,
            run.started_at,
            run.ended_at,
            run.exit_code,
            run.signal,
            agent.reason,
            run.cause.map(Cause::as_str),
        ])?;
    Ok(())
}

/// Moves the log's checkpoints to a thread of their own (see
/// `checkpoint`): commits past the threshold wake it, and only a log far
/// past it is checkpointed by the committing connection itself.
fn checkpoint_in_background(
    connection: &mut Connection,
    path: &Path,
) -> Option<checkpoint::Checkpointer> {
    let checkpointer = checkpoint::Checkpointer::start(path)?;
    let wake = checkpointer.waker();
    let hooked = connection.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages| {
        if pages >= checkpoint::INLINE_AT_PAGES {
            // Best effort: a failure leaves the pages in the log.
            let _ = wal.checkpoint();
        } else if pages >= checkpoint::WAKE_AT_PAGES {
            let _ = wake.try_send(());
        }
        Ok(())
    }));
    hooked.ok().map(|()| checkpointer)
}

fn parse_state(text: &str) -> Result<State> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("unknown state {text:?}")))
}

fn agent_from(row: &Row<'_>) -> rusqlite::Result<Result<AgentRow>> {
    let state: String = row.get(3)?;
    let health: String = row.get(7)?;
    let (id, name, spec, reason, run, created_at) = (
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    );
    let (health_reason, probe, restart_at) = (row.get(8)?, row.get(9)?, row.get(10)?);
    Ok((|| {
        Ok(AgentRow {
            id,
            name,
            spec,
            state: parse_state(&state)?,
            reason,
            run,
            created_at,
            health: parse_health(&health)?,
            health_reason,
            probe,
            restart_at,
        })
    })())
}

fn parse_health(text: &str) -> Result<Health> {
    Health::ALL
        .into_iter()
        .find(|health| health.as_str() == text)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown health {text:?}")))
}

fn run_from(row: &Row<'_>, first: usize) -> rusqlite::Result<Result<RunRow>> {
    let pair = |pid: usize| -> rusqlite::Result<Option<(i32, u64)>> {
        let pid_value: Option<i32> = row.get(first + pid)?;
        let start: Option<i64> = row.get(first + pid + 1)?;
        Ok(pid_value.zip(start).map(|(pid, start)| (pid, start as u64)))
    };
    let cause: Option<String> = row.get(first + 12)?;
    let mut run = RunRow {
        agent_id: row.get(first)?,
        run: row.get(first + 1)?,
        dir: row.get(first + 2)?,
        shim: pair(3)?,
        process: pair(5)?,
        cgroup: row.get(first + 7)?,
        started_at: row.get(first + 8)?,
        ended_at: row.get(first + 9)?,
        exit_code: row.get(first + 10)?,
        signal: row.get(first + 11)?,
        cause: None,
    };
    Ok(
        match cause.as_deref().map(str::parse::<Cause>).transpose() {
            Ok(cause) => {
                run.cause = cause;
                Ok(run)
            }
            Err(error) => Err(StoreError::Corrupt(error)),
        },
    )
}

#[cfg(test)]
mod tests;
