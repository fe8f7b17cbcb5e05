//! `POST /v1/stop`: the staged stop of whole process trees, waited for.

use crate::error::EngineError;
use crate::Engine;
use std::collections::BTreeSet;
use std::io;
use std::time::Duration;
use tokio::task::JoinSet;
use wrangle_shim::protocol::ControlCommand;
use wrangle_wire::{parse, Cause, State, StopRequest, StopResult};

impl Engine {
    /// Stops the named agents (or all that have not ended) for `cause` (a
    /// user's stop, the daemon's shutdown) and waits until each has ended.
    /// Every reference is checked before anything is stopped: one bad
    /// name stops nothing.
    pub async fn stop(
        &self,
        request: StopRequest,
        cause: Cause,
    ) -> Result<Vec<StopResult>, EngineError> {
        let timeout = request
            .timeout
            .as_deref()
            .map(parse::parse_duration)
            .transpose()
            .map_err(EngineError::invalid)?;
        let ids: Vec<String> = if request.all {
            self.registry()
                .agents()
                .filter(|agent| !agent.status.state.is_ended())
                .map(|agent| agent.identity.id.clone())
                .collect()
        } else if request.agents.is_empty() {
            return Err(EngineError::invalid(
                "name the agents to stop, or ask for all",
            ));
        } else {
            let registry = self.registry();
            let mut seen = BTreeSet::new();
            let mut ids = Vec::new();
            for reference in &request.agents {
                let id = registry.resolve(reference)?;
                if seen.insert(id.clone()) {
                    ids.push(id);
                }
            }
            ids
        };
        // Those running are `stopping` in one write, each stop below then
        // finds it done.
        self.transition_each(&ids, |status| {
            if status.state == State::Running {
                status.state = State::Stopping;
                status.reason = Some(stop_reason(cause).into());
                status.run.cause = Some(cause);
            }
        })?;
        // A task of its own: a client that goes away does not leave the
        // agents `stopping` with no stop sent.
        let engine = self.clone();
        tokio::spawn(async move {
            let mut stops = JoinSet::new();
            for (position, id) in ids.into_iter().enumerate() {
                let engine = engine.clone();
                stops.spawn(async move { (position, engine.stop_one(&id, timeout, cause).await) });
            }
            let mut results = Vec::new();
            while let Some(joined) = stops.join_next().await {
                let (position, result) =
                    joined.map_err(|e| EngineError::internal(e.to_string()))?;
                results.push((position, result?));
            }
            results.sort_by_key(|(position, _)| *position);
            Ok(results.into_iter().map(|(_, result)| result).collect())
        })
        .await
        .map_err(|error| EngineError::internal(format!("the stops failed: {error}")))?
    }

    /// Stops one agent for `cause` with its stop signal and `timeout` (or
    /// its own stop timeout), and waits until it has ended.
    pub(crate) async fn stop_one(
        &self,
        id: &str,
        timeout: Option<Duration>,
        cause: Cause,
    ) -> Result<StopResult, EngineError> {
        let mut states = self.subscribe(id)?;
        let agent = self.snapshot(id)?;
        if agent.status.state.is_ended() {
            return self.stop_result(id, true);
        }
        if agent.status.state == State::Stopping {
            // Marked by a stop of many (or an earlier stop): the shim is
            // told at once, without another look.
            return self.send_stop(id, &agent, timeout, &mut states).await;
        }
        // Waiting to restart or queued: nothing runs, so the stop is only a
        // record, and the pending restart finds the agent no longer in
        // backoff (a queued one is never admitted).
        self.transition(id, |status| match status.state {
            State::Backoff => {
                status.state = State::Stopped;
                status.reason = Some("stopped while waiting to restart".into());
                status.restart_at = None;
                status.run.cause = Some(cause);
            }
            State::Queued => {
                status.state = State::Stopped;
                status.reason = Some("stopped while queued".into());
                status.run.cause = Some(cause);
            }
            _ => {}
        })?;
        if self.snapshot(id)?.status.state.is_ended() {
            return self.stop_result(id, false);
        }
        // A start under way is let finish: the shim can only stop what it
        // has exec'd.
        let _ = states.wait_for(|state| *state != State::Starting).await;
        let agent = self.transition(id, |status| {
            if status.state == State::Running {
                status.state = State::Stopping;
                status.reason = Some(stop_reason(cause).into());
                status.run.cause = Some(cause);
            }
        })?;
        if agent.status.state.is_ended() {
            return self.stop_result(id, true);
        }
        self.send_stop(id, &agent, timeout, &mut states).await
    }

    /// Tells the shim of `agent` (being stopped) to stop its tree, and
    /// waits until the agent has ended.
    async fn send_stop(
        &self,
        id: &str,
        agent: &crate::model::Agent,
        timeout: Option<Duration>,
        states: &mut tokio::sync::watch::Receiver<State>,
    ) -> Result<StopResult, EngineError> {
        let command = ControlCommand::Stop {
            signal: agent.identity.spec.stop_signal,
            timeout_ms: timeout
                .unwrap_or(agent.identity.spec.stop_timeout())
                .as_millis() as u64,
        };
        self.send_to_shim(&agent.status.run.dir, command)?;
        let _ = states.wait_for(|state| state.is_ended()).await;
        self.stop_result(id, false)
    }

    /// Sends a command to a run's shim; a shim that is already gone is not
    /// an error (its end is being recorded): no FIFO, no reader on it
    /// (`ENXIO`), or a reader that closed it between the open and the write
    /// (`EPIPE`, the shim on its way out).
    pub(crate) fn send_to_shim(
        &self,
        dir: &std::path::Path,
        command: ControlCommand,
    ) -> Result<(), EngineError> {
        match self.inner.shims.send(dir, command) {
            Ok(()) => Ok(()),
            Err(error)
                if error.kind() == io::ErrorKind::NotFound
                    || matches!(error.raw_os_error(), Some(libc::ENXIO | libc::EPIPE)) =>
            {
                Ok(())
            }
            Err(error) => Err(EngineError::internal(format!(
                "cannot reach the shim of {}: {error}",
                dir.display()
            ))),
        }
    }

    fn stop_result(&self, id: &str, already_ended: bool) -> Result<StopResult, EngineError> {
        let agent = self.current_view(id)?;
        let reason = agent
            .reason
            .clone()
            .unwrap_or_else(|| agent.state.to_string());
        let outcome = if already_ended {
            format!("already {} ({reason})", agent.state)
        } else {
            reason
        };
        Ok(StopResult {
            agent,
            already_ended,
            outcome,
        })
    }
}

/// The reason of `stopping`, in words.
fn stop_reason(cause: Cause) -> &'static str {
    match cause {
        Cause::Shutdown => "stop requested: the daemon shuts down",
        Cause::Restart => "stop requested to restart",
        Cause::Remove => "stop requested to remove it",
        _ => "stop requested",
    }
}
