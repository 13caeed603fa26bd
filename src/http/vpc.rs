//! VPC routes: the prerequisite checks of a VPC configuration, and a workforce's VPC
//! configuration with the worker portal's interface endpoints as EC2 reports them.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{Json, Path};
use super::models::{VpcConfigRequest, VpcConfigResponse};
use super::{AppState, bad_path_parameter};
use crate::aws::{AwsError, VpcEndpointDetails};
use crate::db::operations as operation_store;
use crate::db::workforces as workforce_store;
use crate::domain::{Change, Region, Violations, VpcConfig, WorkforceName};
use crate::vpc_checks::{self, Finding};

#[derive(Debug, Deserialize)]
pub struct RegionPath {
    region: String,
}

#[derive(Debug, Deserialize)]
pub struct WorkforcePath {
    region: String,
    name: String,
}

/// The result of the VPC prerequisite checks.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VpcConfigCheckResponse {
    /// Every finding, errors first in the order the checks ran.
    pub findings: Vec<Finding>,
    /// True when no finding has severity `error`, so a change with this configuration would
    /// be accepted.
    pub passed: bool,
}

/// An interface endpoint of the worker portal, as EC2 reports it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VpcEndpointResponse {
    pub vpc_endpoint_id: String,
    /// EC2's state in lowercase, such as `pending`, `available`, `deleting` or `failed`.
    pub state: String,
    pub service_name: String,
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
    /// DNS names through which workers reach the portal from the VPC.
    pub dns_names: Vec<String>,
    pub created_at: Option<DateTime<Utc>>,
}

impl From<VpcEndpointDetails> for VpcEndpointResponse {
    fn from(endpoint: VpcEndpointDetails) -> Self {
        Self {
            vpc_endpoint_id: endpoint.vpc_endpoint_id,
            state: endpoint.state,
            service_name: endpoint.service_name,
            subnet_ids: endpoint.subnet_ids,
            security_group_ids: endpoint.security_group_ids,
            dns_names: endpoint.dns_names,
            created_at: endpoint.created_at,
        }
    }
}

/// A workforce's VPC configuration with its interface endpoints.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkforceVpcConfigResponse {
    /// The configuration as last seen in SageMaker or, before SageMaker has one, as requested
    /// by the operation in flight.
    pub vpc_config: VpcConfigResponse,
    /// SageMaker's workforce status, such as `Updating` while endpoints are being replaced.
    pub workforce_status: Option<String>,
    /// The workforce's endpoint, and every interface endpoint of the worker portal's endpoint
    /// service in the VPC, including ones still being created or deleted.
    pub endpoints: Vec<VpcEndpointResponse>,
}

/// Time the EC2 reads of a request that only reads may take. Past it, the request gets 502,
/// well before the request timeout's 503, whose advice is about changes.
const EC2_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs an EC2 read, and turns its taking longer than `limit` into a transient error.
async fn within<T>(
    limit: std::time::Duration,
    read: impl std::future::Future<Output = Result<T, AwsError>>,
) -> Result<T, AwsError> {
    tokio::time::timeout(limit, read).await.unwrap_or_else(|_| {
        Err(AwsError::Transient {
            code: "Timeout".to_owned(),
            message: format!("EC2 did not respond within {} s", limit.as_secs()),
            request_id: None,
        })
    })
}

/// Maps an EC2 failure to a 502 problem; the cause goes to the access log.
fn aws_unavailable(error: AwsError) -> ApiError {
    ApiError::AwsUnavailable(format!(
        "{error} (request id {})",
        error.request_id().unwrap_or("none")
    ))
}

/// Time the VPC checks of a change may take on the request path. EC2 usually returns their
/// reads in well under a second. A change whose checks take longer is accepted with the checks
/// deferred, instead of waiting for the SDK's 30 s timeout and getting the request timeout's 503.
const PREREQUISITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs the VPC prerequisite checks and rejects the configuration when one finds an error.
/// Returns the warnings and notes to store with the change. When EC2 cannot be read, the change
/// is accepted with a warning instead of failing on AWS's account: the worker runs the checks
/// again before it calls SageMaker, and fails the operation if they find an error.
pub(crate) async fn require_prerequisites(
    state: &AppState,
    region: &Region,
    config: &VpcConfig,
) -> Result<Vec<Finding>, ApiError> {
    let checked = within(
        PREREQUISITE_TIMEOUT,
        vpc_checks::run(&state.aws, region, config),
    )
    .await;
    let findings = match checked {
        Ok(findings) => findings,
        Err(error) => {
            tracing::warn!(
                aws.region = %region,
                aws.error_code = error.code(),
                aws.request_id = error.request_id().unwrap_or_default(),
                "EC2 could not be read for the VPC checks; accepting the change and leaving the checks to the worker"
            );
            return Ok(vec![Finding::checks_deferred(
                config.vpc_id.as_str(),
                &error,
            )]);
        }
    };
    if vpc_checks::passed(&findings) {
        Ok(findings)
    } else {
        Err(ApiError::VpcPrerequisites(findings))
    }
}

/// Check a VPC configuration
///
/// Reads the VPC, its DNS attributes, the subnets, the security groups, the route tables and
/// the Amazon S3 endpoints from EC2, and reports whether Ground Truth can place the worker
/// portal's interface endpoints there. Changes nothing. The same checks run before a workforce
/// with a VPC configuration is created or its VPC configuration is replaced, and reject the
/// change when a finding has severity `error`.
#[utoipa::path(
    post,
    path = "/v1/regions/{region}/vpc-config-checks",
    tag = "workforces",
    params(("region" = String, Path, description = "AWS region code, such as us-east-1")),
    request_body = VpcConfigRequest,
    responses(
        (status = 200, description = "The checks ran; `passed` tells whether a change would be accepted", body = VpcConfigCheckResponse),
        (status = 400, description = "Malformed request: unreadable JSON, wrong field type, or an invalid path parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Region not managed by this service", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Field values break a rule of the AWS model", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "EC2 could not be read", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn check_vpc_config(
    State(state): State<AppState>,
    Path(path): Path<RegionPath>,
    Json(request): Json<VpcConfigRequest>,
) -> Result<axum::Json<VpcConfigCheckResponse>, ApiError> {
    let region = state.region(&path.region)?;
    let mut violations = Violations::default();
    // The body is the configuration itself, so field paths start at its members.
    let parsed = request.parse("", &mut violations);
    let config = violations
        .finish(|| parsed)
        .map_err(ApiError::Validation)?
        .expect("parsed without violations");
    let findings = within(
        EC2_READ_TIMEOUT,
        vpc_checks::run(&state.aws, &region, &config),
    )
    .await
    .map_err(aws_unavailable)?;
    let passed = vpc_checks::passed(&findings);
    Ok(axum::Json(VpcConfigCheckResponse { findings, passed }))
}

/// Get the VPC configuration
///
/// Returns the workforce's VPC configuration with the worker portal's interface endpoints as
/// EC2 reports them now: ids, state, subnets, security groups, DNS names and creation time.
/// While the workforce is `Updating`, the list also shows endpoints being created or deleted.
#[utoipa::path(
    get,
    path = "/v1/regions/{region}/workforces/{name}/vpc-config",
    tag = "workforces",
    params(
        ("region" = String, Path, description = "AWS region code, such as us-east-1"),
        ("name" = String, Path, description = "Workforce name"),
    ),
    responses(
        (status = 200, description = "Success", body = WorkforceVpcConfigResponse),
        (status = 400, description = "Malformed request: unreadable JSON, wrong field type, or an invalid path parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such workforce, or it has no VPC configuration", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "EC2 could not be read", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_vpc_config(
    State(state): State<AppState>,
    Path(path): Path<WorkforcePath>,
) -> Result<axum::Json<WorkforceVpcConfigResponse>, ApiError> {
    let region = state.region(&path.region)?;
    let name = WorkforceName::parse("name", &path.name).map_err(bad_path_parameter)?;
    let Some(row) = workforce_store::find(&state.db, region.as_str(), name.as_str()).await? else {
        return Err(ApiError::NotFound(format!(
            "no workforce named '{name}' in region {region}"
        )));
    };
    let recorded: Option<VpcConfigResponse> = row
        .vpc_config
        .as_ref()
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    let vpc_config = match recorded {
        Some(config) => config,
        None => requested_vpc_config(&state, &region, &name)
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "workforce '{name}' in region {region} has no VPC configuration"
                ))
            })?,
    };

    let service_name = state.aws.portal_endpoint_service(&region);
    let endpoints = within(
        EC2_READ_TIMEOUT,
        state.aws.find_vpc_endpoints(
            &region,
            vpc_config.vpc_endpoint_id.as_deref(),
            &vpc_config.vpc_id,
            service_name.as_deref(),
        ),
    )
    .await
    .map_err(aws_unavailable)?;
    Ok(axum::Json(WorkforceVpcConfigResponse {
        vpc_config,
        workforce_status: row.aws_status,
        endpoints: endpoints
            .into_iter()
            .map(VpcEndpointResponse::from)
            .collect(),
    }))
}

/// Returns the VPC configuration that the operation in flight adds, if it adds one.
async fn requested_vpc_config(
    state: &AppState,
    region: &Region,
    name: &WorkforceName,
) -> Result<Option<VpcConfigResponse>, ApiError> {
    let Some(operation) =
        operation_store::find_unfinished(&state.db, region.as_str(), name.as_str()).await?
    else {
        return Ok(None);
    };
    let config = match serde_json::from_value::<Change>(operation.request) {
        Ok(Change::PutVpcConfig { vpc_config }) => Some(vpc_config),
        Ok(Change::CreateWorkforce { vpc_config, .. }) => vpc_config,
        _ => None,
    };
    Ok(config.map(|c| VpcConfigResponse {
        vpc_id: c.vpc_id.to_string(),
        security_group_ids: c
            .security_group_ids
            .iter()
            .map(ToString::to_string)
            .collect(),
        subnets: c.subnets.iter().map(ToString::to_string).collect(),
        vpc_endpoint_id: None,
    }))
}
