//! An agent's session as adapters build it up, line by line: plain data,
//! stored with the adapter's read offset so that a daemon that restarts
//! goes on counting where the last one stopped.

use super::prices::Prices;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use wrangle_wire::session::{CostSource, ResultView, RetryView, ToolView};
use wrangle_wire::{AdapterKind, SessionView, TokenCounts};

/// Most characters of the agent's last text kept.
const LAST_TEXT_CHARS: usize = 500;

/// The key of tokens whose model no line (nor the run's arguments) named.
pub const UNNAMED_MODEL: &str = "";

/// What an adapter has read of a run so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The agent's own session (or thread) id.
    pub session_id: Option<String>,
    /// The models it used, in the order they were first named.
    pub models: Vec<String>,
    /// Model calls so far.
    pub turns: u32,
    /// Tool calls so far.
    pub tool_calls: u32,
    /// The tool running now.
    pub tool: Option<ToolView>,
    /// The agent's last text, trimmed.
    pub last_text: Option<String>,
    /// Progress 0-100 the agent reported in its output.
    pub progress: Option<f64>,
    /// Tokens so far, by model ([`UNNAMED_MODEL`] where none is known).
    pub tokens: BTreeMap<String, TokenCounts>,
    /// The cost the agent reported, in USD.
    pub reported_cost_usd: Option<f64>,
    /// What it waits for a person for.
    pub waiting: Option<String>,
    /// Until when a rate limit holds it.
    pub rate_limited_until: Option<DateTime<Utc>>,
    /// The API call being retried.
    pub retrying: Option<RetryView>,
    /// Its final result.
    pub result: Option<ResultView>,
    /// Lines read.
    pub lines: u64,
    /// Lines that were not the adapter's JSON.
    pub other_lines: u64,
}

impl Session {
    /// Notes that `model` is in use.
    pub fn note_model(&mut self, model: &str) {
        if !model.is_empty() && !self.models.iter().any(|known| known == model) {
            self.models.push(model.to_string());
        }
    }

    /// Keeps `text` as the agent's last text, trimmed.
    pub fn set_text(&mut self, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let trimmed: String = match text.char_indices().nth(LAST_TEXT_CHARS) {
            Some((end, _)) => format!("{}…", &text[..end]),
            None => text.to_string(),
        };
        self.last_text = Some(trimmed);
    }

    /// Adds tokens used by `model` (`None`: not named).
    pub fn add_tokens(&mut self, model: Option<&str>, tokens: &TokenCounts) {
        if let Some(model) = model {
            self.note_model(model);
        }
        self.tokens
            .entry(model.unwrap_or(UNNAMED_MODEL).to_string())
            .or_default()
            .add(tokens);
    }

    /// Tokens of every model together.
    pub fn total_tokens(&self) -> TokenCounts {
        let mut total = TokenCounts::default();
        for tokens in self.tokens.values() {
            total.add(tokens);
        }
        total
    }

    /// Whether anything happens that explains silence: a tool runs, an API
    /// call is retried, a rate limit holds (`now` for its end), or the
    /// agent waits for a person. Says which.
    pub fn busy(&self, now: DateTime<Utc>) -> Option<String> {
        if let Some(waiting) = &self.waiting {
            return Some(format!("waiting: {waiting}"));
        }
        if let Some(until) = self.rate_limited_until.filter(|until| *until > now) {
            return Some(format!("rate-limited until {}", until.to_rfc3339()));
        }
        if let Some(retry) = &self.retrying {
            let of = retry
                .max
                .map_or_else(String::new, |max| format!(" of {max}"));
            return Some(format!("retrying the API (attempt {}{of})", retry.attempt));
        }
        self.tool
            .as_ref()
            .map(|tool| format!("running {}", tool.name))
    }

    /// The session as the API shows it, priced with `prices` where the
    /// agent reported no cost.
    pub fn view(&self, adapter: AdapterKind, reason: &str, prices: &Prices) -> SessionView {
        let (cost_usd, cost_source, cost_note) = match self.reported_cost_usd {
            Some(cost) => (Some(cost), Some(CostSource::Agent), None),
            None => match prices.cost(&self.tokens) {
                Ok(None) => (None, None, None),
                Ok(Some(cost)) => (Some(cost), Some(CostSource::Prices), None),
                Err(note) => (None, None, Some(note)),
            },
        };
        SessionView {
            adapter,
            adapter_reason: reason.to_string(),
            session_id: self.session_id.clone(),
            models: self.models.clone(),
            turns: self.turns,
            tool_calls: self.tool_calls,
            tool: self.tool.clone(),
            last_text: self.last_text.clone(),
            progress: self.progress,
            tokens: self.total_tokens(),
            tokens_by_model: self
                .tokens
                .iter()
                .map(|(model, tokens)| {
                    let name = if model.is_empty() { "unknown" } else { model };
                    (name.to_string(), *tokens)
                })
                .collect(),
            cost_usd,
            cost_source,
            cost_note,
            waiting: self.waiting.clone(),
            rate_limited_until: self.rate_limited_until,
            retrying: self.retrying.clone(),
            result: self.result.clone(),
            lines: self.lines,
            other_lines: self.other_lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_text_is_trimmed_at_a_character() {
        let mut session = Session::default();
        session.set_text("  hello  ");
        assert_eq!(session.last_text.as_deref(), Some("hello"));
        session.set_text("   ");
        assert_eq!(session.last_text.as_deref(), Some("hello"));
        session.set_text(&"é".repeat(600));
        let text = session.last_text.unwrap();
        assert_eq!(text.chars().count(), 501);
        assert!(text.ends_with('…'));
    }

    #[test]
    fn silence_is_explained_by_what_the_agent_waits_for() {
        let now = Utc::now();
        let mut session = Session::default();
        assert_eq!(session.busy(now), None);
        session.tool = Some(ToolView {
            name: "Bash".into(),
            detail: None,
            since: now,
        });
        assert_eq!(session.busy(now).as_deref(), Some("running Bash"));
        session.retrying = Some(RetryView {
            attempt: 2,
            max: Some(10),
            error: None,
            since: now,
        });
        assert_eq!(
            session.busy(now).as_deref(),
            Some("retrying the API (attempt 2 of 10)")
        );
        session.rate_limited_until = Some(now - chrono::Duration::seconds(1));
        assert!(session.busy(now).unwrap().starts_with("retrying"));
    }
}
