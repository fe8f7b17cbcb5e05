//! Recording that runs are `running`, once their shims have confirmed the
//! exec, as many at once as were confirmed meanwhile: a fleet started
//! together is recorded in a few transactions, not one per agent (each of
//! which wrote its own pages of the agents, runs and events tables).

use crate::error::EngineError;
use crate::model::Status;
use crate::{Engine, Inner};
use std::collections::HashMap;
use std::sync::Weak;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use wrangle_shim::protocol::ShimState;
use wrangle_wire::State;

/// Most starts recorded in one transaction.
const MAX_BATCH: usize = 256;

/// A run whose shim confirmed the exec, to be recorded `running`.
pub(crate) struct Confirmed {
    id: String,
    state: Box<ShimState>,
    recorded: oneshot::Sender<Result<(), EngineError>>,
}

/// Where confirmed starts are handed to be recorded.
pub(crate) type Confirmations = UnboundedSender<Confirmed>;

/// Starts the task that records confirmed starts in batches.
pub(crate) fn start_recording(engine: Weak<Inner>, confirmed: UnboundedReceiver<Confirmed>) {
    crate::batched::record_in_batches(engine, confirmed, MAX_BATCH, Engine::record_confirmed);
}

impl Engine {
    /// Records the run of agent `id` as running, as its shim's report
    /// `state` says, together with the others confirmed meanwhile; returns
    /// once it is on record.
    pub(crate) async fn record_running(
        &self,
        id: &str,
        state: Box<ShimState>,
    ) -> Result<(), EngineError> {
        let (recorded, answer) = oneshot::channel();
        let confirmed = Confirmed {
            id: id.to_string(),
            state,
            recorded,
        };
        if let Err(unsent) = self.inner.confirmations.send(confirmed) {
            // The recording task is gone (the daemon is stopping).
            let confirmed = unsent.0;
            return self
                .transition(id, |status| now_running(status, &confirmed.state))
                .map(drop);
        }
        answer.await.unwrap_or_else(|_| {
            Err(EngineError::internal(
                "the start was not recorded: the daemon is stopping",
            ))
        })
    }

    /// Records a batch of confirmed starts in one transaction, or each on
    /// its own if the batch cannot be (so that one start's trouble is its
    /// own), and tells each waiting start how it went.
    fn record_confirmed(&self, batch: Vec<Confirmed>) {
        let ids: Vec<String> = batch.iter().map(|c| c.id.clone()).collect();
        let states: HashMap<&str, &ShimState> =
            batch.iter().map(|c| (c.id.as_str(), &*c.state)).collect();
        let together = self.transition_by(&ids, |id, status| {
            if let Some(state) = states.get(id) {
                now_running(status, state);
            }
        });
        drop(states);
        match together {
            Ok(()) => {
                for confirmed in batch {
                    let _ = confirmed.recorded.send(Ok(()));
                }
            }
            Err(error) if batch.len() == 1 => {
                for confirmed in batch {
                    let _ = confirmed.recorded.send(Err(error.clone()));
                }
            }
            Err(error) => {
                tracing::warn!(
                    "cannot record {} starts together ({error}); recording each on its own",
                    batch.len()
                );
                for confirmed in batch {
                    let result = self
                        .transition(&confirmed.id, |status| {
                            now_running(status, &confirmed.state)
                        })
                        .map(drop);
                    let _ = confirmed.recorded.send(result);
                }
            }
        }
    }
}

/// `status` once its run's shim reported `state`: `running` if it was
/// still `starting` (a stop may have come meanwhile), with the run's
/// processes, cgroup, start time and limits.
fn now_running(status: &mut Status, state: &ShimState) {
    if status.state == State::Starting {
        status.state = State::Running;
        status.reason = None;
    }
    status.run.shim = Some(state.shim.into());
    status.run.process = state.agent.map(Into::into);
    status.run.cgroup = state.cgroup.clone();
    status.run.started_at = state.started_at;
    status.run.limits = state.limits.clone();
}
