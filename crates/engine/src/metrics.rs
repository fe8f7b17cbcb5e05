//! What `/metrics` shows, as plain data: the fleet's counts (the same as
//! `summary`), what the daemon counted since it started, and each agent
//! from the sampler's last tick. Reading it never samples anything.

use crate::events::Counters;
use crate::Engine;
use chrono::{DateTime, Utc};
use wrangle_wire::{Summary, TreeMetrics};

/// The fleet for a scrape.
#[derive(Debug, Clone)]
pub struct FleetMetrics {
    /// Counts by state and health, as `summary` gives them.
    pub summary: Summary,
    /// Counted since the daemon started.
    pub counters: Counters,
    /// The agents with series of their own: running ones first, then by
    /// age.
    pub agents: Vec<AgentMetrics>,
    /// Agents left out past the most asked for.
    pub omitted: usize,
    /// When the daemon started.
    pub started_at: DateTime<Utc>,
    /// Event streams open now.
    pub subscribers: usize,
}

/// One agent for a scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentMetrics {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its group, if any.
    pub group: Option<String>,
    /// Runs after its first.
    pub restarts: u32,
    /// When its current run's exec was confirmed.
    pub started_at: Option<DateTime<Utc>>,
    /// When it last wrote output.
    pub last_output_at: Option<DateTime<Utc>>,
    /// Its tree at the sampler's last tick, while it runs.
    pub tree: Option<TreeMetrics>,
    /// What its sessions spent over all its runs.
    pub spent: wrangle_store::Ledgered,
}

impl Engine {
    /// The fleet as `/metrics` shows it, with at most `max_agents` agents
    /// of their own.
    pub fn fleet_metrics(&self, max_agents: usize) -> FleetMetrics {
        let summary = self.summary();
        let registry = self.registry();
        let mut agents: Vec<_> = registry.agents().collect();
        agents.sort_by(|a, b| {
            (!a.status.is_live(), a.identity.created_at, &a.identity.id).cmp(&(
                !b.status.is_live(),
                b.identity.created_at,
                &b.identity.id,
            ))
        });
        let omitted = agents.len().saturating_sub(max_agents);
        let observations = self.inner.lock_observations();
        let spending = self.inner.lock_spending();
        let agents = agents
            .into_iter()
            .take(max_agents)
            .map(|agent| {
                let observed = observations.of(agent);
                AgentMetrics {
                    id: agent.identity.id.clone(),
                    name: agent.identity.name.clone(),
                    group: agent.identity.spec.group.clone(),
                    restarts: agent.status.run.number.saturating_sub(1),
                    started_at: agent.status.run.started_at,
                    last_output_at: observed.and_then(|seen| seen.last_output_at),
                    tree: observed.and_then(|seen| seen.tree.clone()),
                    spent: spending.of_agent(&agent.identity.id),
                }
            })
            .collect();
        FleetMetrics {
            summary,
            counters: self.inner.events.counters(),
            agents,
            omitted,
            started_at: self.inner.started_at,
            subscribers: self.inner.events.subscribers(),
        }
    }
}
