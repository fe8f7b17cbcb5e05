//! Retention of the event log: events older than a limit, and the oldest
//! past a count, are deleted by a thread with a connection of its own, in
//! small batches, so that no request waits for a prune.
//!
//! The highest id pruned is recorded in the same transaction as the
//! delete: a reader then knows exactly which ids are gone (and says so to
//! its client as a gap), and the writer never hands out a pruned id again.

use crate::events::{micros, PRUNED_THROUGH};
use crate::Result;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, TransactionBehavior};
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread;
use std::time::Duration;

/// How long events are kept, and how many at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events older than this go; none by age when absent.
    pub max_age: Option<Duration>,
    /// The oldest events past this many go; none by count when absent.
    pub max_events: Option<u64>,
}

/// Events deleted per transaction: a few milliseconds of the write lock.
const BATCH: usize = 500;

/// Pause before a failed prune is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// Pause between two batches, which lets other writers in.
const BETWEEN_BATCHES: Duration = Duration::from_millis(5);

/// Deletes what `retention` no longer keeps, as of `now`, oldest first;
/// returns how many events went.
pub fn prune(connection: &mut Connection, retention: Retention, now: DateTime<Utc>) -> Result<u64> {
    let cutoff = retention
        .max_age
        .and_then(|age| chrono::Duration::from_std(age).ok())
        .and_then(|age| now.checked_sub_signed(age))
        .map(micros);
    let mut excess = match retention.max_events {
        Some(max) => {
            let count: i64 =
                connection.query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0))?;
            (count as u64).saturating_sub(max)
        }
        None => 0,
    };
    let mut pruned = 0;
    loop {
        let mut last = None;
        let mut taken = 0;
        {
            let mut oldest =
                connection.prepare_cached("SELECT seq, at FROM events ORDER BY seq LIMIT ?1")?;
            let rows = oldest.query_map([BATCH as i64], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
            })?;
            for row in rows {
                let (seq, at) = row?;
                let too_old = cutoff.is_some_and(|cutoff| at < cutoff);
                if excess == 0 && !too_old {
                    break;
                }
                excess = excess.saturating_sub(1);
                last = Some(seq);
                taken += 1;
            }
        }
        let Some(last) = last else { break };
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        transaction.execute("DELETE FROM events WHERE seq <= ?1", [last])?;
        transaction.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
            params![PRUNED_THROUGH, last],
        )?;
        transaction.commit()?;
        pruned += taken;
        if taken < BATCH as u64 {
            break;
        }
        thread::sleep(BETWEEN_BATCHES);
    }
    // Idempotency keys past their day go with the events' prune.
    crate::idempotency::prune(connection, now)?;
    Ok(pruned)
}

/// The handle of the pruning thread; the thread ends when it is dropped.
pub(crate) struct Pruner {
    _stop: Sender<()>,
}

impl Pruner {
    /// Starts pruning the store at `path` now and then every `every`.
    pub(crate) fn start(path: &Path, retention: Retention, every: Duration) -> Result<Pruner> {
        let mut connection = Connection::open(path)?;
        connection.busy_timeout(crate::BUSY_TIMEOUT)?;
        let (stop, stopped) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("event-prune".into())
            .spawn(move || loop {
                // A failed prune (the store locked a while, a full disk)
                // is tried again soon; nothing is lost by waiting.
                let next = match prune(&mut connection, retention, Utc::now()) {
                    Ok(_) => every,
                    Err(error) => {
                        tracing::warn!("cannot prune old events (will retry): {error}");
                        every.min(RETRY)
                    }
                };
                match stopped.recv_timeout(next) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            })?;
        Ok(Pruner { _stop: stop })
    }
}
