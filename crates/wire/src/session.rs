//! What a coding agent's own output says about its work (its **session**):
//! read by an adapter from the JSON lines the agent prints.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Which adapter reads an agent's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    /// Claude Code, `claude -p --output-format stream-json` (or `json`).
    Claude,
    /// Codex, `codex exec --json`.
    Codex,
    /// Gemini CLI, `gemini -p --output-format stream-json`.
    Gemini,
    /// opencode, `opencode run --format json`.
    Opencode,
    /// Generic JSON lines: objects with any of `progress`, `message`,
    /// `tokens`, `cost_usd` (an agent of one's own).
    Jsonl,
    /// None: the output is only output.
    None,
}

impl AdapterKind {
    /// Every adapter.
    pub const ALL: [AdapterKind; 6] = [
        AdapterKind::Claude,
        AdapterKind::Codex,
        AdapterKind::Gemini,
        AdapterKind::Opencode,
        AdapterKind::Jsonl,
        AdapterKind::None,
    ];

    /// The name used in options and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterKind::Claude => "claude",
            AdapterKind::Codex => "codex",
            AdapterKind::Gemini => "gemini",
            AdapterKind::Opencode => "opencode",
            AdapterKind::Jsonl => "jsonl",
            AdapterKind::None => "none",
        }
    }
}

impl fmt::Display for AdapterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AdapterKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AdapterKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown adapter {s:?}: use auto, {}",
                    AdapterKind::ALL.map(AdapterKind::as_str).join(", ")
                )
            })
    }
}

/// Tokens of the four kinds a model bills, disjoint: `input` excludes
/// what was read from or written to the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenCounts {
    /// Input tokens not read from the cache nor written to it.
    pub input: u64,
    /// Output tokens, reasoning included.
    pub output: u64,
    /// Input tokens read from the cache.
    pub cache_read: u64,
    /// Input tokens written to the cache.
    pub cache_write: u64,
}

impl TokenCounts {
    /// All four together.
    pub fn total(&self) -> u64 {
        // Saturating: the counts come from what agents print, and a line
        // with u64::MAX tokens must not overflow (a panic in debug).
        self.input
            .saturating_add(self.output)
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write)
    }

    /// Adds `other` to these (saturating, as [`TokenCounts::total`]).
    pub fn add(&mut self, other: &TokenCounts) {
        self.input = self.input.saturating_add(other.input);
        self.output = self.output.saturating_add(other.output);
        self.cache_read = self.cache_read.saturating_add(other.cache_read);
        self.cache_write = self.cache_write.saturating_add(other.cache_write);
    }

    /// What these have more than `base`, kind by kind (zero where less).
    pub fn since(&self, base: &TokenCounts) -> TokenCounts {
        TokenCounts {
            input: self.input.saturating_sub(base.input),
            output: self.output.saturating_sub(base.output),
            cache_read: self.cache_read.saturating_sub(base.cache_read),
            cache_write: self.cache_write.saturating_sub(base.cache_write),
        }
    }
}

/// A tool the agent runs now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ToolView {
    /// The tool, e.g. `Bash`, `command_execution`.
    pub name: String,
    /// What it runs, where the agent says: a command, a file.
    pub detail: Option<String>,
    /// Since when.
    pub since: DateTime<Utc>,
}

/// An API call being retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetryView {
    /// Which attempt.
    pub attempt: u32,
    /// Of how many, where the agent says.
    pub max: Option<u32>,
    /// What failed, e.g. `529 overloaded`.
    pub error: Option<String>,
    /// Since when.
    pub since: DateTime<Utc>,
}

/// How the agent's work ended, in its own words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResultView {
    /// Whether it succeeded. An error the agent reports is an error even
    /// where its format also says success.
    pub success: bool,
    /// Its final message, or what went wrong.
    pub message: Option<String>,
}

/// Where a cost comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CostSource {
    /// The agent reported it.
    Agent,
    /// Priced from its tokens with the price table.
    Prices,
}

/// An agent's session, as its adapter read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionView {
    /// The adapter that reads the output.
    pub adapter: AdapterKind,
    /// Why that one, e.g. `auto: the program is claude with --output-format
    /// stream-json`.
    pub adapter_reason: String,
    /// The agent's own session (or thread) id.
    pub session_id: Option<String>,
    /// The models it used, main one first.
    pub models: Vec<String>,
    /// Model calls (turns) so far.
    pub turns: u32,
    /// Tool calls so far.
    pub tool_calls: u32,
    /// The tool running now, if one is.
    pub tool: Option<ToolView>,
    /// The last text of the agent (trimmed).
    pub last_text: Option<String>,
    /// Progress 0-100 the agent reported in its output.
    pub progress: Option<f64>,
    /// Tokens so far, all models together.
    pub tokens: TokenCounts,
    /// Tokens so far, by model.
    pub tokens_by_model: BTreeMap<String, TokenCounts>,
    /// What it cost so far in USD: the agent's own figure, else priced
    /// from its tokens; absent when neither can be had (never a guess).
    pub cost_usd: Option<f64>,
    /// Where `cost_usd` comes from.
    pub cost_source: Option<CostSource>,
    /// Why there is no cost, or what it leaves out.
    pub cost_note: Option<String>,
    /// What the agent waits for a person for: a permission, a question.
    pub waiting: Option<String>,
    /// A rate limit holds it until then.
    pub rate_limited_until: Option<DateTime<Utc>>,
    /// An API call is being retried.
    pub retrying: Option<RetryView>,
    /// Its final result, once it gave one.
    pub result: Option<ResultView>,
    /// Lines read.
    pub lines: u64,
    /// Of those, lines that were not the adapter's JSON (banners, warnings,
    /// a line cut short).
    pub other_lines: u64,
    /// The tokens and cost above are those of the calls the agent
    /// reported over telemetry (its final result, once read, is the last
    /// word).
    #[serde(default)]
    pub figures_from_telemetry: bool,
    /// What the agent's own telemetry says, when it is received.
    #[serde(default)]
    pub telemetry: Option<TelemetryView>,
    /// Why its telemetry is not received, where it might be.
    #[serde(default)]
    pub telemetry_note: Option<String>,
}

/// Whether wrangle receives an agent's OpenTelemetry (`--telemetry`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum TelemetryMode {
    /// On for the CLIs wrangle knows to export (Claude Code, Codex,
    /// Gemini CLI), off for the rest.
    #[default]
    Auto,
    /// On: the CLI must be one wrangle knows.
    On,
    /// Off: the agent's environment and command line are left as given.
    Off,
}

impl FromStr for TelemetryMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(TelemetryMode::Auto),
            "on" => Ok(TelemetryMode::On),
            "off" => Ok(TelemetryMode::Off),
            _ => Err(format!("invalid telemetry {s:?}: use auto, on or off")),
        }
    }
}

/// An agent's telemetry as wrangle receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TelemetryView {
    /// Where the agent exports to: wrangle's loopback endpoint.
    pub endpoint: String,
    /// What wrangle added to the agent's environment (`KEY=VALUE`, the
    /// run's secret hidden) and command line.
    pub added: Vec<String>,
    /// The user's own collector, which wrangle forwards every body to.
    pub forwarded_to: Option<String>,
    /// Model calls reported so far.
    pub calls: u64,
    /// Their tokens, all models together.
    pub tokens: TokenCounts,
    /// Their cost as the agent gave it (absent where it gives none).
    pub cost_usd: Option<f64>,
    /// When the last record came.
    pub last_at: Option<DateTime<Utc>>,
    /// Tools that ran, by the telemetry.
    #[serde(default)]
    pub tools_run: u64,
    /// Of them, those that failed.
    #[serde(default)]
    pub tools_failed: u64,
    /// Their time together, in milliseconds.
    #[serde(default)]
    pub tools_ms: u64,
    /// Tools the agent was refused: by its settings (`Bash (settings)`,
    /// which waits for a person to allow it) or by a person (`Bash
    /// (person)`); the first 32.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denials: Vec<String>,
    /// How the final result's figures differ from the calls', when they
    /// do (the result's are the ones kept).
    pub difference: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_names_round_trip_and_bad_ones_say_the_good_ones() {
        for kind in AdapterKind::ALL {
            assert_eq!(kind.as_str().parse::<AdapterKind>(), Ok(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        let error = "claud".parse::<AdapterKind>().unwrap_err();
        assert!(
            error.contains("claude, codex, gemini, opencode, jsonl, none"),
            "{error}"
        );
    }

    #[test]
    fn token_counts_add_and_subtract_by_kind() {
        let mut a = TokenCounts {
            input: 10,
            output: 5,
            cache_read: 100,
            cache_write: 1,
        };
        let b = TokenCounts {
            input: 4,
            output: 9,
            cache_read: 0,
            cache_write: 1,
        };
        assert_eq!(
            a.since(&b),
            TokenCounts {
                input: 6,
                output: 0,
                cache_read: 100,
                cache_write: 0
            }
        );
        a.add(&b);
        assert_eq!(a.total(), 130);
    }
}
