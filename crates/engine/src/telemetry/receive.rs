//! Records arriving: who they are from (by the run's token, nothing
//! else), which of them are model calls not counted yet, and what those
//! change: the run's figures, the ledger and the events, in one
//! transaction; then the agent's budget is checked at once, so that the
//! call that crossed it stops the agent within a moment of its record.

use super::intake::Delivery;
use super::{calls, Record, RunTelemetry};
use crate::error::EngineError;
use crate::registry::Registry;
use crate::sessions::Published;
use crate::Engine;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use wrangle_store::Ledgered;
use wrangle_store::TelemetryCall;
use wrangle_wire::session::RetryView;
use wrangle_wire::ErrorCode;

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
        // Its own small map, not the registry, which the intake holds
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

    /// Takes `records` from run `run` of agent `id` (as
    /// [`Engine::telemetry_sender`] found): each model call not counted
    /// yet is counted, stored and added to the ledger with its events.
    /// Answers once that is stored (see [`intake`](super::intake)).
    /// Records of a run that is not the agent's current one, or of an
    /// agent removed since, change nothing.
    pub async fn receive_telemetry(
        &self,
        id: &str,
        run: u32,
        records: Vec<Record>,
    ) -> Result<Received, EngineError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        self.inner.telemetry.intake.hand_over(Delivery {
            id: id.to_string(),
            run,
            records,
            done,
        })?;
        answer.await.map_err(|_| {
            EngineError::new(
                ErrorCode::Unavailable,
                "the daemon stopped before the telemetry was stored",
            )
        })?
    }

    /// Takes a batch of deliveries: counts them under one hold of the
    /// registry, stores them in one transaction, then tells each delivery
    /// what it changed and holds the agents to their budgets.
    pub(crate) fn receive_batch(&self, batch: Vec<Delivery>) {
        let now = Utc::now();
        let mut answers = Vec::with_capacity(batch.len());
        let outcome = {
            let mut registry = self.registry();
            // Each agent's telemetry as the batch changes it, copied once.
            let mut working: BTreeMap<String, Working> = BTreeMap::new();
            let mut new_calls = Vec::new();
            for delivery in batch {
                let received = self.count(&registry, &delivery, &mut working, &mut new_calls, now);
                answers.push((delivery.done, received));
            }
            let mut deltas = Vec::new();
            let mut drafts = Vec::new();
            for (id, work) in working.iter_mut().filter(|(_, work)| work.changed) {
                let Ok(agent) = registry.get(id) else {
                    continue;
                };
                let Some(read) = agent.session.read.as_deref() else {
                    continue;
                };
                deltas.extend(self.ledger_changes(
                    agent,
                    read,
                    Some(&work.telemetry.calls),
                    &mut work.ledgered,
                    now,
                ));
                drafts.extend(self.session_drafts(
                    agent,
                    read,
                    Some(&work.telemetry),
                    &mut work.published,
                    now,
                    false,
                ));
            }
            let stored = if new_calls.is_empty() && drafts.is_empty() {
                Ok(())
            } else {
                self.inner
                    .write_with_events(drafts, |store, events| {
                        store.record_telemetry(&new_calls, &deltas, events)
                    })
                    .map(drop)
            };
            match stored {
                Ok(()) => {
                    self.inner.lock_spending().apply(&deltas);
                    let mut stops = Vec::new();
                    for (id, work) in working {
                        let run = work.run;
                        let changed = work.changed;
                        let telemetry = Arc::new(work.telemetry);
                        registry.update_findings(&id, |findings| {
                            if findings.session.run == run {
                                findings.session.telemetry = Some(telemetry);
                                findings.session.ledgered = work.ledgered;
                                findings.session.published = work.published;
                            }
                        });
                        if changed {
                            stops.extend(self.held_to_account(&registry, Some(&id), now));
                        }
                    }
                    Ok(stops)
                }
                Err(error) => Err(error),
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

    /// Counts one delivery into `working` (each call not counted yet goes
    /// to `new_calls` too); what it changed.
    fn count(
        &self,
        registry: &Registry,
        delivery: &Delivery,
        working: &mut BTreeMap<String, Working>,
        new_calls: &mut Vec<TelemetryCall>,
        now: DateTime<Utc>,
    ) -> Received {
        let (id, run, records) = (&delivery.id, delivery.run, &delivery.records);
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
        let work = working.entry(id.clone()).or_insert_with(|| Working {
            run,
            telemetry: RunTelemetry::clone(telemetry),
            ledgered: findings.ledgered.clone(),
            published: findings.published.clone(),
            changed: false,
        });
        let counted = &mut work.telemetry;
        for record in records {
            tracing::trace!(agent = id, run, name = record.name, key = record.key, attributes = ?record.attributes, "telemetry record");
            counted.last_at = counted.last_at.max(Some(now));
            if counted.has_seen(&record.key) {
                continue;
            }
            if counted.tools.take(record, now) {
                work.changed = true;
                continue;
            }
            match calls::failed_attempt(record) {
                Some(Some((attempt, error))) => {
                    let since = counted.retrying.as_ref().map_or(now, |retry| retry.since);
                    counted.retrying = Some(RetryView {
                        attempt,
                        max: None,
                        error: Some(error),
                        since,
                    });
                }
                Some(None) => counted.retrying = None,
                None => {}
            }
            let Some(call) = calls::call_of(record) else {
                continue;
            };
            counted.retrying = None;
            let call = TelemetryCall {
                agent_id: id.clone(),
                run,
                key: record.key.clone(),
                at: record.at,
                model: call.model,
                tokens: call.tokens,
                cost_usd: call.cost_usd,
            };
            counted.count(&call);
            new_calls.push(call);
            received.new_calls += 1;
            work.changed = true;
        }
        received
    }
}

/// An agent's telemetry as a batch changes it.
struct Working {
    run: u32,
    telemetry: RunTelemetry,
    ledgered: BTreeMap<String, Ledgered>,
    published: Published,
    /// Its calls or tools changed: its ledger, events and budget are
    /// looked at.
    changed: bool,
}
