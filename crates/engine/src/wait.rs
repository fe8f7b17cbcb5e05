//! `GET /v1/agents/{agent}/wait`: block until an agent has ended.

use crate::error::EngineError;
use crate::Engine;
use wrangle_wire::AgentView;

impl Engine {
    /// Waits until the agent has ended and returns it.
    pub async fn wait(&self, reference: &str) -> Result<AgentView, EngineError> {
        let id = self.registry().resolve(reference)?;
        let mut states = self.subscribe(&id)?;
        if states.wait_for(|state| state.is_ended()).await.is_err() {
            return Err(EngineError::not_found(format!(
                "agent {reference} was removed while waiting for it"
            )));
        }
        self.current_view(&id)
    }
}
