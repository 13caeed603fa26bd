//! `CreateWorkforce`, `DescribeWorkforce`, `ListWorkforces`, `UpdateWorkforce` and
//! `DeleteWorkforce`.

use chrono::Utc;
use serde_json::{Map, Value, json};

use super::epoch_seconds;
use super::shapes::{
    CreateWorkforceRequest, ListRequest, OidcConfigInput, UpdateWorkforceRequest, VpcConfigInput,
    WORKFORCE_NAME, WorkforceNameRequest, check_cognito, check_ip_address_type, check_list,
    check_oidc, check_source_ip, check_tags, check_vpc_config, check_workforce_name,
};
use crate::error::ApiError;
use crate::lifecycle::{
    CognitoConfig, OidcConfig, Status, Workforce, WorkforceVpc, new_workforce_endpoint,
    random_lowercase_alphanumeric,
};
use crate::state::{Inner, RegionState, Scope};
use crate::topology::{RegionTopology, workforce_endpoint_service};
use crate::validate::{Violations, is_ipv6_cidr};

pub fn create(
    inner: &mut Inner,
    scope: &Scope,
    request: CreateWorkforceRequest,
) -> Result<Value, ApiError> {
    let mut v = Violations::default();
    check_workforce_name(&mut v, request.workforce_name.as_ref());
    if let Some(cognito) = &request.cognito_config {
        check_cognito(&mut v, cognito);
    }
    if let Some(oidc) = &request.oidc_config {
        check_oidc(&mut v, oidc);
    }
    if let Some(source_ip) = &request.source_ip_config {
        check_source_ip(&mut v, source_ip);
    }
    if let Some(tags) = &request.tags {
        check_tags(&mut v, tags);
    }
    if let Some(vpc) = &request.workforce_vpc_config {
        check_vpc_config(&mut v, vpc);
    }
    check_ip_address_type(&mut v, request.ip_address_type.as_ref());
    v.finish()?;

    let name = request.workforce_name.clone().unwrap_or_default();
    let ip_address_type = request
        .ip_address_type
        .clone()
        .unwrap_or_else(|| "ipv4".to_owned());
    let cidrs = request
        .source_ip_config
        .and_then(|s| s.cidrs)
        .unwrap_or_default();
    // NOTE: the wording of this and the other custom messages below is not documented by AWS.
    if request.cognito_config.is_some() == request.oidc_config.is_some() {
        return Err(ApiError::validation(
            "Specify exactly one of CognitoConfig or OidcConfig.",
        ));
    }
    check_cidr_family(&ip_address_type, &cidrs)?;

    let now = Utc::now();
    let delays = inner.delays;
    let Inner {
        topology, regions, ..
    } = inner;
    let region_topology = topology.region(&scope.account, &scope.region);
    let state = regions.entry(scope.clone()).or_default();
    if state.workforce.is_some() {
        return Err(ApiError::validation(format!(
            "Cannot create more than one workforce for account {}. If you are trying to update \
             existing workforce, please use UpdateWorkforce API",
            scope.account
        )));
    }
    let network = match &request.workforce_vpc_config {
        Some(config) if !config.is_empty() => {
            Some(check_network(config, region_topology, &scope.region)?)
        }
        _ => None,
    };

    let arn = format!(
        "arn:aws:sagemaker:{}:{}:workforce/{name}",
        scope.region, scope.account
    );
    let mut workforce = Workforce {
        name: name.clone(),
        arn: arn.clone(),
        sub_domain: format!(
            "{}.labeling.{}.sagemaker.aws",
            random_lowercase_alphanumeric(10),
            scope.region
        ),
        create_date: now,
        last_updated_date: now,
        status: Status::Initializing,
        failure_reason: None,
        cidrs,
        cognito: request.cognito_config.map(|c| CognitoConfig {
            user_pool: c.user_pool.unwrap_or_default(),
            client_id: c.client_id.unwrap_or_default(),
        }),
        oidc: request.oidc_config.map(oidc_from_input),
        ip_address_type,
        vpc: None,
        // Tags are validated but not kept: AWS rejects ListTags on workforce ARNs, so no
        // caller can read them back.
        transition_ends_at: None,
    };
    if let Some(network) = network {
        attach_vpc(state, &mut workforce, scope, region_topology, network, now);
    }
    workforce.begin(
        Status::Initializing,
        now,
        delays.sample(delays.initializing),
    );
    state.workforce = Some(workforce);
    Ok(json!({ "WorkforceArn": arn }))
}

pub fn describe(
    inner: &mut Inner,
    scope: &Scope,
    request: WorkforceNameRequest,
) -> Result<Value, ApiError> {
    let name = checked_name(request.workforce_name)?;
    let state = inner.region_mut(scope);
    let workforce = find(state, &name)?;
    Ok(json!({ "Workforce": render(workforce) }))
}

pub fn list(inner: &mut Inner, scope: &Scope, request: ListRequest) -> Result<Value, ApiError> {
    let mut v = Violations::default();
    check_list(&mut v, &request, &WORKFORCE_NAME);
    v.finish()?;

    let state = inner.region_mut(scope);
    let mut workforces: Vec<&Workforce> = state
        .workforce
        .iter()
        .filter(|w| {
            request
                .name_contains
                .as_ref()
                .is_none_or(|part| w.name.contains(part.as_str()))
        })
        .collect();
    match request.sort_by.as_deref() {
        Some("Name") => workforces.sort_by(|a, b| a.name.cmp(&b.name)),
        _ => workforces.sort_by_key(|w| w.create_date),
    }
    if request.sort_order.as_deref() == Some("Descending") {
        workforces.reverse();
    }
    let rendered: Vec<Value> = workforces.into_iter().map(render).collect();
    let (page, next_token) =
        paginate(rendered, request.next_token.as_deref(), request.max_results)?;
    let mut body = json!({ "Workforces": page });
    if let Some(token) = next_token {
        body["NextToken"] = json!(token);
    }
    Ok(body)
}

pub fn update(
    inner: &mut Inner,
    scope: &Scope,
    request: UpdateWorkforceRequest,
) -> Result<Value, ApiError> {
    let mut v = Violations::default();
    check_workforce_name(&mut v, request.workforce_name.as_ref());
    if let Some(source_ip) = &request.source_ip_config {
        check_source_ip(&mut v, source_ip);
    }
    if let Some(oidc) = &request.oidc_config {
        check_oidc(&mut v, oidc);
    }
    if let Some(vpc) = &request.workforce_vpc_config {
        check_vpc_config(&mut v, vpc);
    }
    check_ip_address_type(&mut v, request.ip_address_type.as_ref());
    v.finish()?;
    let name = request.workforce_name.clone().unwrap_or_default();

    let now = Utc::now();
    let delays = inner.delays;
    let Inner {
        topology, regions, ..
    } = inner;
    let region_topology = topology.region(&scope.account, &scope.region);
    let state = regions.entry(scope.clone()).or_default();
    let workforce = find(state, &name)?;
    if workforce.status != Status::Active {
        return Err(ApiError::conflict(format!(
            "Workforce {name} is in status {} and can be updated only when it is Active.",
            workforce.status.as_str()
        )));
    }
    if request.oidc_config.is_some() {
        if workforce.cognito.is_some() {
            return Err(ApiError::validation(format!(
                "Workforce {name} uses Amazon Cognito, so OidcConfig cannot be set on it."
            )));
        }
        if !state.workteams.is_empty() {
            return Err(ApiError::validation(format!(
                "OidcConfig of workforce {name} can be updated only when it has no work teams."
            )));
        }
    }
    let ip_address_type = request
        .ip_address_type
        .clone()
        .unwrap_or_else(|| workforce.ip_address_type.clone());
    let cidrs = request
        .source_ip_config
        .as_ref()
        .map(|s| s.cidrs.clone().unwrap_or_default());
    check_cidr_family(&ip_address_type, cidrs.as_ref().unwrap_or(&workforce.cidrs))?;
    let network = match &request.workforce_vpc_config {
        Some(config) if !config.is_empty() => {
            Some(check_network(config, region_topology, &scope.region)?)
        }
        _ => None,
    };

    let Some(mut workforce) = state.workforce.take() else {
        return Err(no_workforce(&name));
    };
    if let Some(cidrs) = cidrs {
        workforce.cidrs = cidrs;
    }
    if let Some(oidc) = request.oidc_config {
        workforce.oidc = Some(oidc_from_input(oidc));
    }
    workforce.ip_address_type = ip_address_type;
    match (request.workforce_vpc_config.as_ref(), network) {
        (Some(_), Some(network)) => {
            let unchanged = workforce.vpc.as_ref().is_some_and(|current| {
                current.same_network(
                    &network.vpc_id,
                    &network.security_group_ids,
                    &network.subnets,
                )
            });
            if !unchanged {
                detach_vpc(state, &mut workforce);
                attach_vpc(state, &mut workforce, scope, region_topology, network, now);
            }
        }
        (Some(_), None) => detach_vpc(state, &mut workforce),
        (None, _) => {}
    }
    // Every update goes through `Updating`, also one that changes only SourceIpConfig.
    // NOTE: AWS documents `Updating` only for VPC changes.
    workforce.begin(Status::Updating, now, delays.sample(delays.updating));
    let body = json!({ "Workforce": render(&workforce) });
    state.workforce = Some(workforce);
    Ok(body)
}

pub fn delete(
    inner: &mut Inner,
    scope: &Scope,
    request: WorkforceNameRequest,
) -> Result<Value, ApiError> {
    let name = checked_name(request.workforce_name)?;
    let delays = inner.delays;
    let state = inner.region_mut(scope);
    let workforce = find(state, &name)?;
    if !matches!(workforce.status, Status::Active | Status::Failed) {
        return Err(ApiError::conflict(format!(
            "Workforce {name} is in status {} and can be deleted only when it is Active or \
             Failed.",
            workforce.status.as_str()
        )));
    }
    if state.workteams.values().any(|t| t.workforce_name == name) {
        return Err(ApiError::resource_in_use(format!(
            "Workforce {name} has work teams. Delete its work teams before the workforce."
        )));
    }
    let Some(workforce) = state.workforce.as_mut() else {
        return Err(no_workforce(&name));
    };
    workforce.begin(Status::Deleting, Utc::now(), delays.sample(delays.deleting));
    if let Some(vpc) = workforce.vpc.as_mut() {
        vpc.endpoint_ready = false;
        if let Some(endpoint) = state.endpoints.get_mut(&vpc.endpoint_id) {
            endpoint.state = "deleting".to_owned();
        }
    }
    Ok(json!({}))
}

/// Validates a workforce name that the operation requires.
fn checked_name(name: Option<String>) -> Result<String, ApiError> {
    let mut v = Violations::default();
    check_workforce_name(&mut v, name.as_ref());
    v.finish()?;
    Ok(name.unwrap_or_default())
}

fn no_workforce(name: &str) -> ApiError {
    // NOTE: AWS is known to say "No workforce" here; the rest of the text is a guess.
    ApiError::validation(format!("No workforce found with name {name}."))
}

fn find<'a>(state: &'a RegionState, name: &str) -> Result<&'a Workforce, ApiError> {
    state
        .workforce
        .as_ref()
        .filter(|w| w.name == name)
        .ok_or_else(|| no_workforce(name))
}

/// Rejects IPv6 CIDRs on an `ipv4` workforce; `dualstack` accepts both families.
fn check_cidr_family(ip_address_type: &str, cidrs: &[String]) -> Result<(), ApiError> {
    if ip_address_type == "ipv4"
        && let Some(cidr) = cidrs.iter().find(|c| is_ipv6_cidr(c))
    {
        return Err(ApiError::validation(format!(
            "CIDR {cidr} is IPv6, but IpAddressType is ipv4. Use IPv4 CIDRs or set \
             IpAddressType to dualstack."
        )));
    }
    Ok(())
}

/// A VPC config whose ids were found in the topology.
struct Network {
    vpc_id: String,
    security_group_ids: Vec<String>,
    subnets: Vec<String>,
}

/// Checks that the VPC, subnets and security groups of a config exist in the region and that
/// the subnets and groups belong to the VPC.
fn check_network(
    config: &VpcConfigInput,
    topology: Option<&RegionTopology>,
    region: &str,
) -> Result<Network, ApiError> {
    let (Some(vpc_id), Some(groups), Some(subnets)) =
        (&config.vpc_id, &config.security_group_ids, &config.subnets)
    else {
        return Err(ApiError::validation(
            "WorkforceVpcConfig must contain VpcId, SecurityGroupIds and Subnets, or be empty \
             to remove the VPC config.",
        ));
    };
    let vpc = topology.and_then(|t| t.vpc(vpc_id));
    if vpc.is_none() {
        return Err(ApiError::validation(format!(
            "VPC {vpc_id} does not exist in {region}."
        )));
    }
    for subnet_id in subnets {
        match topology.and_then(|t| t.subnet(subnet_id)) {
            None => {
                return Err(ApiError::validation(format!(
                    "Subnet {subnet_id} does not exist in {region}."
                )));
            }
            Some(subnet) if subnet.vpc_id != *vpc_id => {
                return Err(ApiError::validation(format!(
                    "Subnet {subnet_id} belongs to {}, not to {vpc_id}.",
                    subnet.vpc_id
                )));
            }
            Some(_) => {}
        }
    }
    for group_id in groups {
        match topology.and_then(|t| t.security_group(group_id)) {
            None => {
                return Err(ApiError::validation(format!(
                    "Security group {group_id} does not exist in {region}."
                )));
            }
            Some(group) if group.vpc_id != *vpc_id => {
                return Err(ApiError::validation(format!(
                    "Security group {group_id} belongs to {}, not to {vpc_id}.",
                    group.vpc_id
                )));
            }
            Some(_) => {}
        }
    }
    Ok(Network {
        vpc_id: vpc_id.clone(),
        security_group_ids: groups.clone(),
        subnets: subnets.clone(),
    })
}

/// Creates the interface endpoint for a new VPC config and sets the config on the workforce.
fn attach_vpc(
    state: &mut RegionState,
    workforce: &mut Workforce,
    scope: &Scope,
    topology: Option<&RegionTopology>,
    network: Network,
    now: chrono::DateTime<Utc>,
) {
    let service_name = workforce_endpoint_service(topology, &scope.region);
    let endpoint = new_workforce_endpoint(
        &workforce.name,
        &scope.account,
        &scope.region,
        &service_name,
        &network.vpc_id,
        &network.subnets,
        &network.security_group_ids,
        topology,
        &workforce.ip_address_type,
        now,
    );
    workforce.vpc = Some(WorkforceVpc {
        vpc_id: network.vpc_id,
        security_group_ids: network.security_group_ids,
        subnets: network.subnets,
        endpoint_id: endpoint.id.clone(),
        endpoint_ready: false,
    });
    state.endpoints.insert(endpoint.id.clone(), endpoint);
}

/// Removes the VPC config and moves its endpoint to `deleting`; the endpoint is gone when the
/// transition ends.
fn detach_vpc(state: &mut RegionState, workforce: &mut Workforce) {
    if let Some(vpc) = workforce.vpc.take()
        && let Some(endpoint) = state.endpoints.get_mut(&vpc.endpoint_id)
    {
        endpoint.state = "deleting".to_owned();
    }
}

fn oidc_from_input(input: OidcConfigInput) -> OidcConfig {
    OidcConfig {
        client_id: input.client_id.unwrap_or_default(),
        client_secret: input.client_secret.unwrap_or_default(),
        issuer: input.issuer.unwrap_or_default(),
        authorization_endpoint: input.authorization_endpoint.unwrap_or_default(),
        token_endpoint: input.token_endpoint.unwrap_or_default(),
        user_info_endpoint: input.user_info_endpoint.unwrap_or_default(),
        logout_endpoint: input.logout_endpoint.unwrap_or_default(),
        jwks_uri: input.jwks_uri.unwrap_or_default(),
        scope: input.scope,
        authentication_request_extra_params: input.authentication_request_extra_params,
    }
}

/// Renders a workforce as the `Workforce` shape. The OIDC client secret is never included.
fn render(workforce: &Workforce) -> Value {
    let mut body = Map::new();
    body.insert("WorkforceName".into(), json!(workforce.name));
    body.insert("WorkforceArn".into(), json!(workforce.arn));
    body.insert("SubDomain".into(), json!(workforce.sub_domain));
    body.insert("CreateDate".into(), epoch_seconds(workforce.create_date));
    body.insert(
        "LastUpdatedDate".into(),
        epoch_seconds(workforce.last_updated_date),
    );

    body.insert("Status".into(), json!(workforce.status.as_str()));
    if let Some(reason) = &workforce.failure_reason {
        body.insert("FailureReason".into(), json!(reason));
    }
    body.insert("SourceIpConfig".into(), json!({ "Cidrs": workforce.cidrs }));

    if let Some(cognito) = &workforce.cognito {
        body.insert(
            "CognitoConfig".into(),
            json!({ "UserPool": cognito.user_pool, "ClientId": cognito.client_id }),
        );
    }
    if let Some(oidc) = &workforce.oidc {
        let mut config = json!({
            "ClientId": oidc.client_id,
            "Issuer": oidc.issuer,
            "AuthorizationEndpoint": oidc.authorization_endpoint,
            "TokenEndpoint": oidc.token_endpoint,
            "UserInfoEndpoint": oidc.user_info_endpoint,
            "LogoutEndpoint": oidc.logout_endpoint,
            "JwksUri": oidc.jwks_uri,
        });
        if let Some(scope) = &oidc.scope {
            config["Scope"] = json!(scope);
        }
        if let Some(params) = &oidc.authentication_request_extra_params {
            config["AuthenticationRequestExtraParams"] = json!(params);
        }
        body.insert("OidcConfig".into(), config);
    }

    body.insert("IpAddressType".into(), json!(workforce.ip_address_type));
    if let Some(vpc) = &workforce.vpc {
        let mut config = json!({
            "VpcId": vpc.vpc_id,
            "SecurityGroupIds": vpc.security_group_ids,
            "Subnets": vpc.subnets,
        });
        if vpc.endpoint_ready {
            config["VpcEndpointId"] = json!(vpc.endpoint_id);
        }
        body.insert("WorkforceVpcConfig".into(), config);
    }
    Value::Object(body)
}

/// Cuts one page from `items`. The token is the decimal offset of the next item.
pub fn paginate(
    items: Vec<Value>,
    next_token: Option<&str>,
    max_results: Option<i64>,
) -> Result<(Vec<Value>, Option<String>), ApiError> {
    let start = match next_token {
        None | Some("") => 0,
        Some(token) => token
            .parse::<usize>()
            .ok()
            .filter(|offset| *offset <= items.len())
            .ok_or_else(|| ApiError::validation(format!("Invalid pagination token {token}.")))?,
    };
    // ListWorkforces and ListWorkteams default to 10 results per page, like most SageMaker
    // list calls.
    let limit = max_results
        .and_then(|m| usize::try_from(m).ok())
        .unwrap_or(10);
    let end = start.saturating_add(limit).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((items[start..end].to_vec(), next))
}
