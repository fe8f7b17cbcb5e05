//! What agents reported of themselves over OpenTelemetry: each model call
//! counted (the engine counts each once: an exporter that retries
//! delivers a body twice, and the call's key tells), in the order they
//! came, and the loopback port the daemon receives on, kept so that a
//! daemon that restarts binds it again and running agents go on exporting
//! to it.

use crate::{Result, Store};
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, OptionalExtension, Transaction};
use std::collections::HashMap;
use wrangle_wire::TokenCounts;

/// Key in `meta` of the telemetry port.
const PORT_KEY: &str = "telemetry_port";

/// Most calls a fold looks at in one transaction: a fleet's hour of
/// calls at once would hold the store from every other writer for
/// seconds.
const FOLD_ROWS_AT_ONCE: i64 = 4096;

/// The calls of each run, by agent and run (see
/// [`Store::telemetry_calls_of_current_runs`]).
pub type CallsByRun = HashMap<(String, u32), Vec<TelemetryCall>>;

/// One model call an agent reported.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryCall {
    /// The agent.
    pub agent_id: String,
    /// Its run.
    pub run: u32,
    /// What tells this call from every other of the run (a hash of the
    /// record), so that a body delivered twice counts once.
    pub key: String,
    /// When the call was made (the record's time).
    pub at: DateTime<Utc>,
    /// The model.
    pub model: String,
    /// Its tokens.
    pub tokens: TokenCounts,
    /// Its cost as the agent gave it, if it did.
    pub cost_usd: Option<f64>,
}

/// A run's calls of one model, folded into one figure (see
/// [`Store::fold_telemetry`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedCalls {
    /// The model.
    pub model: String,
    /// How many calls.
    pub calls: u64,
    /// Their tokens together.
    pub tokens: TokenCounts,
    /// Their cost together, of those whose cost the agent gave; None if
    /// it gave none.
    pub cost_usd: Option<f64>,
}

/// Appends `calls`, inside the caller's transaction. The store does not
/// tell a call from one it has (the engine holds the keys counted).
pub(crate) fn add(transaction: &Transaction<'_>, calls: &[TelemetryCall]) -> Result<()> {
    let mut statement = transaction.prepare_cached(
        "INSERT INTO telemetry_calls (agent_id, run, key, at, model,
                input, output, cache_read, cache_write, cost_usd)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for call in calls {
        statement.execute(params![
            call.agent_id,
            call.run,
            call.key,
            call.at.timestamp_micros(),
            call.model,
            call.tokens.input as i64,
            call.tokens.output as i64,
            call.tokens.cache_read as i64,
            call.tokens.cache_write as i64,
            call.cost_usd,
        ])?;
    }
    Ok(())
}

/// A count stored as an integer (never below 0) in column `index`.
fn count_at(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<u64> {
    row.get::<_, i64>(index).map(|n| n.max(0) as u64)
}

/// The four token counts (input, output, cache read, cache write) in the
/// columns from `first` on.
fn tokens_from(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<TokenCounts> {
    Ok(TokenCounts {
        input: count_at(row, first)?,
        output: count_at(row, first + 1)?,
        cache_read: count_at(row, first + 2)?,
        cache_write: count_at(row, first + 3)?,
    })
}

impl Store {
    /// The calls recorded of every agent's current run, by agent and run,
    /// each run's in the order they came: what a re-attach takes up, in
    /// one pass over the table (it has no index by run).
    pub fn telemetry_calls_of_current_runs(&self) -> Result<CallsByRun> {
        let mut statement = self.connection.prepare_cached(
            "SELECT c.agent_id, c.run, c.key, c.at, c.model,
                    c.input, c.output, c.cache_read, c.cache_write, c.cost_usd
             FROM telemetry_calls c JOIN agents a ON a.id = c.agent_id AND a.run = c.run
             ORDER BY c.seq",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(TelemetryCall {
                agent_id: row.get(0)?,
                run: row.get(1)?,
                key: row.get(2)?,
                at: Utc
                    .timestamp_micros(row.get(3)?)
                    .single()
                    .unwrap_or_default(),
                model: row.get(4)?,
                tokens: tokens_from(row, 5)?,
                cost_usd: row.get(9)?,
            })
        })?;
        let mut by_run = CallsByRun::new();
        for call in rows {
            let call = call?;
            by_run
                .entry((call.agent_id.clone(), call.run))
                .or_default()
                .push(call);
        }
        Ok(by_run)
    }

    /// Run `run`'s calls folded so far (see [`Store::fold_telemetry`]),
    /// by model.
    pub fn telemetry_folded(&self, agent_id: &str, run: u32) -> Result<Vec<FoldedCalls>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT model, calls, input, output, cache_read, cache_write, cost_usd
             FROM telemetry_folded WHERE agent_id = ?1 AND run = ?2 ORDER BY model",
        )?;
        let rows = statement.query_map(params![agent_id, run], |row| {
            Ok(FoldedCalls {
                model: row.get(0)?,
                calls: count_at(row, 1)?,
                tokens: tokens_from(row, 2)?,
                cost_usd: row.get(6)?,
            })
        })?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(Into::into)
    }

    /// Folds the calls made before `before` into their run's figure per
    /// model (see [`Store::telemetry_folded`]), a few thousand calls a
    /// transaction, oldest first; returns how many calls were folded or
    /// dropped. Calls of a run that is no agent's current one (an earlier
    /// run, a removed agent) are dropped, not folded. A call is kept on
    /// its own so that an exporter that sends it again does not count it
    /// twice, which none does after minutes: kept for ever, the calls of a
    /// run that lasts weeks filled the disk and slowed each restart that
    /// reads them back.
    pub fn fold_telemetry(&mut self, before: DateTime<Utc>) -> Result<usize> {
        let before = before.timestamp_micros();
        let mut gone = 0;
        let mut from = i64::MIN;
        // The calls are in the order they came, near enough the order they
        // were made: the fold goes on while a stretch of them holds calls
        // made before `before`.
        while let Some(next) = self.write_with_events(&[], |transaction| {
            let first: Option<i64> = transaction
                .prepare_cached("SELECT min(seq) FROM telemetry_calls WHERE seq >= ?1")?
                .query_row(params![from], |row| row.get(0))?;
            let Some(first) = first else {
                return Ok(None);
            };
            let end = first.saturating_add(FOLD_ROWS_AT_ONCE);
            transaction
                .prepare_cached(
                    "INSERT INTO telemetry_folded (agent_id, run, model, calls,
                            input, output, cache_read, cache_write, cost_usd)
                     SELECT c.agent_id, c.run, c.model, count(*), sum(c.input), sum(c.output),
                            sum(c.cache_read), sum(c.cache_write), sum(c.cost_usd)
                     FROM telemetry_calls c JOIN agents a ON a.id = c.agent_id AND a.run = c.run
                     WHERE c.seq >= ?1 AND c.seq < ?2 AND c.at < ?3
                     GROUP BY c.agent_id, c.run, c.model
                     ON CONFLICT (agent_id, run, model) DO UPDATE SET
                        calls = calls + excluded.calls,
                        input = input + excluded.input,
                        output = output + excluded.output,
                        cache_read = cache_read + excluded.cache_read,
                        cache_write = cache_write + excluded.cache_write,
                        cost_usd = CASE WHEN cost_usd IS NULL THEN excluded.cost_usd
                            WHEN excluded.cost_usd IS NULL THEN cost_usd
                            ELSE cost_usd + excluded.cost_usd END",
                )?
                .execute(params![first, end, before])?;
            let dropped = transaction
                .prepare_cached(
                    "DELETE FROM telemetry_calls WHERE seq >= ?1 AND seq < ?2 AND at < ?3",
                )?
                .execute(params![first, end, before])?;
            gone += dropped;
            Ok((dropped > 0).then_some(end))
        })? {
            from = next;
        }
        Ok(gone)
    }

    /// Forgets the folded figures of the agent's runs before `run`; how
    /// many rows. Only the current run's telemetry is counted (the cost of
    /// earlier runs stays in the ledger); their calls one by one go at
    /// the next fold (see [`Store::fold_telemetry`]).
    pub fn forget_telemetry_before(&mut self, agent_id: &str, run: u32) -> Result<usize> {
        self.write_with_events(&[], |transaction| {
            Ok(transaction
                .prepare_cached("DELETE FROM telemetry_folded WHERE agent_id = ?1 AND run < ?2")?
                .execute(params![agent_id, run])?)
        })
    }

    /// The loopback port telemetry was last received on, if any.
    pub fn telemetry_port(&self) -> Result<Option<u16>> {
        let port: Option<i64> = self
            .connection
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([PORT_KEY], |row| row.get(0))
            .optional()?;
        Ok(port.and_then(|port| u16::try_from(port).ok()))
    }

    /// Keeps the port telemetry is received on.
    pub fn set_telemetry_port(&mut self, port: u16) -> Result<()> {
        self.write_with_events(&[], |transaction| {
            transaction.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = ?2",
                params![PORT_KEY, i64::from(port)],
            )?;
            Ok(())
        })
    }
}
