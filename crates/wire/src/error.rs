//! The error body every failed API call returns:
//! `{"error": {"code": "...", "message": "..."}}`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Machine-readable class of an error; each maps to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or a value is invalid (400).
    InvalidArgument,
    /// No agent (or other object) by that reference (404).
    NotFound,
    /// The reference matches more than one agent (409).
    Ambiguous,
    /// The name is taken (409).
    AlreadyExists,
    /// The object is in a state that does not allow the request (409).
    FailedPrecondition,
    /// The daemon could not do it: disk, store, OS (500).
    Internal,
    /// The daemon is shutting down (503).
    Unavailable,
    /// The request carries no credentials, or wrong ones (401).
    Unauthenticated,
    /// The caller may not talk to this daemon: another user (403).
    PermissionDenied,
    /// The disk of the daemon's home is full: the change was not
    /// recorded, and nothing was changed (507).
    InsufficientStorage,
    /// The route exists, but not with this method (405); the `Allow`
    /// header lists its methods.
    MethodNotAllowed,
    /// The body is over the route's limit (413): 2 MiB for one agent,
    /// 64 MiB for a batch.
    PayloadTooLarge,
}

impl ErrorCode {
    /// The HTTP status this code is sent with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::Ambiguous | ErrorCode::AlreadyExists | ErrorCode::FailedPrecondition => 409,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::InsufficientStorage => 507,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::PayloadTooLarge => 413,
        }
    }
}

/// The inner object of an error body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Class of the error.
    pub code: ErrorCode,
    /// What went wrong and, where it helps, what to do.
    pub message: String,
    /// Of a batch refused, each bad item and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemError>,
}

/// One bad item of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemError {
    /// Its place in the batch, from 0.
    pub index: usize,
    /// Its name, if it gave one.
    pub name: Option<String>,
    /// Class of the error.
    pub code: ErrorCode,
    /// What is wrong with it.
    pub message: String,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

impl ErrorBody {
    /// An error body with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
                items: Vec::new(),
            },
        }
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error.message)
    }
}

impl std::error::Error for ErrorBody {}
