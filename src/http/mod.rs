//! The HTTP edge: application state, router, middleware and one module per resource.

pub mod api_keys;
pub mod audit;
pub mod error;
pub mod extract;
pub mod health;
pub mod idempotency;
pub mod middleware;
pub mod models;
pub mod operations;
pub mod pagination;
pub mod serve;
pub mod vpc;
pub mod workforces;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use sqlx::PgPool;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

use crate::auth::Authenticator;
use crate::aws::Aws;
use crate::changes::Acceptor;
use crate::config::Mode;
use crate::domain::{FieldError, Region};
use crate::secrets::SecretSealer;
use error::ApiError;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Everything a handler needs. Every request clones it, several times on its way through the
/// middleware, so it is one shared pointer.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The contents of [`AppState`].
pub struct Shared {
    pub db: PgPool,
    pub aws: Aws,
    pub sealer: SecretSealer,
    pub mode: Mode,
    pub regions: Arc<Vec<Region>>,
    pub operation_deadline: Duration,
    pub refresh_after: Duration,
    pub refreshes: crate::refresh::RefreshesInFlight,
    /// How long an idempotency key is remembered.
    pub idempotency_ttl: Duration,
    /// Renders the Prometheus metrics of this process.
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Set while the background workers run; `/readyz` reports it.
    pub workers_running: Arc<std::sync::atomic::AtomicBool>,
    /// Long-polling readers of operations, woken when an operation changes.
    pub watchers: crate::watch::OperationWatchers,
    /// Copies of API keys, workforces and operations, dropped when PostgreSQL announces a
    /// change.
    pub cache: crate::cache::ReadCache,
    /// The SageMaker calls per second that all processes share, which refreshes also take from.
    pub budget: crate::budget::CallBudget,
    /// When each workforce was last read from AWS before a change.
    pub rechecks: crate::changes::RecentRechecks,
}

impl AppState {
    pub fn acceptor(&self) -> Acceptor<'_> {
        Acceptor {
            db: &self.db,
            sealer: &self.sealer,
            deadline: self.operation_deadline,
            findings: Vec::new(),
            if_match: None,
            cache: &self.cache,
            recheck: Some(crate::changes::AwsRecheck {
                aws: &self.aws,
                budget: &self.budget,
                recent: &self.rechecks,
            }),
        }
    }

    /// Returns an acceptor that honours the request's `If-Match` header, or a 400 error when
    /// the header is malformed.
    pub fn acceptor_with(&self, headers: &HeaderMap) -> Result<Acceptor<'_>, ApiError> {
        let if_match = headers
            .get(header::IF_MATCH)
            .map(check_if_match)
            .transpose()?;
        Ok(Acceptor {
            if_match,
            ..self.acceptor()
        })
    }

    /// Parses a region path parameter and checks that this service manages it.
    pub fn region(&self, value: &str) -> Result<Region, ApiError> {
        let region = Region::parse("region", value).map_err(|error| ApiError::BadRequest {
            detail: format!("invalid path parameter region: {}", error.reason),
            errors: vec![error],
        })?;
        self.check_managed(&region)?;
        Ok(region)
    }

    /// Returns a 404 error unless `region` is one of the configured regions.
    pub fn check_managed(&self, region: &Region) -> Result<(), ApiError> {
        if self.regions.contains(region) {
            return Ok(());
        }
        let configured: Vec<&str> = self.regions.iter().map(Region::as_str).collect();
        Err(ApiError::NotFound(format!(
            "region {region} is not managed by this service; the configured regions are {}",
            configured.join(", ")
        )))
    }
}

/// Checks that an `If-Match` value is `*` or a list of entity tags, each in double quotes with
/// an optional `W/` prefix (RFC 9110 section 8.8.3), and returns it. An unquoted value such as
/// `3` would otherwise match nothing and get 412, which hides the caller's mistake.
fn check_if_match(value: &HeaderValue) -> Result<String, ApiError> {
    check_entity_tag_lines("If-Match", std::slice::from_ref(value))
}

/// Checks the lines of a header that must form `*` alone or one list of entity tags, as
/// [`check_if_match`] does for `If-Match`, and returns them joined with commas. The error names
/// the header `header`.
pub(crate) fn check_entity_tag_lines(
    header: &str,
    lines: &[HeaderValue],
) -> Result<String, ApiError> {
    let invalid = || {
        let error = FieldError::new(
            header,
            "must be * or entity tags in double quotes, such as \"3\", as the ETag header returns them",
        );
        ApiError::BadRequest {
            detail: format!("invalid header {header}: {}", error.reason),
            errors: vec![error],
        }
    };
    let texts = lines
        .iter()
        .map(|line| line.to_str())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| invalid())?;
    let text = texts.join(", ");
    let valid = text.trim() == "*"
        || crate::changes::entity_tags(&text).is_some_and(|tags| !tags.is_empty());
    if valid { Ok(text) } else { Err(invalid()) }
}

/// Converts a path parameter parse failure into a 400 problem naming the parameter.
pub fn bad_path_parameter(error: FieldError) -> ApiError {
    ApiError::BadRequest {
        detail: format!("invalid path parameter {}: {}", error.field, error.reason),
        errors: vec![error],
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "workforce-service",
        description = "Manage Amazon SageMaker Ground Truth private workforces and their VPC configurations. \
Changes are accepted with `202 Accepted` and carried out by background workers; follow them through the operation in the response.",
    ),
    tags(
        (name = "workforces", description = "Private workforces and their settings"),
        (name = "operations", description = "Long-running changes and their progress"),
        (name = "audit", description = "The append-only audit log"),
        (name = "api-keys", description = "API keys for services and scripts (admin only)"),
        (name = "health", description = "Liveness and readiness"),
    ),
)]
struct ApiDoc;

/// Declares the two credentials (bearer JWT and API key), requires one on every `/v1`
/// operation, and documents the responses that authentication and the rate limit add.
struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};

        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer_jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A token from the company's OIDC identity provider"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("wfs_…")
                    .description(Some("An API key of this service, sent as a bearer token"))
                    .build(),
            ),
        );
        let problem = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/problem+json",
                        ContentBuilder::new()
                            .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
                            .build(),
                    )
                    .build(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                operation.security = Some(vec![
                    SecurityRequirement::new("bearer_jwt", Vec::<String>::new()),
                    SecurityRequirement::new("api_key", Vec::<String>::new()),
                ]);
                let takes_body = operation.request_body.is_some();
                let responses = &mut operation.responses.responses;
                if takes_body {
                    responses.insert(
                        "413".into(),
                        problem("The body is larger than the service's limit (--max-body-bytes); the problem states the limit in bytes"),
                    );
                }
                responses.insert(
                    "401".into(),
                    problem("Missing, invalid, expired or revoked credential"),
                );
                responses.insert(
                    "403".into(),
                    problem("The credential's roles do not allow this request"),
                );
                responses.insert("429".into(), problem("The credential's rate limit is exceeded; retry after the Retry-After seconds"));
                responses
                    .entry("503".into())
                    .or_insert_with(|| problem("The database is unreachable; a change whose connection broke while it was stored may have been accepted"));
            }
        }
    }
}

/// Pattern of a region code, as [`Region::parse`] checks it: lowercase letter groups joined by
/// hyphens, ending in a one- or two-digit number.
pub const REGION_PATTERN: &str = "^[a-z]+(-[a-z]+)+-[0-9]{1,2}$";
/// Pattern of a workforce name, as [`crate::domain::WorkforceName::parse`] checks it.
pub const WORKFORCE_NAME_PATTERN: &str = "^[a-zA-Z0-9][a-zA-Z0-9-]{0,62}$";
/// Pattern of a page cursor: the unpadded base64url text that the list endpoints return.
pub const CURSOR_PATTERN: &str = "^[A-Za-z0-9_-]*$";

/// Writes the rules that the handlers enforce on the shared path and query parameters
/// (`region`, `name`, `limit`, `cursor`) into every operation's parameter schema, so that the
/// document states them once for all resources. The filters that take one of a fixed set of
/// values, which are plain strings in the handlers, get that set as their `enum`.
struct ParameterRules;

impl utoipa::Modify for ParameterRules {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::{RefOr, Schema};

        let one_of = |values: &[&str]| -> Option<Vec<serde_json::Value>> {
            Some(
                values
                    .iter()
                    .map(|value| serde_json::json!(value))
                    .collect(),
            )
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                for parameter in operation.parameters.iter_mut().flatten() {
                    let RefOr::T(parameter) = parameter else {
                        continue;
                    };
                    let Some(RefOr::T(Schema::Object(schema))) = parameter.schema.as_mut() else {
                        continue;
                    };
                    if parameter.parameter_in == ParameterIn::Query {
                        let values = match (path.as_str(), parameter.name.as_str()) {
                            ("/v1/workforces", "status") => one_of(&workforces::AWS_STATUSES),
                            ("/v1/audit-events", "action") => one_of(&crate::db::audit::ACTIONS),
                            ("/v1/audit-events", "outcome") => one_of(&crate::db::audit::OUTCOMES),
                            ("/v1/audit-events", "actor_kind") => {
                                one_of(&crate::db::audit::ACTOR_KINDS)
                            }
                            _ => None,
                        };
                        if values.is_some() {
                            schema.enum_values = values;
                        }
                    }
                    match (parameter.name.as_str(), &parameter.parameter_in) {
                        ("region", ParameterIn::Path | ParameterIn::Query) => {
                            schema.pattern = Some(REGION_PATTERN.to_owned());
                            schema.max_length = Some(32);
                        }
                        ("name", ParameterIn::Path) => {
                            schema.pattern = Some(WORKFORCE_NAME_PATTERN.to_owned());
                        }
                        ("limit", ParameterIn::Query) => {
                            schema.minimum = Some(utoipa::Number::UInt(1));
                            schema.maximum =
                                Some(utoipa::Number::UInt(pagination::MAX_LIMIT as usize));
                        }
                        ("cursor", ParameterIn::Query) => {
                            schema.pattern = Some(CURSOR_PATTERN.to_owned());
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// Documents the request headers that handlers read from the request, where utoipa cannot see
/// them: `Idempotency-Key` on every change except the creation of an API key, `If-Match` on
/// the changes that reject a stale entity tag with 412, and `If-None-Match` on the reads that
/// return 304.
struct ChangeHeaders;

impl utoipa::Modify for ChangeHeaders {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;

        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            if let Some(read) = item.get.as_mut()
                && read.responses.responses.contains_key("304")
            {
                read.parameters
                    .get_or_insert_with(Vec::new)
                    .push(if_none_match_parameter());
            }
            for (is_post, operation) in [
                (true, &mut item.post),
                (false, &mut item.put),
                (false, &mut item.delete),
            ] {
                let Some(operation) = operation else {
                    continue;
                };
                // A replay would need the stored response, which carries the new key.
                if is_post && path == "/v1/api-keys" {
                    continue;
                }
                let responses = &mut operation.responses.responses;
                let parameters = operation.parameters.get_or_insert_with(Vec::new);
                parameters.push(idempotency_key_parameter());
                if responses.contains_key("412") {
                    parameters.push(if_match_parameter());
                }
                let reused = "the Idempotency-Key header was already used for a different request";
                match responses.get_mut("422") {
                    Some(RefOr::T(response)) => {
                        response.description = format!("{}, or {reused}", response.description);
                    }
                    Some(RefOr::Ref(_)) => {}
                    None => {
                        // Any problem response has the same content; only its text changes.
                        if let Some(RefOr::T(mut response)) = responses.get("400").cloned() {
                            let mut first = reused.to_owned();
                            first[..1].make_ascii_uppercase();
                            response.description = first;
                            responses.insert("422".to_owned(), RefOr::T(response));
                        }
                    }
                }
            }
        }
    }
}

fn idempotency_key_parameter() -> utoipa::openapi::RefOr<utoipa::openapi::path::Parameter> {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{ObjectBuilder, Required, Type};

    ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "A key of 1 to 255 printable ASCII characters that makes a retry safe. A repeat with \
             the same key, method, path and body gets the first response again, with the header \
             `Idempotency-Replayed: true`, instead of a second operation. The same key with \
             another request gets 422. A response other than a success frees the key.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255))
                .pattern(Some("^[\\x20-\\x7E]+$")),
        ))
        .build()
        .into()
}

fn if_match_parameter() -> utoipa::openapi::RefOr<utoipa::openapi::path::Parameter> {
    entity_tag_parameter(
        "If-Match",
        "The `ETag` of the workforce as last read, such as `\"3\"`, or `*`. The change is \
         accepted only while the workforce still has that revision, and gets 412 otherwise.",
    )
}

fn if_none_match_parameter() -> utoipa::openapi::RefOr<utoipa::openapi::path::Parameter> {
    entity_tag_parameter(
        "If-None-Match",
        "The `ETag` of the operation as last read, or `*`. When the operation's ETag is still \
         one of these, the answer is 304 with no body; with `wait`, the request first waits \
         for the ETag to change.",
    )
}

/// Builds an optional header parameter that takes `*` or a list of entity tags.
fn entity_tag_parameter(
    name: &str,
    description: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::path::Parameter> {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{ObjectBuilder, Required, Type};

    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(IF_MATCH_PATTERN)),
        ))
        .build()
        .into()
}

/// Pattern of an `If-Match` or `If-None-Match` value that [`check_entity_tag_lines`] accepts:
/// `*`, or entity tags in double quotes, each with an optional `W/`, in a list that may have
/// empty elements.
const IF_MATCH_PATTERN: &str = concat!(
    r#"^(\*|[ \t,]*(W/)?"[\x21\x23-\x7E]*""#,
    r#"([ \t]*,[ \t,]*(W/)?"[\x21\x23-\x7E]*")*[ \t,]*)$"#
);

/// Builds the routes and the OpenAPI document from the same handler list.
pub fn api_router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(workforces::list_workforces))
        .routes(routes!(workforces::create_workforce))
        .routes(routes!(
            workforces::get_workforce,
            workforces::delete_workforce
        ))
        .routes(routes!(
            vpc::get_vpc_config,
            workforces::put_vpc_config,
            workforces::delete_vpc_config
        ))
        .routes(routes!(vpc::check_vpc_config))
        .routes(routes!(workforces::put_source_ip_config))
        .routes(routes!(workforces::put_oidc_config))
        .routes(routes!(operations::list_operations))
        .routes(routes!(operations::get_operation))
        .routes(routes!(audit::list_audit_events))
        .routes(routes!(audit::verify_audit_chain))
        .routes(routes!(api_keys::create_api_key, api_keys::list_api_keys))
        .routes(routes!(api_keys::revoke_api_key))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .split_for_parts();
    // The modifiers walk the paths, which exist only once the routes are registered. In
    // `#[openapi(modifiers(...))]` they would run on an empty path list.
    utoipa::Modify::modify(&SecurityAddon, &mut openapi);
    utoipa::Modify::modify(&ParameterRules, &mut openapi);
    utoipa::Modify::modify(&ChangeHeaders, &mut openapi);
    utoipa::Modify::modify(&models::OneAuthConfig, &mut openapi);
    (router, openapi)
}

/// Returns the OpenAPI document of the API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().1
}

/// Limits applied to every request.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
}

/// Builds the complete application: API routes, docs, fallback and middleware.
pub fn app(
    state: AppState,
    limits: &HttpLimits,
    authenticator: Authenticator,
    cors_origins: &[String],
) -> Router {
    let (api, openapi) = api_router();
    let swagger = SwaggerUi::new("/docs")
        .url("/openapi.json", openapi)
        .config(
            SwaggerConfig::default()
                .validator_url("none")
                .try_it_out_enabled(true)
                .persist_authorization(true),
        );
    let origins: Vec<HeaderValue> = cors_origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin.trim()).ok())
        .collect();
    let pipeline = Arc::new(middleware::RequestPipeline {
        timeout: limits.request_timeout,
        max_body_bytes: limits.max_body_bytes,
        authenticator,
        state: state.clone(),
        separate_admission: !origins.is_empty(),
    });
    let router = api
        .route("/metrics", axum::routing::get(health::metrics))
        .with_state(state)
        .merge(swagger)
        .fallback(middleware::unknown_route)
        .method_not_allowed_fallback(middleware::method_not_allowed);
    if origins.is_empty() {
        return router.layer(axum::middleware::from_fn_with_state(
            pipeline,
            middleware::observe,
        ));
    }
    // With CORS, the CORS layer sits between the access log and authentication. So it responds
    // to a browser's preflight request, which carries no credential, and the preflight is still
    // logged and counted. Every response, a 401 included, gets its CORS headers.
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            REQUEST_ID_HEADER,
            HeaderName::from_static("idempotency-key"),
            header::IF_MATCH,
            header::IF_NONE_MATCH,
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::RETRY_AFTER,
            REQUEST_ID_HEADER,
            HeaderName::from_static("idempotency-replayed"),
        ]);
    router
        .layer(axum::middleware::from_fn_with_state(
            pipeline.clone(),
            middleware::admission,
        ))
        .layer(cors)
        .layer(axum::middleware::from_fn_with_state(
            pipeline,
            middleware::observe,
        ))
}
