//! `POST /v1/agents/{agent}/kill`: send a signal.

use crate::error::EngineError;
use crate::Engine;
use wrangle_shim::protocol::ControlCommand;
use wrangle_wire::{parse, AgentView, KillRequest, State};

impl Engine {
    /// Sends a signal: SIGKILL (the default) to the whole tree, and waits
    /// for the end; any other signal to the agent's main process.
    pub async fn kill(
        &self,
        reference: &str,
        request: KillRequest,
    ) -> Result<AgentView, EngineError> {
        let signal = match &request.signal {
            Some(signal) => parse::parse_signal(signal).map_err(EngineError::invalid)?,
            None => libc::SIGKILL,
        };
        let id = self.registry().resolve(reference)?;
        let mut states = self.subscribe(&id)?;
        let _ = states.wait_for(|state| *state != State::Starting).await;
        let agent = self.snapshot(&id)?;
        if !matches!(agent.status.state, State::Running | State::Stopping) {
            return Err(EngineError::precondition(format!(
                "agent {} is not running (it is {})",
                agent.identity.name, agent.status.state
            )));
        }
        self.send_to_shim(&agent.status.run.dir, ControlCommand::Kill { signal })?;
        if signal == libc::SIGKILL {
            let _ = states.wait_for(|state| state.is_ended()).await;
        }
        self.current_view(&id)
    }
}
