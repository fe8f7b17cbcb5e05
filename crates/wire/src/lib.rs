//! The vocabulary that wrangle's daemon and its clients share: the JSON
//! bodies of the HTTP API, the states and health of an agent, and the
//! parsers for user input (names, durations, signals) so that every client
//! rejects bad input the same way the daemon does.
//!
//! This crate depends on serde and small parsing helpers only; it never
//! reaches into the daemon.

pub mod agent;
pub mod error;
pub mod logs;
pub mod metrics;
pub mod parse;
pub mod request;
pub mod state;

pub use agent::AgentView;
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use logs::{LogLine, LogStream};
pub use metrics::{ProcessMetrics, Summary, SummaryEntry, TreeMetrics};
pub use request::*;
pub use state::{Health, State};

/// Environment variable through which `wrangle daemon --foreground
/// --sample-interval DUR` hands the sampler's tick to the daemon it runs in
/// the same process; set by the CLI only.
pub const SAMPLE_INTERVAL_ENV: &str = "WRANGLE_SAMPLE_INTERVAL";

/// Path prefix of every versioned API route.
pub const API_PREFIX: &str = "/v1";
