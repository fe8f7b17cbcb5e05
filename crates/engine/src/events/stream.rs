//! One client's subscription to the event stream: the backlog from the
//! store, then live events from the bus, with no gap and nothing twice.
//!
//! The subscription takes its place on the bus first and reads the store
//! after, so every event is in one or the other (or both: ids decide, and
//! nothing at or before the last id sent goes out again). A subscriber
//! that falls behind the bus is not dropped for it: it reads what it
//! missed from the store, where every event is. Only a client that leaves
//! its queue full for the lag timeout is cut off, with a last `lagged`
//! notice, so the daemon's memory stays bounded whatever clients do: a
//! queue of a few hundred events each, and the bus.

use crate::error::EngineError;
use crate::Engine;
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio::time::{sleep, Instant};
use wrangle_store::{AgentMatch, EventReader, EventRecord, Kept};
use wrangle_wire::events::{parse_since, parse_type_filter, Since};
use wrangle_wire::{parse, ErrorCode, EventsQuery, Notice};

/// Batches of events a client's queue holds before its stream waits for
/// it.
const QUEUE: usize = 16;

/// Most events read from the store, or taken from the bus, at a time: a
/// burst goes to a client as one batch (one write), not one by one.
const BATCH: usize = 256;

/// Least time between two writes to one client while events keep coming:
/// the first event after a quiet spell goes out at once, those of a busy
/// spell in batches, so that a start of a thousand agents is a hundred
/// writes and wake-ups per client, not three thousand.
const COALESCE: Duration = Duration::from_millis(50);

/// Longest keep-alive interval a client may ask for.
const MAX_HEARTBEAT: Duration = Duration::from_secs(3600);

/// Shortest keep-alive interval a client may ask for.
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

/// One message for the client.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// Events, one or more, in the order of their ids.
    Events(Vec<Arc<EventRecord>>),
    /// A gap or lagged notice.
    Notice(Notice),
    /// Nothing happened for a while; the connection is alive.
    KeepAlive,
}

/// A client's stream: read [`Subscription::items`] to its end, then
/// [`Subscription::last`] (a final `lagged` notice, if the client was cut
/// off).
#[derive(Debug)]
pub struct Subscription {
    /// The messages, in order.
    pub items: mpsc::Receiver<Item>,
    /// The last message, when the stream was cut.
    pub last: mpsc::Receiver<Item>,
    /// The id the stream starts after, when it is known before the first
    /// event (it is unless a time was asked for, or the oldest kept):
    /// resuming from it misses nothing, even before an event came.
    pub after: Option<u64>,
}

/// Which events a client wants.
#[derive(Debug, Clone, Default)]
struct Filter {
    agent: Option<AgentMatch>,
    group: Option<String>,
    kinds: Vec<String>,
}

impl Filter {
    fn matches(&self, event: &EventRecord) -> bool {
        let agent = match &self.agent {
            None => true,
            Some(AgentMatch::Id(id)) => event.agent_id.as_deref() == Some(id),
            Some(AgentMatch::IdOrName(reference)) => {
                event.agent_id.as_deref() == Some(reference)
                    || event.agent_name.as_deref() == Some(reference)
            }
        };
        agent
            && self
                .group
                .as_ref()
                .is_none_or(|group| event.group.as_ref() == Some(group))
            && (self.kinds.is_empty()
                || self
                    .kinds
                    .iter()
                    .any(|prefix| event.kind.starts_with(prefix.as_str())))
    }
}

/// Where a stream starts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Start {
    /// After this id.
    After(u64),
    /// With the first event at or after this time.
    At(DateTime<Utc>),
    /// With the oldest event kept.
    Oldest,
}

impl Engine {
    /// Subscribes to events as `query` asks, resuming after
    /// `last_event_id` (the SSE header, which wins over `since`: a browser
    /// reconnects with the same URL and the id it got last). Bad input is
    /// refused here, before anything is sent.
    pub fn events(
        &self,
        query: &EventsQuery,
        last_event_id: Option<&str>,
    ) -> Result<Subscription, EngineError> {
        let filter = self.event_filter(query)?;
        let follow = query.follow.unwrap_or(true);
        let heartbeat = match query.heartbeat {
            None => self.inner.events.config.heartbeat,
            Some(seconds) if seconds.is_finite() => Duration::from_secs_f64(seconds.max(0.0)),
            Some(_) => Duration::ZERO,
        };
        if !(MIN_HEARTBEAT..=MAX_HEARTBEAT).contains(&heartbeat) {
            return Err(EngineError::invalid(format!(
                "heartbeat {:?} is out of range: give seconds from 0.1 to 3600",
                query.heartbeat.unwrap_or_default()
            )));
        }
        let since = match last_event_id.map(str::trim).filter(|id| !id.is_empty()) {
            Some(id) => Some(id.parse::<u64>().map(Since::Id).map_err(|_| {
                EngineError::invalid(format!("Last-Event-ID {id:?} is not an event id"))
            })?),
            None => query
                .since
                .as_deref()
                .map(|since| parse_since(since, Utc::now()))
                .transpose()
                .map_err(EngineError::invalid)?,
        };
        let bus = &self.inner.events;
        if bus.subscribers.load(Ordering::Relaxed) >= bus.config.max_subscribers {
            return Err(EngineError::new(
                ErrorCode::Unavailable,
                format!(
                    "too many event streams ({} open); close one and try again",
                    bus.config.max_subscribers
                ),
            ));
        }
        // Taken together with the store locked, which every announcement
        // holds: the receiver has every event after `newest`.
        let (receiver, newest) = {
            let _store = self.store();
            (bus.sender.subscribe(), bus.last_id())
        };
        let start = match since {
            Some(Since::Id(id)) if id > newest => {
                return Err(EngineError::invalid(format!(
                    "event {id} is beyond the newest event ({newest}); ids come from this daemon's home only"
                )))
            }
            Some(Since::Id(id)) => Start::After(id),
            Some(Since::Time(time)) => Start::At(time),
            None if follow => Start::After(newest),
            None => Start::Oldest,
        };
        let (items, items_receiver) = mpsc::channel(QUEUE);
        let (last, last_receiver) = mpsc::channel(1);
        bus.subscribers.fetch_add(1, Ordering::Relaxed);
        let subscriber = Subscriber {
            engine: self.clone(),
            database: self.database(),
            filter,
            heartbeat,
            lag_timeout: bus.config.lag_timeout,
            until: (!follow).then_some(newest),
            cursor: 0,
            last_sent: 0,
            last_write: None,
            reader: None,
            items,
            last,
        };
        let closing = bus.closing.subscribe();
        tokio::spawn(subscriber.run(start, receiver, closing));
        Ok(Subscription {
            items: items_receiver,
            last: last_receiver,
            after: match start {
                Start::After(id) => Some(id),
                Start::At(_) | Start::Oldest => None,
            },
        })
    }

    /// The filter a query asks for, checked.
    fn event_filter(&self, query: &EventsQuery) -> Result<Filter, EngineError> {
        let agent = match query.agent.as_deref() {
            None => None,
            Some(reference) => match self.registry().resolve(reference) {
                Ok(id) => Some(AgentMatch::Id(id)),
                // An agent gone (or still to come) is matched by what its
                // events call it.
                Err(error) if error.code == ErrorCode::NotFound && !reference.is_empty() => {
                    Some(AgentMatch::IdOrName(reference.to_string()))
                }
                Err(error) => return Err(error),
            },
        };
        if let Some(group) = &query.group {
            parse::validate_name(group)
                .map_err(|error| EngineError::invalid(error.replace("name", "group name")))?;
        }
        let kinds = match query.kind.as_deref() {
            Some(kinds) => parse_type_filter(kinds).map_err(EngineError::invalid)?,
            None => Vec::new(),
        };
        Ok(Filter {
            agent,
            group: query.group.clone(),
            kinds,
        })
    }
}

/// Why a stream ended before its client went away.
enum End {
    /// The client closed it.
    Gone,
    /// The client was cut off for not keeping up.
    Lagged,
    /// The store could not be read.
    Failed(String),
}

/// One stream being served.
struct Subscriber {
    engine: Engine,
    database: PathBuf,
    filter: Filter,
    heartbeat: Duration,
    lag_timeout: Duration,
    /// Without `follow`: the newest event when the stream began, where it
    /// ends.
    until: Option<u64>,
    /// The last event looked at (sent, or not wanted).
    cursor: u64,
    /// The last event sent.
    last_sent: u64,
    /// When events were last sent.
    last_write: Option<Instant>,
    /// Open while the backlog is read.
    reader: Option<EventReader>,
    items: mpsc::Sender<Item>,
    last: mpsc::Sender<Item>,
}

impl Subscriber {
    async fn run(
        mut self,
        start: Start,
        bus: broadcast::Receiver<Arc<EventRecord>>,
        closing: tokio::sync::watch::Receiver<bool>,
    ) {
        match self.serve(start, bus, closing).await {
            Ok(()) | Err(End::Gone) => {}
            Err(End::Lagged) => {
                self.engine
                    .inner
                    .events
                    .lagged
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(End::Failed(error)) => {
                tracing::warn!("an event stream ended: cannot read the store: {error}")
            }
        }
        self.engine
            .inner
            .events
            .subscribers
            .fetch_sub(1, Ordering::Relaxed);
    }

    async fn serve(
        &mut self,
        start: Start,
        mut bus: broadcast::Receiver<Arc<EventRecord>>,
        mut closing: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), End> {
        self.begin(start).await?;
        self.catch_up().await?;
        if self.until.is_some() {
            return Ok(());
        }
        let mut idle = pin!(sleep(self.heartbeat));
        if *closing.borrow_and_update() {
            return Ok(());
        }
        loop {
            tokio::select! {
                received = bus.recv() => match received {
                    Ok(event) => {
                        if let Some(ready) = self.last_write.map(|at| at + COALESCE) {
                            tokio::time::sleep_until(ready).await;
                        }
                        let (batch, behind) = burst(event, &mut bus);
                        self.offer(batch).await?;
                        if behind {
                            bus = self.catch_up_from_store(bus).await?;
                        }
                    }
                    Err(RecvError::Lagged(_)) => bus = self.catch_up_from_store(bus).await?,
                    Err(RecvError::Closed) => return Ok(()),
                },
                () = &mut idle => {
                    // A client whose queue is full is busy, not idle.
                    let _ = self.items.try_send(Item::KeepAlive);
                }
                () = self.items.closed() => return Err(End::Gone),
                // It only ever becomes true.
                _ = closing.changed() => return Ok(()),
            }
            idle.as_mut().reset(Instant::now() + self.heartbeat);
        }
    }

    /// Behind the bus: takes a new place on it, then reads what was
    /// dropped from the store, where every event is.
    async fn catch_up_from_store(
        &mut self,
        bus: broadcast::Receiver<Arc<EventRecord>>,
    ) -> Result<broadcast::Receiver<Arc<EventRecord>>, End> {
        let bus = bus.resubscribe();
        self.check_gap(None).await?;
        self.catch_up().await?;
        Ok(bus)
    }

    /// Sets the cursor where the stream starts, saying so first when
    /// events it asks for are no longer kept.
    async fn begin(&mut self, start: Start) -> Result<(), End> {
        match start {
            Start::After(id) => {
                self.cursor = id;
                self.last_sent = id;
                self.check_gap(Some(id)).await
            }
            Start::Oldest => {
                let kept = self.read(|reader| reader.kept()).await?;
                self.cursor = kept.pruned_through;
                self.last_sent = kept.pruned_through;
                Ok(())
            }
            Start::At(time) => {
                let (kept, first) = self
                    .read(move |reader| Ok((reader.kept()?, reader.first_at_or_after(time)?)))
                    .await?;
                self.cursor = match first {
                    Some(id) => id - 1,
                    None => kept.newest.unwrap_or(kept.pruned_through),
                };
                self.last_sent = self.cursor;
                let older_than_kept = kept.oldest_at.is_none_or(|oldest| time < oldest);
                if kept.pruned_through > 0 && older_than_kept {
                    let oldest = kept.oldest.unwrap_or(kept.pruned_through + 1);
                    self.send(Item::Notice(Notice::Gap {
                        since: None,
                        oldest,
                    }))
                    .await?;
                }
                Ok(())
            }
        }
    }

    /// Says `gap` when events after the cursor were pruned, and moves the
    /// cursor past them.
    async fn check_gap(&mut self, asked: Option<u64>) -> Result<(), End> {
        let kept = self.read(|reader| reader.kept()).await?;
        if self.cursor < kept.pruned_through {
            let Kept {
                pruned_through,
                oldest,
                ..
            } = kept;
            self.send(Item::Notice(Notice::Gap {
                since: Some(asked.unwrap_or(self.cursor)),
                oldest: oldest.unwrap_or(pruned_through + 1),
            }))
            .await?;
            self.cursor = pruned_through;
        }
        Ok(())
    }

    /// Sends every event after the cursor that the store holds (up to
    /// `until` without `follow`), then closes the reader.
    async fn catch_up(&mut self) -> Result<(), End> {
        loop {
            let after = self.cursor;
            let agent = self.filter.agent.clone();
            let batch = self
                .read(move |reader| reader.after(after, agent.as_ref(), BATCH))
                .await?;
            let Some(newest) = batch.last().map(|event| event.id) else {
                break;
            };
            let until = self.until.unwrap_or(u64::MAX);
            let past_the_end = newest > until;
            let events = batch
                .into_iter()
                .filter(|event| event.id <= until)
                .map(Arc::new)
                .collect();
            self.offer(events).await?;
            if past_the_end {
                break;
            }
            self.cursor = self.cursor.max(newest);
        }
        self.reader = None;
        Ok(())
    }

    /// Sends those of `events` that are new to this stream and wanted, as
    /// one batch.
    async fn offer(&mut self, events: Vec<Arc<EventRecord>>) -> Result<(), End> {
        let mut wanted = Vec::with_capacity(events.len());
        for event in events {
            if event.id <= self.cursor {
                continue;
            }
            self.cursor = event.id;
            if self.filter.matches(&event) {
                wanted.push(event);
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        self.send(Item::Events(wanted)).await
    }

    /// Queues an item for the client, waiting for room at most the lag
    /// timeout; past it the client is cut off with a last `lagged`.
    async fn send(&mut self, item: Item) -> Result<(), End> {
        let id = match &item {
            Item::Events(events) => events.last().map(|event| event.id),
            _ => None,
        };
        match tokio::time::timeout(self.lag_timeout, self.items.send(item)).await {
            Ok(Ok(())) => {
                if let Some(id) = id {
                    self.last_sent = id;
                    self.last_write = Some(Instant::now());
                }
                Ok(())
            }
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => {
                let _ = self.last.try_send(Item::Notice(Notice::Lagged {
                    last_id: self.last_sent,
                }));
                Err(End::Lagged)
            }
        }
    }

    /// Runs `read` with the stream's reader (opened on first use), off
    /// the async threads.
    async fn read<T: Send + 'static>(
        &mut self,
        read: impl FnOnce(&EventReader) -> wrangle_store::Result<T> + Send + 'static,
    ) -> Result<T, End> {
        let reader = self.reader.take();
        let database = self.database.clone();
        let done = tokio::task::spawn_blocking(move || {
            let reader = match reader {
                Some(reader) => reader,
                None => EventReader::open(&database)?,
            };
            let value = read(&reader)?;
            Ok::<_, wrangle_store::StoreError>((reader, value))
        })
        .await;
        match done {
            Ok(Ok((reader, value))) => {
                self.reader = Some(reader);
                Ok(value)
            }
            Ok(Err(error)) => Err(End::Failed(error.to_string())),
            Err(error) => Err(End::Failed(error.to_string())),
        }
    }
}

/// `first` and what else the bus holds already (at most a batch): a
/// burst goes out together. True as well when the bus dropped events this
/// subscriber had not taken yet.
fn burst(
    first: Arc<EventRecord>,
    bus: &mut broadcast::Receiver<Arc<EventRecord>>,
) -> (Vec<Arc<EventRecord>>, bool) {
    let mut batch = vec![first];
    while batch.len() < BATCH {
        match bus.try_recv() {
            Ok(event) => batch.push(event),
            Err(broadcast::error::TryRecvError::Lagged(_)) => return (batch, true),
            Err(_) => break,
        }
    }
    (batch, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, agent: Option<(&str, &str)>, group: Option<&str>) -> EventRecord {
        EventRecord {
            id: 1,
            at: Utc::now(),
            kind: kind.into(),
            agent_id: agent.map(|(id, _)| id.to_string()),
            agent_name: agent.map(|(_, name)| name.to_string()),
            group: group.map(str::to_string),
            run: None,
            body: "{}".into(),
        }
    }

    #[test]
    fn a_filter_takes_agent_group_and_type_prefixes_together() {
        let exited = event("agent.exited", Some(("a1", "build")), Some("ci"));
        let daemon = event("daemon.started", None, None);
        assert!(Filter::default().matches(&exited) && Filter::default().matches(&daemon));
        let by_id = Filter {
            agent: Some(AgentMatch::Id("a1".into())),
            ..Filter::default()
        };
        assert!(by_id.matches(&exited) && !by_id.matches(&daemon));
        let by_name = Filter {
            agent: Some(AgentMatch::IdOrName("build".into())),
            ..Filter::default()
        };
        assert!(by_name.matches(&exited));
        let group = Filter {
            group: Some("ci".into()),
            ..Filter::default()
        };
        assert!(group.matches(&exited) && !group.matches(&daemon));
        let kinds = Filter {
            kinds: vec!["agent.health".into(), "daemon.".into()],
            ..Filter::default()
        };
        assert!(!kinds.matches(&exited) && kinds.matches(&daemon));
        let all = Filter {
            agent: Some(AgentMatch::Id("a1".into())),
            group: Some("ci".into()),
            kinds: vec!["agent.ex".into()],
        };
        assert!(all.matches(&exited));
        assert!(!all.matches(&event("agent.exited", Some(("a1", "build")), None)));
    }
}
