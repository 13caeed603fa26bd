//! Idempotency keys: a change repeated with the same `Idempotency-Key` header by the same
//! caller gets the original response instead of a second operation.
//!
//! The first request claims the key in the database, so concurrent repeats cannot both run
//! the handler. They wait for the first response and replay it. The same key with another
//! method, path or body is rejected with 422. A response other than a success frees the key,
//! so a retry runs again, because a rejection may depend on headers or on the workforce's
//! state, which the key does not cover.
//!
//! The operation that a keyed change creates is linked to the key in the transaction that
//! creates it. A repeat of a change whose first request ended before its response was stored,
//! such as by a crash, gets `202` with that operation rather than a second one.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use crate::auth::Authorized;
use crate::db::idempotency;
use crate::domain::FieldError;
use crate::secrets::SecretSealer;

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const REPLAYED: HeaderName = HeaderName::from_static("idempotency-replayed");

/// Largest response body stored for a key; the responses of changes are far smaller.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// How long a claimed key waits for its first request before a repeat may take over.
const FIRST_REQUEST_LOCK: Duration = Duration::from_secs(60);
/// Maximum time a repeat waits for the first request's response. The wait also ends two
/// seconds before the request timeout, so that the repeat gets a 409 rather than a 503.
const MAX_REPEAT_WAIT: Duration = Duration::from_secs(30);

/// The caller and key of the keyed request in progress, read by [`linked_key`].
#[derive(Clone)]
struct ClaimedKey {
    caller: String,
    key: String,
}

tokio::task_local! {
    static CLAIMED_KEY: ClaimedKey;
}

/// Returns the caller and idempotency key of the request that the current task handles, if
/// it carries one, so that an operation it creates can be linked to the key.
pub fn linked_key() -> Option<(String, String)> {
    CLAIMED_KEY
        .try_with(|claimed| (claimed.caller.clone(), claimed.key.clone()))
        .ok()
}

fn invalid_key(reason: &str) -> Response {
    ApiError::BadRequest {
        detail: format!("invalid Idempotency-Key header: {reason}"),
        errors: vec![FieldError::new("Idempotency-Key", reason)],
    }
    .into_response()
}

fn replay(status: i32, body: Vec<u8>, location: Option<String>) -> Response {
    let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
    let mut response = Response::builder()
        .status(status)
        .body(Body::from(body))
        .expect("a stored response rebuilds");
    let content_type = if status.is_success() {
        "application/json"
    } else {
        super::error::PROBLEM_CONTENT_TYPE
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
        .headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    response
}

/// Applies idempotency keys to changes (`POST`, `PUT`, `DELETE` under `/v1/`). A repeat
/// waits for the first response until two seconds before `timeout`, the request timeout.
pub async fn apply(state: &AppState, request: Request, next: Next, timeout: Duration) -> Response {
    let is_change = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::DELETE
    ) && request.uri().path().starts_with("/v1/");
    if !is_change || !request.headers().contains_key(IDEMPOTENCY_KEY) {
        return next.run(request).await;
    }
    // A method that the route does not serve gets its 405 from the router, key or not.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("", MatchedPath::as_str);
    if !crate::auth::serves(request.method(), route) {
        return next.run(request).await;
    }
    // A stored response is replayed, and this one carries a new API key, which the service
    // keeps only as a hash.
    if request.method() == Method::POST && request.uri().path() == "/v1/api-keys" {
        return invalid_key(
            "is not accepted when creating an API key, because the response carries the new key, which is never stored; send the request without it",
        );
    }
    // Boxed, so that the future of every other request stays small.
    let repeat_wait = timeout
        .saturating_sub(Duration::from_secs(2))
        .min(MAX_REPEAT_WAIT);
    Box::pin(keyed_change(state.clone(), request, next, repeat_wait)).await
}

/// Returns a JSON body in one form (sorted keys, no white space), so that a client that
/// serializes the same document differently on its retry still makes the same request.
///
/// Returns `None`, and the bytes are hashed as sent, for a body that is not JSON or that
/// repeats a key within an object. serde_json keeps the last of repeated keys, which the
/// handlers reject, so such a body must not match an accepted request.
///
/// It replaces each `client_secret` value by its fingerprint under the process's secret key
/// (see [`SecretSealer::fingerprint`]), so that the stored hash does not help to guess it.
fn canonical_json(bytes: &[u8], sealer: &SecretSealer) -> Option<Vec<u8>> {
    let mut document: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let keys_sent = serde::Deserializer::deserialize_any(&mut deserializer, KeyCount).ok()?;
    if keys_sent != keys_kept(&document) {
        return None;
    }
    fingerprint_secrets(&mut document, sealer);
    serde_json::to_vec(&document).ok()
}

/// Replaces the value of every `client_secret` key, at any depth, by its fingerprint.
fn fingerprint_secrets(value: &mut serde_json::Value, sealer: &SecretSealer) {
    match value {
        serde_json::Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                if name == "client_secret" {
                    // The prefix keeps the string "42" apart from the number 42.
                    let text = match &mut *field {
                        serde_json::Value::String(text) => format!("string:{text}"),
                        other => format!("json:{other}"),
                    };
                    *field = serde_json::Value::String(sealer.fingerprint(text.as_bytes()));
                } else {
                    fingerprint_secrets(field, sealer);
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                fingerprint_secrets(item, sealer);
            }
        }
        _ => {}
    }
}

/// A visitor that counts the keys of every object in a JSON document as sent, repeated keys
/// included.
#[derive(Clone, Copy)]
struct KeyCount;

impl<'de> serde::de::DeserializeSeed<'de> for KeyCount {
    type Value = usize;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeyCount {
    type Value = usize;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_i64<E>(self, _: i64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_u64<E>(self, _: u64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_f64<E>(self, _: f64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_str<E>(self, _: &str) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_unit<E>(self) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut items: A) -> Result<usize, A::Error> {
        let mut keys = 0;
        while let Some(inner) = items.next_element_seed(self)? {
            keys += inner;
        }
        Ok(keys)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut entries: A) -> Result<usize, A::Error> {
        let mut keys = 0;
        while entries.next_key::<serde::de::IgnoredAny>()?.is_some() {
            keys += 1 + entries.next_value_seed(self)?;
        }
        Ok(keys)
    }
}

/// Counts the keys of every object in a parsed document, where repeated keys are merged.
fn keys_kept(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Object(map) => map.len() + map.values().map(keys_kept).sum::<usize>(),
        serde_json::Value::Array(items) => items.iter().map(keys_kept).sum(),
        _ => 0,
    }
}

/// Handles a change that carries an idempotency key.
async fn keyed_change(
    state: AppState,
    request: Request,
    next: Next,
    repeat_wait: Duration,
) -> Response {
    let mut sent = request.headers().get_all(IDEMPOTENCY_KEY).iter();
    let Some(key) = sent.next().cloned() else {
        return next.run(request).await;
    };
    if sent.next().is_some() {
        return invalid_key("must be sent once; send one Idempotency-Key header per request");
    }
    // HeaderValue::to_str also passes a tab, which is not printable.
    let Some(key) = key
        .to_str()
        .ok()
        .filter(|key| key.bytes().all(|b| (0x20..=0x7e).contains(&b)))
        .map(str::to_owned)
    else {
        return invalid_key("must be printable ASCII");
    };
    if key.is_empty() || key.len() > 255 {
        return invalid_key("must have 1 to 255 characters");
    }
    let Some(authorized) = request.extensions().get::<Authorized>().cloned() else {
        return next.run(request).await;
    };
    let caller = format!("{}:{}", authorized.kind.as_str(), authorized.actor);

    let (parts, body) = request.into_parts();
    // The body limit middleware has already bounded the body by `--max-body-bytes`.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::PayloadTooLarge.into_response();
    };
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(parts.uri.path().as_bytes());
    hasher.update([0]);
    // A body that mentions the field at all may carry a secret.
    let has_secret = bytes
        .windows(b"client_secret".len())
        .any(|window| window == b"client_secret");
    match canonical_json(&bytes, &state.sealer) {
        Some(canonical) => hasher.update(canonical),
        None if bytes.is_empty() => {}
        // A body that is not canonical JSON may still hold a secret, so it enters the hash
        // only as a fingerprint.
        None => hasher.update(state.sealer.fingerprint(&bytes)),
    }
    let request_hash = hasher.finalize().to_vec();
    let ttl = state.idempotency_ttl;

    let deadline = tokio::time::Instant::now() + repeat_wait;
    loop {
        match idempotency::claim(
            &state.db,
            &caller,
            &key,
            &request_hash,
            ttl,
            FIRST_REQUEST_LOCK,
        )
        .await
        {
            Ok(true) => break,
            Ok(false) => {}
            Err(error) => return ApiError::from(error).into_response(),
        }
        let stored = match idempotency::find(&state.db, &caller, &key).await {
            Ok(Some(stored)) => stored,
            Ok(None) => continue,
            Err(error) => return ApiError::from(error).into_response(),
        };
        if stored.expired || stored.in_progress_expired {
            match idempotency::take_over(
                &state.db,
                &caller,
                &key,
                &request_hash,
                ttl,
                FIRST_REQUEST_LOCK,
            )
            .await
            {
                Ok(true) => break,
                Ok(false) => continue,
                Err(error) => return ApiError::from(error).into_response(),
            }
        }
        if stored.request_hash != request_hash {
            // Processes with different secret keys see one secret as two, so a true repeat
            // of an OIDC change can also land here. A new key would then make it twice.
            let reason = if has_secret {
                "was already used for a different request, or for this OIDC change on a service process with another WORKFORCE_SECRET_KEY; check the workforce's operations before sending the change again with a new key"
            } else {
                "was already used for a different request; use a new key for a new request"
            };
            return ApiError::Validation(vec![FieldError::new("Idempotency-Key", reason)])
                .into_response();
        }
        if let (Some(status), Some(body)) = (stored.status_code, stored.response_body) {
            return replay(status, body, stored.location);
        }
        if let Some(operation_id) = stored.operation_id {
            return replay_operation(&state, operation_id).await;
        }
        if tokio::time::Instant::now() >= deadline {
            return ApiError::RequestInProgress(
                "the first request with this Idempotency-Key is still being handled; repeat it later".to_owned(),
            )
            .into_response();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Frees the key if the request ends without a response to store: a server error, or the
    // request's timeout, which drops this future.
    let mut claim = Claim {
        db: state.db.clone(),
        caller: caller.clone(),
        key: key.clone(),
        release_on_drop: true,
    };
    let claimed = ClaimedKey {
        caller: caller.clone(),
        key: key.clone(),
    };
    let response = CLAIMED_KEY
        .scope(
            claimed,
            next.run(Request::from_parts(parts, Body::from(bytes))),
        )
        .await;
    let status = response.status();
    if !status.is_success() {
        // Freed before the response, so that an immediate retry runs again. On a failure the
        // claim retries in the background.
        if idempotency::release(&state.db, &caller, &key).await.is_ok() {
            claim.release_on_drop = false;
        }
        return response;
    }
    claim.release_on_drop = false;
    let (mut response_parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, MAX_RESPONSE_BYTES)
        .await
        .unwrap_or_default();
    let location = response_parts
        .headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Err(error) = idempotency::store_response(
        &state.db,
        &caller,
        &key,
        status.as_u16(),
        &body,
        location.as_deref(),
    )
    .await
    {
        tracing::warn!(error = %error, "failed to store the response of an idempotency key");
    }
    if let Err(error) = idempotency::purge_expired(&state.db, 100).await {
        tracing::debug!(error = %error, "failed to purge expired idempotency keys");
    }
    response_parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(response_parts, Body::from(body))
}

/// Returns the response to a repeat whose first request created an operation but stored no
/// response: `202` with the operation as it is now.
async fn replay_operation(state: &AppState, operation_id: uuid::Uuid) -> Response {
    match crate::db::operations::find(&state.db, operation_id).await {
        Ok(Some(operation)) => {
            let mut response = super::workforces::accepted(&operation);
            response
                .headers_mut()
                .insert(REPLAYED, HeaderValue::from_static("true"));
            response
        }
        Ok(None) => {
            tracing::error!(operation.id = %operation_id, "an idempotency key names an operation that does not exist");
            ApiError::Internal(anyhow::anyhow!(
                "operation {operation_id} of an idempotency key is missing"
            ))
            .into_response()
        }
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// A claimed key whose request has no stored response yet. Dropping it while
/// `release_on_drop` is set frees the key in the background, so that a repeat runs again
/// instead of waiting for the lock to expire.
struct Claim {
    db: sqlx::PgPool,
    caller: String,
    key: String,
    release_on_drop: bool,
}

/// Attempts to free a key after a failed request, a second apart.
const RELEASE_ATTEMPTS: u32 = 3;

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.release_on_drop {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (db, caller, key) = (
            self.db.clone(),
            std::mem::take(&mut self.caller),
            std::mem::take(&mut self.key),
        );
        runtime.spawn(async move {
            for attempt in 1..=RELEASE_ATTEMPTS {
                match idempotency::release(&db, &caller, &key).await {
                    Ok(()) => return,
                    Err(error) if attempt == RELEASE_ATTEMPTS => {
                        tracing::warn!(error = %error, caller, key, "failed to free an idempotency key after a failed request, so it stays claimed until its lock expires");
                    }
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            }
        });
    }
}
