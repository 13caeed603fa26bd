//! VPC prerequisite checks: what must hold in EC2 before Ground Truth can create the worker
//! portal's interface endpoints in a VPC.
//!
//! The checks read EC2 through the AWS adapter and return findings. An `error` finding means
//! that SageMaker would reject the configuration or the workforce would end `Failed`, so the
//! service rejects the change before anything is stored or sent. Warnings and info findings
//! are stored with the accepted operation.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::aws::{Aws, AwsError, PortalZones, VpcInventory};
use crate::domain::{Region, VpcConfig};

/// Seriousness of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The change cannot work; it is rejected.
    Error,
    /// The change can work, but workers may have trouble.
    Warning,
    /// A limit to know about.
    Info,
}

/// One result of the VPC prerequisite checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "code": "subnet_in_other_vpc",
    "severity": "error",
    "resource_id": "subnet-0b10000000000001b",
    "message": "subnet subnet-0b10000000000001b belongs to vpc-0b10000000000000b, not to vpc-0a10000000000000a",
    "remedy": "use subnets of vpc-0a10000000000000a"
}))]
pub struct Finding {
    /// Stable identifier of the check, such as `subnet_not_found`.
    pub code: String,
    pub severity: Severity,
    /// The VPC, subnet or security group the finding is about.
    pub resource_id: String,
    /// Description of what the check found.
    pub message: String,
    /// Change that makes the finding go away.
    pub remedy: String,
}

impl Finding {
    /// Builds a warning that EC2 could not be read when the change was accepted, so the checks run
    /// only in the worker, just before SageMaker is called.
    pub fn checks_deferred(vpc_id: &str, error: &crate::aws::AwsError) -> Self {
        Self::new(
            "vpc_checks_deferred",
            Severity::Warning,
            vpc_id,
            format!(
                "EC2 could not be read when the change was accepted ({}); the checks run before the change is sent to SageMaker",
                error.code()
            ),
            "follow the operation: it fails with the findings if a check finds an error".to_owned(),
        )
    }

    fn new(
        code: &str,
        severity: Severity,
        resource_id: &str,
        message: String,
        remedy: String,
    ) -> Self {
        Self {
            code: code.to_owned(),
            severity,
            resource_id: resource_id.to_owned(),
            message,
            remedy,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Returns true when no finding is an error.
pub fn passed(findings: &[Finding]) -> bool {
    !findings.iter().any(Finding::is_error)
}

/// Summarizes the error findings in one sentence, for an operation's failure message.
pub fn summarize_errors(findings: &[Finding]) -> String {
    let errors: Vec<&str> = findings
        .iter()
        .filter(|f| f.is_error())
        .map(|f| f.message.as_str())
        .collect();
    let noun = if errors.len() == 1 { "check" } else { "checks" };
    format!(
        "{} VPC prerequisite {noun} failed: {}",
        errors.len(),
        errors.join("; ")
    )
}

/// Reads EC2 and checks `config` in `region`. Fails only when EC2 cannot be read.
pub async fn run(aws: &Aws, region: &Region, config: &VpcConfig) -> Result<Vec<Finding>, AwsError> {
    let inventory = aws.vpc_inventory(region, config).await?;
    Ok(evaluate(region, config, &inventory))
}

/// Checks `config` against what EC2 reported, in a fixed order: VPC, subnets, security
/// groups, zones, Amazon S3 access, then the limits of VPC access.
pub fn evaluate(region: &Region, config: &VpcConfig, inventory: &VpcInventory) -> Vec<Finding> {
    let mut findings = Vec::new();
    let vpc_id = config.vpc_id.as_str();

    check_vpc(vpc_id, inventory, &mut findings);
    check_subnets(vpc_id, config, inventory, &mut findings);
    check_security_groups(vpc_id, config, inventory, &mut findings);
    check_zones(region, inventory, &mut findings);
    if inventory.vpc.is_some() {
        check_s3_access(region, vpc_id, inventory, &mut findings);
    }

    findings.push(Finding::new(
        "vpc_task_types_limited",
        Severity::Info,
        vpc_id,
        "workers who reach the portal through the VPC cannot load 3D point cloud or video frame labeling tasks".to_owned(),
        "send those task types to a workforce without a VPC configuration, or let those workers use the public portal".to_owned(),
    ));
    findings
}

fn check_vpc(vpc_id: &str, inventory: &VpcInventory, findings: &mut Vec<Finding>) {
    let Some(vpc) = &inventory.vpc else {
        findings.push(Finding::new(
            "vpc_not_found",
            Severity::Error,
            vpc_id,
            format!("VPC {vpc_id} does not exist in this account and region"),
            "check the VPC id and the region, or create the VPC first".to_owned(),
        ));
        return;
    };
    if !vpc.state.eq_ignore_ascii_case("available") {
        findings.push(Finding::new(
            "vpc_not_available",
            Severity::Error,
            vpc_id,
            format!("VPC {vpc_id} is {}, not available", vpc.state),
            "wait until the VPC is available, then send the request again".to_owned(),
        ));
    }
    if !vpc.dns_support {
        findings.push(Finding::new(
            "vpc_dns_support_disabled",
            Severity::Error,
            vpc_id,
            format!("VPC {vpc_id} has DNS resolution (enableDnsSupport) turned off, so the portal's endpoint names cannot resolve"),
            format!("turn it on with: aws ec2 modify-vpc-attribute --vpc-id {vpc_id} --enable-dns-support"),
        ));
    }
    if !vpc.dns_hostnames {
        findings.push(Finding::new(
            "vpc_dns_hostnames_disabled",
            Severity::Error,
            vpc_id,
            format!("VPC {vpc_id} has DNS hostnames (enableDnsHostnames) turned off, which interface endpoints need"),
            format!("turn them on with: aws ec2 modify-vpc-attribute --vpc-id {vpc_id} --enable-dns-hostnames"),
        ));
    }
}

fn check_subnets(
    vpc_id: &str,
    config: &VpcConfig,
    inventory: &VpcInventory,
    findings: &mut Vec<Finding>,
) {
    for subnet_id in config.subnets.iter().map(|s| s.as_str()) {
        let Some(subnet) = inventory.subnets.iter().find(|s| s.subnet_id == subnet_id) else {
            findings.push(Finding::new(
                "subnet_not_found",
                Severity::Error,
                subnet_id,
                format!("subnet {subnet_id} does not exist in this account and region"),
                "check the subnet id, or remove it from the configuration".to_owned(),
            ));
            continue;
        };
        if subnet.vpc_id != vpc_id {
            findings.push(Finding::new(
                "subnet_in_other_vpc",
                Severity::Error,
                subnet_id,
                format!(
                    "subnet {subnet_id} belongs to {}, not to {vpc_id}",
                    subnet.vpc_id
                ),
                format!("use subnets of {vpc_id}"),
            ));
        }
        if !subnet.state.eq_ignore_ascii_case("available") {
            findings.push(Finding::new(
                "subnet_not_available",
                Severity::Error,
                subnet_id,
                format!("subnet {subnet_id} is {}, not available", subnet.state),
                "wait until the subnet is available, or use another subnet".to_owned(),
            ));
        }
    }
}

fn check_security_groups(
    vpc_id: &str,
    config: &VpcConfig,
    inventory: &VpcInventory,
    findings: &mut Vec<Finding>,
) {
    for group_id in config.security_group_ids.iter().map(|g| g.as_str()) {
        let Some(group) = inventory
            .security_groups
            .iter()
            .find(|g| g.group_id == group_id)
        else {
            findings.push(Finding::new(
                "security_group_not_found",
                Severity::Error,
                group_id,
                format!("security group {group_id} does not exist in this account and region"),
                "check the security group id, or remove it from the configuration".to_owned(),
            ));
            continue;
        };
        if group.vpc_id != vpc_id {
            findings.push(Finding::new(
                "security_group_in_other_vpc",
                Severity::Error,
                group_id,
                format!(
                    "security group {group_id} belongs to {}, not to {vpc_id}",
                    group.vpc_id
                ),
                format!("use security groups of {vpc_id}"),
            ));
        }
    }
}

fn check_zones(region: &Region, inventory: &VpcInventory, findings: &mut Vec<Finding>) {
    // An interface endpoint takes at most one subnet per availability zone.
    let zone_key = |subnet: &crate::aws::SubnetDetails| -> String {
        if subnet.availability_zone_id.is_empty() {
            subnet.availability_zone.clone()
        } else {
            subnet.availability_zone_id.clone()
        }
    };
    let mut by_zone: HashMap<String, Vec<&str>> = HashMap::new();
    for subnet in &inventory.subnets {
        by_zone
            .entry(zone_key(subnet))
            .or_default()
            .push(subnet.subnet_id.as_str());
    }
    for subnet in &inventory.subnets {
        let same_zone = &by_zone[&zone_key(subnet)];
        if same_zone.len() > 1 && same_zone[0] != subnet.subnet_id {
            findings.push(Finding::new(
                "duplicate_availability_zone",
                Severity::Error,
                &subnet.subnet_id,
                format!(
                    "subnet {} is in {} ({}), like subnet {}; an interface endpoint takes one subnet per availability zone",
                    subnet.subnet_id, subnet.availability_zone, subnet.availability_zone_id, same_zone[0]
                ),
                "keep one subnet per availability zone".to_owned(),
            ));
        }
    }

    let supported = |subnet: &crate::aws::SubnetDetails| match &inventory.portal_zones {
        PortalZones::Unrestricted | PortalZones::ServiceNotFound(_) => true,
        PortalZones::Names(names) => names.contains(&subnet.availability_zone),
        PortalZones::Ids(ids) => ids.contains(&subnet.availability_zone_id),
    };
    for subnet in inventory.subnets.iter().filter(|s| !supported(s)) {
        findings.push(Finding::new(
            "availability_zone_unsupported",
            Severity::Error,
            &subnet.subnet_id,
            format!(
                "subnet {} is in {} ({}), where the Ground Truth worker portal is not offered in {region}",
                subnet.subnet_id, subnet.availability_zone, subnet.availability_zone_id
            ),
            "use subnets in other availability zones of the VPC".to_owned(),
        ));
    }
    if let PortalZones::ServiceNotFound(service_name) = &inventory.portal_zones {
        findings.push(Finding::new(
            "portal_endpoint_service_not_found",
            Severity::Warning,
            service_name,
            format!("the endpoint service {service_name} does not exist in {region}, so the availability zones were not checked"),
            "set the worker portal's endpoint service name of this service to the one AWS lists for the region".to_owned(),
        ));
    }
}

/// Workers' browsers fetch task data from Amazon S3; without a route to S3 from the VPC, they
/// need another path (a NAT or internet gateway, which endpoint data cannot show).
fn check_s3_access(
    region: &Region,
    vpc_id: &str,
    inventory: &VpcInventory,
    findings: &mut Vec<Finding>,
) {
    let endpoints: Vec<_> = inventory
        .s3_endpoints
        .iter()
        .filter(|e| e.is_in_state("available"))
        .collect();
    if endpoints.is_empty() {
        findings.push(Finding::new(
            "s3_endpoint_missing",
            Severity::Warning,
            vpc_id,
            format!("VPC {vpc_id} has no available endpoint for com.amazonaws.{region}.s3, so workers may not reach task data in Amazon S3"),
            format!("create a gateway endpoint: aws ec2 create-vpc-endpoint --vpc-id {vpc_id} --service-name com.amazonaws.{region}.s3 --route-table-ids <route table ids>"),
        ));
        return;
    }
    // An interface endpoint serves the whole VPC; a gateway endpoint only its route tables.
    if endpoints
        .iter()
        .any(|e| e.endpoint_type.eq_ignore_ascii_case("Interface"))
    {
        return;
    }
    for subnet in inventory.subnets.iter().filter(|s| s.vpc_id == vpc_id) {
        let Some(table_id) = inventory.subnet_route_tables.get(&subnet.subnet_id) else {
            continue;
        };
        if !endpoints
            .iter()
            .any(|e| e.route_table_ids.contains(table_id))
        {
            findings.push(Finding::new(
                "s3_endpoint_not_routed",
                Severity::Warning,
                &subnet.subnet_id,
                format!(
                    "route table {table_id} of subnet {} has no route to the S3 gateway endpoint",
                    subnet.subnet_id
                ),
                format!("add {table_id} to the route tables of the S3 gateway endpoint"),
            ));
        }
    }
}

/// Parses a zone-id table such as `us-east-1=use1-az1,use1-az2;us-west-2=usw2-az1`.
pub fn parse_zone_ids(text: &str) -> Result<HashMap<String, Vec<String>>, String> {
    let mut table = HashMap::new();
    for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((region, ids)) = entry.split_once('=') else {
            return Err(format!(
                "'{entry}' is not of the form <region>=<zone id>,<zone id>"
            ));
        };
        let region = Region::parse("region", region.trim()).map_err(|e| e.reason)?;
        let ids: Vec<String> = ids
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect();
        if ids.is_empty() {
            return Err(format!("region {region} lists no zone ids"));
        }
        if table.insert(region.as_str().to_owned(), ids).is_some() {
            return Err(format!("region {region} is listed twice"));
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::aws::{SecurityGroupDetails, SubnetDetails, VpcDetails, VpcEndpointDetails};
    use crate::domain::Violations;

    const VPC: &str = "vpc-1";

    fn region() -> Region {
        Region::parse("region", "us-east-1").unwrap()
    }

    fn config(groups: &[&str], subnets: &[&str]) -> VpcConfig {
        let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        VpcConfig::parse(
            "vpc_config",
            VPC,
            &strings(groups),
            &strings(subnets),
            &mut Violations::default(),
        )
        .unwrap()
    }

    fn subnet(id: &str, vpc: &str, zone: &str) -> SubnetDetails {
        SubnetDetails {
            subnet_id: id.to_owned(),
            vpc_id: vpc.to_owned(),
            state: "available".to_owned(),
            availability_zone: format!("us-east-1{zone}"),
            availability_zone_id: format!("use1-az-{zone}"),
        }
    }

    fn s3_gateway(route_tables: &[&str]) -> VpcEndpointDetails {
        VpcEndpointDetails {
            vpc_endpoint_id: "vpce-s3".to_owned(),
            endpoint_type: "Gateway".to_owned(),
            vpc_id: VPC.to_owned(),
            service_name: "com.amazonaws.us-east-1.s3".to_owned(),
            state: "available".to_owned(),
            subnet_ids: Vec::new(),
            security_group_ids: Vec::new(),
            route_table_ids: route_tables.iter().map(|s| s.to_string()).collect(),
            dns_names: Vec::new(),
            created_at: None,
        }
    }

    /// Builds an inventory in which every check passes for `config(&["sg-1"], &["subnet-a", "subnet-b"])`.
    fn healthy() -> VpcInventory {
        VpcInventory {
            vpc: Some(VpcDetails {
                vpc_id: VPC.to_owned(),
                state: "available".to_owned(),
                dns_support: true,
                dns_hostnames: true,
            }),
            subnets: vec![subnet("subnet-a", VPC, "a"), subnet("subnet-b", VPC, "b")],
            security_groups: vec![SecurityGroupDetails {
                group_id: "sg-1".to_owned(),
                vpc_id: VPC.to_owned(),
            }],
            subnet_route_tables: HashMap::from([
                ("subnet-a".to_owned(), "rtb-1".to_owned()),
                ("subnet-b".to_owned(), "rtb-1".to_owned()),
            ]),
            s3_endpoints: vec![s3_gateway(&["rtb-1"])],
            portal_zones: PortalZones::Unrestricted,
        }
    }

    fn codes(inventory: &VpcInventory, groups: &[&str], subnets: &[&str]) -> Vec<String> {
        evaluate(&region(), &config(groups, subnets), inventory)
            .into_iter()
            .map(|f| f.code)
            .collect()
    }

    fn healthy_codes(inventory: &VpcInventory) -> Vec<String> {
        codes(inventory, &["sg-1"], &["subnet-a", "subnet-b"])
    }

    #[test]
    fn healthy_vpc_has_only_the_task_type_note() {
        let findings = evaluate(
            &region(),
            &config(&["sg-1"], &["subnet-a", "subnet-b"]),
            &healthy(),
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].code, "vpc_task_types_limited");
        assert_eq!(findings[0].severity, Severity::Info);
        assert!(passed(&findings));
    }

    #[test]
    fn missing_vpc_is_an_error() {
        let mut inventory = healthy();
        inventory.vpc = None;
        let findings = evaluate(
            &region(),
            &config(&["sg-1"], &["subnet-a", "subnet-b"]),
            &inventory,
        );
        assert_eq!(findings[0].code, "vpc_not_found");
        assert!(!passed(&findings));
    }

    #[test]
    fn vpc_state_and_dns_attributes_are_checked() {
        let mut inventory = healthy();
        inventory.vpc = Some(VpcDetails {
            vpc_id: VPC.to_owned(),
            state: "pending".to_owned(),
            dns_support: false,
            dns_hostnames: false,
        });
        let codes = healthy_codes(&inventory);
        assert!(codes.contains(&"vpc_not_available".to_owned()), "{codes:?}");
        assert!(
            codes.contains(&"vpc_dns_support_disabled".to_owned()),
            "{codes:?}"
        );
        assert!(
            codes.contains(&"vpc_dns_hostnames_disabled".to_owned()),
            "{codes:?}"
        );
    }

    #[test]
    fn subnets_are_found_in_the_vpc_and_available() {
        let mut inventory = healthy();
        inventory.subnets[0].vpc_id = "vpc-2".to_owned();
        inventory.subnets[1].state = "pending".to_owned();
        let codes = codes(
            &inventory,
            &["sg-1"],
            &["subnet-a", "subnet-b", "subnet-gone"],
        );
        assert!(
            codes.contains(&"subnet_in_other_vpc".to_owned()),
            "{codes:?}"
        );
        assert!(
            codes.contains(&"subnet_not_available".to_owned()),
            "{codes:?}"
        );
        assert!(codes.contains(&"subnet_not_found".to_owned()), "{codes:?}");
    }

    #[test]
    fn security_groups_are_found_in_the_vpc() {
        let mut inventory = healthy();
        inventory.security_groups.push(SecurityGroupDetails {
            group_id: "sg-2".to_owned(),
            vpc_id: "vpc-2".to_owned(),
        });
        let codes = codes(
            &inventory,
            &["sg-1", "sg-2", "sg-gone"],
            &["subnet-a", "subnet-b"],
        );
        assert!(
            codes.contains(&"security_group_in_other_vpc".to_owned()),
            "{codes:?}"
        );
        assert!(
            codes.contains(&"security_group_not_found".to_owned()),
            "{codes:?}"
        );
    }

    #[test]
    fn second_subnet_in_a_zone_is_an_error() {
        let mut inventory = healthy();
        inventory.subnets[1] = subnet("subnet-b", VPC, "a");
        let findings = evaluate(
            &region(),
            &config(&["sg-1"], &["subnet-a", "subnet-b"]),
            &inventory,
        );
        let duplicate: Vec<_> = findings
            .iter()
            .filter(|f| f.code == "duplicate_availability_zone")
            .collect();
        assert_eq!(duplicate.len(), 1, "{findings:?}");
        assert_eq!(duplicate[0].resource_id, "subnet-b");
    }

    #[test]
    fn unsupported_zone_by_name_or_id() {
        let mut inventory = healthy();
        inventory.portal_zones = PortalZones::Names(vec!["us-east-1a".to_owned()]);
        let findings = evaluate(
            &region(),
            &config(&["sg-1"], &["subnet-a", "subnet-b"]),
            &inventory,
        );
        let unsupported: Vec<_> = findings
            .iter()
            .filter(|f| f.code == "availability_zone_unsupported")
            .collect();
        assert_eq!(unsupported.len(), 1, "{findings:?}");
        assert_eq!(unsupported[0].resource_id, "subnet-b");

        inventory.portal_zones = PortalZones::Ids(vec!["use1-az-b".to_owned()]);
        let findings = evaluate(
            &region(),
            &config(&["sg-1"], &["subnet-a", "subnet-b"]),
            &inventory,
        );
        let unsupported: Vec<_> = findings
            .iter()
            .filter(|f| f.code == "availability_zone_unsupported")
            .collect();
        assert_eq!(unsupported[0].resource_id, "subnet-a");
    }

    #[test]
    fn missing_s3_endpoint_is_a_warning() {
        let mut inventory = healthy();
        inventory.s3_endpoints.clear();
        let findings = evaluate(
            &region(),
            &config(&["sg-1"], &["subnet-a", "subnet-b"]),
            &inventory,
        );
        let missing = findings
            .iter()
            .find(|f| f.code == "s3_endpoint_missing")
            .expect("s3 finding");
        assert_eq!(missing.severity, Severity::Warning);
        assert!(passed(&findings));
    }

    #[test]
    fn s3_gateway_must_cover_each_subnet_route_table() {
        let mut inventory = healthy();
        inventory
            .subnet_route_tables
            .insert("subnet-b".to_owned(), "rtb-2".to_owned());
        let findings = evaluate(
            &region(),
            &config(&["sg-1"], &["subnet-a", "subnet-b"]),
            &inventory,
        );
        let unrouted: Vec<_> = findings
            .iter()
            .filter(|f| f.code == "s3_endpoint_not_routed")
            .collect();
        assert_eq!(unrouted.len(), 1, "{findings:?}");
        assert_eq!(unrouted[0].resource_id, "subnet-b");
    }

    #[test]
    fn endpoint_state_compares_without_case() {
        let mut endpoint = s3_gateway(&[]);
        endpoint.state = "Available".to_owned();
        assert!(endpoint.is_in_state("available"));
    }

    #[test]
    fn zone_id_table_parses_regions_and_ids() {
        let table = parse_zone_ids("us-east-1=use1-az1, use1-az2;us-west-2=usw2-az1;").unwrap();
        assert_eq!(table["us-east-1"], ["use1-az1", "use1-az2"]);
        assert_eq!(table["us-west-2"], ["usw2-az1"]);
        assert!(parse_zone_ids("us-east-1").is_err());
        assert!(parse_zone_ids("us-east-1=").is_err());
        assert!(parse_zone_ids("nowhere=az1").is_err());
        assert!(parse_zone_ids("us-east-1=a;us-east-1=b").is_err());
    }
}
