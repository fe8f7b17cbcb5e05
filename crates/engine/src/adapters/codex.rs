//! Codex: `codex exec --json` (also the older `--experimental-json`).
//!
//! The traps (AGENT-FORMATS.md §2): `turn.completed.usage` is the thread's
//! total so far, not the turn's (a resumed thread starts from what it had),
//! so what a run used is the growth of that total; `input_tokens` includes
//! `cached_input_tokens`; no line names the model (it comes from the run's
//! arguments, if they name one); a top-level `error` that starts
//! `Reconnecting...` is a retry, not a failure.

use super::session::Session;
use super::Changed;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use wrangle_wire::session::{ResultView, RetryView, ToolView};
use wrangle_wire::TokenCounts;

/// What the adapter remembers between lines.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The model the run's arguments name.
    model: Option<String>,
    /// The thread of the current process.
    thread: Option<String>,
    /// The last total counted of each thread.
    counted: BTreeMap<String, TokenCounts>,
}

impl State {
    /// A state for a run whose arguments name `model`.
    pub fn with_model(model: Option<String>) -> State {
        State {
            model,
            ..State::default()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    thread_id: Option<String>,
    usage: Option<Usage>,
    item: Option<Item>,
    message: Option<String>,
    error: Option<ErrorBody>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct Usage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    cached_input_tokens: u64,
    #[serde(default)]
    cache_write_input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

impl Usage {
    /// As the four disjoint kinds (cached input is part of `input_tokens`;
    /// whether cache writes are too is not known, and they have always been
    /// 0 where seen).
    fn counts(self) -> TokenCounts {
        TokenCounts {
            input: self.input_tokens.saturating_sub(self.cached_input_tokens),
            output: self.output_tokens,
            cache_read: self.cached_input_tokens,
            cache_write: self.cache_write_input_tokens,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct Item {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    command: Option<String>,
    status: Option<String>,
    server: Option<String>,
    tool: Option<String>,
    query: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    message: Option<String>,
}

/// Reads one line into `session`; `false` when it is not a line of
/// Codex's.
pub fn read(
    state: &mut State,
    session: &mut Session,
    line: &[u8],
    at: DateTime<Utc>,
    changed: &mut Changed,
) -> bool {
    let Ok(line) = serde_json::from_slice::<Line>(line) else {
        return false;
    };
    match line.kind.as_str() {
        "thread.started" => {
            if let Some(thread) = line.thread_id {
                session.session_id = Some(thread.clone());
                session.totals_of_thread = true;
                state.thread = Some(thread);
                if let Some(model) = &state.model {
                    session.note_model(model);
                }
                changed.session = true;
            }
        }
        "turn.started" => {
            session.turns += 1;
            changed.session = true;
        }
        "turn.completed" => {
            if let Some(usage) = line.usage {
                let total = usage.counts();
                let thread = state.thread.clone().unwrap_or_default();
                let before = state.counted.insert(thread, total).unwrap_or_default();
                session.add_tokens(state.model.as_deref(), &total.since(&before));
                changed.usage = true;
            }
            let message = session.last_text.clone();
            session.result = Some(ResultView {
                success: true,
                message,
            });
            session.tool = None;
            changed.attention |= session.retrying.take().is_some();
            changed.result = true;
        }
        "turn.failed" => {
            let message = line.error.and_then(|error| error.message);
            session.result = Some(ResultView {
                success: false,
                message,
            });
            session.tool = None;
            session.retrying = None;
            changed.result = true;
        }
        "error" => {
            let message = line.message.unwrap_or_default();
            match retry_of(&message) {
                Some((attempt, max)) => {
                    session.retrying = Some(RetryView {
                        attempt,
                        max,
                        error: Some(message),
                        since: at,
                    });
                    changed.attention = true;
                }
                None => {
                    session.result = Some(ResultView {
                        success: false,
                        message: Some(message),
                    });
                    changed.result = true;
                }
            }
        }
        "item.started" | "item.updated" | "item.completed" => {
            if let Some(item) = line.item {
                changed.attention |= session.retrying.take().is_some();
                item_line(session, &line.kind, item, at, changed);
            }
        }
        _ => {}
    }
    true
}

/// An item starting, changing or done: a tool runs, the agent says
/// something.
fn item_line(
    session: &mut Session,
    event: &str,
    item: Item,
    at: DateTime<Utc>,
    changed: &mut Changed,
) {
    let done = event == "item.completed";
    match item.kind.as_str() {
        "agent_message" => {
            if let Some(text) = &item.text {
                session.set_text(text);
                changed.session = true;
            }
        }
        "command_execution" | "mcp_tool_call" | "file_change" | "web_search" => {
            let detail =
                item.command
                    .clone()
                    .or(item.query.clone())
                    .or(match (&item.server, &item.tool) {
                        (Some(server), Some(tool)) => Some(format!("{server}.{tool}")),
                        _ => None,
                    });
            if event == "item.started" {
                session.tool_calls += 1;
                session.tool = Some(ToolView {
                    name: item.kind.clone(),
                    detail,
                    since: at,
                });
                changed.session = true;
                changed.attention = true;
            } else if done {
                changed.attention |= session.tool.take().is_some();
                if item.status.as_deref() == Some("declined") {
                    let what = item.command.unwrap_or(item.kind);
                    session.set_text(&format!("declined: {what}"));
                }
            }
        }
        "error" => {
            // Non-fatal: a warning of the CLI's, kept as its last word.
            if let Some(message) = &item.message {
                session.set_text(message);
            }
        }
        _ => {}
    }
}

/// `Reconnecting... 4/5 (...)`: attempt 4 of 5.
fn retry_of(message: &str) -> Option<(u32, Option<u32>)> {
    let rest = message.strip_prefix("Reconnecting...")?.trim_start();
    let count = rest.split_whitespace().next().unwrap_or_default();
    let (attempt, max) = count.split_once('/').unwrap_or((count, ""));
    Some((attempt.parse().unwrap_or(1), max.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconnect_is_a_retry_with_its_count() {
        assert_eq!(
            retry_of("Reconnecting... 4/5 (unexpected status 401 Unauthorized: …)"),
            Some((4, Some(5)))
        );
        assert_eq!(retry_of("Reconnecting..."), Some((1, None)));
        assert_eq!(retry_of("unexpected status 401"), None);
    }
}
