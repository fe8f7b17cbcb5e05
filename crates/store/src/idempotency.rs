//! Idempotency keys of creates: a client that lost the answer to a
//! create (the daemon was killed in between) sends it again with the same
//! `Idempotency-Key`, and gets the agents the first one made instead of
//! new ones. A key is written in the transaction that creates its agents,
//! so it exists exactly when they do; keys are kept a day.

use crate::{Result, Store};
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Transaction};

/// How long a key is kept: a client retries within seconds or minutes.
pub const KEPT: chrono::Duration = chrono::Duration::hours(24);

impl Store {
    /// The agents (ids, in their order) a create with `key` made, if one
    /// did.
    pub fn created_by(&self, key: &str) -> Result<Option<Vec<String>>> {
        let agents: Option<String> = self
            .connection
            .prepare_cached("SELECT agents FROM idempotency WHERE key = ?1")?
            .query_row([key], |row| row.get(0))
            .optional()?;
        Ok(agents.map(|agents| agents.split(',').map(str::to_string).collect()))
    }
}

/// Records that `key` made `agents`, inside the create's transaction.
pub(crate) fn add(
    transaction: &Transaction<'_>,
    key: &str,
    agents: &[&str],
    at: DateTime<Utc>,
) -> Result<()> {
    transaction
        .prepare_cached("INSERT INTO idempotency (key, agents, at) VALUES (?1, ?2, ?3)")?
        .execute(params![key, agents.join(","), at.timestamp_micros()])?;
    Ok(())
}

/// Deletes the keys older than [`KEPT`] as of `now`; how many went.
pub(crate) fn prune(connection: &rusqlite::Connection, now: DateTime<Utc>) -> Result<usize> {
    let cutoff = (now - KEPT).timestamp_micros();
    // A read first: a write, even of nothing, would take the store's
    // write lock (and sync) every time the pruner runs.
    let any_old: Option<i64> = connection
        .prepare_cached("SELECT 1 FROM idempotency WHERE at < ?1 LIMIT 1")?
        .query_row([cutoff], |row| row.get(0))
        .optional()?;
    if any_old.is_none() {
        return Ok(0);
    }
    Ok(connection.execute("DELETE FROM idempotency WHERE at < ?1", [cutoff])?)
}
