//! API key management for admins: create (the key is shown once), list and revoke.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::error::{ApiError, Problem};
use super::extract::{Json, Path};
use crate::auth::api_keys::{self as key_store, ApiKeyRow, KeyChanger};
use crate::auth::{Authorized, Role};
use crate::domain::{FieldError, Region, check_length};

/// A new API key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "labeling-portal", "role": "operator", "regions": ["us-east-1"]}))]
pub struct CreateApiKeyRequest {
    /// Unique name, recorded as the actor of the key's changes: 1 to 64 letters, digits, `.`, `_` or `-`, except `system`, `anonymous` and `command-line`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub name: String,
    pub role: Role,
    /// Regions an operator key may change, each a region that the service manages; all when
    /// omitted. Keys of other roles take no list.
    #[serde(default)]
    #[schema(schema_with = key_regions_schema)]
    pub regions: Option<Vec<String>>,
    /// When the key stops working, in the future and before the year 10000; never when omitted.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// Builds the schema of a key's region list: null, or region codes as `Region::parse` checks them.
fn key_regions_schema() -> utoipa::openapi::Array {
    use utoipa::openapi::{ArrayBuilder, ObjectBuilder, Type};

    ArrayBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Array,
            Type::Null,
        ]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(super::REGION_PATTERN))
                .max_length(Some(32)),
        )
        .build()
}

/// An API key without its secret value.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyResponse {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub regions: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A created key with its value, which is shown only in this response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedApiKeyResponse {
    #[serde(flatten)]
    pub key: ApiKeyResponse,
    /// The key, to send as `Authorization: Bearer <key>`. Store it now: it is never shown again.
    pub api_key: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyListResponse {
    pub items: Vec<ApiKeyResponse>,
}

impl From<ApiKeyRow> for ApiKeyResponse {
    fn from(row: ApiKeyRow) -> Self {
        Self {
            id: row.id,
            role: Role::parse(&row.role).unwrap_or(Role::Viewer),
            name: row.name,
            regions: row.regions,
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
        }
    }
}

/// Builds the message for a new key whose name an existing or revoked key has, in any letter
/// case; `existing` is that key's name.
pub fn name_in_use_message(existing: &str) -> String {
    format!(
        "an API key named '{existing}' exists or existed; names of revoked keys stay reserved, and names that differ only in letter case count as one, so choose another name"
    )
}

/// Checks an API key name: 1 to 64 ASCII letters, digits, `.`, `_` or `-`, and not a name
/// from [`key_store::RESERVED_NAMES`].
pub fn validate_key_name(name: &str) -> Result<(), FieldError> {
    check_length("name", name, 1, 64)?;
    if key_store::RESERVED_NAMES
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(name))
    {
        return Err(FieldError::new(
            "name",
            format!(
                "must not be one of {} in any letter case, because the audit log uses them for callers other than keys",
                key_store::RESERVED_NAMES.join(", ")
            ),
        ));
    }
    if name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        Ok(())
    } else {
        Err(FieldError::new(
            "name",
            "must contain only letters, digits, '.', '_' and '-'",
        ))
    }
}

/// Checks the region list of a new key: only operator keys take one, it names each region
/// once, and with `managed`, only regions that this service manages.
pub fn check_key_regions(
    role: Role,
    regions: Option<&[String]>,
    managed: Option<&[Region]>,
) -> Vec<FieldError> {
    let Some(regions) = regions else {
        return Vec::new();
    };
    if role != Role::Operator {
        return vec![FieldError::new(
            "regions",
            format!(
                "applies only to operator keys; omit it for a key with the {} role",
                role.as_str()
            ),
        )];
    }
    if regions.is_empty() {
        return vec![FieldError::new(
            "regions",
            "must list at least one region; omit it to allow every region",
        )];
    }
    let mut errors = Vec::new();
    for (index, region) in regions.iter().enumerate() {
        let field = format!("regions[{index}]");
        match Region::parse(&field, region) {
            Err(error) => errors.push(error),
            Ok(_) if regions[..index].contains(region) => {
                errors.push(FieldError::new(field, "is listed twice"));
            }
            Ok(parsed) if managed.is_some_and(|managed| !managed.contains(&parsed)) => {
                let managed = managed.unwrap_or_default();
                let names: Vec<&str> = managed.iter().map(Region::as_str).collect();
                errors.push(FieldError::new(
                    field,
                    format!(
                        "is not a region that this service manages ({})",
                        names.join(", ")
                    ),
                ));
            }
            Ok(_) => {}
        }
    }
    errors
}

/// Returns the caller of a key change, for its audit event.
fn changer<'a>(headers: &'a HeaderMap, authorized: &'a Authorized) -> KeyChanger<'a> {
    KeyChanger {
        actor: &authorized.actor,
        kind: authorized.kind.as_str(),
        role: Some(authorized.role.as_str()),
        request_id: headers
            .get(super::REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok()),
    }
}

/// Create an API key
///
/// Creates a key for a service or script. The key is returned once in this response and only
/// its SHA-256 hash is stored.
#[utoipa::path(
    post,
    path = "/v1/api-keys",
    tag = "api-keys",
    request_body = CreateApiKeyRequest,
    responses(
        (status = 201, description = "Created; the key is in `api_key`", body = CreatedApiKeyResponse),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A key with this name exists or was revoked", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field values", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_api_key(
    State(state): State<AppState>,
    authorized: Authorized,
    headers: HeaderMap,
    Json(request): Json<CreateApiKeyRequest>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    if let Err(error) = validate_key_name(&request.name) {
        errors.push(error);
    }
    errors.extend(check_key_regions(
        request.role,
        request.regions.as_deref(),
        Some(&state.regions),
    ));
    if request.expires_at.is_some_and(|at| at <= Utc::now()) {
        errors.push(FieldError::new("expires_at", "must be in the future"));
    }
    // Later times have no RFC 3339 form, which the responses must use.
    if request.expires_at.is_some_and(|at| at.year() > 9999) {
        errors.push(FieldError::new(
            "expires_at",
            "must be before the year 10000; omit it for a key that never expires",
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let created = key_store::create_recorded(
        &state.db,
        &changer(&headers, &authorized),
        &request.name,
        request.role,
        request.regions.as_deref(),
        request.expires_at,
    )
    .await;
    let (row, key) = match created {
        Ok(created) => created,
        Err(key_store::CreateKeyError::NameTaken(existing)) => {
            return Err(ApiError::NameInUse(name_in_use_message(&existing)));
        }
        Err(key_store::CreateKeyError::Database(error)) => return Err(error.into()),
    };
    // The body contains the key itself, so no cache on the way to the caller may keep it.
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(CreatedApiKeyResponse {
            key: row.into(),
            api_key: key,
        }),
    )
        .into_response())
}

/// List API keys
///
/// Lists every key with its role, expiry and revocation; key values are never shown.
#[utoipa::path(
    get,
    path = "/v1/api-keys",
    tag = "api-keys",
    responses((status = 200, description = "Success", body = ApiKeyListResponse))
)]
pub async fn list_api_keys(
    State(state): State<AppState>,
) -> Result<axum::Json<ApiKeyListResponse>, ApiError> {
    let rows = key_store::list(&state.db).await?;
    Ok(axum::Json(ApiKeyListResponse {
        items: rows.into_iter().map(ApiKeyResponse::from).collect(),
    }))
}

/// Revoke an API key
///
/// Revokes a key; requests with it fail from the next one on. Revoking a revoked key changes
/// nothing and returns it. The last unrevoked, unexpired admin key cannot be revoked here, so
/// that someone can still manage keys.
#[utoipa::path(
    delete,
    path = "/v1/api-keys/{id}",
    tag = "api-keys",
    params(("id" = Uuid, Path, description = "API key id")),
    responses(
        (status = 200, description = "Revoked", body = ApiKeyResponse),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No key with this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The key is the last unrevoked, unexpired admin key", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    authorized: Authorized,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<ApiKeyResponse>, ApiError> {
    let by = changer(&headers, &authorized);
    let row = match key_store::revoke_unless_last_admin(&state.db, &by, id).await? {
        key_store::Revocation::Revoked(row) => row,
        key_store::Revocation::AlreadyRevoked(row) => return Ok(axum::Json(row.into())),
        key_store::Revocation::NotFound => {
            return Err(ApiError::NotFound(format!("no API key with id {id}")));
        }
        key_store::Revocation::LastAdmin(row) => {
            return Err(ApiError::LastAdminKey(format!(
                "'{}' is the last unrevoked, unexpired admin key, and without it no one could manage API keys over HTTP; create another admin key first (POST /v1/api-keys with role admin) and revoke this one with that key, or revoke it from the command line: workforce-service api-keys revoke --name {}",
                row.name, row.name
            )));
        }
    };
    // The next request with this key, in this process, finds it revoked.
    state
        .cache
        .invalidate(&crate::cache::Invalidation::ApiKey(id));
    Ok(axum::Json(row.into()))
}
