//! The engine's errors: each has the API's error code and a message for
//! people.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
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

/// The home whose disk a full-disk error names (one per daemon).
static HOME: OnceLock<PathBuf> = OnceLock::new();

/// Names the home in the errors of a full disk; the first call wins.
pub(crate) fn name_home(home: &Path) {
    let _ = HOME.set(home.to_path_buf());
}

impl EngineError {
    /// The store could not record a change because its disk is full.
    pub fn disk_full(detail: &str) -> Self {
        let home = HOME.get().map_or_else(
            || "wrangle's home".to_string(),
            |home| home.display().to_string(),
        );
        Self::new(
            ErrorCode::InsufficientStorage,
            format!(
                "the disk holding {home} is full ({detail}): nothing was changed; free space on it and try again (reads still work; wrangle doctor shows the free space)"
            ),
        )
    }
}

impl From<StoreError> for EngineError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NameTaken(_) => {
                EngineError::new(ErrorCode::AlreadyExists, error.to_string())
            }
            full if full.is_disk_full() => EngineError::disk_full(&full.to_string()),
            other => EngineError::internal(other.to_string()),
        }
    }
}
