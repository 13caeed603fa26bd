//! Workforce routes: list, create, read, delete, and the changes of VPC, source-IP and OIDC
//! settings. Every change returns `202 Accepted` with the operation that carries it out.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, Problem};
use super::extract::{Json, Path, Query};
use super::models::{
    CreateWorkforceRequest, OidcConfigRequest, OperationResponse, SourceIpConfigRequest,
    VpcConfigRequest, WorkforceListResponse, WorkforceResponse,
};
use super::{AppState, REQUEST_ID_HEADER, bad_path_parameter, pagination};
use crate::auth::Authorized;
use crate::cache::CachedWorkforce;
use crate::changes::Caller;
use crate::db::operations::{self as operation_store, OperationRow};
use crate::db::workforces as workforce_store;
use crate::domain::{Change, IpAddressType, Region, SourceIpConfig, Violations, WorkforceName};
use crate::refresh;

/// Workforce statuses that SageMaker reports.
pub(crate) const AWS_STATUSES: [&str; 5] =
    ["Initializing", "Updating", "Deleting", "Failed", "Active"];

pub(crate) fn caller(headers: &HeaderMap, authorized: &Authorized) -> Caller {
    Caller {
        actor: authorized.actor.clone(),
        actor_kind: authorized.kind.as_str(),
        role: authorized.role.as_str(),
        request_id: headers
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

/// Accepts a change of an existing workforce, honouring `If-Match`, and returns `202`.
async fn accept_change(
    state: &AppState,
    headers: &HeaderMap,
    authorized: &Authorized,
    (region, name): (&Region, &WorkforceName),
    change: Change,
    secret: Option<crate::domain::OidcSecret>,
) -> Result<Response, ApiError> {
    let operation = state
        .acceptor_with(headers)?
        .change(&caller(headers, authorized), region, name, change, secret)
        .await?;
    Ok(accepted(&operation))
}

/// Returns `202 Accepted` with the operation and its URL in `Location`.
pub(crate) fn accepted(operation: &OperationRow) -> Response {
    let location = format!("/v1/operations/{}", operation.id);
    let mut response = (
        StatusCode::ACCEPTED,
        axum::Json(OperationResponse::from_row(operation)),
    )
        .into_response();
    response.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("a UUID path is a valid header value"),
    );
    response
}

#[derive(Debug, Deserialize)]
pub struct WorkforcePath {
    region: String,
    name: String,
}

impl WorkforcePath {
    fn parse(&self, state: &AppState) -> Result<(Region, WorkforceName), ApiError> {
        let region = state.region(&self.region)?;
        let name = WorkforceName::parse("name", &self.name).map_err(bad_path_parameter)?;
        Ok((region, name))
    }
}

#[derive(Debug, Deserialize)]
pub struct RegionPath {
    region: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListWorkforcesQuery {
    /// Only workforces of this region.
    region: Option<String>,
    /// Only workforces with this SageMaker status.
    status: Option<String>,
    /// Page size, 1 to 200 (default 50).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// List workforces
///
/// Lists the workforces of every configured region with their last known status, ordered by
/// region and name.
#[utoipa::path(
    get,
    path = "/v1/workforces",
    tag = "workforces",
    params(ListWorkforcesQuery),
    responses(
        (status = 200, description = "Success", body = WorkforceListResponse),
        (status = 400, description = "Malformed request: unreadable JSON, wrong field type, or an invalid path or query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The region filter names a region not managed by this service", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_workforces(
    State(state): State<AppState>,
    Query(query): Query<ListWorkforcesQuery>,
) -> Result<axum::Json<WorkforceListResponse>, ApiError> {
    let limit = pagination::limit(query.limit)?;
    let region = match &query.region {
        Some(value) => Some(
            Region::parse("region", value).map_err(|e| ApiError::BadRequest {
                detail: format!("invalid query parameter region: {}", e.reason),
                errors: vec![e],
            })?,
        ),
        None => None,
    };
    if let Some(region) = &region {
        state.check_managed(region)?;
    }
    if let Some(status) = &query.status
        && !AWS_STATUSES.contains(&status.as_str())
    {
        return Err(ApiError::BadRequest {
            detail: format!(
                "invalid query parameter status: '{}' is not one of {}",
                crate::domain::truncate_for_message(status),
                AWS_STATUSES.join(", ")
            ),
            errors: vec![crate::domain::FieldError::new(
                "status",
                format!("must be one of {}", AWS_STATUSES.join(", ")),
            )],
        });
    }
    let after = match &query.cursor {
        Some(cursor) => {
            let position = pagination::decode(cursor)?;
            let (region, name) = position
                .split_once('\n')
                .ok_or_else(pagination::invalid_cursor)?;
            Some((region.to_owned(), name.to_owned()))
        }
        None => None,
    };
    let rows = workforce_store::list(
        &state.db,
        region.as_ref().map(Region::as_str),
        query.status.as_deref(),
        after.as_ref().map(|(r, n)| (r.as_str(), n.as_str())),
        limit + 1,
    )
    .await?;
    let has_more = rows.len() as i64 > limit;
    let page: Vec<_> = rows.into_iter().take(limit as usize).collect();
    let next_cursor = has_more
        .then(|| {
            page.last()
                .map(|w| pagination::encode(&format!("{}\n{}", w.region, w.name)))
        })
        .flatten();
    Ok(axum::Json(WorkforceListResponse {
        items: page
            .iter()
            .map(|w| WorkforceResponse::from_row(w, None))
            .collect(),
        next_cursor,
    }))
}

/// Create a workforce
///
/// Accepts the creation of a private workforce with exactly one of a Cognito or an OIDC
/// configuration, and optionally a VPC configuration, source-IP CIDRs and tags. AWS allows one
/// private workforce per account and region. A VPC configuration must pass the VPC
/// prerequisite checks; their warnings are stored with the operation. The change runs in the
/// background: follow the returned operation.
#[utoipa::path(
    post,
    path = "/v1/regions/{region}/workforces",
    tag = "workforces",
    params(("region" = String, Path, description = "AWS region code, such as us-east-1")),
    request_body = CreateWorkforceRequest,
    responses(
        (status = 202, description = "Accepted; the operation carries out the change", body = OperationResponse,
            headers(("Location" = String, description = "Path of the operation, such as /v1/operations/{id}, relative to the base URL of this service"))),
        (status = 400, description = "Malformed request: unreadable JSON, wrong field type, or an invalid path or query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Region not managed by this service", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The region already has a workforce", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Field values break a rule of the AWS model, or a VPC prerequisite check found an error", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_workforce(
    State(state): State<AppState>,
    authorized: Authorized,
    Path(path): Path<RegionPath>,
    headers: HeaderMap,
    Json(request): Json<CreateWorkforceRequest>,
) -> Result<Response, ApiError> {
    let region = state.region(&path.region)?;
    let valid = request.validate().map_err(ApiError::Validation)?;
    let findings = match &valid.change {
        Change::CreateWorkforce {
            vpc_config: Some(vpc_config),
            ..
        } => super::vpc::require_prerequisites(&state, &region, vpc_config).await?,
        _ => Vec::new(),
    };
    // A creation has no earlier revision to match, so If-Match is not read here.
    let acceptor = state.acceptor().with_findings(findings);
    let operation = acceptor
        .create(
            &caller(&headers, &authorized),
            &region,
            &valid.name,
            valid.change,
            valid.secret,
        )
        .await?;
    Ok(accepted(&operation))
}

/// Get a workforce
///
/// Returns the workforce as last seen in SageMaker, with the operation in flight if any. A
/// record older than the refresh interval is refreshed from SageMaker in the background.
#[utoipa::path(
    get,
    path = "/v1/regions/{region}/workforces/{name}",
    tag = "workforces",
    params(
        ("region" = String, Path, description = "AWS region code, such as us-east-1"),
        ("name" = String, Path, description = "Workforce name"),
    ),
    responses(
        (status = 200, description = "Success", body = WorkforceResponse,
            headers(("ETag" = String, description = "Revision of the workforce's settings and status; send it as If-Match with a change. It does not change with aws_refreshed_at or the progress of operation_in_flight"))),
        (status = 400, description = "Malformed request: unreadable JSON, wrong field type, or an invalid path or query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_workforce(
    State(state): State<AppState>,
    Path(path): Path<WorkforcePath>,
) -> Result<Response, ApiError> {
    let (region, name) = path.parse(&state)?;
    let cached = match state.cache.workforce(region.as_str(), name.as_str()) {
        Some(cached) => cached,
        // Boxed, so that the future of a cached read stays small: it is moved several times on
        // every request, and the queries' futures are large.
        None => Box::pin(load_workforce(&state, &region, &name)).await?,
    };
    if !cached.in_flight {
        refresh::refresh_if_stale(&state, &region, &cached.row);
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, cached.etag.clone()),
        ],
        cached.body.clone(),
    )
        .into_response())
}

/// Reads a workforce and its unfinished operation from the database, and caches its response.
async fn load_workforce(
    state: &AppState,
    region: &Region,
    name: &WorkforceName,
) -> Result<Arc<CachedWorkforce>, ApiError> {
    let ticket = state.cache.ticket();
    let Some(row) = workforce_store::find(&state.db, region.as_str(), name.as_str()).await? else {
        return Err(ApiError::NotFound(format!(
            "no workforce named '{name}' in region {region}"
        )));
    };
    let in_flight =
        operation_store::find_unfinished(&state.db, region.as_str(), name.as_str()).await?;
    let body = serde_json::to_vec(&WorkforceResponse::from_row(&row, in_flight.as_ref()))
        .map_err(|error| ApiError::Internal(error.into()))?;
    let etag = HeaderValue::from_str(&crate::changes::etag(row.revision))
        .expect("a quoted number is a valid header");
    let cached = Arc::new(CachedWorkforce {
        row,
        in_flight: in_flight.is_some(),
        body: body.into(),
        etag,
    });
    state.cache.store_workforce(ticket, cached.clone());
    Ok(cached)
}

/// Delete a workforce
///
/// Accepts the deletion of a workforce whose status is `Active` or `Failed`. SageMaker also
/// deletes the VPC endpoints it created for the workforce.
#[utoipa::path(
    delete,
    path = "/v1/regions/{region}/workforces/{name}",
    tag = "workforces",
    params(
        ("region" = String, Path, description = "AWS region code, such as us-east-1"),
        ("name" = String, Path, description = "Workforce name"),
    ),
    responses(
        (status = 202, description = "Accepted; the operation carries out the change", body = OperationResponse,
            headers(("Location" = String, description = "Path of the operation, such as /v1/operations/{id}, relative to the base URL of this service"))),
        (status = 400, description = "Malformed request: unreadable JSON, wrong field type, or an invalid path or query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another operation is in flight, or the status forbids deletion", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The If-Match ETag no longer matches the workforce", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_workforce(
    State(state): State<AppState>,
    authorized: Authorized,
    Path(path): Path<WorkforcePath>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (region, name) = path.parse(&state)?;
    accept_change(
        &state,
        &headers,
        &authorized,
        (&region, &name),
        Change::DeleteWorkforce,
        None,
    )
    .await
}

/// Add or replace the VPC configuration
///
/// Accepts a new VPC configuration: one VPC, 1 to 5 of its security groups and 1 to 16 of its
/// subnets. The configuration must pass the VPC prerequisite checks; their warnings are stored
/// with the operation. SageMaker moves the workforce to `Updating` and creates interface
/// endpoints in the VPC.
#[utoipa::path(
    put,
    path = "/v1/regions/{region}/workforces/{name}/vpc-config",
    tag = "workforces",
    params(
        ("region" = String, Path, description = "AWS region code, such as us-east-1"),
        ("name" = String, Path, description = "Workforce name"),
    ),
    request_body = VpcConfigRequest,
    responses(
        (status = 202, description = "Accepted; the operation carries out the change", body = OperationResponse,
            headers(("Location" = String, description = "Path of the operation, such as /v1/operations/{id}, relative to the base URL of this service"))),
        (status = 400, description = "Malformed request: unreadable JSON, wrong field type, or an invalid path or query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict with the workforce's state", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The If-Match ETag no longer matches the workforce", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Field values break a rule of the AWS model, or a VPC prerequisite check found an error", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_vpc_config(
    State(state): State<AppState>,
    authorized: Authorized,
    Path(path): Path<WorkforcePath>,
    headers: HeaderMap,
    Json(request): Json<VpcConfigRequest>,
) -> Result<Response, ApiError> {
    let (region, name) = path.parse(&state)?;
    let mut violations = Violations::default();
    // The body is the configuration itself, so field paths start at its members.
    let parsed = request.parse("", &mut violations);
    let vpc_config = violations
        .finish(|| parsed)
        .map_err(ApiError::Validation)?
        .expect("parsed without violations");
    // A missing workforce is a 404 before EC2 is read; the state rules run again on accept.
    if workforce_store::find(&state.db, region.as_str(), name.as_str())
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound(format!(
            "no workforce named '{name}' in region {region}"
        )));
    }
    let findings = super::vpc::require_prerequisites(&state, &region, &vpc_config).await?;
    let acceptor = state.acceptor_with(&headers)?.with_findings(findings);
    let operation = acceptor
        .change(
            &caller(&headers, &authorized),
            &region,
            &name,
            Change::PutVpcConfig { vpc_config },
            None,
        )
        .await?;
    Ok(accepted(&operation))
}

/// Remove the VPC configuration
///
/// Accepts the removal of the VPC configuration; SageMaker receives an empty
/// `WorkforceVpcConfig` and deletes the interface endpoints it created.
#[utoipa::path(
    delete,
    path = "/v1/regions/{region}/workforces/{name}/vpc-config",
    tag = "workforces",
    params(
        ("region" = String, Path, description = "AWS region code, such as us-east-1"),
        ("name" = String, Path, description = "Workforce name"),
    ),
    responses(
        (status = 202, description = "Accepted; the operation carries out the change", body = OperationResponse,
            headers(("Location" = String, description = "Path of the operation, such as /v1/operations/{id}, relative to the base URL of this service"))),
        (status = 400, description = "Malformed request: unreadable JSON, wrong field type, or an invalid path or query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict with the workforce's state", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The If-Match ETag no longer matches the workforce", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_vpc_config(
    State(state): State<AppState>,
    authorized: Authorized,
    Path(path): Path<WorkforcePath>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (region, name) = path.parse(&state)?;
    accept_change(
        &state,
        &headers,
        &authorized,
        (&region, &name),
        Change::DeleteVpcConfig,
        None,
    )
    .await
}

/// Set the source-IP allow-list
///
/// Accepts 0 to 10 CIDR blocks allowed to reach the public worker portal; an empty list lifts
/// the restriction. The list does not apply to access through the VPC. The same request can
/// change the workforce's address type, which IPv6 blocks need.
#[utoipa::path(
    put,
    path = "/v1/regions/{region}/workforces/{name}/source-ip-config",
    tag = "workforces",
    params(
        ("region" = String, Path, description = "AWS region code, such as us-east-1"),
        ("name" = String, Path, description = "Workforce name"),
    ),
    request_body = SourceIpConfigRequest,
    responses(
        (status = 202, description = "Accepted; the operation carries out the change", body = OperationResponse,
            headers(("Location" = String, description = "Path of the operation, such as /v1/operations/{id}, relative to the base URL of this service"))),
        (status = 400, description = "Malformed request: unreadable JSON, wrong field type, or an invalid path or query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict with the workforce's state", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The If-Match ETag no longer matches the workforce", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Field values break a rule of the AWS model", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_source_ip_config(
    State(state): State<AppState>,
    authorized: Authorized,
    Path(path): Path<WorkforcePath>,
    headers: HeaderMap,
    Json(request): Json<SourceIpConfigRequest>,
) -> Result<Response, ApiError> {
    let (region, name) = path.parse(&state)?;
    // Without a requested address type, any valid block passes here: whether the workforce
    // takes IPv6 blocks depends on its stored address type, which the change checks under the
    // workforce's row lock (409).
    let mut violations = Violations::default();
    let parsed = SourceIpConfig::parse(
        "cidrs",
        &request.cidrs,
        request.ip_address_type.unwrap_or(IpAddressType::Dualstack),
        &mut violations,
    );
    let source_ip_config = violations
        .finish(|| parsed)
        .map_err(ApiError::Validation)?
        .expect("parsed without violations");
    accept_change(
        &state,
        &headers,
        &authorized,
        (&region, &name),
        Change::PutSourceIpConfig {
            source_ip_config,
            ip_address_type: request.ip_address_type,
        },
        None,
    )
    .await
}

/// Replace the OIDC configuration
///
/// Accepts a new OIDC identity provider configuration for an OIDC workforce. SageMaker allows
/// it only while no work teams use the workforce. The client secret goes to SageMaker and is
/// never stored in readable form, logged or returned.
#[utoipa::path(
    put,
    path = "/v1/regions/{region}/workforces/{name}/oidc-config",
    tag = "workforces",
    params(
        ("region" = String, Path, description = "AWS region code, such as us-east-1"),
        ("name" = String, Path, description = "Workforce name"),
    ),
    request_body = OidcConfigRequest,
    responses(
        (status = 202, description = "Accepted; the operation carries out the change", body = OperationResponse,
            headers(("Location" = String, description = "Path of the operation, such as /v1/operations/{id}, relative to the base URL of this service"))),
        (status = 400, description = "Malformed request: unreadable JSON, wrong field type, or an invalid path or query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not found", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Conflict with the workforce's state", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The If-Match ETag no longer matches the workforce", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Field values break a rule of the AWS model", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_oidc_config(
    State(state): State<AppState>,
    authorized: Authorized,
    Path(path): Path<WorkforcePath>,
    headers: HeaderMap,
    Json(request): Json<OidcConfigRequest>,
) -> Result<Response, ApiError> {
    let (region, name) = path.parse(&state)?;
    let mut violations = Violations::default();
    // The body is the configuration itself, so field paths start at its members.
    let parsed = request.parse("", &mut violations);
    let config = violations
        .finish(|| parsed)
        .map_err(ApiError::Validation)?
        .expect("parsed without violations");
    let change = Change::PutOidcConfig {
        oidc_config: config.settings,
    };
    accept_change(
        &state,
        &headers,
        &authorized,
        (&region, &name),
        change,
        Some(config.client_secret),
    )
    .await
}
