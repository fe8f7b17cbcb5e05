//! Deliveries of records, counted in batches on the thread that receives
//! them. The telemetry port's thread takes the requests that arrived
//! during one of its turns (see the API's `otlp::pace`), hands their
//! records to an [`Intake`], then counts them all at once: under one hold
//! of the registry and in one transaction, and answers each. A thousand
//! agents exporting once a second cost a few dozen transactions a second,
//! not a thousand; and a delivery is never handed to another thread and
//! back (that hop, a thread of its own that woke for each batch, was a
//! tenth of the intake's time).

use super::receive::{Counting, Received};
use super::Record;
use crate::error::EngineError;
use crate::Engine;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use wrangle_wire::ErrorCode;

/// Deliveries waiting at most: past it, an exporter is asked to come back
/// (503), as OTLP exporters do with backoff.
const WAITING_MAX: usize = 8192;

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

/// Deliveries waiting to be counted, and the room they are counted in:
/// kept from one batch to the next, so that it is made once.
pub struct Intake {
    waiting: Vec<Delivery>,
    counting: Counting,
    fold_at: Instant,
}

impl Default for Intake {
    fn default() -> Intake {
        Intake {
            waiting: Vec::new(),
            counting: Counting::default(),
            fold_at: Instant::now() + FOLD_EVERY,
        }
    }
}

/// What a delivery changed, once it is stored (see [`Intake::take`]).
pub struct Answer(oneshot::Receiver<Result<Received, EngineError>>);

impl Answer {
    /// Waits for the delivery to be counted and stored.
    pub async fn received(self) -> Result<Received, EngineError> {
        self.0.await.map_err(|_| {
            EngineError::new(
                ErrorCode::Unavailable,
                "the daemon stopped before the telemetry was stored",
            )
        })?
    }
}

impl Intake {
    /// Takes `records` from run `run` of agent `id` (as
    /// [`Engine::telemetry_sender`] found), to be counted at the next
    /// [`Intake::count`]; an error (503) when too many wait.
    pub fn take(
        &mut self,
        id: String,
        run: u32,
        records: Vec<Record>,
    ) -> Result<Answer, EngineError> {
        if self.waiting.len() >= WAITING_MAX {
            return Err(EngineError::new(
                ErrorCode::Unavailable,
                "too many telemetry deliveries wait: send again later",
            ));
        }
        let (done, answer) = oneshot::channel();
        self.waiting.push(Delivery {
            id,
            run,
            records,
            done,
        });
        Ok(Answer(answer))
    }

    /// Counts every delivery taken since the last time (each model call
    /// not counted yet is counted, stored and added to the ledger with its
    /// events, in one transaction) and answers each; folds the old calls
    /// away when it is time. Blocks on the store.
    pub fn count(&mut self, engine: &Engine) {
        if !self.waiting.is_empty() {
            engine.receive_batch(&mut self.waiting, &mut self.counting);
        }
        // Here, between batches: no batch counts against keys being
        // forgotten.
        if Instant::now() >= self.fold_at {
            engine.fold_telemetry(chrono::Utc::now());
            self.fold_at = Instant::now() + FOLD_EVERY;
        }
    }

    /// Writes the changes of the ledger that the counts left waiting (see
    /// [`wrangle_store::Store::record_telemetry`]): for when deliveries
    /// stop coming, so that what they cost is not left in memory until
    /// the next write.
    pub fn rest(&mut self, engine: &Engine) {
        if let Err(error) = engine.store().write_deferred_costs() {
            tracing::warn!("cannot write the ledger's last changes from telemetry: {error}");
        }
    }
}
