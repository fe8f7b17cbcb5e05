//! Frames of the log stream: `GET /v1/agents/{agent}/logs` answers with one
//! JSON object per line (NDJSON), so stdout and stderr can be told apart.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which output of the agent a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// The agent's standard output.
    Stdout,
    /// The agent's standard error.
    Stderr,
}

impl LogStream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// One line of an agent's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    /// Which output it came from.
    pub stream: LogStream,
    /// When the shim read it from the agent's pipe.
    pub time: DateTime<Utc>,
    /// The line, without its newline (invalid UTF-8 is replaced).
    pub text: String,
    /// False for a last line the agent has not ended with a newline.
    #[serde(default = "default_true")]
    pub complete: bool,
}

fn default_true() -> bool {
    true
}
