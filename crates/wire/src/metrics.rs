//! What the sampler saw of a run's processes, and the fleet at a glance.

use crate::state::{Health, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Resource use of one process (the agent's main process), at the last tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProcessMetrics {
    /// CPU over the last tick; 100 is one core.
    pub cpu_percent: f64,
    /// Resident memory in bytes.
    pub rss_bytes: u64,
    /// Threads.
    pub threads: u32,
    /// Open file descriptors (0 where they cannot be read).
    pub fds: u32,
}

/// Resource use summed over a run's whole process tree, at the last tick.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TreeMetrics {
    /// CPU over the last tick, summed over the tree; 100 is one core.
    pub cpu_percent: f64,
    /// CPU time the tree has used since the run started, in seconds
    /// (processes that ended included, where they could be counted).
    #[serde(default)]
    pub cpu_seconds: f64,
    /// Resident memory in bytes, summed over the tree.
    pub rss_bytes: u64,
    /// Threads in the tree.
    pub threads: u32,
    /// Open file descriptors in the tree.
    pub fds: u32,
    /// Processes in the tree, the main process included.
    pub processes: u32,
    /// Zombies in the tree (ended, not yet reaped).
    pub zombies: u32,
}

/// `GET /v1/summary`: the fleet at a glance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Summary {
    /// Agents known (ended ones included).
    pub agents: u32,
    /// Agents per state; every state is present, zero or not.
    pub by_state: BTreeMap<State, u32>,
    /// Agents per health, of those not ended; every health is present.
    pub by_health: BTreeMap<Health, u32>,
    /// CPU of every running tree together; 100 is one core.
    pub cpu_percent: f64,
    /// Resident memory of every running tree together, in bytes.
    pub rss_bytes: u64,
    /// Processes in every running tree together.
    pub processes: u32,
    /// The agents using the most CPU, most first (at most 5).
    pub top_cpu: Vec<SummaryEntry>,
    /// The agents using the most memory, most first (at most 5).
    pub top_memory: Vec<SummaryEntry>,
    /// When the sampler last ran; absent before its first tick.
    pub sampled_at: Option<DateTime<Utc>>,
    /// What agents' sessions have spent today (UTC), in USD, removed
    /// agents included.
    #[serde(default)]
    pub spent_today_usd: f64,
    /// What they have spent in all, in USD.
    #[serde(default)]
    pub spent_usd: f64,
    /// The agents that cost the most (their runs together), most first
    /// (at most 5).
    #[serde(default)]
    pub top_cost: Vec<CostEntry>,
}

/// One agent in the summary's list of the costliest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CostEntry {
    /// The agent's id.
    pub id: String,
    /// The agent's name.
    pub name: String,
    /// What its runs cost together, in USD.
    pub cost_usd: f64,
}

/// One agent in a top list of the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SummaryEntry {
    /// The agent's id.
    pub id: String,
    /// The agent's name.
    pub name: String,
    /// Tree CPU; 100 is one core.
    pub cpu_percent: f64,
    /// Tree resident memory in bytes.
    pub rss_bytes: u64,
}
