//! The event stream under a start: N agents started over the API while
//! `wrangle events --json` processes (real clients, as a user runs them)
//! follow from the id the fleet started at. Every subscriber must get
//! every event of the start, once and in order; the figures are how long
//! until the last of them had the last event, and deliveries per second.

use crate::start::{self, ApiStart, Start, PHASE_TIMEOUT};
use crate::wrangle::Wrangle;
use crate::{cleanup, client::Api};
use anyhow::{bail, Context, Result};
use hyper::{Method, StatusCode};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How the stream fared during a start.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Subscribers that followed.
    pub subscribers: usize,
    /// Events of the start (each subscriber's share: all of them).
    pub events: u64,
    /// The start itself, with the subscribers on.
    pub start: Start,
    /// From the first create until every subscriber had the last event.
    pub all_delivered: Duration,
    /// After the last agent ran, until every subscriber had the last event.
    pub lag: Duration,
    /// Events received by all subscribers together, per second of
    /// `all_delivered`.
    pub per_second: f64,
    /// Events some subscriber missed, in all (must be 0).
    pub lost: u64,
    /// Events some subscriber got twice, in all (must be 0).
    pub twice: u64,
    /// CPU the subscriber processes used, all together, in seconds.
    pub subscribers_cpu: f64,
}

/// What one subscriber got: each event's id, and when the last came.
#[derive(Debug, Default)]
struct Received {
    ids: Vec<u64>,
    last_at: Option<Instant>,
}

/// A `wrangle events --json` process and what it printed.
struct Subscriber {
    child: Child,
    received: Arc<Mutex<Received>>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Only the id of an event line is read.
#[derive(serde::Deserialize)]
struct Id {
    id: Option<u64>,
}

/// The id of the newest event, from the `wrangle-event-id` header.
async fn newest_event(api: &Api) -> Result<u64> {
    let answer = api.call(Method::GET, "/v1/agents?all=true", None).await?;
    if answer.status != StatusCode::OK {
        bail!("GET /v1/agents answered {}", answer.status);
    }
    answer
        .event_id
        .context("the daemon sends no wrangle-event-id: is it an older wrangle?")
}

fn subscribe(wrangle: &Wrangle, since: u64) -> Result<Subscriber> {
    let mut child = wrangle
        .command(["events", "--json", "--since", &since.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start `wrangle events`")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let received = Arc::new(Mutex::new(Received::default()));
    let sink = received.clone();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let Ok(Id { id: Some(id) }) = serde_json::from_str::<Id>(&line) else {
                continue;
            };
            let mut received = sink.lock().unwrap_or_else(|e| e.into_inner());
            received.ids.push(id);
            received.last_at = Some(Instant::now());
        }
    });
    Ok(Subscriber { child, received })
}

/// Starts agents over the API as `how` says (see [`start::start_via_api`])
/// with `subscribers` followers of the event stream, and checks what each
/// got.
pub async fn start_with_subscribers(how: ApiStart<'_>, subscribers: usize) -> Result<Delivery> {
    let (wrangle, api) = (how.wrangle, how.api);
    let since = newest_event(api).await?;
    let followers: Vec<Subscriber> = (0..subscribers)
        .map(|_| subscribe(wrangle, since))
        .collect::<Result<_>>()?;
    // Each is connected (and so costs what it costs) before the start.
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let start = start::start_via_api(how).await?;
    let running = Instant::now();
    let newest = newest_event(api).await?;
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let behind = followers
            .iter()
            .filter(|follower| {
                let received = follower.received.lock().unwrap_or_else(|e| e.into_inner());
                received.ids.last().is_none_or(|last| *last < newest)
            })
            .count();
        if behind == 0 {
            break;
        }
        if Instant::now() > deadline || cleanup::interrupted() {
            bail!("{behind} of {subscribers} subscribers never got event {newest}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let events = newest - since;
    let (mut lost, mut twice, mut total, mut last_at) = (0, 0, 0u64, started);
    for follower in &followers {
        let received = follower.received.lock().unwrap_or_else(|e| e.into_inner());
        let mut seen = std::collections::BTreeSet::new();
        for id in received
            .ids
            .iter()
            .filter(|id| **id > since && **id <= newest)
        {
            if !seen.insert(*id) {
                twice += 1;
            }
        }
        lost += events - seen.len() as u64;
        if received.ids.windows(2).any(|pair| pair[0] >= pair[1]) {
            bail!("a subscriber got events out of order");
        }
        total += received.ids.len() as u64;
        last_at = last_at.max(received.last_at.unwrap_or(started));
    }
    let all_delivered = last_at - started;
    let hz = crate::procinfo::ticks_per_second() as f64;
    let subscribers_cpu = followers
        .iter()
        .filter_map(|follower| crate::procinfo::cpu_ticks(follower.child.id() as i32))
        .sum::<u64>() as f64
        / hz;
    Ok(Delivery {
        subscribers,
        events,
        start,
        all_delivered,
        lag: last_at.saturating_duration_since(running),
        per_second: total as f64 / all_delivered.as_secs_f64().max(1e-9),
        lost,
        twice,
        subscribers_cpu,
    })
}
