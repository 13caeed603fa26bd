//! Authentication and authorization: API keys and bearer JWTs, roles, and a rate limit per
//! credential.
//!
//! A middleware authenticates every request outside the public endpoints and checks the
//! [`Permission`] of the matched route before the handler runs, so a 403 never reveals whether
//! a resource exists. Handlers that record changes read the [`Authorized`] caller.

pub mod api_keys;
pub mod jwt;
mod rate_limit;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::domain::Region;
use crate::http::error::ApiError;
pub use rate_limit::RateLimiter;

/// A caller's role, which decides its permissions.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    utoipa::ToSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads workforces, operations and VPC checks.
    Viewer,
    /// Everything a viewer does, and changes workforces (optionally in some regions only).
    Operator,
    /// Reads the audit log.
    Auditor,
    /// Everything, including API key management.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
            Self::Auditor => "auditor",
            Self::Admin => "admin",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Self::Viewer, Self::Operator, Self::Auditor, Self::Admin]
            .into_iter()
            .find(|role| role.as_str() == value)
    }

    fn grants(self, permission: Permission) -> bool {
        match permission {
            Permission::Read => matches!(self, Self::Viewer | Self::Operator | Self::Admin),
            Permission::Change => matches!(self, Self::Operator | Self::Admin),
            Permission::ReadAudit => matches!(self, Self::Auditor | Self::Admin),
            Permission::ManageKeys => self == Self::Admin,
            Permission::Any => true,
        }
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::domain::deserialize_name(
            deserializer,
            Self::parse,
            &["viewer", "operator", "auditor", "admin"],
        )
    }
}

/// The permission a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Read,
    Change,
    ReadAudit,
    ManageKeys,
    /// A request that no route serves: an unknown path, or a method that no route accepts. Any
    /// role may learn that, so the caller gets the 404 or 405 rather than a 403.
    Any,
}

/// The kind of credential that identified the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    ApiKey,
    Jwt,
    /// Public endpoints and tests that bypass authentication.
    Anonymous,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::Jwt => "jwt",
            Self::Anonymous => "anonymous",
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// API key name or token subject.
    pub actor: String,
    pub kind: ActorKind,
    pub roles: BTreeSet<Role>,
    /// Regions an operator may change; `None` means all.
    pub regions: Option<Vec<String>>,
}

/// The permission check that allowed a request, kept for the audit log.
#[derive(Debug, Clone)]
pub struct Authorized {
    pub actor: String,
    pub kind: ActorKind,
    pub role: Role,
}

impl Principal {
    /// Checks a permission, and for changes the region, and returns the role that granted it.
    pub fn require(
        &self,
        permission: Permission,
        region: Option<&Region>,
    ) -> Result<Authorized, ApiError> {
        let Some(role) = self
            .roles
            .iter()
            .rev()
            .copied()
            .find(|role| role.grants(permission))
        else {
            return Err(ApiError::Forbidden(format!(
                "the credential's roles do not allow this request; it needs {}",
                needed(permission)
            )));
        };
        if permission == Permission::Change
            && role == Role::Operator
            && let (Some(allowed), Some(region)) = (&self.regions, region)
            && !allowed.iter().any(|r| r == region.as_str())
        {
            return Err(ApiError::Forbidden(format!(
                "this credential may change workforces only in {}",
                allowed.join(", ")
            )));
        }
        Ok(Authorized {
            actor: self.actor.clone(),
            kind: self.kind,
            role,
        })
    }
}

fn needed(permission: Permission) -> &'static str {
    match permission {
        Permission::Read => "the viewer, operator or admin role",
        Permission::Change => "the operator or admin role",
        Permission::ReadAudit => "the auditor or admin role",
        Permission::ManageKeys => "the admin role",
        Permission::Any => "any role",
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Authorized>()
            .cloned()
            .ok_or(ApiError::Unauthenticated {
                invalid_token: false,
            })
    }
}

/// The permission a route needs, from its method and matched path.
pub fn permission_for(method: &Method, route: &str) -> Permission {
    let served = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
    ];
    if route.is_empty() || !served.contains(method) {
        Permission::Any
    } else if route.starts_with("/v1/api-keys") {
        Permission::ManageKeys
    } else if route.starts_with("/v1/audit-events") {
        Permission::ReadAudit
    } else if method == Method::GET
        || method == Method::HEAD
        || route.ends_with("/vpc-config-checks")
    {
        Permission::Read
    } else {
        Permission::Change
    }
}

/// Returns whether the router serves `method` on the matched `route`. No route matched is
/// not served (404). A route of the OpenAPI document serves the methods it lists (405 for
/// others). Routes outside the document, such as `/metrics` and the docs, count as served, so
/// that they keep their permission check when they are not public.
pub fn serves(method: &Method, route: &str) -> bool {
    static SERVED: std::sync::LazyLock<std::collections::HashMap<String, Vec<Method>>> =
        std::sync::LazyLock::new(|| {
            let paths = crate::http::openapi().paths.paths;
            paths
                .into_iter()
                .map(|(path, item)| {
                    let methods = [
                        (item.get.is_some(), Method::GET),
                        (item.get.is_some() || item.head.is_some(), Method::HEAD),
                        (item.post.is_some(), Method::POST),
                        (item.put.is_some(), Method::PUT),
                        (item.delete.is_some(), Method::DELETE),
                        (item.patch.is_some(), Method::PATCH),
                    ];
                    let served = methods
                        .into_iter()
                        .filter_map(|(served, method)| served.then_some(method))
                        .collect();
                    (path, served)
                })
                .collect()
        });
    !route.is_empty()
        && SERVED
            .get(route)
            .is_none_or(|methods| methods.contains(method))
}

/// Returns the route's `region` path parameter, percent-decoded as the handler reads it.
///
/// Reading the raw path instead would let `us%2Deast%2D1` pass the check as no region and
/// reach the handler as us-east-1.
fn region_of(request: &Request) -> Option<Region> {
    let value = path_parameter(request, "region")?;
    Region::parse("region", &value).ok()
}

/// Returns one path parameter of the matched route, percent-decoded, with invalid UTF-8 as
/// U+FFFD. axum's extractors decode all parameters together, so one bad value hides the others.
fn path_parameter(request: &Request, name: &str) -> Option<String> {
    let template = request.extensions().get::<MatchedPath>()?.as_str();
    let mut segments = request.uri().path().split('/');
    for part in template.split('/') {
        let segment = segments.next()?;
        if part
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
            == Some(name)
        {
            let decoded = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
            return Some(decoded.into_owned());
        }
    }
    None
}

/// Checks credentials against the API key table and, when configured, the identity provider.
#[derive(Clone)]
pub struct Authenticator {
    pub db: sqlx::PgPool,
    /// Recently used API keys, dropped when a key changes.
    pub cache: crate::cache::ReadCache,
    pub jwt: Option<Arc<jwt::JwtVerifier>>,
    pub rate_limiter: Option<Arc<RateLimiter>>,
    /// The limit on unknown API keys per client address.
    pub unknown_key_limiter: Option<Arc<RateLimiter>>,
    /// Hashes of the API keys found in the database by this process. Their lookups never count
    /// against the lookup limit, so a valid key keeps working when its cached copy expires
    /// while its address is over the limit. The set grows only with real keys.
    pub known_keys: Arc<std::sync::Mutex<std::collections::HashSet<[u8; 32]>>>,
    /// Path prefixes served without credentials.
    pub public_prefixes: Arc<Vec<String>>,
}

impl Authenticator {
    fn is_public(&self, path: &str) -> bool {
        self.public_prefixes.iter().any(|prefix| {
            path.strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    /// Finds an API key by its hash, from the cache when a copy is there. Unknown keys are not
    /// cached, so a new key works at once; expiry is checked by the caller on every request.
    ///
    /// A key that is not found counts against its client address's lookup limit. Once the
    /// address is over it, keys that this process has not found before get 429 without a
    /// lookup.
    async fn find_api_key(
        &self,
        token: &str,
        client: Option<IpAddr>,
    ) -> Result<Option<Arc<api_keys::ApiKeyRow>>, ApiError> {
        if !api_keys::is_well_formed(token) {
            return Ok(None);
        }
        let hash = api_keys::hash_key(token);
        if let Some(row) = self.cache.api_key(&hash) {
            return Ok(Some(row));
        }
        let limit = self
            .unknown_key_limiter
            .as_ref()
            .zip(client)
            .map(|(limiter, client)| (limiter, client.to_string()));
        // A key not found before takes a token before its lookup, so that requests sent at
        // once cannot all pass the check. The token comes back unless the key is missing.
        let limit = limit.filter(|_| !self.is_known_key(&hash));
        if let Some((limiter, address)) = &limit
            && let Err(retry_after) = limiter.check(address)
        {
            if let Some(held_back) = limiter.warnings.pass() {
                tracing::warn!(
                    client = %address,
                    limit_per_minute = limiter.per_minute(),
                    held_back,
                    "a client address sent more unknown API keys than --unknown-keys-per-minute allows; its new keys get 429 (held_back counts the warnings of any address left out since the previous one)"
                );
            }
            return Err(ApiError::RateLimited {
                detail: format!(
                    "this address sent too many unknown API keys; retry in {}",
                    whole_seconds(retry_after)
                ),
                retry_after,
            });
        }
        let ticket = self.cache.ticket();
        let found = Box::pin(api_keys::find_by_hash(&self.db, &hash)).await;
        if let Some((limiter, address)) = &limit
            && !matches!(found, Ok(None))
        {
            limiter.refund(address);
        }
        let Some(row) = found? else {
            return Ok(None);
        };
        self.known_keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(hash);
        let row = Arc::new(row);
        self.cache.store_api_key(ticket, hash, row.clone());
        Ok(Some(row))
    }

    fn is_known_key(&self, hash: &[u8; 32]) -> bool {
        self.known_keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(hash)
    }

    async fn authenticate(
        &self,
        token: &str,
        client: Option<IpAddr>,
    ) -> Result<Principal, ApiError> {
        if token.starts_with(api_keys::KEY_PREFIX) {
            let row = self.find_api_key(token, client).await?;
            let row = row.filter(|row| row.is_usable(chrono::Utc::now())).ok_or(
                ApiError::Unauthenticated {
                    invalid_token: true,
                },
            )?;
            let role = Role::parse(&row.role).ok_or(ApiError::Unauthenticated {
                invalid_token: true,
            })?;
            return Ok(Principal {
                actor: row.name.clone(),
                kind: ActorKind::ApiKey,
                roles: BTreeSet::from([role]),
                regions: row.regions.clone(),
            });
        }
        let Some(verifier) = &self.jwt else {
            return Err(ApiError::Unauthenticated {
                invalid_token: true,
            });
        };
        match Box::pin(verifier.verify(token)).await {
            Ok(verified) => Ok(Principal {
                actor: verified.subject,
                kind: ActorKind::Jwt,
                roles: verified.roles,
                regions: None,
            }),
            Err(jwt::JwtError::JwksUnavailable) => Err(ApiError::IdentityProviderUnavailable),
            Err(_) => Err(ApiError::Unauthenticated {
                invalid_token: true,
            }),
        }
    }
}

/// A rejected request: the response, and the caller's name when the credential was valid but
/// not allowed (403) or over its rate limit (429), for the access log.
pub struct Rejection {
    pub response: Response,
    pub actor: Option<String>,
}

impl From<ApiError> for Rejection {
    fn from(error: ApiError) -> Self {
        Self {
            response: error.into_response(),
            actor: None,
        }
    }
}

/// Authenticates the request, applies the rate limit of its credential, checks the permission
/// of the matched route, and stores the [`Authorized`] caller in the request for the handler.
/// A change that the caller's role or regions do not allow is recorded in the audit log.
///
/// Returns the caller, or `None` for a public route or a request that no route serves, or the
/// rejection.
/// The HTTP middleware calls it for every request (see `crate::http::middleware::observe`).
pub async fn authorize(
    auth: &Authenticator,
    request: &mut Request,
) -> Result<Option<Authorized>, Rejection> {
    if auth.is_public(request.uri().path()) {
        return Ok(None);
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str())
        .unwrap_or_default();
    // Authorization is a single field, and a second credential could make logs and proxies
    // disagree with the service about the caller.
    if request
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        let error = crate::domain::FieldError::new(
            "Authorization",
            "must be sent once; send one credential per request",
        );
        return Err(ApiError::BadRequest {
            detail: "invalid Authorization header: it was sent more than once".to_owned(),
            errors: vec![error],
        }
        .into());
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        // Authentication schemes are case-insensitive (RFC 9110, section 11.1).
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token)
        .map(str::trim)
        .filter(|token| !token.is_empty());
    let Some(token) = token else {
        return Err(ApiError::Unauthenticated {
            invalid_token: false,
        }
        .into());
    };
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let principal = auth.authenticate(token, client).await?;
    if let Some(limiter) = &auth.rate_limiter
        && let Err(retry_after) =
            limiter.check(&format!("{}:{}", principal.kind.as_str(), principal.actor))
    {
        if let Some(held_back) = limiter.warnings.pass() {
            // Debug formatting quotes the name, so that a JWT subject with spaces cannot pass
            // for more fields in the text log.
            tracing::warn!(
                caller = ?principal.actor,
                caller_kind = principal.kind.as_str(),
                limit_per_minute = limiter.per_minute(),
                held_back,
                "a caller sent more requests than --rate-limit-per-minute allows; it gets 429 until its bucket refills (held_back counts the warnings of any caller left out since the previous one)"
            );
        }
        let limited = ApiError::RateLimited {
            detail: format!(
                "this credential sent more requests than its rate limit allows; retry in {}",
                whole_seconds(retry_after)
            ),
            retry_after,
        };
        return Err(Rejection {
            response: limited.into_response(),
            actor: Some(principal.actor),
        });
    }
    let permission = permission_for(request.method(), route);
    // Only changes are limited by region, and only they are audited when denied. Decoding the
    // region for every read took about 6% of the instructions of a cached GET.
    let region = if permission == Permission::Change {
        region_of(request)
    } else {
        None
    };
    match principal.require(permission, region.as_ref()) {
        // The router rejects a request that no route serves with 404 or 405, whatever the
        // caller's roles, so it passes without a caller. Checking only after a denial keeps
        // the lookup off allowed requests.
        Err(_) if !serves(request.method(), route) => Ok(None),
        Ok(authorized) => {
            request.extensions_mut().insert(authorized.clone());
            Ok(Some(authorized))
        }
        Err(error) => {
            // Unknown routes and methods that no route accepts are not audited, because nothing
            // there could have changed.
            let is_change = matches!(permission, Permission::Change | Permission::ManageKeys)
                && [Method::POST, Method::PUT, Method::DELETE].contains(request.method())
                && request.extensions().get::<MatchedPath>().is_some();
            if is_change {
                // The name comes from the caller and the table keeps every row forever, so only
                // a bounded copy is stored, with control characters shown as U+FFFD.
                let bounded = |value: String| crate::domain::truncate_for_message(&value);
                let workforce_name = path_parameter(request, "name").map(bounded);
                // The API key routes name their target by id.
                let target_id = path_parameter(request, "id").map(bounded);
                let request_id = request
                    .headers()
                    .get(crate::http::REQUEST_ID_HEADER)
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned);
                let mut detail = serde_json::json!({
                    "method": request.method().as_str(),
                    "route": request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()),
                    "reason": error.to_string(),
                });
                if let Some(id) = target_id {
                    detail["id"] = id.into();
                }
                let denied = DeniedChange {
                    principal: &principal,
                    region: region.as_ref(),
                    workforce_name: workforce_name.as_deref(),
                    request_id: request_id.as_deref(),
                    detail,
                };
                // A 403 is sent only with its event, as a 409 is; without it the request fails.
                if let Err(failure) = Box::pin(denied.record(&auth.db)).await {
                    return Err(Rejection {
                        response: failure.into_response(),
                        actor: Some(principal.actor),
                    });
                }
            }
            Err(Rejection {
                response: error.into_response(),
                actor: Some(principal.actor),
            })
        }
    }
}

/// A change that the caller's role or regions did not allow.
struct DeniedChange<'a> {
    principal: &'a Principal,
    region: Option<&'a Region>,
    workforce_name: Option<&'a str>,
    request_id: Option<&'a str>,
    /// The method, the route, the reason of the rejection, and the id from the path if any.
    detail: serde_json::Value,
}

impl DeniedChange<'_> {
    /// Records the attempt as an `access.denied` event. A failed write is logged and returned
    /// as the error that the request gets in place of its 403 (a 503 while the database is
    /// unreachable).
    async fn record(self, db: &sqlx::PgPool) -> Result<(), ApiError> {
        let written = async {
            let mut connection = db.acquire().await?;
            crate::db::audit::insert(
                &mut connection,
                crate::db::audit::NewAuditEvent {
                    actor: &self.principal.actor,
                    actor_kind: self.principal.kind.as_str(),
                    actor_role: self.principal.roles.last().map(|role| role.as_str()),
                    action: "access.denied",
                    outcome: "denied",
                    region: self.region.map(Region::as_str),
                    workforce_name: self.workforce_name,
                    request_id: self.request_id,
                    detail: Some(self.detail),
                    ..Default::default()
                },
            )
            .await
        }
        .await;
        written.map(drop).map_err(|error| {
            tracing::error!(request_id = self.request_id, actor = ?self.principal.actor, error = %error, "failed to record a denied change in the audit log, so the request fails instead of getting its 403");
            ApiError::from(error)
        })
    }
}

/// Formats a wait for a message in the whole seconds that `Retry-After` sends.
fn whole_seconds(wait: std::time::Duration) -> String {
    match crate::http::error::retry_after_seconds(wait) {
        1 => "1 second".to_owned(),
        seconds => format!("{seconds} seconds"),
    }
}
