//! The log of events: each row is one event's whole JSON (as clients get
//! it) with the columns a reader filters on, under an id that only grows.
//!
//! Ids are never reused: the highest id ever pruned is kept in `meta`, so
//! a log emptied by its retention still numbers on from where it was. The
//! writer numbers events itself (the [`crate::Store`] knows the next id),
//! so an event's JSON can carry its id before it is written.
//!
//! [`EventReader`] reads with a connection of its own: a client replaying
//! a long backlog never holds the writer's connection.

use crate::{Result, StoreError};
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, Transaction};
use std::path::Path;
use std::time::Duration;

/// Key in `meta` of the highest event id pruned so far.
pub(crate) const PRUNED_THROUGH: &str = "events_pruned_through";

/// One event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Its id.
    pub id: u64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Its type, e.g. `agent.exited`.
    pub kind: String,
    /// The agent it is about, if any.
    pub agent_id: Option<String>,
    /// That agent's name then.
    pub agent_name: Option<String>,
    /// That agent's group (or the group a group event is about).
    pub group: Option<String>,
    /// The run it is about, if any.
    pub run: Option<u32>,
    /// The whole event as JSON, as clients get it.
    pub body: String,
}

/// Appends events in a transaction; their ids must follow on from the
/// store's next id (checked by the caller's numbering).
pub(crate) fn insert(transaction: &Transaction<'_>, events: &[EventRecord]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut statement = transaction.prepare_cached(
        "INSERT INTO events (seq, at, type, agent_id, agent_name, agent_group, run, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    for event in events {
        statement.execute(params![
            event.id as i64,
            micros(event.at),
            event.kind,
            event.agent_id,
            event.agent_name,
            event.group,
            event.run,
            event.body,
        ])?;
    }
    Ok(())
}

/// The id the next event gets: one past the highest ever used, whether it
/// is still kept or was pruned.
pub(crate) fn next_id(connection: &Connection) -> Result<u64> {
    let newest: Option<i64> =
        connection.query_row("SELECT MAX(seq) FROM events", [], |row| row.get(0))?;
    let pruned = pruned_through(connection)?;
    Ok(newest.map_or(0, |id| id as u64).max(pruned) + 1)
}

/// The highest id pruned so far (0 when none was).
pub(crate) fn pruned_through(connection: &Connection) -> Result<u64> {
    let value: Option<i64> = connection
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [PRUNED_THROUGH],
            |row| row.get(0),
        )
        .optional()?;
    Ok(value.map_or(0, |id| id as u64))
}

/// What the log holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Kept {
    /// Every id up to this one was pruned (0: none ever was).
    pub pruned_through: u64,
    /// The oldest id still kept.
    pub oldest: Option<u64>,
    /// When the oldest event kept happened.
    pub oldest_at: Option<DateTime<Utc>>,
    /// The newest id.
    pub newest: Option<u64>,
}

/// A connection of its own that reads the log, for one client.
pub struct EventReader {
    connection: Connection,
}

/// Page cache of a reader: it reads forward once, so a small cache does.
const READER_CACHE_KIB: i64 = 512;

impl EventReader {
    /// Opens the store at `path` for reading.
    pub fn open(path: &Path) -> Result<EventReader> {
        let connection = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(Duration::from_secs(2))?;
        connection.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
        Ok(EventReader { connection })
    }

    /// What the log holds now.
    pub fn kept(&self) -> Result<Kept> {
        let (oldest, newest): (Option<i64>, Option<i64>) =
            self.connection
                .query_row("SELECT MIN(seq), MAX(seq) FROM events", [], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
        let oldest_at: Option<i64> = match oldest {
            Some(oldest) => self
                .connection
                .query_row("SELECT at FROM events WHERE seq = ?1", [oldest], |row| {
                    row.get(0)
                })
                .optional()?,
            None => None,
        };
        Ok(Kept {
            pruned_through: pruned_through(&self.connection)?,
            oldest: oldest.map(|id| id as u64),
            oldest_at: oldest_at.and_then(|at| Utc.timestamp_micros(at).single()),
            newest: newest.map(|id| id as u64),
        })
    }

    /// Up to `limit` events after id `after`, oldest first; only those of
    /// `agent` (by id or name) when given.
    pub fn after(
        &self,
        after: u64,
        agent: Option<&AgentMatch>,
        limit: usize,
    ) -> Result<Vec<EventRecord>> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = Vec::new();
        match agent {
            None => {
                let mut statement = self.connection.prepare_cached(
                    "SELECT seq, at, type, agent_id, agent_name, agent_group, run, body
                     FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                for row in statement.query_map(params![after, limit], record_from)? {
                    rows.push(row??);
                }
            }
            Some(AgentMatch::Id(id)) => {
                let mut statement = self.connection.prepare_cached(
                    "SELECT seq, at, type, agent_id, agent_name, agent_group, run, body
                     FROM events WHERE agent_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )?;
                for row in statement.query_map(params![id, after, limit], record_from)? {
                    rows.push(row??);
                }
            }
            Some(AgentMatch::IdOrName(reference)) => {
                let mut statement = self.connection.prepare_cached(
                    "SELECT seq, at, type, agent_id, agent_name, agent_group, run, body
                     FROM events WHERE seq > ?1 AND (agent_id = ?2 OR agent_name = ?2)
                     ORDER BY seq LIMIT ?3",
                )?;
                for row in statement.query_map(params![after, reference, limit], record_from)? {
                    rows.push(row??);
                }
            }
        }
        Ok(rows)
    }

    /// The id of the first event at or after `time`, if any. Ids grow with
    /// time (a clock set back aside), so this is a binary search over ids.
    pub fn first_at_or_after(&self, time: DateTime<Utc>) -> Result<Option<u64>> {
        let target = micros(time);
        let kept = self.kept()?;
        let (Some(mut low), Some(mut high)) = (kept.oldest, kept.newest) else {
            return Ok(None);
        };
        let mut statement = self
            .connection
            .prepare_cached("SELECT seq, at FROM events WHERE seq >= ?1 ORDER BY seq LIMIT 1")?;
        let mut found = None;
        while low <= high {
            let middle = low + (high - low) / 2;
            let first: Option<(i64, i64)> = statement
                .query_row([middle as i64], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            match first {
                // No event between `middle` and the one found: an earlier
                // answer is before `middle`.
                Some((seq, at)) if at >= target => {
                    found = Some(seq as u64);
                    if middle == 0 {
                        break;
                    }
                    high = middle - 1;
                }
                Some((seq, _)) => low = seq as u64 + 1,
                None => {
                    if middle == 0 {
                        break;
                    }
                    high = middle - 1;
                }
            }
        }
        Ok(found)
    }
}

/// Which agent's events a reader wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentMatch {
    /// The agent with this id (it is known now).
    Id(String),
    /// Whatever agent had this exact id or name (it is not known now).
    IdOrName(String),
}

fn record_from(row: &Row<'_>) -> rusqlite::Result<Result<EventRecord>> {
    let seq: i64 = row.get(0)?;
    let at: i64 = row.get(1)?;
    let record = EventRecord {
        id: seq as u64,
        at: Utc.timestamp_micros(at).single().unwrap_or_default(),
        kind: row.get(2)?,
        agent_id: row.get(3)?,
        agent_name: row.get(4)?,
        group: row.get(5)?,
        run: row.get(6)?,
        body: row.get(7)?,
    };
    Ok(if seq < 1 {
        Err(StoreError::Corrupt(format!("event with id {seq}")))
    } else {
        Ok(record)
    })
}

/// Microseconds since the epoch, as `at` is stored.
pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}
