//! Shared mutable state: topology, delays, faults, call counts and the per account and region
//! resources (workforce, work teams, workforce VPC endpoints).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::Delays;
use crate::faults::Faults;
use crate::lifecycle::{Workforce, Workteam};
use crate::topology::{Topology, TopologyVpcEndpoint};

/// State shared by every connection. The mutex is never held across an `.await`.
pub struct Shared {
    inner: Mutex<Inner>,
    /// Wakes the server task to shut down gracefully.
    pub shutdown: Notify,
}

impl Shared {
    pub fn new(topology: Topology, delays: Delays) -> Shared {
        Shared {
            inner: Mutex::new(Inner {
                topology,
                delays,
                faults: Faults::default(),
                calls: BTreeMap::new(),
                outcomes: BTreeMap::new(),
                regions: HashMap::new(),
            }),
            shutdown: Notify::new(),
        }
    }

    /// Locks the state. A panic while the lock was held leaves plain data behind, so a
    /// poisoned lock is still used.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// An account and region, the scope of every AWS resource here.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    pub account: String,
    pub region: String,
}

/// Everything behind the lock.
pub struct Inner {
    pub topology: Topology,
    pub delays: Delays,
    pub faults: Faults,
    /// Calls by (account, region, action).
    pub calls: BTreeMap<(String, String, String), u64>,
    /// Calls by (account, region, action, outcome), where the outcome is one of
    /// [`CallOutcome::as_str`]. Only `succeeded` calls changed any state.
    pub outcomes: BTreeMap<(String, String, String, &'static str), u64>,
    pub regions: HashMap<Scope, RegionState>,
}

impl Inner {
    /// Counts one call of an action.
    pub fn record_call(&mut self, scope: &Scope, action: &str) {
        let key = (
            scope.account.clone(),
            scope.region.clone(),
            action.to_owned(),
        );
        *self.calls.entry(key).or_default() += 1;
    }

    /// Counts how one call of an action ended.
    pub fn record_outcome(&mut self, scope: &Scope, action: &str, outcome: CallOutcome) {
        let key = (
            scope.account.clone(),
            scope.region.clone(),
            action.to_owned(),
            outcome.as_str(),
        );
        *self.outcomes.entry(key).or_default() += 1;
    }

    /// Returns the total calls of an action across accounts and regions.
    pub fn call_count(&self, action: &str) -> u64 {
        self.calls
            .iter()
            .filter(|((_, _, name), _)| name == action)
            .map(|(_, count)| count)
            .sum()
    }

    /// Finishes the workforce transition of a scope if its time is up.
    pub fn settle(&mut self, scope: &Scope, now: DateTime<Utc>) {
        let Inner {
            topology, regions, ..
        } = self;
        if let Some(state) = regions.get_mut(scope) {
            state.settle(topology.region(&scope.account, &scope.region), now);
        }
    }

    /// Returns the resources of a scope, creating an empty entry on first use.
    pub fn region_mut(&mut self, scope: &Scope) -> &mut RegionState {
        self.regions.entry(scope.clone()).or_default()
    }

    /// Returns every VPC endpoint of a scope: the topology's fixed ones, then those created
    /// for workforces.
    pub fn vpc_endpoints(&self, scope: &Scope) -> Vec<VpcEndpoint> {
        let mut endpoints: Vec<VpcEndpoint> = self
            .topology
            .region(&scope.account, &scope.region)
            .map(|region| {
                region
                    .vpc_endpoints
                    .iter()
                    .map(|e| VpcEndpoint::from_topology(e, &scope.account))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(state) = self.regions.get(scope) {
            endpoints.extend(state.endpoints.values().cloned());
        }
        endpoints
    }
}

/// The outcome of one AWS call. Faults are injected before the request is handled, so only a
/// `Succeeded` call can have changed a workforce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallOutcome {
    /// Handled, with a success response.
    Succeeded,
    /// Handled and rejected with an API error, such as `ValidationException`.
    Rejected,
    /// Rejected with an injected throttling error, without being handled.
    Throttled,
    /// Rejected with an injected server error, without being handled.
    ServerError,
    /// Connection closed on purpose, without being handled.
    Dropped,
}

impl CallOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Rejected => "rejected",
            Self::Throttled => "throttled",
            Self::ServerError => "server_error",
            Self::Dropped => "dropped",
        }
    }
}

/// Resources of one account in one region.
#[derive(Default)]
pub struct RegionState {
    pub workforce: Option<Workforce>,
    pub workteams: BTreeMap<String, Workteam>,
    /// Interface endpoints created for workforce VPC configs, by id.
    pub endpoints: BTreeMap<String, VpcEndpoint>,
    /// Workforce name to the failure reason its next transition ends with.
    pub forced_failures: HashMap<String, String>,
    /// Workforces held in their transitional status.
    pub stuck: BTreeSet<String>,
}

/// One DNS entry of a VPC endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsEntry {
    pub dns_name: String,
    pub hosted_zone_id: String,
}

/// A VPC endpoint as `DescribeVpcEndpoints` returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VpcEndpoint {
    pub id: String,
    pub endpoint_type: String,
    pub vpc_id: String,
    pub service_name: String,
    /// Lowercase state as EC2 sends it: `pending`, `available`, `deleting` or `failed`.
    pub state: String,
    pub route_table_ids: Vec<String>,
    pub subnet_ids: Vec<String>,
    pub security_group_ids: Vec<String>,
    pub private_dns_enabled: bool,
    pub requester_managed: bool,
    pub network_interface_ids: Vec<String>,
    pub dns_entries: Vec<DnsEntry>,
    pub creation_timestamp: DateTime<Utc>,
    pub owner_id: String,
    pub ip_address_type: String,
    /// Workforce that owns this endpoint, for endpoints the sandbox created.
    pub workforce_name: Option<String>,
}

impl VpcEndpoint {
    /// Converts a fixed topology endpoint. Its creation time is a constant so that repeated
    /// calls return identical output.
    pub fn from_topology(endpoint: &TopologyVpcEndpoint, account: &str) -> VpcEndpoint {
        VpcEndpoint {
            id: endpoint.vpc_endpoint_id.clone(),
            endpoint_type: endpoint.vpc_endpoint_type.clone(),
            vpc_id: endpoint.vpc_id.clone(),
            service_name: endpoint.service_name.clone(),
            state: endpoint.state.clone(),
            route_table_ids: endpoint.route_table_ids.clone(),
            subnet_ids: endpoint.subnet_ids.clone(),
            security_group_ids: endpoint.security_group_ids.clone(),
            private_dns_enabled: endpoint.private_dns_enabled,
            requester_managed: false,
            network_interface_ids: Vec::new(),
            dns_entries: Vec::new(),
            creation_timestamp: DateTime::from_timestamp(1_704_067_200, 0).unwrap_or_default(),
            owner_id: account.to_owned(),
            ip_address_type: "ipv4".to_owned(),
            workforce_name: None,
        }
    }
}
