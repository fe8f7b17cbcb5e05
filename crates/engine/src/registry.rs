//! The agents in memory, by id and by name, with a watch channel each so
//! that `stop` and `wait` can sleep until an agent ends.

use crate::error::EngineError;
use crate::model::{Agent, Assessment, Reported, Status};
use crate::probe::ProbeStatus;
use std::collections::HashMap;
use tokio::sync::watch;
use wrangle_wire::{ErrorCode, State};

/// A map keyed by agent id. Ids are made by the daemon, so the hash needs
/// no defence against chosen keys: a fast one (foldhash) in place of
/// SipHash, which was a tenth of an idle sampler's time at 10,000 agents,
/// looking each one up in several maps on every tick.
pub type IdMap<V> = HashMap<String, V, foldhash::fast::RandomState>;

struct Entry {
    agent: Agent,
    state: watch::Sender<State>,
}

/// What of an agent may change outside a transition, beside its status.
pub struct Findings<'a> {
    /// The agent's status, to check the findings against.
    pub status: &'a Status,
    /// What its health probe found.
    pub probe: &'a mut ProbeStatus,
    /// Its assessed health.
    pub health: &'a mut Assessment,
    /// Its last published report.
    pub reported: &'a mut Reported,
    /// What its adapter read.
    pub session: &'a mut crate::sessions::SessionFindings,
}

/// Every known agent.
#[derive(Default)]
pub struct Registry {
    agents: IdMap<Entry>,
    names: IdMap<String>,
    /// How many agents are queued: each end of a run looks whether one can
    /// start, and must not walk ten thousand agents to learn there is none.
    queued: usize,
    /// Agents added, replaced or removed so far (see [`Registry::changes`]).
    changes: u64,
}

impl Registry {
    /// Adds an agent.
    pub fn insert(&mut self, agent: Agent) {
        self.changes += 1;
        let id = agent.identity.id.clone();
        self.names.insert(agent.identity.name.clone(), id.clone());
        let (state, _) = watch::channel(agent.status.state);
        self.queued += usize::from(agent.status.state == State::Queued);
        if let Some(old) = self.agents.insert(id, Entry { agent, state }) {
            self.queued -= usize::from(old.agent.status.state == State::Queued);
        }
    }

    /// How many times an agent was added, replaced (its status changed)
    /// or removed: while this stays the same, no agent's status or
    /// identity changed (its findings may have).
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// How many agents are queued.
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Replaces an agent's record and tells its watchers.
    pub fn replace(&mut self, agent: Agent) {
        self.changes += 1;
        if let Some(entry) = self.agents.get_mut(&agent.identity.id) {
            self.queued -= usize::from(entry.agent.status.state == State::Queued);
            self.queued += usize::from(agent.status.state == State::Queued);
            entry.state.send_replace(agent.status.state);
            entry.agent = agent;
        }
    }

    /// Lets `change` edit what is found of the agent apart from its
    /// status (which only `Engine::transition` changes): its probe's
    /// findings, its assessed health, its last published report.
    pub fn update_findings(&mut self, id: &str, change: impl FnOnce(Findings<'_>)) {
        if let Some(entry) = self.agents.get_mut(id) {
            let agent = &mut entry.agent;
            change(Findings {
                status: &agent.status,
                probe: &mut agent.probe,
                health: &mut agent.health,
                reported: &mut agent.reported,
                session: &mut agent.session,
            });
        }
    }

    /// Forgets an agent; its watchers see the channel close.
    pub fn remove(&mut self, id: &str) -> Option<Agent> {
        self.changes += 1;
        let entry = self.agents.remove(id)?;
        self.queued -= usize::from(entry.agent.status.state == State::Queued);
        self.names.remove(&entry.agent.identity.name);
        Some(entry.agent)
    }

    /// The agent with this id.
    pub fn get(&self, id: &str) -> Result<&Agent, EngineError> {
        self.agents
            .get(id)
            .map(|entry| &entry.agent)
            .ok_or_else(|| EngineError::not_found(format!("no agent with id {id}")))
    }

    /// Every agent, in no order.
    pub fn agents(&self) -> impl Iterator<Item = &Agent> {
        self.agents.values().map(|entry| &entry.agent)
    }

    /// How many agents there are.
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// The id of the agent with this name, if any.
    pub fn id_of_name(&self, name: &str) -> Option<&str> {
        self.names.get(name).map(String::as_str)
    }

    /// A receiver that sees each state the agent enters.
    pub fn subscribe(&self, id: &str) -> Result<watch::Receiver<State>, EngineError> {
        self.agents
            .get(id)
            .map(|entry| entry.state.subscribe())
            .ok_or_else(|| EngineError::not_found(format!("no agent with id {id}")))
    }

    /// Finds an agent by exact id, exact name, or unique id prefix, as
    /// docker does; a miss suggests the closest name.
    pub fn resolve(&self, reference: &str) -> Result<String, EngineError> {
        if reference.is_empty() {
            return Err(EngineError::invalid("an agent reference is empty"));
        }
        if self.agents.contains_key(reference) {
            return Ok(reference.to_string());
        }
        if let Some(id) = self.names.get(reference) {
            return Ok(id.clone());
        }
        let matches: Vec<&Entry> = self
            .agents
            .iter()
            .filter(|(id, _)| id.starts_with(reference))
            .map(|(_, entry)| entry)
            .collect();
        match matches.as_slice() {
            [one] => Ok(one.agent.identity.id.clone()),
            [] => Err(EngineError::not_found(self.not_found_message(reference))),
            many => {
                let mut listed: Vec<String> = many
                    .iter()
                    .take(5)
                    .map(|e| format!("{} ({})", e.agent.identity.name, &e.agent.identity.id[..12]))
                    .collect();
                listed.sort();
                Err(EngineError::new(
                    ErrorCode::Ambiguous,
                    format!(
                        "{reference:?} matches {} agents: {}; use more of the id, or the name",
                        many.len(),
                        listed.join(", ")
                    ),
                ))
            }
        }
    }

    fn not_found_message(&self, reference: &str) -> String {
        let closest = self
            .names
            .keys()
            .map(|name| (strsim::levenshtein(name, reference), name))
            .filter(|(distance, _)| *distance <= 2)
            .min();
        match closest {
            Some((_, name)) => format!("no agent named {reference:?} (did you mean {name:?}?)"),
            None => format!("no agent named {reference:?} and no agent id starts with it"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AgentSpec, Identity, Run};
    use std::sync::Arc;

    fn agent(id: &str, name: &str) -> Agent {
        Agent {
            identity: Arc::new(Identity {
                id: id.into(),
                name: name.into(),
                spec: AgentSpec {
                    command: vec!["true".into()],
                    env: Default::default(),
                    base_env: None,
                    cwd: "/".into(),
                    stop_signal: 15,
                    stop_timeout_ms: 10_000,
                    restart: Default::default(),
                    group: None,
                    priority: 0,
                    labels: Default::default(),
                    health_check: None,
                    limits: Default::default(),
                    logs: Default::default(),
                    idle_timeout_ms: None,
                    session: Default::default(),
                },
                created_at: chrono::Utc::now(),
            }),
            status: Status {
                state: State::Running,
                reason: None,
                run: Run::default(),
                restart_at: None,
            },
            probe: Default::default(),
            health: Assessment::HEALTHY,
            reported: Default::default(),
            session: Default::default(),
        }
    }

    #[test]
    fn references_resolve_like_docker() {
        let mut registry = Registry::default();
        registry.insert(agent("abc123aaaaaaaaaaaaaaaaaaaaaaaaaa", "build"));
        registry.insert(agent("abd456aaaaaaaaaaaaaaaaaaaaaaaaaa", "test"));
        assert_eq!(
            registry.resolve("build").unwrap(),
            "abc123aaaaaaaaaaaaaaaaaaaaaaaaaa"
        );
        assert_eq!(
            registry.resolve("abd").unwrap(),
            "abd456aaaaaaaaaaaaaaaaaaaaaaaaaa"
        );
        let ambiguous = registry.resolve("ab").unwrap_err();
        assert_eq!(ambiguous.code, ErrorCode::Ambiguous);
        assert!(ambiguous.message.contains("build") && ambiguous.message.contains("test"));
        let missing = registry.resolve("buid").unwrap_err();
        assert_eq!(missing.code, ErrorCode::NotFound);
        assert!(
            missing.message.contains("did you mean \"build\""),
            "{}",
            missing.message
        );
        assert_eq!(
            registry.resolve("").unwrap_err().code,
            ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn watchers_see_changes_and_removal() {
        let mut registry = Registry::default();
        registry.insert(agent("a1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "one"));
        let mut watcher = registry
            .subscribe("a1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
            .unwrap();
        let mut stopped = agent("a1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "one");
        stopped.status.state = State::Stopped;
        registry.replace(stopped);
        assert!(watcher.has_changed().unwrap());
        assert_eq!(*watcher.borrow_and_update(), State::Stopped);
        registry.remove("a1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert!(watcher.has_changed().is_err());
        assert!(registry.id_of_name("one").is_none());
    }

    #[test]
    fn queued_agents_are_counted_through_every_change() {
        let mut registry = Registry::default();
        let queued = |id: &str, name: &str| {
            let mut agent = agent(id, name);
            agent.status.state = State::Queued;
            agent
        };
        registry.insert(queued("q1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "one"));
        registry.insert(queued("q2aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "two"));
        registry.insert(agent("r1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "three"));
        assert_eq!(registry.queued(), 2);
        registry.replace(agent("q1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "one"));
        assert_eq!(registry.queued(), 1);
        registry.replace(queued("r1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "three"));
        assert_eq!(registry.queued(), 2);
        registry.remove("q2aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        registry.insert(queued("r1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "three"));
        assert_eq!(registry.queued(), 1, "inserted again, counted once");
    }

    #[test]
    fn a_status_change_counts_and_a_finding_does_not() {
        let mut registry = Registry::default();
        let id = "c1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        registry.insert(agent(id, "one"));
        let after_insert = registry.changes();
        registry.update_findings(id, |findings| findings.reported.run = 7);
        assert_eq!(registry.changes(), after_insert);
        let mut stopped = agent(id, "one");
        stopped.status.state = State::Stopped;
        registry.replace(stopped);
        assert_eq!(registry.changes(), after_insert + 1);
        registry.remove(id);
        assert_eq!(registry.changes(), after_insert + 2);
    }
}
