//! Bearer JWTs from the company's OIDC identity provider, verified with keys from its JWKS URL.
//!
//! Keys are cached for a TTL. A token signed with an unknown key id triggers a refresh, at
//! most once per [`UNKNOWN_KID_REFRESH_INTERVAL`], so that forged key ids cannot make the
//! service hammer the identity provider. The accepted algorithms come from configuration,
//! never from the token.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tokio::sync::RwLock;

use super::Role;
use crate::telemetry::WarningGate;

/// Redirects that a JWKS request follows, each to a URL that [`check_jwks_url`] accepts.
const MAX_JWKS_REDIRECTS: usize = 5;
/// Shortest time between two warnings about tokens that failed a claim check.
const REJECTION_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Shortest time between two JWKS refreshes caused by unknown key ids.
pub const UNKNOWN_KID_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// Seconds by which a token's `exp` and `nbf` may be off from this machine's clock.
pub const CLOCK_SKEW_SECONDS: u64 = 60;

/// Maximum length of a token subject, in characters. The subject is written to the audit log and
/// to every access log line of the token's requests.
pub const MAX_SUBJECT_CHARS: usize = 256;

/// Checks that a token's subject can name the caller in the logs, and returns the reason when
/// it cannot. A subject needs 1 to [`MAX_SUBJECT_CHARS`] characters, none of them control or
/// [`hidden`] characters, and no space at either end. It must not be one of the names that
/// the audit log uses for callers other than tokens.
fn check_subject(subject: &str) -> Result<(), &'static str> {
    let chars = subject.chars().count();
    if chars == 0 || chars > MAX_SUBJECT_CHARS {
        return Err("is empty or too long");
    }
    if subject.starts_with(' ') || subject.ends_with(' ') {
        return Err("starts or ends with a space");
    }
    if subject.chars().any(|c| c.is_control() || hidden(c)) {
        return Err("contains a control, formatting, invisible or non-space white-space character");
    }
    if super::api_keys::RESERVED_NAMES
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(subject))
    {
        return Err("is a name that the audit log uses for callers other than tokens");
    }
    Ok(())
}

/// Checks that a JWKS URL uses HTTPS, or HTTP to this machine only: keys read over plain
/// HTTP from elsewhere could be replaced on the way, and with them any token. Returns the
/// reason otherwise. Redirects of the JWKS request are held to the same rule.
pub fn check_jwks_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|error| error.to_string())?;
    check_jwks_location(&parsed)
}

fn check_jwks_location(url: &reqwest::Url) -> Result<(), String> {
    // An IPv6 host keeps its brackets in the URL's text.
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback());
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        scheme => Err(format!(
            "it uses {scheme}, and only https, or http to a loopback host such as 127.0.0.1, is accepted"
        )),
    }
}

/// Returns whether a character shows nothing itself when a log is displayed, but may change or
/// hide the text around it. These are white space other than the space, and the format
/// characters of Unicode 15 (category Cf, such as U+200B and the bidirectional controls). So
/// are the variation selectors, the combining grapheme joiner and the Hangul fillers.
fn hidden(c: char) -> bool {
    (c.is_whitespace() && c != ' ')
        || matches!(
            c,
            '\u{00ad}'
                | '\u{034f}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061c}'
                | '\u{06dd}'
                | '\u{070f}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08e2}'
                | '\u{115f}'..='\u{1160}'
                | '\u{180b}'..='\u{180f}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{110bd}'
                | '\u{110cd}'
                | '\u{13430}'..='\u{1343f}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0000}'..='\u{e0fff}'
        )
}

/// Settings for checking tokens and mapping them to roles.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
    pub algorithms: Vec<Algorithm>,
    /// Claim that lists the caller's groups or roles, such as `groups` or `roles`.
    pub role_claim: String,
    /// Claim values mapped to the service's roles; a value that is a role name maps to itself.
    pub role_map: HashMap<String, Role>,
    pub jwks_ttl: Duration,
}

/// A verified token's subject and roles.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub subject: String,
    pub roles: BTreeSet<Role>,
}

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("the token is malformed or its signature, issuer, audience or lifetime is invalid")]
    Invalid,
    #[error("the token's signing key is unknown to the identity provider's JWKS")]
    UnknownKey,
    #[error("the identity provider's JWKS could not be fetched")]
    JwksUnavailable,
}

struct KeyCache {
    keys: HashMap<String, (DecodingKey, Option<Algorithm>)>,
    fetched_at: Option<Instant>,
    last_unknown_kid_refresh: Option<Instant>,
}

pub struct JwtVerifier {
    settings: JwtSettings,
    client: reqwest::Client,
    cache: RwLock<KeyCache>,
    /// Limits the warnings about rejected tokens to one per [`REJECTION_WARNING_INTERVAL`].
    rejection_warnings: WarningGate,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

fn jwk_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    let name = jwk.common.key_algorithm.map(|a| a.to_string())?;
    name.parse().ok()
}

impl JwtVerifier {
    pub fn new(settings: JwtSettings) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::custom(
                |attempt| match check_jwks_location(attempt.url()) {
                    // `previous` contains the first URL and every earlier redirect.
                    Ok(()) if attempt.previous().len() <= MAX_JWKS_REDIRECTS => attempt.follow(),
                    Ok(()) => attempt.error("the JWKS URL redirects too many times"),
                    Err(reason) => {
                        let target = attempt.url().to_string();
                        attempt.error(format!(
                            "the JWKS URL redirects to {target}, which is not accepted: {reason}"
                        ))
                    }
                },
            ))
            .build()
            .expect("an HTTP client builds");
        Self {
            settings,
            client,
            rejection_warnings: WarningGate::new(REJECTION_WARNING_INTERVAL),
            cache: RwLock::new(KeyCache {
                keys: HashMap::new(),
                fetched_at: None,
                last_unknown_kid_refresh: None,
            }),
        }
    }

    async fn refresh(&self, cache: &mut KeyCache) -> Result<(), JwtError> {
        let response = self
            .client
            .get(&self.settings.jwks_url)
            .send()
            .await
            .map_err(|error| {
                tracing::warn!(error = ?error, "failed to fetch the JWKS");
                JwtError::JwksUnavailable
            })?;
        let set: JwkSet = response
            .error_for_status()
            .map_err(|_| JwtError::JwksUnavailable)?
            .json()
            .await
            .map_err(|error| {
                tracing::warn!(error = %error, "the JWKS is not a valid key set");
                JwtError::JwksUnavailable
            })?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk))
            else {
                continue;
            };
            keys.insert(kid, (key, jwk_algorithm(jwk)));
        }
        tracing::info!(keys = keys.len(), "refreshed the JWKS");
        cache.keys = keys;
        cache.fetched_at = Some(Instant::now());
        Ok(())
    }

    /// Returns the key for `kid`, refreshing the cache when it is stale or the kid is unknown.
    async fn key(&self, kid: &str) -> Result<(DecodingKey, Option<Algorithm>), JwtError> {
        {
            let cache = self.cache.read().await;
            let fresh = cache
                .fetched_at
                .is_some_and(|at| at.elapsed() < self.settings.jwks_ttl);
            if fresh && let Some(found) = cache.keys.get(kid) {
                return Ok(found.clone());
            }
        }
        let mut cache = self.cache.write().await;
        let stale = cache
            .fetched_at
            .is_none_or(|at| at.elapsed() >= self.settings.jwks_ttl);
        if stale {
            self.refresh(&mut cache).await?;
        } else if !cache.keys.contains_key(kid) {
            let may_refresh = cache
                .last_unknown_kid_refresh
                .is_none_or(|at| at.elapsed() >= UNKNOWN_KID_REFRESH_INTERVAL);
            if may_refresh {
                cache.last_unknown_kid_refresh = Some(Instant::now());
                self.refresh(&mut cache).await?;
            }
        }
        cache.keys.get(kid).cloned().ok_or(JwtError::UnknownKey)
    }

    /// Logs why a token whose key is known failed. A failed claim check comes after a valid
    /// signature, so the identity provider issued the token, and the usual cause is a wrong
    /// `--jwt-issuer` or `--jwt-audience`, or a clock that is off. Those get a warning, at most
    /// one per [`REJECTION_WARNING_INTERVAL`] with those of rejected subjects, and the rest a
    /// debug line.
    fn log_rejection(&self, error: &jsonwebtoken::errors::Error) {
        use jsonwebtoken::errors::ErrorKind;

        let claim_failed = matches!(
            error.kind(),
            ErrorKind::ExpiredSignature
                | ErrorKind::ImmatureSignature
                | ErrorKind::InvalidIssuer
                | ErrorKind::InvalidAudience
                | ErrorKind::MissingRequiredClaim(_)
        );
        if claim_failed && let Some(held_back) = self.rejection_warnings.pass() {
            tracing::warn!(
                reason = %error,
                held_back,
                expected_issuer = %self.settings.issuer,
                expected_audience = %self.settings.audience,
                clock_skew_seconds = CLOCK_SKEW_SECONDS,
                "rejected a token signed by the identity provider; check --jwt-issuer, --jwt-audience and the clocks"
            );
        } else {
            tracing::debug!(reason = %error, "rejected a token");
        }
    }

    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Invalid)?;
        if !self.settings.algorithms.contains(&header.alg) {
            return Err(JwtError::Invalid);
        }
        let kid = header.kid.ok_or(JwtError::Invalid)?;
        let (key, key_algorithm) = self.key(&kid).await?;
        // A key pinned to one algorithm must not verify tokens that claim another.
        if key_algorithm.is_some_and(|alg| alg != header.alg) {
            return Err(JwtError::Invalid);
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // A token is usable from `nbf` to `exp`, each with this much clock skew allowed.
        validation.validate_nbf = true;
        validation.leeway = CLOCK_SKEW_SECONDS;
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|error| {
            self.log_rejection(&error);
            JwtError::Invalid
        })?;
        let claims = data.claims;
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(JwtError::Invalid)?
            .to_owned();
        if let Err(reason) = check_subject(&subject) {
            let subject_chars = subject.chars().count();
            if let Some(held_back) = self.rejection_warnings.pass() {
                tracing::warn!(
                    subject_chars,
                    held_back,
                    max_chars = MAX_SUBJECT_CHARS,
                    "rejected a token because its subject {reason}"
                );
            } else {
                tracing::debug!(
                    subject_chars,
                    "rejected a token because its subject {reason}"
                );
            }
            return Err(JwtError::Invalid);
        }
        let values: Vec<&str> = match claims.get(&self.settings.role_claim) {
            Some(Value::String(value)) => value.split(' ').collect(),
            Some(Value::Array(values)) => values.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let roles = values
            .into_iter()
            .filter_map(|value| {
                self.settings
                    .role_map
                    .get(value)
                    .copied()
                    .or_else(|| Role::parse(value))
            })
            .collect();
        Ok(VerifiedToken { subject, roles })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what a tracing subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn claim_failures_are_logged_once_per_interval() {
        use jsonwebtoken::errors::{Error, ErrorKind};

        let verifier = JwtVerifier::new(JwtSettings {
            issuer: "https://idp.test".to_owned(),
            audience: "workforce-service".to_owned(),
            jwks_url: "http://127.0.0.1:9/jwks.json".to_owned(),
            algorithms: vec![Algorithm::ES256],
            role_claim: "groups".to_owned(),
            role_map: HashMap::new(),
            jwks_ttl: Duration::from_secs(300),
        });
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();

        tracing::subscriber::with_default(subscriber, || {
            verifier.log_rejection(&Error::from(ErrorKind::InvalidSignature));
            verifier.log_rejection(&Error::from(ErrorKind::InvalidAudience));
            verifier.log_rejection(&Error::from(ErrorKind::ExpiredSignature));
        });
        let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = output.lines().collect();

        assert_eq!(lines.len(), 3, "{output}");
        assert!(lines[0].contains("DEBUG"), "{output}");
        assert!(lines[1].contains("WARN"), "{output}");
        assert!(
            lines[1].contains("expected_audience=workforce-service"),
            "{output}"
        );
        assert!(lines[2].contains("DEBUG"), "{output}");
    }

    #[test]
    fn jwks_url_needs_https_off_this_machine() {
        for url in [
            "https://idp.example.com/.well-known/jwks.json",
            "http://127.0.0.1:9000/jwks.json",
            "http://localhost/jwks.json",
            "http://[::1]:9000/jwks.json",
        ] {
            assert!(check_jwks_url(url).is_ok(), "{url}");
        }
        for url in [
            "http://idp.example.com/jwks.json",
            "http://10.0.0.7/jwks.json",
            "http://localhost.example.com/jwks.json",
            "ftp://127.0.0.1/jwks.json",
            "idp.example.com/jwks.json",
        ] {
            assert!(check_jwks_url(url).is_err(), "{url}");
        }
    }

    #[test]
    fn subjects_that_name_a_caller_pass() {
        for subject in [
            "alice@example.com",
            "00u1ab2cd3",
            "systems",
            "Zoë Müller",
            "用户-42",
            &"x".repeat(256),
        ] {
            assert_eq!(check_subject(subject), Ok(()), "{subject}");
        }
    }

    #[test]
    fn unusable_subjects_are_rejected() {
        let long = "x".repeat(257);
        for subject in [
            "",
            long.as_str(),
            "alice\nadmin",
            "alice\u{202e}moc.elpmaxe",
            "\u{2066}bob",
            "system\u{200b}",
            "sys\u{ad}tem",
            "\u{feff}system",
            "alice\u{2028}admin",
            "tag\u{e0073}",
            "system ",
            " system",
            "   ",
            "alice\u{3000}admin",
            "System",
            "command-line",
            "ANONYMOUS",
        ] {
            assert!(check_subject(subject).is_err(), "{subject:?}");
        }
    }
}
