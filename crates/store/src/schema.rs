//! The schema and its migrations, numbered by SQLite's `user_version`.

use crate::{Result, StoreError};
use rusqlite::{Connection, TransactionBehavior};

/// Each entry takes the schema from version `index` to `index + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: agents, runs, events.
    "CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        spec TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        run INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) STRICT;
    CREATE TABLE runs (
        agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
        run INTEGER NOT NULL,
        state TEXT NOT NULL,
        dir TEXT NOT NULL,
        shim_pid INTEGER,
        shim_start_time INTEGER,
        pid INTEGER,
        pid_start_time INTEGER,
        cgroup TEXT,
        started_at TEXT,
        ended_at TEXT,
        exit_code INTEGER,
        signal INTEGER,
        reason TEXT,
        PRIMARY KEY (agent_id, run)
    ) STRICT;
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        run INTEGER NOT NULL,
        state TEXT NOT NULL,
        reason TEXT
    ) STRICT;
    CREATE INDEX events_by_agent ON events (agent_id, seq);",
    // 2: concurrency limits of groups.
    "CREATE TABLE groups (
        name TEXT PRIMARY KEY,
        max_running INTEGER NOT NULL
    ) STRICT;",
    // 3: fewer pages written per state change. Runs are kept by their key
    // alone (no second tree for a rowid), and events are numbered without
    // AUTOINCREMENT, whose `sqlite_sequence` row was written in every
    // transaction (a number may come again only after the newest events
    // went with their agent).
    "CREATE TABLE runs_by_key (
        agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
        run INTEGER NOT NULL,
        state TEXT NOT NULL,
        dir TEXT NOT NULL,
        shim_pid INTEGER,
        shim_start_time INTEGER,
        pid INTEGER,
        pid_start_time INTEGER,
        cgroup TEXT,
        started_at TEXT,
        ended_at TEXT,
        exit_code INTEGER,
        signal INTEGER,
        reason TEXT,
        PRIMARY KEY (agent_id, run)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO runs_by_key (agent_id, run, state, dir, shim_pid, shim_start_time, pid,
            pid_start_time, cgroup, started_at, ended_at, exit_code, signal, reason)
        SELECT agent_id, run, state, dir, shim_pid, shim_start_time, pid,
            pid_start_time, cgroup, started_at, ended_at, exit_code, signal, reason
        FROM runs;
    DROP TABLE runs;
    ALTER TABLE runs_by_key RENAME TO runs;
    CREATE TABLE events_numbered (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        agent_id TEXT NOT NULL,
        run INTEGER NOT NULL,
        state TEXT NOT NULL,
        reason TEXT
    ) STRICT;
    INSERT INTO events_numbered (seq, at, agent_id, run, state, reason)
        SELECT seq, at, agent_id, run, state, reason FROM events;
    DROP TABLE events;
    DELETE FROM sqlite_sequence WHERE name = 'events';
    ALTER TABLE events_numbered RENAME TO events;
    CREATE INDEX events_by_agent ON events (agent_id, seq);",
    // 4: every change an event of its own type, as clients get it; health
    // and probe findings kept across restarts; the cause of a stop as a
    // value. An event is its whole JSON plus the columns readers filter
    // on, and outlives its agent (only retention prunes it); `meta` keeps
    // the highest id pruned, so ids are never handed out twice. Events of
    // before are kept under the type of the state they recorded.
    "ALTER TABLE agents ADD COLUMN health TEXT NOT NULL DEFAULT 'unknown';
    ALTER TABLE agents ADD COLUMN health_reason TEXT;
    ALTER TABLE agents ADD COLUMN probe TEXT;
    ALTER TABLE agents ADD COLUMN restart_at TEXT;
    ALTER TABLE runs ADD COLUMN cause TEXT;
    UPDATE runs SET cause = CASE
            WHEN reason LIKE 'timeout%' THEN 'timeout'
            WHEN reason LIKE 'hung%' THEN 'hang'
            ELSE 'user' END
        WHERE state = 'stopping';
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;
    CREATE TABLE events_typed (
        seq INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        type TEXT NOT NULL,
        agent_id TEXT,
        agent_name TEXT,
        agent_group TEXT,
        run INTEGER,
        body TEXT NOT NULL
    ) STRICT;
    INSERT INTO events_typed (seq, at, type, agent_id, agent_name, agent_group, run, body)
        SELECT seq, at, type, agent_id, name, grp, run,
            json_object('id', seq, 'time', strftime('%Y-%m-%dT%H:%M:%fZ', at_text), 'type', type,
                'state', state, 'reason', reason,
                'agent', json_object('id', agent_id, 'name', name, 'group', grp), 'run', run)
        FROM (SELECT e.seq, e.at AS at_text, CAST(unixepoch(e.at, 'subsec') * 1000000 AS INTEGER) AS at,
                CASE WHEN e.state IN ('completed', 'failed', 'stopped') THEN 'agent.exited'
                    ELSE 'agent.' || e.state END AS type,
                e.agent_id, coalesce(a.name, e.agent_id) AS name,
                json_extract(a.spec, '$.group') AS grp, e.run, e.state, e.reason
            FROM events e LEFT JOIN agents a ON a.id = e.agent_id);
    DROP TABLE events;
    ALTER TABLE events_typed RENAME TO events;
    CREATE INDEX events_by_agent ON events (agent_id, seq);",
    // 5: what an adapter has read of a run's output: the offset up to
    // which it has read, with what it counted there (the engine's JSON).
    // A run's row goes with its agent.
    "CREATE TABLE sessions (
        agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
        run INTEGER NOT NULL,
        read_to INTEGER NOT NULL,
        reader TEXT NOT NULL,
        PRIMARY KEY (agent_id, run)
    ) STRICT, WITHOUT ROWID;",
    // 6: the cost ledger (see `ledger`), which outlives its agents, and
    // the budgets of groups.
    "CREATE TABLE costs (
        agent_id TEXT NOT NULL,
        run INTEGER NOT NULL,
        model TEXT NOT NULL,
        hour INTEGER NOT NULL,
        agent_name TEXT NOT NULL,
        agent_group TEXT,
        input INTEGER NOT NULL,
        output INTEGER NOT NULL,
        cache_read INTEGER NOT NULL,
        cache_write INTEGER NOT NULL,
        cost_usd REAL NOT NULL,
        unpriced INTEGER NOT NULL,
        PRIMARY KEY (agent_id, run, model, hour)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX costs_by_hour ON costs (hour);
    CREATE TABLE group_budgets (
        name TEXT PRIMARY KEY,
        budget_usd REAL NOT NULL
    ) STRICT, WITHOUT ROWID;",
    // 7: the model calls agents reported over OpenTelemetry, each once
    // (see `telemetry`); they go with their agent, their cost stays in
    // the ledger.
    "CREATE TABLE telemetry_calls (
        agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
        run INTEGER NOT NULL,
        key TEXT NOT NULL,
        at INTEGER NOT NULL,
        model TEXT NOT NULL,
        input INTEGER NOT NULL,
        output INTEGER NOT NULL,
        cache_read INTEGER NOT NULL,
        cache_write INTEGER NOT NULL,
        cost_usd REAL,
        PRIMARY KEY (agent_id, run, key)
    ) STRICT, WITHOUT ROWID;",
    // 8: the idempotency keys of creates (see `idempotency`): a create
    // sent again after its answer was lost gets the agents it made.
    "CREATE TABLE idempotency (
        key TEXT PRIMARY KEY,
        agents TEXT NOT NULL,
        at INTEGER NOT NULL
    ) STRICT, WITHOUT ROWID;",
    // 9: the model calls in the order they were made within a run (their
    // key is a digest of the record, time included, so the same call is
    // still one row): each new one goes at the end of its run's rows, and
    // a thousand agents exporting at once write to the last page of each,
    // where with the digest first each went to any page of the run's,
    // and a table grown past the cache was read back page by page.
    "CREATE TABLE telemetry_calls_in_order (
        agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
        run INTEGER NOT NULL,
        key TEXT NOT NULL,
        at INTEGER NOT NULL,
        model TEXT NOT NULL,
        input INTEGER NOT NULL,
        output INTEGER NOT NULL,
        cache_read INTEGER NOT NULL,
        cache_write INTEGER NOT NULL,
        cost_usd REAL,
        PRIMARY KEY (agent_id, run, at, key)
    ) STRICT, WITHOUT ROWID;
    INSERT INTO telemetry_calls_in_order
        SELECT agent_id, run, key, at, model, input, output, cache_read, cache_write, cost_usd
        FROM telemetry_calls;
    DROP TABLE telemetry_calls;
    ALTER TABLE telemetry_calls_in_order RENAME TO telemetry_calls;",
    // 10: an agent's spec in a table of its own. A spec carries the
    // environment the agent inherits (2 KB and more), and each change of
    // state rewrote it with the row: two agents' rows to a page, so that
    // a stop of 10,000 read and wrote 5,000 pages twice over, a store far
    // past the writer's cache. The spec is written once, with the agent.
    "CREATE TABLE agent_specs (
        id TEXT PRIMARY KEY REFERENCES agents(id) ON DELETE CASCADE,
        spec TEXT NOT NULL
    ) STRICT;
    INSERT INTO agent_specs (id, spec) SELECT id, spec FROM agents;
    ALTER TABLE agents DROP COLUMN spec;",
    // 11: a run's calls older than an hour, folded into one row per model
    // (see `Store::fold_telemetry`): the calls of a run that lasts weeks
    // are kept one by one only while an exporter could still send them
    // again, and the run's figures stay whole.
    "CREATE TABLE telemetry_folded (
        agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
        run INTEGER NOT NULL,
        model TEXT NOT NULL,
        calls INTEGER NOT NULL,
        input INTEGER NOT NULL,
        output INTEGER NOT NULL,
        cache_read INTEGER NOT NULL,
        cache_write INTEGER NOT NULL,
        cost_usd REAL,
        PRIMARY KEY (agent_id, run, model)
    ) STRICT, WITHOUT ROWID;",
    // 12: the model calls in the order they came, one table-wide, with
    // no index: a thousand agents exporting at once each wrote a page of
    // their own (their run's last page) to the log with every call, about
    // as much as the rest of the telemetry's writes together; appended,
    // the calls of a batch share a page or two. A run's calls are read
    // back only by a re-attach, all runs' in one pass, and those of runs
    // that are no agent's current one go at the next fold.
    "CREATE TABLE telemetry_calls_arrived (
        seq INTEGER PRIMARY KEY,
        agent_id TEXT NOT NULL,
        run INTEGER NOT NULL,
        key TEXT NOT NULL,
        at INTEGER NOT NULL,
        model TEXT NOT NULL,
        input INTEGER NOT NULL,
        output INTEGER NOT NULL,
        cache_read INTEGER NOT NULL,
        cache_write INTEGER NOT NULL,
        cost_usd REAL
    ) STRICT;
    INSERT INTO telemetry_calls_arrived (agent_id, run, key, at, model,
            input, output, cache_read, cache_write, cost_usd)
        SELECT agent_id, run, key, at, model, input, output, cache_read, cache_write, cost_usd
        FROM telemetry_calls ORDER BY at;
    DROP TABLE telemetry_calls;
    ALTER TABLE telemetry_calls_arrived RENAME TO telemetry_calls;",
];

/// Brings the schema to the newest version, in one transaction per step.
pub fn migrate(connection: &mut Connection, path: &str) -> Result<()> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > known {
        return Err(StoreError::TooNew {
            path: path.to_string(),
            found,
            known,
        });
    }
    for (version, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", version as i64 + 1)?;
        transaction.commit()?;
    }
    Ok(())
}
