//! What agents spend, and the budgets it is held to. The ledger itself is
//! in the store (`wrangle_store::ledger`): each change of a session's
//! tokens and cost is written there with the session. The engine keeps
//! the sums it checks on every tick in memory (by agent, by group, the
//! fleet's), loaded from the ledger at start and moved with each change
//! written.

use crate::error::EngineError;
use crate::model::SessionSpec;
use crate::registry::IdMap;
use crate::Engine;
use chrono::Utc;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use wrangle_store::{CostDelta, CostKey, CostSum, Ledgered, SignedTokens, Store};
use wrangle_wire::cost::parse_cost_since;
use wrangle_wire::{CostBy, CostQuery, CostReport, CostRow, TokenCounts};

/// How long an agent may go on after its final result when `--linger`
/// is not given.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(30);

/// The sums of the ledger the engine checks budgets against.
#[derive(Debug, Default)]
pub struct Spending {
    by_agent: IdMap<Ledgered>,
    by_group: HashMap<String, f64>,
    total: Ledgered,
    /// Budgets of groups, in USD.
    budgets: BTreeMap<String, f64>,
}

impl Spending {
    /// The sums as the store's ledger holds them, and the groups' budgets.
    pub fn load(store: &mut Store) -> wrangle_store::Result<Spending> {
        let mut spending = Spending {
            budgets: store.group_budgets()?.into_iter().collect(),
            ..Spending::default()
        };
        for (agent, sum) in store.spend_by_agent()? {
            spending.total.tokens.add(&sum.tokens);
            spending.total.cost_usd += sum.cost_usd;
            spending.by_agent.insert(
                agent,
                Ledgered {
                    tokens: sum.tokens,
                    cost_usd: sum.cost_usd,
                },
            );
        }
        spending.by_group = store
            .spend_by_group()?
            .into_iter()
            .map(|(group, sum)| (group, sum.cost_usd))
            .collect();
        Ok(spending)
    }

    /// Moves the sums by changes just written to the ledger.
    pub fn apply(&mut self, deltas: &[CostDelta]) {
        for delta in deltas {
            let agent = self.by_agent.entry(delta.agent_id.clone()).or_default();
            add_signed(agent, &delta.tokens, delta.cost_usd);
            add_signed(&mut self.total, &delta.tokens, delta.cost_usd);
            if let Some(group) = &delta.agent_group {
                *self.by_group.entry(group.clone()).or_default() += delta.cost_usd;
            }
        }
    }

    /// What agent `id` has spent over all its runs.
    pub fn of_agent(&self, id: &str) -> Ledgered {
        self.by_agent.get(id).copied().unwrap_or_default()
    }

    /// What the agents of `group` have spent together, removed ones too.
    pub fn of_group(&self, group: &str) -> f64 {
        self.by_group.get(group).copied().unwrap_or_default()
    }

    /// What the fleet has spent, removed agents too.
    pub fn total(&self) -> Ledgered {
        self.total
    }

    /// The budget of `group`, if it has one.
    pub fn budget_of(&self, group: &str) -> Option<f64> {
        self.budgets.get(group).copied()
    }

    /// The groups that have a budget.
    pub fn budgeted_groups(&self) -> impl Iterator<Item = &str> {
        self.budgets.keys().map(String::as_str)
    }

    /// Sets (`Some`) or removes a group's budget.
    pub fn set_budget(&mut self, group: &str, budget_usd: Option<f64>) {
        match budget_usd {
            Some(budget) => self.budgets.insert(group.to_string(), budget),
            None => self.budgets.remove(group),
        };
    }

    /// The budget an agent with `budgets`, in `group`, whose spend is
    /// `spent`, has reached, if any: which one (for people and the event)
    /// and what was spent against it.
    pub fn exceeded(
        &self,
        budgets: &SessionSpec,
        group: Option<&str>,
        spent: &Ledgered,
    ) -> Option<Exceeded> {
        if let Some(budget) = budgets
            .budget_usd
            .filter(|budget| spent.cost_usd >= *budget)
        {
            return Some(Exceeded {
                budget: format!("--budget-usd {}", usd(budget)),
                cost_usd: spent.cost_usd,
                why: format!(
                    "over budget: spent {} of its {}",
                    usd(spent.cost_usd),
                    usd(budget)
                ),
            });
        }
        if let Some(budget) = budgets
            .budget_tokens
            .filter(|budget| spent.tokens.total() >= *budget)
        {
            return Some(Exceeded {
                budget: format!("--budget-tokens {budget}"),
                cost_usd: spent.cost_usd,
                why: format!(
                    "over budget: used {} tokens of its {budget}",
                    spent.tokens.total()
                ),
            });
        }
        let group = group?;
        let budget = self.budget_of(group)?;
        let spent_by_group = self.of_group(group);
        (spent_by_group >= budget).then(|| Exceeded {
            budget: format!("group {group} --budget-usd {}", usd(budget)),
            cost_usd: spent_by_group,
            why: format!(
                "over budget: group {group} spent {} of its {}",
                usd(spent_by_group),
                usd(budget)
            ),
        })
    }
}

impl Engine {
    /// The cost ledger summed as `query` asks.
    pub fn cost(&self, query: &CostQuery) -> Result<CostReport, EngineError> {
        let by: CostBy = match &query.by {
            Some(by) => by.parse().map_err(EngineError::invalid)?,
            None => CostBy::default(),
        };
        let since = query
            .since
            .as_deref()
            .map(|since| parse_cost_since(since, Utc::now()))
            .transpose()
            .map_err(EngineError::invalid)?;
        let key = match by {
            CostBy::Agent => CostKey::Agent,
            CostBy::Group => CostKey::Group,
            CostBy::Model => CostKey::Model,
            CostBy::Day => CostKey::Day,
        };
        let (sums, total) = self.store().cost_report(key, since)?;
        let row = |sum: CostSum| {
            let key = match (by, sum.key.as_str()) {
                (CostBy::Group, "") => "-".to_string(),
                (CostBy::Model, "") => "unknown".to_string(),
                _ => sum.key,
            };
            CostRow {
                key,
                tokens: sum.tokens,
                cost_usd: sum.cost_usd,
                unpriced: sum.unpriced,
                runs: sum.runs,
            }
        };
        Ok(CostReport {
            by,
            // The ledger is kept by the hour.
            since: since.and_then(|since| {
                chrono::DateTime::from_timestamp(since.timestamp().div_euclid(3600) * 3600, 0)
            }),
            rows: sums.into_iter().map(row).collect(),
            total: CostRow {
                key: String::new(),
                ..row(total)
            },
        })
    }

    /// Refuses an agent of a group that has spent its budget: it would
    /// only be stopped at once.
    pub(crate) fn check_group_budget(&self, group: Option<&str>) -> Result<(), EngineError> {
        let Some(group) = group else { return Ok(()) };
        let spending = self.inner.lock_spending();
        match spending.budget_of(group) {
            Some(budget) if spending.of_group(group) >= budget => Err(EngineError::precondition(
                format!(
                    "group {group} has spent {} of its {} budget: raise it with `wrangle group set {group} --budget-usd X` or remove it with `--budget-usd none`",
                    usd(spending.of_group(group)),
                    usd(budget)
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Refuses to start again an agent that has spent its budget (or whose
    /// group has): it would only be stopped at once.
    pub(crate) fn check_budgets(&self, agent: &crate::model::Agent) -> Result<(), EngineError> {
        let identity = &agent.identity;
        let spending = self.inner.lock_spending();
        let spent = spending.of_agent(&identity.id);
        match spending.exceeded(&identity.spec.session, identity.spec.group.as_deref(), &spent) {
            Some(exceeded) => Err(EngineError::precondition(format!(
                "agent {} is {}: it would be stopped at once (a budget holds for all of an agent's runs; run a new agent for more)",
                identity.name, exceeded.why
            ))),
            None => Ok(()),
        }
    }

    /// What the fleet has spent since `since` (from the ledger, to the
    /// hour), and over all time.
    pub(crate) fn spent_since(&self, since: chrono::DateTime<Utc>) -> (f64, f64) {
        let all = self.inner.lock_spending().total().cost_usd;
        let recent = self
            .store()
            .cost_report(CostKey::Day, Some(since))
            .map(|(_, total)| total.cost_usd)
            .unwrap_or_else(|error| {
                tracing::warn!("cannot read the cost ledger: {error}");
                0.0
            });
        (recent, all)
    }
}

/// A budget reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Exceeded {
    /// Which budget, as it was given.
    pub budget: String,
    /// What was spent against it.
    pub cost_usd: f64,
    /// The reason of the stop.
    pub why: String,
}

/// The changes of the ledger from what a run's session said last
/// (`ledgered`, brought up to date) to what it says now (`costs`, by
/// model); an agent's name and group go with each.
pub fn ledger_deltas(
    agent: (&str, &str, Option<&str>),
    run: u32,
    costs: &BTreeMap<String, (TokenCounts, Option<f64>)>,
    ledgered: &mut BTreeMap<String, Ledgered>,
    at: chrono::DateTime<chrono::Utc>,
) -> Vec<CostDelta> {
    let (id, name, group) = agent;
    let models: Vec<String> = costs
        .keys()
        .chain(ledgered.keys())
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut deltas = Vec::new();
    for model in models {
        let (tokens, cost) = costs.get(&model).copied().unwrap_or_default();
        let before = ledgered.get(&model).copied().unwrap_or_default();
        let now = Ledgered {
            tokens,
            cost_usd: cost.unwrap_or(0.0),
        };
        let delta_tokens = SignedTokens::between(&before.tokens, &now.tokens);
        let delta_cost = now.cost_usd - before.cost_usd;
        if delta_tokens.is_zero() && delta_cost.abs() < 1e-12 {
            continue;
        }
        deltas.push(CostDelta {
            agent_id: id.to_string(),
            agent_name: name.to_string(),
            agent_group: group.map(str::to_owned),
            run,
            model: model.clone(),
            at,
            tokens: delta_tokens,
            cost_usd: delta_cost,
            unpriced: cost.is_none() && tokens.total() > 0,
        });
        ledgered.insert(model, now);
    }
    deltas
}

/// `$0.0523`: dollars to four places, as costs of single runs need.
pub fn usd(amount: f64) -> String {
    format!("${amount:.4}")
}

/// Adds signed changes of tokens and cost to a sum.
fn add_signed(sum: &mut Ledgered, tokens: &SignedTokens, cost_usd: f64) {
    let add = |count: &mut u64, change: i64| *count = count.saturating_add_signed(change);
    add(&mut sum.tokens.input, tokens.input);
    add(&mut sum.tokens.output, tokens.output);
    add(&mut sum.tokens.cache_read, tokens.cache_read);
    add(&mut sum.tokens.cache_write, tokens.cache_write);
    sum.cost_usd += cost_usd;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(input: u64, output: u64) -> TokenCounts {
        TokenCounts {
            input,
            output,
            ..TokenCounts::default()
        }
    }

    #[test]
    fn deltas_add_up_to_the_latest_figures_even_when_they_shrink() {
        let mut ledgered = BTreeMap::new();
        let at = chrono::Utc::now();
        let agent = ("a1", "one", Some("g"));
        let first = BTreeMap::from([("m".to_string(), (counts(100, 1), Some(0.01)))]);
        let second = BTreeMap::from([("m".to_string(), (counts(100, 50), Some(0.02)))]);
        // The final figures name the model differently and cost less.
        let last = BTreeMap::from([("m-2025".to_string(), (counts(90, 60), Some(0.015)))]);
        let mut spending = Spending::default();
        for costs in [&first, &second, &second, &last] {
            let deltas = ledger_deltas(agent, 1, costs, &mut ledgered, at);
            spending.apply(&deltas);
        }
        let spent = spending.of_agent("a1");
        assert_eq!(spent.tokens, counts(90, 60));
        assert!((spent.cost_usd - 0.015).abs() < 1e-12, "{spent:?}");
        assert!((spending.of_group("g") - 0.015).abs() < 1e-12);
        assert_eq!(spending.total().tokens, counts(90, 60));
        assert!(ledger_deltas(agent, 1, &last, &mut ledgered, at).is_empty());
    }

    #[test]
    fn the_first_budget_reached_is_named() {
        let mut spending = Spending::default();
        let spec = SessionSpec {
            budget_usd: Some(0.05),
            budget_tokens: Some(1000),
            ..SessionSpec::default()
        };
        let under = Ledgered {
            tokens: counts(10, 10),
            cost_usd: 0.01,
        };
        assert_eq!(spending.exceeded(&spec, Some("g"), &under), None);
        let over = Ledgered {
            cost_usd: 0.06,
            ..under
        };
        let exceeded = spending.exceeded(&spec, None, &over).unwrap();
        assert_eq!(exceeded.budget, "--budget-usd $0.0500");
        assert_eq!(exceeded.why, "over budget: spent $0.0600 of its $0.0500");
        let many = Ledgered {
            tokens: counts(900, 100),
            ..under
        };
        assert_eq!(
            spending.exceeded(&spec, None, &many).unwrap().budget,
            "--budget-tokens 1000"
        );
        spending.set_budget("g", Some(1.0));
        spending.by_group.insert("g".into(), 1.5);
        let group = spending
            .exceeded(&SessionSpec::default(), Some("g"), &under)
            .unwrap();
        assert_eq!(
            group.why,
            "over budget: group g spent $1.5000 of its $1.0000"
        );
        assert_eq!(
            spending.exceeded(&SessionSpec::default(), Some("h"), &under),
            None
        );
    }
}
