//! Request and response bodies of the API, and their conversion from stored rows.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::audit::AuditEventRow;
use crate::db::operations::OperationRow;
use crate::db::workforces::WorkforceRow;
use crate::domain::oidc_fields;
use crate::domain::{
    Change, CognitoConfig, FieldError, IpAddressType, OidcConfig, OidcSecret, OperationKind,
    OperationStatus, SourceIpConfig, Tag, Violations, VpcConfig, WorkforceName,
};

/// The Cognito user pool and app client that sign workers in.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_pool": "us-east-1_AbC123", "client_id": "portal"}))]
pub struct CognitoConfigBody {
    /// Cognito user pool id, such as `us-east-1_AbC123`.
    #[schema(
        min_length = 1,
        max_length = 55,
        pattern = r"^[A-Za-z0-9_-]+_[A-Za-z0-9]+$"
    )]
    pub user_pool: String,
    /// App client id of the user pool.
    #[schema(min_length = 1, max_length = 1024, pattern = r"^[ -~]+$")]
    pub client_id: String,
}

/// An OIDC identity provider. The client secret is sent to SageMaker and never stored or shown.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "client_id": "labeling-portal",
    "client_secret": "example-secret",
    "issuer": "https://idp.example.com",
    "authorization_endpoint": "https://idp.example.com/authorize",
    "token_endpoint": "https://idp.example.com/token",
    "user_info_endpoint": "https://idp.example.com/userinfo",
    "logout_endpoint": "https://idp.example.com/logout",
    "jwks_uri": "https://idp.example.com/.well-known/jwks.json",
    "scope": "openid email"
}))]
pub struct OidcConfigRequest {
    #[schema(min_length = 1, max_length = 1024, pattern = r"^[ -~]+$")]
    pub client_id: String,
    /// Write-only: passed to SageMaker, never stored, logged or returned.
    #[schema(write_only, min_length = 1, max_length = 1024, pattern = r"^[ -~]+$")]
    pub client_secret: String,
    #[schema(
        max_length = 500,
        pattern = r"^https://[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?(/[!-~]*)?$"
    )]
    pub issuer: String,
    #[schema(
        max_length = 500,
        pattern = r"^https://[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?(/[!-~]*)?$"
    )]
    pub authorization_endpoint: String,
    #[schema(
        max_length = 500,
        pattern = r"^https://[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?(/[!-~]*)?$"
    )]
    pub token_endpoint: String,
    #[schema(
        max_length = 500,
        pattern = r"^https://[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?(/[!-~]*)?$"
    )]
    pub user_info_endpoint: String,
    #[schema(
        max_length = 500,
        pattern = r"^https://[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?(/[!-~]*)?$"
    )]
    pub logout_endpoint: String,
    #[schema(
        max_length = 500,
        pattern = r"^https://[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?(/[!-~]*)?$"
    )]
    pub jwks_uri: String,
    /// Scopes separated by single spaces.
    #[serde(default)]
    #[schema(max_length = 1024, pattern = r"^[!#-\[\]-~]+( [!#-\[\]-~]+)*$")]
    pub scope: Option<String>,
    /// Up to 10 extra parameters for the authentication request, each key once.
    #[serde(default, deserialize_with = "unique_keys")]
    #[schema(schema_with = extra_params_schema)]
    pub authentication_request_extra_params: BTreeMap<String, String>,
}

/// Reads a JSON object into a map and rejects a key that appears twice, where serde would keep
/// the last value without a word.
fn unique_keys<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct UniqueKeys;

    impl<'de> serde::de::Visitor<'de> for UniqueKeys {
        type Value = BTreeMap<String, String>;

        fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
            formatter.write_str("an object of string values")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut entries = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, String>()? {
                if entries.contains_key(&key) {
                    return Err(serde::de::Error::custom(format!(
                        "duplicate key `{}`",
                        crate::domain::truncate_for_message(&key)
                    )));
                }
                entries.insert(key, value);
            }
            Ok(entries)
        }
    }

    deserializer.deserialize_map(UniqueKeys)
}

impl std::fmt::Debug for OidcConfigRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfigRequest")
            .field("client_id", &self.client_id)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl OidcConfigRequest {
    pub fn parse(&self, field: &str, violations: &mut Violations) -> Option<OidcConfig> {
        OidcConfig::parse(
            field,
            oidc_fields(
                &self.client_id,
                &self.client_secret,
                [
                    &self.issuer,
                    &self.authorization_endpoint,
                    &self.token_endpoint,
                    &self.user_info_endpoint,
                    &self.logout_endpoint,
                    &self.jwks_uri,
                ],
                self.scope.as_deref(),
                &self.authentication_request_extra_params,
            ),
            violations,
        )
    }
}

/// The VPC, security groups and subnets in which Ground Truth creates the portal's endpoints.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "vpc_id": "vpc-0a10000000000000a",
    "security_group_ids": ["sg-0a10000000000001a"],
    "subnets": ["subnet-0a10000000000001a", "subnet-0a10000000000002a"]
}))]
pub struct VpcConfigRequest {
    #[schema(max_length = 32, pattern = "^vpc-[0-9a-z]+$")]
    pub vpc_id: String,
    /// 1 to 5 security groups of the VPC.
    #[schema(schema_with = security_group_ids_schema)]
    pub security_group_ids: Vec<String>,
    /// 1 to 16 subnets of the VPC.
    #[schema(schema_with = subnets_schema)]
    pub subnets: Vec<String>,
}

impl VpcConfigRequest {
    pub fn parse(&self, field: &str, violations: &mut Violations) -> Option<VpcConfig> {
        VpcConfig::parse(
            field,
            &self.vpc_id,
            &self.security_group_ids,
            &self.subnets,
            violations,
        )
    }
}

/// Builds the schema of a list of distinct EC2 ids of one kind, as `VpcConfig::parse` checks it.
fn ec2_id_list_schema(prefix: &str, max_items: usize) -> utoipa::openapi::Array {
    use utoipa::openapi::{ArrayBuilder, ObjectBuilder, Type};

    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(format!("^{prefix}-[0-9a-z]+$")))
                .max_length(Some(32)),
        )
        .min_items(Some(1))
        .max_items(Some(max_items))
        .unique_items(true)
        .build()
}

fn security_group_ids_schema() -> utoipa::openapi::Array {
    ec2_id_list_schema("sg", crate::domain::MAX_SECURITY_GROUPS)
}

fn subnets_schema() -> utoipa::openapi::Array {
    ec2_id_list_schema("subnet", crate::domain::MAX_SUBNETS)
}

/// Pattern of a CIDR block as `Cidr::parse` accepts it. An IPv4 block has four decimal octets
/// without leading zeros and a prefix length of 0 to 32. An IPv6 block has any form of RFC 4291
/// section 2.2 (compressed with `::`, or ending in an IPv4 address) and a prefix length of 0 to
/// 128. The IPv6 forms are those of the `IPv6address` rule of RFC 3986 section 3.2.2.
const CIDR_PATTERN: &str = concat!(
    "^(",
    "(IPV4)/(3[0-2]|[12]?[0-9])",
    "|",
    "(",
    "(H16:){6}LS32",
    "|::(H16:){5}LS32",
    "|(H16)?::(H16:){4}LS32",
    "|((H16:){0,1}H16)?::(H16:){3}LS32",
    "|((H16:){0,2}H16)?::(H16:){2}LS32",
    "|((H16:){0,3}H16)?::H16:LS32",
    "|((H16:){0,4}H16)?::LS32",
    "|((H16:){0,5}H16)?::H16",
    "|((H16:){0,6}H16)?::",
    ")/(12[0-8]|1[01][0-9]|[1-9]?[0-9])",
    ")$"
);

/// Returns [`CIDR_PATTERN`] with its placeholders filled in: `H16` is a group of 1 to 4
/// hexadecimal digits, `LS32` the last 32 bits as two groups or an IPv4 address, and `IPV4` an
/// IPv4 address.
fn cidr_pattern() -> String {
    let octet = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
    let ipv4 = format!("({octet}\\.){{3}}{octet}");
    let h16 = "[0-9A-Fa-f]{1,4}";
    let ls32 = format!("({h16}:{h16}|{ipv4})");
    CIDR_PATTERN
        .replace("LS32", &ls32)
        .replace("IPV4", &ipv4)
        .replace("H16", h16)
}

/// Builds the schema of the source-IP CIDR list: at most 10 distinct IPv4 or IPv6 blocks.
fn cidrs_schema() -> utoipa::openapi::Array {
    use utoipa::openapi::{ArrayBuilder, ObjectBuilder, Type};

    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(cidr_pattern())),
        )
        .max_items(Some(crate::domain::MAX_CIDRS))
        .unique_items(true)
        // A schema function replaces the field's doc comment, so the rules are repeated here.
        .description(Some(
            "0 to 10 CIDR blocks, each listed once (an IPv6 block in another case or with its \
             zeros written out counts as the same block). IPv6 blocks need a workforce whose \
             `ip_address_type` is `dualstack`: a creation without it gets 422, and a replacement \
             on an IPv4 workforce gets 409 unless the same request sets `ip_address_type` to \
             `dualstack`.",
        ))
        .build()
}

/// Builds the schema of the extra OIDC authentication parameters: at most 10 entries whose keys
/// and values have at most 512 characters and no control characters or line separators.
fn extra_params_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::{ObjectBuilder, Type};

    let text = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(512))
            .pattern(Some(r"^[^\u0000-\u001f\u007f-\u009f\u2028\u2029]*$"))
    };
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(text()))
        .property_names(Some(text()))
        .max_properties(Some(10))
        .build()
}

/// The CIDR blocks allowed to reach the public worker portal. An empty list lifts the
/// restriction. It does not apply to access through the VPC.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"cidrs": ["10.0.0.0/16", "192.0.2.0/24"]}))]
pub struct SourceIpConfigRequest {
    /// 0 to 10 CIDR blocks. IPv6 blocks need a workforce whose `ip_address_type` is `dualstack`:
    /// a creation without it gets 422, and a replacement on an IPv4 workforce gets 409 unless
    /// the same request sets `ip_address_type` to `dualstack`.
    #[schema(schema_with = cidrs_schema)]
    pub cidrs: Vec<String>,
    /// Changes the workforce's address type in the same call to SageMaker; omit it to keep the
    /// current one (null does the same). `ipv4` with IPv6 blocks in `cidrs` gets 422.
    #[serde(default)]
    pub ip_address_type: Option<IpAddressType>,
}

/// A key and value attached to the workforce in AWS.
// The patterns name no Unicode categories such as `\p{L}`, because some validators cannot
// read them (Python's `re` among them). So they reject only control
// characters and ASCII punctuation, and the descriptions state the rest.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceTag {
    /// 1 to 128 letters, digits, spaces and `_ . : / = + - @`, not starting with `aws:`. The
    /// pattern excludes only control characters and ASCII punctuation. The service also rejects
    /// other symbols, such as emoji and punctuation outside ASCII, with 422.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r##"^(?![aA][wW][sS]:)[^\x00-\x1f\x7f-\x9f!"#$%&'()*,;<>?\[\\\]^`{|}~]+$"##
    )]
    pub key: String,
    /// Up to 256 letters, digits, spaces and `_ . : / = + - @`. The pattern excludes only
    /// control characters and ASCII punctuation. The service also rejects other symbols, such as
    /// emoji and punctuation outside ASCII, with 422.
    #[schema(
        max_length = 256,
        pattern = r##"^[^\x00-\x1f\x7f-\x9f!"#$%&'()*,;<>?\[\\\]^`{|}~]*$"##
    )]
    pub value: String,
}

/// A new private workforce. Set exactly one of `cognito_config` and `oidc_config`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "name": "labelers",
    "cognito_config": {"user_pool": "us-east-1_AbC123", "client_id": "portal"},
    "vpc_config": {
        "vpc_id": "vpc-0a10000000000000a",
        "security_group_ids": ["sg-0a10000000000001a"],
        "subnets": ["subnet-0a10000000000001a", "subnet-0a10000000000002a"]
    },
    "source_ip_config": {"cidrs": ["10.0.0.0/16"]},
    "tags": [{"key": "team", "value": "vision"}]
}))]
pub struct CreateWorkforceRequest {
    /// 1 to 63 letters, digits and hyphens, starting with a letter or digit.
    #[schema(pattern = "^[a-zA-Z0-9][a-zA-Z0-9-]{0,62}$")]
    pub name: String,
    #[serde(default)]
    pub cognito_config: Option<CognitoConfigBody>,
    #[serde(default)]
    pub oidc_config: Option<OidcConfigRequest>,
    #[serde(default)]
    pub vpc_config: Option<VpcConfigRequest>,
    #[serde(default)]
    pub source_ip_config: Option<SourceIpConfigRequest>,
    /// Up to 50 tags.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub tags: Vec<ResourceTag>,
    /// `ipv4` (the default) or `dualstack`, which also allows IPv6 CIDR blocks.
    #[serde(default)]
    pub ip_address_type: Option<IpAddressType>,
}

/// Adds the rule "exactly one of `cognito_config` and `oidc_config` is an object" to the
/// schema of [`CreateWorkforceRequest`], which the derive cannot express. A member sent as
/// null counts as absent, as serde reads it.
pub(crate) struct OneAuthConfig;

impl utoipa::Modify for OneAuthConfig {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{AllOfBuilder, OneOfBuilder, Schema};
        use utoipa::openapi::{ObjectBuilder, RefOr, Type};

        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let Some(create) = components.schemas.remove("CreateWorkforceRequest") else {
            return;
        };
        let only = |member: &str| {
            ObjectBuilder::new()
                .property(member, ObjectBuilder::new().schema_type(Type::Object))
                .required(member)
        };
        let one_of = OneOfBuilder::new()
            .item(only("cognito_config"))
            .item(only("oidc_config"));
        let schema = AllOfBuilder::new().item(create).item(one_of).build();
        components.schemas.insert(
            "CreateWorkforceRequest".to_owned(),
            RefOr::T(Schema::AllOf(schema)),
        );
    }
}

/// A create request after validation.
pub struct ValidCreate {
    pub name: WorkforceName,
    pub change: Change,
    pub secret: Option<OidcSecret>,
}

impl CreateWorkforceRequest {
    pub fn validate(&self) -> Result<ValidCreate, Vec<FieldError>> {
        let mut violations = Violations::default();
        let name = violations.check(WorkforceName::parse("name", &self.name));
        let cognito = match (&self.cognito_config, &self.oidc_config) {
            (Some(_), Some(_)) => {
                violations.push(
                    "oidc_config",
                    "set either cognito_config or oidc_config, not both",
                );
                None
            }
            (None, None) => {
                violations.push(
                    "cognito_config",
                    "set exactly one of cognito_config and oidc_config",
                );
                None
            }
            (Some(cognito), None) => CognitoConfig::parse(
                "cognito_config",
                &cognito.user_pool,
                &cognito.client_id,
                &mut violations,
            ),
            (None, Some(_)) => None,
        };
        let oidc = self
            .oidc_config
            .as_ref()
            .filter(|_| self.cognito_config.is_none())
            .and_then(|o| o.parse("oidc_config", &mut violations));
        let ip_address_type = self.ip_address_type.unwrap_or_default();
        let vpc_config = self
            .vpc_config
            .as_ref()
            .map(|v| v.parse("vpc_config", &mut violations));
        let source_ip_config = self.source_ip_config.as_ref().map(|s| {
            SourceIpConfig::parse(
                "source_ip_config.cidrs",
                &s.cidrs,
                ip_address_type,
                &mut violations,
            )
        });
        let tag_pairs: Vec<(String, String)> = self
            .tags
            .iter()
            .map(|t| (t.key.clone(), t.value.clone()))
            .collect();
        let tags = Tag::parse_list("tags", &tag_pairs, &mut violations);
        if !violations.is_empty() {
            return Err(violations.into_errors());
        }
        let (Some(name), Some(tags)) = (name, tags) else {
            unreachable!("no violations means every part parsed")
        };
        let secret = oidc.as_ref().map(|o| o.client_secret.clone());
        Ok(ValidCreate {
            name,
            change: Change::CreateWorkforce {
                cognito_config: cognito,
                oidc_config: oidc.map(|o| o.settings),
                vpc_config: vpc_config.flatten(),
                source_ip_config: source_ip_config.flatten(),
                tags,
                ip_address_type: self.ip_address_type,
            },
            secret,
        })
    }
}

/// The OIDC settings of a workforce, without the client secret.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OidcConfigResponse {
    pub client_id: String,
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub user_info_endpoint: String,
    pub logout_endpoint: String,
    pub jwks_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default)]
    pub authentication_request_extra_params: BTreeMap<String, String>,
}

/// A workforce's VPC configuration with the interface endpoint Ground Truth created for it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VpcConfigResponse {
    pub vpc_id: String,
    pub security_group_ids: Vec<String>,
    pub subnets: Vec<String>,
    /// Set by SageMaker once the workforce is `Active` with this configuration.
    #[serde(default)]
    pub vpc_endpoint_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SourceIpConfigResponse {
    pub cidrs: Vec<String>,
}

/// A private workforce as last seen in SageMaker.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkforceResponse {
    pub region: String,
    pub name: String,
    /// Set once SageMaker has created the workforce.
    pub arn: Option<String>,
    /// SageMaker's status: `Initializing`, `Updating`, `Deleting`, `Failed` or `Active`; null
    /// until SageMaker has been asked to create the workforce.
    pub status: Option<String>,
    /// SageMaker's reason when the status is `Failed`.
    pub failure_reason: Option<String>,
    /// Subdomain of the worker portal.
    pub subdomain: Option<String>,
    /// `cognito` or `oidc`.
    pub auth_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cognito_config: Option<CognitoConfigBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_config: Option<OidcConfigResponse>,
    pub vpc_config: Option<VpcConfigResponse>,
    pub source_ip_config: SourceIpConfigResponse,
    /// The worker portal's IP address type. Only a `dualstack` workforce takes IPv6 blocks in
    /// its source-IP configuration.
    pub ip_address_type: IpAddressType,
    pub tags: Vec<ResourceTag>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the service last read this workforce from SageMaker.
    pub aws_refreshed_at: Option<DateTime<Utc>>,
    /// The change in progress, if any.
    pub operation_in_flight: Option<OperationResponse>,
}

impl WorkforceResponse {
    pub fn from_row(row: &WorkforceRow, in_flight: Option<&OperationRow>) -> Self {
        let cognito_config = row
            .auth_config
            .get("cognito_config")
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        let oidc_config = row
            .auth_config
            .get("oidc_config")
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        Self {
            region: row.region.clone(),
            name: row.name.clone(),
            arn: row.arn.clone(),
            status: row.aws_status.clone(),
            failure_reason: row.failure_reason.clone(),
            subdomain: row.subdomain.clone(),
            auth_type: row.auth_kind.clone(),
            cognito_config,
            oidc_config,
            vpc_config: row
                .vpc_config
                .as_ref()
                .and_then(|v| serde_json::from_value(v.clone()).ok()),
            source_ip_config: SourceIpConfigResponse {
                cidrs: row.source_ip_cidrs.clone(),
            },
            ip_address_type: IpAddressType::parse(&row.ip_address_type).unwrap_or_default(),
            tags: serde_json::from_value(row.tags.clone()).unwrap_or_default(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            aws_refreshed_at: row.aws_refreshed_at,
            operation_in_flight: in_flight.map(OperationResponse::from_row),
        }
    }
}

/// The reason an operation failed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OperationFailure {
    /// AWS's error code (such as `ValidationException`), `WorkforceFailed` when SageMaker
    /// reported the workforce `Failed`, or `OperationTimedOut`.
    pub code: String,
    pub message: String,
}

/// A long-running change of a workforce.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OperationResponse {
    pub id: Uuid,
    pub kind: OperationKind,
    pub status: OperationStatus,
    pub region: String,
    pub workforce_name: String,
    /// The workforce status SageMaker last reported while this operation ran.
    pub aws_status: Option<String>,
    pub failure: Option<OperationFailure>,
    /// The requested change, without secrets.
    #[schema(value_type = Object)]
    pub change: Value,
    /// Findings of the VPC prerequisite checks, when the change has a VPC configuration.
    #[schema(value_type = Vec<crate::vpc_checks::Finding>)]
    pub findings: Value,
    /// Worker steps run for this operation so far, such as its submission and each status read
    /// of SageMaker. Its changes and those of `updated_at` alone leave the `ETag` as it was.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub deadline_at: DateTime<Utc>,
    pub request_id: Option<String>,
    pub actor: String,
}

impl OperationResponse {
    pub fn from_row(row: &OperationRow) -> Self {
        let mut change = row.request.clone();
        if let Value::Object(map) = &mut change {
            map.remove("kind");
        }
        Self {
            id: row.id,
            kind: OperationKind::parse(&row.kind).unwrap_or(OperationKind::CreateWorkforce),
            status: OperationStatus::parse(&row.status).unwrap_or(OperationStatus::Pending),
            region: row.region.clone(),
            workforce_name: row.workforce_name.clone(),
            aws_status: row.aws_status.clone(),
            failure: row.failure_code.as_ref().map(|code| OperationFailure {
                code: code.clone(),
                message: row.failure_message.clone().unwrap_or_default(),
            }),
            change,
            findings: row.findings.clone(),
            attempts: row.attempts,
            created_at: row.created_at,
            updated_at: row.updated_at,
            submitted_at: row.submitted_at,
            finished_at: row.finished_at,
            deadline_at: row.deadline_at,
            request_id: row.request_id.clone(),
            actor: row.actor.clone(),
        }
    }
}

/// One entry of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEventResponse {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    /// API key name, token subject, `system` for the service and its workers, or
    /// `command-line` for the service's command line.
    pub actor: String,
    /// `api_key`, `jwt`, `command_line` (the service's command line), `system` (the service
    /// and its workers), or `anonymous` for an event written without a known kind of caller.
    pub actor_kind: String,
    /// The role that allowed the request, for changes made by callers.
    pub actor_role: Option<String>,
    /// The event, such as `workforce.create.requested` or `operation.succeeded`.
    pub action: String,
    /// `accepted`, `rejected`, `denied` (for `access.denied`), `started`, `submitted`,
    /// `succeeded`, `failed` or `removed` (for `workforce.vanished`).
    pub outcome: String,
    pub region: Option<String>,
    pub workforce_name: Option<String>,
    pub operation_id: Option<Uuid>,
    pub request_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub before: Option<Box<RawValue>>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<Box<RawValue>>,
    #[schema(value_type = Option<Object>)]
    pub detail: Option<Box<RawValue>>,
}

impl From<AuditEventRow> for AuditEventResponse {
    fn from(row: AuditEventRow) -> Self {
        Self {
            id: row.id,
            occurred_at: row.occurred_at,
            actor: row.actor,
            actor_kind: row.actor_kind,
            actor_role: row.actor_role,
            action: row.action,
            outcome: row.outcome,
            region: row.region,
            workforce_name: row.workforce_name,
            operation_id: row.operation_id,
            request_id: row.request_id,
            before: row.before_state.map(|json| json.0),
            after: row.after_state.map(|json| json.0),
            detail: row.detail.map(|json| json.0),
        }
    }
}

/// A page of workforces.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkforceListResponse {
    pub items: Vec<WorkforceResponse>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A page of operations, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OperationListResponse {
    pub items: Vec<OperationResponse>,
    pub next_cursor: Option<String>,
}

/// A page of audit events, newest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEventListResponse {
    pub items: Vec<AuditEventResponse>,
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::CreateWorkforceRequest;
    use crate::config::DEFAULT_MAX_BODY_BYTES;

    /// Writes `text` as a JSON string with every character as a `\u` escape, so that a
    /// character outside the Basic Multilingual Plane takes 12 bytes.
    fn escape_string(text: &str, out: &mut String) {
        out.push('"');
        for unit in text.encode_utf16() {
            out.push_str(&format!("\\u{unit:04x}"));
        }
        out.push('"');
    }

    /// Writes `value` as compact JSON whose strings, member names included, are fully escaped.
    fn escape_all(value: &Value, out: &mut String) {
        match value {
            Value::String(text) => escape_string(text, out),
            Value::Array(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    escape_all(item, out);
                }
                out.push(']');
            }
            Value::Object(members) => {
                out.push('{');
                for (index, (name, member)) in members.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    escape_string(name, out);
                    out.push(':');
                    escape_all(member, out);
                }
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }

    /// Builds a create request with every field at its maximum length. Tags and OIDC extra
    /// parameters use U+20000 and its neighbours, letters outside the Basic Multilingual Plane.
    fn largest_create_request() -> Value {
        let letter = |offset: u32| char::from_u32(0x20000 + offset).expect("a CJK letter");
        let repeated = |count: usize| letter(0).to_string().repeat(count);
        let url = format!("https://idp.example.com/{}", "p".repeat(476));
        let ascii = "a".repeat(1024);
        let mut extra_params = Map::new();
        for index in 0..10 {
            extra_params.insert(
                format!("{}{}", repeated(511), letter(index + 1)),
                Value::String(repeated(512)),
            );
        }
        let tags: Vec<Value> = (0..50)
            .map(|index| {
                json!({"key": format!("{}{}", repeated(127), letter(index + 1)), "value": repeated(256)})
            })
            .collect();
        json!({
            "name": "a".repeat(63),
            "cognito_config": null,
            "oidc_config": {
                "client_id": ascii,
                "client_secret": ascii,
                "issuer": url,
                "authorization_endpoint": url,
                "token_endpoint": url,
                "user_info_endpoint": url,
                "logout_endpoint": url,
                "jwks_uri": url,
                "scope": ascii,
                "authentication_request_extra_params": extra_params,
            },
            "vpc_config": {
                "vpc_id": format!("vpc-{}", "a".repeat(28)),
                "security_group_ids": (0..5).map(|i| format!("sg-{}{i}", "a".repeat(28))).collect::<Vec<_>>(),
                "subnets": (0..16).map(|i| format!("subnet-{}{i:x}", "a".repeat(24))).collect::<Vec<_>>(),
            },
            "source_ip_config": {
                "cidrs": (0..10).map(|i| format!("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff{i}/128")).collect::<Vec<_>>(),
            },
            "tags": tags,
            "ip_address_type": "dualstack",
        })
    }

    #[test]
    fn cidr_pattern_matches_parser() {
        use crate::domain::{Cidr, IpAddressType};

        let pattern = regex::Regex::new(&super::cidr_pattern()).expect("the pattern compiles");
        let mut cases: Vec<String> = [
            "10.0.0.0/16",
            "0.0.0.0/0",
            "255.255.255.255/32",
            "10.0.0.0/33",
            "010.0.0.0/8",
            "10.0.0/8",
            "10.0.0.0/08",
            "::/0",
            "::/128",
            "::/129",
            "2001:db8::/32",
            "2001:DB8::/32",
            "2001:db8::1/128",
            "2001:0db8:0000:0000:0000:0000:0000:0001/64",
            "::ffff:192.0.2.1/128",
            "64:ff9b::192.0.2.1/96",
            "1:2:3:4:5:6:192.0.2.1/128",
            "1:2:3:4:5:6:7::/112",
            "::2:3:4:5:6:7:8/112",
            "1::8/64",
            "2001:db8::/032",
            "2001:db8:::/32",
            "2001:db8::1::/32",
            "1:2:3:4:5:6:7:8:9/128",
            "1:2:3:4:5:6:7/128",
            "12345::/16",
            "2001:db8::/",
            "2001:db8::",
            "fe80::1%eth0/64",
            "::ffff:192.0.2.01/128",
        ]
        .iter()
        .map(|case| (*case).to_owned())
        .collect();
        // Every way `Ipv6Addr` writes an address with runs of zero groups in different places.
        for mask in 0u8..=255 {
            let groups: Vec<u16> = (0..8)
                .map(|bit| {
                    if mask & (1 << bit) == 0 {
                        0
                    } else {
                        0xab0 + bit
                    }
                })
                .collect();
            let groups: [u16; 8] = groups.try_into().expect("8 groups");
            let address = std::net::Ipv6Addr::from(groups);
            cases.push(format!("{address}/{}", mask % 129));
        }

        for case in &cases {
            let parsed = Cidr::parse("cidr", case, IpAddressType::Dualstack).is_ok();
            assert_eq!(pattern.is_match(case), parsed, "{case}");
        }
    }

    #[test]
    fn largest_create_body_fits_default_limit() {
        let mut body = String::new();
        escape_all(&largest_create_request(), &mut body);

        let request: CreateWorkforceRequest =
            serde_json::from_str(&body).expect("the body deserializes");
        let errors = request.validate().err().unwrap_or_default();
        assert!(errors.is_empty(), "{errors:?}");
        // The number that the doc comment of DEFAULT_MAX_BODY_BYTES states.
        assert_eq!(body.len(), 401_852);
        assert!(body.len() <= DEFAULT_MAX_BODY_BYTES);
    }
}
