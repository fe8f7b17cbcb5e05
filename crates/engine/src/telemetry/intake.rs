//! Deliveries of records, taken by one thread in batches: whatever arrived
//! while the last batch was being written is the next batch, counted under
//! one hold of the registry and stored in one transaction. A thousand
//! agents exporting once a second cost a few transactions a second, not a
//! thousand, and a delivery still waits only for the write it is in (none
//! when the daemon is idle), so a record shows in `inspect` as soon as its
//! answer says so.

use super::receive::Received;
use super::Record;
use crate::error::EngineError;
use crate::Inner;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Weak;
use std::thread;
use tokio::sync::oneshot;
use wrangle_wire::ErrorCode;

/// Deliveries waiting at most: past it, an exporter is asked to come back
/// (503), as OTLP exporters do with backoff.
const WAITING_MAX: usize = 8192;

/// Most deliveries in one batch.
const BATCH_MAX: usize = 1024;

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
            while let Ok(first) = deliveries.recv() {
                let mut batch = vec![first];
                while batch.len() < BATCH_MAX {
                    match deliveries.try_recv() {
                        Ok(delivery) => batch.push(delivery),
                        Err(_) => break,
                    }
                }
                let Some(inner) = engine.upgrade() else {
                    return;
                };
                let engine = crate::Engine { inner };
                engine.receive_batch(batch);
            }
        })
        .map(drop)
}
