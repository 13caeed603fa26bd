//! Operation routes: one operation, with long-polling, and the list with filters.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::error::{ApiError, Problem};
use super::extract::{Path, Query};
use super::models::{OperationListResponse, OperationResponse};
use super::{AppState, pagination};
use crate::cache::CachedOperation;
use crate::db::operations::{self as operation_store, OperationFilter, OperationRow};
use crate::domain::{FieldError, OperationKind, OperationStatus};

/// Maximum wait that `GET /v1/operations/{id}?wait=` accepts.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct GetOperationQuery {
    /// Seconds to wait, 0 to 60, for the operation to change (status, AWS status or update
    /// time) before the response. The response comes as soon as it changes, or with the unchanged
    /// operation when the wait ends. A finished operation is returned at once. The server may
    /// end the wait earlier, a second before its request timeout.
    #[param(minimum = 0, maximum = 60)]
    wait: Option<u32>,
}

/// Get an operation
///
/// Returns a long-running change and its progress: its status, the last SageMaker status seen
/// and, when it failed, AWS's error code and message. With `wait`, the request waits until the
/// operation changes or the wait ends.
#[utoipa::path(
    get,
    path = "/v1/operations/{id}",
    tag = "operations",
    params(("id" = Uuid, Path, description = "Operation id"), GetOperationQuery),
    responses(
        (status = 200, description = "Success", body = OperationResponse),
        (status = 400, description = "Malformed request: unreadable JSON, wrong field type, or an invalid path or query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_operation(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(query): Query<GetOperationQuery>,
) -> Result<Response, ApiError> {
    let wait = wait_duration(query.wait)?;
    if !wait.is_zero() {
        let operation = Box::pin(wait_for_change(
            &state,
            id,
            wait.min(state.watchers.max_wait),
        ))
        .await?;
        return Ok(axum::Json(OperationResponse::from_row(&operation)).into_response());
    }
    let cached = match state.cache.operation(id) {
        Some(cached) => cached,
        None => {
            let ticket = state.cache.ticket();
            let operation = Box::pin(find_operation(&state, id)).await?;
            let body = serde_json::to_vec(&OperationResponse::from_row(&operation))
                .map_err(|error| ApiError::Internal(error.into()))?;
            let cached = Arc::new(CachedOperation { body: body.into() });
            state.cache.store_operation(ticket, id, cached.clone());
            cached
        }
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        cached.body.clone(),
    )
        .into_response())
}

fn wait_duration(seconds: Option<u32>) -> Result<Duration, ApiError> {
    let wait = Duration::from_secs(u64::from(seconds.unwrap_or(0)));
    if wait > MAX_WAIT {
        let error = FieldError::new("wait", "must be between 0 and 60 seconds");
        return Err(ApiError::BadRequest {
            detail: format!("invalid query parameter wait: {}", error.reason),
            errors: vec![error],
        });
    }
    Ok(wait)
}

async fn find_operation(state: &AppState, id: Uuid) -> Result<OperationRow, ApiError> {
    operation_store::find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no operation with id {id}")))
}

/// Returns the operation once its status, AWS status or update time differs from the first
/// read, or as last read when `wait` ends. No database connection is held while waiting: each
/// read takes one from the pool and returns it, and readers woken together share one read.
async fn wait_for_change(
    state: &AppState,
    id: Uuid,
    wait: Duration,
) -> Result<OperationRow, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    let watch = state.watchers.watch(id);
    let mut first: Option<OperationRow> = None;
    loop {
        // Enabled before the read, so a change committed after the read still wakes this wait.
        let notified = watch.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let current = watch.read(|| find_operation(state, id)).await?;
        let baseline = first.get_or_insert_with(|| current.clone());
        let changed = current.status != baseline.status
            || current.aws_status != baseline.aws_status
            || current.updated_at != baseline.updated_at;
        if changed || current.is_finished() {
            return Ok(current);
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep_until(deadline) => return Ok(current),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListOperationsQuery {
    region: Option<String>,
    workforce_name: Option<String>,
    /// `pending`, `running`, `succeeded` or `failed`.
    status: Option<OperationStatus>,
    kind: Option<OperationKind>,
    /// Page size, 1 to 200 (default 50).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// List operations
///
/// Lists operations newest first, filtered by region, workforce, status and kind.
#[utoipa::path(
    get,
    path = "/v1/operations",
    tag = "operations",
    params(ListOperationsQuery),
    responses(
        (status = 200, description = "Success", body = OperationListResponse),
        (status = 400, description = "Malformed request: unreadable JSON, wrong field type, or an invalid path or query parameter", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_operations(
    State(state): State<AppState>,
    Query(query): Query<ListOperationsQuery>,
) -> Result<axum::Json<OperationListResponse>, ApiError> {
    let limit = pagination::limit(query.limit)?;
    pagination::check_workforce_filters(query.region.as_deref(), query.workforce_name.as_deref())?;
    let before = match &query.cursor {
        Some(cursor) => Some(decode_cursor(cursor)?),
        None => None,
    };
    let rows = operation_store::list(
        &state.db,
        OperationFilter {
            region: query.region.as_deref(),
            workforce_name: query.workforce_name.as_deref(),
            status: query.status.map(OperationStatus::as_str),
            kind: query.kind.map(OperationKind::as_str),
            before,
            limit: limit + 1,
        },
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    let page: Vec<_> = rows.into_iter().take(limit as usize).collect();
    let next_cursor = has_more
        .then(|| {
            page.last()
                .map(|o| pagination::encode(&format!("{}|{}", o.created_at.to_rfc3339(), o.id)))
        })
        .flatten();
    Ok(axum::Json(OperationListResponse {
        items: page.iter().map(OperationResponse::from_row).collect(),
        next_cursor,
    }))
}

fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let position = pagination::decode(cursor)?;
    let (time, id) = position
        .split_once('|')
        .ok_or_else(pagination::invalid_cursor)?;
    let time = DateTime::parse_from_rfc3339(time).map_err(|_| pagination::invalid_cursor())?;
    let id = Uuid::parse_str(id).map_err(|_| pagination::invalid_cursor())?;
    Ok((time.with_timezone(&Utc), id))
}
