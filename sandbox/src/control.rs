//! Control API under `/_sandbox/`: call counts, faults, delays, forced failures, stuck
//! transitions, the topology and a health check. It is never faulted or counted.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::faults::Faults;
use crate::state::{Inner, Scope, Shared};
use crate::topology::Topology;
use crate::{CallCounts, DelaysMs};

pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/health", get(get_health))
        .route("/calls", get(get_calls).delete(delete_calls))
        .route("/calls/outcomes", get(get_call_outcomes))
        .route("/faults", get(get_faults).put(put_faults))
        .route("/delays", get(get_delays).put(put_delays))
        .route("/topology", get(get_topology).put(put_topology))
        .route("/workforces/fail", post(fail_workforce))
        .route("/workforces/stick", post(stick_workforce))
}

/// Target of the workforce control calls. `account` defaults to the topology's default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailWorkforceRequest {
    account: Option<String>,
    region: String,
    name: String,
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickWorkforceRequest {
    account: Option<String>,
    region: String,
    name: String,
    /// False releases a stuck workforce.
    #[serde(default = "yes")]
    stuck: bool,
}

fn yes() -> bool {
    true
}

/// Rejects a control request body with a plain JSON error.
fn bad_request(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

pub fn call_counts(inner: &Inner) -> CallCounts {
    let mut counts = CallCounts::new();
    for ((account, region, action), count) in &inner.calls {
        *counts
            .entry(account.clone())
            .or_default()
            .entry(region.clone())
            .or_default()
            .entry(action.clone())
            .or_default() += count;
    }
    counts
}

pub fn fail_next_transition(
    inner: &mut Inner,
    account: &str,
    region: &str,
    name: &str,
    reason: &str,
) {
    inner
        .region_mut(&Scope::new(account, region))
        .forced_failures
        .insert(name.to_owned(), reason.to_owned());
}

pub fn set_stuck(inner: &mut Inner, account: &str, region: &str, name: &str, stuck: bool) {
    let state = inner.region_mut(&Scope::new(account, region));
    if stuck {
        state.stuck.insert(name.to_owned());
    } else {
        state.stuck.remove(name);
    }
}

async fn get_health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn get_calls(State(shared): State<Arc<Shared>>) -> Json<CallCounts> {
    Json(call_counts(&shared.lock()))
}

/// Call counts by account, region, action and outcome.
type CallOutcomeCounts =
    BTreeMap<String, BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>>>;

async fn get_call_outcomes(State(shared): State<Arc<Shared>>) -> Json<CallOutcomeCounts> {
    let mut counts = CallOutcomeCounts::new();
    for ((account, region, action, outcome), count) in &shared.lock().outcomes {
        *counts
            .entry(account.clone())
            .or_default()
            .entry(region.clone())
            .or_default()
            .entry(action.clone())
            .or_default()
            .entry((*outcome).to_owned())
            .or_default() += count;
    }
    Json(counts)
}

async fn delete_calls(State(shared): State<Arc<Shared>>) -> StatusCode {
    let mut inner = shared.lock();
    inner.calls.clear();
    inner.outcomes.clear();
    StatusCode::NO_CONTENT
}

async fn get_faults(State(shared): State<Arc<Shared>>) -> Json<Faults> {
    Json(shared.lock().faults.clone())
}

async fn put_faults(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<Faults>, JsonRejection>,
) -> Response {
    let faults = match body {
        Ok(Json(faults)) => faults,
        Err(rejection) => return bad_request(rejection.body_text()),
    };
    let ratios = [
        faults.throttle_ratio,
        faults.server_error_ratio,
        faults.drop_ratio,
    ];
    if ratios.iter().any(|r| !(0.0..=1.0).contains(r)) {
        return bad_request("fault ratios must be between 0.0 and 1.0".to_owned());
    }
    tracing::info!(?faults, "faults changed");
    shared.lock().faults = faults.clone();
    Json(faults).into_response()
}

async fn get_delays(State(shared): State<Arc<Shared>>) -> Json<DelaysMs> {
    Json(DelaysMs::from(shared.lock().delays))
}

async fn put_delays(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<DelaysMs>, JsonRejection>,
) -> Response {
    match body {
        Ok(Json(delays)) => {
            shared.lock().delays = delays.into();
            Json(delays).into_response()
        }
        Err(rejection) => bad_request(rejection.body_text()),
    }
}

async fn get_topology(State(shared): State<Arc<Shared>>) -> Json<Topology> {
    Json(shared.lock().topology.clone())
}

async fn put_topology(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<Topology>, JsonRejection>,
) -> Response {
    let topology = match body {
        Ok(Json(topology)) => topology,
        Err(rejection) => return bad_request(rejection.body_text()),
    };
    if let Err(error) = topology.check() {
        return bad_request(format!("inconsistent topology: {error:#}"));
    }
    shared.lock().topology = topology;
    tracing::info!("topology replaced");
    StatusCode::NO_CONTENT.into_response()
}

async fn fail_workforce(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<FailWorkforceRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return bad_request(rejection.body_text()),
    };
    let mut inner = shared.lock();
    let account = request
        .account
        .unwrap_or_else(|| inner.topology.default_account.clone());
    fail_next_transition(
        &mut inner,
        &account,
        &request.region,
        &request.name,
        &request.reason,
    );
    StatusCode::NO_CONTENT.into_response()
}

async fn stick_workforce(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<StickWorkforceRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return bad_request(rejection.body_text()),
    };
    let mut inner = shared.lock();
    let account = request
        .account
        .unwrap_or_else(|| inner.topology.default_account.clone());
    set_stuck(
        &mut inner,
        &account,
        &request.region,
        &request.name,
        request.stuck,
    );
    StatusCode::NO_CONTENT.into_response()
}
