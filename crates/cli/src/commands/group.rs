//! `wrangle group ls|set`: concurrency groups and their limits.

use crate::args::{GroupAction, GroupArgs};
use crate::client::{self, Client};
use crate::format;
use crate::table::Table;
use crate::{output, routes};
use anyhow::Result;
use serde_json::Value;
use wrangle_wire::{DaemonInfo, GroupView, SetGroup};

/// Lists groups, or sets one's limit and prints the group.
pub async fn group(client: &Client, args: &GroupArgs) -> Result<u8> {
    match &args.action {
        GroupAction::Ls(ls) => {
            let value: Value = client.get(&routes::groups()).await?;
            if ls.json {
                output::print_json(&value)?;
            } else {
                let groups: Vec<GroupView> = client::from_value(value)?;
                let daemon: DaemonInfo = client.get(&routes::daemon()).await?;
                if let Some(max) = daemon.max_running {
                    output::print_line(&format!(
                        "all agents: at most {max} run at once (daemon --max-running)"
                    ))?;
                }
                output::print(&table(&groups))?;
            }
        }
        GroupAction::Set(set) => {
            let request = SetGroup {
                max_running: set.max_running.map(|max| max.0),
                budget_usd: set.budget_usd.map(|budget| budget.0),
            };
            let group: GroupView = client.put(&routes::group(&set.name), &request).await?;
            output::print(&table(&[group]))?;
        }
    }
    Ok(0)
}

/// `GROUP MAX-RUNNING RUNNING QUEUED AGENTS SPENT BUDGET`, one row per
/// group.
fn table(groups: &[GroupView]) -> String {
    let mut table = Table::new(&[
        "GROUP",
        "MAX-RUNNING",
        "RUNNING",
        "QUEUED",
        "AGENTS",
        "SPENT",
        "BUDGET",
    ]);
    for group in groups {
        table.push(vec![
            group.name.clone(),
            group
                .max_running
                .map_or_else(|| "-".to_owned(), |max| max.to_string()),
            group.running.to_string(),
            group.queued.to_string(),
            group.agents.to_string(),
            format::usd(group.spent_usd),
            group.budget_usd.map_or_else(|| "-".to_owned(), format::usd),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_per_group_and_a_dash_for_no_limit() {
        let groups = [
            GroupView {
                name: "builds".into(),
                max_running: Some(2),
                running: 2,
                queued: 3,
                agents: 7,
                budget_usd: Some(20.0),
                spent_usd: 12.5,
            },
            GroupView {
                name: "misc".into(),
                max_running: None,
                running: 1,
                queued: 0,
                agents: 1,
                budget_usd: None,
                spent_usd: 0.0,
            },
        ];
        let expected = "\
GROUP    MAX-RUNNING   RUNNING   QUEUED   AGENTS   SPENT     BUDGET
builds   2             2         3        7        $12.50    $20.00
misc     -             1         0        1        $0.0000   -
";
        assert_eq!(table(&groups), expected);
    }
}
