//! Operation routes: one operation, and the list with filters.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::error::{ApiError, Problem};
use super::extract::{Path, Query};
use super::models::{OperationListResponse, OperationResponse};
use super::{AppState, pagination};
use crate::db::operations::{self as operation_store, OperationFilter};
use crate::domain::{OperationKind, OperationStatus};

/// Get an operation
///
/// Returns a long-running change and its progress: its status, the last SageMaker status seen
/// and, when it failed, AWS's error code and message.
#[utoipa::path(
    get,
    path = "/v1/operations/{id}",
    tag = "operations",
    params(("id" = Uuid, Path, description = "Operation id")),
    responses(
        (status = 200, description = "Success", body = OperationResponse),
        (status = 400, description = "Malformed request: unreadable JSON, wrong field type, or an invalid path or query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_operation(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<OperationResponse>, ApiError> {
    let operation = operation_store::find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no operation with id {id}")))?;
    Ok(axum::Json(OperationResponse::from_row(&operation)))
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
