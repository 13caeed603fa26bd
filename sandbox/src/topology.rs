//! EC2 network topology the sandbox serves: accounts, regions, VPCs, subnets, security groups,
//! route tables and pre-existing VPC endpoints, loaded from JSON or built in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Account used when the request's access key id is not listed in [`Topology::access_keys`].
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// Every account and region the sandbox serves, with their EC2 resources.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Account for requests signed with an access key id missing from `access_keys`.
    #[serde(default = "default_account")]
    pub default_account: String,
    /// Access key id to account id.
    #[serde(default)]
    pub access_keys: BTreeMap<String, String>,
    /// Account id to its regions.
    pub accounts: BTreeMap<String, AccountTopology>,
}

/// Regions of one account.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountTopology {
    /// Region name to its resources.
    pub regions: BTreeMap<String, RegionTopology>,
}

/// EC2 resources of one account in one region.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionTopology {
    pub availability_zones: Vec<AvailabilityZone>,
    #[serde(default)]
    pub vpcs: Vec<Vpc>,
    #[serde(default)]
    pub subnets: Vec<Subnet>,
    #[serde(default)]
    pub security_groups: Vec<SecurityGroup>,
    #[serde(default)]
    pub route_tables: Vec<RouteTable>,
    /// Endpoints that exist independently of any workforce, such as S3 gateway endpoints.
    #[serde(default)]
    pub vpc_endpoints: Vec<TopologyVpcEndpoint>,
    /// Service name of the interface endpoints created for workforce VPC configs. When unset it
    /// is `com.amazonaws.<region>.sagemaker.labeling`, which is a guess: AWS does not document
    /// the Ground Truth endpoint service name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workforce_endpoint_service: Option<String>,
}

/// One availability zone and whether Ground Truth accepts workforce subnets in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityZone {
    /// Zone name, e.g. `us-east-1a`.
    pub zone_name: String,
    /// Zone id, e.g. `use1-az1`.
    pub zone_id: String,
    /// False makes a workforce with a subnet in this zone end `Failed`.
    #[serde(default = "yes")]
    pub workforce_supported: bool,
}

/// A VPC and its DNS attributes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vpc {
    pub vpc_id: String,
    pub cidr_block: String,
    #[serde(default = "available")]
    pub state: String,
    pub enable_dns_support: bool,
    pub enable_dns_hostnames: bool,
    #[serde(default)]
    pub is_default: bool,
}

/// A subnet; its zone id comes from the region's `availability_zones`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    pub subnet_id: String,
    pub vpc_id: String,
    /// Zone name, which must appear in the region's `availability_zones`.
    pub availability_zone: String,
    pub cidr_block: String,
    #[serde(default = "available")]
    pub state: String,
    #[serde(default = "default_free_addresses")]
    pub available_ip_address_count: u32,
}

/// A security group of a VPC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroup {
    pub group_id: String,
    pub group_name: String,
    pub vpc_id: String,
    pub description: String,
}

/// A route table and the subnets explicitly associated with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTable {
    pub route_table_id: String,
    pub vpc_id: String,
    #[serde(default)]
    pub main: bool,
    #[serde(default)]
    pub subnet_ids: Vec<String>,
}

/// A VPC endpoint that exists from the start, typically an S3 gateway endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyVpcEndpoint {
    pub vpc_endpoint_id: String,
    /// `Gateway` or `Interface`.
    pub vpc_endpoint_type: String,
    pub vpc_id: String,
    pub service_name: String,
    #[serde(default = "available")]
    pub state: String,
    #[serde(default)]
    pub route_table_ids: Vec<String>,
    #[serde(default)]
    pub subnet_ids: Vec<String>,
    #[serde(default)]
    pub security_group_ids: Vec<String>,
    #[serde(default)]
    pub private_dns_enabled: bool,
}

fn default_account() -> String {
    DEFAULT_ACCOUNT.to_owned()
}

fn yes() -> bool {
    true
}

fn available() -> String {
    "available".to_owned()
}

/// Free addresses of a /24 subnet: 256 minus the 5 that AWS reserves.
fn default_free_addresses() -> u32 {
    251
}

impl Topology {
    /// Builds the fixed topology documented in the crate README: account `123456789012` with
    /// two VPCs in each of `us-east-1` and `us-west-2`.
    pub fn built_in() -> Topology {
        let regions = BTreeMap::from([
            (
                "us-east-1".to_owned(),
                built_in_region("us-east-1", "use1", 'a', 'b', "abce"),
            ),
            (
                "us-west-2".to_owned(),
                built_in_region("us-west-2", "usw2", 'c', 'd', "abcd"),
            ),
        ]);
        Topology {
            default_account: DEFAULT_ACCOUNT.to_owned(),
            access_keys: BTreeMap::new(),
            accounts: BTreeMap::from([(DEFAULT_ACCOUNT.to_owned(), AccountTopology { regions })]),
        }
    }

    /// Reads a topology from a JSON file and checks its cross references.
    pub fn from_file(path: impl AsRef<Path>) -> anyhow::Result<Topology> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read topology file {}", path.display()))?;
        let topology: Topology = serde_json::from_str(&text)
            .with_context(|| format!("invalid topology JSON in {}", path.display()))?;
        topology
            .check()
            .with_context(|| format!("inconsistent topology in {}", path.display()))?;
        Ok(topology)
    }

    /// Checks that every subnet, security group, route table and endpoint refers to a VPC,
    /// subnet, route table or zone of its own region.
    pub fn check(&self) -> anyhow::Result<()> {
        for (account, account_topology) in &self.accounts {
            for (region, topology) in &account_topology.regions {
                topology
                    .check()
                    .with_context(|| format!("account {account}, region {region}"))?;
            }
        }
        Ok(())
    }

    /// Returns the account that owns an access key id.
    pub fn account_for_access_key(&self, access_key_id: &str) -> &str {
        self.access_keys
            .get(access_key_id)
            .unwrap_or(&self.default_account)
    }

    /// Returns the resources of one account and region, if the topology has any.
    pub fn region(&self, account: &str, region: &str) -> Option<&RegionTopology> {
        self.accounts.get(account)?.regions.get(region)
    }
}

impl RegionTopology {
    fn check(&self) -> anyhow::Result<()> {
        let vpcs: BTreeSet<&str> = self.vpcs.iter().map(|v| v.vpc_id.as_str()).collect();
        let zones: BTreeSet<&str> = self
            .availability_zones
            .iter()
            .map(|z| z.zone_name.as_str())
            .collect();
        let subnets: BTreeSet<&str> = self.subnets.iter().map(|s| s.subnet_id.as_str()).collect();
        let route_tables: BTreeSet<&str> = self
            .route_tables
            .iter()
            .map(|r| r.route_table_id.as_str())
            .collect();
        let require_vpc = |owner: &str, vpc_id: &str| -> anyhow::Result<()> {
            if !vpcs.contains(vpc_id) {
                bail!("{owner} refers to unknown VPC {vpc_id}");
            }
            Ok(())
        };
        for subnet in &self.subnets {
            require_vpc(&subnet.subnet_id, &subnet.vpc_id)?;
            if !zones.contains(subnet.availability_zone.as_str()) {
                bail!(
                    "subnet {} is in zone {}, which is missing from availability_zones",
                    subnet.subnet_id,
                    subnet.availability_zone
                );
            }
        }
        for group in &self.security_groups {
            require_vpc(&group.group_id, &group.vpc_id)?;
        }
        for table in &self.route_tables {
            require_vpc(&table.route_table_id, &table.vpc_id)?;
            if let Some(missing) = table
                .subnet_ids
                .iter()
                .find(|s| !subnets.contains(s.as_str()))
            {
                bail!(
                    "route table {} refers to unknown subnet {missing}",
                    table.route_table_id
                );
            }
        }
        for endpoint in &self.vpc_endpoints {
            require_vpc(&endpoint.vpc_endpoint_id, &endpoint.vpc_id)?;
            if let Some(missing) = endpoint
                .route_table_ids
                .iter()
                .find(|r| !route_tables.contains(r.as_str()))
            {
                bail!(
                    "endpoint {} refers to unknown route table {missing}",
                    endpoint.vpc_endpoint_id
                );
            }
        }
        Ok(())
    }

    /// Returns the zone with this name.
    pub fn zone(&self, zone_name: &str) -> Option<&AvailabilityZone> {
        self.availability_zones
            .iter()
            .find(|z| z.zone_name == zone_name)
    }

    pub fn vpc(&self, vpc_id: &str) -> Option<&Vpc> {
        self.vpcs.iter().find(|v| v.vpc_id == vpc_id)
    }

    pub fn subnet(&self, subnet_id: &str) -> Option<&Subnet> {
        self.subnets.iter().find(|s| s.subnet_id == subnet_id)
    }

    pub fn security_group(&self, group_id: &str) -> Option<&SecurityGroup> {
        self.security_groups.iter().find(|g| g.group_id == group_id)
    }
}

/// Returns the endpoint service name for workforce interface endpoints in a region.
pub fn workforce_endpoint_service(topology: Option<&RegionTopology>, region: &str) -> String {
    topology
        .and_then(|t| t.workforce_endpoint_service.clone())
        .unwrap_or_else(|| format!("com.amazonaws.{region}.sagemaker.labeling"))
}

/// Builds one built-in region. `main` and `second` are the hex digits that mark the ids of the
/// first and second VPC, and `zone_letters` are the four zone suffixes in zone-id order
/// `az1`..`az4`. The fourth zone is marked unsupported for workforces.
fn built_in_region(
    region: &str,
    zone_prefix: &str,
    main: char,
    second: char,
    zone_letters: &str,
) -> RegionTopology {
    let zone_ids = ["az1", "az2", "az4", "az3"];
    let zone_ids = if region == "us-east-1" {
        zone_ids
    } else {
        ["az1", "az2", "az3", "az4"]
    };
    let availability_zones: Vec<AvailabilityZone> = zone_letters
        .chars()
        .zip(zone_ids)
        .enumerate()
        .map(|(index, (letter, zone_id))| AvailabilityZone {
            zone_name: format!("{region}{letter}"),
            zone_id: format!("{zone_prefix}-{zone_id}"),
            workforce_supported: index < 3,
        })
        .collect();

    // Every id suffix is 17 characters: `0`, the VPC digit, `1`, zeros, then a short tail.
    let vpc_id = |digit: char| format!("vpc-0{digit}1{}{digit}", "0".repeat(13));
    let numbered = |prefix: &str, digit: char, n: u32| {
        format!("{prefix}-0{digit}1{}{n}{digit}", "0".repeat(12))
    };
    let main_vpc = vpc_id(main);
    let second_vpc = vpc_id(second);
    let main_subnets: Vec<String> = (1..=4).map(|n| numbered("subnet", main, n)).collect();
    let second_subnet = numbered("subnet", second, 1);
    let route_table = numbered("rtb", main, 1);

    let mut subnets: Vec<Subnet> = main_subnets
        .iter()
        .zip(&availability_zones)
        .enumerate()
        .map(|(index, (subnet_id, zone))| Subnet {
            subnet_id: subnet_id.clone(),
            vpc_id: main_vpc.clone(),
            availability_zone: zone.zone_name.clone(),
            cidr_block: format!("10.0.{}.0/24", index + 1),
            state: available(),
            available_ip_address_count: default_free_addresses(),
        })
        .collect();
    subnets.push(Subnet {
        subnet_id: second_subnet,
        vpc_id: second_vpc.clone(),
        availability_zone: availability_zones[0].zone_name.clone(),
        cidr_block: "10.1.1.0/24".to_owned(),
        state: available(),
        available_ip_address_count: default_free_addresses(),
    });

    RegionTopology {
        vpcs: vec![
            Vpc {
                vpc_id: main_vpc.clone(),
                cidr_block: "10.0.0.0/16".to_owned(),
                state: available(),
                enable_dns_support: true,
                enable_dns_hostnames: true,
                is_default: false,
            },
            Vpc {
                vpc_id: second_vpc.clone(),
                cidr_block: "10.1.0.0/16".to_owned(),
                state: available(),
                enable_dns_support: true,
                enable_dns_hostnames: false,
                is_default: false,
            },
        ],
        subnets,
        security_groups: vec![
            SecurityGroup {
                group_id: numbered("sg", main, 1),
                group_name: "workforce-portal".to_owned(),
                vpc_id: main_vpc.clone(),
                description: "Workforce portal access".to_owned(),
            },
            SecurityGroup {
                group_id: numbered("sg", main, 2),
                group_name: "default".to_owned(),
                vpc_id: main_vpc.clone(),
                description: "default VPC security group".to_owned(),
            },
            SecurityGroup {
                group_id: numbered("sg", second, 1),
                group_name: "default".to_owned(),
                vpc_id: second_vpc,
                description: "default VPC security group".to_owned(),
            },
        ],
        route_tables: vec![RouteTable {
            route_table_id: route_table.clone(),
            vpc_id: main_vpc.clone(),
            main: false,
            subnet_ids: main_subnets,
        }],
        vpc_endpoints: vec![TopologyVpcEndpoint {
            vpc_endpoint_id: format!("vpce-0{main}1{}s3", "0".repeat(12)),
            vpc_endpoint_type: "Gateway".to_owned(),
            vpc_id: main_vpc,
            service_name: format!("com.amazonaws.{region}.s3"),
            state: available(),
            route_table_ids: vec![route_table],
            subnet_ids: Vec::new(),
            security_group_ids: Vec::new(),
            private_dns_enabled: false,
        }],
        availability_zones,
        workforce_endpoint_service: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_ids_match_documentation() {
        let topology = Topology::built_in();
        let east = topology.region(DEFAULT_ACCOUNT, "us-east-1").unwrap();
        assert!(east.vpc("vpc-0a10000000000000a").is_some());
        assert!(east.vpc("vpc-0b10000000000000b").is_some());
        assert!(east.subnet("subnet-0a10000000000001a").is_some());
        assert!(east.subnet("subnet-0a10000000000004a").is_some());
        assert!(east.subnet("subnet-0b10000000000001b").is_some());
        assert!(east.security_group("sg-0a10000000000002a").is_some());
        assert!(east.security_group("sg-0b10000000000001b").is_some());
        assert_eq!(east.route_tables[0].route_table_id, "rtb-0a10000000000001a");
        assert_eq!(
            east.vpc_endpoints[0].vpc_endpoint_id,
            "vpce-0a1000000000000s3"
        );

        let unsupported = east.zone("us-east-1e").unwrap();
        assert_eq!(unsupported.zone_id, "use1-az3");
        assert!(!unsupported.workforce_supported);
        assert_eq!(east.zone("us-east-1c").unwrap().zone_id, "use1-az4");

        let west = topology.region(DEFAULT_ACCOUNT, "us-west-2").unwrap();
        assert!(west.vpc("vpc-0c10000000000000c").is_some());
        assert!(west.vpc("vpc-0d10000000000000d").is_some());
        assert_eq!(
            west.subnet("subnet-0c10000000000001c")
                .unwrap()
                .availability_zone,
            "us-west-2a"
        );
        let fourth = west.zone("us-west-2d").unwrap();
        assert_eq!(fourth.zone_id, "usw2-az4");
        assert!(!fourth.workforce_supported);
        assert!(west.vpc("vpc-0d10000000000000d").is_some());
        assert!(
            !west
                .vpc("vpc-0d10000000000000d")
                .unwrap()
                .enable_dns_hostnames
        );
    }

    #[test]
    fn built_in_passes_check() {
        Topology::built_in().check().unwrap();
    }

    #[test]
    fn example_file_equals_built_in() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/topology.example.json");
        assert_eq!(Topology::from_file(path).unwrap(), Topology::built_in());
    }

    #[test]
    fn check_rejects_subnet_in_unknown_vpc() {
        let mut topology = Topology::built_in();
        let region = topology
            .accounts
            .get_mut(DEFAULT_ACCOUNT)
            .unwrap()
            .regions
            .get_mut("us-east-1")
            .unwrap();
        region.subnets[0].vpc_id = "vpc-missing".to_owned();
        assert!(topology.check().is_err());
    }
}
