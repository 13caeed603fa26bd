//! The EC2 describe actions: VPCs, VPC attributes, subnets, security groups, route tables, VPC
//! endpoints and endpoint services.

use std::collections::BTreeSet;

use super::params::{Filter, Params};
use super::xml::Xml;
use crate::error::ApiError;
use crate::state::{Inner, Scope, VpcEndpoint};
use crate::topology::{
    RegionTopology, RouteTable, SecurityGroup, Subnet, Vpc, workforce_endpoint_service,
};

/// `MaxResults` range of DescribeVpcs, DescribeSubnets and DescribeSecurityGroups.
const MAX_RESULTS_RANGE: (usize, usize) = (5, 1000);
/// `MaxResults` range of DescribeRouteTables.
const ROUTE_TABLE_MAX_RESULTS: (usize, usize) = (5, 100);
/// DescribeVpcEndpoints and DescribeVpcEndpointServices accept 1 to 1000.
const ENDPOINT_MAX_RESULTS: (usize, usize) = (1, 1000);

fn region<'a>(inner: &'a Inner, scope: &Scope) -> Option<&'a RegionTopology> {
    inner.topology.region(&scope.account, &scope.region)
}

/// Keeps the items whose id is in `ids`, in request order, or fails on the first unknown id.
/// An empty id list keeps every item.
fn select_by_id<'a, T>(
    items: &'a [T],
    ids: &[String],
    id_of: impl Fn(&T) -> &str,
    not_found: impl Fn(&str) -> ApiError,
) -> Result<Vec<&'a T>, ApiError> {
    if ids.is_empty() {
        return Ok(items.iter().collect());
    }
    let mut selected = Vec::new();
    let mut seen = BTreeSet::new();
    for id in ids {
        let item = items
            .iter()
            .find(|item| id_of(item) == id)
            .ok_or_else(|| not_found(id))?;
        if seen.insert(id.as_str()) {
            selected.push(item);
        }
    }
    Ok(selected)
}

/// Rejects filter names an action does not support. Every action here also takes the tag
/// filters `tag:<key>` and `tag-key`.
fn check_filters(filters: &[Filter], supported: &[&str]) -> Result<(), ApiError> {
    match filters
        .iter()
        .find(|f| !f.is_tag_filter() && !supported.contains(&f.name.as_str()))
    {
        Some(filter) => Err(ApiError::client(
            "InvalidParameterValue",
            format!(
                "The filter '{}' is invalid. Supported filters: {}.",
                filter.name,
                supported.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// Returns whether an item passes every filter; `value_of` returns the item's values for a
/// filter name. The sandbox's resources have no tags, so a tag filter passes nothing.
fn passes<T>(item: &T, filters: &[Filter], value_of: impl Fn(&T, &str) -> Vec<String>) -> bool {
    filters.iter().all(|filter| {
        !filter.is_tag_filter()
            && value_of(item, &filter.name)
                .iter()
                .any(|v| filter.accepts(v))
    })
}

fn not_found(code: &'static str, what: &str) -> impl Fn(&str) -> ApiError {
    let what = what.to_owned();
    move |id| ApiError::client(code, format!("The {what} '{id}' does not exist"))
}

/// Error codes and wording for an id that matches no resource of one kind.
struct IdKind {
    /// The id's prefix, such as `vpc`.
    prefix: &'static str,
    not_found: &'static str,
    malformed: &'static str,
    /// The resource's name in the not-found message, such as `vpc ID`.
    label: &'static str,
}

const VPC_ID: IdKind = IdKind {
    prefix: "vpc",
    not_found: "InvalidVpcID.NotFound",
    malformed: "InvalidVpcID.Malformed",
    label: "vpc ID",
};
const SUBNET_ID: IdKind = IdKind {
    prefix: "subnet",
    not_found: "InvalidSubnetID.NotFound",
    malformed: "InvalidSubnetID.Malformed",
    label: "subnet ID",
};
const GROUP_ID: IdKind = IdKind {
    prefix: "sg",
    not_found: "InvalidGroup.NotFound",
    malformed: "InvalidGroupId.Malformed",
    label: "security group",
};
const VPC_ENDPOINT_ID: IdKind = IdKind {
    prefix: "vpce",
    not_found: "InvalidVpcEndpointId.NotFound",
    malformed: "InvalidVpcEndpointId.Malformed",
    label: "Vpc Endpoint Id",
};
const ROUTE_TABLE_ID: IdKind = IdKind {
    prefix: "rtb",
    not_found: "InvalidRouteTableID.NotFound",
    malformed: "InvalidRouteTableId.Malformed",
    label: "routeTable ID",
};

/// Returns the error for an unknown id: `.Malformed` when the id is not the prefix, a hyphen
/// and 8 or 17 lowercase hex digits, as EC2 generates them, and `.NotFound` otherwise. The
/// malformed message follows the form EC2 uses for security group ids.
fn unknown_id(kind: &'static IdKind) -> impl Fn(&str) -> ApiError {
    move |id| {
        let well_formed = id
            .strip_prefix(kind.prefix)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|hex| {
                matches!(hex.len(), 8 | 17)
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            });
        if well_formed {
            not_found(kind.not_found, kind.label)(id)
        } else {
            ApiError::client(
                kind.malformed,
                format!("Invalid id: \"{id}\" (expecting \"{}-...\")", kind.prefix),
            )
        }
    }
}

pub fn vpcs(inner: &Inner, scope: &Scope, params: &Params, out: &mut Xml) -> Result<(), ApiError> {
    let empty = Vec::new();
    let all = region(inner, scope).map_or(&empty, |r| &r.vpcs);
    let filters = params.filters();
    check_filters(
        &filters,
        &[
            "vpc-id",
            "state",
            "cidr-block",
            "cidr",
            "is-default",
            "owner-id",
        ],
    )?;
    let selected = select_by_id(
        all,
        &params.list("VpcId"),
        |v| &v.vpc_id,
        unknown_id(&VPC_ID),
    )?;
    let matching: Vec<&Vpc> = selected
        .into_iter()
        .filter(|vpc| {
            passes(*vpc, &filters, |v, name| match name {
                "vpc-id" => vec![v.vpc_id.clone()],
                "state" => vec![v.state.clone()],
                "cidr-block" | "cidr" => vec![v.cidr_block.clone()],
                "is-default" => vec![v.is_default.to_string()],
                _ => vec![scope.account.clone()],
            })
        })
        .collect();
    let (page, next) = params.page(matching, MAX_RESULTS_RANGE.0, MAX_RESULTS_RANGE.1)?;

    out.open("vpcSet");
    for vpc in page {
        out.open("item");
        out.leaf("vpcId", &vpc.vpc_id);
        out.leaf("ownerId", &scope.account);
        out.leaf("state", &vpc.state);
        out.leaf("cidrBlock", &vpc.cidr_block);
        out.open("cidrBlockAssociationSet");
        out.open("item");
        out.leaf("cidrBlock", &vpc.cidr_block);
        out.leaf("associationId", &derived_id("vpc-cidr-assoc", &vpc.vpc_id));
        out.open("cidrBlockState");
        out.leaf("state", "associated");
        out.close("cidrBlockState");
        out.close("item");
        out.close("cidrBlockAssociationSet");
        out.leaf("dhcpOptionsId", &derived_id("dopt", &vpc.vpc_id));
        out.leaf("instanceTenancy", "default");
        out.flag("isDefault", vpc.is_default);
        out.close("item");
    }
    out.close("vpcSet");
    out.next_token(next.as_deref());
    Ok(())
}

pub fn vpc_attribute(
    inner: &Inner,
    scope: &Scope,
    params: &Params,
    out: &mut Xml,
) -> Result<(), ApiError> {
    let vpc_id = params.required("VpcId")?;
    let attribute = params.required("Attribute")?;
    let vpc = region(inner, scope)
        .and_then(|r| r.vpc(vpc_id))
        .ok_or_else(|| unknown_id(&VPC_ID)(vpc_id))?;
    let value = match attribute {
        "enableDnsSupport" => vpc.enable_dns_support,
        "enableDnsHostnames" => vpc.enable_dns_hostnames,
        "enableNetworkAddressUsageMetrics" => false,
        _ => {
            return Err(ApiError::client(
                "InvalidParameterValue",
                format!(
                    "Value ({attribute}) for parameter attribute is invalid. Unknown attribute."
                ),
            ));
        }
    };
    out.leaf("vpcId", vpc_id);
    out.open(attribute);
    out.flag("value", value);
    out.close(attribute);
    Ok(())
}

pub fn subnets(
    inner: &Inner,
    scope: &Scope,
    params: &Params,
    out: &mut Xml,
) -> Result<(), ApiError> {
    let topology = region(inner, scope);
    let empty = Vec::new();
    let all = topology.map_or(&empty, |r| &r.subnets);
    let filters = params.filters();
    check_filters(
        &filters,
        &[
            "vpc-id",
            "subnet-id",
            "availability-zone",
            "availability-zone-id",
            "state",
            "cidr-block",
        ],
    )?;
    let zone_id = |subnet: &Subnet| {
        topology
            .and_then(|t| t.zone(&subnet.availability_zone))
            .map(|z| z.zone_id.clone())
            .unwrap_or_default()
    };
    let selected = select_by_id(
        all,
        &params.list("SubnetId"),
        |s| &s.subnet_id,
        unknown_id(&SUBNET_ID),
    )?;
    let matching: Vec<&Subnet> = selected
        .into_iter()
        .filter(|subnet| {
            passes(*subnet, &filters, |s, name| match name {
                "vpc-id" => vec![s.vpc_id.clone()],
                "subnet-id" => vec![s.subnet_id.clone()],
                "availability-zone" => vec![s.availability_zone.clone()],
                "availability-zone-id" => vec![zone_id(s)],
                "state" => vec![s.state.clone()],
                _ => vec![s.cidr_block.clone()],
            })
        })
        .collect();
    let (page, next) = params.page(matching, MAX_RESULTS_RANGE.0, MAX_RESULTS_RANGE.1)?;

    out.open("subnetSet");
    for subnet in page {
        out.open("item");
        out.leaf("subnetId", &subnet.subnet_id);
        out.leaf(
            "subnetArn",
            &format!(
                "arn:aws:ec2:{}:{}:subnet/{}",
                scope.region, scope.account, subnet.subnet_id
            ),
        );
        out.leaf("state", &subnet.state);
        out.leaf("ownerId", &scope.account);
        out.leaf("vpcId", &subnet.vpc_id);
        out.leaf("cidrBlock", &subnet.cidr_block);
        out.leaf(
            "availableIpAddressCount",
            &subnet.available_ip_address_count.to_string(),
        );
        out.leaf("availabilityZone", &subnet.availability_zone);
        out.leaf("availabilityZoneId", &zone_id(subnet));
        out.flag("defaultForAz", false);
        out.flag("mapPublicIpOnLaunch", false);
        out.close("item");
    }
    out.close("subnetSet");
    out.next_token(next.as_deref());
    Ok(())
}

pub fn security_groups(
    inner: &Inner,
    scope: &Scope,
    params: &Params,
    out: &mut Xml,
) -> Result<(), ApiError> {
    let empty = Vec::new();
    let all = region(inner, scope).map_or(&empty, |r| &r.security_groups);
    let filters = params.filters();
    check_filters(&filters, &["vpc-id", "group-id", "group-name"])?;
    let mut selected = select_by_id(
        all,
        &params.list("GroupId"),
        |g| &g.group_id,
        unknown_id(&GROUP_ID),
    )?;
    let names = params.list("GroupName");
    if !names.is_empty() {
        let missing_name = not_found(GROUP_ID.not_found, GROUP_ID.label);
        let by_name = select_by_id(all, &names, |g| &g.group_name, missing_name)?;
        selected.retain(|g| by_name.iter().any(|n| n.group_id == g.group_id));
    }
    let matching: Vec<&SecurityGroup> = selected
        .into_iter()
        .filter(|group| {
            passes(*group, &filters, |g, name| match name {
                "vpc-id" => vec![g.vpc_id.clone()],
                "group-id" => vec![g.group_id.clone()],
                _ => vec![g.group_name.clone()],
            })
        })
        .collect();
    let (page, next) = params.page(matching, MAX_RESULTS_RANGE.0, MAX_RESULTS_RANGE.1)?;

    out.open("securityGroupInfo");
    for group in page {
        out.open("item");
        out.leaf("ownerId", &scope.account);
        out.leaf("groupId", &group.group_id);
        out.leaf("groupName", &group.group_name);
        out.leaf("groupDescription", &group.description);
        out.leaf("vpcId", &group.vpc_id);
        out.leaf(
            "securityGroupArn",
            &format!(
                "arn:aws:ec2:{}:{}:security-group/{}",
                scope.region, scope.account, group.group_id
            ),
        );
        out.string_set("ipPermissions", &[]);
        out.string_set("ipPermissionsEgress", &[]);
        out.close("item");
    }
    out.close("securityGroupInfo");
    out.next_token(next.as_deref());
    Ok(())
}

pub fn vpc_endpoints(
    inner: &Inner,
    scope: &Scope,
    params: &Params,
    out: &mut Xml,
) -> Result<(), ApiError> {
    let all = inner.vpc_endpoints(scope);
    let filters = params.filters();
    check_filters(
        &filters,
        &[
            "vpc-id",
            "service-name",
            "vpc-endpoint-type",
            "vpc-endpoint-id",
            "vpc-endpoint-state",
            "ip-address-type",
        ],
    )?;
    let selected = select_by_id(
        &all,
        &params.list("VpcEndpointId"),
        |e| &e.id,
        unknown_id(&VPC_ENDPOINT_ID),
    )?;
    let matching: Vec<&VpcEndpoint> = selected
        .into_iter()
        .filter(|endpoint| {
            passes(*endpoint, &filters, |e, name| match name {
                "vpc-id" => vec![e.vpc_id.clone()],
                "service-name" => vec![e.service_name.clone()],
                "vpc-endpoint-type" => vec![e.endpoint_type.clone()],
                "vpc-endpoint-id" => vec![e.id.clone()],
                // Clients send either `available` or `Available`; both match.
                "vpc-endpoint-state" => vec![e.state.clone(), capitalize(&e.state)],
                _ => vec![e.ip_address_type.clone()],
            })
        })
        .collect();
    let (page, next) = params.page(matching, ENDPOINT_MAX_RESULTS.0, ENDPOINT_MAX_RESULTS.1)?;
    let topology = region(inner, scope);

    out.open("vpcEndpointSet");
    for endpoint in page {
        write_endpoint(out, endpoint, topology);
    }
    out.close("vpcEndpointSet");
    out.next_token(next.as_deref());
    Ok(())
}

fn write_endpoint(out: &mut Xml, endpoint: &VpcEndpoint, topology: Option<&RegionTopology>) {
    out.open("item");
    out.leaf("vpcEndpointId", &endpoint.id);
    out.leaf("vpcEndpointType", &endpoint.endpoint_type);
    out.leaf("vpcId", &endpoint.vpc_id);
    out.leaf("serviceName", &endpoint.service_name);
    out.leaf("state", &endpoint.state);

    out.string_set("routeTableIdSet", &endpoint.route_table_ids);
    out.string_set("subnetIdSet", &endpoint.subnet_ids);
    out.open("groupSet");
    for group_id in &endpoint.security_group_ids {
        out.open("item");
        out.leaf("groupId", group_id);
        let name = topology
            .and_then(|t| t.security_group(group_id))
            .map(|g| g.group_name.as_str())
            .unwrap_or_default();
        out.leaf("groupName", name);
        out.close("item");
    }
    out.close("groupSet");

    out.leaf("ipAddressType", &endpoint.ip_address_type);
    out.flag("privateDnsEnabled", endpoint.private_dns_enabled);
    out.flag("requesterManaged", endpoint.requester_managed);
    out.string_set("networkInterfaceIdSet", &endpoint.network_interface_ids);
    out.open("dnsEntrySet");
    for entry in &endpoint.dns_entries {
        out.open("item");
        out.leaf("dnsName", &entry.dns_name);
        out.leaf("hostedZoneId", &entry.hosted_zone_id);
        out.close("item");
    }
    out.close("dnsEntrySet");

    out.leaf(
        "creationTimestamp",
        &endpoint
            .creation_timestamp
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    );
    out.leaf("ownerId", &endpoint.owner_id);
    out.close("item");
}

pub fn route_tables(
    inner: &Inner,
    scope: &Scope,
    params: &Params,
    out: &mut Xml,
) -> Result<(), ApiError> {
    let topology = region(inner, scope);
    let empty = Vec::new();
    let all = topology.map_or(&empty, |r| &r.route_tables);
    let filters = params.filters();
    check_filters(
        &filters,
        &[
            "vpc-id",
            "association.subnet-id",
            "route-table-id",
            "association.main",
        ],
    )?;
    let selected = select_by_id(
        all,
        &params.list("RouteTableId"),
        |t| &t.route_table_id,
        unknown_id(&ROUTE_TABLE_ID),
    )?;
    let matching: Vec<&RouteTable> = selected
        .into_iter()
        .filter(|table| {
            passes(*table, &filters, |t, name| match name {
                "vpc-id" => vec![t.vpc_id.clone()],
                "association.subnet-id" => t.subnet_ids.clone(),
                "route-table-id" => vec![t.route_table_id.clone()],
                _ => vec![t.main.to_string()],
            })
        })
        .collect();
    let (page, next) = params.page(
        matching,
        ROUTE_TABLE_MAX_RESULTS.0,
        ROUTE_TABLE_MAX_RESULTS.1,
    )?;
    let endpoints = inner.vpc_endpoints(scope);

    out.open("routeTableSet");
    for table in page {
        out.open("item");
        out.leaf("routeTableId", &table.route_table_id);
        out.leaf("vpcId", &table.vpc_id);
        out.leaf("ownerId", &scope.account);
        out.open("associationSet");
        if table.main {
            write_association(out, table, None);
        }
        for subnet_id in &table.subnet_ids {
            write_association(out, table, Some(subnet_id));
        }
        out.close("associationSet");
        out.open("routeSet");
        if let Some(vpc) = topology.and_then(|t| t.vpc(&table.vpc_id)) {
            out.open("item");
            out.leaf("destinationCidrBlock", &vpc.cidr_block);
            out.leaf("gatewayId", "local");
            out.leaf("state", "active");
            out.leaf("origin", "CreateRouteTable");
            out.close("item");
        }
        for endpoint in endpoints
            .iter()
            .filter(|e| e.route_table_ids.contains(&table.route_table_id))
        {
            out.open("item");
            out.leaf("destinationPrefixListId", &derived_id("pl", &endpoint.id));
            out.leaf("gatewayId", &endpoint.id);
            out.leaf("state", "active");
            out.leaf("origin", "CreateRoute");
            out.close("item");
        }
        out.close("routeSet");
        out.string_set("propagatingVgwSet", &[]);
        out.close("item");
    }
    out.close("routeTableSet");
    out.next_token(next.as_deref());
    Ok(())
}

fn write_association(out: &mut Xml, table: &RouteTable, subnet_id: Option<&String>) {
    out.open("item");
    let association_key = subnet_id.map_or(table.route_table_id.as_str(), String::as_str);
    out.leaf(
        "routeTableAssociationId",
        &derived_id("rtbassoc", association_key),
    );
    out.leaf("routeTableId", &table.route_table_id);
    if let Some(subnet_id) = subnet_id {
        out.leaf("subnetId", subnet_id);
    }
    out.flag("main", subnet_id.is_none());
    out.open("associationState");
    out.leaf("state", "associated");
    out.close("associationState");
    out.close("item");
}

/// An endpoint service that DescribeVpcEndpointServices lists.
struct EndpointService {
    name: String,
    service_type: String,
    zones: Vec<String>,
}

fn endpoint_services(inner: &Inner, scope: &Scope) -> Vec<EndpointService> {
    let topology = region(inner, scope);
    let zones = |supported_only: bool| -> Vec<String> {
        topology
            .map(|t| {
                t.availability_zones
                    .iter()
                    .filter(|z| z.workforce_supported || !supported_only)
                    .map(|z| z.zone_name.clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut services = vec![EndpointService {
        name: workforce_endpoint_service(topology, &scope.region),
        service_type: "Interface".to_owned(),
        zones: zones(true),
    }];
    let mut fixed: Vec<(String, String)> = vec![(
        format!("com.amazonaws.{}.s3", scope.region),
        "Gateway".to_owned(),
    )];
    if let Some(topology) = topology {
        for endpoint in &topology.vpc_endpoints {
            fixed.push((
                endpoint.service_name.clone(),
                endpoint.vpc_endpoint_type.clone(),
            ));
        }
    }
    for (name, service_type) in fixed {
        if !services.iter().any(|s| s.name == name) {
            services.push(EndpointService {
                name,
                service_type,
                zones: zones(false),
            });
        }
    }
    services.sort_by(|a, b| a.name.cmp(&b.name));
    services
}

pub fn vpc_endpoint_services(
    inner: &Inner,
    scope: &Scope,
    params: &Params,
    out: &mut Xml,
) -> Result<(), ApiError> {
    let all = endpoint_services(inner, scope);
    let filters = params.filters();
    check_filters(&filters, &["service-name", "service-type"])?;
    let selected = select_by_id(
        &all,
        &params.list("ServiceName"),
        |s| &s.name,
        |name| {
            ApiError::client(
                "InvalidServiceName",
                format!("The Vpc Endpoint Service '{name}' does not exist"),
            )
        },
    )?;
    let matching: Vec<&EndpointService> = selected
        .into_iter()
        .filter(|service| {
            passes(*service, &filters, |s, name| match name {
                "service-name" => vec![s.name.clone()],
                _ => vec![s.service_type.clone()],
            })
        })
        .collect();
    let (page, next) = params.page(matching, ENDPOINT_MAX_RESULTS.0, ENDPOINT_MAX_RESULTS.1)?;

    let names: Vec<String> = page.iter().map(|s| s.name.clone()).collect();
    out.string_set("serviceNameSet", &names);
    out.open("serviceDetailSet");
    for service in page {
        out.open("item");
        out.leaf("serviceName", &service.name);
        out.leaf("serviceId", &derived_id("vpce-svc", &service.name));
        out.open("serviceType");
        out.open("item");
        out.leaf("serviceType", &service.service_type);
        out.close("item");
        out.close("serviceType");
        out.leaf("serviceRegion", &scope.region);
        out.string_set("availabilityZoneSet", &service.zones);
        out.leaf("owner", "amazon");
        let service_prefix = format!("com.amazonaws.{}.", scope.region);
        let suffix = service
            .name
            .strip_prefix(&service_prefix)
            .unwrap_or(&service.name);
        let base = format!("{suffix}.{}.vpce.amazonaws.com", scope.region);
        out.string_set("baseEndpointDnsNameSet", &[base]);
        out.flag("vpcEndpointPolicySupported", true);
        out.flag("acceptanceRequired", false);
        out.flag("managesVpcEndpoints", false);
        out.string_set("supportedIpAddressTypeSet", &["ipv4".to_owned()]);
        out.close("item");
    }
    out.close("serviceDetailSet");
    out.next_token(next.as_deref());
    Ok(())
}

/// Derives a stable id with `prefix` from another id or name, so repeated calls agree.
fn derived_id(prefix: &str, source: &str) -> String {
    // FNV-1a: a fixed, dependency-free hash, so the ids stay the same across runs.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in source.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{prefix}-0{hash:016x}")
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
