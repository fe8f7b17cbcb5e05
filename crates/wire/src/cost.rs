//! The cost ledger as the API shows it: what agents' sessions spent,
//! summed by agent, group, model or day, removed agents included.

use crate::TokenCounts;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// `GET /v1/cost`: how to sum the ledger.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
pub struct CostQuery {
    /// What to sum by: `agent` (the default), `group`, `model` or `day`.
    #[serde(default)]
    pub by: Option<String>,
    /// Only what was spent from then on (to the hour): a time
    /// (`2026-12-06T10:00:00Z`), a day (`2026-12-06`), `today` (UTC) or a
    /// duration ago (`24h`, `7d`). All of it when absent.
    #[serde(default)]
    pub since: Option<String>,
}

/// What the ledger is summed by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CostBy {
    /// Agents, by name.
    #[default]
    Agent,
    /// Groups (agents without one under `-`).
    Group,
    /// Models.
    Model,
    /// Days (UTC).
    Day,
}

impl CostBy {
    /// The name used in the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            CostBy::Agent => "agent",
            CostBy::Group => "group",
            CostBy::Model => "model",
            CostBy::Day => "day",
        }
    }
}

impl fmt::Display for CostBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CostBy {
    type Err = String;
    fn from_str(text: &str) -> Result<CostBy, String> {
        match text.trim() {
            "agent" => Ok(CostBy::Agent),
            "group" => Ok(CostBy::Group),
            "model" => Ok(CostBy::Model),
            "day" => Ok(CostBy::Day),
            _ => Err(format!(
                "invalid --by {text:?}: give agent, group, model or day"
            )),
        }
    }
}

/// `GET /v1/cost`: the ledger summed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CostReport {
    /// What it is summed by.
    pub by: CostBy,
    /// From when (the start of its hour); absent for all of it.
    pub since: Option<DateTime<Utc>>,
    /// One sum per agent, group, model or day: the largest cost first
    /// (days in order).
    pub rows: Vec<CostRow>,
    /// Everything together.
    pub total: CostRow,
}

/// One sum of the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CostRow {
    /// The agent's name, the group (`-` for none), the model (`unknown`
    /// where no line named one) or the day; empty for the total.
    pub key: String,
    /// Tokens.
    pub tokens: TokenCounts,
    /// US dollars: the agents' own figures where they give them, else
    /// priced from the table.
    pub cost_usd: f64,
    /// Some tokens are of a model without a price: the cost is less than
    /// the truth.
    pub unpriced: bool,
    /// Runs counted.
    pub runs: u64,
}

/// Parses the `since` of a cost query: a time, a day, `today` or a
/// duration before `now`.
pub fn parse_cost_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let trimmed = text.trim();
    if trimmed == "today" {
        return Ok(now
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map(|midnight| midnight.and_utc())
            .unwrap_or(now));
    }
    if let Ok(time) = DateTime::parse_from_rfc3339(trimmed) {
        return Ok(time.with_timezone(&Utc));
    }
    if let Ok(day) = NaiveDate::parse_from_str(trimmed, "%Y-%m-%d") {
        if let Some(midnight) = day.and_hms_opt(0, 0, 0) {
            return Ok(midnight.and_utc());
        }
    }
    humantime::parse_duration(trimmed)
        .ok()
        .and_then(|ago| chrono::Duration::from_std(ago).ok())
        .and_then(|ago| now.checked_sub_signed(ago))
        .ok_or_else(|| {
            format!("invalid --since {text:?}: give a time (2026-12-06T10:00:00Z), a day (2026-12-06), today, or a duration ago (24h, 7d)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn since_takes_times_days_today_and_durations() {
        let now = Utc.with_ymd_and_hms(2026, 12, 6, 15, 30, 0).unwrap();
        let midnight = Utc.with_ymd_and_hms(2026, 12, 6, 0, 0, 0).unwrap();
        assert_eq!(parse_cost_since("today", now), Ok(midnight));
        assert_eq!(parse_cost_since("2026-12-06", now), Ok(midnight));
        assert_eq!(
            parse_cost_since("2026-12-06T10:00:00Z", now),
            Ok(Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 0).unwrap())
        );
        assert_eq!(
            parse_cost_since("2h", now),
            Ok(Utc.with_ymd_and_hms(2026, 12, 6, 13, 30, 0).unwrap())
        );
        assert!(parse_cost_since("yesterdayish", now)
            .unwrap_err()
            .contains("--since"));
        assert_eq!("model".parse(), Ok(CostBy::Model));
        assert!("cost".parse::<CostBy>().is_err());
    }
}
