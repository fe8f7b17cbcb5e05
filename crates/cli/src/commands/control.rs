//! `wrangle stop`, `restart`, `kill` and `rm`: commands that end, start
//! again or remove agents.

use crate::args::{KillArgs, RestartArgs, RmArgs, StopArgs};
use crate::client::Client;
use crate::{output, routes};
use anyhow::Result;
use wrangle_wire::{AgentView, KillRequest, State, StopRequest, StopResult};

/// Stops the agents with the staged stop and waits for them (the daemon
/// answers when all have ended); prints how each one ended.
pub async fn stop(client: &Client, args: &StopArgs) -> Result<u8> {
    let request = StopRequest {
        agents: args.agents.clone(),
        all: args.all,
        timeout: args.timeout.clone(),
    };
    let results: Vec<StopResult> = client.post(&routes::stop(), &request).await?;
    let text: String = results.iter().map(|r| stop_line(r) + "\n").collect();
    output::print(&text)?;
    Ok(0)
}

/// `worker-1: stopped by SIGTERM in 0.02s`.
pub(crate) fn stop_line(result: &StopResult) -> String {
    format!("{}: {}", result.agent.name, result.outcome)
}

/// Restarts the agents one by one, printing each with its new run; an
/// error is printed and the others are still restarted.
pub async fn restart(client: &Client, args: &RestartArgs) -> Result<u8> {
    let mut failed = false;
    for reference in &args.agents {
        let answer: Result<AgentView> = client.post(&routes::restart(reference), &()).await;
        match answer {
            Ok(agent) if agent.state == State::Failed && agent.started_at.is_none() => {
                failed = true;
                output::print_error(&anyhow::anyhow!(
                    "{}: cannot start: {}",
                    agent.name,
                    agent.reason.unwrap_or_default()
                ));
            }
            Ok(agent) => output::print_line(&format!(
                "{}: run {} {}",
                agent.name, agent.run, agent.state
            ))?,
            Err(error) => {
                failed = true;
                output::print_error(&error);
            }
        }
    }
    Ok(u8::from(failed))
}

/// Sends the signal and prints the agent's name.
pub async fn kill(client: &Client, args: &KillArgs) -> Result<u8> {
    let request = KillRequest {
        signal: args.signal.clone(),
    };
    let agent: AgentView = client.post(&routes::kill(&args.agent), &request).await?;
    output::print_line(&agent.name)?;
    Ok(0)
}

/// Removes the agents one by one, printing each name; an error is printed
/// and the others are still removed. Exit code 1 if any failed.
pub async fn rm(client: &Client, args: &RmArgs) -> Result<u8> {
    let mut failed = false;
    for reference in &args.agents {
        match client
            .delete::<AgentView>(&routes::remove(reference, args.force))
            .await
        {
            Ok(agent) => output::print_line(&agent.name)?,
            Err(error) => {
                failed = true;
                output::print_error(&error);
            }
        }
    }
    Ok(u8::from(failed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::sample_agent;

    #[test]
    fn a_stop_line_is_the_name_and_the_outcome() {
        let result = StopResult {
            agent: sample_agent(),
            already_ended: false,
            outcome: "stopped by SIGTERM in 0.02s".into(),
        };
        assert_eq!(stop_line(&result), "worker-1: stopped by SIGTERM in 0.02s");
    }
}
