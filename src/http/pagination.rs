//! Opaque cursors for list endpoints.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::error::ApiError;
use crate::domain::FieldError;

/// Items per page when the caller sets no `limit`.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page a caller may ask for.
pub const MAX_LIMIT: u32 = 200;

pub fn encode(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(position)
}

/// Decodes a cursor made by [`encode`]; anything else is a 400 naming `cursor`. A NUL is
/// rejected here because PostgreSQL does not accept it in text.
pub fn decode(cursor: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|text| !text.contains('\0'))
        .ok_or_else(invalid_cursor)
}

pub fn invalid_cursor() -> ApiError {
    ApiError::BadRequest {
        detail: "invalid query parameter cursor: pass the next_cursor value of the previous page unchanged".to_owned(),
        errors: vec![FieldError::new("cursor", "is not a cursor returned by this endpoint")],
    }
}

/// Checks a page size and applies the default.
pub fn limit(limit: Option<u32>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(i64::from(DEFAULT_LIMIT)),
        Some(value) if (1..=MAX_LIMIT).contains(&value) => Ok(i64::from(value)),
        Some(value) => Err(ApiError::BadRequest {
            detail: format!("invalid query parameter limit: {value} is outside 1..={MAX_LIMIT}"),
            errors: vec![FieldError::new(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            )],
        }),
    }
}

/// Checks the optional `region` and `workforce_name` filters of a list endpoint.
pub fn check_workforce_filters(
    region: Option<&str>,
    workforce_name: Option<&str>,
) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    if let Some(Err(error)) = region.map(|r| crate::domain::Region::parse("region", r)) {
        errors.push(error);
    }
    if let Some(Err(error)) =
        workforce_name.map(|n| crate::domain::WorkforceName::parse("workforce_name", n))
    {
        errors.push(error);
    }
    if errors.is_empty() {
        return Ok(());
    }
    let detail = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.reason))
        .collect::<Vec<_>>()
        .join("; ");
    Err(ApiError::BadRequest {
        detail: format!("invalid query parameter {detail}"),
        errors,
    })
}
