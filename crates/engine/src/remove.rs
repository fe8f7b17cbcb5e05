//! `DELETE /v1/agents/{agent}`: forget an ended agent and delete its logs.

use crate::error::EngineError;
use crate::events::Draft;
use crate::Engine;
use chrono::Utc;
use wrangle_wire::{AgentView, Cause, EventKind};

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
            self.stop_one(&id, None, Cause::Remove).await?;
        }
        let view = self.current_view(&id)?;
        {
            let mut registry = self.registry();
            let agent = registry.get(&id)?;
            let removed = Draft::about(
                agent,
                EventKind::Removed {
                    state: agent.status.state,
                },
                Utc::now(),
            );
            self.inner
                .write_with_events(vec![removed], |store, events| {
                    store.delete_agent(&id, events)
                })?;
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
