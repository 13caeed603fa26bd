//! SageMaker workforce calls.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use aws_sdk_sagemaker::types as sm;

use super::{Aws, AwsError};
use crate::domain::{
    CognitoConfig, IpAddressType, OidcConfig, OidcSettings, Region, SourceIpConfig, Tag, VpcConfig,
    WorkforceName,
};

/// A workforce as `DescribeWorkforce` reported it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkforceSnapshot {
    pub name: String,
    pub arn: Option<String>,
    pub status: Option<String>,
    pub failure_reason: Option<String>,
    pub subdomain: Option<String>,
    pub source_ip_cidrs: Vec<String>,
    pub cognito_config: Option<CognitoConfig>,
    pub oidc_config: Option<OidcSettings>,
    pub vpc_config: Option<VpcSnapshot>,
    pub ip_address_type: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub last_updated_at: Option<DateTime<Utc>>,
}

/// The VPC configuration of a described workforce, with the endpoint that Ground Truth created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcSnapshot {
    pub vpc_id: String,
    pub security_group_ids: Vec<String>,
    pub subnets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_endpoint_id: Option<String>,
}

impl VpcSnapshot {
    /// Returns true when the snapshot names the same resources as `config`, in any order.
    pub fn matches(&self, config: &VpcConfig) -> bool {
        use std::collections::HashSet;
        let groups: HashSet<&str> = self.security_group_ids.iter().map(String::as_str).collect();
        let subnets: HashSet<&str> = self.subnets.iter().map(String::as_str).collect();
        self.vpc_id == config.vpc_id.as_str()
            && groups
                == config
                    .security_group_ids
                    .iter()
                    .map(|g| g.as_str())
                    .collect()
            && subnets == config.subnets.iter().map(|s| s.as_str()).collect()
    }
}

/// Everything `CreateWorkforce` takes.
#[derive(Debug)]
pub struct CreateWorkforceInput<'a> {
    pub name: &'a WorkforceName,
    pub cognito_config: Option<&'a CognitoConfig>,
    pub oidc_config: Option<&'a OidcConfig>,
    pub vpc_config: Option<&'a VpcConfig>,
    pub source_ip_config: Option<&'a SourceIpConfig>,
    pub tags: &'a [Tag],
    pub ip_address_type: Option<IpAddressType>,
}

/// One change for `UpdateWorkforce`; SageMaker takes any combination, the service sends one.
#[derive(Debug)]
pub enum UpdateWorkforceInput<'a> {
    VpcConfig(&'a VpcConfig),
    RemoveVpcConfig,
    /// The allow-list, and the address type when it changes too.
    SourceIpConfig(&'a SourceIpConfig, Option<IpAddressType>),
    OidcConfig(&'a OidcConfig),
}

/// SageMaker reports a missing workforce as a `ValidationException` whose message contains
/// "No workforce", not as `ResourceNotFound`.
fn is_missing_workforce(code: &str, message: &str) -> bool {
    code == "ValidationException" && message.contains("No workforce")
}

fn to_chrono(value: Option<&aws_sdk_sagemaker::primitives::DateTime>) -> Option<DateTime<Utc>> {
    let value = value?;
    DateTime::from_timestamp(value.secs(), value.subsec_nanos())
}

fn vpc_request(config: &VpcConfig) -> sm::WorkforceVpcConfigRequest {
    sm::WorkforceVpcConfigRequest::builder()
        .vpc_id(config.vpc_id.as_str())
        .set_security_group_ids(Some(
            config
                .security_group_ids
                .iter()
                .map(|g| g.to_string())
                .collect(),
        ))
        .set_subnets(Some(config.subnets.iter().map(|s| s.to_string()).collect()))
        .build()
}

fn source_ip_request(config: &SourceIpConfig) -> sm::SourceIpConfig {
    sm::SourceIpConfig::builder()
        .set_cidrs(Some(
            config.cidrs.iter().map(|c| c.as_str().to_owned()).collect(),
        ))
        .build()
}

fn oidc_request(config: &OidcConfig) -> sm::OidcConfig {
    let settings = &config.settings;
    let mut builder = sm::OidcConfig::builder()
        .client_id(&settings.client_id)
        .client_secret(config.client_secret.expose())
        .issuer(&settings.issuer)
        .authorization_endpoint(&settings.authorization_endpoint)
        .token_endpoint(&settings.token_endpoint)
        .user_info_endpoint(&settings.user_info_endpoint)
        .logout_endpoint(&settings.logout_endpoint)
        .jwks_uri(&settings.jwks_uri)
        .set_scope(settings.scope.clone());
    for (key, value) in &settings.authentication_request_extra_params {
        builder = builder.authentication_request_extra_params(key, value);
    }
    builder.build()
}

fn snapshot(workforce: &sm::Workforce) -> WorkforceSnapshot {
    WorkforceSnapshot {
        name: workforce.workforce_name().unwrap_or_default().to_owned(),
        arn: workforce.workforce_arn().map(str::to_owned),
        status: workforce.status().map(|s| s.as_str().to_owned()),
        failure_reason: workforce.failure_reason().map(str::to_owned),
        subdomain: workforce.sub_domain().map(str::to_owned),
        source_ip_cidrs: workforce
            .source_ip_config()
            .map(|c| c.cidrs().to_vec())
            .unwrap_or_default(),
        cognito_config: workforce.cognito_config().map(|c| CognitoConfig {
            user_pool: c.user_pool().unwrap_or_default().to_owned(),
            client_id: c.client_id().unwrap_or_default().to_owned(),
        }),
        oidc_config: workforce.oidc_config().map(|c| OidcSettings {
            client_id: c.client_id().unwrap_or_default().to_owned(),
            issuer: c.issuer().unwrap_or_default().to_owned(),
            authorization_endpoint: c.authorization_endpoint().unwrap_or_default().to_owned(),
            token_endpoint: c.token_endpoint().unwrap_or_default().to_owned(),
            user_info_endpoint: c.user_info_endpoint().unwrap_or_default().to_owned(),
            logout_endpoint: c.logout_endpoint().unwrap_or_default().to_owned(),
            jwks_uri: c.jwks_uri().unwrap_or_default().to_owned(),
            scope: c.scope().map(str::to_owned),
            authentication_request_extra_params: c
                .authentication_request_extra_params()
                .map(|params| params.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        }),
        vpc_config: workforce.workforce_vpc_config().map(|v| VpcSnapshot {
            vpc_id: v.vpc_id().unwrap_or_default().to_owned(),
            security_group_ids: v.security_group_ids().to_vec(),
            subnets: v.subnets().to_vec(),
            vpc_endpoint_id: v.vpc_endpoint_id().map(str::to_owned),
        }),
        ip_address_type: workforce.ip_address_type().map(|t| t.as_str().to_owned()),
        created_at: to_chrono(workforce.create_date()),
        last_updated_at: to_chrono(workforce.last_updated_date()),
    }
}

impl Aws {
    /// Describes a workforce; `Ok(None)` when SageMaker has no workforce of that name.
    pub async fn describe_workforce(
        &self,
        region: &Region,
        name: &str,
    ) -> Result<Option<WorkforceSnapshot>, AwsError> {
        let client = &self.clients(region)?.sagemaker;
        let started = std::time::Instant::now();
        let result = client
            .describe_workforce()
            .workforce_name(name)
            .send()
            .await;
        log_call("DescribeWorkforce", region, name, started, &result);
        match result {
            Ok(output) => Ok(output.workforce().map(snapshot)),
            Err(error) => match AwsError::from_sdk(error, is_missing_workforce) {
                AwsError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Lists every workforce of a region (at most one private workforce exists per region).
    pub async fn list_workforces(
        &self,
        region: &Region,
    ) -> Result<Vec<WorkforceSnapshot>, AwsError> {
        let client = &self.clients(region)?.sagemaker;
        let mut workforces = Vec::new();
        let mut next_token = None;
        loop {
            let started = std::time::Instant::now();
            let result = client
                .list_workforces()
                .set_next_token(next_token.take())
                .max_results(100)
                .send()
                .await;
            log_call("ListWorkforces", region, "", started, &result);
            let output = result.map_err(|error| AwsError::from_sdk(error, |_, _| false))?;
            workforces.extend(output.workforces().iter().map(snapshot));
            match output.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_owned()),
                _ => return Ok(workforces),
            }
        }
    }

    pub async fn create_workforce(
        &self,
        region: &Region,
        input: CreateWorkforceInput<'_>,
    ) -> Result<(), AwsError> {
        let client = &self.clients(region)?.sagemaker;
        let tags = input
            .tags
            .iter()
            .map(|tag| sm::Tag::builder().key(&tag.key).value(&tag.value).build())
            .collect::<Vec<_>>();
        let request = client
            .create_workforce()
            .workforce_name(input.name.as_str())
            .set_cognito_config(input.cognito_config.map(|c| {
                sm::CognitoConfig::builder()
                    .user_pool(&c.user_pool)
                    .client_id(&c.client_id)
                    .build()
            }))
            .set_oidc_config(input.oidc_config.map(oidc_request))
            .set_workforce_vpc_config(input.vpc_config.map(vpc_request))
            .set_source_ip_config(input.source_ip_config.map(source_ip_request))
            .set_tags((!tags.is_empty()).then_some(tags))
            .set_ip_address_type(
                input
                    .ip_address_type
                    .map(|t| sm::WorkforceIpAddressType::from(t.as_aws_str())),
            );
        let started = std::time::Instant::now();
        let result = request.send().await;
        log_call(
            "CreateWorkforce",
            region,
            input.name.as_str(),
            started,
            &result,
        );
        result
            .map(|_| ())
            .map_err(|error| AwsError::from_sdk(error, |_, _| false))
    }

    pub async fn update_workforce(
        &self,
        region: &Region,
        name: &WorkforceName,
        change: UpdateWorkforceInput<'_>,
    ) -> Result<(), AwsError> {
        let client = &self.clients(region)?.sagemaker;
        let mut request = client.update_workforce().workforce_name(name.as_str());
        request = match change {
            UpdateWorkforceInput::VpcConfig(config) => {
                request.workforce_vpc_config(vpc_request(config))
            }
            // SageMaker removes the VPC configuration when it receives an empty one.
            UpdateWorkforceInput::RemoveVpcConfig => {
                request.workforce_vpc_config(sm::WorkforceVpcConfigRequest::builder().build())
            }
            UpdateWorkforceInput::SourceIpConfig(config, ip_address_type) => request
                .source_ip_config(source_ip_request(config))
                .set_ip_address_type(
                    ip_address_type.map(|t| sm::WorkforceIpAddressType::from(t.as_aws_str())),
                ),
            UpdateWorkforceInput::OidcConfig(config) => request.oidc_config(oidc_request(config)),
        };
        let started = std::time::Instant::now();
        let result = request.send().await;
        log_call("UpdateWorkforce", region, name.as_str(), started, &result);
        result
            .map(|_| ())
            .map_err(|error| AwsError::from_sdk(error, is_missing_workforce))
    }

    pub async fn delete_workforce(
        &self,
        region: &Region,
        name: &WorkforceName,
    ) -> Result<(), AwsError> {
        let client = &self.clients(region)?.sagemaker;
        let started = std::time::Instant::now();
        let result = client
            .delete_workforce()
            .workforce_name(name.as_str())
            .send()
            .await;
        log_call("DeleteWorkforce", region, name.as_str(), started, &result);
        result
            .map(|_| ())
            .map_err(|error| AwsError::from_sdk(error, is_missing_workforce))
    }
}

/// Logs one AWS call with its outcome, duration and AWS request id.
fn log_call<T, E>(
    operation: &str,
    region: &Region,
    workforce: &str,
    started: std::time::Instant,
    result: &Result<T, E>,
) where
    T: aws_sdk_sagemaker::operation::RequestId,
    E: aws_sdk_sagemaker::operation::RequestId
        + aws_sdk_sagemaker::error::ProvideErrorMetadata
        + std::error::Error,
{
    let duration_ms = started.elapsed().as_millis() as u64;
    let outcome = match result {
        Ok(_) => "success",
        Err(error)
            if error.code().is_some_and(|code| {
                is_missing_workforce(code, error.message().unwrap_or_default())
            }) =>
        {
            "not_found"
        }
        Err(_) => "error",
    };
    crate::telemetry::record_aws_call(
        "sagemaker",
        operation,
        outcome,
        started.elapsed().as_secs_f64(),
    );
    match result {
        Ok(output) => tracing::debug!(
            aws.operation = operation,
            aws.region = %region,
            workforce.name = workforce,
            aws.request_id = output.request_id().unwrap_or_default(),
            duration_ms,
            "AWS call succeeded"
        ),
        // A service error is logged with its code and message only: the SDK's full text
        // carries the raw response, over a kilobyte per line.
        Err(error) => match (error.code(), error.message()) {
            (Some(code), message) if is_missing_workforce(code, message.unwrap_or_default()) => {
                tracing::debug!(
                    aws.operation = operation,
                    aws.region = %region,
                    workforce.name = workforce,
                    aws.request_id = error.request_id().unwrap_or_default(),
                    duration_ms,
                    "AWS call found no workforce"
                )
            }
            (Some(code), message) => tracing::info!(
                aws.operation = operation,
                aws.region = %region,
                workforce.name = workforce,
                aws.error_code = code,
                aws.request_id = error.request_id().unwrap_or_default(),
                duration_ms,
                error = message.unwrap_or_default(),
                "AWS call failed"
            ),
            // No response to read, such as a timeout or a refused connection.
            (None, _) => tracing::info!(
                aws.operation = operation,
                aws.region = %region,
                workforce.name = workforce,
                duration_ms,
                error = %aws_sdk_sagemaker::error::DisplayErrorContext(error),
                "AWS call failed"
            ),
        },
    }
}
