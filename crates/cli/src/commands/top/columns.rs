//! The columns of `top`'s table: what each shows of an agent, how it sorts,
//! and which of them fit in the terminal's width.

use crate::format::{bytes, command_line, cpu_percent, uptime, usd};
use std::cmp::Ordering;
use wrangle_wire::AgentView;

/// Space between two columns.
pub const GAP: u16 = 1;

/// Width of the mark in front of the selected row (`> `); every row keeps
/// room for it.
pub const MARK: &str = "> ";

/// A column of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// The agent's name.
    Name,
    /// Its lifecycle state.
    State,
    /// Its health.
    Health,
    /// CPU of its process tree; 100% is one core.
    Cpu,
    /// Resident memory of its process tree.
    Memory,
    /// What its sessions spent, over all its runs.
    Cost,
    /// Processes in its tree.
    Processes,
    /// Progress it reported in its status file.
    Progress,
    /// How long its current run has run.
    Uptime,
    /// Pid of its main process.
    Pid,
    /// The command it runs.
    Command,
}

/// The columns, left to right.
pub const ALL: [Column; 11] = [
    Column::Name,
    Column::State,
    Column::Health,
    Column::Cpu,
    Column::Memory,
    Column::Cost,
    Column::Processes,
    Column::Progress,
    Column::Uptime,
    Column::Pid,
    Column::Command,
];

/// The columns that go first when the terminal is too narrow for all,
/// first dropped first. Name, state, CPU and memory always stay.
const DROP_ORDER: [Column; 7] = [
    Column::Command,
    Column::Pid,
    Column::Processes,
    Column::Uptime,
    Column::Progress,
    Column::Cost,
    Column::Health,
];

/// Columns `s` steps through, in this order.
pub const SORTABLE: [Column; 10] = [
    Column::Name,
    Column::State,
    Column::Health,
    Column::Cpu,
    Column::Memory,
    Column::Cost,
    Column::Processes,
    Column::Progress,
    Column::Uptime,
    Column::Pid,
];

/// A value to sort by.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
enum Key {
    Text(String),
    Number(f64),
}

impl Column {
    /// The header cell.
    pub fn title(self) -> &'static str {
        match self {
            Column::Name => "NAME",
            Column::State => "STATE",
            Column::Health => "HEALTH",
            Column::Cpu => "CPU%",
            Column::Memory => "MEM",
            Column::Cost => "COST",
            Column::Processes => "PROCS",
            Column::Progress => "PROG",
            Column::Uptime => "UPTIME",
            Column::Pid => "PID",
            Column::Command => "COMMAND",
        }
    }

    /// The column's name in the status line: `sort: cpu`.
    pub fn label(self) -> &'static str {
        match self {
            Column::Name => "name",
            Column::State => "state",
            Column::Health => "health",
            Column::Cpu => "cpu",
            Column::Memory => "memory",
            Column::Cost => "cost",
            Column::Processes => "processes",
            Column::Progress => "progress",
            Column::Uptime => "uptime",
            Column::Pid => "pid",
            Column::Command => "command",
        }
    }

    /// Least width: enough for every value the column can hold (`completed`,
    /// `unhealthy`, `100.0%`, `1023M`, `23h59m`); the name and the command
    /// get what is left over.
    fn min_width(self) -> u16 {
        match self {
            Column::Name => 20,
            Column::State | Column::Health => 9,
            Column::Cpu | Column::Memory => 6,
            Column::Cost => 8,
            Column::Processes | Column::Progress => 5,
            Column::Uptime | Column::Pid => 7,
            Column::Command => 20,
        }
    }

    /// True for the columns that share out the width left over.
    fn stretches(self) -> bool {
        matches!(self, Column::Name | Column::Command)
    }

    /// True for numbers, which are right-aligned.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Column::Cpu
                | Column::Memory
                | Column::Cost
                | Column::Processes
                | Column::Progress
                | Column::Uptime
                | Column::Pid
        )
    }

    /// True when the column sorts largest first, as htop sorts CPU and
    /// memory: what uses the most or has run longest is on top (every
    /// number but the pid).
    pub fn descends(self) -> bool {
        self.is_numeric() && self != Column::Pid
    }

    /// The cell of `agent` in this column; `-` for what is not known.
    pub fn cell(self, agent: &AgentView) -> String {
        let known = |value: Option<String>| value.unwrap_or_else(|| "-".into());
        match self {
            Column::Name => agent.name.clone(),
            Column::State => agent.state.to_string(),
            Column::Health => agent.health.to_string(),
            Column::Cpu => known(usage(agent).map(|(cpu, _)| cpu_percent(cpu))),
            Column::Memory => known(usage(agent).map(|(_, rss)| bytes(rss))),
            Column::Cost => known(agent.total_cost_usd.map(usd)),
            Column::Processes => known(agent.tree.as_ref().map(|t| t.processes.to_string())),
            Column::Progress => known(agent.progress.map(progress)),
            Column::Uptime => uptime(agent.runtime_seconds),
            Column::Pid => known(agent.pid.map(|pid| pid.to_string())),
            Column::Command => command_line(&agent.command),
        }
    }

    /// The value `agent` sorts by in this column; `None` sorts last.
    fn key(self, agent: &AgentView) -> Option<Key> {
        let number = |value: f64| Some(Key::Number(value));
        match self {
            Column::Name => Some(Key::Text(agent.name.clone())),
            // Lifecycle order, and health from best to worst.
            Column::State => number(f64::from(agent.state as u8)),
            Column::Health => number(f64::from(agent.health as u8)),
            Column::Cpu => usage(agent).and_then(|(cpu, _)| number(cpu)),
            Column::Memory => usage(agent).and_then(|(_, rss)| number(rss as f64)),
            Column::Cost => agent.total_cost_usd.and_then(number),
            Column::Processes => agent
                .tree
                .as_ref()
                .and_then(|t| number(f64::from(t.processes))),
            Column::Progress => agent.progress.and_then(number),
            Column::Uptime => agent.runtime_seconds.and_then(number),
            Column::Pid => agent.pid.and_then(|pid| number(f64::from(pid))),
            Column::Command => Some(Key::Text(command_line(&agent.command))),
        }
    }

    /// Orders two agents by this column: ascending, or descending when
    /// `descending`; an unknown value comes last either way, and a tie
    /// goes by name so that rows do not swap places between refreshes.
    pub fn compare(self, a: &AgentView, b: &AgentView, descending: bool) -> Ordering {
        let order = match (self.key(a), self.key(b)) {
            (Some(x), Some(y)) => {
                let order = x.partial_cmp(&y).unwrap_or(Ordering::Equal);
                if descending {
                    order.reverse()
                } else {
                    order
                }
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        order.then_with(|| a.name.cmp(&b.name))
    }
}

/// CPU percent and resident bytes of the agent's tree, or of its main
/// process when the tree was not sampled.
pub fn usage(agent: &AgentView) -> Option<(f64, u64)> {
    match (&agent.tree, &agent.process) {
        (Some(tree), _) => Some((tree.cpu_percent, tree.rss_bytes)),
        (None, Some(process)) => Some((process.cpu_percent, process.rss_bytes)),
        (None, None) => None,
    }
}

/// Progress 0-100 as `40%`.
fn progress(value: f64) -> String {
    format!("{:.0}%", value.clamp(0.0, 100.0))
}

/// The columns that fit in `width` terminal columns (the selection mark
/// included), each with its width. Columns are dropped in
/// [`DROP_ORDER`] until the rest fit at their least width; what is left
/// over goes to the name and the command, the command getting twice the
/// name's share.
pub fn layout(width: u16) -> Vec<(Column, u16)> {
    let room = width.saturating_sub(MARK.len() as u16);
    let needed = |columns: &[Column]| -> u16 {
        columns.iter().map(|c| c.min_width()).sum::<u16>()
            + GAP * (columns.len() as u16).saturating_sub(1)
    };
    let mut columns = ALL.to_vec();
    for dropped in DROP_ORDER {
        if needed(&columns) <= room {
            break;
        }
        columns.retain(|c| *c != dropped);
    }
    let total = needed(&columns);
    if total > room {
        // Not even the four that always stay fit: the name gives up what
        // it must, down to nothing.
        let short = total - room;
        return columns
            .into_iter()
            .map(|c| {
                let width = c.min_width();
                let width = if c == Column::Name {
                    width.saturating_sub(short)
                } else {
                    width
                };
                (c, width)
            })
            .collect();
    }
    let spare = room - total;
    let command = columns.contains(&Column::Command);
    let (to_name, to_command) = if command {
        (spare / 3, spare - spare / 3)
    } else {
        (spare, 0)
    };
    columns
        .into_iter()
        .map(|c| {
            let extra = match c {
                Column::Name => to_name,
                Column::Command => to_command,
                _ => 0,
            };
            debug_assert!(extra == 0 || c.stretches());
            (c, c.min_width() + extra)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::sample_agent;
    use wrangle_wire::{Health, ProcessMetrics, State, TreeMetrics};

    fn tree(cpu: f64, rss: u64, processes: u32) -> Option<TreeMetrics> {
        Some(TreeMetrics {
            cpu_percent: cpu,
            rss_bytes: rss,
            processes,
            ..TreeMetrics::default()
        })
    }

    fn named(name: &str) -> AgentView {
        AgentView {
            name: name.into(),
            ..sample_agent()
        }
    }

    fn columns(width: u16) -> Vec<Column> {
        layout(width).into_iter().map(|(c, _)| c).collect()
    }

    #[test]
    fn at_80_columns_all_but_pid_processes_and_command_fit_and_fill_the_width() {
        let layout = layout(80);
        assert_eq!(
            layout,
            [
                (Column::Name, 21),
                (Column::State, 9),
                (Column::Health, 9),
                (Column::Cpu, 6),
                (Column::Memory, 6),
                (Column::Cost, 8),
                (Column::Progress, 5),
                (Column::Uptime, 7),
            ]
        );
        let used: u16 = layout.iter().map(|(_, w)| w).sum::<u16>()
            + GAP * (layout.len() as u16 - 1)
            + MARK.len() as u16;
        assert_eq!(used, 80);
    }

    #[test]
    fn wide_terminals_show_pid_and_command_and_narrow_ones_drop_columns() {
        assert_eq!(columns(200), ALL);
        let wide = layout(200);
        let width = |column| wide.iter().find(|(c, _)| *c == column).unwrap().1;
        assert!(width(Column::Command) > width(Column::Name));
        assert!(width(Column::Name) > 20);

        assert_eq!(
            columns(60),
            [
                Column::Name,
                Column::State,
                Column::Health,
                Column::Cpu,
                Column::Memory,
            ]
        );
        let least = [Column::Name, Column::State, Column::Cpu, Column::Memory];
        assert_eq!(columns(40), least);
        // Narrower still: the name shrinks, nothing wraps.
        let tiny = layout(30);
        assert_eq!(tiny.iter().map(|(c, _)| *c).collect::<Vec<_>>(), least);
        let used: u16 = tiny.iter().map(|(_, w)| w).sum::<u16>() + 3 * GAP + 2;
        assert_eq!(used, 30);
        assert_eq!(layout(0)[0], (Column::Name, 0));
    }

    #[test]
    fn every_width_is_used_exactly_while_the_four_fit() {
        for width in 42..=300 {
            let layout = layout(width);
            let used: u16 = layout.iter().map(|(_, w)| w).sum::<u16>()
                + GAP * (layout.len() as u16 - 1)
                + MARK.len() as u16;
            assert_eq!(used, width, "{layout:?}");
        }
    }

    #[test]
    fn unknown_figures_show_as_a_dash() {
        let agent = sample_agent();
        let cells: Vec<String> = ALL.iter().map(|c| c.cell(&agent)).collect();
        assert_eq!(
            cells,
            [
                "worker-1",
                "running",
                "healthy",
                "-",
                "-",
                "-",
                "-",
                "-",
                "5m12s",
                "4242",
                "sleep 100"
            ]
        );
    }

    #[test]
    fn sampled_figures_fill_the_row() {
        let agent = AgentView {
            tree: tree(12.34, 3 * 1024 * 1024 / 2, 4),
            progress: Some(40.4),
            total_cost_usd: Some(1.5),
            ..sample_agent()
        };
        let cells: Vec<String> = ALL.iter().map(|c| c.cell(&agent)).collect();
        assert_eq!(
            cells[3..8],
            ["12.3%", "1.5M", "$1.50", "4", "40%"].map(String::from)
        );
        // Only the main process sampled: its figures stand in for the tree.
        let agent = AgentView {
            process: Some(ProcessMetrics {
                cpu_percent: 150.0,
                rss_bytes: 2048,
                ..ProcessMetrics::default()
            }),
            ..sample_agent()
        };
        assert_eq!(Column::Cpu.cell(&agent), "150%");
        assert_eq!(Column::Memory.cell(&agent), "2.0K");
        assert_eq!(Column::Processes.cell(&agent), "-");
    }

    #[test]
    fn every_cell_fits_its_least_width() {
        let agent = AgentView {
            state: State::Completed,
            health: Health::Unhealthy,
            tree: tree(100.0, 1023 * 1024 * 1024, 99_999),
            progress: Some(100.0),
            runtime_seconds: Some(86_399.0),
            pid: Some(4_194_304),
            ..sample_agent()
        };
        for column in ALL {
            if !column.stretches() {
                let cell = column.cell(&agent);
                assert!(
                    cell.chars().count() <= usize::from(column.min_width()),
                    "{column:?}: {cell}"
                );
            }
        }
    }

    #[test]
    fn numbers_sort_largest_first_with_unknowns_last() {
        let mut agents = [
            AgentView {
                tree: tree(5.0, 300, 1),
                ..named("b")
            },
            named("unsampled"),
            AgentView {
                tree: tree(50.0, 100, 3),
                ..named("a")
            },
            AgentView {
                tree: tree(5.0, 200, 2),
                ..named("c")
            },
        ];
        let names = |agents: &[AgentView]| -> Vec<String> {
            agents.iter().map(|a| a.name.clone()).collect()
        };
        agents.sort_by(|a, b| Column::Cpu.compare(a, b, Column::Cpu.descends()));
        // A tie (b and c at 5%) goes by name.
        assert_eq!(names(&agents), ["a", "b", "c", "unsampled"]);
        agents.sort_by(|a, b| Column::Cpu.compare(a, b, false));
        assert_eq!(names(&agents), ["b", "c", "a", "unsampled"]);
        agents.sort_by(|a, b| Column::Memory.compare(a, b, true));
        assert_eq!(names(&agents), ["b", "c", "a", "unsampled"]);
        agents.sort_by(|a, b| Column::Name.compare(a, b, Column::Name.descends()));
        assert_eq!(names(&agents), ["a", "b", "c", "unsampled"]);
        agents.sort_by(|a, b| Column::Name.compare(a, b, true));
        assert_eq!(names(&agents), ["unsampled", "c", "b", "a"]);
    }

    #[test]
    fn states_sort_in_lifecycle_order() {
        let mut agents = [
            AgentView {
                state: State::Stopped,
                ..named("x")
            },
            AgentView {
                state: State::Queued,
                ..named("y")
            },
            named("z"),
        ];
        agents.sort_by(|a, b| Column::State.compare(a, b, false));
        let states: Vec<State> = agents.iter().map(|a| a.state).collect();
        assert_eq!(states, [State::Queued, State::Running, State::Stopped]);
    }
}
