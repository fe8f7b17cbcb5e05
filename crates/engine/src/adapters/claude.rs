//! Claude Code: `claude -p --output-format stream-json --verbose` (one
//! JSON object per line), and the single `result` object of
//! `--output-format json`.
//!
//! The traps (AGENT-FORMATS.md §1): one API message comes as a line per
//! content block, each repeating the same usage (count it once per
//! `message.id`); on the real CLI that usage is the message's *start*
//! (an output count of 1), so the true totals come only with `result`,
//! and then from `modelUsage` (its `usage` is the main model's alone, or
//! only the last call's). `is_error` decides success, whatever `subtype`
//! says.

use super::session::Session;
use super::Changed;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use wrangle_wire::session::{ResultView, RetryView, ToolView};
use wrangle_wire::TokenCounts;

/// The model Claude Code names on an assistant message it made itself,
/// e.g. an API error shown as the assistant's text (CLI 2.1.332, an HTTP
/// 400 "prompt is too long"): no model's answer, no model call.
const SYNTHETIC_MODEL: &str = "<synthetic>";

/// What the adapter remembers between lines.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The API message whose usage was counted last.
    last_message: Option<String>,
    /// The model of the main loop, from `init`.
    model: Option<String>,
}

/// One line, with only the fields read (all others are skipped unread).
#[derive(Debug, Default, Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    subtype: Option<String>,
    session_id: Option<String>,
    model: Option<String>,
    message: Option<Message>,
    // api_retry
    attempt: Option<u32>,
    max_retries: Option<u32>,
    error_status: Option<u16>,
    error: Option<serde_json::Value>,
    // task_started
    description: Option<String>,
    // result
    is_error: Option<bool>,
    result: Option<String>,
    num_turns: Option<u32>,
    total_cost_usd: Option<f64>,
    usage: Option<Usage>,
    #[serde(rename = "modelUsage")]
    model_usage: Option<BTreeMap<String, ModelUsage>>,
    permission_denials: Option<Vec<Denial>>,
    errors: Option<Vec<String>>,
    // rate_limit_event
    rate_limit_info: Option<RateLimitInfo>,
    // control_request
    request: Option<ControlRequest>,
}

#[derive(Debug, Default, Deserialize)]
struct Message {
    id: Option<String>,
    model: Option<String>,
    content: Option<Content>,
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    /// Tried first: anything else is plain text, of which nothing is read.
    Blocks(Vec<Block>),
    Text(serde::de::IgnoredAny),
}

#[derive(Debug, Default, Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
    name: Option<String>,
    tool_use_id: Option<String>,
    input: Option<ToolInput>,
}

#[derive(Debug, Default, Deserialize)]
struct ToolInput {
    command: Option<String>,
    file_path: Option<String>,
    description: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct Usage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: u64,
}

impl Usage {
    fn counts(self) -> TokenCounts {
        TokenCounts {
            input: self.input_tokens,
            output: self.output_tokens,
            cache_read: self.cache_read_input_tokens,
            cache_write: self.cache_creation_input_tokens,
        }
    }
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ModelUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: u64,
    #[serde(default, rename = "costUSD")]
    cost_usd: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
struct Denial {
    tool_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RateLimitInfo {
    status: Option<String>,
    resets_at: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
struct ControlRequest {
    subtype: Option<String>,
    tool_name: Option<String>,
    input: Option<ToolInput>,
}

/// Reads one line into `session`; `false` when it is not a line of
/// Claude Code's.
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
    if let Some(id) = &line.session_id {
        if session.session_id.as_deref() != Some(id) {
            session.session_id = Some(id.clone());
            changed.session = true;
        }
    }
    match (line.kind.as_str(), line.subtype.as_deref()) {
        ("system", Some("init")) => {
            if let Some(model) = &line.model {
                state.model = Some(model.clone());
                session.note_model(model);
                changed.session = true;
            }
        }
        ("system", Some("api_retry")) => {
            let error = match (&line.error_status, line.error.as_ref().and_then(text_of)) {
                (Some(status), Some(error)) => Some(format!("{status} {error}")),
                (Some(status), None) => Some(status.to_string()),
                (None, error) => error,
            };
            session.retrying = Some(RetryView {
                attempt: line.attempt.unwrap_or(1),
                max: line.max_retries,
                error,
                since: at,
            });
            changed.attention = true;
        }
        ("system", Some("task_started")) => {
            session.tool = Some(ToolView {
                name: "Bash".into(),
                detail: line.description.clone(),
                since: at,
            });
            changed.attention = true;
        }
        ("system", Some("task_notification")) => {
            changed.attention |= session.tool.take().is_some();
        }
        ("assistant", _) => assistant(state, session, line.message, at, changed),
        ("user", _) => {
            // A tool's result: it has stopped running.
            let finished = line
                .message
                .and_then(|message| message.content)
                .is_some_and(|content| match content {
                    Content::Blocks(blocks) => blocks
                        .iter()
                        .any(|block| block.kind == "tool_result" && block.tool_use_id.is_some()),
                    Content::Text(_) => false,
                });
            if finished && session.tool.take().is_some() {
                changed.attention = true;
            }
            changed.attention |= clear_retry(session);
        }
        ("rate_limit_event", _) => {
            let info = line.rate_limit_info.unwrap_or_default();
            let until = if info.status.as_deref() == Some("rejected") {
                info.resets_at
                    .and_then(|seconds| Utc.timestamp_opt(seconds, 0).single())
                    .or(Some(at))
            } else {
                None
            };
            if session.rate_limited_until != until {
                session.rate_limited_until = until;
                changed.attention = true;
            }
        }
        ("control_request", _) => {
            if let Some(request) = line.request {
                if request.subtype.as_deref() == Some("can_use_tool") {
                    let tool = request.tool_name.unwrap_or_else(|| "a tool".into());
                    let what = request
                        .input
                        .and_then(|input| input.command.or(input.file_path).or(input.description));
                    session.waiting = Some(match what {
                        Some(what) => format!("permission to use {tool}: {what}"),
                        None => format!("permission to use {tool}"),
                    });
                    changed.attention = true;
                }
            }
        }
        ("control_cancel_request", _) | ("control_response", _) => {
            changed.attention |= session.waiting.take().is_some();
        }
        ("result", _) => result(session, &line, changed),
        // Partial messages and kinds of a later CLI: signs of life only.
        _ => {}
    }
    true
}

/// An assistant line: its text or tool call, and its message's usage once.
fn assistant(
    state: &mut State,
    session: &mut Session,
    message: Option<Message>,
    at: DateTime<Utc>,
    changed: &mut Changed,
) {
    let Some(message) = message else { return };
    changed.attention |= clear_retry(session);
    // The agent goes on: a permission it waited for was answered.
    changed.attention |= session.waiting.take().is_some();
    let synthetic = message.model.as_deref() == Some(SYNTHETIC_MODEL);
    let model = message.model.clone().or_else(|| state.model.clone());
    if let (Some(id), false) = (&message.id, synthetic) {
        if state.last_message.as_deref() != Some(id) {
            state.last_message = Some(id.clone());
            session.turns += 1;
            if let Some(usage) = message.usage {
                session.add_tokens(model.as_deref(), &usage.counts());
                changed.usage = true;
            }
            changed.session = true;
        }
    }
    let Some(Content::Blocks(blocks)) = message.content else {
        return;
    };
    for block in blocks {
        match block.kind.as_str() {
            "text" => {
                if let Some(text) = &block.text {
                    session.set_text(text);
                    changed.session = true;
                }
            }
            "tool_use" | "server_tool_use" => {
                session.tool_calls += 1;
                let input = block.input.unwrap_or_default();
                session.tool = Some(ToolView {
                    name: block.name.unwrap_or_else(|| "tool".into()),
                    detail: input.command.or(input.file_path).or(input.description),
                    since: at,
                });
                changed.session = true;
                changed.attention = true;
            }
            _ => {}
        }
    }
}

/// The final result: the true totals, the agent's own cost, and how it
/// ended.
fn result(session: &mut Session, line: &Line, changed: &mut Changed) {
    if let Some(by_model) = line.model_usage.as_ref().filter(|usage| !usage.is_empty()) {
        session.tokens.clear();
        session.reported_cost_by_model.clear();
        for (model, usage) in by_model {
            if let Some(cost) = usage.cost_usd.filter(|cost| *cost >= 0.0) {
                session.reported_cost_by_model.insert(model.clone(), cost);
            }
            let counts = TokenCounts {
                input: usage.input_tokens,
                output: usage.output_tokens,
                cache_read: usage.cache_read_input_tokens,
                cache_write: usage.cache_creation_input_tokens,
            };
            session.add_tokens(Some(model), &counts);
        }
    } else if let Some(usage) = line.usage {
        // Without a breakdown (`--output-format json`): the main model's.
        let model = session.models.first().cloned();
        session.tokens.clear();
        session.add_tokens(model.as_deref(), &usage.counts());
    }
    // JSON has no infinity; a cost below 0 is no cost.
    if let Some(cost) = line.total_cost_usd.filter(|cost| *cost >= 0.0) {
        session.reported_cost_usd = Some(cost);
    }
    if let Some(turns) = line.num_turns {
        session.turns = session.turns.max(turns);
    }
    let failed = line.is_error == Some(true)
        || line
            .subtype
            .as_deref()
            .is_some_and(|subtype| subtype.starts_with("error"));
    let message = match (&line.result, &line.errors) {
        (Some(result), _) if !result.trim().is_empty() => Some(result.trim().to_string()),
        (_, Some(errors)) if !errors.is_empty() => Some(errors.join("; ")),
        _ => line.subtype.clone(),
    };
    if let Some(message) = line.result.as_deref() {
        session.set_text(message);
    }
    session.result = Some(ResultView {
        success: !failed,
        message,
    });
    // A tool it was refused: done, but blocked on a person's permission.
    let denied: Vec<String> = line
        .permission_denials
        .iter()
        .flatten()
        .filter_map(|denial| denial.tool_name.clone())
        .collect();
    session.waiting =
        (!denied.is_empty()).then(|| format!("permission for {} was denied", denied.join(", ")));
    session.tool = None;
    session.retrying = None;
    changed.usage = true;
    changed.result = true;
    changed.attention = true;
}

fn clear_retry(session: &mut Session) -> bool {
    session.retrying.take().is_some()
}

/// A JSON value as text: a string as it is, anything else as JSON.
fn text_of(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::Reader;
    use chrono::Utc;
    use wrangle_wire::AdapterKind;

    #[test]
    fn a_message_the_cli_made_itself_is_no_model_and_no_turn() {
        let mut reader = Reader::new(AdapterKind::Claude, "test".into(), None);
        // Real lines of Claude Code 2.1.332 whose API answered 400 (cut).
        let lines = [
            r#"{"type":"system","subtype":"init","session_id":"c19a0131","model":"claude-sonnet-4-5"}"#,
            r#"{"type":"assistant","message":{"id":"4dc83d23-1d6b-4778-91a7-dd50f7e98ab5","model":"<synthetic>","role":"assistant","stop_reason":"stop_sequence","type":"message","usage":{"input_tokens":0,"output_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0},"content":[{"type":"text","text":"Prompt is too long"}]},"parent_tool_use_id":null,"session_id":"c19a0131"}"#,
            r#"{"total_cost_usd":0,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0},"modelUsage":{},"permission_denials":[],"terminal_reason":"prompt_too_long","is_error":true,"num_turns":1,"subtype":"success","api_error_status":400,"result":"Prompt is too long","type":"result","session_id":"c19a0131"}"#,
        ];
        reader.line(lines[0].as_bytes(), Utc::now());
        reader.line(lines[1].as_bytes(), Utc::now());
        let session = reader.session();
        assert_eq!(session.models, ["claude-sonnet-4-5"]);
        assert!(session.tokens.is_empty(), "{:?}", session.tokens);
        assert_eq!(session.turns, 0);
        assert_eq!(session.last_text.as_deref(), Some("Prompt is too long"));
        reader.line(lines[2].as_bytes(), Utc::now());
        let session = reader.session();
        assert_eq!(session.models, ["claude-sonnet-4-5"]);
        let result = session.result.clone().expect("a result");
        assert!(!result.success);
        assert_eq!(result.message.as_deref(), Some("Prompt is too long"));
    }
}
