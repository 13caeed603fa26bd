//! The one error type of the HTTP API and its RFC 9457 `application/problem+json` form.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::FieldError;
use crate::vpc_checks::Finding;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// An RFC 9457 problem details document.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "/problems/validation-error",
    "title": "Invalid request",
    "status": 422,
    "detail": "1 field is invalid; fix it and send the request again",
    "request_id": "3f1c7d7e-2c1b-4a8e-9c55-0d6f5a1b2c3d",
    "errors": [{"field": "vpc_config.subnets", "reason": "must list between 1 and 16 ids, but lists 0"}]
}))]
pub struct Problem {
    /// URI reference that names the kind of problem.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// HTTP status code.
    pub status: u16,
    /// Explanation of what went wrong in this request and what to do about it.
    pub detail: String,
    /// Id of the request, as in the `X-Request-Id` response header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Invalid fields, for validation problems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Id of the operation in flight, for conflicts caused by one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<Uuid>,
    /// Findings of the VPC prerequisite checks, for a VPC configuration they rejected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            problem_type: format!("/problems/{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            request_id: None,
            errors: Vec::new(),
            operation_id: None,
            findings: Vec::new(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        response
    }
}

/// The cause of a 5xx response, attached to the response for the access log and never sent.
#[derive(Debug, Clone)]
pub struct ErrorCause(pub String);

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body or a parameter could not be read at all (malformed JSON, wrong type).
    #[error("bad request: {detail}")]
    BadRequest {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// The request was readable but breaks a rule of the AWS model or of the service.
    #[error("invalid request")]
    Validation(Vec<FieldError>),
    /// No credential, or one that is unknown, expired, revoked or wrongly signed.
    #[error("unauthenticated")]
    Unauthenticated { invalid_token: bool },
    /// A valid credential whose roles do not allow the request.
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The workforce's state forbids the change.
    #[error("conflict: {detail}")]
    Conflict {
        detail: String,
        operation_id: Option<Uuid>,
    },
    /// The first request with the same idempotency key is still being handled.
    #[error("request in progress: {0}")]
    RequestInProgress(String),
    /// A name that must be unique, such as an API key's, is taken.
    #[error("name in use: {0}")]
    NameInUse(String),
    /// The request would revoke the last usable admin key.
    #[error("last admin key: {0}")]
    LastAdminKey(String),
    /// The `If-Match` precondition no longer holds.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("payload too large")]
    PayloadTooLarge,
    /// The VPC prerequisite checks found errors; nothing was stored.
    #[error("VPC prerequisite checks failed")]
    VpcPrerequisites(Vec<Finding>),
    /// AWS could not be read (throttling, a server error, a timeout or denied access).
    #[error("AWS unavailable: {0}")]
    AwsUnavailable(String),
    /// The caller sent more requests than a limit allows. `retry_after` is the wait before a retry.
    #[error("rate limited: {detail}")]
    RateLimited {
        detail: String,
        retry_after: std::time::Duration,
    },
    /// The database cannot be reached; the client may retry shortly.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The identity provider's JWKS cannot be fetched, so a token cannot be checked.
    #[error("identity provider unavailable")]
    IdentityProviderUnavailable,
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&error) {
            Self::Unavailable(error.to_string())
        } else {
            Self::Internal(anyhow::Error::new(error).context("database query failed"))
        }
    }
}

/// Returns a wait in whole seconds for `Retry-After`: rounded up, so that a client does not
/// retry too early, and at least one.
pub(crate) fn retry_after_seconds(wait: std::time::Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}

/// Most field errors that one problem lists, which keeps a problem far below the size that
/// the middleware rewrites.
const MAX_LISTED_ERRORS: usize = 50;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match &self {
            Self::BadRequest { detail, errors } => {
                let mut problem = Problem::new(
                    StatusCode::BAD_REQUEST,
                    "bad-request",
                    "Malformed request",
                    detail.clone(),
                );
                problem.errors = errors.clone();
                problem
            }
            Self::Validation(errors) => {
                let count = errors.len();
                let detail = if count == 1 {
                    "1 field is invalid; fix it as its reason says and send the request again"
                        .to_owned()
                } else {
                    let listed = if count > MAX_LISTED_ERRORS {
                        format!(" (the first {MAX_LISTED_ERRORS} are listed)")
                    } else {
                        String::new()
                    };
                    format!(
                        "{count} fields are invalid{listed}; fix them as each reason says and send the request again"
                    )
                };
                let mut problem = Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation-error",
                    "Invalid request",
                    detail,
                );
                problem.errors = errors.iter().take(MAX_LISTED_ERRORS).cloned().collect();
                problem
            }
            Self::Unauthenticated { invalid_token } => Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
                if *invalid_token {
                    "the credential is invalid, expired or revoked; send a valid API key or token as Authorization: Bearer <credential>"
                } else {
                    "this endpoint needs a credential; send an API key or token as Authorization: Bearer <credential>"
                },
            ),
            Self::Forbidden(detail) => Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Forbidden",
                detail.clone(),
            ),
            Self::NotFound(detail) => Problem::new(
                StatusCode::NOT_FOUND,
                "not-found",
                "Not found",
                detail.clone(),
            ),
            Self::Conflict {
                detail,
                operation_id,
            } => {
                let mut problem = Problem::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    "Conflict with the workforce's state",
                    detail.clone(),
                );
                problem.operation_id = *operation_id;
                problem
            }
            Self::RequestInProgress(detail) => Problem::new(
                StatusCode::CONFLICT,
                "request-in-progress",
                "Request in progress",
                detail.clone(),
            ),
            Self::NameInUse(detail) => Problem::new(
                StatusCode::CONFLICT,
                "name-in-use",
                "Name in use",
                detail.clone(),
            ),
            Self::LastAdminKey(detail) => Problem::new(
                StatusCode::CONFLICT,
                "last-admin-key",
                "Last admin key",
                detail.clone(),
            ),
            Self::PreconditionFailed(detail) => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition-failed",
                "Precondition failed",
                detail.clone(),
            ),
            Self::UnsupportedMediaType(detail) => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                detail.clone(),
            ),
            Self::PayloadTooLarge => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
                "the request body is larger than this service accepts; send a smaller body",
            ),
            Self::VpcPrerequisites(findings) => {
                let count = findings.iter().filter(|f| f.is_error()).count();
                let noun = if count == 1 { "check" } else { "checks" };
                let mut problem = Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "vpc-prerequisites-failed",
                    "VPC prerequisites not met",
                    format!(
                        "{count} VPC prerequisite {noun} failed; fix each finding of severity error as its remedy says and send the request again"
                    ),
                );
                problem.findings = findings.clone();
                problem
            }
            Self::AwsUnavailable(_) => Problem::new(
                StatusCode::BAD_GATEWAY,
                "aws-unavailable",
                "AWS unavailable",
                "EC2 could not be read to check the VPC configuration (throttling, an AWS server error, a network failure or denied access); nothing was changed, retry later",
            ),
            Self::RateLimited { detail, .. } => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                detail.clone(),
            ),
            Self::Unavailable(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service-unavailable",
                "Service unavailable",
                "the database is unreachable; retry in a few seconds. If the connection broke while a change was being stored, the change may have been accepted, so repeat a change with the same Idempotency-Key, or check the operation list before sending it again",
            ),
            Self::IdentityProviderUnavailable => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service-unavailable",
                "Service unavailable",
                "the identity provider's signing keys could not be fetched to check the token; nothing was changed, retry in a few seconds",
            ),
            Self::Internal(_) => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal-error",
                "Internal error",
                "the service failed to handle the request; nothing is known to have changed, retry later or report the request id",
            ),
        };
        let mut response = problem.into_response();
        if matches!(
            self,
            Self::Internal(_) | Self::Unavailable(_) | Self::AwsUnavailable(_)
        ) {
            response
                .extensions_mut()
                .insert(ErrorCause(format!("{self}")));
        }
        if let Self::Unauthenticated { invalid_token } = self {
            let challenge = if invalid_token {
                "Bearer realm=\"workforce-service\", error=\"invalid_token\""
            } else {
                "Bearer realm=\"workforce-service\""
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Self::RateLimited { retry_after, .. } = &self {
            let seconds = retry_after_seconds(*retry_after).to_string();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&seconds).expect("digits are a valid header"),
            );
        }
        if matches!(self, Self::Unavailable(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::retry_after_seconds;

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(300)), 1);
        assert_eq!(retry_after_seconds(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_seconds(Duration::from_millis(2_100)), 3);
    }
}
