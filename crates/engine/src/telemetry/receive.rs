//! Records arriving: who they are from (by the run's token, nothing
//! else), which of them are model calls not counted yet, and what those
//! change: the run's figures, the ledger and the events, in one
//! transaction; then the agent's budget is checked at once, so that the
//! call that crossed it stops the agent within a moment of its record.

use super::{calls, Record, RunTelemetry};
use crate::error::EngineError;
use crate::Engine;
use chrono::Utc;
use std::sync::Arc;
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
        let registry = self.registry();
        let findings = &registry.get(id).ok()?.session;
        findings
            .telemetry
            .as_ref()
            .filter(|_| findings.run == run)
            .and_then(|telemetry| telemetry.plan.forward.clone())
    }

    /// Takes `records` from run `run` of agent `id` (as
    /// [`Engine::telemetry_sender`] found): each model call not counted
    /// yet is counted, stored and added to the ledger with its events.
    /// Records of a run that is not the agent's current one, or of an
    /// agent removed since, change nothing.
    pub fn receive_telemetry(
        &self,
        id: &str,
        run: u32,
        records: &[Record],
    ) -> Result<Received, EngineError> {
        let now = Utc::now();
        let mut received = Received {
            records: records.len(),
            new_calls: 0,
        };
        let stops = {
            let mut registry = self.registry();
            let Ok(agent) = registry.get(id) else {
                return Ok(received);
            };
            let findings = &agent.session;
            let (Some(telemetry), Some(read)) = (&findings.telemetry, &findings.read) else {
                return Ok(received);
            };
            if findings.run != run {
                tracing::debug!(
                    "agent {id}: telemetry of run {run} came after run {} began; dropped",
                    findings.run
                );
                return Ok(received);
            }
            for record in records {
                tracing::trace!(agent = id, run, name = record.name, key = record.key, attributes = ?record.attributes, "telemetry record");
            }
            let mut counted = RunTelemetry::clone(telemetry);
            let mut new_calls = Vec::new();
            for record in records {
                counted.last_at = counted.last_at.max(Some(now));
                if counted.has_seen(&record.key) || counted.tools.take(record, now) {
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
                    agent_id: id.to_string(),
                    run,
                    key: record.key.clone(),
                    at: record.at,
                    model: call.model,
                    tokens: call.tokens,
                    cost_usd: call.cost_usd,
                };
                counted.count(&call);
                new_calls.push(call);
            }
            received.new_calls = new_calls.len();
            let mut ledgered = findings.ledgered.clone();
            let mut published = findings.published.clone();
            let deltas = self.ledger_changes(agent, read, Some(&counted.calls), &mut ledgered, now);
            let drafts =
                self.session_drafts(agent, read, Some(&counted), &mut published, now, false);
            if !new_calls.is_empty() || !drafts.is_empty() {
                self.inner.write_with_events(drafts, |store, events| {
                    store.record_telemetry(&new_calls, &deltas, events)
                })?;
                self.inner.lock_spending().apply(&deltas);
            }
            let counted = Arc::new(counted);
            registry.update_findings(id, |findings| {
                if findings.session.run == run {
                    findings.session.telemetry = Some(counted);
                    findings.session.ledgered = ledgered;
                    findings.session.published = published;
                }
            });
            self.held_to_account(&registry, Some(id), now)
        };
        self.carry_out(stops);
        Ok(received)
    }
}
