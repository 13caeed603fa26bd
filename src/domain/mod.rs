//! Validated domain types: identifiers, VPC and auth settings, tags and CIDRs.
//!
//! Request bodies arrive as plain strings and become these types at the HTTP edge, so the rest
//! of the service never re-checks a string. Each rule mirrors a constraint of the SageMaker API
//! model, so a request that SageMaker would reject is rejected before anything is stored.

mod auth;
mod ids;
mod network;
mod operation;
mod tags;

pub use auth::{CognitoConfig, OidcConfig, OidcFields, OidcSecret, OidcSettings, oidc_fields};
pub(crate) use ids::truncate_for_message;
pub use ids::{Region, SecurityGroupId, SubnetId, VpcId, WorkforceName};
pub use network::{
    Cidr, IpAddressType, MAX_CIDRS, MAX_SECURITY_GROUPS, MAX_SUBNETS, SourceIpConfig, VpcConfig,
};
pub use operation::{Change, OperationKind, OperationStatus};
pub use tags::Tag;

/// Deserializes a unit enum from its name, and only from a string. serde's derived form also
/// accepts a one-key object such as `{"ipv4": null}`, and reports a number as a syntax error
/// that names no field.
pub(crate) fn deserialize_name<'de, D, T>(
    deserializer: D,
    parse: fn(&str) -> Option<T>,
    names: &'static [&'static str],
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let name = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
    parse(&name).ok_or_else(|| serde::de::Error::unknown_variant(&name, names))
}

/// One rejected field of a request: where it is (a JSON path such as `vpc_config.subnets[1]`)
/// and why it was rejected.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON path of the rejected value within the request, or the parameter name.
    pub field: String,
    /// Explanation of what is wrong with the value and what a valid one looks like.
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Collects field errors while a request is checked, so that one response names all of them.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    pub fn push(&mut self, field: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldError::new(field, reason));
    }

    /// Records the error of a parse result and returns its value, if any.
    pub fn check<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.0.push(error);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Returns `value` when nothing was recorded, else every recorded error.
    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(self.0)
        }
    }

    pub fn into_errors(self) -> Vec<FieldError> {
        self.0
    }
}

/// Checks that `value` has between `min` and `max` characters.
pub(crate) fn check_length(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
) -> Result<(), FieldError> {
    let length = value.chars().count();
    if length < min || length > max {
        let expected = if min == max {
            format!("exactly {min}")
        } else {
            format!("between {min} and {max}")
        };
        return Err(FieldError::new(
            field,
            format!("must have {expected} characters, but has {length}"),
        ));
    }
    Ok(())
}

/// Checks that every character of `value` is printable ASCII (the model's `[ -~]+`).
pub(crate) fn check_printable_ascii(field: &str, value: &str) -> Result<(), FieldError> {
    if value.chars().all(|c| (' '..='~').contains(&c)) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            "must contain only printable ASCII characters",
        ))
    }
}

/// Returns the path of a member of `parent` for error messages, such as `vpc_config.subnets`.
/// An empty parent stands for the request body itself.
pub fn member(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}
