//! EC2 describe calls for the VPC prerequisite checks and the view of a workforce's endpoints.
//!
//! Each resource type is read with one call, and the calls of one inventory run concurrently.
//! VPCs, subnets and security groups are selected with an id filter rather than an id list.
//! EC2 fails a whole id-list request when one id is unknown (`InvalidSubnetID.NotFound` and
//! so on). A filter returns the resources that exist, so each missing id is reported on its
//! own.

use std::collections::HashMap;

use aws_sdk_ec2::types::{Filter, VpcAttributeName};
use chrono::{DateTime, Utc};

use super::{Aws, AwsError};
use crate::domain::{Region, VpcConfig};

/// A VPC with the DNS attributes that interface endpoints depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcDetails {
    pub vpc_id: String,
    /// `pending` or `available`, as EC2 sends it.
    pub state: String,
    pub dns_support: bool,
    pub dns_hostnames: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubnetDetails {
    pub subnet_id: String,
    pub vpc_id: String,
    pub state: String,
    /// Zone name, such as `us-east-1a`; names map to different zones in each account.
    pub availability_zone: String,
    /// Zone id, such as `use1-az1`, which is the same in every account.
    pub availability_zone_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroupDetails {
    pub group_id: String,
    pub vpc_id: String,
}

/// A VPC endpoint as `DescribeVpcEndpoints` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcEndpointDetails {
    pub vpc_endpoint_id: String,
    /// `Interface`, `Gateway` or `GatewayLoadBalancer`.
    pub endpoint_type: String,
    pub vpc_id: String,
    pub service_name: String,
    /// Lowercase, such as `pending` or `available`; see [`endpoint_state`].
    pub state: String,
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
    pub route_table_ids: Vec<String>,
    pub dns_names: Vec<String>,
    pub created_at: Option<DateTime<Utc>>,
}

impl VpcEndpointDetails {
    /// Returns true when the endpoint's state is `state`, ignoring case.
    pub fn is_in_state(&self, state: &str) -> bool {
        self.state.eq_ignore_ascii_case(state)
    }
}

/// Availability zones in which the worker portal's endpoint service is offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortalZones {
    /// Any zone.
    Unrestricted,
    /// Zone names, as `DescribeVpcEndpointServices` lists them when it gives no zone ids.
    Names(Vec<String>),
    /// Zone ids, from `DescribeVpcEndpointServices` or from the service's configuration.
    Ids(Vec<String>),
    /// The configured endpoint service does not exist in the region.
    ServiceNotFound(String),
}

/// Source of the availability zones that the worker portal supports in each region.
#[derive(Debug, Clone, Default)]
pub struct PortalZoneSource {
    /// Service name of the worker portal's interface endpoints; `{region}` is replaced by the
    /// region code. When set, `DescribeVpcEndpointServices` decides.
    pub endpoint_service: Option<String>,
    /// Region code to the zone ids that Ground Truth supports there. Used when no endpoint
    /// service is set; a region missing from the table is unrestricted.
    pub zone_ids: HashMap<String, Vec<String>>,
}

impl PortalZoneSource {
    /// Returns the endpoint service name of a region, if one is configured.
    pub fn service_name(&self, region: &Region) -> Option<String> {
        self.endpoint_service
            .as_ref()
            .map(|template| template.replace("{region}", region.as_str()))
    }
}

/// EC2's view of the resources of one VPC configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VpcInventory {
    /// None when the VPC does not exist.
    pub vpc: Option<VpcDetails>,
    /// The requested subnets that exist; the others do not.
    pub subnets: Vec<SubnetDetails>,
    /// The requested security groups that exist; the others do not.
    pub security_groups: Vec<SecurityGroupDetails>,
    /// Subnet id to the id of the route table it uses: its explicit association, or else the
    /// VPC's main route table.
    pub subnet_route_tables: HashMap<String, String>,
    /// The VPC's endpoints for Amazon S3.
    pub s3_endpoints: Vec<VpcEndpointDetails>,
    pub portal_zones: PortalZones,
}

fn filter(name: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().map(Into::into).collect()))
        .build()
}

fn to_chrono(value: Option<&aws_sdk_ec2::primitives::DateTime>) -> Option<DateTime<Utc>> {
    let value = value?;
    DateTime::from_timestamp(value.secs(), value.subsec_nanos())
}

/// Returns the state of an endpoint in lowercase. EC2 sends lowercase values (`available`,
/// `pendingAcceptance`) that the SDK's PascalCase `State` enum does not list, so they arrive
/// as `State::Unknown`. `as_str` returns the text in either case.
pub fn endpoint_state(state: Option<&aws_sdk_ec2::types::State>) -> String {
    state
        .map(|s| s.as_str().to_ascii_lowercase())
        .unwrap_or_default()
}

fn endpoint_details(endpoint: &aws_sdk_ec2::types::VpcEndpoint) -> VpcEndpointDetails {
    VpcEndpointDetails {
        vpc_endpoint_id: endpoint.vpc_endpoint_id().unwrap_or_default().to_owned(),
        endpoint_type: endpoint
            .vpc_endpoint_type()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        vpc_id: endpoint.vpc_id().unwrap_or_default().to_owned(),
        service_name: endpoint.service_name().unwrap_or_default().to_owned(),
        state: endpoint_state(endpoint.state()),
        subnet_ids: endpoint.subnet_ids().to_vec(),
        security_group_ids: endpoint
            .groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_owned))
            .collect(),
        route_table_ids: endpoint.route_table_ids().to_vec(),
        dns_names: endpoint
            .dns_entries()
            .iter()
            .filter_map(|d| d.dns_name().map(str::to_owned))
            .collect(),
        created_at: to_chrono(endpoint.creation_timestamp()),
    }
}

/// Returns whether EC2 rejected a VPC id as unknown. An id that is not the form EC2 generates
/// (such as one with a hex digit too many) gets `InvalidVpcID.Malformed`, and no VPC has it.
fn is_missing_vpc(error: &AwsError) -> bool {
    matches!(
        error,
        AwsError::Rejected { code, .. }
            if code == "InvalidVpcID.NotFound" || code == "InvalidVpcID.Malformed"
    )
}

/// Logs a failed EC2 call once, with the AWS request id; successes are logged at debug level.
fn logged<T>(
    operation: &str,
    region: &Region,
    started: std::time::Instant,
    result: Result<T, AwsError>,
) -> Result<T, AwsError> {
    let duration_ms = started.elapsed().as_millis() as u64;
    let outcome = if result.is_ok() { "success" } else { "error" };
    crate::telemetry::record_aws_call("ec2", operation, outcome, started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => {
            tracing::debug!(aws.operation = operation, aws.region = %region, duration_ms, "AWS call succeeded")
        }
        Err(error) => tracing::info!(
            aws.operation = operation,
            aws.region = %region,
            aws.error_code = error.code(),
            aws.request_id = error.request_id().unwrap_or_default(),
            duration_ms,
            error = error.message(),
            "AWS call failed"
        ),
    }
    result
}

impl Aws {
    /// Reads everything the VPC prerequisite checks need about `config`, with one call per
    /// resource type, all at once. An unknown VPC, subnet or security group is absent from
    /// the result; throttling, server errors and denied access are errors.
    pub async fn vpc_inventory(
        &self,
        region: &Region,
        config: &VpcConfig,
    ) -> Result<VpcInventory, AwsError> {
        let vpc_id = config.vpc_id.as_str();
        let subnet_ids: Vec<&str> = config.subnets.iter().map(|s| s.as_str()).collect();
        let group_ids: Vec<&str> = config
            .security_group_ids
            .iter()
            .map(|g| g.as_str())
            .collect();

        let (
            vpc_state,
            dns_support,
            dns_hostnames,
            subnets,
            security_groups,
            subnet_route_tables,
            s3_endpoints,
            portal_zones,
        ) = tokio::try_join!(
            self.vpc_state(region, vpc_id),
            self.vpc_attribute(region, vpc_id, VpcAttributeName::EnableDnsSupport),
            self.vpc_attribute(region, vpc_id, VpcAttributeName::EnableDnsHostnames),
            self.subnets(region, &subnet_ids),
            self.security_groups(region, &group_ids),
            self.subnet_route_tables(region, vpc_id, &subnet_ids),
            self.vpc_endpoints(
                region,
                vec![
                    filter("vpc-id", [vpc_id]),
                    filter("service-name", [format!("com.amazonaws.{region}.s3")])
                ],
            ),
            self.portal_zones(region),
        )?;

        let vpc = match (vpc_state, dns_support, dns_hostnames) {
            (Some(state), Some(dns_support), Some(dns_hostnames)) => Some(VpcDetails {
                vpc_id: vpc_id.to_owned(),
                state,
                dns_support,
                dns_hostnames,
            }),
            _ => None,
        };
        Ok(VpcInventory {
            vpc,
            subnets,
            security_groups,
            subnet_route_tables,
            s3_endpoints,
            portal_zones,
        })
    }

    /// Lists the interface endpoints of the worker portal: the endpoint `endpoint_id`, and
    /// the interface endpoints of `service_name` in the VPC, without duplicates. An unknown
    /// endpoint id is skipped. Without a service name, only `endpoint_id` is looked up.
    pub async fn find_vpc_endpoints(
        &self,
        region: &Region,
        endpoint_id: Option<&str>,
        vpc_id: &str,
        service_name: Option<&str>,
    ) -> Result<Vec<VpcEndpointDetails>, AwsError> {
        let by_id = async {
            match endpoint_id {
                Some(id) => {
                    self.vpc_endpoints(region, vec![filter("vpc-endpoint-id", [id])])
                        .await
                }
                None => Ok(Vec::new()),
            }
        };
        let by_vpc = async {
            match service_name {
                Some(name) => {
                    let filters = vec![
                        filter("vpc-id", [vpc_id]),
                        filter("vpc-endpoint-type", ["Interface"]),
                        filter("service-name", [name]),
                    ];
                    self.vpc_endpoints(region, filters).await
                }
                None => Ok(Vec::new()),
            }
        };
        let (mut endpoints, by_vpc) = tokio::try_join!(by_id, by_vpc)?;
        for endpoint in by_vpc {
            if !endpoints
                .iter()
                .any(|e| e.vpc_endpoint_id == endpoint.vpc_endpoint_id)
            {
                endpoints.push(endpoint);
            }
        }
        Ok(endpoints)
    }

    /// Returns the name of the worker portal's endpoint service in a region, if one is set.
    pub fn portal_endpoint_service(&self, region: &Region) -> Option<String> {
        self.portal_zone_source.service_name(region)
    }

    async fn vpc_state(&self, region: &Region, vpc_id: &str) -> Result<Option<String>, AwsError> {
        let client = self.ec2(region)?;
        let started = std::time::Instant::now();
        let result = client
            .describe_vpcs()
            .filters(filter("vpc-id", [vpc_id]))
            .send()
            .await
            .map_err(|error| AwsError::from_sdk(error, |_, _| false));
        let output = logged("DescribeVpcs", region, started, result)?;
        Ok(output.vpcs().first().map(|vpc| {
            vpc.state()
                .map(|s| s.as_str().to_ascii_lowercase())
                .unwrap_or_default()
        }))
    }

    /// Reads one boolean VPC attribute; `Ok(None)` when the VPC does not exist.
    async fn vpc_attribute(
        &self,
        region: &Region,
        vpc_id: &str,
        attribute: VpcAttributeName,
    ) -> Result<Option<bool>, AwsError> {
        let client = self.ec2(region)?;
        let started = std::time::Instant::now();
        let result = client
            .describe_vpc_attribute()
            .vpc_id(vpc_id)
            .attribute(attribute.clone())
            .send()
            .await
            .map_err(|error| AwsError::from_sdk(error, |_, _| false));
        let output = match result {
            Err(error) if is_missing_vpc(&error) => return Ok(None),
            other => logged("DescribeVpcAttribute", region, started, other)?,
        };
        let value = match attribute {
            VpcAttributeName::EnableDnsSupport => {
                output.enable_dns_support().and_then(|v| v.value())
            }
            _ => output.enable_dns_hostnames().and_then(|v| v.value()),
        };
        Ok(Some(value.unwrap_or(false)))
    }

    async fn subnets(
        &self,
        region: &Region,
        subnet_ids: &[&str],
    ) -> Result<Vec<SubnetDetails>, AwsError> {
        let client = self.ec2(region)?;
        let started = std::time::Instant::now();
        let result = client
            .describe_subnets()
            .filters(filter("subnet-id", subnet_ids.iter().copied()))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|error| AwsError::from_sdk(error, |_, _| false));
        let subnets = logged("DescribeSubnets", region, started, result)?;
        Ok(subnets
            .iter()
            .map(|s| SubnetDetails {
                subnet_id: s.subnet_id().unwrap_or_default().to_owned(),
                vpc_id: s.vpc_id().unwrap_or_default().to_owned(),
                state: s
                    .state()
                    .map(|v| v.as_str().to_ascii_lowercase())
                    .unwrap_or_default(),
                availability_zone: s.availability_zone().unwrap_or_default().to_owned(),
                availability_zone_id: s.availability_zone_id().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    async fn security_groups(
        &self,
        region: &Region,
        group_ids: &[&str],
    ) -> Result<Vec<SecurityGroupDetails>, AwsError> {
        let client = self.ec2(region)?;
        let started = std::time::Instant::now();
        let result = client
            .describe_security_groups()
            .filters(filter("group-id", group_ids.iter().copied()))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|error| AwsError::from_sdk(error, |_, _| false));
        let groups = logged("DescribeSecurityGroups", region, started, result)?;
        Ok(groups
            .iter()
            .map(|g| SecurityGroupDetails {
                group_id: g.group_id().unwrap_or_default().to_owned(),
                vpc_id: g.vpc_id().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    /// Maps each subnet to its route table. A subnet without an explicit association uses the
    /// main route table of the VPC, which a second, concurrent call finds.
    async fn subnet_route_tables(
        &self,
        region: &Region,
        vpc_id: &str,
        subnet_ids: &[&str],
    ) -> Result<HashMap<String, String>, AwsError> {
        let client = self.ec2(region)?;
        let describe = |filters: Vec<Filter>| async move {
            let started = std::time::Instant::now();
            let result = client
                .describe_route_tables()
                .set_filters(Some(filters))
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|error| AwsError::from_sdk(error, |_, _| false));
            logged("DescribeRouteTables", region, started, result)
        };
        let (associated, main) = tokio::try_join!(
            describe(vec![filter(
                "association.subnet-id",
                subnet_ids.iter().copied()
            )]),
            describe(vec![
                filter("vpc-id", [vpc_id]),
                filter("association.main", ["true"])
            ]),
        )?;
        let mut tables = HashMap::new();
        for table in &associated {
            for association in table.associations() {
                if let (Some(subnet_id), Some(table_id)) =
                    (association.subnet_id(), table.route_table_id())
                {
                    tables.insert(subnet_id.to_owned(), table_id.to_owned());
                }
            }
        }
        if let Some(main_id) = main.first().and_then(|t| t.route_table_id()) {
            for subnet_id in subnet_ids {
                tables
                    .entry((*subnet_id).to_owned())
                    .or_insert_with(|| main_id.to_owned());
            }
        }
        Ok(tables)
    }

    async fn vpc_endpoints(
        &self,
        region: &Region,
        filters: Vec<Filter>,
    ) -> Result<Vec<VpcEndpointDetails>, AwsError> {
        let client = self.ec2(region)?;
        let started = std::time::Instant::now();
        let result = client
            .describe_vpc_endpoints()
            .set_filters(Some(filters))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|error| AwsError::from_sdk(error, |_, _| false));
        let endpoints = logged("DescribeVpcEndpoints", region, started, result)?;
        Ok(endpoints.iter().map(endpoint_details).collect())
    }

    /// Returns the zones the worker portal supports in a region, from its endpoint service
    /// when one is configured, else from the configured zone-id table.
    async fn portal_zones(&self, region: &Region) -> Result<PortalZones, AwsError> {
        let Some(service_name) = self.portal_zone_source.service_name(region) else {
            return Ok(
                match self.portal_zone_source.zone_ids.get(region.as_str()) {
                    Some(ids) => PortalZones::Ids(ids.clone()),
                    None => PortalZones::Unrestricted,
                },
            );
        };
        let client = self.ec2(region)?;
        let started = std::time::Instant::now();
        let result = client
            .describe_vpc_endpoint_services()
            .service_names(&service_name)
            .send()
            .await
            .map_err(|error| AwsError::from_sdk(error, |_, _| false));
        let output = match result {
            Err(AwsError::Rejected { code, .. }) if code == "InvalidServiceName" => {
                return Ok(PortalZones::ServiceNotFound(service_name));
            }
            other => logged("DescribeVpcEndpointServices", region, started, other)?,
        };
        let Some(detail) = output
            .service_details()
            .iter()
            .find(|d| d.service_name() == Some(service_name.as_str()))
        else {
            return Ok(PortalZones::ServiceNotFound(service_name));
        };
        if !detail.availability_zone_ids().is_empty() {
            Ok(PortalZones::Ids(detail.availability_zone_ids().to_vec()))
        } else {
            Ok(PortalZones::Names(detail.availability_zones().to_vec()))
        }
    }
}
