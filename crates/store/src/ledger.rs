//! The cost ledger: what each agent's sessions spent, by run, model and
//! hour. Rows hold changes added up (a session's totals may also shrink,
//! when a CLI's final figures replace its estimates), written in the same
//! transaction as the session they come from, so the ledger and what was
//! read never disagree, whatever the moment of a crash. The changes
//! telemetry makes wait up to a second (see [`Deferred`]); the calls they
//! come from are stored at once, and a run's ledger is brought up to its
//! calls whenever its session is read again. Rows outlive their agent:
//! `wrangle rm` leaves what it spent.

use crate::{Result, Store};
use chrono::{DateTime, Utc};
use rusqlite::{params, Transaction};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use wrangle_wire::TokenCounts;

/// Longest a change of the ledger that telemetry made waits to be
/// written (see [`Store::record_telemetry`]).
pub const DEFER_AT_MOST: Duration = Duration::from_secs(1);

/// Seconds of one ledger bucket.
const HOUR: i64 = 3600;

/// A change of what one run of an agent spent on one model.
#[derive(Debug, Clone, PartialEq)]
pub struct CostDelta {
    /// The agent.
    pub agent_id: String,
    /// Its name, kept for after it is removed.
    pub agent_name: String,
    /// Its group, if any.
    pub agent_group: Option<String>,
    /// Its run.
    pub run: u32,
    /// The model (empty when none is known).
    pub model: String,
    /// When the change was read.
    pub at: DateTime<Utc>,
    /// Tokens by kind, as changes.
    pub tokens: SignedTokens,
    /// US dollars, as a change.
    pub cost_usd: f64,
    /// Some of the tokens have no price: the cost is less than the truth.
    pub unpriced: bool,
}

/// Tokens by kind that may go down as well as up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignedTokens {
    /// Input tokens.
    pub input: i64,
    /// Output tokens.
    pub output: i64,
    /// Cache reads.
    pub cache_read: i64,
    /// Cache writes.
    pub cache_write: i64,
}

impl SignedTokens {
    /// `now - before`, kind by kind.
    pub fn between(before: &TokenCounts, now: &TokenCounts) -> SignedTokens {
        let delta = |now: u64, before: u64| now as i64 - before as i64;
        SignedTokens {
            input: delta(now.input, before.input),
            output: delta(now.output, before.output),
            cache_read: delta(now.cache_read, before.cache_read),
            cache_write: delta(now.cache_write, before.cache_write),
        }
    }

    /// Adds `other`, kind by kind.
    pub fn add(&mut self, other: &SignedTokens) {
        self.input += other.input;
        self.output += other.output;
        self.cache_read += other.cache_read;
        self.cache_write += other.cache_write;
    }

    /// Whether nothing changed.
    pub fn is_zero(&self) -> bool {
        *self == SignedTokens::default()
    }

    /// As counts, a sum below zero (which sums of changes never reach) as 0.
    pub fn counts(&self) -> TokenCounts {
        let count = |value: i64| value.max(0) as u64;
        TokenCounts {
            input: count(self.input),
            output: count(self.output),
            cache_read: count(self.cache_read),
            cache_write: count(self.cache_write),
        }
    }
}

/// What to sum the ledger by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostKey {
    /// Agents, by name (a name used again by a new agent adds up).
    Agent,
    /// Groups (agents without one under an empty key).
    Group,
    /// Models.
    Model,
    /// Days (UTC), as `YYYY-MM-DD`.
    Day,
}

/// A sum of the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct CostSum {
    /// What was summed by (empty for the whole ledger).
    pub key: String,
    /// Tokens.
    pub tokens: TokenCounts,
    /// US dollars.
    pub cost_usd: f64,
    /// Some tokens had no price.
    pub unpriced: bool,
    /// Runs it counts.
    pub runs: u64,
}

/// A run's spend on one model, as the ledger holds it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Ledgered {
    /// Tokens.
    pub tokens: TokenCounts,
    /// US dollars.
    pub cost_usd: f64,
}

/// Changes of the ledger counted and not written yet, in the order they
/// came, and since when the oldest waits.
#[derive(Debug, Default)]
pub(crate) struct Deferred {
    deltas: Vec<CostDelta>,
    since: Option<Instant>,
}

impl Deferred {
    /// Adds `deltas` to those that wait.
    pub(crate) fn add(&mut self, deltas: &[CostDelta]) {
        if deltas.is_empty() {
            return;
        }
        self.since.get_or_insert_with(Instant::now);
        self.deltas.extend_from_slice(deltas);
    }

    /// Those that wait.
    pub(crate) fn deltas(&self) -> &[CostDelta] {
        &self.deltas
    }

    /// Whether the oldest has waited [`DEFER_AT_MOST`].
    pub(crate) fn due(&self) -> bool {
        self.since
            .is_some_and(|since| since.elapsed() >= DEFER_AT_MOST)
    }

    /// Forgets them, written.
    pub(crate) fn clear(&mut self) {
        self.deltas.clear();
        self.since = None;
    }
}

/// Adds `deltas` to the ledger, inside the caller's transaction.
pub(crate) fn add(transaction: &Transaction<'_>, deltas: &[CostDelta]) -> Result<()> {
    let mut statement = transaction.prepare_cached(
        "INSERT INTO costs (agent_id, run, model, hour, agent_name, agent_group,
                input, output, cache_read, cache_write, cost_usd, unpriced)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (agent_id, run, model, hour) DO UPDATE SET
            input = input + ?7, output = output + ?8, cache_read = cache_read + ?9,
            cache_write = cache_write + ?10, cost_usd = cost_usd + ?11,
            unpriced = max(unpriced, ?12), agent_name = ?5, agent_group = ?6",
    )?;
    for delta in deltas {
        let hour = delta.at.timestamp().div_euclid(HOUR) * HOUR;
        statement.execute(params![
            delta.agent_id,
            delta.run,
            delta.model,
            hour,
            delta.agent_name,
            delta.agent_group,
            delta.tokens.input,
            delta.tokens.output,
            delta.tokens.cache_read,
            delta.tokens.cache_write,
            delta.cost_usd,
            delta.unpriced,
        ])?;
    }
    Ok(())
}

impl Store {
    /// What run `run` of the agent has spent by model, as ledgered (the
    /// changes that wait to be written included).
    pub fn ledgered(&self, agent_id: &str, run: u32) -> Result<BTreeMap<String, Ledgered>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT model, sum(input), sum(output), sum(cache_read), sum(cache_write), sum(cost_usd)
             FROM costs WHERE agent_id = ?1 AND run = ?2 GROUP BY model",
        )?;
        let rows = statement.query_map(params![agent_id, run], |row| {
            let tokens = SignedTokens {
                input: row.get(1)?,
                output: row.get(2)?,
                cache_read: row.get(3)?,
                cache_write: row.get(4)?,
            };
            Ok((row.get::<_, String>(0)?, (tokens, row.get::<_, f64>(5)?)))
        })?;
        let mut sums: BTreeMap<String, (SignedTokens, f64)> =
            rows.collect::<std::result::Result<_, _>>()?;
        for delta in self.deferred_costs.deltas() {
            if delta.agent_id == agent_id && delta.run == run {
                let (tokens, cost) = sums.entry(delta.model.clone()).or_default();
                tokens.add(&delta.tokens);
                *cost += delta.cost_usd;
            }
        }
        Ok(sums
            .into_iter()
            .map(|(model, (tokens, cost_usd))| {
                let tokens = tokens.counts();
                (model, Ledgered { tokens, cost_usd })
            })
            .collect())
    }

    /// What each agent id has spent, over all its runs.
    pub fn spend_by_agent(&mut self) -> Result<Vec<(String, CostSum)>> {
        self.write_deferred_costs()?;
        self.sums("agent_id", None, None)
    }

    /// What each group has spent (agents without a group left out).
    pub fn spend_by_group(&mut self) -> Result<Vec<(String, CostSum)>> {
        self.write_deferred_costs()?;
        self.sums("agent_group", Some("agent_group IS NOT NULL"), None)
    }

    /// The ledger summed by `key`, from the hour `since` falls in on (all
    /// of it when `None`), largest cost first; and the sum of it all. The
    /// changes that wait are written first, or, when they cannot be (a
    /// full disk), left out of it.
    pub fn cost_report(
        &mut self,
        key: CostKey,
        since: Option<DateTime<Utc>>,
    ) -> Result<(Vec<CostSum>, CostSum)> {
        if let Err(error) = self.write_deferred_costs() {
            tracing::warn!(
                "the report leaves out the last second's costs of telemetry, which cannot be written: {error}"
            );
        }
        let column = match key {
            CostKey::Agent => "agent_name",
            CostKey::Group => "coalesce(agent_group, '')",
            CostKey::Model => "model",
            CostKey::Day => "strftime('%Y-%m-%d', hour, 'unixepoch')",
        };
        let mut sums: Vec<CostSum> = self
            .sums(column, None, since)?
            .into_iter()
            .map(|(key, sum)| CostSum { key, ..sum })
            .collect();
        match key {
            CostKey::Day => sums.sort_by(|a, b| a.key.cmp(&b.key)),
            _ => sums.sort_by(|a, b| b.cost_usd.total_cmp(&a.cost_usd).then(a.key.cmp(&b.key))),
        }
        let total = self
            .sums("''", None, since)?
            .into_iter()
            .next()
            .map(|(_, sum)| sum)
            .unwrap_or(CostSum {
                key: String::new(),
                tokens: TokenCounts::default(),
                cost_usd: 0.0,
                unpriced: false,
                runs: 0,
            });
        Ok((sums, total))
    }

    /// Sums of the ledger grouped by the SQL expression `column`.
    fn sums(
        &self,
        column: &str,
        filter: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<(String, CostSum)>> {
        let since_hour = since.map_or(i64::MIN, |at| at.timestamp().div_euclid(HOUR) * HOUR);
        let filter = filter.map_or(String::new(), |filter| format!("AND {filter}"));
        let sql = format!(
            "SELECT {column}, sum(input), sum(output), sum(cache_read), sum(cache_write),
                sum(cost_usd), max(unpriced), count(DISTINCT agent_id || ':' || run)
             FROM costs WHERE hour >= ?1 {filter} GROUP BY 1"
        );
        let mut statement = self.connection.prepare_cached(&sql)?;
        let rows = statement.query_map([since_hour], |row| {
            let tokens = SignedTokens {
                input: row.get(1)?,
                output: row.get(2)?,
                cache_read: row.get(3)?,
                cache_write: row.get(4)?,
            };
            let key: String = row.get(0)?;
            Ok((
                key.clone(),
                CostSum {
                    key,
                    tokens: tokens.counts(),
                    cost_usd: row.get::<_, f64>(5)?.max(0.0),
                    unpriced: row.get(6)?,
                    runs: row.get::<_, i64>(7)? as u64,
                },
            ))
        })?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(Into::into)
    }
}
