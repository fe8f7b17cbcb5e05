//! `wrangle ps`: list agents.

use crate::args::PsArgs;
use crate::client::Client;
use crate::format::{bytes, command_line, cpu_percent, truncate, uptime, usd};
use crate::table::Table;
use crate::{output, routes};
use anyhow::Result;
use wrangle_wire::{AgentView, ListQuery};

/// Widest COMMAND cell; longer command lines end in `…`.
const COMMAND_WIDTH: usize = 50;

/// Lists agents, oldest first (the daemon's order), as a table or as JSON
/// (each agent as the daemon sent it).
pub async fn ps(client: &Client, args: &PsArgs) -> Result<u8> {
    let mut query = query_of(args);
    if args.json {
        // Indented by the daemon and printed as received: no need to
        // decode (or re-indent) thousands of agents.
        query.pretty = true;
        output::print_json_text(&client.get_raw(&routes::list_matching(&query)).await?)?;
    } else {
        let path = routes::list_matching(&query);
        let agents: Vec<AgentView> = client.get(&path).await?;
        output::print(&table(&agents))?;
    }
    Ok(0)
}

/// The list query of `ps`' arguments: filters of one key add up (two
/// states are either; two labels are both).
fn query_of(args: &PsArgs) -> ListQuery {
    let mut query = ListQuery {
        all: args.all,
        limit: args.limit,
        ..ListQuery::default()
    };
    for (key, value) in &args.filter {
        let slot = match key.as_str() {
            "state" => &mut query.state,
            "group" => &mut query.group,
            _ => &mut query.label,
        };
        *slot = Some(match slot.take() {
            Some(before) if key != "group" => format!("{before},{value}"),
            _ => value.clone(),
        });
    }
    query
}

/// `ID NAME STATE HEALTH PID CPU MEM COST UPTIME COMMAND`, one row per
/// agent; CPU and MEM are those of the whole process tree at the last
/// sample, COST what its sessions spent over all its runs, and HEALTH says
/// `waiting` when it needs a person.
fn table(agents: &[AgentView]) -> String {
    let mut table = Table::new(&[
        "ID", "NAME", "STATE", "HEALTH", "PID", "CPU", "MEM", "COST", "UPTIME", "COMMAND",
    ]);
    for agent in agents {
        let dash = || "-".to_owned();
        let tree = agent.tree.as_ref();
        table.push(vec![
            agent.short_id().to_owned(),
            agent.name.clone(),
            agent.state.to_string(),
            agent.health.to_string(),
            agent.pid.map_or_else(dash, |pid| pid.to_string()),
            tree.map_or_else(dash, |tree| cpu_percent(tree.cpu_percent)),
            tree.map_or_else(dash, |tree| bytes(tree.rss_bytes)),
            agent.total_cost_usd.map_or_else(dash, usd),
            uptime(agent.runtime_seconds),
            truncate(&command_line(&agent.command), COMMAND_WIDTH).into_owned(),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::sample_agent;
    use wrangle_wire::{Health, State};

    #[test]
    fn the_table_has_one_aligned_row_per_agent() {
        let running = AgentView {
            tree: Some(wrangle_wire::TreeMetrics {
                cpu_percent: 150.0,
                rss_bytes: 300 << 20,
                processes: 3,
                ..Default::default()
            }),
            total_cost_usd: Some(0.0745),
            ..sample_agent()
        };
        let ended = AgentView {
            id: "fedcba9876543210fedcba9876543210".into(),
            name: "a".into(),
            state: State::Failed,
            health: Health::Unknown,
            pid: None,
            runtime_seconds: None,
            command: vec![
                "claude".into(),
                "-p".into(),
                "fix every failing test in the repository, then open a PR".into(),
            ],
            ..sample_agent()
        };
        let text = table(&[running, ended]);
        let expected = "\
ID             NAME       STATE     HEALTH    PID    CPU    MEM    COST      UPTIME   COMMAND
0123456789ab   worker-1   running   healthy   4242   150%   300M   $0.0745   5m12s    sleep 100
fedcba987654   a          failed    unknown   -      -      -      -         -        claude -p 'fix every failing test in the reposito…
";
        assert_eq!(text, expected);
        let last = text.lines().nth(2).unwrap();
        let command = &last[last.find("claude").unwrap()..];
        assert_eq!(command.chars().count(), COMMAND_WIDTH);
    }

    #[test]
    fn no_agents_is_just_the_header() {
        assert_eq!(
            table(&[]),
            "ID   NAME   STATE   HEALTH   PID   CPU   MEM   COST   UPTIME   COMMAND\n"
        );
    }
}
