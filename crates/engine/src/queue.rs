//! Concurrency limits: the daemon's `--max-running` and each group's
//! `max_running`. An agent that would exceed one is `queued`; queued
//! agents start highest priority first, then in the order they came, as
//! slots free up. Admission holds one lock from counting to recording
//! `starting`, so two starts never take the same slot.

use crate::error::EngineError;
use crate::events::Draft;
use crate::model::Agent;
use crate::spend::Spending;
use crate::Engine;
use chrono::Utc;
use std::collections::BTreeMap;
use wrangle_wire::{parse, EventKind, GroupView, SetGroup, State};

/// The limits in force.
#[derive(Debug, Default, Clone)]
pub(crate) struct Limits {
    /// Across all agents (`wrangle daemon --max-running`).
    pub global: Option<u32>,
    /// Per group, as stored.
    pub groups: BTreeMap<String, u32>,
}

impl Limits {
    /// True when no limit can queue anything: the common case costs no
    /// counting.
    fn is_unlimited(&self) -> bool {
        self.global.is_none() && self.groups.is_empty()
    }
}

/// True for an agent that holds a slot: it runs, or will again without
/// being admitted (a restart after its backoff).
fn holds_slot(state: State) -> bool {
    matches!(
        state,
        State::Starting | State::Running | State::Stopping | State::Backoff
    )
}

/// Slots taken, across all agents and per group.
struct Occupancy {
    all: u32,
    groups: BTreeMap<String, u32>,
}

impl Occupancy {
    fn of<'a>(agents: impl Iterator<Item = &'a Agent>) -> Occupancy {
        let mut occupancy = Occupancy {
            all: 0,
            groups: BTreeMap::new(),
        };
        for agent in agents.filter(|agent| holds_slot(agent.status.state)) {
            occupancy.take(agent.identity.spec.group.as_deref());
        }
        occupancy
    }

    fn take(&mut self, group: Option<&str>) {
        self.all += 1;
        if let Some(group) = group {
            *self.groups.entry(group.to_string()).or_default() += 1;
        }
    }

    /// Why an agent of `group` cannot start now, or `None` if it can.
    fn refusal(&self, limits: &Limits, group: Option<&str>) -> Option<String> {
        if let Some(max) = limits.global {
            if self.all >= max {
                return Some(format!(
                    "waiting for a slot: {} of --max-running {max} agents run",
                    self.all
                ));
            }
        }
        let group = group?;
        let max = *limits.groups.get(group)?;
        let running = self.groups.get(group).copied().unwrap_or(0);
        (running >= max).then(|| {
            format!("waiting for a slot in group {group}: {running} of max-running {max} run")
        })
    }
}

/// Queued agents in the order they start: priority, then arrival.
fn queue_order(agents: &mut [&Agent]) {
    agents.sort_by(|a, b| {
        b.identity
            .spec
            .priority
            .cmp(&a.identity.spec.priority)
            .then(a.identity.created_at.cmp(&b.identity.created_at))
            .then(a.identity.id.cmp(&b.identity.id))
    });
}

impl Engine {
    /// Why a new agent of `group` with `priority` must wait, or `None` to
    /// start it now. A newcomer also waits behind queued agents of its
    /// group that come first in the queue, so limits are fair. Call with
    /// the admission lock held until the agent is recorded.
    pub(crate) fn queue_reason(&self, group: Option<&str>, priority: i32) -> Option<String> {
        let limits = self.limits();
        if limits.is_unlimited() {
            return None;
        }
        let registry = self.registry();
        queue_reason_among(&limits, || registry.agents(), group, priority)
    }

    /// Starts queued agents while slots are free, in queue order. Cheap
    /// when nothing is queued; call it whenever a slot may have freed.
    pub(crate) fn admit_queued(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let engine = self.clone();
        runtime.spawn(async move {
            let admitted = {
                let _admission = engine.inner.admission.lock().await;
                engine.pick_admitted()
            };
            for id in admitted {
                let engine = engine.clone();
                tokio::spawn(async move {
                    if let Err(error) = engine.start_run(&id).await {
                        tracing::error!("cannot start queued agent {id}: {error}");
                    }
                });
            }
        });
    }

    /// Moves the queued agents that fit to `starting` and returns them.
    fn pick_admitted(&self) -> Vec<String> {
        let limits = self.limits();
        let (mut occupancy, queued) = {
            let registry = self.registry();
            if registry.queued() == 0 {
                return Vec::new();
            }
            let mut queued: Vec<&Agent> = registry
                .agents()
                .filter(|agent| agent.status.state == State::Queued)
                .collect();
            if queued.is_empty() {
                return Vec::new();
            }
            queue_order(&mut queued);
            let queued: Vec<(String, Option<String>)> = queued
                .into_iter()
                .map(|agent| (agent.identity.id.clone(), agent.identity.spec.group.clone()))
                .collect();
            (Occupancy::of(registry.agents()), queued)
        };
        let mut admitted = Vec::new();
        for (id, group) in queued {
            if occupancy.refusal(&limits, group.as_deref()).is_some() {
                // A full group does not hold back agents of other groups;
                // a full daemon holds back everyone.
                if limits.global.is_some_and(|max| occupancy.all >= max) {
                    break;
                }
                continue;
            }
            let moved = self.transition(&id, |status| {
                if status.state == State::Queued {
                    status.state = State::Starting;
                    status.reason = None;
                }
            });
            match moved {
                Ok(agent) if agent.status.state == State::Starting => {
                    occupancy.take(group.as_deref());
                    admitted.push(id);
                }
                Ok(_) => {}
                Err(error) => tracing::error!("cannot admit queued agent {id}: {error}"),
            }
        }
        admitted
    }

    /// Every group that has a limit, a budget or an agent, by name.
    pub fn groups(&self) -> Vec<GroupView> {
        let limits = self.limits();
        let registry = self.registry();
        let spending = self.inner.lock_spending();
        let mut names: Vec<&str> = limits.groups.keys().map(String::as_str).collect();
        names.extend(spending.budgeted_groups());
        let mut groups: BTreeMap<String, GroupView> = names
            .into_iter()
            .map(|name| (name.to_string(), group_view(name, &limits, &spending)))
            .collect();
        for agent in registry.agents() {
            let Some(name) = &agent.identity.spec.group else {
                continue;
            };
            let view = groups
                .entry(name.clone())
                .or_insert_with(|| group_view(name, &limits, &spending));
            view.agents += 1;
            if holds_slot(agent.status.state) {
                view.running += 1;
            } else if agent.status.state == State::Queued {
                view.queued += 1;
            }
        }
        groups.into_values().collect()
    }

    /// Sets (or with null removes) a group's limit and budget, stored
    /// first; then starts whatever the new limit lets through (a budget
    /// reached stops its running agents at the sampler's next pass).
    pub async fn set_group(&self, name: &str, request: SetGroup) -> Result<GroupView, EngineError> {
        parse::validate_name(name)
            .map_err(|error| EngineError::invalid(error.replace("name", "group name")))?;
        if request.max_running == Some(Some(0)) {
            return Err(EngineError::invalid(
                "max_running must be at least 1 (null removes the limit)",
            ));
        }
        if let Some(Some(budget)) = request.budget_usd {
            parse::check_budget_usd(budget).map_err(EngineError::invalid)?;
        }
        if request.max_running.is_none() && request.budget_usd.is_none() {
            return Err(EngineError::invalid(
                "nothing to set: give max_running, budget_usd or both",
            ));
        }
        {
            let _admission = self.inner.admission.lock().await;
            let limits = self.limits();
            let max_running = request
                .max_running
                .unwrap_or_else(|| limits.groups.get(name).copied());
            let budget_usd = request
                .budget_usd
                .unwrap_or_else(|| self.inner.lock_spending().budget_of(name));
            let changed = Draft::general(
                EventKind::GroupChanged {
                    group: name.to_string(),
                    max_running,
                    budget_usd,
                },
                Utc::now(),
            );
            self.inner
                .write_with_events(vec![changed], |store, events| {
                    store.set_group(name, max_running, budget_usd, events)
                })?;
            let mut limits = self.inner.limits.lock().unwrap_or_else(|e| e.into_inner());
            match max_running {
                Some(max) => limits.groups.insert(name.to_string(), max),
                None => limits.groups.remove(name),
            };
            drop(limits);
            self.inner.lock_spending().set_budget(name, budget_usd);
        }
        self.admit_queued();
        Ok(self
            .groups()
            .into_iter()
            .find(|group| group.name == name)
            .unwrap_or_else(|| {
                let limits = self.limits();
                group_view(name, &limits, &self.inner.lock_spending())
            }))
    }

    pub(crate) fn limits(&self) -> Limits {
        self.inner
            .limits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A group with no agent counted yet.
fn group_view(name: &str, limits: &Limits, spending: &Spending) -> GroupView {
    GroupView {
        name: name.to_string(),
        max_running: limits.groups.get(name).copied(),
        running: 0,
        queued: 0,
        agents: 0,
        budget_usd: spending.budget_of(name),
        spent_usd: spending.of_group(name),
    }
}

/// Why an agent of `group` with `priority` must wait among `agents` (all
/// there are, those of a batch being recorded included) under `limits`,
/// or `None` to start it now.
pub(crate) fn queue_reason_among<'a, I: Iterator<Item = &'a Agent>>(
    limits: &Limits,
    agents: impl Fn() -> I,
    group: Option<&str>,
    priority: i32,
) -> Option<String> {
    if limits.is_unlimited() {
        return None;
    }
    if let Some(refusal) = Occupancy::of(agents()).refusal(limits, group) {
        return Some(refusal);
    }
    let ahead = agents().any(|agent| {
        agent.status.state == State::Queued
            && agent.identity.spec.priority >= priority
            && (limits.global.is_some() || agent.identity.spec.group.as_deref() == group)
    });
    ahead.then(|| "waiting behind agents queued before it".to_string())
}
