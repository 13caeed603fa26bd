//! Workforce and work team records and the workforce lifecycle. Transitions end lazily: each
//! request first settles its account and region, comparing the transition's end time with now.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::state::{DnsEntry, RegionState, VpcEndpoint};
use crate::topology::RegionTopology;

/// Workforce status, as the model's `WorkforceStatus` enum spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Initializing,
    Updating,
    Deleting,
    Failed,
    Active,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Initializing => "Initializing",
            Status::Updating => "Updating",
            Status::Deleting => "Deleting",
            Status::Failed => "Failed",
            Status::Active => "Active",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CognitoConfig {
    pub user_pool: String,
    pub client_id: String,
}

/// OIDC settings. The client secret is stored but never returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OidcConfig {
    pub client_id: String,
    pub client_secret: String,
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub user_info_endpoint: String,
    pub logout_endpoint: String,
    pub jwks_uri: String,
    pub scope: Option<String>,
    pub authentication_request_extra_params: Option<BTreeMap<String, String>>,
}

/// The VPC config of a workforce and the interface endpoint created for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkforceVpc {
    pub vpc_id: String,
    pub security_group_ids: Vec<String>,
    pub subnets: Vec<String>,
    pub endpoint_id: String,
    /// Whether the endpoint is available, which is when Describe shows `VpcEndpointId`.
    pub endpoint_ready: bool,
}

impl WorkforceVpc {
    /// Returns whether this config has the same VPC, security groups and subnets as a request.
    pub fn same_network(&self, vpc_id: &str, groups: &[String], subnets: &[String]) -> bool {
        self.vpc_id == vpc_id && self.security_group_ids == groups && self.subnets == subnets
    }
}

#[derive(Clone, Debug)]
pub struct Workforce {
    pub name: String,
    pub arn: String,
    pub sub_domain: String,
    pub create_date: DateTime<Utc>,
    pub last_updated_date: DateTime<Utc>,
    pub status: Status,
    pub failure_reason: Option<String>,
    pub cidrs: Vec<String>,
    pub cognito: Option<CognitoConfig>,
    pub oidc: Option<OidcConfig>,
    pub ip_address_type: String,
    pub vpc: Option<WorkforceVpc>,
    /// End of the current transition; `None` when the status is `Active` or `Failed`.
    pub transition_ends_at: Option<DateTime<Utc>>,
}

impl Workforce {
    /// Enters a transitional status that lasts `delay`.
    pub fn begin(&mut self, status: Status, now: DateTime<Utc>, delay: Duration) {
        let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        self.status = status;
        self.failure_reason = None;
        self.last_updated_date = now;
        self.transition_ends_at = Some(now.checked_add_signed(delay).unwrap_or(now));
    }
}

/// A private work team.
#[derive(Clone, Debug)]
pub struct Workteam {
    pub name: String,
    pub arn: String,
    pub workforce_name: String,
    pub workforce_arn: String,
    pub description: String,
    /// `MemberDefinitions` as the caller sent it, already validated.
    pub member_definitions: serde_json::Value,
    pub notification_configuration: Option<serde_json::Value>,
    pub worker_access_configuration: Option<serde_json::Value>,
    pub sub_domain: String,
    pub create_date: DateTime<Utc>,
    pub last_updated_date: DateTime<Utc>,
}

/// Returns `len` random lowercase letters and digits.
pub fn random_lowercase_alphanumeric(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]))
        .collect()
}

/// Returns an EC2-style resource id: the prefix, a dash and 17 lowercase hex digits.
pub fn random_resource_id(prefix: &str) -> String {
    let digits: String = (0..17)
        .map(|_| char::from_digit(fastrand::u32(..16), 16).unwrap_or('0'))
        .collect();
    format!("{prefix}-{digits}")
}

/// Hosted zone id written into the DNS entries of created endpoints. Real ids differ per
/// region; this constant only has the right shape.
const ENDPOINT_HOSTED_ZONE_ID: &str = "Z7SANDBOXVPCE0";

/// Builds a `pending` interface endpoint for a workforce VPC config.
#[expect(
    clippy::too_many_arguments,
    reason = "each argument is a distinct endpoint field"
)]
pub fn new_workforce_endpoint(
    workforce_name: &str,
    account: &str,
    region: &str,
    service_name: &str,
    vpc_id: &str,
    subnets: &[String],
    security_group_ids: &[String],
    topology: Option<&RegionTopology>,
    ip_address_type: &str,
    now: DateTime<Utc>,
) -> VpcEndpoint {
    let id = random_resource_id("vpce");
    let label = random_lowercase_alphanumeric(8);
    let service_suffix = service_name
        .strip_prefix(&format!("com.amazonaws.{region}."))
        .unwrap_or(service_name);
    let mut dns_entries = vec![DnsEntry {
        dns_name: format!("{id}-{label}.{service_suffix}.{region}.vpce.amazonaws.com"),
        hosted_zone_id: ENDPOINT_HOSTED_ZONE_ID.to_owned(),
    }];
    for subnet in subnets {
        let zone = topology
            .and_then(|t| t.subnet(subnet))
            .map(|s| s.availability_zone.clone());
        if let Some(zone) = zone {
            dns_entries.push(DnsEntry {
                dns_name: format!(
                    "{id}-{label}-{zone}.{service_suffix}.{region}.vpce.amazonaws.com"
                ),
                hosted_zone_id: ENDPOINT_HOSTED_ZONE_ID.to_owned(),
            });
        }
    }
    VpcEndpoint {
        id,
        endpoint_type: "Interface".to_owned(),
        vpc_id: vpc_id.to_owned(),
        service_name: service_name.to_owned(),
        state: "pending".to_owned(),
        route_table_ids: Vec::new(),
        subnet_ids: subnets.to_vec(),
        security_group_ids: security_group_ids.to_vec(),
        // NOTE: whether Ground Truth enables private DNS on its endpoints is not documented.
        private_dns_enabled: false,
        requester_managed: true,
        network_interface_ids: subnets.iter().map(|_| random_resource_id("eni")).collect(),
        dns_entries,
        creation_timestamp: now,
        owner_id: account.to_owned(),
        ip_address_type: ip_address_type.to_owned(),
        workforce_name: Some(workforce_name.to_owned()),
    }
}

/// Returns why a workforce VPC config cannot become active: a subnet in a zone the topology
/// marks as unsupported. AWS publishes no list of supported zones, so the topology decides.
pub fn unsupported_zone_reason(
    vpc: &WorkforceVpc,
    topology: Option<&RegionTopology>,
) -> Option<String> {
    let topology = topology?;
    vpc.subnets.iter().find_map(|subnet_id| {
        let subnet = topology.subnet(subnet_id)?;
        let zone = topology.zone(&subnet.availability_zone)?;
        (!zone.workforce_supported).then(|| {
            format!(
                "Subnet {subnet_id} is in availability zone {} ({}), which SageMaker Ground \
                 Truth does not support for workforce VPC endpoints.",
                zone.zone_name, zone.zone_id
            )
        })
    })
}

impl RegionState {
    /// Ends the workforce's transition if its time is up and it is not stuck.
    pub fn settle(&mut self, topology: Option<&RegionTopology>, now: DateTime<Utc>) {
        let Some(workforce) = self.workforce.as_mut() else {
            return;
        };
        let Some(ends_at) = workforce.transition_ends_at else {
            return;
        };
        if now < ends_at || self.stuck.contains(&workforce.name) {
            return;
        }
        workforce.transition_ends_at = None;
        workforce.last_updated_date = ends_at;
        let forced = self.forced_failures.remove(&workforce.name);

        if workforce.status == Status::Deleting && forced.is_none() {
            let name = workforce.name.clone();
            self.endpoints
                .retain(|_, e| e.workforce_name.as_deref() != Some(name.as_str()));
            self.workforce = None;
            return;
        }

        // Endpoints replaced or removed by this transition are gone once it ends.
        let current = workforce.vpc.as_ref().map(|v| v.endpoint_id.clone());
        self.endpoints
            .retain(|id, e| e.state != "deleting" || current.as_ref() == Some(id));

        let reason = match (forced, workforce.status) {
            (Some(reason), _) => Some(reason),
            (None, Status::Initializing | Status::Updating) => workforce
                .vpc
                .as_ref()
                .and_then(|vpc| unsupported_zone_reason(vpc, topology)),
            (None, _) => None,
        };
        let (status, endpoint_state) = match &reason {
            Some(_) => (Status::Failed, "failed"),
            None => (Status::Active, "available"),
        };
        workforce.status = status;
        workforce.failure_reason = reason;
        if let Some(vpc) = workforce.vpc.as_mut() {
            vpc.endpoint_ready = status == Status::Active;
            if let Some(endpoint) = self.endpoints.get_mut(&vpc.endpoint_id) {
                endpoint.state = endpoint_state.to_owned();
            }
        }
    }
}
