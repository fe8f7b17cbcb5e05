//! The vocabulary that wrangle's daemon and its clients share: the JSON
//! bodies of the HTTP API, the states and health of an agent, and the
//! parsers for user input (names, durations, signals) so that every client
//! rejects bad input the same way the daemon does.
//!
//! This crate depends on serde and small parsing helpers only; it never
//! reaches into the daemon.

// Every other crate of wrangle builds on this one: on another system the
// build stops here, with one sentence, before anything trips over Linux's
// own calls.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "wrangle runs on Linux only (kernel 5.3 or later); on Windows, run it inside WSL2, on macOS inside a Linux VM or container"
);

pub mod agent;
pub mod cost;
pub mod doctor;
pub mod error;
pub mod events;
pub mod group;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod options;
pub mod parse;
pub mod policy;
pub mod request;
pub mod session;
pub mod state;
#[cfg(feature = "testing")]
pub mod testing;

pub use agent::AgentView;
pub use cost::{CostBy, CostQuery, CostReport, CostRow};
pub use doctor::{Capacity, DoctorReport};
pub use error::{ErrorBody, ErrorCode, ErrorDetail, ItemError};
pub use events::{Cause, Event, EventAgent, EventKind, EventsQuery, Notice, StreamMessage};
pub use group::{GroupView, SetGroup};
pub use limits::{Enforcement, LimitsView};
pub use logs::{LogLine, LogStream};
pub use metrics::{ProcessMetrics, Summary, SummaryEntry, TreeMetrics};
pub use options::RunOptions;
pub use policy::{OnHang, RestartPolicy, RunView};
pub use request::*;
pub use session::{AdapterKind, SessionView, TelemetryMode, TelemetryView, TokenCounts};
pub use state::{Health, State};

/// Request header of a create (`POST /v1/agents`, `/v1/batch`): a key the
/// client makes once per create and sends again with a retry, so that a
/// create whose answer was lost makes its agents once.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Path prefix of every versioned API route.
pub const API_PREFIX: &str = "/v1";

/// Response header of `GET /v1/agents` and `GET /v1/agents/{agent}`: the
/// id of the last event the answer reflects. Following `/v1/events` with
/// `since` set to it misses no change and repeats none.
pub const EVENT_ID_HEADER: &str = "wrangle-event-id";
