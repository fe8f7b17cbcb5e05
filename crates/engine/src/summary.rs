//! `GET /v1/summary`: the fleet at a glance, from the registry, the
//! sampler's last tick and the cost ledger.

use crate::Engine;
use chrono::Utc;
use std::cmp::Ordering;
use wrangle_wire::metrics::CostEntry;
use wrangle_wire::{Health, State, Summary, SummaryEntry};

/// Longest top list.
const TOP: usize = 5;

impl Engine {
    /// Counts by state and health, what the running trees use together,
    /// and the agents that use the most.
    pub fn summary(&self) -> Summary {
        let registry = self.registry();
        let observations = self.inner.lock_observations();
        let mut summary = Summary {
            agents: registry.len() as u32,
            by_state: State::ALL.into_iter().map(|state| (state, 0)).collect(),
            by_health: Health::ALL.into_iter().map(|health| (health, 0)).collect(),
            sampled_at: observations.sampled_at,
            ..Summary::default()
        };
        let mut using = Vec::new();
        for agent in registry.agents() {
            *summary.by_state.entry(agent.status.state).or_default() += 1;
            if agent.status.state.is_ended() {
                continue;
            }
            let observed = observations.of(agent);
            let (health, _) = agent.current_health();
            *summary.by_health.entry(health).or_default() += 1;
            let Some(tree) = observed.and_then(|seen| seen.tree.as_ref()) else {
                continue;
            };
            summary.cpu_percent += tree.cpu_percent;
            summary.rss_bytes += tree.rss_bytes;
            summary.processes += tree.processes;
            using.push(SummaryEntry {
                id: agent.identity.id.clone(),
                name: agent.identity.name.clone(),
                cpu_percent: tree.cpu_percent,
                rss_bytes: tree.rss_bytes,
            });
        }
        summary.top_cpu = top(&using, |entry| entry.cpu_percent);
        summary.top_memory = top(&using, |entry| entry.rss_bytes as f64);
        summary.top_cost = self.costliest(&registry);
        drop(observations);
        drop(registry);
        let midnight = Utc::now()
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map_or_else(Utc::now, |midnight| midnight.and_utc());
        (summary.spent_today_usd, summary.spent_usd) = self.spent_since(midnight);
        summary
    }

    /// The (at most) [`TOP`] agents whose runs cost the most together.
    fn costliest(&self, registry: &crate::registry::Registry) -> Vec<CostEntry> {
        let spending = self.inner.lock_spending();
        let mut costs: Vec<CostEntry> = registry
            .agents()
            .map(|agent| CostEntry {
                id: agent.identity.id.clone(),
                name: agent.identity.name.clone(),
                cost_usd: spending.of_agent(&agent.identity.id).cost_usd,
            })
            .filter(|entry| entry.cost_usd > 0.0)
            .collect();
        costs.sort_by(|a, b| b.cost_usd.total_cmp(&a.cost_usd).then(a.name.cmp(&b.name)));
        costs.truncate(TOP);
        costs
    }
}

/// The (at most) [`TOP`] entries with the highest non-zero `measure`,
/// highest first; ties by name.
fn top(entries: &[SummaryEntry], measure: impl Fn(&SummaryEntry) -> f64) -> Vec<SummaryEntry> {
    let mut ranked: Vec<&SummaryEntry> = entries.iter().filter(|e| measure(e) > 0.0).collect();
    ranked.sort_by(|a, b| {
        measure(b)
            .partial_cmp(&measure(a))
            .unwrap_or(Ordering::Equal)
            .then_with(|| a.name.cmp(&b.name))
    });
    ranked.into_iter().take(TOP).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, cpu_percent: f64, rss_bytes: u64) -> SummaryEntry {
        SummaryEntry {
            id: format!("id-{name}"),
            name: name.into(),
            cpu_percent,
            rss_bytes,
        }
    }

    #[test]
    fn top_lists_rank_the_most_first_and_leave_out_idle_ones() {
        let entries: Vec<SummaryEntry> = [
            entry("a", 0.0, 10),
            entry("b", 50.0, 30),
            entry("c", 150.0, 20),
            entry("d", 50.0, 0),
            entry("e", 1.0, 60),
            entry("f", 2.0, 50),
            entry("g", 3.0, 40),
        ]
        .into();
        let names =
            |list: Vec<SummaryEntry>| -> Vec<String> { list.into_iter().map(|e| e.name).collect() };
        assert_eq!(
            names(top(&entries, |e| e.cpu_percent)),
            ["c", "b", "d", "g", "f"]
        );
        assert_eq!(
            names(top(&entries, |e| e.rss_bytes as f64)),
            ["e", "f", "g", "b", "c"]
        );
        assert!(top(&[entry("idle", 0.0, 0)], |e| e.cpu_percent).is_empty());
    }
}
