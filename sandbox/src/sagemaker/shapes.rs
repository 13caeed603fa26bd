//! Request shapes of the workforce and work team operations and their model constraints.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;

use crate::validate::{Pattern, Violations, is_cidr};

pub static WORKFORCE_NAME: LazyLock<Pattern> =
    LazyLock::new(|| Pattern::new(r"[a-zA-Z0-9]([a-zA-Z0-9\-]){0,62}"));
pub static WORKTEAM_NAME: LazyLock<Pattern> =
    LazyLock::new(|| Pattern::new(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"));
static USER_POOL: LazyLock<Pattern> = LazyLock::new(|| Pattern::new(r"[\w-]+_[0-9a-zA-Z]+"));
static CLIENT_ID: LazyLock<Pattern> = LazyLock::new(|| Pattern::new(r"[ -~]+"));
static OIDC_ENDPOINT: LazyLock<Pattern> = LazyLock::new(|| Pattern::new(r"https://\S+"));
static SCOPE: LazyLock<Pattern> = LazyLock::new(|| Pattern::new(r"[!#-\[\]-~]+( [!#-\[\]-~]+)*"));
static ANY: LazyLock<Pattern> = LazyLock::new(|| Pattern::new(r".*"));
static TAG_TEXT: LazyLock<Pattern> =
    LazyLock::new(|| Pattern::new(r"([\p{L}\p{Z}\p{N}_.:/=+\-@]*)"));
static VPC_ID: LazyLock<Pattern> = LazyLock::new(|| Pattern::new(r"vpc-[0-9a-z]*"));
static SECURITY_GROUP_ID: LazyLock<Pattern> = LazyLock::new(|| Pattern::new(r"sg-[0-9a-z]*"));
static SUBNET_ID: LazyLock<Pattern> = LazyLock::new(|| Pattern::new(r"subnet-[0-9a-z]*"));
pub static GROUP_NAME: LazyLock<Pattern> =
    LazyLock::new(|| Pattern::new(r"[\p{L}\p{M}\p{S}\p{N}\p{P}]+"));

/// Shown in place of the OIDC client secret in validation messages.
const MASKED: &str = "***";

/// Maximum CIDRs in a `SourceIpConfig`. The model sets no limit, but the API documentation
/// says "Maximum: Ten CIDR values".
const MAX_CIDRS: usize = 10;

pub const IP_ADDRESS_TYPES: &[&str] = &["ipv4", "dualstack"];

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateWorkforceRequest {
    pub workforce_name: Option<String>,
    pub cognito_config: Option<CognitoConfigInput>,
    pub oidc_config: Option<OidcConfigInput>,
    pub source_ip_config: Option<SourceIpConfigInput>,
    pub tags: Option<Vec<TagInput>>,
    pub workforce_vpc_config: Option<VpcConfigInput>,
    pub ip_address_type: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateWorkforceRequest {
    pub workforce_name: Option<String>,
    pub source_ip_config: Option<SourceIpConfigInput>,
    pub oidc_config: Option<OidcConfigInput>,
    pub workforce_vpc_config: Option<VpcConfigInput>,
    pub ip_address_type: Option<String>,
}

/// Request of the operations that take only a workforce name.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WorkforceNameRequest {
    pub workforce_name: Option<String>,
}

/// Request of `ListWorkforces` and `ListWorkteams`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListRequest {
    pub sort_by: Option<String>,
    pub sort_order: Option<String>,
    pub name_contains: Option<String>,
    pub next_token: Option<String>,
    pub max_results: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CognitoConfigInput {
    pub user_pool: Option<String>,
    pub client_id: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OidcConfigInput {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub issuer: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub user_info_endpoint: Option<String>,
    pub logout_endpoint: Option<String>,
    pub jwks_uri: Option<String>,
    pub scope: Option<String>,
    pub authentication_request_extra_params: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SourceIpConfigInput {
    pub cidrs: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TagInput {
    pub key: Option<String>,
    pub value: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcConfigInput {
    pub vpc_id: Option<String>,
    pub security_group_ids: Option<Vec<String>>,
    pub subnets: Option<Vec<String>>,
}

impl VpcConfigInput {
    /// Returns whether the config is `{}`, which removes the VPC config on update.
    pub fn is_empty(&self) -> bool {
        self.vpc_id.is_none() && self.security_group_ids.is_none() && self.subnets.is_none()
    }
}

pub fn check_workforce_name(v: &mut Violations, name: Option<&String>) {
    if v.required("workforceName", name)
        && let Some(name) = name
    {
        v.string("workforceName", name, 1, 63, Some(&WORKFORCE_NAME));
    }
}

pub fn check_cognito(v: &mut Violations, config: &CognitoConfigInput) {
    let user_pool = config.user_pool.as_ref();
    if v.required("cognitoConfig.userPool", user_pool)
        && let Some(pool) = user_pool
    {
        v.string("cognitoConfig.userPool", pool, 1, 55, Some(&USER_POOL));
    }
    let client_id = config.client_id.as_ref();
    if v.required("cognitoConfig.clientId", client_id)
        && let Some(id) = client_id
    {
        v.string("cognitoConfig.clientId", id, 1, 1024, Some(&CLIENT_ID));
    }
}

pub fn check_oidc(v: &mut Violations, config: &OidcConfigInput) {
    if v.required("oidcConfig.clientId", config.client_id.as_ref())
        && let Some(id) = &config.client_id
    {
        v.string("oidcConfig.clientId", id, 1, 1024, Some(&CLIENT_ID));
    }
    if v.required("oidcConfig.clientSecret", config.client_secret.as_ref())
        && let Some(secret) = &config.client_secret
    {
        v.string_shown(
            "oidcConfig.clientSecret",
            secret,
            MASKED,
            1,
            1024,
            Some(&CLIENT_ID),
        );
    }
    let endpoints = [
        ("oidcConfig.issuer", &config.issuer),
        (
            "oidcConfig.authorizationEndpoint",
            &config.authorization_endpoint,
        ),
        ("oidcConfig.tokenEndpoint", &config.token_endpoint),
        ("oidcConfig.userInfoEndpoint", &config.user_info_endpoint),
        ("oidcConfig.logoutEndpoint", &config.logout_endpoint),
        ("oidcConfig.jwksUri", &config.jwks_uri),
    ];
    for (path, value) in endpoints {
        if v.required(path, value.as_ref())
            && let Some(url) = value
        {
            v.string(path, url, 0, 500, Some(&OIDC_ENDPOINT));
        }
    }
    if let Some(scope) = &config.scope {
        v.string("oidcConfig.scope", scope, 0, 1024, Some(&SCOPE));
    }
    if let Some(params) = &config.authentication_request_extra_params {
        let path = "oidcConfig.authenticationRequestExtraParams";
        let entries: Vec<String> = params.iter().map(|(k, val)| format!("{k}={val}")).collect();
        v.count(path, &entries, 0, 10);
        for (key, value) in params {
            v.string(&format!("{path}.key"), key, 0, 512, Some(&ANY));
            v.string(&format!("{path}.value"), value, 0, 512, Some(&ANY));
        }
    }
}

pub fn check_source_ip(v: &mut Violations, config: &SourceIpConfigInput) {
    let cidrs = config.cidrs.as_ref();
    if !v.required("sourceIpConfig.cidrs", cidrs) {
        return;
    }
    let cidrs = cidrs.map(Vec::as_slice).unwrap_or_default();
    v.count("sourceIpConfig.cidrs", cidrs, 0, MAX_CIDRS);
    for (index, cidr) in cidrs.iter().enumerate() {
        let path = format!("sourceIpConfig.cidrs.{}.member", index + 1);
        v.string(&path, cidr, 4, 64, None);
        if !is_cidr(cidr) {
            v.constraint(
                cidr,
                &path,
                "Member must be a valid IPv4 or IPv6 CIDR block",
            );
        }
    }
}

pub fn check_tags(v: &mut Violations, tags: &[TagInput]) {
    let keys: Vec<String> = tags.iter().filter_map(|t| t.key.clone()).collect();
    v.count("tags", &keys, 0, 50);
    for (index, tag) in tags.iter().enumerate() {
        let key_path = format!("tags.{}.member.key", index + 1);
        if v.required(&key_path, tag.key.as_ref())
            && let Some(key) = &tag.key
        {
            v.string(&key_path, key, 1, 128, Some(&TAG_TEXT));
        }
        let value_path = format!("tags.{}.member.value", index + 1);
        if v.required(&value_path, tag.value.as_ref())
            && let Some(value) = &tag.value
        {
            v.string(&value_path, value, 0, 256, Some(&TAG_TEXT));
        }
    }
}

pub fn check_vpc_config(v: &mut Violations, config: &VpcConfigInput) {
    if let Some(vpc_id) = &config.vpc_id {
        v.string("workforceVpcConfig.vpcId", vpc_id, 0, 32, Some(&VPC_ID));
    }
    let lists = [
        (
            "workforceVpcConfig.securityGroupIds",
            &config.security_group_ids,
            5,
            &*SECURITY_GROUP_ID,
        ),
        (
            "workforceVpcConfig.subnets",
            &config.subnets,
            16,
            &*SUBNET_ID,
        ),
    ];
    for (path, ids, max, pattern) in lists {
        let Some(ids) = ids else { continue };
        v.count(path, ids, 1, max);
        for (index, id) in ids.iter().enumerate() {
            v.string(
                &format!("{path}.{}.member", index + 1),
                id,
                0,
                32,
                Some(pattern),
            );
        }
    }
}

pub fn check_ip_address_type(v: &mut Violations, value: Option<&String>) {
    if let Some(value) = value {
        v.one_of("ipAddressType", value, IP_ADDRESS_TYPES);
    }
}

/// Checks the list request members shared by `ListWorkforces` and `ListWorkteams`.
pub fn check_list(v: &mut Violations, request: &ListRequest, name_pattern: &Pattern) {
    if let Some(sort_by) = &request.sort_by {
        v.one_of("sortBy", sort_by, &["Name", "CreateDate"]);
    }
    if let Some(order) = &request.sort_order {
        v.one_of("sortOrder", order, &["Ascending", "Descending"]);
    }
    if let Some(name) = &request.name_contains {
        v.string("nameContains", name, 1, 63, Some(name_pattern));
    }
    if let Some(token) = &request.next_token {
        v.string("nextToken", token, 0, 8192, Some(&ANY));
    }
    if let Some(max) = request.max_results {
        v.range("maxResults", max, 1, 100);
    }
}
