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
    /// Seconds to wait, 0 to 60, for the operation's `ETag` to change before the response: to
    /// differ from those in `If-None-Match`, or without that header from the one at the request's
    /// start. The ETag covers every field except `attempts` and `updated_at`. The response comes
    /// as soon as it changes, or when the wait ends, as `304` with `If-None-Match` and as the
    /// unchanged operation without it. A finished operation is returned at once. The server may
    /// end the wait earlier, a second before its request timeout.
    #[param(minimum = 0, maximum = 60)]
    wait: Option<u32>,
}

/// Get an operation
///
/// Returns a long-running change and its progress: its status, the last SageMaker status seen
/// and, when it failed, AWS's error code and message. With `wait`, the request waits until the
/// operation changes or the wait ends. With `If-None-Match`, a change is an `ETag` other than
/// those sent, so a change made between two requests is not missed. An operation whose `ETag`
/// was sent gets `304` with no body. The `ETag` is weak and ignores `attempts` and
/// `updated_at`, which change at every poll of SageMaker.
#[utoipa::path(
    get,
    path = "/v1/operations/{id}",
    tag = "operations",
    params(("id" = Uuid, Path, description = "Operation id"), GetOperationQuery),
    responses(
        (status = 200, description = "Success", body = OperationResponse,
            headers(("ETag" = String, description = "A weak ETag that changes with every field but attempts and updated_at. Send it as If-None-Match to wait for the next change"))),
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
    // A copy whose ETag the caller does not have may be older than the state the caller got
    // from another process, so that response is built from a new database read.
    let cached = state.cache.operation(id).filter(|cached| {
        if_none_match
            .as_deref()
            .is_none_or(|tags| already_seen(tags, &cached.etag))
    });
    let cached = match cached {
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

/// Reads the `If-None-Match` header. Several lines of it form one list, as RFC 9110 allows,
/// so `*` on one line and a tag on another are as invalid as `*, "tag"` on one.
fn if_none_match(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let lines: Vec<HeaderValue> = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .cloned()
        .collect();
    if lines.is_empty() {
        return Ok(None);
    }
    super::check_entity_tag_lines("If-None-Match", &lines).map(Some)
}

/// Serializes an operation's response and computes its ETag.
fn render(operation: &OperationRow) -> Result<CachedOperation, ApiError> {
    let response = OperationResponse::from_row(operation);
    let body = serde_json::to_vec(&response).map_err(|error| ApiError::Internal(error.into()))?;
    Ok(CachedOperation {
        body: body.into(),
        etag: progress_etag(&response)?,
    })
}

/// Computes a weak ETag from the first 64 bits of the SHA-256 of the response without
/// `attempts` and `updated_at`. A worker changes those two at every step, twice per status
/// read of SageMaker, so an ETag of the whole body would end every wait at each poll. A weak
/// validator may stay the same over such changes (RFC 9110 section 8.8.1).
fn progress_etag(response: &OperationResponse) -> Result<HeaderValue, ApiError> {
    use sha2::Digest;

    let progress = OperationResponse {
        attempts: 0,
        updated_at: response.created_at,
        ..response.clone()
    };
    let bytes = serde_json::to_vec(&progress).map_err(|error| ApiError::Internal(error.into()))?;
    let digest = sha2::Sha256::digest(&bytes);
    let hex: String = digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok(HeaderValue::from_str(&format!("W/\"{hex}\""))
        .expect("hex digits in quotes are a valid header"))
}

/// Returns true when an `If-None-Match` value is `*` or names `etag`, that is, when the caller
/// already has this response. The comparison ignores `W/`, as RFC 9110 section 13.1.2 requires.
fn already_seen(if_none_match: &str, etag: &HeaderValue) -> bool {
    if if_none_match.trim() == "*" {
        return true;
    }
    let current = etag.to_str().unwrap_or_default();
    let current = current.strip_prefix("W/").unwrap_or(current);
    crate::changes::entity_tags(if_none_match).is_some_and(|tags| {
        tags.iter()
            .any(|tag| tag.strip_prefix("W/").unwrap_or(tag) == current)
    })
}

/// Builds a `304` when the caller already has this response, and the response otherwise.
fn respond(operation: &CachedOperation, if_none_match: Option<&str>) -> Response {
    if if_none_match.is_some_and(|tags| already_seen(tags, &operation.etag)) {
        // RFC 9110 section 8.6 allows a Content-Length in a 304 only with the length of the
        // 200 response's content.
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, operation.etag.clone()),
                (
                    header::CONTENT_LENGTH,
                    HeaderValue::from(operation.body.len()),
                ),
            ],
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

/// Waits until the operation's ETag differs from those in `If-None-Match`, or from the first
/// read's without it, until `wait` ends, or until the process shuts down, and builds the
/// response. An unchanged operation
/// gets `304` with `If-None-Match`. A finished operation is returned at once, because it no
/// longer changes. No database connection is held while waiting. Each read takes one from the
/// pool and returns it, and readers woken together share one read.
async fn wait_for_change(
    state: &AppState,
    id: Uuid,
    wait: Duration,
    if_none_match: Option<String>,
) -> Result<Response, ApiError> {
    let arrived = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + wait;
    let watch = state.watchers.watch(id);
    // The ETags that the caller has: those sent, or else the one of the first read.
    let mut seen = if_none_match.clone();
    loop {
        // Enabled before the read, so a change committed after the read still wakes this wait.
        let notified = watch.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let current = watch.read(arrived, || find_operation(state, id)).await?;
        let rendered = render(&current)?;
        let first_etag = || rendered.etag.to_str().unwrap_or_default().to_owned();
        if !already_seen(seen.get_or_insert_with(first_etag), &rendered.etag) {
            return Ok(respond(&rendered, None));
        }
        let unchanged = || respond(&rendered, if_none_match.as_deref());
        if current.is_finished() || state.watchers.is_closed() {
            return Ok(unchanged());
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep_until(deadline) => return Ok(unchanged()),
            () = state.watchers.closed() => return Ok(unchanged()),
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
