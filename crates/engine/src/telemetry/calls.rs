//! The model calls in an agent's telemetry records, as each CLI names
//! them (AGENT-FORMATS.md §10): Claude Code's `claude_code.api_request`
//! (tokens and its own cost), Codex's `codex.sse_event` of kind
//! `response.completed` (tokens, no cost) and Gemini CLI's
//! `gemini_cli.api_response` (tokens). Each call's figures are its own,
//! not a running total.

use super::{AttributeValue, Record};
use wrangle_wire::TokenCounts;

/// A failed attempt of a model call, as Codex reports each one
/// (`codex.api_request` with an error status): its retries are silent on
/// stdout. `None` for a record that is no attempt; `Some(None)` for an
/// attempt that went through.
pub fn failed_attempt(record: &Record) -> Option<Option<(u32, String)>> {
    if record.name != "codex.api_request" {
        return None;
    }
    let attributes = &record.attributes;
    let status = attributes
        .get("http.response.status_code")
        .and_then(AttributeValue::as_u64);
    let error = attributes
        .get("error.message")
        .and_then(AttributeValue::as_text)
        .filter(|message| !message.is_empty());
    let attempt = attributes
        .get("attempt")
        .and_then(AttributeValue::as_u64)
        .map_or(0, |attempt| u32::try_from(attempt).unwrap_or(u32::MAX));
    let failed = error.is_some() || status.is_some_and(|status| status >= 400);
    Some(failed.then(|| {
        let why = match (error, status) {
            (Some(message), _) => message.to_string(),
            (None, Some(status)) => format!("http {status}"),
            (None, None) => "failed".to_string(),
        };
        // Attempts count from 0; the one being retried is the next.
        (attempt.saturating_add(1), why)
    }))
}

/// One model call found in a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The model.
    pub model: String,
    /// Its tokens, as four disjoint kinds.
    pub tokens: TokenCounts,
    /// Its cost as the agent gave it.
    pub cost_usd: Option<f64>,
}

/// The model call `record` reports, if it reports one.
pub fn call_of(record: &Record) -> Option<Call> {
    let name = record.name.as_str();
    let count = |key: &str| record.attributes.get(key).and_then(AttributeValue::as_u64);
    let model = || {
        record
            .attributes
            .get("model")
            .and_then(AttributeValue::as_text)
            .unwrap_or_default()
            .to_string()
    };
    match name {
        "claude_code.api_request" | "api_request"
            if record.attributes.contains_key("input_tokens") =>
        {
            // `cost_usd_micros` adds up exactly; `cost_usd` where it is
            // missing.
            let cost = count("cost_usd_micros")
                .map(|micros| micros as f64 / 1e6)
                .or_else(|| {
                    record
                        .attributes
                        .get("cost_usd")
                        .and_then(AttributeValue::as_f64)
                })
                // Protobuf carries NaN and infinities: such a cost, or
                // one below 0, is none (NaN would make every budget
                // check false).
                .filter(|cost| cost.is_finite() && *cost >= 0.0);
            Some(Call {
                model: model(),
                tokens: TokenCounts {
                    input: count("input_tokens").unwrap_or(0),
                    output: count("output_tokens").unwrap_or(0),
                    cache_read: count("cache_read_tokens").unwrap_or(0),
                    cache_write: count("cache_creation_tokens").unwrap_or(0),
                },
                cost_usd: cost,
            })
        }
        // Codex logs `response.completed` twice per call, once without
        // the counts.
        "codex.sse_event"
            if record
                .attributes
                .get("event.kind")
                .and_then(AttributeValue::as_text)
                == Some("response.completed")
                && record.attributes.contains_key("input_token_count") =>
        {
            // OpenAI's input count includes the cached part.
            let input = count("input_token_count").unwrap_or(0);
            let cached = count("cached_token_count").unwrap_or(0);
            Some(Call {
                model: model(),
                tokens: TokenCounts {
                    input: input.saturating_sub(cached),
                    output: count("output_token_count").unwrap_or(0),
                    cache_read: cached,
                    cache_write: count("cache_write_token_count").unwrap_or(0),
                },
                cost_usd: None,
            })
        }
        "gemini_cli.api_response" => {
            // Gemini's input count includes the cached part; thoughts are
            // billed as output.
            let input = count("input_token_count").unwrap_or(0);
            let cached = count("cached_content_token_count").unwrap_or(0);
            Some(Call {
                model: model(),
                tokens: TokenCounts {
                    input: input.saturating_sub(cached),
                    output: count("output_token_count")
                        .unwrap_or(0)
                        .saturating_add(count("thoughts_token_count").unwrap_or(0)),
                    cache_read: cached,
                    cache_write: 0,
                },
                cost_usd: None,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, attributes: &[(&str, AttributeValue)]) -> Record {
        Record {
            key: "k".into(),
            at: chrono::Utc::now(),
            name: name.into(),
            attributes: attributes
                .iter()
                .map(|(key, value)| (key.to_string(), value.clone()))
                .collect(),
        }
    }

    #[test]
    fn each_cli_names_its_calls_its_own_way() {
        use AttributeValue::{Float, Int, Text};
        // AGENT-FORMATS.md §10's real Claude record.
        let claude = record(
            "claude_code.api_request",
            &[
                ("model", Text("claude-sonnet-4-5".into())),
                ("input_tokens", Int(1200)),
                ("output_tokens", Int(9)),
                ("cache_read_tokens", Int(5000)),
                ("cache_creation_tokens", Int(3000)),
                ("cost_usd", Float(0.016485)),
                ("cost_usd_micros", Int(16485)),
            ],
        );
        let call = call_of(&claude).unwrap();
        assert_eq!(call.model, "claude-sonnet-4-5");
        assert_eq!(
            call.tokens,
            TokenCounts {
                input: 1200,
                output: 9,
                cache_read: 5000,
                cache_write: 3000
            }
        );
        assert_eq!(call.cost_usd, Some(0.016485));
        let codex = record(
            "codex.sse_event",
            &[
                ("event.kind", Text("response.completed".into())),
                ("model", Text("gpt-5".into())),
                ("input_token_count", Text("12731".into())),
                ("cached_token_count", Int(6912)),
                ("output_token_count", Int(6)),
            ],
        );
        let call = call_of(&codex).unwrap();
        assert_eq!((call.tokens.input, call.tokens.cache_read), (5819, 6912));
        assert_eq!(call.cost_usd, None);
        let other_event = record(
            "codex.sse_event",
            &[("event.kind", Text("response.output_item.done".into()))],
        );
        assert_eq!(call_of(&other_event), None);
        let gemini = record(
            "gemini_cli.api_response",
            &[
                ("model", Text("gemini-2.5-pro".into())),
                ("input_token_count", Int(1000)),
                ("cached_content_token_count", Int(800)),
                ("output_token_count", Int(50)),
                ("thoughts_token_count", Int(20)),
            ],
        );
        let call = call_of(&gemini).unwrap();
        assert_eq!(
            (
                call.tokens.input,
                call.tokens.output,
                call.tokens.cache_read
            ),
            (200, 70, 800)
        );
        assert_eq!(call_of(&record("claude_code.tool_result", &[])), None);
        let counted_elsewhere = record(
            "codex.sse_event",
            &[("event.kind", Text("response.completed".into()))],
        );
        assert_eq!(call_of(&counted_elsewhere), None);
    }

    #[test]
    fn a_failed_codex_attempt_is_a_retry() {
        use AttributeValue::{Int, Text};
        let failed = record(
            "codex.api_request",
            &[
                ("attempt", Int(1)),
                ("http.response.status_code", Int(503)),
                ("error.message", Text("http 503".into())),
            ],
        );
        assert_eq!(failed_attempt(&failed), Some(Some((2, "http 503".into()))));
        let through = record(
            "codex.api_request",
            &[("attempt", Int(3)), ("http.response.status_code", Int(200))],
        );
        assert_eq!(failed_attempt(&through), Some(None));
        assert_eq!(failed_attempt(&record("codex.sse_event", &[])), None);
    }
}
