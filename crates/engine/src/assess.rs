//! Health's moment of change: once per sampler tick (and after each probe
//! result), each running agent's health is assessed from what the sampler
//! saw, its probe and its silence, and compared with the last. A change is
//! stored and published as `agent.health`, with the probe's findings, in
//! one transaction for the whole tick. Status-file reports are published
//! as `agent.progress` in the same pass, at most one a second per agent.
//! A hung agent whose `--on-hang` says so is stopped from here.

use crate::adapters;
use crate::events::Draft;
use crate::health::{self, HealthInputs, MainProcess};
use crate::model::{Agent, Assessment};
use crate::sampler::Observation;
use crate::sessions::{session_row, Published, SessionRead};
use crate::telemetry::RunTelemetry;
use crate::Engine;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use wrangle_store::{HealthRow, Ledgered};
use wrangle_wire::parse::format_seconds;
use wrangle_wire::{Cause, EventKind, Health, OnHang, State};

/// Shortest time between two progress events of one agent.
const PROGRESS_EVERY: chrono::Duration = chrono::Duration::seconds(1);

/// What one pass found to change about one agent.
struct Found {
    id: String,
    health: Assessment,
    /// Progress and message to record as published.
    progress: Option<(Option<f64>, Option<String>)>,
    /// What its adapter read (when it read more), what its events said
    /// and what the ledger holds.
    session: Option<SessionUpdate>,
}

/// What changed of an agent's session in one pass.
struct SessionUpdate {
    /// What the adapter read, when it read more.
    read: Option<Arc<SessionRead>>,
    published: Published,
    ledgered: BTreeMap<String, Ledgered>,
}

impl Engine {
    /// Assesses every running agent (after a sampler tick).
    pub(crate) fn assess_all(&self) {
        self.assess(None, false);
    }

    /// Assesses one agent after a probe result; `probe_changed` when its
    /// findings changed and are to be stored.
    pub(crate) fn assess_one(&self, id: &str, probe_changed: bool) {
        self.assess(Some(id), probe_changed);
    }

    fn assess(&self, only: Option<&str>, probe_changed: bool) {
        let now = Utc::now();
        let mut hung = Vec::new();
        let stops;
        {
            let mut registry = self.registry();
            let observations = self.inner.lock_observations();
            let agents: Vec<&Agent> = match only {
                Some(id) => registry.get(id).ok().into_iter().collect(),
                None => registry.agents().collect(),
            };
            let mut drafts = Vec::new();
            let mut rows = Vec::new();
            let mut session_rows = Vec::new();
            let mut costs = Vec::new();
            let mut found = Vec::new();
            for agent in agents {
                if !agent.status.is_live() {
                    continue;
                }
                let observed = observations.of(agent);
                // What the agent said comes before what wrangle makes of it.
                let session = self.session_findings(agent, observed, now, &mut drafts, &mut costs);
                let assessed = assessment(agent, now, observed);
                let changed = assessed.health != agent.health.health;
                if changed {
                    let kind = EventKind::Health {
                        from: agent.health.health,
                        to: assessed.health,
                        reason: assessed.reason.clone(),
                    };
                    drafts.push(Draft::about(agent, kind, now));
                }
                if changed || probe_changed {
                    rows.push(HealthRow {
                        agent_id: agent.identity.id.clone(),
                        health: assessed.health,
                        reason: assessed.reason.clone(),
                        probe: serde_json::to_string(&agent.probe).ok(),
                    });
                }
                if assessed.health == Health::Hung
                    && agent.status.state == State::Running
                    && agent.identity.spec.restart.on_hang != OnHang::None
                {
                    let why = assessed.reason.clone().unwrap_or_default();
                    hung.push((agent.identity.id.clone(), agent.status.run.number, why));
                }
                let progress = observed.and_then(|seen| progress(agent, seen, now));
                if let Some((progress, message)) = &progress {
                    let kind = EventKind::Progress {
                        progress: *progress,
                        message: message.clone(),
                    };
                    drafts.push(Draft::about(agent, kind, now));
                }
                if let Some(SessionUpdate {
                    read: Some(read), ..
                }) = &session
                {
                    session_rows.extend(session_row(
                        &agent.identity.id,
                        agent.status.run.number,
                        read,
                    ));
                }
                if assessed != agent.health || progress.is_some() || session.is_some() {
                    found.push(Found {
                        id: agent.identity.id.clone(),
                        health: assessed,
                        progress,
                        session,
                    });
                }
            }
            if !drafts.is_empty() || !rows.is_empty() || !session_rows.is_empty() {
                let written = self.inner.write_with_events(drafts, |store, events| {
                    store.record_findings(&rows, &session_rows, &costs, events)
                });
                if let Err(error) = written {
                    // Memory keeps the health of before: the next pass
                    // finds the change again and tries again.
                    tracing::warn!("cannot record changes of health: {error}");
                    return;
                }
                self.inner.lock_spending().apply(&costs);
            }
            for Found {
                id,
                health,
                progress,
                session,
            } in found
            {
                registry.update_findings(&id, |findings| {
                    *findings.health = health;
                    if let Some(update) = session {
                        if let Some(read) = update.read {
                            findings.session.read = Some(read);
                        }
                        findings.session.published = update.published;
                        findings.session.ledgered = update.ledgered;
                    }
                    if let Some(published) = progress {
                        findings.reported.run = findings.status.run.number;
                        findings.reported.published = Some(published);
                        findings.reported.at = Some(now);
                    }
                });
            }
            stops = self.held_to_account(&registry, only, now);
        }
        let hung = hung.into_iter().map(|(id, run, why)| Stop {
            id,
            run,
            cause: Cause::Hang,
            why: format!("hung ({why})"),
            event: None,
        });
        self.carry_out(hung.chain(stops).collect());
    }

    /// Records the events of `stops` (a budget exceeded), then stops each
    /// agent for its cause.
    pub(crate) fn carry_out(&self, stops: Vec<Stop>) {
        let events: Vec<Draft> = stops.iter().filter_map(|stop| stop.event.clone()).collect();
        if !events.is_empty() {
            let written = self
                .inner
                .write_with_events(events, |store, events| store.append_events(events));
            if let Err(error) = written {
                tracing::error!("cannot record budgets exceeded: {error}");
            }
        }
        for Stop {
            id,
            run,
            cause,
            why,
            ..
        } in stops
        {
            if let Err(error) = self.stop_for(&id, run, cause, why) {
                tracing::error!("cannot stop agent {id} ({cause}): {error}");
            }
        }
    }

    /// The running agents (all, or `only`) to stop for what their session
    /// says: over a budget (with the event that says so), or lingering
    /// after their final result.
    pub(crate) fn held_to_account(
        &self,
        registry: &crate::registry::Registry,
        only: Option<&str>,
        now: DateTime<Utc>,
    ) -> Vec<Stop> {
        let spending = self.inner.lock_spending();
        let mut stops = Vec::new();
        let agents: Box<dyn Iterator<Item = &Agent>> = match only {
            Some(id) => Box::new(registry.get(id).ok().into_iter()),
            None => Box::new(registry.agents()),
        };
        for agent in agents {
            if agent.status.state != State::Running {
                continue;
            }
            let identity = &agent.identity;
            let group = identity.spec.group.as_deref();
            // Most agents have no budget: what they spent is not looked up.
            let budgets = &identity.spec.session;
            let budgeted = budgets.budget_usd.is_some()
                || budgets.budget_tokens.is_some()
                || group.is_some_and(|group| spending.budget_of(group).is_some());
            let exceeded = budgeted.then(|| {
                let spent = spending.of_agent(&identity.id);
                Some((spending.exceeded(budgets, group, &spent)?, spent))
            });
            if let Some((exceeded, spent)) = exceeded.flatten() {
                let kind = EventKind::BudgetExceeded {
                    budget: exceeded.budget,
                    cost_usd: Some(exceeded.cost_usd),
                    tokens: spent.tokens,
                };
                stops.push(Stop {
                    id: identity.id.clone(),
                    run: agent.status.run.number,
                    cause: Cause::Budget,
                    why: exceeded.why,
                    event: Some(Draft::about(agent, kind, now)),
                });
                continue;
            }
            if let Some(why) = lingering(agent, now) {
                stops.push(Stop {
                    id: identity.id.clone(),
                    run: agent.status.run.number,
                    cause: Cause::Lingered,
                    why,
                    event: None,
                });
            }
        }
        stops
    }
}

/// A stop the session calls for.
pub(crate) struct Stop {
    id: String,
    run: u32,
    cause: Cause,
    why: String,
    /// The event to record first.
    event: Option<Draft>,
}

/// Why the agent is to be stopped for going on after its final result,
/// if it is: an agent that ends after its result (or was given
/// `--linger`) has had longer than its linger since.
fn lingering(agent: &Agent, now: DateTime<Utc>) -> Option<String> {
    let findings = &agent.session;
    let read = findings
        .read
        .as_ref()
        .filter(|_| findings.run == agent.status.run.number)?;
    let result_at = read.reader.session().result_at?;
    let spec = &agent.identity.spec;
    if spec.session.linger_never {
        return None;
    }
    let linger = match spec.session.linger_ms {
        Some(ms) => std::time::Duration::from_millis(ms),
        None if adapters::ends_after_result(read.reader.kind(), &spec.command) => {
            crate::spend::DEFAULT_LINGER
        }
        None => return None,
    };
    let since = (now - result_at).to_std().ok()?;
    (since >= linger).then(|| {
        format!(
            "lingered: still running {} after its final result",
            format_seconds(linger)
        )
    })
}

impl Engine {
    /// What the agent's adapter read that is newer than what is stored,
    /// with its events (added to `drafts`) and its changes of the ledger
    /// (added to `costs`); also the usage events that were too soon to go
    /// out before. `None` when nothing changed.
    fn session_findings(
        &self,
        agent: &Agent,
        observed: Option<&Observation>,
        now: DateTime<Utc>,
        drafts: &mut Vec<Draft>,
        costs: &mut Vec<wrangle_store::CostDelta>,
    ) -> Option<SessionUpdate> {
        let findings = &agent.session;
        if findings.run != agent.status.run.number {
            return None;
        }
        let stored = findings.read.as_ref()?;
        let newer = observed
            .and_then(|seen| seen.session.clone())
            .filter(|seen| !Arc::ptr_eq(seen, stored) && seen.read_to >= stored.read_to);
        if newer.is_none() && !findings.published.pending {
            return None;
        }
        let read = newer.as_ref().unwrap_or(stored);
        let calls = findings.calls();
        let telemetry = findings.telemetry.as_deref().map(RunTelemetry::told);
        let mut published = findings.published.clone();
        drafts.extend(self.session_drafts(agent, read, telemetry, &mut published, now, false));
        let mut ledgered = findings.ledgered.clone();
        costs.extend(self.ledger_changes(agent, read, calls, &mut ledgered, now));
        Some(SessionUpdate {
            read: newer,
            published,
            ledgered,
        })
    }
}

impl Agent {
    /// Assesses health, separate from state, and why; `observed` is what
    /// the sampler saw of the current run.
    pub fn assess(
        &self,
        now: DateTime<Utc>,
        observed: Option<&Observation>,
    ) -> (Health, Option<String>) {
        // What the adapter read: the sampler's latest, else what is stored.
        let session = observed
            .and_then(|seen| seen.session.as_deref())
            .or(self.session.read.as_deref())
            .filter(|_| self.session.run == self.status.run.number)
            .map(|read| read.reader.session());
        let telemetry = self
            .session
            .telemetry
            .as_deref()
            .filter(|_| self.session.run == self.status.run.number);
        let waiting = session
            .and_then(|session| session.waiting.clone())
            .or_else(|| telemetry.and_then(RunTelemetry::waiting));
        health::assess(&HealthInputs {
            waiting: waiting.as_deref(),
            explained: session
                .and_then(|session| session.busy(now))
                .or_else(|| telemetry.and_then(|telemetry| telemetry.busy(now))),
            state: self.status.state,
            main: observed.map_or(MainProcess::NotSampled, |seen| seen.main),
            // The silence a retry explained counts from its end: once
            // Codex's last attempt goes through, its answer may take a
            // moment to reach stdout, a moment nothing explains any more.
            silence: health::silence(
                now,
                [
                    self.status.run.started_at,
                    observed.and_then(|seen| seen.last_output_at),
                    observed.and_then(|seen| seen.last_heartbeat_at),
                    telemetry.and_then(|telemetry| telemetry.retry_ended_at),
                ],
            ),
            idle_timeout: self.identity.spec.idle_timeout(),
            probe_failure: self.probe_failure().as_deref(),
            status_file_error: observed.and_then(|seen| seen.report_error.as_deref()),
        })
    }
}

/// The agent's health now. A main process the sampler did not find has
/// just ended (its end is being recorded): that says nothing new.
fn assessment(agent: &Agent, now: DateTime<Utc>, observed: Option<&Observation>) -> Assessment {
    if observed.is_some_and(|seen| seen.main == MainProcess::Missing) {
        return agent.health.clone();
    }
    let (health, reason) = agent.assess(now, observed);
    Assessment { health, reason }
}

/// The report to publish as progress, if it changed since the last one
/// published and that was long enough ago (a report that comes sooner is
/// published at a later pass, the latest one then).
fn progress(
    agent: &Agent,
    seen: &Observation,
    now: DateTime<Utc>,
) -> Option<(Option<f64>, Option<String>)> {
    let (progress, message) = (seen.report.progress, seen.report.message.as_deref());
    let reported = &agent.reported;
    let same_run = reported.run == agent.status.run.number;
    let last = reported.published.as_ref().filter(|_| same_run);
    match last {
        // Compared without a copy: this runs for every agent every tick.
        Some((last_progress, last_message))
            if *last_progress == progress && last_message.as_deref() == message =>
        {
            return None
        }
        None if progress.is_none() && message.is_none() => return None,
        _ => {}
    }
    let recent = same_run && reported.at.is_some_and(|at| now - at < PROGRESS_EVERY);
    (!recent).then(|| (progress, message.map(str::to_owned)))
}
