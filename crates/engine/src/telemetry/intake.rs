//! Deliveries of records, taken by one thread in batches: what arrives
//! within a few milliseconds of a delivery (or while the last batch was
//! being written) joins it, is counted under one hold of the registry and
//! stored in one transaction. A thousand agents exporting once a second
//! cost a couple of hundred transactions a second, not a thousand, and a
//! delivery waits only for its batch, so a record shows in `inspect` as
//! soon as its answer says so.

use super::receive::{Counting, Received};
use super::Record;
use crate::error::EngineError;
use crate::Inner;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Weak;
use std::thread;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use wrangle_wire::ErrorCode;

/// Deliveries waiting at most: past it, an exporter is asked to come back
/// (503), as OTLP exporters do with backoff.
const WAITING_MAX: usize = 8192;

/// How long a batch gathers deliveries after its first: short against
/// the 100 ms a record may take to show, long enough that a busy second's
/// thousand deliveries make a few hundred transactions at most.
const GATHER: Duration = Duration::from_millis(25);

/// Most deliveries in one batch.
const BATCH_MAX: usize = 1024;

/// How often the intake folds the calls made more than
/// [`KEEP_CALLS`](super::KEEP_CALLS) ago (see [`Engine::fold_telemetry`]).
const FOLD_EVERY: Duration = Duration::from_secs(600);

/// The records of one body, from one run.
pub(crate) struct Delivery {
    /// The agent.
    pub id: String,
    /// Its run.
    pub run: u32,
    /// The records.
    pub records: Vec<Record>,
    /// Told what the delivery changed once it is stored.
    pub done: oneshot::Sender<Result<Received, EngineError>>,
}

/// Where deliveries are handed to the intake thread.
#[derive(Debug)]
pub(crate) struct Intake {
    sender: SyncSender<Delivery>,
}

impl Intake {
    /// An intake, and what its thread takes deliveries from (see
    /// [`start`]).
    pub fn new() -> (Intake, Receiver<Delivery>) {
        let (sender, receiver) = mpsc::sync_channel(WAITING_MAX);
        (Intake { sender }, receiver)
    }

    /// Hands `delivery` over; an error (503) when too many wait.
    pub fn hand_over(&self, delivery: Delivery) -> Result<(), EngineError> {
        self.sender.try_send(delivery).map_err(|error| match error {
            TrySendError::Full(_) => EngineError::new(
                ErrorCode::Unavailable,
                "too many telemetry deliveries wait: send again later",
            ),
            TrySendError::Disconnected(_) => EngineError::new(
                ErrorCode::Unavailable,
                "the daemon is stopping and takes no more telemetry",
            ),
        })
    }
}

/// Starts the intake thread; it ends with the engine.
pub(crate) fn start(engine: Weak<Inner>, deliveries: Receiver<Delivery>) -> std::io::Result<()> {
    thread::Builder::new()
        .name("wrangle-telemetry".into())
        .spawn(move || {
            // One batch and the room it is counted in, kept from one to
            // the next: grown once, not for each.
            let mut batch = Vec::with_capacity(BATCH_MAX);
            let mut counting = Counting::default();
            let mut fold_at = Instant::now() + FOLD_EVERY;
            loop {
                let first = match deliveries
                    .recv_timeout(fold_at.saturating_duration_since(Instant::now()))
                {
                    Ok(first) => Some(first),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                };
                let Some(inner) = engine.upgrade() else {
                    return;
                };
                let engine = crate::Engine { inner };
                if let Some(first) = first {
                    batch.push(first);
                    // What comes within a moment joins: under load a batch
                    // holds many deliveries; one alone waits only this
                    // long. A sleep, not a wait on the channel, so that
                    // each of them does not wake this thread (the wake-ups
                    // cost more than the counting).
                    thread::sleep(GATHER);
                    while batch.len() < BATCH_MAX {
                        match deliveries.try_recv() {
                            Ok(delivery) => batch.push(delivery),
                            Err(_) => break,
                        }
                    }
                    engine.receive_batch(&mut batch, &mut counting);
                }
                // Here, between batches: no batch counts against keys
                // being forgotten.
                if Instant::now() >= fold_at {
                    engine.fold_telemetry(chrono::Utc::now());
                    fold_at = Instant::now() + FOLD_EVERY;
                }
            }
        })
        .map(drop)
}
