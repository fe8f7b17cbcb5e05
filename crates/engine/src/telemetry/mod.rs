//! The agents' own telemetry: the OpenTelemetry the coding-agent CLIs
//! export when asked, which carries each model call's tokens (and, for
//! Claude Code, its cost) as it happens, where stdout gives them only at
//! the end or not at all.
//!
//! For each run of a CLI it knows, wrangle sets the CLI's OTel settings
//! ([`plan`]): its loopback endpoint (the API receives there, see
//! `wrangle-api`'s `otlp`), the run's token ([`Credentials`]) as the
//! `authorization` header, and resource attributes naming the agent and
//! run. Records come back decoded as [`Record`]s; those of model calls
//! ([`calls`]) are counted once each into the run's [`RunTelemetry`],
//! stored and added to the ledger in one transaction.

pub mod calls;
mod credentials;
pub(crate) mod intake;
mod plan;
#[cfg(test)]
mod props;
mod receive;
pub mod tools;

pub use credentials::Credentials;
pub use plan::{plan, Forward, Plan};

use crate::adapters::CallFigures;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashSet};
use tools::ToolActivity;
use wrangle_store::TelemetryCall;
use wrangle_wire::session::RetryView;

/// One log record of an agent's telemetry, as the receiver decoded it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// What tells it from every other record of its run: a hash of the
    /// record as sent, the same when an exporter sends it again.
    pub key: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Its name (`claude_code.api_request`, `codex.sse_event`, ...): its
    /// `event.name` where that is a full name, else its body.
    pub name: String,
    /// Its attributes.
    pub attributes: BTreeMap<String, AttributeValue>,
}

/// The value of an attribute, of the kinds the CLIs send.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    /// A string.
    Text(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl AttributeValue {
    /// As a count: an integer, or a string of digits (some exporters
    /// send numbers as text).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            AttributeValue::Int(value) => u64::try_from(*value).ok(),
            AttributeValue::Text(text) => text.trim().parse().ok(),
            AttributeValue::Float(value) if value.fract() == 0.0 && *value >= 0.0 => {
                Some(*value as u64)
            }
            _ => None,
        }
    }

    /// As a float.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AttributeValue::Float(value) => Some(*value),
            AttributeValue::Int(value) => Some(*value as f64),
            AttributeValue::Text(text) => text.trim().parse().ok(),
            AttributeValue::Bool(_) => None,
        }
    }

    /// As text, when it is a string.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            AttributeValue::Text(text) => Some(text),
            _ => None,
        }
    }
}

/// What a run's telemetry is and has said.
#[derive(Debug, Clone, PartialEq)]
pub struct RunTelemetry {
    /// What wrangle set for it.
    pub plan: Plan,
    /// The model calls counted.
    pub calls: CallFigures,
    /// Keys of the calls counted (see [`key_id`]), so that none counts
    /// twice; numbers, not strings, since a delivery clones the set.
    seen: HashSet<u64>,
    /// When the last record came.
    pub last_at: Option<DateTime<Utc>>,
    /// A model call being retried, as the telemetry says (Codex's retries
    /// are silent on stdout).
    pub retrying: Option<RetryView>,
    /// When the last retry ended (its attempt went through): the silence
    /// it explained counts from then.
    pub retry_ended_at: Option<DateTime<Utc>>,
    /// What it said of the agent's tools (not stored: a daemon that
    /// restarts learns them again from the records that follow).
    pub tools: ToolActivity,
}

impl RunTelemetry {
    /// A run's telemetry set up by `plan`, with the calls already stored
    /// of it (a daemon that restarts goes on from them).
    pub fn new(plan: Plan, stored: &[TelemetryCall]) -> RunTelemetry {
        let mut telemetry = RunTelemetry {
            plan,
            calls: CallFigures::default(),
            seen: HashSet::new(),
            last_at: None,
            retrying: None,
            retry_ended_at: None,
            tools: ToolActivity::default(),
        };
        for call in stored {
            telemetry.seen.insert(key_id(&call.key));
            telemetry
                .calls
                .add(&call.model, &call.tokens, call.cost_usd);
            telemetry.last_at = telemetry.last_at.max(Some(call.at));
        }
        telemetry
    }

    /// Whether the call of `key` (see [`key_id`]) was counted already.
    pub fn has_seen(&self, key: u64) -> bool {
        self.seen.contains(&key)
    }

    /// Notes the calls of `keys` as counted (their figures are added
    /// apart).
    pub(crate) fn add_seen(&mut self, keys: impl IntoIterator<Item = u64>) {
        self.seen.extend(keys);
    }

    /// What the agent waits for a person for, by its telemetry.
    pub fn waiting(&self) -> Option<String> {
        self.tools.waiting()
    }

    /// What it said that the session's events tell.
    pub fn told(&self) -> Told<'_> {
        Told {
            calls: &self.calls,
            tools: &self.tools,
        }
    }

    /// What explains the agent's silence, by its telemetry: a model call
    /// retried lately (a retry older than this is no longer believed), or
    /// a tool running.
    pub fn busy(&self, now: DateTime<Utc>) -> Option<String> {
        let Some(retry) = self
            .retrying
            .as_ref()
            .filter(|retry| now - retry.since < RETRY_BELIEVED)
        else {
            return self
                .tools
                .running()
                .map(|tool| format!("running {} (by its telemetry)", tool.name));
        };
        let why = retry
            .error
            .as_ref()
            .map_or_else(String::new, |error| format!(", {error}"));
        Some(format!(
            "retrying the API (attempt {}{why}, by its telemetry)",
            retry.attempt
        ))
    }
}

/// What a run's telemetry said that the session's events tell: its calls
/// and its tools. Borrowed, so that a batch of records can tell it
/// without a copy of the run's whole telemetry.
#[derive(Debug, Clone, Copy)]
pub struct Told<'a> {
    /// The model calls counted.
    pub calls: &'a CallFigures,
    /// Its tools.
    pub tools: &'a ToolActivity,
}

/// A record's key as a number: its first 64 bits (keys are hex digests),
/// else a hash of it. Two records of one run alike in these are as
/// likely as a collision of random 64-bit numbers.
pub fn key_id(key: &str) -> u64 {
    key.get(..16)
        .and_then(|head| u64::from_str_radix(head, 16).ok())
        .unwrap_or_else(|| {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut hasher);
            hasher.finish()
        })
}

/// How long a retry the telemetry reported explains silence.
const RETRY_BELIEVED: chrono::Duration = chrono::Duration::minutes(2);
