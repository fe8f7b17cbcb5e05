//! `wrangle wait`: block until agents have ended and exit the way the last
//! one did, like a shell's `wait`.

use crate::args::WaitArgs;
use crate::client::Client;
use crate::{output, routes};
use anyhow::Result;
use wrangle_wire::parse::parse_signal;
use wrangle_wire::{AgentView, State};

/// Waits for each agent in turn. The exit code is the last agent's (see
/// [`exit_code`]); 1 if waiting for any of them failed (the error is
/// printed and the others are still waited for).
pub async fn wait(client: &Client, args: &WaitArgs) -> Result<u8> {
    let mut code = 0;
    let mut failed = false;
    for reference in &args.agents {
        match client.get::<AgentView>(&routes::wait(reference)).await {
            Ok(agent) => code = exit_code(&agent),
            Err(error) => {
                failed = true;
                output::print_error(&error);
            }
        }
    }
    Ok(if failed { 1 } else { code })
}

/// How an ended agent maps to an exit code, as a shell would report its
/// command: the exit code when it exited, 128 + the signal's number when a
/// signal ended it, else 1 for `failed` (it never ran) and 0 otherwise.
fn exit_code(agent: &AgentView) -> u8 {
    if let Some(code) = agent.exit_code {
        // Exit codes are 0..=255 on Linux; the cast keeps the low byte as
        // a shell does for anything else.
        return code.rem_euclid(256) as u8;
    }
    if let Some(name) = &agent.signal {
        return match signal_number(name) {
            Some(number) => 128u8.saturating_add(u8::try_from(number).unwrap_or(u8::MAX)),
            None => 1,
        };
    }
    u8::from(agent.state == State::Failed)
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
    use crate::commands::sample_agent;

    fn ended(state: State, exit_code: Option<i32>, signal: Option<&str>) -> AgentView {
        AgentView {
            state,
            exit_code,
            signal: signal.map(String::from),
            ..sample_agent()
        }
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(&ended(State::Completed, Some(0), None)), 0);
        assert_eq!(exit_code(&ended(State::Failed, Some(3), None)), 3);
        assert_eq!(exit_code(&ended(State::Failed, Some(255), None)), 255);
        assert_eq!(
            exit_code(&ended(State::Stopped, None, Some("SIGTERM"))),
            143
        );
        assert_eq!(exit_code(&ended(State::Failed, None, Some("SIGKILL"))), 137);
        assert_eq!(exit_code(&ended(State::Failed, None, Some("SIGSEGV"))), 139);
        assert_eq!(
            exit_code(&ended(State::Failed, None, Some("signal 40"))),
            168
        );
        assert_eq!(exit_code(&ended(State::Failed, None, Some("mystery"))), 1);
        // Never ran (exec error): failed without code or signal.
        assert_eq!(exit_code(&ended(State::Failed, None, None)), 1);
        assert_eq!(exit_code(&ended(State::Stopped, None, None)), 0);
        assert_eq!(exit_code(&ended(State::Completed, None, None)), 0);
    }

    #[test]
    fn an_exit_code_wins_over_a_signal() {
        assert_eq!(
            exit_code(&ended(State::Failed, Some(2), Some("SIGTERM"))),
            2
        );
    }
}
