//! The schema and its migrations, numbered by SQLite's `user_version`.

use crate::{Result, StoreError};
use rusqlite::Connection;

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
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration)?;
        transaction.pragma_update(None, "user_version", version as i64 + 1)?;
        transaction.commit()?;
    }
    Ok(())
}
