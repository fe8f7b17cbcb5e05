//! Groups of agents: how many of them may run at once, and what they may
//! spend together.

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
    /// Most US dollars its agents may spend together; none means no
    /// budget.
    #[serde(default)]
    pub budget_usd: Option<f64>,
    /// What its agents have spent together, removed ones included.
    #[serde(default)]
    pub spent_usd: f64,
}

/// `PUT /v1/groups/{group}`: set or remove a group's limit or budget; a
/// key left out leaves what it sets as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetGroup {
    /// Most agents of the group that may run at once (at least 1); null
    /// removes the limit.
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<u32>)]
    pub max_running: Option<Option<u32>>,
    /// Most US dollars its agents may spend together (above 0); when they
    /// have, its running agents are stopped with cause `budget`. Null
    /// removes the budget.
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<f64>)]
    pub budget_usd: Option<Option<f64>>,
}

/// A key that is there, null or not: `Some(None)` for null, so that null
/// (remove) is told apart from a key left out (`None`, keep).
fn given<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
