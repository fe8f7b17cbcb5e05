//! opencode: `opencode run --format json`.
//!
//! Each `step_finish` carries its own step's tokens and cost (summed over
//! the run); `input` there excludes the cache, and reasoning is counted
//! apart from output. Permissions are refused, not asked, and listed in a
//! `done` line's `rejected` (in the versions that write one).

use super::session::Session;
use super::Changed;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use wrangle_wire::session::ResultView;
use wrangle_wire::TokenCounts;

/// What the adapter remembers between lines: nothing yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {}

#[derive(Debug, Default, Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "sessionID")]
    session_id: Option<String>,
    part: Option<Part>,
    error: Option<serde_json::Value>,
    rejected: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Default, Deserialize)]
struct Part {
    text: Option<String>,
    reason: Option<String>,
    cost: Option<f64>,
    tokens: Option<Tokens>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct Tokens {
    #[serde(default)]
    input: u64,
    #[serde(default)]
    output: u64,
    #[serde(default)]
    reasoning: u64,
    #[serde(default)]
    cache: Cache,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct Cache {
    #[serde(default)]
    read: u64,
    #[serde(default)]
    write: u64,
}

/// Reads one line into `session`; `false` when it is not a line of
/// opencode's.
pub fn read(
    _state: &mut State,
    session: &mut Session,
    line: &[u8],
    _at: DateTime<Utc>,
    changed: &mut Changed,
) -> bool {
    let Ok(line) = serde_json::from_slice::<Line>(line) else {
        return false;
    };
    if let Some(id) = &line.session_id {
        if session.session_id.as_deref() != Some(id) {
            session.session_id = Some(id.clone());
            changed.session = true;
        }
    }
    let part = line.part.unwrap_or_default();
    match line.kind.as_str() {
        "step_start" => {
            session.turns += 1;
            changed.session = true;
        }
        "text" => {
            if let Some(text) = &part.text {
                session.set_text(text);
                changed.session = true;
            }
        }
        "tool_use" => {
            // Written when the tool has finished: counted, not running.
            session.tool_calls += 1;
            changed.session = true;
        }
        "step_finish" => {
            if let Some(tokens) = part.tokens {
                let model = session.models.first().cloned();
                session.add_tokens(
                    model.as_deref(),
                    &TokenCounts {
                        input: tokens.input,
                        output: tokens.output.saturating_add(tokens.reasoning),
                        cache_read: tokens.cache.read,
                        cache_write: tokens.cache.write,
                    },
                );
                changed.usage = true;
            }
            // A cost below 0, or one that makes the sum infinite, is no
            // cost: it would make every later figure meaningless.
            let before = session.reported_cost_usd.unwrap_or(0.0);
            if let Some(total) = part
                .cost
                .filter(|cost| *cost >= 0.0)
                .map(|cost| before + cost)
                .filter(|total| total.is_finite())
            {
                session.reported_cost_usd = Some(total);
                changed.usage = true;
            }
            if part.reason.as_deref() == Some("stop") {
                let message = session.last_text.clone();
                session.result = Some(ResultView {
                    success: true,
                    message,
                });
                changed.result = true;
            }
        }
        "error" => {
            let message = line.error.map(|error| match error {
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            });
            session.result = Some(ResultView {
                success: false,
                message,
            });
            changed.result = true;
        }
        "done" => {
            let rejected = line.rejected.unwrap_or_default();
            if !rejected.is_empty() {
                session.waiting = Some(format!(
                    "{} permission request(s) were refused",
                    rejected.len()
                ));
                changed.attention = true;
            }
            if session.result.is_none() {
                let message = session.last_text.clone();
                session.result = Some(ResultView {
                    success: true,
                    message,
                });
                changed.result = true;
            }
        }
        _ => {}
    }
    true
}
