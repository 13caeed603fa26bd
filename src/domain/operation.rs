//! Operations: the long-running changes that workers submit to SageMaker.

use serde::{Deserialize, Serialize};

use super::{CognitoConfig, IpAddressType, OidcSettings, SourceIpConfig, Tag, VpcConfig};

/// The kind of change an operation makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    CreateWorkforce,
    DeleteWorkforce,
    PutVpcConfig,
    DeleteVpcConfig,
    PutSourceIpConfig,
    PutOidcConfig,
}

impl OperationKind {
    pub const ALL: [OperationKind; 6] = [
        Self::CreateWorkforce,
        Self::DeleteWorkforce,
        Self::PutVpcConfig,
        Self::DeleteVpcConfig,
        Self::PutSourceIpConfig,
        Self::PutOidcConfig,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateWorkforce => "create_workforce",
            Self::DeleteWorkforce => "delete_workforce",
            Self::PutVpcConfig => "put_vpc_config",
            Self::DeleteVpcConfig => "delete_vpc_config",
            Self::PutSourceIpConfig => "put_source_ip_config",
            Self::PutOidcConfig => "put_oidc_config",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == value)
    }
}

/// The stage of an operation's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationStatus {
    /// Accepted and stored; no worker has started it.
    Pending,
    /// A worker has started it and is submitting it or waiting for SageMaker.
    Running,
    /// SageMaker reported the change done.
    Succeeded,
    /// SageMaker rejected the change, reported the workforce `Failed`, or the deadline passed.
    Failed,
}

impl OperationStatus {
    pub const ALL: [OperationStatus; 4] =
        [Self::Pending, Self::Running, Self::Succeeded, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
    }
}

/// The change an operation applies, as stored with it. It never contains the OIDC client
/// secret, which is sealed separately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    CreateWorkforce {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cognito_config: Option<CognitoConfig>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        oidc_config: Option<OidcSettings>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vpc_config: Option<VpcConfig>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source_ip_config: Option<SourceIpConfig>,
        #[serde(default)]
        tags: Vec<Tag>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip_address_type: Option<IpAddressType>,
    },
    DeleteWorkforce,
    PutVpcConfig {
        vpc_config: VpcConfig,
    },
    DeleteVpcConfig,
    PutSourceIpConfig {
        source_ip_config: SourceIpConfig,
        /// A new address type for the workforce, sent in the same call; `None` keeps it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip_address_type: Option<IpAddressType>,
    },
    PutOidcConfig {
        oidc_config: OidcSettings,
    },
}

impl Change {
    pub fn kind(&self) -> OperationKind {
        match self {
            Self::CreateWorkforce { .. } => OperationKind::CreateWorkforce,
            Self::DeleteWorkforce => OperationKind::DeleteWorkforce,
            Self::PutVpcConfig { .. } => OperationKind::PutVpcConfig,
            Self::DeleteVpcConfig => OperationKind::DeleteVpcConfig,
            Self::PutSourceIpConfig { .. } => OperationKind::PutSourceIpConfig,
            Self::PutOidcConfig { .. } => OperationKind::PutOidcConfig,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for kind in OperationKind::ALL {
            assert_eq!(OperationKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, kind.as_str());
        }
    }

    #[test]
    fn change_serializes_with_kind_tag() {
        let json = serde_json::to_value(Change::DeleteVpcConfig).unwrap();
        assert_eq!(json, serde_json::json!({"kind": "delete_vpc_config"}));
    }
}
