//! Agents' sessions in the daemon: which adapter reads a run (chosen when
//! it starts), what it has read (the sampler reads on as output comes,
//! see `sampler::run`), storing it with the offset it read to, the events
//! it makes, and the last read of a run that has ended.
//!
//! A session is stored in the same transaction as its events and moves
//! only forward (`Store::record_findings`), so a daemon killed at any
//! moment goes on from a consistent point and counts nothing twice.

use crate::adapters::{self, CallFigures, Reader, Tail};
use crate::error::EngineError;
use crate::events::Draft;
use crate::model::Agent;
use crate::telemetry::{self, Plan, RunTelemetry, Told};
use crate::Engine;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use wrangle_store::{CostDelta, Ledgered, SessionRow, TelemetryCall};
use wrangle_wire::{AdapterKind, EventKind, LogStream, TokenCounts};

/// Shortest time between two `agent.usage` events of one agent: a
/// thousand agents exporting a call a second made a thousand events a
/// second, each a row and an index entry of its own agent's; `inspect`
/// and the budgets have the live figure in any case.
const USAGE_EVERY: chrono::Duration = chrono::Duration::seconds(5);

/// What an adapter has read of a run, and up to where in its stdout.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRead {
    /// The adapter with what it counted.
    pub reader: Reader,
    /// The end of the last line it read.
    pub read_to: u64,
}

/// An agent's session as the engine keeps it, beside its status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionFindings {
    /// The run they are of.
    pub run: u32,
    /// What was read, as last stored; none when no adapter reads the run.
    pub read: Option<Arc<SessionRead>>,
    /// What was last published as events.
    pub published: Published,
    /// What the ledger holds of the run, by model.
    pub ledgered: BTreeMap<String, Ledgered>,
    /// The run's telemetry, when wrangle receives it.
    pub telemetry: Option<Arc<RunTelemetry>>,
    /// Why wrangle does not receive the run's telemetry, when it might.
    pub telemetry_note: Option<String>,
}

impl SessionFindings {
    /// The model calls the run's telemetry reported, if it is received.
    pub fn calls(&self) -> Option<&CallFigures> {
        self.telemetry.as_ref().map(|telemetry| &telemetry.calls)
    }
}

/// What the events of a session have said so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Published {
    session_id: Option<String>,
    models: Vec<String>,
    usage: Option<(TokenCounts, Option<f64>)>,
    usage_at: Option<DateTime<Utc>>,
    waiting: Option<String>,
    result: bool,
    /// Usage changed after the last `agent.usage`, too soon to say so yet.
    pub pending: bool,
}

impl Engine {
    /// Chooses the adapter of run `run` and what its telemetry is, and
    /// takes what was stored of both (a daemon that restarts goes on from
    /// there); returns the telemetry plan to start the run with. Call
    /// before the sampler can see the run running. `calls` are the run's
    /// telemetry calls as stored: a run that begins has none, and a
    /// re-attach reads those of every run at once
    /// ([`wrangle_store::Store::telemetry_calls_of_current_runs`]).
    pub(crate) fn begin_session(
        &self,
        id: &str,
        run: u32,
        calls: Vec<TelemetryCall>,
    ) -> Result<Option<Plan>, EngineError> {
        let agent = self.snapshot(id)?;
        let spec = &agent.identity.spec;
        let (kind, reason, model) = adapters::choose(spec.session.adapter, &spec.command);
        let planned = telemetry::plan(
            spec.session.telemetry.unwrap_or_default(),
            &spec.command,
            &spec.merged_env(),
            self.inner.telemetry.port,
            &self.inner.telemetry.credentials.token(id, run),
            (id, run),
        );
        let (plan, telemetry_note) = match planned {
            Ok(plan) => (Some(plan), None),
            Err(why) => (None, Some(why)),
        };
        self.note_telemetry_forward(id, run, plan.as_ref().and_then(|plan| plan.forward.clone()));
        // A run whose telemetry is received has a session even when no
        // adapter reads its output (`claude -p` printing text).
        let read = if kind == AdapterKind::None && plan.is_none() {
            None
        } else {
            let stored = self.store().session(id, run)?;
            let resumed = stored.and_then(|row| {
                let reader: Reader = serde_json::from_str(&row.reader)
                    .map_err(|error| {
                        tracing::warn!("agent {id} run {run}: its stored session cannot be read ({error}); it is read again from the start");
                    })
                    .ok()?;
                Some(SessionRead {
                    reader,
                    read_to: row.read_to,
                })
            });
            Some(Arc::new(resumed.unwrap_or(SessionRead {
                reader: Reader::new(kind, reason, model),
                read_to: 0,
            })))
        };
        let published = read
            .as_ref()
            .map(|read| published_of(&read.reader))
            .unwrap_or_default();
        let ledgered = match &read {
            Some(_) => self.store().ledgered(id, run)?,
            None => BTreeMap::new(),
        };
        let telemetry = match &plan {
            Some(plan) => {
                let store = self.store();
                Some(Arc::new(RunTelemetry::new(
                    plan.clone(),
                    &calls,
                    &store.telemetry_folded(id, run)?,
                )))
            }
            None => None,
        };
        self.registry().update_findings(id, |findings| {
            *findings.session = SessionFindings {
                run,
                read,
                published,
                ledgered,
                telemetry,
                telemetry_note,
            };
        });
        Ok(plan)
    }

    /// Reads what is left of run `run`'s output once it has ended (the
    /// sampler stops looking at a run that ended, and a final result is
    /// often its last line), stores it and publishes its events.
    pub(crate) fn finish_session(&self, id: &str, run: u32) {
        let Ok(agent) = self.snapshot(id) else { return };
        let findings = &agent.session;
        let Some(read) = findings.read.as_ref().filter(|_| findings.run == run) else {
            return;
        };
        let mut reader = read.reader.clone();
        let mut tail = Tail::at(read.read_to);
        let now = Utc::now();
        // Without an adapter only the telemetry counts: nothing to read.
        if reader.kind() != AdapterKind::None {
            let files = agent
                .identity
                .spec
                .log_files(&agent.status.run.dir, LogStream::Stdout);
            if let Err(error) = tail.read(&files, &mut reader, now) {
                tracing::warn!("agent {id} run {run}: cannot read the rest of its output: {error}");
            }
            tail.finish(&mut reader, now);
        }
        let read = Arc::new(SessionRead {
            reader,
            read_to: tail.read_to(),
        });
        let mut registry = self.registry();
        let Ok(agent) = registry.get(id) else { return };
        let mut published = agent.session.published.clone();
        let calls = agent.session.calls();
        let telemetry = agent.session.telemetry.as_deref().map(RunTelemetry::told);
        let drafts = self.session_drafts(agent, &read, telemetry, &mut published, now, true);
        let mut ledgered = agent.session.ledgered.clone();
        let deltas = self.ledger_changes(agent, &read, calls, &mut ledgered, now);
        let row = session_row(id, run, &read);
        let written = self.inner.write_with_events(drafts, |store, events| {
            store.record_findings(&[], &row.into_iter().collect::<Vec<_>>(), &deltas, events)
        });
        match written {
            Ok(()) => {
                self.inner.lock_spending().apply(&deltas);
                registry.update_findings(id, |findings| {
                    if findings.session.run == run {
                        findings.session.read = Some(read);
                        findings.session.published = published;
                        findings.session.ledgered = ledgered;
                    }
                })
            }
            Err(error) => tracing::warn!("agent {id} run {run}: cannot store its session: {error}"),
        }
    }

    /// The changes of the ledger from what `ledgered` holds of the agent's
    /// current run to what `read` says, with the telemetry's `calls`
    /// (`ledgered` is brought up to date).
    pub(crate) fn ledger_changes(
        &self,
        agent: &Agent,
        read: &SessionRead,
        calls: Option<&CallFigures>,
        ledgered: &mut BTreeMap<String, Ledgered>,
        now: DateTime<Utc>,
    ) -> Vec<CostDelta> {
        let identity = &agent.identity;
        let costs = read
            .reader
            .session()
            .figures(calls)
            .costs(&self.inner.prices);
        crate::spend::ledger_deltas(
            (&identity.id, &identity.name, identity.spec.group.as_deref()),
            agent.status.run.number,
            &costs,
            ledgered,
            now,
        )
    }

    /// The events of a session (read with the run's `telemetry`) that
    /// moved on from what `published` says, which is brought up to date.
    /// Usage goes out at most once every [`USAGE_EVERY`], unless `flush`.
    pub(crate) fn session_drafts(
        &self,
        agent: &Agent,
        read: &SessionRead,
        telemetry: Option<Told<'_>>,
        published: &mut Published,
        now: DateTime<Utc>,
        flush: bool,
    ) -> Vec<Draft> {
        let session = read.reader.session();
        let mut kinds = Vec::new();
        if (session.session_id.as_ref(), &session.models)
            != (published.session_id.as_ref(), &published.models)
        {
            published.session_id = session.session_id.clone();
            published.models = session.models.clone();
            kinds.push(EventKind::Session {
                adapter: read.reader.kind(),
                session_id: session.session_id.clone(),
                models: session.models.clone(),
            });
        }
        let waiting = session
            .waiting
            .clone()
            .or_else(|| telemetry.and_then(|told| told.tools.waiting()));
        if waiting != published.waiting {
            published.waiting = waiting.clone();
            kinds.push(EventKind::Waiting { waiting });
        }
        let calls = telemetry.map(|told| told.calls);
        // The figures alone, as the view would show them (not the whole
        // view: this runs for every delivery of telemetry).
        let figures = session.figures(calls);
        let view = Usage {
            tokens: figures.total_tokens(),
            cost_usd: figures.cost(&self.inner.prices).0,
        };
        let usage = (view.tokens, view.cost_usd);
        if let Some(result) = session.result.as_ref().filter(|_| !published.result) {
            published.result = true;
            published.usage = Some(usage);
            published.usage_at = Some(now);
            kinds.push(EventKind::Result {
                success: result.success,
                message: result.message.clone(),
                tokens: view.tokens,
                cost_usd: view.cost_usd,
            });
        }
        let due = flush || published.usage_at.is_none_or(|at| now - at >= USAGE_EVERY);
        let used = view.tokens.total() > 0 || view.cost_usd.is_some();
        let moved = published.usage != Some(usage) && used;
        published.pending = moved && !due;
        if moved && due {
            published.usage = Some(usage);
            published.usage_at = Some(now);
            kinds.push(EventKind::Usage {
                tokens: view.tokens,
                cost_usd: view.cost_usd,
            });
        }
        kinds
            .into_iter()
            .map(|kind| Draft::about(agent, kind, now))
            .collect()
    }
}

/// A session's tokens and cost, as its view shows them.
struct Usage {
    tokens: TokenCounts,
    cost_usd: Option<f64>,
}

/// The row that stores `read` for run `run` of agent `id` (none if it
/// cannot be serialized, which plain data always can).
pub(crate) fn session_row(id: &str, run: u32, read: &SessionRead) -> Option<SessionRow> {
    serde_json::to_string(&read.reader)
        .ok()
        .map(|reader| SessionRow {
            agent_id: id.to_string(),
            run,
            read_to: read.read_to,
            reader,
        })
}

/// What the events of a stored session have said already: a daemon that
/// restarts does not say it again.
fn published_of(reader: &Reader) -> Published {
    let session = reader.session();
    Published {
        session_id: session.session_id.clone(),
        models: session.models.clone(),
        usage: None,
        usage_at: None,
        waiting: session.waiting.clone(),
        result: session.result.is_some(),
        pending: false,
    }
}
