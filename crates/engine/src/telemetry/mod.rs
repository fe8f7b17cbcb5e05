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
mod intake;
mod plan;
#[cfg(test)]
mod props;
mod receive;
pub mod tools;

pub use credentials::Credentials;
pub use intake::{Answer, Intake};
pub use plan::{plan, Forward, Plan};

use crate::adapters::CallFigures;
use chrono::{DateTime, Utc};
use std::borrow::Cow;
use std::collections::HashMap;
use tools::ToolActivity;
use wrangle_store::{FoldedCalls, TelemetryCall};
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
    /// Its attributes, those wrangle reads (see [`READ_ATTRIBUTES`]).
    pub attributes: Attributes,
}

/// The attributes of records that wrangle reads: the receiver keeps these
/// and drops the rest (prompt ids, e-mail addresses, a tool's arguments
/// and output), which it would only copy and free. A reader of another
/// key finds nothing: [`Attributes::get`] refuses it in debug builds, so
/// that the tests of a new reader fail until its key is here.
pub const READ_ATTRIBUTES: &[&str] = &[
    // Model calls (`calls`).
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "cost_usd_micros",
    "cost_usd",
    "event.kind",
    "input_token_count",
    "output_token_count",
    "cached_token_count",
    "cache_write_token_count",
    "cached_content_token_count",
    "thoughts_token_count",
    // Attempts (`calls::failed_attempt`).
    "attempt",
    "http.response.status_code",
    "error.message",
    // Tools (`tools`).
    "tool_name",
    "function_name",
    "tool_use_id",
    "call_id",
    "decision",
    "source",
    "success",
    "duration_ms",
];

/// `key` as [`READ_ATTRIBUTES`] holds it, if wrangle reads it.
pub fn read_attribute(key: &str) -> Option<&'static str> {
    READ_ATTRIBUTES.iter().copied().find(|read| *read == key)
}

/// A record's attributes, in the order they came: a handful, looked up
/// by a scan (cheaper to make and drop than a map). Where a key comes
/// twice, the last one counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes(Vec<(Cow<'static, str>, AttributeValue)>);

impl Attributes {
    /// The value of `key`, one of [`READ_ATTRIBUTES`].
    pub fn get(&self, key: &str) -> Option<&AttributeValue> {
        debug_assert!(
            read_attribute(key).is_some(),
            "{key:?} is read but not in READ_ATTRIBUTES: the receiver drops it"
        );
        self.0
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    /// Whether it has `key` (one of [`READ_ATTRIBUTES`]).
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Every key and value, in the order they came.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &AttributeValue)> {
        self.0.iter().map(|(key, value)| (key.as_ref(), value))
    }
}

impl<K: Into<Cow<'static, str>>> FromIterator<(K, AttributeValue)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (K, AttributeValue)>>(pairs: I) -> Attributes {
        Attributes(
            pairs
                .into_iter()
                .map(|(key, value)| (key.into(), value))
                .collect(),
        )
    }
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
    /// Keys of the calls counted (see [`key_id`]) with when each was
    /// made, so that none counts twice; numbers, not strings. Those older
    /// than [`KEEP_CALLS`] are forgotten as the store folds them.
    seen: HashMap<u64, DateTime<Utc>>,
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
    /// of it, one by one and `folded` (a daemon that restarts goes on from
    /// them).
    pub fn new(plan: Plan, stored: &[TelemetryCall], folded: &[FoldedCalls]) -> RunTelemetry {
        let mut telemetry = RunTelemetry {
            plan,
            calls: CallFigures::default(),
            seen: HashMap::new(),
            last_at: None,
            retrying: None,
            retry_ended_at: None,
            tools: ToolActivity::default(),
        };
        for folded in folded {
            telemetry
                .calls
                .add_many(&folded.model, folded.calls, &folded.tokens, folded.cost_usd);
        }
        for call in stored {
            telemetry.seen.insert(key_id(&call.key), call.at);
            telemetry
                .calls
                .add(&call.model, &call.tokens, call.cost_usd);
            telemetry.last_at = telemetry.last_at.max(Some(call.at));
        }
        telemetry
    }

    /// Whether the call of `key` (see [`key_id`]) was counted already.
    pub fn has_seen(&self, key: u64) -> bool {
        self.seen.contains_key(&key)
    }

    /// Notes the calls of `keys`, with when each was made, as counted
    /// (their figures are added apart).
    pub(crate) fn add_seen(&mut self, keys: impl IntoIterator<Item = (u64, DateTime<Utc>)>) {
        self.seen.extend(keys);
    }

    /// Forgets the keys of the calls made before `before`, which the store
    /// has folded (see [`KEEP_CALLS`]).
    pub(crate) fn forget_seen_before(&mut self, before: DateTime<Utc>) {
        self.seen.retain(|_, at| *at >= before);
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

/// How long a model call is kept on its own, to count once when an
/// exporter sends it again (exporters retry for minutes at most); then
/// the store folds it into its run's figures, and a record of a call
/// made before that is not counted, since it cannot be told from one
/// already folded.
pub const KEEP_CALLS: chrono::Duration = chrono::Duration::hours(1);

/// Whether a call made `at` is past [`KEEP_CALLS`] at `now`. A record
/// without a time (at the epoch) is not: its age says nothing.
pub(crate) fn too_old_to_count(at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    at.timestamp() > 0 && at < now - KEEP_CALLS
}

/// How long a retry the telemetry reported explains silence.
const RETRY_BELIEVED: chrono::Duration = chrono::Duration::minutes(2);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use wrangle_wire::TokenCounts;

    fn claude_plan() -> Plan {
        plan(
            wrangle_wire::TelemetryMode::Auto,
            &["claude".to_string(), "-p".to_string(), "hi".to_string()],
            &std::collections::BTreeMap::new(),
            Some(4318),
            "token",
            ("agent", 1),
        )
        .unwrap()
    }

    fn call(key: &str, second: i64, model: &str, input: u64, cost: Option<f64>) -> TelemetryCall {
        TelemetryCall {
            agent_id: "agent".into(),
            run: 1,
            key: key.into(),
            at: Utc.timestamp_opt(1_765_000_000 + second, 0).unwrap(),
            model: model.into(),
            tokens: TokenCounts {
                input,
                output: 7,
                ..TokenCounts::default()
            },
            cost_usd: cost,
        }
    }

    /// A run taken up from folded figures and the calls kept one by one
    /// has the figures of all its calls, and knows only the kept calls'
    /// keys; keys are forgotten by when their calls were made.
    #[test]
    fn folded_calls_count_in_full_and_only_kept_keys_are_known() {
        let calls = [
            call("aa01", 1, "sonnet", 100, Some(0.5)),
            call("bb02", 2, "haiku", 10, None),
            call("cc03", 9, "sonnet", 300, Some(0.25)),
        ];
        let whole = RunTelemetry::new(claude_plan(), &calls, &[]);
        let folded = [
            FoldedCalls {
                model: "haiku".into(),
                calls: 1,
                tokens: calls[1].tokens,
                cost_usd: None,
            },
            FoldedCalls {
                model: "sonnet".into(),
                calls: 1,
                tokens: calls[0].tokens,
                cost_usd: Some(0.5),
            },
        ];
        let mut taken_up = RunTelemetry::new(claude_plan(), &calls[2..], &folded);
        assert_eq!(taken_up.calls, whole.calls);
        assert_eq!(taken_up.calls.calls, 3);
        assert_eq!(taken_up.calls.cost_usd(), Some(0.75));
        assert!(!taken_up.has_seen(key_id("aa01")));
        assert!(taken_up.has_seen(key_id("cc03")));

        taken_up.add_seen([(key_id("dd04"), calls[2].at + chrono::Duration::seconds(5))]);
        taken_up.forget_seen_before(calls[2].at + chrono::Duration::seconds(1));
        assert!(!taken_up.has_seen(key_id("cc03")));
        assert!(taken_up.has_seen(key_id("dd04")));
    }

    /// Past the hour a call is kept on its own, a call's record is too old
    /// to count; a record without a time is not judged by its age.
    #[test]
    fn a_call_older_than_it_is_kept_is_too_old_to_count() {
        let now = Utc.timestamp_opt(1_765_000_000, 0).unwrap();
        assert!(!too_old_to_count(now - chrono::Duration::seconds(5), now));
        assert!(!too_old_to_count(now - KEEP_CALLS, now));
        assert!(too_old_to_count(
            now - KEEP_CALLS - chrono::Duration::seconds(1),
            now
        ));
        assert!(!too_old_to_count(DateTime::UNIX_EPOCH, now));
    }
}
