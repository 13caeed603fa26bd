//! Identifiers: AWS regions, workforce names and EC2 resource ids.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{FieldError, check_length};

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// An AWS region code such as `us-east-1`.
    Region
);
string_newtype!(
    /// A SageMaker workforce name: 1 to 63 characters, letters, digits and hyphens, starting
    /// with a letter or digit (the model's `[a-zA-Z0-9]([a-zA-Z0-9\-]){0,62}`, matched whole).
    WorkforceName
);
string_newtype!(
    /// A VPC id such as `vpc-0a10000000000000a`.
    VpcId
);
string_newtype!(
    /// A subnet id such as `subnet-0a10000000000001a`.
    SubnetId
);
string_newtype!(
    /// A security group id such as `sg-0a10000000000001a`.
    SecurityGroupId
);

impl Region {
    /// Parses a region code: lowercase letter groups joined by hyphens, ending in a number,
    /// as in `us-east-1`, `eu-central-2` or `us-gov-west-1`.
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        let groups: Vec<&str> = value.split('-').collect();
        let valid = value.len() <= 32
            && groups.len() >= 3
            && groups[..groups.len() - 1]
                .iter()
                .all(|group| !group.is_empty() && group.bytes().all(|b| b.is_ascii_lowercase()))
            && groups.last().is_some_and(|last| {
                !last.is_empty() && last.len() <= 2 && last.bytes().all(|b| b.is_ascii_digit())
            });
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(FieldError::new(
                field,
                format!(
                    "'{}' is not an AWS region code; expected a value such as us-east-1",
                    truncate_for_message(value)
                ),
            ))
        }
    }
}

impl WorkforceName {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        check_length(field, value, 1, 63)?;
        let mut bytes = value.bytes();
        let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric());
        let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if first_ok && rest_ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(FieldError::new(
                field,
                "must start with a letter or digit and contain only letters, digits and hyphens",
            ))
        }
    }
}

/// Parses an EC2 id of the form `<prefix>-<lowercase letters and digits>`, at most 32
/// characters long, as the SageMaker model's patterns (`vpc-[0-9a-z]*` and so on) require.
fn parse_ec2_id(
    field: &str,
    value: &str,
    prefix: &str,
    example: &str,
) -> Result<String, FieldError> {
    let suffix = value
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'));
    let valid = value.len() <= 32
        && suffix.is_some_and(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        });
    if valid {
        Ok(value.to_owned())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "'{}' is not a valid {prefix} id; expected '{prefix}-' followed by lowercase letters and digits, at most 32 characters in all, such as {example}",
                truncate_for_message(value)
            ),
        ))
    }
}

/// Shortens a value from a caller to 64 characters and an ellipsis, and shows its control
/// characters as U+FFFD, so that an error message or an audit event stays readable and bounded.
pub(crate) fn truncate_for_message(value: &str) -> String {
    const MAX_CHARS: usize = 64;
    let shown = |c: char| if c.is_control() { '\u{fffd}' } else { c };
    let head: String = value.chars().take(MAX_CHARS).map(shown).collect();
    if value.chars().nth(MAX_CHARS).is_some() {
        format!("{head}…")
    } else {
        head
    }
}

impl VpcId {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        parse_ec2_id(field, value, "vpc", "vpc-0a10000000000000a").map(Self)
    }
}

impl SubnetId {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        parse_ec2_id(field, value, "subnet", "subnet-0a10000000000001a").map(Self)
    }
}

impl SecurityGroupId {
    pub fn parse(field: &str, value: &str) -> Result<Self, FieldError> {
        parse_ec2_id(field, value, "sg", "sg-0a10000000000001a").map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_copy_is_bounded_and_printable() {
        assert_eq!(truncate_for_message("us-east-1"), "us-east-1");
        assert_eq!(truncate_for_message("a\u{0}b\u{85}"), "a\u{fffd}b\u{fffd}");
        let exact = "x".repeat(64);
        assert_eq!(truncate_for_message(&exact), exact);
        let long = truncate_for_message(&"y".repeat(65));
        assert_eq!(long, format!("{}…", "y".repeat(64)));
    }

    #[test]
    fn workforce_name_accepts_model_examples() {
        for name in ["a", "labelers", "Team-1", "x-", &"a".repeat(63)] {
            assert!(WorkforceName::parse("name", name).is_ok(), "{name}");
        }
    }

    #[test]
    fn workforce_name_rejects_invalid_values() {
        for name in [
            "",
            "-lead",
            "has space",
            "under_score",
            "ünï",
            &"a".repeat(64),
            "a;drop",
        ] {
            assert!(WorkforceName::parse("name", name).is_err(), "{name}");
        }
    }

    #[test]
    fn region_accepts_real_codes() {
        for region in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "ap-southeast-4",
        ] {
            assert!(Region::parse("region", region).is_ok(), "{region}");
        }
    }

    #[test]
    fn region_rejects_other_strings() {
        for region in [
            "",
            "us-east",
            "US-EAST-1",
            "us_east_1",
            "us-east-1a",
            "us--1",
            "../etc",
        ] {
            assert!(Region::parse("region", region).is_err(), "{region}");
        }
    }

    #[test]
    fn ec2_ids_follow_model_patterns() {
        assert!(VpcId::parse("v", "vpc-0a10000000000000a").is_ok());
        assert!(SubnetId::parse("s", "subnet-abc123").is_ok());
        assert!(SecurityGroupId::parse("g", "sg-1").is_ok());
        assert!(VpcId::parse("v", "vpc-").is_err());
        assert!(VpcId::parse("v", "vpc-ABC").is_err());
        assert!(VpcId::parse("v", "subnet-abc").is_err());
        assert!(SubnetId::parse("s", &format!("subnet-{}", "a".repeat(26))).is_err());
        assert!(SecurityGroupId::parse("g", "sg-1'; drop table").is_err());
    }
}
