//! Engine errors and rejected input as JSON error responses.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use wrangle_engine::error::EngineError;
use wrangle_wire::{ErrorBody, ErrorCode};

/// An error answer: `{"error": {"code", "message"}}` with its HTTP status.
#[derive(Debug)]
pub struct ApiError(pub ErrorBody);

impl ApiError {
    /// An invalid-argument error.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError(ErrorBody::new(ErrorCode::InvalidArgument, message))
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        let mut body = ErrorBody::new(error.code, error.message);
        body.error.items = error.items;
        ApiError(body)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let message = format!("malformed request body: {}", rejection.body_text());
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError(ErrorBody::new(ErrorCode::PayloadTooLarge, message));
        }
        ApiError::invalid(message)
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::invalid(format!("malformed path: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::invalid(format!("malformed query string: {}", rejection.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.error.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}
