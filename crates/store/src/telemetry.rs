//! What agents reported of themselves over OpenTelemetry: each model call
//! once (an exporter that retries delivers a body twice; the call's key
//! makes the second one change nothing), and the loopback port the
//! daemon receives on, kept so that a daemon that restarts binds it again
//! and running agents go on exporting to it.

use crate::{Result, Store};
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{params, OptionalExtension, Transaction};
use wrangle_wire::TokenCounts;

/// Key in `meta` of the telemetry port.
const PORT_KEY: &str = "telemetry_port";

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

/// Records `calls`, inside the caller's transaction, and returns those
/// that were new (in their order).
pub(crate) fn add(transaction: &Transaction<'_>, calls: &[TelemetryCall]) -> Result<Vec<bool>> {
    let mut statement = transaction.prepare_cached(
        "INSERT INTO telemetry_calls (agent_id, run, key, at, model,
                input, output, cache_read, cache_write, cost_usd)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (agent_id, run, at, key) DO NOTHING",
    )?;
    let mut new = Vec::with_capacity(calls.len());
    for call in calls {
        let inserted = statement.execute(params![
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
        new.push(inserted > 0);
    }
    Ok(new)
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
    /// Every call recorded of run `run` of the agent, oldest first.
    pub fn telemetry_calls(&self, agent_id: &str, run: u32) -> Result<Vec<TelemetryCall>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT key, at, model, input, output, cache_read, cache_write, cost_usd
             FROM telemetry_calls WHERE agent_id = ?1 AND run = ?2 ORDER BY at, key",
        )?;
        let rows = statement.query_map(params![agent_id, run], |row| {
            Ok(TelemetryCall {
                agent_id: agent_id.to_string(),
                run,
                key: row.get(0)?,
                at: Utc
                    .timestamp_micros(row.get(1)?)
                    .single()
                    .unwrap_or_default(),
                model: row.get(2)?,
                tokens: tokens_from(row, 3)?,
                cost_usd: row.get(7)?,
            })
        })?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(Into::into)
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

    /// Folds the calls of each of `runs` (agent, run) made before
    /// `before` into the run's figure per model, in one transaction;
    /// returns how many calls were folded. A call is kept on its own so
    /// that an exporter that sends it again does not count it twice, which
    /// none does after minutes: kept for ever, the calls of a run that
    /// lasts weeks filled the disk and slowed each restart that reads
    /// them back.
    pub fn fold_telemetry(&mut self, runs: &[(&str, u32)], before: DateTime<Utc>) -> Result<usize> {
        let before = before.timestamp_micros();
        self.write_with_events(&[], |transaction| {
            let mut fold = transaction.prepare_cached(
                "INSERT INTO telemetry_folded (agent_id, run, model, calls,
                        input, output, cache_read, cache_write, cost_usd)
                 SELECT agent_id, run, model, count(*), sum(input), sum(output),
                        sum(cache_read), sum(cache_write), sum(cost_usd)
                 FROM telemetry_calls WHERE agent_id = ?1 AND run = ?2 AND at < ?3
                 GROUP BY model
                 ON CONFLICT (agent_id, run, model) DO UPDATE SET
                    calls = calls + excluded.calls,
                    input = input + excluded.input,
                    output = output + excluded.output,
                    cache_read = cache_read + excluded.cache_read,
                    cache_write = cache_write + excluded.cache_write,
                    cost_usd = CASE WHEN cost_usd IS NULL THEN excluded.cost_usd
                        WHEN excluded.cost_usd IS NULL THEN cost_usd
                        ELSE cost_usd + excluded.cost_usd END",
            )?;
            let mut forget = transaction.prepare_cached(
                "DELETE FROM telemetry_calls WHERE agent_id = ?1 AND run = ?2 AND at < ?3",
            )?;
            let mut folded = 0;
            for (agent_id, run) in runs {
                fold.execute(params![agent_id, run, before])?;
                folded += forget.execute(params![agent_id, run, before])?;
            }
            Ok(folded)
        })
    }

    /// Forgets the calls of the agent's runs before `run`; how many. A
    /// run's calls serve to count each once and to take up its figures
    /// after a restart, and only the current run's are counted (their
    /// cost stays in the ledger): without this, an agent that restarts
    /// kept every call of every run it ever had.
    pub fn forget_telemetry_before(&mut self, agent_id: &str, run: u32) -> Result<usize> {
        self.write_with_events(&[], |transaction| {
            transaction
                .prepare_cached("DELETE FROM telemetry_folded WHERE agent_id = ?1 AND run < ?2")?
                .execute(params![agent_id, run])?;
            Ok(transaction
                .prepare_cached("DELETE FROM telemetry_calls WHERE agent_id = ?1 AND run < ?2")?
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
