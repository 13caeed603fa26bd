//! Operation routes: one operation, with long-polling, and the list with filters.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
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
    /// Seconds to wait, 0 to 60, for the operation to change before the response. With
    /// `If-None-Match`, a change is an `ETag` other than those sent. Without it, a change is a
    /// status, AWS status or update time other than at the request's first read. The response
    /// comes as soon as the operation changes, or when the wait ends, as `304` with
    /// `If-None-Match` and as the unchanged operation without it. A finished operation is
    /// returned at once. The server may end the wait earlier, a second before its request
    /// timeout.
    #[param(minimum = 0, maximum = 60)]
    wait: Option<u32>,
}

/// Get an operation
///
/// Returns a long-running change and its progress: its status, the last SageMaker status seen
/// and, when it failed, AWS's error code and message. With `wait`, the request waits until the
/// operation changes or the wait ends. With `If-None-Match`, a change is an `ETag` other than
/// those sent, so a change made between two requests is not missed. An operation whose `ETag`
/// was sent gets `304` with no body.
#[utoipa::path(
    get,
    path = "/v1/operations/{id}",
    tag = "operations",
    params(("id" = Uuid, Path, description = "Operation id"), GetOperationQuery),
    responses(
        (status = 200, description = "Success", body = OperationResponse,
            headers(("ETag" = String, description = "Changes whenever the response body changes. Send it as If-None-Match to wait for the next change"))),
        (status = 304, description = "The operation's ETag is one of those in If-None-Match, because it has not changed, or did not change before the wait ended",
            headers(("ETag" = String, description = "The operation's current ETag"))),
        (status = 400, description = "Malformed request: unreadable JSON, wrong field type, or an invalid path or query parameter or If-None-Match header", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_operation(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(query): Query<GetOperationQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let wait = wait_duration(query.wait)?;
    let if_none_match = if_none_match(&headers)?;
    if !wait.is_zero() {
        return Box::pin(wait_for_change(
            &state,
            id,
            wait.min(state.watchers.max_wait),
            if_none_match,
        ))
        .await;
    }
    let cached = match state.cache.operation(id) {
        Some(cached) => cached,
        None => {
            let ticket = state.cache.ticket();
            let operation = Box::pin(find_operation(&state, id)).await?;
            let cached = Arc::new(render(&operation)?);
            state.cache.store_operation(ticket, id, cached.clone());
            cached
        }
    };
    Ok(respond(&cached, if_none_match.as_deref()))
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

/// Reads the `If-None-Match` header. Several lines of it form one list, as RFC 9110 allows.
fn if_none_match(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let mut lines = headers.get_all(header::IF_NONE_MATCH).iter().peekable();
    if lines.peek().is_none() {
        return Ok(None);
    }
    let checked = lines
        .map(|line| super::check_entity_tags("If-None-Match", line))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(checked.join(", ")))
}

/// Serializes an operation's response and computes its ETag.
fn render(operation: &OperationRow) -> Result<CachedOperation, ApiError> {
    let body = serde_json::to_vec(&OperationResponse::from_row(operation))
        .map_err(|error| ApiError::Internal(error.into()))?;
    let etag = body_etag(&body);
    Ok(CachedOperation {
        body: body.into(),
        etag,
    })
}

/// Computes a strong ETag of a response body from the first 64 bits of its SHA-256, in hex.
/// Any change of the body changes it, so a client can tell whether its copy is current.
fn body_etag(body: &[u8]) -> HeaderValue {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body);
    let hex: String = digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex digits in quotes are a valid header")
}

/// Returns true when an `If-None-Match` value is `*` or names `etag`, that is, when the caller
/// already has this response. The comparison ignores `W/`, as RFC 9110 section 13.1.2 requires.
fn already_seen(if_none_match: &str, etag: &HeaderValue) -> bool {
    if if_none_match.trim() == "*" {
        return true;
    }
    let current = etag.to_str().unwrap_or_default();
    crate::changes::entity_tags(if_none_match).is_some_and(|tags| {
        tags.iter()
            .any(|tag| tag.strip_prefix("W/").unwrap_or(tag) == current)
    })
}

/// Builds a `304` when the caller already has this response, and the response otherwise.
fn respond(operation: &CachedOperation, if_none_match: Option<&str>) -> Response {
    if if_none_match.is_some_and(|tags| already_seen(tags, &operation.etag)) {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, operation.etag.clone())],
        )
            .into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, operation.etag.clone()),
        ],
        operation.body.clone(),
    )
        .into_response()
}

async fn find_operation(state: &AppState, id: Uuid) -> Result<OperationRow, ApiError> {
    operation_store::find(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no operation with id {id}")))
}

/// Waits until the operation changes, or until `wait` ends, and builds the response. With
/// `If-None-Match`, a change is an ETag other than those sent, and an unchanged operation gets
/// `304`. Without it, a change is a status, AWS status or update time other than at the first
/// read. A finished operation is returned at once, because it no longer changes. No database
/// connection is held while waiting. Each read takes one from the pool and returns it, and
/// readers woken together share one read.
async fn wait_for_change(
    state: &AppState,
    id: Uuid,
    wait: Duration,
    if_none_match: Option<String>,
) -> Result<Response, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    let watch = state.watchers.watch(id);
    let mut first: Option<OperationRow> = None;
    loop {
        // Enabled before the read, so a change committed after the read still wakes this wait.
        let notified = watch.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let current = watch.read(|| find_operation(state, id)).await?;
        let rendered = match &if_none_match {
            Some(tags) => {
                let rendered = render(&current)?;
                if !already_seen(tags, &rendered.etag) {
                    return Ok(respond(&rendered, None));
                }
                Some(rendered)
            }
            None => {
                let baseline = first.get_or_insert_with(|| current.clone());
                let changed = current.status != baseline.status
                    || current.aws_status != baseline.aws_status
                    || current.updated_at != baseline.updated_at;
                if changed {
                    return Ok(respond(&render(&current)?, None));
                }
                None
            }
        };
        let unchanged = || -> Result<Response, ApiError> {
            match &rendered {
                Some(rendered) => Ok(respond(rendered, if_none_match.as_deref())),
                None => Ok(respond(&render(&current)?, None)),
            }
        };
        if current.is_finished() {
            return unchanged();
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep_until(deadline) => return unchanged(),
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
