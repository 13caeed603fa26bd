//! Liveness and readiness.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// The process is up.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok`.
    pub status: &'static str,
    /// `aws` or `sandbox`.
    pub mode: &'static str,
    pub version: &'static str,
}

/// Readiness and the state of each dependency.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessResponse {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    pub database: bool,
    pub migrations: bool,
    pub workers: bool,
}

/// Liveness
///
/// Returns 200 as long as the process runs, without touching the database.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Success", body = HealthResponse)))]
pub async fn healthz(State(state): State<AppState>) -> axum::Json<HealthResponse> {
    axum::Json(HealthResponse {
        status: "ok",
        mode: state.mode.as_str(),
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Readiness
///
/// Ready when the database responds, every migration is applied and the workers run.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    responses((status = 200, description = "Success", body = ReadinessResponse), (status = 503, description = "Not ready", body = ReadinessResponse))
)]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let latest = crate::db::MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or_default();
    let applied = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        sqlx::query_scalar::<_, i64>(
            "select coalesce(max(version), 0) from _sqlx_migrations where success",
        )
        .fetch_one(&state.db),
    )
    .await;
    let (database, migrations) = match applied {
        Ok(Ok(version)) => (true, version >= latest),
        _ => (false, false),
    };
    let workers = state.workers_running.load(Ordering::Relaxed);
    let ready = database && migrations && workers;
    let body = ReadinessResponse {
        status: if ready { "ready" } else { "not_ready" },
        database,
        migrations,
        workers,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // A 503 here is a readiness report, not an error, so it keeps its own JSON body.
    let mut response = (status, axum::Json(body)).into_response();
    response
        .extensions_mut()
        .insert(super::middleware::KeepBody);
    response
}

/// Renders the Prometheus metrics, refreshing the gauges read from the database first.
pub async fn metrics(State(state): State<AppState>) -> Response {
    crate::telemetry::refresh_gauges(&state.db).await;
    let body = state.metrics.render();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
        .into_response()
}
