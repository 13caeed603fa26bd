//! Extractors whose rejections are the API's own problem responses.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;

use super::error::ApiError;
use crate::domain::FieldError;

/// A JSON request body. Malformed JSON, a wrong field type and a missing content type are
/// rejected with a problem that explains the fix.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

/// Path parameters, rejected as a problem.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters, rejected as a problem.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Splits serde's "path: message" text into a field error, where a path is present.
fn field_error_from(text: &str) -> Vec<FieldError> {
    match text.split_once(": ") {
        Some((path, reason)) if !path.contains(' ') && !path.is_empty() => {
            vec![FieldError::new(path, reason)]
        }
        _ => Vec::new(),
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                "the request body must be JSON sent with the header Content-Type: application/json"
                    .to_owned(),
            ),
            JsonRejection::JsonDataError(error) => {
                let inner = std::error::Error::source(&error)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                ApiError::BadRequest {
                    detail: format!("the JSON body does not match the expected schema: {inner}"),
                    errors: field_error_from(&inner),
                }
            }
            JsonRejection::JsonSyntaxError(error) => {
                let inner = std::error::Error::source(&error)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                ApiError::BadRequest {
                    detail: format!("the request body is not valid JSON: {inner}"),
                    errors: Vec::new(),
                }
            }
            JsonRejection::BytesRejection(error)
                if error.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                ApiError::PayloadTooLarge
            }
            other => ApiError::BadRequest {
                detail: format!("the request body could not be read: {}", other.body_text()),
                errors: Vec::new(),
            },
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest {
            detail: format!("invalid path parameter: {}", rejection.body_text()),
            errors: Vec::new(),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        let text = rejection.body_text();
        let reason = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text)
            .to_owned();
        ApiError::BadRequest {
            detail: format!("invalid query parameter: {reason}"),
            errors: field_error_from(&reason),
        }
    }
}
