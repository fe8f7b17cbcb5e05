//! What `top` knows and how keys change it, with no I/O: the agents of
//! the last refresh, the sort, the filter, the selection, the open pane.
//! Keys that need the daemon come back as an [`Effect`] for the event loop
//! to carry out; its answers come back as an [`Update`].

use super::columns::{Column, SORTABLE};
use crate::format::command_line;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::widgets::TableState;
use std::time::Duration;
use wrangle_wire::{AgentView, LogLine, State};

/// Rows that PageUp and PageDown move.
const PAGE: usize = 10;

/// What a key asks of the event loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Leave `top`.
    Quit,
    /// Ask for the agents (and the open log pane) now, not at the next tick.
    Refresh,
    /// Stop the agent with the staged stop.
    Stop(Target),
    /// SIGKILL the agent's tree.
    Kill(Target),
}

/// The agent an action is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its id, which the request names it by.
    pub id: String,
    /// Its name, which the screen names it by.
    pub name: String,
}

/// An answer of the daemon, for the app to take in. Errors are kept as
/// the text the screen shows.
#[derive(Debug, Clone)]
pub enum Update {
    /// `GET /v1/agents`.
    Agents(Result<Vec<AgentView>, String>),
    /// The log tail of the agent with this id.
    Logs {
        /// The agent's id.
        id: String,
        /// Its lines, oldest first.
        lines: Result<Vec<LogLine>, String>,
    },
    /// A stop or kill finished: what to tell the user.
    Done(Result<String, String>),
}

/// What the keys currently do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The table.
    Table,
    /// Typing the filter after `/`.
    Filter,
    /// Waiting for y or n before stopping or killing an agent.
    Confirm(Effect),
    /// The log pane of one agent.
    Logs(Target),
}

/// Whether the daemon answered the last refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// No answer yet.
    Connecting,
    /// The last refresh was answered.
    Up,
    /// The last refresh failed with this error: the table shows the
    /// agents of the last answer, if any.
    Down(String),
}

/// The log pane's content.
#[derive(Debug, Clone, Default)]
pub struct LogPane {
    /// The lines of the last answer, oldest first.
    pub lines: Vec<LogLine>,
    /// Why the last request failed, if it did.
    pub error: Option<String>,
    /// False until the first answer.
    pub loaded: bool,
}

/// The state of the screen.
#[derive(Debug)]
pub struct App {
    /// Whether ended agents are listed (`--all`).
    pub all: bool,
    /// Time between two refreshes.
    pub interval: Duration,
    /// Agents as the daemon last sent them.
    agents: Vec<AgentView>,
    /// The sort column.
    pub sort: Column,
    /// True when the sort runs against the column's usual direction.
    pub reversed: bool,
    /// Text an agent's name or command must contain (case-insensitive).
    pub filter: String,
    /// What the keys do.
    pub mode: Mode,
    /// Whether the daemon answers.
    pub link: Link,
    /// The outcome of the last stop or kill, or that one is under way.
    pub notice: Option<Result<String, String>>,
    /// The log pane's content, while it is open.
    pub logs: LogPane,
    /// Id of the selected agent: the selection follows the agent when rows
    /// move.
    selected: Option<String>,
    /// The table's selected row and scroll offset.
    pub table: TableState,
}

impl App {
    /// An app before the first answer, sorted by CPU as htop is.
    pub fn new(all: bool, interval: Duration) -> App {
        App {
            all,
            interval,
            agents: Vec::new(),
            sort: Column::Cpu,
            reversed: false,
            filter: String::new(),
            mode: Mode::Table,
            link: Link::Connecting,
            notice: None,
            logs: LogPane::default(),
            selected: None,
            table: TableState::default(),
        }
    }

    /// Every agent of the last answer, in the daemon's order.
    pub fn agents(&self) -> &[AgentView] {
        &self.agents
    }

    /// True when the sort is largest first.
    pub fn descending(&self) -> bool {
        self.sort.descends() != self.reversed
    }

    /// The agents the table shows: those the filter lets through, sorted.
    pub fn visible(&self) -> Vec<&AgentView> {
        let needle = self.filter.to_lowercase();
        let mut shown: Vec<&AgentView> = self
            .agents
            .iter()
            .filter(|agent| matches(agent, &needle))
            .collect();
        let descending = self.descending();
        shown.sort_by(|a, b| self.sort.compare(a, b, descending));
        shown
    }

    /// The selected agent, if the table shows any.
    pub fn selected(&self) -> Option<&AgentView> {
        let id = self.selected.as_deref()?;
        self.visible().into_iter().find(|agent| agent.id == id)
    }

    /// Takes in an answer of the daemon.
    pub fn apply(&mut self, update: Update) {
        match update {
            Update::Agents(Ok(agents)) => {
                self.agents = agents;
                self.link = Link::Up;
                self.reselect();
            }
            Update::Agents(Err(error)) => self.link = Link::Down(error),
            Update::Logs { id, lines } => {
                // An answer for a pane that was closed or changed since.
                if !matches!(&self.mode, Mode::Logs(target) if target.id == id) {
                    return;
                }
                self.logs.loaded = true;
                match lines {
                    Ok(lines) => {
                        self.logs.lines = lines;
                        self.logs.error = None;
                    }
                    Err(error) => self.logs.error = Some(error),
                }
            }
            Update::Done(outcome) => self.notice = Some(outcome),
        }
    }

    /// The id of the agent whose log pane is open.
    pub fn logs_of(&self) -> Option<&str> {
        match &self.mode {
            Mode::Logs(target) => Some(&target.id),
            _ => None,
        }
    }

    /// Handles one key; returns what the event loop must do.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Effect> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        // Raw mode turns Ctrl-C into a key: it quits wherever the user is.
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Some(Effect::Quit);
        }
        match self.mode.clone() {
            Mode::Table => self.table_key(key),
            Mode::Filter => {
                self.filter_key(key);
                None
            }
            Mode::Confirm(effect) => {
                self.mode = Mode::Table;
                match key.code {
                    KeyCode::Char('y' | 'Y') => Some(effect),
                    _ => None,
                }
            }
            Mode::Logs(_) => match key.code {
                KeyCode::Esc | KeyCode::Left | KeyCode::Char('h') => {
                    self.mode = Mode::Table;
                    self.logs = LogPane::default();
                    None
                }
                KeyCode::Char('q') => Some(Effect::Quit),
                _ => None,
            },
        }
    }

    /// A key over the table.
    fn table_key(&mut self, key: KeyEvent) -> Option<Effect> {
        match key.code {
            KeyCode::Char('q') => return Some(Effect::Quit),
            KeyCode::Up | KeyCode::Char('k') => self.step(-1),
            KeyCode::Down | KeyCode::Char('j') => self.step(1),
            KeyCode::PageUp => self.step(-(PAGE as isize)),
            KeyCode::PageDown => self.step(PAGE as isize),
            KeyCode::Home | KeyCode::Char('g') => self.step(isize::MIN),
            KeyCode::End | KeyCode::Char('G') => self.step(isize::MAX),
            KeyCode::Char('s') => {
                let at = SORTABLE.iter().position(|c| *c == self.sort).unwrap_or(0);
                self.sort_by(SORTABLE[(at + 1) % SORTABLE.len()]);
            }
            KeyCode::Char('P') => self.sort_by(Column::Cpu),
            KeyCode::Char('M') => self.sort_by(Column::Memory),
            KeyCode::Char('$') => self.sort_by(Column::Cost),
            KeyCode::Char('N') => self.sort_by(Column::Name),
            KeyCode::Char('T') => self.sort_by(Column::Uptime),
            KeyCode::Char('r') => {
                self.reversed = !self.reversed;
                self.reselect();
            }
            KeyCode::Char('/') => self.mode = Mode::Filter,
            KeyCode::Esc => {
                self.filter.clear();
                self.reselect();
            }
            KeyCode::Enter | KeyCode::Char('l') | KeyCode::Right => {
                let target = self.target()?;
                self.mode = Mode::Logs(target);
                self.logs = LogPane::default();
                return Some(Effect::Refresh);
            }
            KeyCode::Char('x') => {
                let target = self.target()?;
                self.mode = Mode::Confirm(Effect::Stop(target));
            }
            KeyCode::Char('K') => {
                let target = self.target()?;
                self.mode = Mode::Confirm(Effect::Kill(target));
            }
            _ => {}
        }
        None
    }

    /// A key while the filter is typed: it applies as it is typed.
    fn filter_key(&mut self, key: KeyEvent) {
        match key.code {
            KeyCode::Esc => {
                self.filter.clear();
                self.mode = Mode::Table;
            }
            KeyCode::Enter => self.mode = Mode::Table,
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.filter.push(c);
            }
            _ => {}
        }
        self.reselect();
    }

    /// Sorts by `column` in its usual direction.
    fn sort_by(&mut self, column: Column) {
        self.sort = column;
        self.reversed = false;
        self.reselect();
    }

    /// The selected agent as the target of an action.
    fn target(&self) -> Option<Target> {
        self.selected().map(|agent| Target {
            id: agent.id.clone(),
            name: agent.name.clone(),
        })
    }

    /// Moves the selection by `rows` (clamped to the table).
    fn step(&mut self, rows: isize) {
        let count = self.visible().len();
        if count == 0 {
            return;
        }
        let at = self.table.selected().unwrap_or(0) as isize;
        let to = at.saturating_add(rows).clamp(0, count as isize - 1) as usize;
        self.select_row(to);
    }

    /// Selects the row at `index` of the visible agents.
    fn select_row(&mut self, index: usize) {
        let id = self.visible().get(index).map(|agent| agent.id.clone());
        self.table.select(id.as_ref().map(|_| index));
        self.selected = id;
    }

    /// Keeps the selection on the same agent after the rows changed, or on
    /// the same row when that agent is no longer shown.
    fn reselect(&mut self) {
        let visible = self.visible();
        if visible.is_empty() {
            self.table.select(None);
            return;
        }
        let index = self
            .selected
            .as_deref()
            .and_then(|id| visible.iter().position(|agent| agent.id == id))
            .unwrap_or_else(|| self.table.selected().unwrap_or(0).min(visible.len() - 1));
        self.select_row(index);
    }
}

/// True when the agent's name or command line contains `needle`, which is
/// lowercase.
fn matches(agent: &AgentView, needle: &str) -> bool {
    needle.is_empty()
        || agent.name.to_lowercase().contains(needle)
        || command_line(&agent.command).to_lowercase().contains(needle)
}

/// Whether the agent counts as running in the totals.
pub fn is_running(agent: &AgentView) -> bool {
    agent.state == State::Running
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::sample_agent;
    use ratatui::crossterm::event::KeyEventState;
    use wrangle_wire::TreeMetrics;

    fn agent(name: &str, cpu: f64, command: &str) -> AgentView {
        AgentView {
            id: format!("{name:0>32}"),
            name: name.into(),
            command: command.split(' ').map(String::from).collect(),
            tree: Some(TreeMetrics {
                cpu_percent: cpu,
                ..TreeMetrics::default()
            }),
            ..sample_agent()
        }
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn press(app: &mut App, keys: &str) -> Vec<Effect> {
        keys.chars()
            .filter_map(|c| app.on_key(key(KeyCode::Char(c))))
            .collect()
    }

    fn names(app: &App) -> Vec<String> {
        app.visible().iter().map(|a| a.name.clone()).collect()
    }

    fn app() -> App {
        let mut app = App::new(false, Duration::from_secs(1));
        app.apply(Update::Agents(Ok(vec![
            agent("build", 10.0, "make -j4"),
            agent("claude", 80.0, "claude -p fix"),
            agent("server", 30.0, "npm run dev"),
        ])));
        app
    }

    #[test]
    fn the_table_starts_sorted_by_cpu_with_the_first_row_selected() {
        let app = app();
        assert_eq!(app.link, Link::Up);
        assert_eq!(names(&app), ["claude", "server", "build"]);
        assert_eq!(app.selected().unwrap().name, "claude");
        assert_eq!(app.table.selected(), Some(0));
    }

    #[test]
    fn sort_keys_change_the_order_and_r_reverses_it() {
        let mut app = app();
        press(&mut app, "N");
        assert_eq!(names(&app), ["build", "claude", "server"]);
        press(&mut app, "r");
        assert_eq!(names(&app), ["server", "claude", "build"]);
        press(&mut app, "P");
        assert_eq!(app.sort, Column::Cpu);
        assert!(!app.reversed);
        assert_eq!(names(&app), ["claude", "server", "build"]);
        // `s` steps through the sortable columns and comes back round.
        let mut seen = vec![app.sort];
        for _ in 0..SORTABLE.len() {
            press(&mut app, "s");
            seen.push(app.sort);
        }
        assert_eq!(seen.first(), seen.last());
        assert_eq!(seen[1], Column::Memory);
    }

    #[test]
    fn the_selection_follows_its_agent_when_rows_move() {
        let mut app = app();
        press(&mut app, "j");
        assert_eq!(app.selected().unwrap().name, "server");
        press(&mut app, "N");
        assert_eq!(app.selected().unwrap().name, "server");
        assert_eq!(app.table.selected(), Some(2));
        // Clamped at both ends.
        app.on_key(key(KeyCode::Down));
        assert_eq!(app.table.selected(), Some(2));
        press(&mut app, "kkkk");
        assert_eq!(app.selected().unwrap().name, "build");
        app.on_key(key(KeyCode::End));
        assert_eq!(app.selected().unwrap().name, "server");

        // The selected agent leaves: the selection stays on its row.
        app.apply(Update::Agents(Ok(vec![
            agent("build", 10.0, "make"),
            agent("claude", 80.0, "claude"),
        ])));
        assert_eq!(app.selected().unwrap().name, "claude");
        app.apply(Update::Agents(Ok(vec![])));
        assert!(app.selected().is_none());
        assert_eq!(app.table.selected(), None);
        assert!(press(&mut app, "x").is_empty());
        assert_eq!(app.mode, Mode::Table);
    }

    #[test]
    fn the_filter_matches_names_and_commands_and_esc_clears_it() {
        let mut app = app();
        press(&mut app, "/");
        assert_eq!(app.mode, Mode::Filter);
        // Keys are text while the filter is typed: `q` does not quit.
        assert!(press(&mut app, "NPM").is_empty());
        assert_eq!(names(&app), ["server"]);
        assert_eq!(app.selected().unwrap().name, "server");
        app.on_key(key(KeyCode::Backspace));
        app.on_key(key(KeyCode::Backspace));
        app.on_key(key(KeyCode::Backspace));
        press(&mut app, "cl");
        assert_eq!(names(&app), ["claude"]);
        app.on_key(key(KeyCode::Enter));
        assert_eq!(app.mode, Mode::Table);
        assert_eq!(app.filter, "cl");
        assert_eq!(names(&app), ["claude"]);
        app.on_key(key(KeyCode::Esc));
        assert_eq!(app.filter, "");
        assert_eq!(names(&app).len(), 3);

        press(&mut app, "/zzz");
        assert!(names(&app).is_empty());
        app.on_key(key(KeyCode::Esc));
        assert_eq!(app.mode, Mode::Table);
        assert_eq!(names(&app).len(), 3);
    }

    #[test]
    fn stop_and_kill_wait_for_a_yes() {
        let mut app = app();
        assert!(press(&mut app, "x").is_empty());
        let claude = Target {
            id: format!("{:0>32}", "claude"),
            name: "claude".into(),
        };
        assert_eq!(app.mode, Mode::Confirm(Effect::Stop(claude.clone())));
        assert!(press(&mut app, "n").is_empty());
        assert_eq!(app.mode, Mode::Table);
        press(&mut app, "x");
        assert_eq!(press(&mut app, "y"), [Effect::Stop(claude.clone())]);
        press(&mut app, "K");
        // Any other key is a no, even q.
        assert!(press(&mut app, "q").is_empty());
        press(&mut app, "K");
        assert_eq!(press(&mut app, "Y"), [Effect::Kill(claude)]);
        assert_eq!(app.mode, Mode::Table);
    }

    #[test]
    fn enter_opens_the_log_pane_and_esc_closes_it() {
        let mut app = app();
        press(&mut app, "j");
        assert_eq!(app.on_key(key(KeyCode::Enter)), Some(Effect::Refresh));
        let id = format!("{:0>32}", "server");
        assert_eq!(app.logs_of(), Some(id.as_str()));
        // An answer for another agent's pane is dropped.
        app.apply(Update::Logs {
            id: "other".into(),
            lines: Ok(vec![]),
        });
        assert!(!app.logs.loaded);
        app.apply(Update::Logs {
            id: id.clone(),
            lines: Err("gone".into()),
        });
        assert!(app.logs.loaded);
        assert_eq!(app.logs.error.as_deref(), Some("gone"));
        app.on_key(key(KeyCode::Esc));
        assert_eq!(app.mode, Mode::Table);
        assert_eq!(app.logs_of(), None);
        assert_eq!(press(&mut app, "l"), [Effect::Refresh]);
        assert_eq!(press(&mut app, "q"), [Effect::Quit]);
    }

    #[test]
    fn q_and_ctrl_c_quit_and_releases_are_ignored() {
        let mut app = app();
        assert_eq!(press(&mut app, "q"), [Effect::Quit]);
        press(&mut app, "/");
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.on_key(ctrl_c), Some(Effect::Quit));
        assert_eq!(app.filter, "");
        let release = KeyEvent {
            kind: KeyEventKind::Release,
            state: KeyEventState::NONE,
            ..key(KeyCode::Char('j'))
        };
        assert_eq!(app.on_key(release), None);
        assert_eq!(app.filter, "");
    }

    #[test]
    fn a_failed_refresh_keeps_the_last_agents() {
        let mut app = app();
        app.apply(Update::Agents(Err("cannot connect".into())));
        assert_eq!(app.link, Link::Down("cannot connect".into()));
        assert_eq!(names(&app).len(), 3);
        app.apply(Update::Agents(Ok(vec![agent("new", 1.0, "x")])));
        assert_eq!(app.link, Link::Up);
        assert_eq!(names(&app), ["new"]);
    }
}
