//! Drawing `top`: a pure function of the [`App`] and the frame's size.
//!
//! ```text
//! wrangle top  3 of 4 running  CPU 85.0%  MEM 1.4G  6 procs
//! sort: cpu, largest first   every 1s
//!   NAME                  STATE     HEALTH      CPU%    MEM     COST  PROG  UPTIME
//! > claude-fix            running   healthy    80.0%   1.2G  $0.4210   40%  1h20m
//! ...
//! j/k move  s,P,M,$ sort  r reverse  / filter  Enter logs  x stop  K kill  q quit
//! ```

use super::app::{is_running, App, Effect, Link, LogPane, Mode, Target};
use super::columns::{layout, usage, Column, GAP, MARK};
use crate::format::{bytes, cpu_percent, truncate};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{HighlightSpacing, Paragraph, Row, Table, Wrap};
use ratatui::Frame;
use wrangle_wire::{AgentView, Health, LogStream, State};

/// Lines of output the log pane asks for: more than a tall terminal shows,
/// so that long lines wrapped over several rows still fill it.
pub const LOG_TAIL: usize = 200;

/// The keys, as the footer lists them over the table.
const TABLE_KEYS: &str =
    "j/k move  s,P,M,$ sort  r reverse  / filter  Enter logs  x stop  K kill  q quit";

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &mut App) {
    // Why the daemon does not answer gets two rows: the socket's path
    // alone can fill most of one.
    let status_rows = if matches!(app.link, Link::Down(_)) {
        2
    } else {
        1
    };
    let [title, status, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(status_rows),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(title_line(app)), title);
    frame.render_widget(
        Paragraph::new(status_line(app)).wrap(Wrap { trim: false }),
        status,
    );
    match &app.mode {
        Mode::Logs(target) => {
            let target = target.clone();
            draw_logs(frame, body, &target, &app.logs);
        }
        _ => draw_table(frame, body, app),
    }
    frame.render_widget(Paragraph::new(footer_line(app)), footer);
}

/// The fleet's totals: every agent listed, whatever the filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Agents listed.
    pub agents: usize,
    /// Of them, those running.
    pub running: usize,
    /// CPU and memory summed over the agents that were sampled; `None`
    /// when none was.
    pub usage: Option<(f64, u64)>,
    /// Processes and zombies summed over the sampled trees; `None` when
    /// none was.
    pub processes: Option<(u32, u32)>,
}

impl Totals {
    /// The totals of these agents.
    pub fn of(agents: &[AgentView]) -> Totals {
        let mut totals = Totals {
            agents: agents.len(),
            running: agents.iter().filter(|a| is_running(a)).count(),
            ..Totals::default()
        };
        for agent in agents {
            if let Some((cpu, rss)) = usage(agent) {
                let (total_cpu, total_rss) = totals.usage.get_or_insert((0.0, 0));
                *total_cpu += cpu;
                *total_rss += rss;
            }
            if let Some(tree) = &agent.tree {
                let (processes, zombies) = totals.processes.get_or_insert((0, 0));
                *processes += tree.processes;
                *zombies += tree.zombies;
            }
        }
        totals
    }
}

/// `wrangle top  2 of 3 running  CPU 12.5%  MEM 1.4G  5 procs, 1 zombie`.
fn title_line(app: &App) -> Line<'static> {
    let totals = Totals::of(app.agents());
    let (cpu, memory) = match totals.usage {
        Some((cpu, rss)) => (cpu_percent(cpu), bytes(rss)),
        None => ("-".into(), "-".into()),
    };
    let processes = match totals.processes {
        Some((processes, _)) => processes.to_string(),
        None => "-".into(),
    };
    let mut spans = vec![
        Span::from("wrangle top").bold(),
        Span::from(format!(
            "  {} of {} running  CPU {cpu}  MEM {memory}  {processes} procs",
            totals.running, totals.agents
        )),
    ];
    if let Some((_, zombies @ 1..)) = totals.processes {
        let plural = if zombies == 1 { "" } else { "s" };
        spans.push(Span::from(format!(", {zombies} zombie{plural}")).red());
    }
    Line::from(spans)
}

/// Whether the daemon answers, how the table is sorted and filtered, and
/// the outcome of the last stop or kill.
fn status_line(app: &App) -> Line<'static> {
    match &app.link {
        Link::Down(error) => {
            let every = wrangle_wire::parse::format_seconds(app.interval);
            return Line::from(format!(
                "daemon unreachable, retrying every {every}: {error}"
            ))
            .white()
            .on_red();
        }
        Link::Connecting => return Line::from("connecting to the daemon...").yellow(),
        Link::Up => {}
    }
    let direction = if app.descending() {
        "largest first"
    } else {
        "smallest first"
    };
    let direction = match app.sort {
        Column::Name | Column::State | Column::Health => {
            if app.descending() {
                "reversed"
            } else {
                "a-z"
            }
        }
        _ => direction,
    };
    let mut spans = vec![Span::from(format!(
        "sort: {}, {direction}",
        app.sort.label()
    ))];
    if !app.filter.is_empty() {
        spans.push(Span::from("   filter: "));
        spans.push(Span::from(app.filter.clone()).bold());
    }
    if app.all {
        spans.push(Span::from("   ended ones too"));
    }
    match &app.notice {
        Some(Ok(text)) => spans.push(Span::from(format!("   {text}")).green()),
        Some(Err(text)) => spans.push(Span::from(format!("   {text}")).red()),
        None => {}
    }
    Line::from(spans)
}

/// The key help, the filter being typed, or the question before a stop.
fn footer_line(app: &App) -> Line<'static> {
    match &app.mode {
        Mode::Table => Line::from(TABLE_KEYS).reversed(),
        Mode::Filter => Line::from(vec![
            Span::from("filter: "),
            Span::from(format!("{}_", app.filter)).bold(),
            Span::from("   Enter keep, Esc clear").dark_gray(),
        ]),
        Mode::Confirm(effect) => {
            let question = match effect {
                Effect::Stop(Target { name, .. }) => format!("Stop {name}? (y/n)"),
                Effect::Kill(Target { name, .. }) => {
                    format!("Kill {name} (SIGKILL to its whole tree)? (y/n)")
                }
                Effect::Quit | Effect::Refresh => String::new(),
            };
            Line::from(question).black().on_yellow()
        }
        Mode::Logs(_) => Line::from("Esc back  q quit").reversed(),
    }
}

/// The table of agents, or a line saying why it is empty.
fn draw_table(frame: &mut Frame, area: Rect, app: &mut App) {
    let columns = layout(area.width);
    let stale = matches!(app.link, Link::Down(_));
    let visible = app.visible();
    if visible.is_empty() {
        let text = if app.agents().is_empty() {
            match (&app.link, app.all) {
                (Link::Up, false) => {
                    "no agent is running (wrangle run starts one; -a shows ended ones)"
                }
                (Link::Up, true) => "no agents (wrangle run starts one)",
                _ => "",
            }
        } else {
            "no agent matches the filter (Esc clears it)"
        };
        frame.render_widget(Paragraph::new(text).dark_gray(), area);
        return;
    }
    let rows: Vec<Row> = visible
        .iter()
        .map(|agent| row(agent, &columns, stale))
        .collect();
    let header = Row::new(columns.iter().map(|&(column, width)| {
        let style = if column == app.sort {
            Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        };
        aligned(column, column.title(), width).style(style)
    }));
    let table = Table::new(
        rows,
        columns.iter().map(|&(_, width)| Constraint::Length(width)),
    )
    .header(header)
    .column_spacing(GAP)
    .highlight_symbol(MARK)
    .highlight_spacing(HighlightSpacing::Always)
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    frame.render_stateful_widget(table, area, &mut app.table);
}

/// One agent's row: each cell cut to its column's width (`…` marks a cut),
/// coloured by what it says; grey when the daemon stopped answering.
pub fn row(agent: &AgentView, columns: &[(Column, u16)], stale: bool) -> Row<'static> {
    let cells = columns.iter().map(|&(column, width)| {
        let text = column.cell(agent);
        let line = aligned(column, &text, width);
        let style = if stale {
            Style::new().fg(Color::DarkGray)
        } else {
            match column {
                Column::State => state_style(agent.state),
                Column::Health => health_style(agent.health),
                _ => Style::new(),
            }
        };
        line.style(style)
    });
    Row::new(cells)
}

/// The cell's text cut to `width`, right-aligned for numbers.
fn aligned(column: Column, text: &str, width: u16) -> Line<'static> {
    let line = Line::from(truncate(text, usize::from(width)).into_owned());
    if column.is_numeric() {
        line.right_aligned()
    } else {
        line
    }
}

/// Green while it runs, yellow on the way, red when it failed.
fn state_style(state: State) -> Style {
    let color = match state {
        State::Running => Color::Green,
        State::Queued | State::Starting | State::Stopping | State::Backoff => Color::Yellow,
        State::Failed => Color::Red,
        State::Completed | State::Stopped => Color::DarkGray,
    };
    Style::new().fg(color)
}

/// Green when healthy, yellow when it waits for a person, red when
/// something is wrong.
fn health_style(health: Health) -> Style {
    match health {
        Health::Healthy => Style::new().fg(Color::Green),
        Health::Waiting => Style::new().fg(Color::Yellow).bold(),
        Health::Unhealthy | Health::Hung | Health::Zombie => Style::new().fg(Color::Red).bold(),
        Health::Unknown => Style::new().fg(Color::DarkGray),
    }
}

/// The log pane: a title row, then the newest lines that fit, long ones
/// wrapped, stderr in red.
fn draw_logs(frame: &mut Frame, area: Rect, target: &Target, pane: &LogPane) {
    let [title, body] = Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
    frame.render_widget(
        Paragraph::new(format!(
            "logs of {}: last {LOG_TAIL} lines, stdout and stderr",
            target.name
        ))
        .bold()
        .reversed(),
        title,
    );
    let lines = if let Some(error) = &pane.error {
        vec![Line::from(format!("cannot read the logs: {error}")).red()]
    } else if !pane.loaded {
        vec![Line::from("loading...").dark_gray()]
    } else if pane.lines.is_empty() {
        vec![Line::from("no output yet").dark_gray()]
    } else {
        wrapped(pane, usize::from(body.width), usize::from(body.height))
    };
    frame.render_widget(Paragraph::new(lines), body);
}

/// The last `height` screen rows of the log lines, each line cut into rows
/// of `width` characters.
pub fn wrapped(pane: &LogPane, width: usize, height: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let mut rows: Vec<Line<'static>> = Vec::new();
    for line in pane.lines.iter().rev() {
        let text = printable(&line.text);
        let chars: Vec<char> = text.chars().collect();
        let pieces: Vec<String> = if chars.is_empty() {
            vec![String::new()]
        } else {
            chars.chunks(width).map(|c| c.iter().collect()).collect()
        };
        for piece in pieces.into_iter().rev() {
            let row = Line::from(piece);
            rows.push(match line.stream {
                LogStream::Stdout => row,
                LogStream::Stderr => row.red(),
            });
            if rows.len() == height {
                rows.reverse();
                return rows;
            }
        }
    }
    rows.reverse();
    rows
}

/// A log line as text the terminal shows as it is: colour and cursor
/// escapes dropped, tabs as spaces, other control characters as `?`.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                // CSI: ESC [ parameters... final byte in @..~.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\t' => out.push_str("    "),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::sample_agent;
    use crate::commands::top::app::Update;
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use ratatui::Terminal;
    use std::time::Duration;
    use wrangle_wire::{LogLine, TreeMetrics};

    fn agent(name: &str, state: State, tree: Option<TreeMetrics>) -> AgentView {
        AgentView {
            id: format!("{name:0>32}"),
            name: name.into(),
            state,
            tree,
            ..sample_agent()
        }
    }

    fn sampled(cpu: f64, rss: u64, processes: u32, zombies: u32) -> Option<TreeMetrics> {
        Some(TreeMetrics {
            cpu_percent: cpu,
            rss_bytes: rss,
            processes,
            zombies,
            ..TreeMetrics::default()
        })
    }

    /// The screen as lines of text, trailing spaces cut.
    fn screen(app: &mut App, width: u16, height: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw(frame, app)).unwrap();
        let buffer = terminal.backend().buffer();
        (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
                    .trim_end()
                    .to_owned()
            })
            .collect()
    }

    fn key(app: &mut App, code: KeyCode) {
        app.on_key(KeyEvent::new(code, KeyModifiers::NONE));
    }

    fn fleet() -> App {
        let mut app = App::new(false, Duration::from_secs(1));
        app.apply(Update::Agents(Ok(vec![
            agent(
                "claude-fix-the-flaky-tests",
                State::Running,
                sampled(80.0, 1 << 30, 3, 1),
            ),
            agent("idle", State::Running, sampled(0.0, 5 << 20, 1, 0)),
            agent("queued-one", State::Queued, None),
        ])));
        app
    }

    #[test]
    fn an_80x24_screen_has_totals_a_row_per_agent_and_the_keys() {
        let mut app = fleet();
        let lines = screen(&mut app, 80, 24);
        assert_eq!(
            lines[0],
            "wrangle top  2 of 3 running  CPU 80.0%  MEM 1.0G  4 procs, 1 zombie"
        );
        assert_eq!(lines[1], "sort: cpu, largest first");
        assert_eq!(
            lines[2],
            "  NAME                  STATE     HEALTH      CPU%    MEM     COST  PROG  UPTIME"
        );
        assert_eq!(
            lines[3],
            "> claude-fix-the-flaky… running   healthy    80.0%   1.0G        -     -   5m12s"
        );
        assert_eq!(
            lines[4],
            "  idle                  running   healthy     0.0%   5.0M        -     -   5m12s"
        );
        assert_eq!(
            lines[5],
            "  queued-one            queued    healthy        -      -        -     -   5m12s"
        );
        assert!(lines[6..23].iter().all(String::is_empty));
        assert_eq!(lines[23], TABLE_KEYS);
        assert!(TABLE_KEYS.chars().count() <= 80);
    }

    #[test]
    fn unsampled_agents_show_dashes_in_the_totals() {
        let mut app = App::new(true, Duration::from_millis(500));
        app.apply(Update::Agents(Ok(vec![agent(
            "done",
            State::Completed,
            None,
        )])));
        let lines = screen(&mut app, 80, 6);
        assert_eq!(
            lines[0],
            "wrangle top  0 of 1 running  CPU -  MEM -  - procs"
        );
        assert_eq!(lines[1], "sort: cpu, largest first   ended ones too");
        assert!(lines[3].starts_with("> done "), "{}", lines[3]);
        assert!(lines[3].contains("completed"));
    }

    #[test]
    fn narrow_and_wide_screens_show_fewer_or_more_columns() {
        let mut app = fleet();
        let narrow = screen(&mut app, 50, 10);
        assert!(narrow.iter().all(|l| l.chars().count() <= 50));
        assert!(narrow[2].contains("CPU%") && narrow[2].contains("MEM"));
        assert!(!narrow[2].contains("UPTIME"));
        let wide = screen(&mut app, 140, 10);
        assert!(wide[2].contains("PID") && wide[2].contains("COMMAND"));
        assert!(wide[3].contains("claude-fix-the-flaky-tests"));
        assert!(wide[3].ends_with("4242 sleep 100"), "{}", wide[3]);
        // A resize is just the next draw at the new size.
        assert_eq!(screen(&mut app, 80, 24)[2].chars().count(), 80);
    }

    #[test]
    fn the_filter_and_the_questions_show_in_the_footer() {
        let mut app = fleet();
        key(&mut app, KeyCode::Char('/'));
        key(&mut app, KeyCode::Char('i'));
        key(&mut app, KeyCode::Char('d'));
        let lines = screen(&mut app, 80, 8);
        assert_eq!(lines[7], "filter: id_   Enter keep, Esc clear");
        assert_eq!(lines[1], "sort: cpu, largest first   filter: id");
        assert!(lines[3].starts_with("> idle"));
        assert!(lines[4].is_empty());

        key(&mut app, KeyCode::Enter);
        key(&mut app, KeyCode::Char('x'));
        assert_eq!(screen(&mut app, 80, 8)[7], "Stop idle? (y/n)");
        key(&mut app, KeyCode::Char('n'));
        key(&mut app, KeyCode::Char('K'));
        assert_eq!(
            screen(&mut app, 80, 8)[7],
            "Kill idle (SIGKILL to its whole tree)? (y/n)"
        );
        key(&mut app, KeyCode::Char('n'));
        key(&mut app, KeyCode::Char('/'));
        key(&mut app, KeyCode::Char('z'));
        key(&mut app, KeyCode::Enter);
        assert_eq!(
            screen(&mut app, 80, 8)[2],
            "no agent matches the filter (Esc clears it)"
        );
    }

    #[test]
    fn a_lost_daemon_is_said_and_the_last_agents_stay() {
        let mut app = fleet();
        let error = "cannot connect to the daemon at /tmp/a-long-home/wrangle.sock: \
                     No such file or directory (os error 2)";
        app.apply(Update::Agents(Err(error.into())));
        let lines = screen(&mut app, 80, 8);
        assert_eq!(
            lines[1..3],
            [
                "daemon unreachable, retrying every 1s: cannot connect to the daemon at",
                "/tmp/a-long-home/wrangle.sock: No such file or directory (os error 2)"
            ]
        );
        assert!(lines[4].contains("claude-fix"));
        app.apply(Update::Done(Ok("idle: stopped by SIGTERM in 0.02s".into())));
        app.apply(Update::Agents(Ok(vec![])));
        assert_eq!(
            screen(&mut app, 80, 8)[1],
            "sort: cpu, largest first   idle: stopped by SIGTERM in 0.02s"
        );

        let mut app = App::new(false, Duration::from_secs(2));
        assert_eq!(screen(&mut app, 80, 4)[1], "connecting to the daemon...");
        app.apply(Update::Agents(Ok(vec![])));
        assert!(screen(&mut app, 80, 4)[2].starts_with("no agent is running"));
    }

    #[test]
    fn the_log_pane_shows_the_newest_lines_wrapped() {
        let mut app = fleet();
        key(&mut app, KeyCode::Enter);
        let lines = screen(&mut app, 20, 8);
        assert!(lines[2].starts_with("logs of claude-fix"));
        assert_eq!(lines[3], "loading...");
        assert_eq!(lines[7], "Esc back  q quit");

        let line = |stream, text: &str| LogLine {
            stream,
            time: chrono::Utc::now(),
            text: text.into(),
            complete: true,
        };
        app.apply(Update::Logs {
            id: format!("{:0>32}", "claude-fix-the-flaky-tests"),
            lines: Ok(vec![
                line(LogStream::Stdout, "old line"),
                line(LogStream::Stdout, "line 1"),
                line(LogStream::Stderr, "\u{1b}[31merror\u{1b}[0m\tat x"),
                line(LogStream::Stdout, "a line longer than twenty"),
            ]),
        });
        let lines = screen(&mut app, 20, 8);
        assert_eq!(
            lines[3..7],
            ["line 1", "error    at x", "a line longer than t", "wenty"]
        );
        key(&mut app, KeyCode::Esc);
        assert!(screen(&mut app, 80, 8)[2].starts_with("  NAME"));
    }

    #[test]
    fn escapes_and_control_characters_do_not_reach_the_terminal() {
        assert_eq!(printable("plain"), "plain");
        assert_eq!(printable("\u{1b}[1;32mok\u{1b}[0m"), "ok");
        assert_eq!(printable("a\tb\rc\u{7}"), "a    b?c?");
    }

    #[test]
    fn totals_add_up_sampled_agents_only() {
        let agents = [
            agent("a", State::Running, sampled(10.0, 100, 2, 0)),
            agent("b", State::Stopping, sampled(5.5, 50, 3, 2)),
            agent("c", State::Running, None),
        ];
        assert_eq!(
            Totals::of(&agents),
            Totals {
                agents: 3,
                running: 2,
                usage: Some((15.5, 150)),
                processes: Some((5, 2)),
            }
        );
        assert_eq!(Totals::of(&[]), Totals::default());
    }
}
