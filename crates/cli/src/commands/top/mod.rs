//! `wrangle top`: the agents live in the terminal, like htop.
//!
//! The parts: [`columns`] (what a column shows, how it sorts, which fit),
//! [`app`] (the state and what keys do to it), [`view`] (drawing it), and
//! [`screen`] (taking the terminal and giving it back). This module is the
//! event loop, the only part that does I/O: keys from the terminal,
//! refreshes on a timer, requests to the daemon in tasks of their own so a
//! stop that takes its grace period never freezes the screen.

mod app;
mod columns;
mod screen;
mod view;

use super::{control, logs};
use crate::args::TopArgs;
use crate::client::Client;
use crate::follow::Events;
use crate::routes;
use anyhow::{bail, Context, Result};
use app::{App, Effect, Target, Update};
use ratatui::crossterm::event::{self, Event};
use screen::Screen;
use std::io::{self, IsTerminal};
use std::path::Path;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use wrangle_wire::{AgentView, EventsQuery, KillRequest, StopRequest, StopResult};

/// How often the input thread looks whether `top` has ended.
const INPUT_POLL: Duration = Duration::from_millis(200);

/// Runs the screen until the user quits. A daemon is started first if
/// none runs, as for any command, but not again if it goes away meanwhile:
/// the screen says so and keeps asking.
pub async fn top(home: &Path, args: &TopArgs) -> Result<u8> {
    // Checked before a daemon is started for nothing.
    if !io::stdout().is_terminal() {
        bail!("top needs a terminal; `wrangle ps` lists agents as text");
    }
    let client = Client::connect(home).await?.without_autostart();
    let mut app = App::new(args.all, args.interval);
    let mut screen = Screen::enter()?;
    let result = run(&mut screen, &mut app, &client).await;
    // The terminal is given back before an error is printed.
    drop(screen);
    result.map(|()| 0)
}

/// Requests under way, so that a slow daemon never gets a second one of a
/// kind before it answered the first.
#[derive(Debug, Default)]
struct InFlight {
    agents: bool,
    /// Something changed while the list was being fetched: fetch it again
    /// once it is in.
    agents_again: bool,
    logs: bool,
}

/// The event loop: draw, then wait for a key, a tick, an answer or a
/// signal to end.
async fn run(screen: &mut Screen, app: &mut App, client: &Client) -> Result<()> {
    let mut events = read_events();
    let mut ticker = tokio::time::interval(app.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch for SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch for SIGHUP")?;
    let mut tasks: JoinSet<Update> = JoinSet::new();
    let mut in_flight = InFlight::default();
    let mut changes = follow_changes(client.clone());
    loop {
        screen.draw(|frame| view::draw(frame, app))?;
        tokio::select! {
            event = events.recv() => {
                let event = event
                    .context("the terminal's input has closed")?
                    .context("cannot read the terminal's input")?;
                // Anything else (a resize) needs only the redraw.
                let Event::Key(key) = event else { continue };
                match app.on_key(key) {
                    None => {}
                    Some(Effect::Quit) => return Ok(()),
                    Some(Effect::Refresh) => ticker.reset_immediately(),
                    Some(Effect::Stop(target)) => {
                        app.notice = Some(Ok(format!("stopping {}...", target.name)));
                        tasks.spawn(stop(client.clone(), target));
                    }
                    Some(Effect::Kill(target)) => {
                        app.notice = Some(Ok(format!("killing {}...", target.name)));
                        tasks.spawn(kill(client.clone(), target));
                    }
                }
            }
            Some(()) = changes.recv() => {
                if in_flight.agents {
                    in_flight.agents_again = true;
                } else {
                    in_flight.agents = true;
                    tasks.spawn(agents(client.clone(), app.all));
                }
            }
            _ = ticker.tick() => {
                if !in_flight.agents {
                    in_flight.agents = true;
                    tasks.spawn(agents(client.clone(), app.all));
                }
                if let Some(id) = app.logs_of().filter(|_| !in_flight.logs) {
                    in_flight.logs = true;
                    tasks.spawn(log_tail(client.clone(), id.to_owned()));
                }
            }
            Some(joined) = tasks.join_next() => {
                // A task that panicked: the panic hook has given the
                // terminal back already; end with the error.
                let update = joined.context("a request to the daemon failed")?;
                match &update {
                    Update::Agents(_) if std::mem::take(&mut in_flight.agents_again) => {
                        tasks.spawn(agents(client.clone(), app.all));
                    }
                    Update::Agents(_) => in_flight.agents = false,
                    Update::Logs { .. } => in_flight.logs = false,
                    // Show what the stop or kill did at once.
                    Update::Done(_) => ticker.reset_immediately(),
                }
                app.apply(update);
            }
            _ = terminate.recv() => return Ok(()),
            _ = hangup.recv() => return Ok(()),
        }
    }
}

/// Reads the terminal's events on a thread of its own (crossterm's reads
/// block) and hands them over; the thread ends with the loop, or after
/// handing over an error.
fn read_events() -> mpsc::UnboundedReceiver<io::Result<Event>> {
    let (sender, receiver) = mpsc::unbounded_channel();
    std::thread::spawn(move || loop {
        let event = match event::poll(INPUT_POLL) {
            Ok(false) if sender.is_closed() => return,
            Ok(false) => continue,
            Ok(true) => event::read(),
            Err(error) => Err(error),
        };
        let failed = event.is_err();
        if sender.send(event).is_err() || failed {
            return;
        }
    });
    receiver
}

/// Follows the daemon's events about agents and says when any came (a
/// burst of them is one message): the table is then fetched again. The
/// stream resumes by itself when the daemon comes back.
fn follow_changes(client: Client) -> mpsc::Receiver<()> {
    let (sender, receiver) = mpsc::channel(1);
    tokio::spawn(async move {
        let query = EventsQuery {
            kind: Some("agent.".into()),
            ..EventsQuery::default()
        };
        let mut events = Events::new(client, query);
        // An error here is the daemon's refusal, which will not change:
        // the timer still refreshes the table.
        while let Ok(Some(_)) = events.next().await {
            match sender.try_send(()) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {}
                Err(mpsc::error::TrySendError::Closed(())) => return,
            }
        }
    });
    receiver
}

/// `GET /v1/agents`.
async fn agents(client: Client, all: bool) -> Update {
    let answer = client.get::<Vec<AgentView>>(&routes::list(all)).await;
    Update::Agents(answer.map_err(|error| format!("{error:#}")))
}

/// The log pane's lines.
async fn log_tail(client: Client, id: String) -> Update {
    let lines = logs::tail(&client, &id, view::LOG_TAIL)
        .await
        .map_err(|error| format!("{error:#}"));
    Update::Logs { id, lines }
}

/// `POST /v1/stop` for one agent: answers when it has ended.
async fn stop(client: Client, target: Target) -> Update {
    let request = StopRequest {
        agents: vec![target.id],
        ..StopRequest::default()
    };
    let answer = client
        .post::<_, Vec<StopResult>>(&routes::stop(), &request)
        .await;
    Update::Done(match answer {
        Ok(results) => Ok(results
            .iter()
            .map(control::stop_line)
            .collect::<Vec<_>>()
            .join("; ")),
        Err(error) => Err(format!("cannot stop {}: {error:#}", target.name)),
    })
}

/// `POST /v1/agents/{agent}/kill` with the default, SIGKILL to the tree.
async fn kill(client: Client, target: Target) -> Update {
    let answer = client
        .post::<_, AgentView>(&routes::kill(&target.id), &KillRequest::default())
        .await;
    Update::Done(match answer {
        Ok(agent) => Ok(format!("{}: killed with SIGKILL", agent.name)),
        Err(error) => Err(format!("cannot kill {}: {error:#}", target.name)),
    })
}
