//! Every change as an event, in one place: a change is described as
//! [`Draft`]s, numbered from the store's next id and written in the same
//! transaction as the change itself ([`crate::Inner::write_with_events`]),
//! and only once committed announced on the bus, in id order, to every
//! live subscriber (see [`stream`]).
//!
//! The bus holds the last few thousand events in memory; a subscriber
//! that falls behind it reads the rest from the store, so that what a
//! client gets never depends on how fast the daemon is.

mod drafts;
pub mod stream;

pub use crate::model::Agent;
use chrono::{DateTime, Utc};
pub(crate) use drafts::{of_state, of_transition};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};
pub use wrangle_store::EventRecord;
use wrangle_wire::{Cause, Event, EventAgent, EventKind};

/// How the event stream is run.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Events the bus keeps in memory for subscribers that are behind.
    pub buffer: usize,
    /// Most subscribers at once.
    pub max_subscribers: usize,
    /// How long a subscriber may leave its queue full before it is cut
    /// off with `lagged`.
    pub lag_timeout: Duration,
    /// Time between keep-alives on an idle stream, when the client does
    /// not ask for another.
    pub heartbeat: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            buffer: 8192,
            max_subscribers: 512,
            lag_timeout: Duration::from_secs(5),
            heartbeat: Duration::from_secs(15),
        }
    }
}

/// An event before it has an id.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    /// What happened.
    pub kind: EventKind,
    /// The agent it is about.
    pub agent: Option<EventAgent>,
    /// The run it is about.
    pub run: Option<u32>,
    /// When.
    pub at: DateTime<Utc>,
}

impl Draft {
    /// An event about `agent` and its current run.
    pub fn about(agent: &Agent, kind: EventKind, at: DateTime<Utc>) -> Draft {
        Draft {
            kind,
            agent: Some(EventAgent {
                id: agent.identity.id.clone(),
                name: agent.identity.name.clone(),
                group: agent.identity.spec.group.clone(),
            }),
            run: Some(agent.status.run.number).filter(|run| *run > 0),
            at,
        }
    }

    /// An event about no agent (the daemon, a group).
    pub fn general(kind: EventKind, at: DateTime<Utc>) -> Draft {
        Draft {
            kind,
            agent: None,
            run: None,
            at,
        }
    }
}

/// Drafts numbered and rendered, ready to be written, with what they add
/// to the daemon's counters once they are.
pub(crate) struct Batch {
    /// The events as stored and sent.
    pub records: Vec<EventRecord>,
    tally: Tally,
}

/// Numbers `drafts` from `next` and renders each to its JSON.
pub(crate) fn number(next: u64, drafts: Vec<Draft>) -> Batch {
    let mut tally = Tally::default();
    let records = drafts
        .into_iter()
        .enumerate()
        .map(|(index, draft)| {
            tally.count(&draft);
            let group = match (&draft.kind, &draft.agent) {
                (EventKind::GroupChanged { group, .. }, _) => Some(group.clone()),
                (_, Some(agent)) => agent.group.clone(),
                (_, None) => None,
            };
            let event = Event {
                id: next + index as u64,
                time: draft.at,
                kind: draft.kind,
                agent: draft.agent,
                run: draft.run,
            };
            EventRecord {
                id: event.id,
                at: event.time,
                kind: event.kind.name().to_string(),
                agent_id: event.agent.as_ref().map(|agent| agent.id.clone()),
                agent_name: event.agent.as_ref().map(|agent| agent.name.clone()),
                group,
                run: event.run,
                // An event is plain data: it always serializes.
                body: serde_json::to_string(&event).unwrap_or_default(),
            }
        })
        .collect();
    Batch { records, tally }
}

/// What the daemon has counted since it started, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Events per type.
    pub events: std::collections::BTreeMap<&'static str, u64>,
    /// Runs whose exec was confirmed.
    pub starts: u64,
    /// Of those, runs after an agent's first.
    pub restarts: u64,
    /// Runs that ended, by cause.
    pub exits: std::collections::BTreeMap<Cause, u64>,
    /// Event streams cut off for not keeping up.
    pub lagged: u64,
}

/// Counts of one batch, added to [`Counters`] once it is written.
#[derive(Debug, Default)]
struct Tally(Counters);

impl Tally {
    fn count(&mut self, draft: &Draft) {
        let counters = &mut self.0;
        *counters.events.entry(draft.kind.name()).or_default() += 1;
        match &draft.kind {
            EventKind::Running { .. } => {
                counters.starts += 1;
                if draft.run.is_some_and(|run| run > 1) {
                    counters.restarts += 1;
                }
            }
            EventKind::Exited { cause, .. } | EventKind::Backoff { cause, .. } => {
                *counters
                    .exits
                    .entry(cause.unwrap_or(Cause::Exit))
                    .or_default() += 1;
            }
            _ => {}
        }
    }
}

/// The bus: events announced once written, to every subscriber.
pub struct EventBus {
    sender: broadcast::Sender<Arc<EventRecord>>,
    /// The id of the last event announced.
    last: AtomicU64,
    counters: Mutex<Counters>,
    /// Becomes true when the daemon shuts down: streams end.
    closing: watch::Sender<bool>,
    subscribers: AtomicUsize,
    /// Streams cut off for not keeping up.
    lagged: AtomicU64,
    config: EventsConfig,
}

impl EventBus {
    /// A bus whose last announced event is `last` (the store's newest).
    pub(crate) fn new(config: EventsConfig, last: u64) -> EventBus {
        let (sender, _) = broadcast::channel(config.buffer.max(16));
        let (closing, _) = watch::channel(false);
        EventBus {
            sender,
            last: AtomicU64::new(last),
            counters: Mutex::new(Counters::default()),
            closing,
            subscribers: AtomicUsize::new(0),
            lagged: AtomicU64::new(0),
            config,
        }
    }

    /// Announces a written batch. Called with the store locked, so that
    /// events are announced in the order of their ids.
    pub(crate) fn announce(&self, batch: Batch) {
        let Some(newest) = batch.records.last().map(|record| record.id) else {
            return;
        };
        {
            let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
            let tally = batch.tally.0;
            for (kind, count) in tally.events {
                *counters.events.entry(kind).or_default() += count;
            }
            counters.starts += tally.starts;
            counters.restarts += tally.restarts;
            for (cause, count) in tally.exits {
                *counters.exits.entry(cause).or_default() += count;
            }
        }
        self.last.store(newest, Ordering::Release);
        for record in batch.records {
            // No subscriber is no error.
            let _ = self.sender.send(Arc::new(record));
        }
    }

    /// The id of the last event announced.
    pub fn last_id(&self) -> u64 {
        self.last.load(Ordering::Acquire)
    }

    /// What was counted since the daemon started.
    pub fn counters(&self) -> Counters {
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        counters.lagged = self.lagged.load(Ordering::Relaxed);
        counters
    }

    /// Ends every stream: the daemon is going away.
    pub(crate) fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Subscribers now.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Relaxed)
    }
}
