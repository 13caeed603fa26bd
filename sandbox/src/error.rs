//! Errors returned to API callers, shared by the SageMaker and EC2 front ends, which render
//! them as JSON or XML.

use axum::http::StatusCode;

/// An AWS error: HTTP status, error code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    /// Builds a client error (HTTP 400) with a code and message.
    pub fn client(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    /// Builds a SageMaker `ValidationException`.
    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::client("ValidationException", message)
    }

    /// Builds a SageMaker `ConflictException`.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::client("ConflictException", message)
    }

    /// Builds a SageMaker `ResourceInUse` error.
    pub fn resource_in_use(message: impl Into<String>) -> ApiError {
        ApiError::client("ResourceInUse", message)
    }
}
