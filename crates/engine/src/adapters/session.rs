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
    /// The part of it each model cost, where the agent says.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reported_cost_by_model: BTreeMap<String, f64>,
    /// What it waits for a person for.
    pub waiting: Option<String>,
    /// Until when a rate limit holds it.
    pub rate_limited_until: Option<DateTime<Utc>>,
    /// The API call being retried.
    pub retrying: Option<RetryView>,
    /// Its final result.
    pub result: Option<ResultView>,
    /// When the final result was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_at: Option<DateTime<Utc>>,
    /// The output's usage is its thread's total, which a resumed thread
    /// (`codex exec resume`) carries over from its earlier runs: the
    /// calls reported over telemetry, where there are any, are then the
    /// run's own figures even after the final result.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub totals_of_thread: bool,
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

    /// What the run's tokens and cost are taken from: the final result's
    /// totals, where the output gave one, are the last word (unless they
    /// are a thread's, see [`Session::totals_of_thread`]); before it, the
    /// calls the agent reported over telemetry (`calls`), each with its
    /// own true figures; else what the output has said so far.
    pub fn figures<'a>(&'a self, calls: Option<&'a CallFigures>) -> Figures<'a> {
        let finished = self.result.is_some()
            && !self.totals_of_thread
            && (self.reported_cost_usd.is_some() || !self.tokens.is_empty());
        match calls.filter(|calls| calls.calls > 0 && !finished) {
            Some(calls) => Figures {
                tokens: &calls.tokens,
                cost_by_model: &calls.cost_by_model,
                total: calls.cost_usd(),
                from_telemetry: true,
            },
            None => Figures {
                tokens: &self.tokens,
                cost_by_model: &self.reported_cost_by_model,
                total: self.reported_cost_usd,
                from_telemetry: false,
            },
        }
    }

    /// The session as the API shows it, its figures from `calls` where
    /// they are the ones to trust (see [`Session::figures`]), priced with
    /// `prices` where the agent reported no cost.
    pub fn view(
        &self,
        adapter: AdapterKind,
        reason: &str,
        prices: &Prices,
        calls: Option<&CallFigures>,
    ) -> SessionView {
        let figures = self.figures(calls);
        let (cost_usd, cost_source, cost_note) = figures.cost(prices);
        let tokens = figures.total_tokens();
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
            tokens,
            tokens_by_model: figures
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
            figures_from_telemetry: figures.from_telemetry,
            telemetry: None,
            telemetry_note: None,
        }
    }
}

/// Model calls an agent reported of itself over telemetry, each with its
/// own true figures, added up by model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallFigures {
    /// Calls counted.
    pub calls: u64,
    /// Their tokens by model.
    pub tokens: BTreeMap<String, TokenCounts>,
    /// Their cost by model, where the agent gave it.
    pub cost_by_model: BTreeMap<String, f64>,
}

impl CallFigures {
    /// Adds one call.
    pub fn add(&mut self, model: &str, tokens: &TokenCounts, cost_usd: Option<f64>) {
        self.add_many(model, 1, tokens, cost_usd);
    }

    /// Adds `calls` calls of `model` with their `tokens` and `cost_usd`
    /// together.
    pub fn add_many(
        &mut self,
        model: &str,
        calls: u64,
        tokens: &TokenCounts,
        cost_usd: Option<f64>,
    ) {
        self.calls += calls;
        // The model's name is copied only the first time it comes: this
        // runs for every call a fleet reports.
        match self.tokens.get_mut(model) {
            Some(sum) => sum.add(tokens),
            None => {
                self.tokens.insert(model.to_string(), *tokens);
            }
        }
        if let Some(cost) = cost_usd {
            // Kept finite: a sum that overflowed would price nothing.
            match self.cost_by_model.get_mut(model) {
                Some(sum) => *sum = (*sum + cost).min(f64::MAX),
                None => {
                    self.cost_by_model
                        .insert(model.to_string(), cost.min(f64::MAX));
                }
            }
        }
    }

    /// What the calls cost together, where the agent gave their cost.
    pub fn cost_usd(&self) -> Option<f64> {
        (!self.cost_by_model.is_empty()).then(|| self.cost_by_model.values().sum())
    }
}

/// The tokens and the agent's own cost a run's figures are taken from
/// (see [`Session::figures`]).
#[derive(Debug, Clone, Copy)]
pub struct Figures<'a> {
    /// Tokens by model.
    pub tokens: &'a BTreeMap<String, TokenCounts>,
    /// The agent's cost by model, where it gives it so.
    pub cost_by_model: &'a BTreeMap<String, f64>,
    /// The agent's cost in all, where it gives one.
    pub total: Option<f64>,
    /// They are the calls reported over telemetry.
    pub from_telemetry: bool,
}

impl Figures<'_> {
    /// Tokens of every model together.
    pub fn total_tokens(&self) -> TokenCounts {
        let mut total = TokenCounts::default();
        for tokens in self.tokens.values() {
            total.add(tokens);
        }
        total
    }

    /// The cost to show: the agent's own, else priced from the tokens;
    /// with where it comes from, or why there is none.
    pub fn cost(&self, prices: &Prices) -> (Option<f64>, Option<CostSource>, Option<String>) {
        match self.total {
            Some(cost) => (Some(cost), Some(CostSource::Agent), None),
            None => match prices.cost(self.tokens) {
                Ok(None) => (None, None, None),
                Ok(Some(cost)) => (Some(cost), Some(CostSource::Prices), None),
                Err(note) => (None, None, Some(note)),
            },
        }
    }

    /// Tokens and cost of each model, for the ledger: the agent's own
    /// figure where it gives one by model; else its total shared out in
    /// proportion to the priced cost (or, without prices, the tokens) of
    /// the models it does not break down; else the price table's. A cost
    /// is `None` where nothing prices it.
    pub fn costs(&self, prices: &Prices) -> BTreeMap<String, (TokenCounts, Option<f64>)> {
        let priced = |model: &str, tokens: &TokenCounts| {
            let one = BTreeMap::from([(model.to_string(), *tokens)]);
            prices.cost(&one).ok().flatten()
        };
        let mut costs: BTreeMap<String, (TokenCounts, Option<f64>)> = self
            .tokens
            .iter()
            .map(|(model, tokens)| {
                let cost = match self.cost_by_model.get(model) {
                    Some(cost) => Some(*cost),
                    None => priced(model, tokens),
                };
                (model.clone(), (*tokens, cost))
            })
            .collect();
        let Some(total) = self.total else {
            return costs;
        };
        let unsplit: Vec<String> = costs
            .keys()
            .filter(|model| !self.cost_by_model.contains_key(*model))
            .cloned()
            .collect();
        let split: f64 = self.cost_by_model.values().sum();
        let rest = (total - split).max(0.0);
        let all_priced = unsplit.iter().all(|model| costs[model].1.is_some());
        let weight = |model: &String| {
            let (tokens, cost) = &costs[model];
            if all_priced {
                cost.unwrap_or(0.0)
            } else {
                tokens.total() as f64
            }
        };
        let weights: Vec<f64> = unsplit.iter().map(weight).collect();
        let sum: f64 = weights.iter().sum();
        for (model, weight) in unsplit.iter().zip(weights) {
            let share = if sum > 0.0 {
                weight / sum
            } else {
                1.0 / unsplit.len() as f64
            };
            if let Some(entry) = costs.get_mut(model) {
                entry.1 = Some(rest * share);
            }
        }
        if costs.is_empty() && total > 0.0 {
            costs.insert(
                UNNAMED_MODEL.to_string(),
                (TokenCounts::default(), Some(total)),
            );
        }
        costs
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
