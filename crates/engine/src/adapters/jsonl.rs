//! Generic JSON lines, for agents of one's own: an object with any of
//! `progress` (0-100), `message` (what it does), `tokens` (so far: a number of output tokens,
//! or `{"input", "output", "cache_read", "cache_write"}`), `cost_usd` (so
//! far), `model`, `session_id`, `tool` (the tool running now, `null` when
//! none), `waiting` (what it waits for a person for, `null` when nothing),
//! and `result` (`{"success": bool, "message": ...}`). Totals, not
//! increments: the last one counts.

use super::session::Session;
use super::Changed;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use wrangle_wire::session::{ResultView, ToolView};
use wrangle_wire::TokenCounts;

/// What the adapter remembers between lines: nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {}

#[derive(Debug, Default, Deserialize)]
struct Line {
    progress: Option<f64>,
    message: Option<String>,
    tokens: Option<Tokens>,
    cost_usd: Option<f64>,
    model: Option<String>,
    session_id: Option<String>,
    #[serde(default, deserialize_with = "present")]
    tool: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    waiting: Option<Option<String>>,
    result: Option<ResultBody>,
}

/// `Some(None)` for a field given as `null`, `None` for one left out.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Tokens {
    Output(u64),
    Kinds(TokenCounts),
}

#[derive(Debug, Deserialize)]
struct ResultBody {
    success: bool,
    message: Option<String>,
}

/// Reads one line into `session`; `false` when it is not a JSON object of
/// this shape.
pub fn read(
    _state: &mut State,
    session: &mut Session,
    line: &[u8],
    at: DateTime<Utc>,
    changed: &mut Changed,
) -> bool {
    let Ok(line) = serde_json::from_slice::<Line>(line) else {
        return false;
    };
    if let Some(model) = &line.model {
        session.note_model(model);
        changed.session = true;
    }
    if let Some(id) = line.session_id {
        session.session_id = Some(id);
        changed.session = true;
    }
    if let Some(progress) = line.progress.filter(|p| p.is_finite()) {
        session.progress = Some(progress.clamp(0.0, 100.0));
        changed.session = true;
    }
    if let Some(message) = &line.message {
        session.set_text(message);
        changed.session = true;
    }
    if let Some(tokens) = line.tokens {
        let counts = match tokens {
            Tokens::Output(output) => TokenCounts {
                output,
                ..TokenCounts::default()
            },
            Tokens::Kinds(counts) => counts,
        };
        let model = session.models.first().cloned();
        session.tokens.clear();
        session.add_tokens(model.as_deref(), &counts);
        changed.usage = true;
    }
    if let Some(cost) = line
        .cost_usd
        .filter(|cost| cost.is_finite() && *cost >= 0.0)
    {
        session.reported_cost_usd = Some(cost);
        changed.usage = true;
    }
    if let Some(tool) = line.tool {
        session.tool = tool.map(|name| ToolView {
            name,
            detail: None,
            since: at,
        });
        if session.tool.is_some() {
            session.tool_calls += 1;
        }
        changed.attention = true;
    }
    if let Some(waiting) = line.waiting {
        session.waiting = waiting;
        changed.attention = true;
    }
    if let Some(result) = line.result {
        session.result = Some(ResultView {
            success: result.success,
            message: result.message,
        });
        changed.result = true;
    }
    true
}
