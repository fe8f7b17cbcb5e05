//! Concurrency groups: how many of their agents may run at once.

use serde::{Deserialize, Serialize};

/// `GET /v1/groups`: one group, with or without a limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupView {
    /// The group's name.
    pub name: String,
    /// Most of its agents that may run at once; none means no limit.
    pub max_running: Option<u32>,
    /// Its agents that hold a slot now (starting, running, stopping, or
    /// waiting to restart).
    pub running: u32,
    /// Its agents waiting for a slot.
    pub queued: u32,
    /// All its agents, ended ones included.
    pub agents: u32,
}

/// `PUT /v1/groups/{group}`: set or remove a group's limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetGroup {
    /// Most agents of the group that may run at once (at least 1); null
    /// removes the limit.
    pub max_running: Option<u32>,
}
