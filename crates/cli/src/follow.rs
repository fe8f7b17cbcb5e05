//! Following the daemon's event stream as a client should: JSON lines
//! read as they come, and after a lost connection (the daemon was killed
//! or restarted), an end of the stream (it shut down) or a `lagged`
//! notice, the stream opened again after the last event seen. Nothing is
//! missed and nothing comes twice, however often that happens.

use crate::client::{lost, Client};
use crate::lines::LineBuffer;
use crate::routes;
use anyhow::{anyhow, Result};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Method;
use std::collections::VecDeque;
use std::io::Write;
use std::time::Duration;
use wrangle_wire::{ErrorBody, EventsQuery, StreamMessage};

/// First pause before the stream is opened again; it doubles up to
/// [`RECONNECT_MAX`].
const RECONNECT_FIRST: Duration = Duration::from_millis(50);

/// Longest pause between two attempts at opening the stream.
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// One message of the stream, as it came. Only what a follower needs to
/// resume is read of every one ([`Head`]); the rest when it is asked for.
#[derive(Debug, Clone)]
pub struct Message {
    /// The line as the daemon sent it.
    pub raw: String,
}

impl Message {
    /// What it says, read whole.
    pub fn read(&self) -> Result<StreamMessage> {
        serde_json::from_str(&self.raw)
            .map_err(|error| anyhow!("the daemon sent an event wrangle cannot read: {error}"))
    }
}

/// What a follower reads of every message.
#[derive(Debug, Clone, serde::Deserialize)]
struct Head {
    /// An event's id (a notice has none).
    id: Option<u64>,
    /// The event's type, or `gap` or `lagged`.
    #[serde(rename = "type")]
    kind: String,
    /// A `lagged` notice's last event sent.
    last_id: Option<u64>,
}

/// A stream of events being followed.
pub struct Events {
    client: Client,
    query: EventsQuery,
    body: Option<Incoming>,
    lines: LineBuffer,
    pending: VecDeque<Vec<u8>>,
    /// Whether to say on stderr that the daemon went away and came back.
    announce: bool,
    /// Set while the daemon is away.
    away: bool,
}

impl Events {
    /// Events as `query` asks for them, from `client`'s daemon. Without
    /// `follow=false` the stream never ends by itself.
    pub fn new(client: Client, query: EventsQuery) -> Events {
        Events {
            client,
            query,
            body: None,
            lines: LineBuffer::default(),
            pending: VecDeque::new(),
            announce: false,
            away: false,
        }
    }

    /// Says on stderr when the daemon goes away and when it is back.
    pub fn announcing(mut self) -> Events {
        self.announce = true;
        self
    }

    /// Whether messages read from the daemon wait to be taken: a writer
    /// of them flushes when none does.
    pub fn buffered(&self) -> bool {
        !self.pending.is_empty()
    }

    fn follows(&self) -> bool {
        self.query.follow != Some(false)
    }

    /// The next event or `gap` notice; `None` once a stream that does not
    /// follow has ended.
    pub async fn next(&mut self) -> Result<Option<Message>> {
        let mut pause = RECONNECT_FIRST;
        loop {
            if let Some(line) = self.pending.pop_front() {
                let raw = String::from_utf8(line)
                    .map_err(|_| anyhow!("the daemon sent an event that is not UTF-8"))?;
                let head: Head = serde_json::from_str(&raw).map_err(|error| {
                    anyhow!("the daemon sent an event wrangle cannot read: {error}")
                })?;
                match (head.id, head.kind.as_str()) {
                    (Some(id), _) => self.query.since = Some(id.to_string()),
                    // Cut off for being slow: resume after the last event
                    // the daemon says it sent (the same as the last seen).
                    (None, "lagged") => {
                        if let Some(last_id) = head.last_id {
                            self.query.since = Some(last_id.to_string());
                        }
                        self.reset();
                        continue;
                    }
                    _ => {}
                }
                return Ok(Some(Message { raw }));
            }
            let Some(body) = self.body.as_mut() else {
                match self.open().await {
                    Ok(()) => pause = RECONNECT_FIRST,
                    Err(error) if error.is::<ErrorBody>() || !self.follows() => return Err(error),
                    Err(_) => {
                        self.went_away();
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(RECONNECT_MAX);
                    }
                }
                continue;
            };
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.pending.extend(self.lines.push(&data));
                    }
                }
                Some(Err(error)) => {
                    if !self.follows() {
                        let path = routes::events(&self.query);
                        return Err(lost(&Method::GET, &path, &error));
                    }
                    self.reset();
                }
                None => {
                    let rest = std::mem::take(&mut self.lines).finish();
                    self.pending.extend(rest);
                    if !self.follows() && self.pending.is_empty() {
                        return Ok(None);
                    }
                    // The daemon ended the stream: it shuts down.
                    self.reset();
                }
            }
        }
    }

    /// Opens the stream after the last event seen.
    async fn open(&mut self) -> Result<()> {
        let path = routes::events(&self.query);
        let (body, after) = self.client.get_json_lines(&path).await?;
        // Where a stream from "now" starts: resuming from there misses
        // nothing, even if no event comes before the next reconnect.
        if self.query.since.is_none() {
            self.query.since = after.map(|id| id.to_string());
        }
        if std::mem::take(&mut self.away) && self.announce {
            let after = self.query.since.as_deref().unwrap_or("the start");
            let _ = writeln!(
                std::io::stderr(),
                "wrangle: the daemon is back; events go on after {after}"
            );
        }
        self.body = Some(body);
        Ok(())
    }

    /// Drops the connection, keeping what was read of it.
    fn reset(&mut self) {
        self.body = None;
        self.lines = LineBuffer::default();
    }

    fn went_away(&mut self) {
        if !std::mem::replace(&mut self.away, true) && self.announce {
            let _ = writeln!(
                std::io::stderr(),
                "wrangle: lost the daemon; waiting for it to come back"
            );
        }
    }
}
