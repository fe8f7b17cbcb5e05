//! `wrangle stop`, `kill` and `rm`: commands that end or remove agents.

use crate::args::{KillArgs, RmArgs, StopArgs};
use crate::client::Client;
use crate::{output, routes};
use anyhow::Result;
use wrangle_wire::{AgentView, KillRequest, StopRequest, StopResult};

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
pub(super) fn stop_line(result: &StopResult) -> String {
    format!("{}: {}", result.agent.name, result.outcome)
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
