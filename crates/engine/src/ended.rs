//! Recording how a run ended, once its shim has exited (or was found gone
//! after a restart).

use crate::executor::{kill_leftovers, read_state};
use crate::outcome::{classify, Ending};
use crate::Engine;
use chrono::Utc;
use wrangle_shim::protocol::ShimState;
use wrangle_wire::State;

impl Engine {
    /// The shim of run `run` has exited: read its last state and record the
    /// end. Does nothing if that run's end is already recorded.
    pub(crate) fn run_ended(&self, id: &str, run: u32) {
        let dir = self.run_dir(id, run);
        let ending = match read_state(&dir) {
            Ok(state) => self.ending_of(&state),
            Err(error) => Ending {
                state: State::Failed,
                reason: format!("the shim ended and its state cannot be read: {error}"),
                exit_code: None,
                signal: None,
                ended_at: Some(Utc::now()),
            },
        };
        self.record_ending(id, run, ending);
    }

    /// Classifies a shim's last state; if the shim did not finish its
    /// cleanup (it was killed), kills what is left of the tree first.
    pub(crate) fn ending_of(&self, state: &ShimState) -> Ending {
        if state.finished_at.is_none() {
            kill_leftovers(state);
        }
        classify(state)
    }

    /// Records the end of run `run`, unless the agent has moved on or the
    /// end is recorded already.
    pub(crate) fn record_ending(&self, id: &str, run: u32, ending: Ending) {
        let result = self.transition(id, |status| {
            if status.run.number != run || status.state.is_ended() {
                return;
            }
            status.state = ending.state;
            status.reason = Some(ending.reason);
            status.run.exit_code = ending.exit_code;
            status.run.signal = ending.signal;
            status.run.ended_at = ending.ended_at.or(Some(Utc::now()));
        });
        if let Err(error) = result {
            tracing::error!("cannot record the end of agent {id} run {run}: {error}");
        }
    }
}
