//! Gemini CLI: `gemini -p --output-format stream-json`, and the single
//! object of `--output-format json`.
//!
//! The traps (AGENT-FORMATS.md §3): tokens come only in the final
//! `result.stats`, per model, with `input_tokens` including `cached`;
//! assistant text comes in `delta` chunks; retries of the API are silent on
//! stdout and show only on stderr (`Attempt N failed with status 429.
//! Retrying with backoff...`), so stderr is read too.

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
    /// The assistant's text of the current turn, as its chunks came.
    text: String,
}

#[derive(Debug, Default, Deserialize)]
struct Line {
    #[serde(rename = "type")]
    kind: String,
    session_id: Option<String>,
    model: Option<String>,
    role: Option<String>,
    content: Option<String>,
    delta: Option<bool>,
    tool_name: Option<String>,
    parameters: Option<Parameters>,
    status: Option<String>,
    error: Option<ErrorBody>,
    message: Option<String>,
    severity: Option<String>,
    stats: Option<Stats>,
    // --output-format json
    response: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Parameters {
    command: Option<String>,
    file_path: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Stats {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cached: u64,
    #[serde(default)]
    models: BTreeMap<String, ModelStats>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct ModelStats {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cached: u64,
    /// `--output-format json` nests them.
    #[serde(default)]
    tokens: Option<JsonTokens>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct JsonTokens {
    #[serde(default)]
    prompt: u64,
    #[serde(default)]
    candidates: u64,
    #[serde(default)]
    cached: u64,
    #[serde(default)]
    thoughts: u64,
}

impl ModelStats {
    fn counts(self) -> TokenCounts {
        match self.tokens {
            Some(tokens) => TokenCounts {
                input: tokens.prompt.saturating_sub(tokens.cached),
                output: tokens.candidates.saturating_add(tokens.thoughts),
                cache_read: tokens.cached,
                cache_write: 0,
            },
            None => TokenCounts {
                input: self.input_tokens.saturating_sub(self.cached),
                output: self.output_tokens,
                cache_read: self.cached,
                cache_write: 0,
            },
        }
    }
}

/// Reads one line of stdout into `session`; `false` when it is not a line
/// of Gemini's.
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
    // Anything on stdout after a retry means the call went through.
    if line.kind != "error" {
        changed.attention |= session.retrying.take().is_some();
    }
    if let Some(id) = &line.session_id {
        session.session_id = Some(id.clone());
        changed.session = true;
    }
    match line.kind.as_str() {
        "init" => {
            if let Some(model) = &line.model {
                session.note_model(model);
                changed.session = true;
            }
        }
        "message" if line.role.as_deref() == Some("assistant") => {
            let content = line.content.unwrap_or_default();
            if line.delta == Some(true) {
                state.text.push_str(&content);
            } else {
                state.text = content;
            }
            session.set_text(&state.text);
            changed.session = true;
        }
        "message" => {
            // A new prompt: the next text is a new turn's.
            state.text.clear();
            session.turns += 1;
        }
        "tool_use" => {
            session.tool_calls += 1;
            let parameters = line.parameters.unwrap_or_default();
            session.tool = Some(ToolView {
                name: line.tool_name.unwrap_or_else(|| "tool".into()),
                detail: parameters.command.or(parameters.file_path),
                since: at,
            });
            state.text.clear();
            changed.session = true;
            changed.attention = true;
        }
        "tool_result" => {
            changed.attention |= session.tool.take().is_some();
            if let Some(error) = line
                .error
                .filter(|_| line.status.as_deref() == Some("error"))
            {
                if error.kind.as_deref() == Some("tool_not_registered") {
                    session.set_text(&format!(
                        "a tool was refused: {}",
                        error.message.unwrap_or_default()
                    ));
                }
            }
        }
        "error" => {
            if let Some(message) = line.message {
                let severity = line.severity.unwrap_or_default();
                session.set_text(&format!("{severity}: {message}"));
            }
        }
        "result" => {
            if let Some(stats) = line.stats {
                session.tokens.clear();
                if stats.models.is_empty() {
                    let model = session.models.first().cloned();
                    let counts = ModelStats {
                        input_tokens: stats.input_tokens,
                        output_tokens: stats.output_tokens,
                        cached: stats.cached,
                        tokens: None,
                    }
                    .counts();
                    session.add_tokens(model.as_deref(), &counts);
                } else {
                    for (model, model_stats) in &stats.models {
                        session.add_tokens(Some(model), &model_stats.counts());
                    }
                }
                changed.usage = true;
            }
            if let Some(response) = &line.response {
                session.set_text(response);
            }
            let error = line.error.and_then(|error| error.message.or(error.kind));
            let success = line.status.as_deref() != Some("error") && error.is_none();
            session.result = Some(ResultView {
                success,
                message: if success {
                    session.last_text.clone()
                } else {
                    error
                },
            });
            session.tool = None;
            changed.result = true;
            changed.attention = true;
        }
        _ => {}
    }
    true
}

/// Reads one line of stderr: `Attempt 2 failed with status 429. Retrying
/// with backoff...` is a retry of the API. True when it was one.
pub fn read_stderr(session: &mut Session, line: &[u8], at: DateTime<Utc>) -> bool {
    let Ok(text) = std::str::from_utf8(line) else {
        return false;
    };
    let Some(rest) = text.trim().strip_prefix("Attempt ") else {
        return false;
    };
    let Some((attempt, rest)) = rest.split_once(' ') else {
        return false;
    };
    let Ok(attempt) = attempt.parse::<u32>() else {
        return false;
    };
    if !rest.contains("Retrying") {
        return false;
    }
    let error = rest
        .strip_prefix("failed with status ")
        .and_then(|rest| rest.split('.').next())
        .map(str::to_string);
    session.retrying = Some(RetryView {
        attempt,
        max: None,
        error,
        since: at,
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_on_stderr_is_seen() {
        let mut session = Session::default();
        let at = Utc::now();
        assert!(read_stderr(
            &mut session,
            b"Attempt 2 failed with status 429. Retrying with backoff... _ApiError: {}",
            at
        ));
        let retry = session.retrying.unwrap();
        assert_eq!((retry.attempt, retry.error.as_deref()), (2, Some("429")));
        let mut session = Session::default();
        assert!(!read_stderr(
            &mut session,
            b"Loaded cached credentials.",
            at
        ));
        assert!(!read_stderr(&mut session, b"Attempt to load settings", at));
    }
}
