//! `wrangle summary`: the fleet at a glance.

use crate::args::SummaryArgs;
use crate::client::{self, Client};
use crate::format::{bytes, cpu_percent, timestamp_millis};
use crate::table::Table;
use crate::{output, routes};
use anyhow::Result;
use serde_json::Value;
use std::fmt::Display;
use wrangle_wire::{Summary, SummaryEntry};

/// Prints the summary for people, or as JSON exactly as the daemon sent
/// it.
pub async fn summary(client: &Client, args: &SummaryArgs) -> Result<u8> {
    let value: Value = client.get(&routes::summary()).await?;
    if args.json {
        output::print_json(&value)?;
    } else {
        output::print(&describe(&client::from_value(value)?))?;
    }
    Ok(0)
}

/// `key: value` lines, then the top agents by CPU and by memory.
fn describe(summary: &Summary) -> String {
    let mut table = Table::headless();
    let mut line = |key: &str, value: String| table.push(vec![format!("{key}:"), value]);
    line(
        "agents",
        format!(
            "{} ({})",
            summary.agents,
            counts(summary.by_state.iter().map(|(state, n)| (state, *n)))
        ),
    );
    line(
        "health",
        counts(summary.by_health.iter().map(|(health, n)| (health, *n))),
    );
    line("cpu", cpu_percent(summary.cpu_percent));
    line("memory", bytes(summary.rss_bytes));
    line("processes", summary.processes.to_string());
    line(
        "spent",
        format!(
            "{} today (UTC), {} in all",
            crate::format::usd(summary.spent_today_usd),
            crate::format::usd(summary.spent_usd)
        ),
    );
    line(
        "sampled_at",
        summary
            .sampled_at
            .as_ref()
            .map_or_else(|| "-".to_owned(), timestamp_millis),
    );
    let mut text = table.render();
    for (title, entries) in [
        ("top cpu", &summary.top_cpu),
        ("top memory", &summary.top_memory),
    ] {
        text.push('\n');
        text.push_str(&top(title, entries));
    }
    if !summary.top_cost.is_empty() {
        let mut table = Table::new(&["NAME", "ID", "COST"]);
        for entry in &summary.top_cost {
            table.push(vec![
                entry.name.clone(),
                entry.id[..entry.id.len().min(12)].to_owned(),
                crate::format::usd(entry.cost_usd),
            ]);
        }
        text.push_str(&format!("\ntop cost:\n{}", table.render()));
    }
    text
}

/// `running 10, completed 2`: the non-zero counts, or `none`.
fn counts<K: Display>(counts: impl Iterator<Item = (K, u32)>) -> String {
    let listed: Vec<String> = counts
        .filter(|(_, n)| *n > 0)
        .map(|(key, n)| format!("{key} {n}"))
        .collect();
    if listed.is_empty() {
        "none".to_owned()
    } else {
        listed.join(", ")
    }
}

/// One top list as a table under its title.
fn top(title: &str, entries: &[SummaryEntry]) -> String {
    if entries.is_empty() {
        return format!("{title}: -\n");
    }
    let mut table = Table::new(&["NAME", "ID", "CPU", "MEM"]);
    for entry in entries {
        table.push(vec![
            entry.name.clone(),
            entry.id[..entry.id.len().min(12)].to_owned(),
            cpu_percent(entry.cpu_percent),
            bytes(entry.rss_bytes),
        ]);
    }
    format!("{title}:\n{}", table.render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use wrangle_wire::{Health, State};

    #[test]
    fn the_summary_shows_non_zero_counts_totals_and_top_lists() {
        let mut summary = Summary {
            agents: 3,
            by_state: State::ALL.into_iter().map(|s| (s, 0)).collect(),
            by_health: Health::ALL.into_iter().map(|h| (h, 0)).collect(),
            cpu_percent: 152.5,
            rss_bytes: 3 << 30,
            processes: 7,
            top_cpu: vec![SummaryEntry {
                id: "0123456789abcdef0123456789abcdef".into(),
                name: "busy".into(),
                cpu_percent: 150.0,
                rss_bytes: 2 << 20,
            }],
            top_memory: Vec::new(),
            sampled_at: Some(chrono::Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()),
            spent_today_usd: 1.25,
            spent_usd: 30.5,
            top_cost: Vec::new(),
        };
        summary.by_state.insert(State::Running, 2);
        summary.by_state.insert(State::Completed, 1);
        summary.by_health.insert(Health::Healthy, 1);
        summary.by_health.insert(Health::Hung, 1);
        let expected = "\
agents:       3 (running 2, completed 1)
health:       healthy 1, hung 1
cpu:          152%
memory:       3.0G
processes:    7
spent:        $1.25 today (UTC), $30.50 in all
sampled_at:   2024-05-01T12:00:00.000Z

top cpu:
NAME   ID             CPU    MEM
busy   0123456789ab   150%   2.0M

top memory: -
";
        assert_eq!(describe(&summary), expected);
    }

    #[test]
    fn an_empty_fleet_says_so() {
        let text = describe(&Summary::default());
        assert!(
            text.starts_with("agents:       0 (none)\nhealth:       none\n"),
            "{text}"
        );
        assert!(text.contains("sampled_at:   -\n"), "{text}");
    }
}
