//! The audit log route.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::error::{ApiError, Problem};
use super::extract::Query;
use super::models::{AuditEventListResponse, AuditEventResponse};
use super::{AppState, pagination};
use crate::db::audit::{self as audit_store, AuditFilter, PagePosition};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListAuditEventsQuery {
    region: Option<String>,
    workforce_name: Option<String>,
    operation_id: Option<Uuid>,
    /// One of `workforce.create.requested`, `workforce.delete.requested`,
    /// `workforce.vpc_config.put.requested`, `workforce.vpc_config.delete.requested`,
    /// `workforce.source_ip_config.put.requested`, `workforce.oidc_config.put.requested`,
    /// `workforce.vanished`, `operation.started`, `operation.submitted`, `operation.succeeded`,
    /// `operation.failed`, `access.denied`, `api_key.created`, `api_key.revoked` and
    /// `api_key.expired`.
    action: Option<String>,
    /// An API key's name, a token's subject, `system` (the service) or `command-line`.
    actor: Option<String>,
    /// One of `api_key`, `jwt`, `command_line` (the service's command line), `system` (the
    /// service) and `anonymous` (an event written without a known kind of caller).
    /// With `actor`, it distinguishes a token subject from a key or the service of the same name.
    actor_kind: Option<String>,
    /// One of `accepted`, `rejected`, `denied`, `started`, `submitted`, `succeeded`, `failed`
    /// and `removed`.
    outcome: Option<String>,
    /// Only events at or after this time (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Only events before this time (RFC 3339).
    until: Option<DateTime<Utc>>,
    /// Page size, 1 to 200 (default 50).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// List audit events
///
/// Lists the append-only audit log newest first: every accepted change, every change rejected
/// for the workforce's state or the caller's permissions, and every transition of an
/// operation, with the workforce state before and after.
#[utoipa::path(
    get,
    path = "/v1/audit-events",
    tag = "audit",
    params(ListAuditEventsQuery),
    responses(
        (status = 200, description = "Success", body = AuditEventListResponse),
        (status = 400, description = "Malformed request: unreadable JSON, wrong field type, or an invalid path or query parameter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_audit_events(
    State(state): State<AppState>,
    Query(query): Query<ListAuditEventsQuery>,
) -> Result<axum::Json<AuditEventListResponse>, ApiError> {
    let limit = pagination::limit(query.limit)?;
    pagination::check_workforce_filters(query.region.as_deref(), query.workforce_name.as_deref())?;
    check_time_range(query.since, query.until)?;
    check_one_of("action", query.action.as_deref(), &audit_store::ACTIONS)?;
    check_one_of("outcome", query.outcome.as_deref(), &audit_store::OUTCOMES)?;
    check_one_of(
        "actor_kind",
        query.actor_kind.as_deref(),
        &audit_store::ACTOR_KINDS,
    )?;
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let rows = audit_store::list(
        &state.db,
        AuditFilter {
            region: query.region.as_deref(),
            workforce_name: query.workforce_name.as_deref(),
            operation_id: query.operation_id,
            action: query.action.as_deref(),
            actor: query.actor.as_deref(),
            actor_kind: query.actor_kind.as_deref(),
            outcome: query.outcome.as_deref(),
            since: query.since,
            until: query.until,
            after,
            limit: limit + 1,
        },
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    let page: Vec<_> = rows.into_iter().take(limit as usize).collect();
    let by_time = query.since.is_some() || query.until.is_some();
    let next_cursor = has_more
        .then(|| page.last().map(|event| encode_cursor(event, by_time)))
        .flatten();
    Ok(axum::Json(AuditEventListResponse {
        items: page.into_iter().map(AuditEventResponse::from).collect(),
        next_cursor,
    }))
}

/// Checks that the query parameter `name`, when given, is one of `allowed`, so that a value
/// the service never writes gets 400 instead of an empty page.
fn check_one_of(name: &str, value: Option<&str>, allowed: &[&str]) -> Result<(), ApiError> {
    let Some(value) = value else {
        return Ok(());
    };
    if allowed.contains(&value) {
        return Ok(());
    }
    let reason = format!("must be one of {}", allowed.join(", "));
    Err(ApiError::BadRequest {
        detail: format!(
            "invalid query parameter {name}: '{}' is not one of {}",
            crate::domain::truncate_for_message(value),
            allowed.join(", ")
        ),
        errors: vec![crate::domain::FieldError::new(name, reason)],
    })
}

/// Checks that `since` and `until` are years 1 to 9999, which PostgreSQL stores, and that
/// `since` is before `until`.
fn check_time_range(
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Result<(), ApiError> {
    use chrono::Datelike;

    for (field, value) in [("since", since), ("until", until)] {
        if let Some(value) = value
            && !(1..=9999).contains(&value.year())
        {
            let error =
                crate::domain::FieldError::new(field, "must be a time in the years 1 to 9999");
            return Err(ApiError::BadRequest {
                detail: format!("invalid query parameter {field}: {}", error.reason),
                errors: vec![error],
            });
        }
    }
    if let (Some(since), Some(until)) = (since, until)
        && since >= until
    {
        let error = crate::domain::FieldError::new("until", "must be later than since");
        return Err(ApiError::BadRequest {
            detail: format!("invalid query parameter until: {}", error.reason),
            errors: vec![error],
        });
    }
    Ok(())
}

/// Encodes the end of a page. A page ordered by id ends at an id. A page ordered by time (a
/// `since` or `until` filter) ends at a time and an id, written as
/// `<id>@<microseconds since 1970>`.
fn encode_cursor(event: &audit_store::AuditEventRow, by_time: bool) -> String {
    if by_time {
        pagination::encode(&format!(
            "{}@{}",
            event.id,
            event.occurred_at.timestamp_micros()
        ))
    } else {
        pagination::encode(&event.id.to_string())
    }
}

fn decode_cursor(cursor: &str) -> Result<PagePosition, ApiError> {
    use chrono::Datelike;

    let text = pagination::decode(cursor)?;
    let (id, micros) = match text.split_once('@') {
        Some((id, micros)) => (id, Some(micros)),
        None => (text.as_str(), None),
    };
    let id = id.parse().map_err(|_| pagination::invalid_cursor())?;
    let occurred_at = micros
        .map(|m| {
            m.parse()
                .ok()
                .and_then(DateTime::<Utc>::from_timestamp_micros)
                .filter(|time| (1..=9999).contains(&time.year()))
                .ok_or_else(pagination::invalid_cursor)
        })
        .transpose()?;
    Ok(PagePosition { id, occurred_at })
}

/// Verify the audit log
///
/// Walks the audit log's hash chain and reports the first event whose content or link to its
/// predecessor was changed, removed or reordered.
#[utoipa::path(
    get,
    path = "/v1/audit-events/verify",
    tag = "audit",
    params(VerifyAuditChainQuery),
    responses(
        (status = 200, description = "The result of the walk", body = audit_store::ChainReport),
        (status = 400, description = "Invalid query parameter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn verify_audit_chain(
    State(state): State<AppState>,
    Query(query): Query<VerifyAuditChainQuery>,
) -> Result<axum::Json<audit_store::ChainReport>, ApiError> {
    if let Some(through) = query.through.filter(|through| *through < 1) {
        let error = crate::domain::FieldError::new("through", "must be 1 or more");
        return Err(ApiError::BadRequest {
            detail: format!("invalid query parameter through: {through} is less than 1"),
            errors: vec![error],
        });
    }
    Ok(axum::Json(
        audit_store::verify_chain(&state.db, query.through).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct VerifyAuditChainQuery {
    /// Stop after the event with this chain sequence number, so that `last_hash` can be
    /// compared with the one an earlier walk reported at that point.
    #[param(minimum = 1)]
    through: Option<i64>,
}
