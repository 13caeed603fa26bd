//! Worker sign-in settings for the portal: an Amazon Cognito user pool or an OIDC identity provider.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::ids::truncate_for_message;
use super::{FieldError, Violations, check_length, check_printable_ascii};

/// The Cognito user pool and app client that sign workers in. SageMaker cannot change it after
/// creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CognitoConfig {
    pub user_pool: String,
    pub client_id: String,
}

impl CognitoConfig {
    pub fn parse(
        field: &str,
        user_pool: &str,
        client_id: &str,
        violations: &mut Violations,
    ) -> Option<Self> {
        let pool_field = format!("{field}.user_pool");
        let pool_ok = violations.check(
            check_length(&pool_field, user_pool, 1, 55)
                .and_then(|()| check_user_pool(&pool_field, user_pool)),
        );
        let client_field = format!("{field}.client_id");
        let client_ok = violations.check(
            check_length(&client_field, client_id, 1, 1024)
                .and_then(|()| check_printable_ascii(&client_field, client_id)),
        );
        pool_ok?;
        client_ok?;
        Some(Self {
            user_pool: user_pool.to_owned(),
            client_id: client_id.to_owned(),
        })
    }
}

/// Checks the model's user pool pattern `[\w-]+_[0-9a-zA-Z]+`, as in `us-east-1_AbC123`.
fn check_user_pool(field: &str, value: &str) -> Result<(), FieldError> {
    let word_chars = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let split_ok = value.rsplit_once('_').is_some_and(|(prefix, id)| {
        !prefix.is_empty() && !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if word_chars && split_ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "'{}' is not a Cognito user pool id; expected a value such as us-east-1_AbC123",
                truncate_for_message(value)
            ),
        ))
    }
}

/// The OIDC identity provider settings that may be stored and shown: everything but the client
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcSettings {
    pub client_id: String,
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub user_info_endpoint: String,
    pub logout_endpoint: String,
    pub jwks_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authentication_request_extra_params: BTreeMap<String, String>,
}

/// An OIDC client secret. Its `Debug` output is redacted so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct OidcSecret(String);

impl OidcSecret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OidcSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OidcSecret(<redacted>)")
    }
}

/// A complete OIDC configuration as SageMaker takes it: the settings and the client secret.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub settings: OidcSettings,
    pub client_secret: OidcSecret,
}

/// The raw OIDC fields of a request, borrowed for parsing.
pub struct OidcFields<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a str,
    pub issuer: &'a str,
    pub authorization_endpoint: &'a str,
    pub token_endpoint: &'a str,
    pub user_info_endpoint: &'a str,
    pub logout_endpoint: &'a str,
    pub jwks_uri: &'a str,
    pub scope: Option<&'a str>,
    pub authentication_request_extra_params: &'a BTreeMap<String, String>,
}

/// Builds the borrowed OIDC fields from the six endpoint URLs in the model's order: issuer,
/// authorization, token, user info, logout and JWKS.
pub fn oidc_fields<'a>(
    client_id: &'a str,
    client_secret: &'a str,
    urls: [&'a str; 6],
    scope: Option<&'a str>,
    authentication_request_extra_params: &'a BTreeMap<String, String>,
) -> OidcFields<'a> {
    let [
        issuer,
        authorization_endpoint,
        token_endpoint,
        user_info_endpoint,
        logout_endpoint,
        jwks_uri,
    ] = urls;
    OidcFields {
        client_id,
        client_secret,
        issuer,
        authorization_endpoint,
        token_endpoint,
        user_info_endpoint,
        logout_endpoint,
        jwks_uri,
        scope,
        authentication_request_extra_params,
    }
}

/// Extra authentication request parameters per OIDC configuration, from the SageMaker model.
const MAX_EXTRA_PARAMS: usize = 10;

impl OidcConfig {
    pub fn parse(field: &str, fields: OidcFields<'_>, violations: &mut Violations) -> Option<Self> {
        let mut ok = true;
        for (name, value) in [
            ("client_id", fields.client_id),
            ("client_secret", fields.client_secret),
        ] {
            let member = super::member(field, name);
            ok &= violations
                .check(
                    check_length(&member, value, 1, 1024)
                        .and_then(|()| check_printable_ascii(&member, value)),
                )
                .is_some();
        }
        for (name, value) in [
            ("issuer", fields.issuer),
            ("authorization_endpoint", fields.authorization_endpoint),
            ("token_endpoint", fields.token_endpoint),
            ("user_info_endpoint", fields.user_info_endpoint),
            ("logout_endpoint", fields.logout_endpoint),
            ("jwks_uri", fields.jwks_uri),
        ] {
            ok &= violations
                .check(check_https_url(&super::member(field, name), value))
                .is_some();
        }
        if let Some(scope) = fields.scope {
            ok &= violations
                .check(check_scope(&super::member(field, "scope"), scope))
                .is_some();
        }
        let params_field = super::member(field, "authentication_request_extra_params");
        let params = fields.authentication_request_extra_params;
        if params.len() > MAX_EXTRA_PARAMS {
            violations.push(
                &params_field,
                format!(
                    "must have at most {MAX_EXTRA_PARAMS} entries, but has {}",
                    params.len()
                ),
            );
            ok = false;
        }
        for (key, value) in params {
            // The key comes from the caller, so the error shows a bounded copy.
            let shown_key = truncate_for_message(key);
            let entry_field = format!("{params_field}.{shown_key}");
            // The model allows `.*`, and in Java's regex syntax `.` matches no line terminator,
            // U+2028 and U+2029 among them. Other control characters are rejected too, because
            // PostgreSQL cannot store a NUL in the operation's JSON.
            let text_ok = |text: &str| {
                text.chars().count() <= 512
                    && !text
                        .contains(|c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
            };
            if !text_ok(key) || !text_ok(value) {
                violations.push(
                    entry_field,
                    "keys and values must have at most 512 characters and no control characters such as line breaks or NUL",
                );
                ok = false;
            }
        }
        ok.then(|| Self {
            settings: OidcSettings {
                client_id: fields.client_id.to_owned(),
                issuer: fields.issuer.to_owned(),
                authorization_endpoint: fields.authorization_endpoint.to_owned(),
                token_endpoint: fields.token_endpoint.to_owned(),
                user_info_endpoint: fields.user_info_endpoint.to_owned(),
                logout_endpoint: fields.logout_endpoint.to_owned(),
                jwks_uri: fields.jwks_uri.to_owned(),
                scope: fields.scope.map(str::to_owned),
                authentication_request_extra_params: params.clone(),
            },
            client_secret: OidcSecret::new(fields.client_secret.to_owned()),
        })
    }
}

/// Checks an OIDC endpoint: `https://`, a host name with an optional port, and an optional
/// path of printable ASCII, at most 500 characters. The SageMaker model allows any `https://\S+`;
/// this stricter form turns away values such as `https://[` that are no usable URL.
fn check_https_url(field: &str, value: &str) -> Result<(), FieldError> {
    let valid = value.len() <= 500
        && value.strip_prefix("https://").is_some_and(|rest| {
            let (authority, path) = rest.find('/').map_or((rest, ""), |at| rest.split_at(at));
            let (host, port) = authority
                .split_once(':')
                .map_or((authority, None), |(h, p)| (h, Some(p)));
            // A host name is at most 253 characters of dot-separated labels of 1 to 63 letters,
            // digits and inner hyphens (RFC 1035), and a port is 1 to 65535 without leading
            // zeros. The OpenAPI pattern states all but the host name's total length.
            let label_ok = |label: &str| {
                (1..=63).contains(&label.len())
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            };
            host.len() <= 253
                && host.split('.').all(label_ok)
                && port.is_none_or(|p| {
                    !p.starts_with('0')
                        && p.bytes().all(|b| b.is_ascii_digit())
                        && p.parse::<u16>().is_ok()
                })
                && path.bytes().all(|b| (b'!'..=b'~').contains(&b))
        });
    if valid {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "'{}' is not an https URL; expected https://, a host name, an optional port and path, at most 500 characters",
                truncate_for_message(value)
            ),
        ))
    }
}

/// Checks the model's scope rule: space-separated tokens of printable ASCII without `"` or `\`,
/// at most 1024 characters.
fn check_scope(field: &str, value: &str) -> Result<(), FieldError> {
    let token_ok = |token: &str| {
        !token.is_empty()
            && token
                .chars()
                .all(|c| ('!'..='~').contains(&c) && c != '"' && c != '\\')
    };
    if value.len() <= 1024 && value.split(' ').all(token_ok) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            "must be scopes separated by single spaces, such as 'openid email', using printable ASCII without quotes or backslashes",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oidc_fields<'a>(
        url: &'a str,
        scope: Option<&'a str>,
        params: &'a BTreeMap<String, String>,
    ) -> OidcFields<'a> {
        OidcFields {
            client_id: "portal",
            client_secret: "s3cret",
            issuer: url,
            authorization_endpoint: url,
            token_endpoint: url,
            user_info_endpoint: url,
            logout_endpoint: url,
            jwks_uri: url,
            scope,
            authentication_request_extra_params: params,
        }
    }

    #[test]
    fn cognito_pool_pattern() {
        let mut violations = Violations::default();
        assert!(CognitoConfig::parse("c", "us-east-1_AbC123", "portal", &mut violations).is_some());
        for pool in ["us-east-1", "_abc", "us-east-1_", "us east_1", "pool_a-b"] {
            let mut violations = Violations::default();
            assert!(
                CognitoConfig::parse("c", pool, "portal", &mut violations).is_none(),
                "{pool}"
            );
        }
    }

    #[test]
    fn oidc_endpoints_must_be_https() {
        let params = BTreeMap::new();
        let mut violations = Violations::default();
        assert!(
            OidcConfig::parse(
                "o",
                oidc_fields("https://idp.example.com/a", None, &params),
                &mut violations
            )
            .is_some()
        );
        let mut violations = Violations::default();
        assert!(
            OidcConfig::parse(
                "o",
                oidc_fields("http://idp.example.com/a", None, &params),
                &mut violations
            )
            .is_none()
        );
        assert_eq!(violations.into_errors().len(), 6);
    }

    #[test]
    fn https_url_needs_a_host() {
        for (url, valid) in [
            ("https://idp.example.com", true),
            ("https://idp.example.com:8443/oauth2/authorize?x=1", true),
            ("https://[", false),
            ("https://user@idp.example.com", false),
            ("https://idp.example.com:123456", false),
            ("https:///path", false),
            ("https://idp.example.com/a b", false),
            ("https://idp.example.com:65535", true),
            ("https://localhost", true),
            ("https://idp.example.com:99999/a", false),
            ("https://idp.example.com:0", false),
            ("https://idp.example.com:0443", false),
            ("https://-/t", false),
            ("https://./u", false),
            ("https://idp..example.com", false),
            ("https://-idp.example.com", false),
            (&format!("https://{}.com", "a".repeat(63)), true),
            (&format!("https://{}.com", "a".repeat(64)), false),
            // 4 labels of 63 and 3 dots make 255 characters; one label less makes 191.
            (
                &format!("https://{}", vec!["a".repeat(63); 4].join(".")),
                false,
            ),
            (
                &format!("https://{}", vec!["a".repeat(63); 3].join(".")),
                true,
            ),
        ] {
            assert_eq!(check_https_url("u", url).is_ok(), valid, "{url}");
        }
    }

    #[test]
    fn oidc_scope_pattern() {
        let params = BTreeMap::new();
        for (scope, valid) in [
            ("openid email", true),
            ("openid  email", false),
            ("\"quoted\"", false),
            ("", false),
        ] {
            let mut violations = Violations::default();
            let parsed = OidcConfig::parse(
                "o",
                oidc_fields("https://idp.example.com", Some(scope), &params),
                &mut violations,
            );
            assert_eq!(parsed.is_some(), valid, "{scope:?}");
        }
    }

    #[test]
    fn oidc_extra_params_are_limited() {
        let params: BTreeMap<String, String> =
            (0..11).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        let mut violations = Violations::default();
        assert!(
            OidcConfig::parse(
                "o",
                oidc_fields("https://idp.example.com", None, &params),
                &mut violations
            )
            .is_none()
        );
    }

    #[test]
    fn extra_params_reject_control_characters() {
        for (key, value) in [
            ("k", "a\u{0}b"),
            ("k\u{0}", "v"),
            ("k", "line\nbreak"),
            ("k", "tab\t"),
            ("k", "line\u{2028}separator"),
        ] {
            let params = BTreeMap::from([(key.to_owned(), value.to_owned())]);
            assert!(!params_are_valid(&params), "{key:?}={value:?}");
        }
        let params = BTreeMap::from([("prompt".to_owned(), "login consent".to_owned())]);
        assert!(params_are_valid(&params));

        // The error names the entry without the control character.
        let params = BTreeMap::from([("k\u{85}".to_owned(), "v".to_owned())]);
        let mut violations = Violations::default();
        let fields = oidc_fields("https://idp.example.com", None, &params);
        assert!(OidcConfig::parse("o", fields, &mut violations).is_none());
        let errors = violations.into_errors();
        assert_eq!(
            errors[0].field,
            "o.authentication_request_extra_params.k\u{fffd}"
        );
    }

    /// Returns whether an OIDC configuration with these extra parameters is valid.
    fn params_are_valid(params: &BTreeMap<String, String>) -> bool {
        let mut violations = Violations::default();
        OidcConfig::parse(
            "o",
            oidc_fields("https://idp.example.com", None, params),
            &mut violations,
        )
        .is_some()
    }

    #[test]
    fn secret_debug_is_redacted() {
        let secret = OidcSecret::new("canary-value".to_owned());
        assert!(!format!("{secret:?}").contains("canary"));
    }
}
