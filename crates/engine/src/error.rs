//! The engine's errors: each has the API's error code and a message for
//! people.

use wrangle_store::StoreError;
use wrangle_wire::{ErrorCode, ItemError};

/// An error with its API code and a message that says what went wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct EngineError {
    /// The class of error; decides the HTTP status.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// Of a batch refused, each bad item.
    pub items: Vec<ItemError>,
}

impl EngineError {
    /// Bad input from the caller.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    /// Nothing by that reference.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// The request does not fit the object's state.
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::FailedPrecondition, message)
    }

    /// The daemon failed (disk, store, OS).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// An error of this code.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        EngineError {
            code,
            message: message.into(),
            items: Vec::new(),
        }
    }
}

impl From<StoreError> for EngineError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NameTaken(_) => {
                EngineError::new(ErrorCode::AlreadyExists, error.to_string())
            }
            other => EngineError::internal(other.to_string()),
        }
    }
}
