//! `DELETE /v1/agents/{agent}`: forget an ended agent and delete its logs.

use crate::error::EngineError;
use crate::Engine;
use wrangle_wire::AgentView;

impl Engine {
    /// Forgets an agent and deletes its run directories; with `force`, an
    /// agent that has not ended is stopped first.
    pub async fn remove(&self, reference: &str, force: bool) -> Result<AgentView, EngineError> {
        let id = self.registry().resolve(reference)?;
        let agent = self.snapshot(&id)?;
        if !agent.status.state.is_ended() {
            if !force {
                return Err(EngineError::precondition(format!(
                    "agent {} is {}; stop it first, or remove it with --force",
                    agent.identity.name, agent.status.state
                )));
            }
            self.stop_one(&id, None).await?;
        }
        let view = self.current_view(&id)?;
        {
            let mut registry = self.registry();
            self.store().delete_agent(&id)?;
            registry.remove(&id);
        }
        let dir = self.runs_dir(&id);
        if let Err(error) = std::fs::remove_dir_all(&dir) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("agent {id} removed, but {} remains: {error}", dir.display());
            }
        }
        Ok(view)
    }
}
