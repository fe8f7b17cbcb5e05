//! `wrangle cost`: what agents' sessions spent, from the daemon's ledger.

use crate::args::CostArgs;
use crate::client::{self, Client};
use crate::format;
use crate::table::Table;
use crate::{output, routes};
use anyhow::Result;
use serde_json::Value;
use wrangle_wire::{CostQuery, CostReport, CostRow};

/// Prints the ledger summed as asked, for people or as JSON exactly as the
/// daemon sent it.
pub async fn cost(client: &Client, args: &CostArgs) -> Result<u8> {
    let query = CostQuery {
        by: args.by.clone(),
        since: args.since.clone(),
    };
    let value: Value = client.get(&routes::cost(&query)).await?;
    if args.json {
        output::print_json(&value)?;
    } else {
        output::print(&describe(&client::from_value(value)?))?;
    }
    Ok(0)
}

/// A row per agent (group, model, day), the total last, and a note where
/// some tokens have no price.
fn describe(report: &CostReport) -> String {
    let key = report.by.as_str().to_uppercase();
    let mut table = Table::new(&[
        key.as_str(),
        "RUNS",
        "INPUT",
        "OUTPUT",
        "CACHE-READ",
        "CACHE-WRITE",
        "COST",
    ]);
    let row = |row: &CostRow, key: String| {
        vec![
            key,
            row.runs.to_string(),
            row.tokens.input.to_string(),
            row.tokens.output.to_string(),
            row.tokens.cache_read.to_string(),
            row.tokens.cache_write.to_string(),
            format!(
                "{}{}",
                format::usd(row.cost_usd),
                if row.unpriced { "+" } else { "" }
            ),
        ]
    };
    for sum in &report.rows {
        table.push(row(sum, sum.key.clone()));
    }
    table.push(row(&report.total, "TOTAL".into()));
    let mut text = table.render();
    if let Some(since) = &report.since {
        text.push_str(&format!("since {}\n", format::timestamp_millis(since)));
    }
    if report.total.unpriced {
        text.push_str(
            "+: some tokens are of a model without a price (add it to $WRANGLE_HOME/prices.toml)\n",
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use wrangle_wire::{CostBy, TokenCounts};

    fn row(key: &str, cost_usd: f64, unpriced: bool) -> CostRow {
        CostRow {
            key: key.into(),
            tokens: TokenCounts {
                input: 10,
                output: 20,
                cache_read: 30,
                cache_write: 40,
            },
            cost_usd,
            unpriced,
            runs: 1,
        }
    }

    #[test]
    fn rows_then_the_total_and_a_note_for_unpriced_tokens() {
        let report = CostReport {
            by: CostBy::Model,
            since: None,
            rows: vec![
                row("claude-sonnet-4-5", 0.0745, false),
                row("mystery", 0.0, true),
            ],
            total: row("", 0.0745, true),
        };
        let expected = "\
MODEL               RUNS   INPUT   OUTPUT   CACHE-READ   CACHE-WRITE   COST
claude-sonnet-4-5   1      10      20       30           40            $0.0745
mystery             1      10      20       30           40            $0.0000+
TOTAL               1      10      20       30           40            $0.0745+
+: some tokens are of a model without a price (add it to $WRANGLE_HOME/prices.toml)
";
        assert_eq!(describe(&report), expected);
    }
}
