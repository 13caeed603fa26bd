//! Network settings: the workforce's VPC configuration and the source-IP allow-list.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::ids::truncate_for_message;
use super::{FieldError, SecurityGroupId, SubnetId, Violations, VpcId};

/// Security groups per workforce VPC configuration, from the SageMaker model (`1..5`).
pub const MAX_SECURITY_GROUPS: usize = 5;
/// Subnets per workforce VPC configuration, from the SageMaker model (`1..16`).
pub const MAX_SUBNETS: usize = 16;
/// CIDRs per source-IP allow-list, from the `UpdateWorkforce` documentation ("Maximum: Ten").
pub const MAX_CIDRS: usize = 10;

/// The VPC in which Ground Truth creates the worker portal's interface endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpcConfig {
    pub vpc_id: VpcId,
    pub security_group_ids: Vec<SecurityGroupId>,
    pub subnets: Vec<SubnetId>,
}

impl VpcConfig {
    /// Parses a VPC configuration, recording every invalid member under `field`.
    pub fn parse(
        field: &str,
        vpc_id: &str,
        security_group_ids: &[String],
        subnets: &[String],
        violations: &mut Violations,
    ) -> Option<Self> {
        let vpc_id = violations.check(VpcId::parse(&super::member(field, "vpc_id"), vpc_id));
        let security_group_ids = parse_id_list(
            &super::member(field, "security_group_ids"),
            security_group_ids,
            MAX_SECURITY_GROUPS,
            SecurityGroupId::parse,
            violations,
        );
        let subnets = parse_id_list(
            &super::member(field, "subnets"),
            subnets,
            MAX_SUBNETS,
            SubnetId::parse,
            violations,
        );
        Some(Self {
            vpc_id: vpc_id?,
            security_group_ids: security_group_ids?,
            subnets: subnets?,
        })
    }

    /// Returns true when `other` names the same VPC, security groups and subnets, in any order.
    pub fn same_resources(&self, other: &VpcConfig) -> bool {
        fn set<T: AsRef<str>>(items: &[T]) -> HashSet<&str> {
            items.iter().map(AsRef::as_ref).collect()
        }
        self.vpc_id == other.vpc_id
            && set(&self.security_group_ids) == set(&other.security_group_ids)
            && set(&self.subnets) == set(&other.subnets)
    }
}

fn parse_id_list<T>(
    field: &str,
    values: &[String],
    max: usize,
    parse: fn(&str, &str) -> Result<T, FieldError>,
    violations: &mut Violations,
) -> Option<Vec<T>> {
    let mut ok = true;
    if values.is_empty() || values.len() > max {
        violations.push(
            field,
            format!(
                "must list between 1 and {max} ids, but lists {}",
                values.len()
            ),
        );
        ok = false;
    }
    let mut seen = HashSet::new();
    let mut parsed = Vec::with_capacity(values.len());
    for (index, value) in values.iter().enumerate() {
        let item_field = format!("{field}[{index}]");
        if !seen.insert(value.as_str()) {
            violations.push(
                &item_field,
                format!(
                    "'{}' is listed twice; list each id once",
                    truncate_for_message(value)
                ),
            );
            ok = false;
            continue;
        }
        match parse(&item_field, value) {
            Ok(id) => parsed.push(id),
            Err(error) => {
                violations.push(error.field, error.reason);
                ok = false;
            }
        }
    }
    ok.then_some(parsed)
}

/// The IP address type of the worker portal, as SageMaker's `WorkforceIpAddressType`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IpAddressType {
    #[default]
    Ipv4,
    Dualstack,
}

impl IpAddressType {
    pub fn as_aws_str(self) -> &'static str {
        match self {
            Self::Ipv4 => "ipv4",
            Self::Dualstack => "dualstack",
        }
    }

    /// Parses the form that [`Self::as_aws_str`] writes.
    pub fn parse(value: &str) -> Option<Self> {
        [Self::Ipv4, Self::Dualstack]
            .into_iter()
            .find(|kind| kind.as_aws_str() == value)
    }
}

impl<'de> Deserialize<'de> for IpAddressType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        super::deserialize_name(deserializer, Self::parse, &["ipv4", "dualstack"])
    }
}

/// An IPv4 or IPv6 CIDR block, kept as written by the caller (host bits are allowed, as in AWS).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cidr(String);

impl Cidr {
    pub fn parse(
        field: &str,
        value: &str,
        ip_address_type: IpAddressType,
    ) -> Result<Self, FieldError> {
        let invalid = || {
            FieldError::new(
                field,
                format!(
                    "'{}' is not a CIDR block; expected an address and a prefix length such as 10.0.0.0/16",
                    truncate_for_message(value)
                ),
            )
        };
        // The model bounds a CIDR to 4..64 characters.
        if !(4..=64).contains(&value.len()) {
            return Err(invalid());
        }
        let (address, prefix) = value.split_once('/').ok_or_else(invalid)?;
        // ipnet accepts a prefix with leading zeros or a sign; the AWS pattern does not.
        if prefix.is_empty()
            || prefix.len() > 3
            || !prefix.bytes().all(|b| b.is_ascii_digit())
            || (prefix.len() > 1 && prefix.starts_with('0'))
        {
            return Err(invalid());
        }
        IpNet::from_str(value).map_err(|_| invalid())?;
        let address: IpAddr = address.parse().map_err(|_| invalid())?;
        if address.is_ipv6() && ip_address_type == IpAddressType::Ipv4 {
            return Err(FieldError::new(
                field,
                format!("'{value}' is an IPv6 CIDR block, which needs ip_address_type 'dualstack'"),
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Cidr {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The CIDR blocks allowed to reach the public worker portal; empty means unrestricted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceIpConfig {
    pub cidrs: Vec<Cidr>,
}

impl SourceIpConfig {
    pub fn parse(
        field: &str,
        cidrs: &[String],
        ip_address_type: IpAddressType,
        violations: &mut Violations,
    ) -> Option<Self> {
        let mut ok = true;
        if cidrs.len() > MAX_CIDRS {
            violations.push(
                field,
                format!(
                    "must list at most {MAX_CIDRS} CIDR blocks, but lists {}",
                    cidrs.len()
                ),
            );
            ok = false;
        }
        let mut seen = HashMap::new();
        let mut parsed = Vec::with_capacity(cidrs.len());
        for (index, value) in cidrs.iter().enumerate() {
            let item_field = format!("{field}[{index}]");
            let Some(cidr) = violations.check(Cidr::parse(&item_field, value, ip_address_type))
            else {
                ok = false;
                continue;
            };
            // Compared as address and prefix, so that IPv6 blocks that differ only in case
            // or in the zeros they leave out are the same block.
            let block = IpNet::from_str(cidr.as_str()).expect("a parsed CIDR block");
            if let Some(&first) = seen.get(&block) {
                violations.push(
                    item_field,
                    format!(
                        "'{}' is the block of {field}[{first}] again; list each CIDR block once",
                        truncate_for_message(value)
                    ),
                );
                ok = false;
                continue;
            }
            seen.insert(block, index);
            parsed.push(cidr);
        }
        ok.then_some(Self { cidrs: parsed })
    }

    /// Returns true when both lists hold the same CIDR blocks, in any order.
    pub fn same_cidrs(&self, cidrs: &[String]) -> bool {
        let mine: HashSet<&str> = self.cidrs.iter().map(Cidr::as_str).collect();
        let theirs: HashSet<&str> = cidrs.iter().map(String::as_str).collect();
        mine == theirs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn cidr_accepts_ipv4_blocks() {
        for value in ["10.0.0.0/16", "1.1.1.1/32", "0.0.0.0/0", "10.0.0.1/8"] {
            assert!(
                Cidr::parse("c", value, IpAddressType::Ipv4).is_ok(),
                "{value}"
            );
        }
    }

    #[test]
    fn cidr_rejects_malformed_blocks() {
        for value in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0/16",
            "010.0.0.0/8",
            "10.0.0.0/08",
            "a.b.c.d/1",
            "1.1.1.1/+3",
            "",
        ] {
            assert!(
                Cidr::parse("c", value, IpAddressType::Ipv4).is_err(),
                "{value}"
            );
        }
    }

    #[test]
    fn ipv6_cidr_needs_dualstack() {
        assert!(Cidr::parse("c", "2001:db8::/32", IpAddressType::Ipv4).is_err());
        assert!(Cidr::parse("c", "2001:db8::/32", IpAddressType::Dualstack).is_ok());
    }

    #[test]
    fn source_ip_config_limits_count_and_duplicates() {
        let mut violations = Violations::default();
        let eleven: Vec<String> = (0..11).map(|i| format!("10.0.{i}.0/24")).collect();
        assert!(
            SourceIpConfig::parse("cidrs", &eleven, IpAddressType::Ipv4, &mut violations).is_none()
        );

        let mut violations = Violations::default();
        let twice = strings(&["10.0.0.0/16", "10.0.0.0/16"]);
        assert!(
            SourceIpConfig::parse("cidrs", &twice, IpAddressType::Ipv4, &mut violations).is_none()
        );
        assert_eq!(violations.into_errors()[0].field, "cidrs[1]");

        // The same IPv6 block in other case and with the zeros written out.
        let mut violations = Violations::default();
        let spelled = strings(&["2001:db8::/32", "10.0.0.0/8", "2001:DB8:0:0::/32"]);
        assert!(
            SourceIpConfig::parse("cidrs", &spelled, IpAddressType::Dualstack, &mut violations)
                .is_none()
        );
        let errors = violations.into_errors();
        assert_eq!(errors[0].field, "cidrs[2]");
        assert!(errors[0].reason.contains("cidrs[0]"), "{errors:?}");

        // Host bits make another block, as in AWS.
        let mut violations = Violations::default();
        let hosts = strings(&["10.0.0.0/8", "10.0.0.1/8"]);
        assert!(
            SourceIpConfig::parse("cidrs", &hosts, IpAddressType::Ipv4, &mut violations).is_some()
        );
    }

    #[test]
    fn empty_source_ip_config_is_valid() {
        let mut violations = Violations::default();
        let parsed = SourceIpConfig::parse("cidrs", &[], IpAddressType::Ipv4, &mut violations);
        assert_eq!(parsed, Some(SourceIpConfig::default()));
    }

    #[test]
    fn vpc_config_checks_list_sizes() {
        let mut violations = Violations::default();
        let six_groups: Vec<String> = (1..=6).map(|i| format!("sg-{i}")).collect();
        let parsed = VpcConfig::parse(
            "vpc_config",
            "vpc-1",
            &six_groups,
            &strings(&["subnet-1"]),
            &mut violations,
        );
        assert!(parsed.is_none());
        assert_eq!(
            violations.into_errors()[0].field,
            "vpc_config.security_group_ids"
        );

        let mut violations = Violations::default();
        let parsed = VpcConfig::parse(
            "vpc_config",
            "vpc-1",
            &strings(&["sg-1"]),
            &[],
            &mut violations,
        );
        assert!(parsed.is_none());
        assert_eq!(violations.into_errors()[0].field, "vpc_config.subnets");
    }

    #[test]
    fn vpc_config_names_each_bad_member() {
        let mut violations = Violations::default();
        let parsed = VpcConfig::parse(
            "vpc_config",
            "vpc_1",
            &strings(&["sg-1", "sg-1"]),
            &strings(&["subnet-1", "net-2"]),
            &mut violations,
        );
        assert!(parsed.is_none());
        let fields: Vec<String> = violations
            .into_errors()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "vpc_config.vpc_id",
                "vpc_config.security_group_ids[1]",
                "vpc_config.subnets[1]"
            ]
        );
    }

    #[test]
    fn vpc_config_comparison_ignores_order() {
        let mut violations = Violations::default();
        let a = VpcConfig::parse(
            "v",
            "vpc-1",
            &strings(&["sg-1", "sg-2"]),
            &strings(&["subnet-1", "subnet-2"]),
            &mut violations,
        )
        .unwrap();
        let b = VpcConfig::parse(
            "v",
            "vpc-1",
            &strings(&["sg-2", "sg-1"]),
            &strings(&["subnet-2", "subnet-1"]),
            &mut violations,
        )
        .unwrap();
        assert!(a.same_resources(&b));
    }
}
