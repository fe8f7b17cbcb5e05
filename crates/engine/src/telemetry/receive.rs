//! Records arriving: who they are from (by the run's token, nothing
//! else), which of them are model calls not counted yet, and what those
//! change: the run's figures, the ledger and the events, in one
//! transaction; then the agent's budget is checked at once, so that the
//! call that crossed it stops the agent within a moment of its record.

use super::intake::Delivery;
use super::tools::{self, ToolActivity};
use super::{calls, key_id, RunTelemetry, Told};
use crate::adapters::CallFigures;
use crate::error::EngineError;
use crate::registry::{IdMap, Registry};
use crate::sessions::Published;
use crate::Engine;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use wrangle_store::Ledgered;
use wrangle_store::TelemetryCall;
use wrangle_wire::session::RetryView;
use wrangle_wire::{ErrorCode, State};

/// What a delivery of records changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Received {
    /// Records in it.
    pub records: usize,
    /// Model calls counted for the first time.
    pub new_calls: usize,
}

impl Engine {
    /// The run a telemetry `authorization` header (`Bearer TOKEN`) is
    /// for; an error (401) for none or a wrong one.
    pub fn telemetry_sender(
        &self,
        authorization: Option<&str>,
    ) -> Result<(String, u32), EngineError> {
        let refused = |why: &str| EngineError::new(ErrorCode::Unauthenticated, why.to_string());
        let header = authorization.ok_or_else(|| {
            refused("telemetry needs the run's token: `authorization: Bearer TOKEN`, as wrangle set it in the agent's environment")
        })?;
        let token = header
            .trim()
            .strip_prefix("Bearer ")
            .or_else(|| header.trim().strip_prefix("bearer "))
            .ok_or_else(|| refused("the authorization is not `Bearer TOKEN`"))?;
        self.inner
            .telemetry
            .credentials
            .verify(token)
            .ok_or_else(|| refused("the token is not one this daemon gave to a run"))
    }

    /// The user's own collector that bodies of run `run` of agent `id` are
    /// forwarded to, if the agent exported to one.
    pub fn telemetry_forward(&self, id: &str, run: u32) -> Option<super::Forward> {
        // Its own small map, not the registry, which a batch of records holds
        // while it writes: a delivery's forward must not wait for that.
        let forwards = self
            .inner
            .telemetry
            .forwards
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        forwards
            .get(id)
            .filter(|(of_run, _)| *of_run == run)
            .map(|(_, forward)| forward.clone())
    }

    /// Notes where run `run` of agent `id` forwards its telemetry, if
    /// anywhere (see [`Engine::telemetry_forward`]).
    pub(crate) fn note_telemetry_forward(
        &self,
        id: &str,
        run: u32,
        forward: Option<super::Forward>,
    ) {
        let mut forwards = self
            .inner
            .telemetry
            .forwards
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match forward {
            Some(forward) => {
                forwards.insert(id.to_string(), (run, forward));
            }
            None => {
                forwards.remove(id);
            }
        }
    }

    /// Takes a batch of deliveries (emptied): counts them under one hold
    /// of the registry (in `counting`, emptied again), stores them in one
    /// transaction, then tells each delivery what it changed and holds the
    /// agents to their budgets.
    pub(crate) fn receive_batch(&self, batch: &mut Vec<Delivery>, counting: &mut Counting) {
        let now = Utc::now();
        let mut answers = Vec::with_capacity(batch.len());
        let outcome = {
            let mut registry = self.registry();
            // What the batch changes of each agent's telemetry, over what
            // the registry holds (which is not copied).
            let mut new_calls = Vec::new();
            for delivery in batch.drain(..) {
                let received = self.count(&registry, &delivery, counting, &mut new_calls, now);
                answers.push((delivery.done, received));
            }
            // The ledger's changes of runs under way may wait (see
            // `Store::record_telemetry`): their end is written with them,
            // and a re-attach reads their session again. Those of a run
            // that ended (its exporter's last body came late) go now.
            let (mut deltas, mut ended_deltas) = (Vec::new(), Vec::new());
            let mut drafts = Vec::new();
            for work in counting.working.iter_mut().filter(|work| work.changed) {
                let Ok(agent) = registry.get(&work.id) else {
                    continue;
                };
                let Some(read) = agent.session.read.as_deref() else {
                    continue;
                };
                let changes =
                    self.ledger_changes(agent, read, Some(&work.calls), &mut work.ledgered, now);
                match agent.status.state {
                    State::Starting | State::Running | State::Stopping => deltas.extend(changes),
                    _ => ended_deltas.extend(changes),
                }
                let told = Told {
                    calls: &work.calls,
                    tools: work.tools.as_ref().unwrap_or(&work.base.tools),
                };
                drafts.extend(self.session_drafts(
                    agent,
                    read,
                    Some(told),
                    &mut work.published,
                    now,
                    false,
                ));
            }
            let stored = if new_calls.is_empty()
                && drafts.is_empty()
                && ended_deltas.is_empty()
                && deltas.is_empty()
            {
                Ok(())
            } else {
                self.inner
                    .write_with_events(drafts, |store, events| {
                        store.record_telemetry(&new_calls, &ended_deltas, &deltas, events)
                    })
                    .map(drop)
            };
            counting.at.clear();
            match stored {
                Ok(()) => {
                    let mut spending = self.inner.lock_spending();
                    spending.apply(&deltas);
                    spending.apply(&ended_deltas);
                    drop(spending);
                    let mut stops = Vec::new();
                    for work in counting.working.drain(..) {
                        let (id, changed) = (work.id.clone(), work.changed);
                        registry.update_findings(&id, |findings| {
                            if findings.session.run == work.run {
                                work.apply(findings.session);
                            }
                        });
                        if changed {
                            stops.extend(self.held_to_account(&registry, Some(&id), now));
                        }
                    }
                    Ok(stops)
                }
                Err(error) => {
                    counting.working.clear();
                    Err(error)
                }
            }
        };
        match outcome {
            Ok(stops) => {
                for (done, received) in answers {
                    let _ = done.send(Ok(received));
                }
                self.carry_out(stops);
            }
            Err(error) => {
                tracing::warn!("telemetry not stored: {error}");
                for (done, _) in answers {
                    let _ = done.send(Err(error.clone()));
                }
            }
        }
    }

    /// Folds the calls made more than [`KEEP_CALLS`](super::KEEP_CALLS)
    /// before `now` into their runs' figures (see
    /// [`wrangle_store::Store::fold_telemetry`]) and forgets their keys: a
    /// run that lasts weeks keeps an hour of calls one by one, on disk and
    /// in memory, not all of them. By the [`Intake`](super::Intake),
    /// between batches.
    pub(crate) fn fold_telemetry(&self, now: DateTime<Utc>) {
        let before = now - super::KEEP_CALLS;
        let folded = match self.store().fold_telemetry(before) {
            Ok(folded) => folded,
            Err(error) => {
                tracing::warn!("cannot fold the telemetry calls made before {before}: {error}");
                return;
            }
        };
        if folded == 0 {
            return;
        }
        tracing::debug!("folded {folded} telemetry calls made before {before}");
        let mut registry = self.registry();
        let receiving: Vec<String> = registry
            .agents()
            .filter(|agent| agent.session.telemetry.is_some())
            .map(|agent| agent.identity.id.clone())
            .collect();
        for id in &receiving {
            registry.update_findings(id, |findings| {
                if let Some(telemetry) = findings.session.telemetry.as_mut() {
                    Arc::make_mut(telemetry).forget_seen_before(before);
                }
            });
        }
    }

    /// Counts one delivery into `counting` (each call not counted yet
    /// goes to `new_calls` too); what it changed.
    fn count(
        &self,
        registry: &Registry,
        delivery: &Delivery,
        counting: &mut Counting,
        new_calls: &mut Vec<TelemetryCall>,
        now: DateTime<Utc>,
    ) -> Received {
        let (id, run, records) = (delivery.id.as_str(), delivery.run, &delivery.records);
        let mut received = Received {
            records: records.len(),
            new_calls: 0,
        };
        let Ok(agent) = registry.get(id) else {
            return received;
        };
        let findings = &agent.session;
        let (Some(telemetry), Some(_)) = (&findings.telemetry, &findings.read) else {
            return received;
        };
        if findings.run != run {
            tracing::debug!(
                "agent {id}: telemetry of run {run} came after run {} began; dropped",
                findings.run
            );
            return received;
        }
        let at = match counting.at.get(id) {
            Some(at) => *at,
            None => {
                counting.working.push(Working {
                    id: id.to_string(),
                    run,
                    base: telemetry.clone(),
                    new_keys: HashMap::new(),
                    calls: telemetry.calls.clone(),
                    last_at: telemetry.last_at,
                    retrying: telemetry.retrying.clone(),
                    retry_ended_at: telemetry.retry_ended_at,
                    tools: None,
                    ledgered: findings.ledgered.clone(),
                    published: findings.published.clone(),
                    changed: false,
                });
                counting
                    .at
                    .insert(id.to_string(), counting.working.len() - 1);
                counting.working.len() - 1
            }
        };
        let work = &mut counting.working[at];
        for record in records {
            tracing::trace!(agent = id, run, name = record.name, key = record.key, attributes = ?record.attributes, "telemetry record");
            work.last_at = work.last_at.max(Some(now));
            let key = key_id(&record.key);
            if work.base.has_seen(key) || work.new_keys.contains_key(&key) {
                continue;
            }
            if tools::is_tool_record(&record.name) {
                let tools = work.tools.get_or_insert_with(|| work.base.tools.clone());
                work.changed |= tools.take(record, now);
                continue;
            }
            match calls::failed_attempt(record) {
                Some(Some((attempt, error))) => {
                    let since = work.retrying.as_ref().map_or(now, |retry| retry.since);
                    work.retrying = Some(RetryView {
                        attempt,
                        max: None,
                        error: Some(error),
                        since,
                    });
                }
                Some(None) => work.retry_ended(now),
                None => {}
            }
            let Some(call) = calls::call_of(record) else {
                continue;
            };
            if super::too_old_to_count(record.at, now) {
                tracing::debug!(
                    "agent {id}: a model call made at {} came after its key was folded away; not counted",
                    record.at
                );
                continue;
            }
            work.retry_ended(now);
            // No call was made after it came: a time ahead (a clock that
            // runs fast, or one made up) would keep the call and its key
            // from ever being folded away.
            let at = record.at.min(now);
            let call = TelemetryCall {
                agent_id: id.to_string(),
                run,
                key: record.key.clone(),
                at,
                model: call.model,
                tokens: call.tokens,
                cost_usd: call.cost_usd,
            };
            work.new_keys.insert(key, at);
            work.calls.add(&call.model, &call.tokens, call.cost_usd);
            new_calls.push(call);
            received.new_calls += 1;
            work.changed = true;
        }
        received
    }
}

/// Where a batch is counted: kept by the intake from one batch to the
/// next and emptied after each, so that its room is made once (an agent's
/// [`Working`] is large: a map of them, made for each batch, spent a
/// tenth of the intake's time in `malloc`).
#[derive(Default)]
pub(crate) struct Counting {
    /// What the batch changes of each agent's telemetry, in the order the
    /// agents first came in it.
    working: Vec<Working>,
    /// Where each agent's is in `working`.
    at: IdMap<usize>,
}

/// What a batch changes of an agent's telemetry: the run's telemetry as
/// the registry holds it (`base`, shared, not copied: a run's keys grow
/// with every call) and what changed over it, put in its place once the
/// batch is stored (and dropped if it is not).
struct Working {
    id: String,
    run: u32,
    base: Arc<RunTelemetry>,
    /// Calls first counted in this batch, by key, with when each was made.
    new_keys: HashMap<u64, DateTime<Utc>>,
    calls: CallFigures,
    last_at: Option<DateTime<Utc>>,
    retrying: Option<RetryView>,
    retry_ended_at: Option<DateTime<Utc>>,
    /// Its tools, copied once a tool record comes.
    tools: Option<ToolActivity>,
    ledgered: BTreeMap<String, Ledgered>,
    published: Published,
    /// Its calls or tools changed: its ledger, events and budget are
    /// looked at.
    changed: bool,
}

impl Working {
    /// A retry under way, if any, ended `now`: its attempt went through.
    fn retry_ended(&mut self, now: DateTime<Utc>) {
        if self.retrying.take().is_some() {
            self.retry_ended_at = Some(now);
        }
    }

    /// Puts what the batch changed in `session`'s telemetry.
    fn apply(self, session: &mut crate::sessions::SessionFindings) {
        let Working {
            base,
            new_keys,
            calls,
            last_at,
            retrying,
            retry_ended_at,
            tools,
            ledgered,
            published,
            ..
        } = self;
        // The registry's copy and `base` are one: without them both the
        // run's telemetry is changed in place, not copied (a view that
        // holds it still makes a copy).
        drop(session.telemetry.take());
        let mut telemetry = Arc::unwrap_or_clone(base);
        telemetry.add_seen(new_keys);
        telemetry.calls = calls;
        telemetry.last_at = last_at;
        telemetry.retrying = retrying;
        telemetry.retry_ended_at = retry_ended_at;
        if let Some(tools) = tools {
            telemetry.tools = tools;
        }
        session.telemetry = Some(Arc::new(telemetry));
        session.ledgered = ledgered;
        session.published = published;
    }
}
