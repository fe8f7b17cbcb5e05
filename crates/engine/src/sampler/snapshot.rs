//! The sampler's last word on every run it watches: what status calls
//! read, without sampling anything themselves.

use super::status_file::Report;
use crate::health::MainProcess;
use crate::registry::IdMap;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use wrangle_wire::{ProcessMetrics, State, TreeMetrics};

/// What the sampler saw of one run at its last tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// The run's number.
    pub run: u32,
    /// The main process: alive, a zombie, or not found.
    pub main: MainProcess,
    /// The main process's resource use, while it is found.
    pub process: Option<ProcessMetrics>,
    /// The whole tree's resource use.
    pub tree: Option<TreeMetrics>,
    /// The last valid report of the status file.
    pub report: Arc<Report>,
    /// Why the status file's current version was not taken.
    pub report_error: Option<Arc<str>>,
    /// When stdout or stderr last got output.
    pub last_output_at: Option<DateTime<Utc>>,
    /// When the status file was last written.
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// What the run's adapter has read of its output so far, when one
    /// reads it (a new value each time it read more).
    pub session: Option<Arc<crate::sessions::SessionRead>>,
}

/// Every watched run's observation, by agent id.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// When the last tick ended; absent before the first.
    pub sampled_at: Option<DateTime<Utc>>,
    runs: IdMap<Observation>,
}

impl Snapshot {
    /// What was seen of the agent's current run, while it runs and once
    /// it has been sampled. A run that has ended shows nothing, even before
    /// the next tick drops it.
    pub fn of(&self, agent: &crate::model::Agent) -> Option<&Observation> {
        if !matches!(agent.status.state, State::Running | State::Stopping) {
            return None;
        }
        self.observation(&agent.identity.id, agent.status.run.number)
    }

    /// What was seen of run `run` of the agent `agent_id`, if it was
    /// sampled (a run that has not been yet, or has ended, has nothing).
    pub fn observation(&self, agent_id: &str, run: u32) -> Option<&Observation> {
        self.runs.get(agent_id).filter(|seen| seen.run == run)
    }

    /// Takes a tick's news: the agents whose runs are no longer watched
    /// (`dropped`), and the observations that changed since the last tick
    /// (`changed`): a steady fleet of ten thousand is not copied on every
    /// tick. Entries are updated in place.
    pub fn publish<'a>(
        &mut self,
        sampled_at: DateTime<Utc>,
        dropped: impl Iterator<Item = &'a String>,
        changed: impl Iterator<Item = (&'a String, &'a Observation)>,
    ) {
        self.sampled_at = Some(sampled_at);
        for id in dropped {
            self.runs.remove(id.as_str());
        }
        for (id, observation) in changed {
            match self.runs.get_mut(id.as_str()) {
                Some(entry) => entry.clone_from(observation),
                None => {
                    self.runs.insert(id.clone(), observation.clone());
                }
            }
        }
    }
}
