//! `wrangle wait`: block until agents have ended and exit the way the last
//! one did, like a shell's `wait`.
//!
//! It follows the event stream from the agent's state as it read it: a
//! daemon that is killed or restarted meanwhile is started again and the
//! events resume where they left off, so the end is never missed.

use crate::args::WaitArgs;
use crate::client::Client;
use crate::follow::Events;
use crate::{output, routes};
use anyhow::{bail, Result};
use wrangle_wire::parse::parse_signal;
use wrangle_wire::{AgentView, EventKind, EventsQuery, State, StreamMessage};

/// Waits for each agent in turn. The exit code is the last agent's (see
/// [`exit_code`]); 1 if waiting for any of them failed (the error is
/// printed and the others are still waited for).
pub async fn wait(client: &Client, args: &WaitArgs) -> Result<u8> {
    let mut code = 0;
    let mut failed = false;
    for reference in &args.agents {
        match wait_one(client, reference).await {
            Ok(ended) => code = ended,
            Err(error) => {
                failed = true;
                output::print_error(&error);
            }
        }
    }
    Ok(if failed { 1 } else { code })
}

/// Waits until one agent has ended for good (a restart to come is no end)
/// and returns its exit code.
async fn wait_one(client: &Client, reference: &str) -> Result<u8> {
    let (agent, event_id) = client
        .get_with_event_id::<AgentView>(&routes::agent(reference))
        .await?;
    if agent.state.is_ended() {
        return Ok(exit_code(
            agent.state,
            agent.exit_code,
            agent.signal.as_deref(),
        ));
    }
    let query = EventsQuery {
        since: Some(event_id.to_string()),
        agent: Some(agent.id.clone()),
        kind: Some("agent.exited,agent.removed".into()),
        ..EventsQuery::default()
    };
    let mut events = Events::new(client.clone(), query);
    while let Some(message) = events.next().await? {
        match message.read()? {
            StreamMessage::Event(event) => match event.kind {
                EventKind::Exited {
                    state,
                    exit_code: code,
                    signal,
                    ..
                } => return Ok(exit_code(state, code, signal.as_deref())),
                EventKind::Removed { .. } => {
                    bail!("agent {reference} was removed while waiting for it")
                }
                _ => {}
            },
            // Events were pruned while we were away: the agent itself says
            // whether it has ended.
            StreamMessage::Notice(_) => {
                let agent: AgentView = client.get(&routes::agent(&agent.id)).await?;
                if agent.state.is_ended() {
                    return Ok(exit_code(
                        agent.state,
                        agent.exit_code,
                        agent.signal.as_deref(),
                    ));
                }
            }
        }
    }
    bail!("the daemon ended the event stream while waiting for agent {reference}")
}

/// How an ended agent maps to an exit code, as a shell would report its
/// command: the exit code when it exited, 128 + the signal's number when a
/// signal ended it, else 1 for `failed` (it never ran) and 0 otherwise.
fn exit_code(state: State, exit_code: Option<i32>, signal: Option<&str>) -> u8 {
    if let Some(code) = exit_code {
        // Exit codes are 0..=255 on Linux; the cast keeps the low byte as
        // a shell does for anything else.
        return code.rem_euclid(256) as u8;
    }
    if let Some(name) = signal {
        return match signal_number(name) {
            Some(number) => 128u8.saturating_add(u8::try_from(number).unwrap_or(u8::MAX)),
            None => 1,
        };
    }
    u8::from(state == State::Failed)
}

/// The number of a signal as the daemon names it: `SIGKILL`, or
/// `signal 64` for one without a name.
fn signal_number(name: &str) -> Option<i32> {
    parse_signal(name).ok().or_else(|| {
        name.strip_prefix("signal ")?
            .parse()
            .ok()
            .filter(|n| *n > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exit code of an agent ended this way.
    fn ended(state: State, code: Option<i32>, signal: Option<&str>) -> u8 {
        exit_code(state, code, signal)
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(ended(State::Completed, Some(0), None), 0);
        assert_eq!(ended(State::Failed, Some(3), None), 3);
        assert_eq!(ended(State::Failed, Some(255), None), 255);
        assert_eq!(ended(State::Stopped, None, Some("SIGTERM")), 143);
        assert_eq!(ended(State::Failed, None, Some("SIGKILL")), 137);
        assert_eq!(ended(State::Failed, None, Some("SIGSEGV")), 139);
        assert_eq!(ended(State::Failed, None, Some("signal 40")), 168);
        assert_eq!(ended(State::Failed, None, Some("mystery")), 1);
        // Never ran (exec error): failed without code or signal.
        assert_eq!(ended(State::Failed, None, None), 1);
        assert_eq!(ended(State::Stopped, None, None), 0);
        assert_eq!(ended(State::Completed, None, None), 0);
    }

    #[test]
    fn an_exit_code_wins_over_a_signal() {
        assert_eq!(ended(State::Failed, Some(2), Some("SIGTERM")), 2);
    }
}
