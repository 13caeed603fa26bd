//! API keys: generated once, shown once, stored only as a SHA-256 hash.
//!
//! A key carries 256 random bits, so a fast hash is enough: unlike a password it cannot be
//! guessed from a list, and a slow hash would only cost time on every request.

use aes_gcm::aead::OsRng;
use aes_gcm::aead::rand_core::RngCore;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use super::Role;
use crate::db::audit::NewAuditEvent;

/// Prefix that marks a bearer token as an API key of this service rather than a JWT.
pub const KEY_PREFIX: &str = "wfs_";

/// Name of the unique constraint on key names.
pub const NAME_UNIQUE: &str = "api_keys_name_key";

#[derive(Debug, Clone)]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub regions: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKeyRow {
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

/// Generates a new key: the prefix and 32 random bytes in URL-safe base64.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Returns whether `token` has the form of a generated key: the prefix and 43 characters of
/// URL-safe base64. Any other token is rejected without a database lookup.
pub fn is_well_formed(token: &str) -> bool {
    token.strip_prefix(KEY_PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The caller of a change to a key, recorded in the change's audit event.
#[derive(Debug, Clone, Copy)]
pub struct KeyChanger<'a> {
    pub actor: &'a str,
    /// `api_key`, `jwt`, `command_line` or `system`.
    pub kind: &'a str,
    pub role: Option<&'a str>,
    pub request_id: Option<&'a str>,
}

impl KeyChanger<'static> {
    /// The command line, `workforce-service api-keys`.
    pub const COMMAND_LINE: Self = Self {
        actor: "command-line",
        kind: "command_line",
        role: None,
        request_id: None,
    };
    /// The service itself, which creates the admin key of sandbox mode.
    pub const SERVICE: Self = Self {
        actor: "system",
        kind: "system",
        role: None,
        request_id: None,
    };
}

/// Key names that the audit log uses for callers other than keys, and that a key therefore
/// cannot take.
pub const RESERVED_NAMES: [&str; 3] = ["system", "anonymous", "command-line"];

/// Writes the audit event of a change to `key` on the change's own connection, so that both
/// commit together.
async fn record(
    conn: &mut PgConnection,
    by: &KeyChanger<'_>,
    action: &str,
    key: &ApiKeyRow,
) -> Result<(), sqlx::Error> {
    let detail = serde_json::json!({ "api_key": {
        "id": key.id,
        "name": key.name,
        "role": key.role,
        "regions": key.regions,
        "expires_at": key.expires_at,
    }});
    crate::db::audit::insert(
        conn,
        NewAuditEvent {
            actor: by.actor,
            actor_kind: by.kind,
            actor_role: by.role,
            action,
            outcome: "succeeded",
            request_id: by.request_id,
            detail: Some(detail),
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}

/// Stores a new key with the audit event of its creation, in one transaction. Returns its row
/// and the key itself, which is never available again.
pub async fn create_recorded(
    db: &PgPool,
    by: &KeyChanger<'_>,
    name: &str,
    role: Role,
    regions: Option<&[String]>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(ApiKeyRow, String), CreateKeyError> {
    let mut tx = db.begin().await?;
    // Names that differ only in letter case would name two callers alike in the audit log.
    // The lock makes concurrent creations of such names wait for each other.
    sqlx::query!(
        "select pg_advisory_xact_lock(hashtext('api_key_name:' || lower($1)))",
        name
    )
    .execute(&mut *tx)
    .await?;
    let existing = sqlx::query_scalar!(
        "select name from api_keys where lower(name) = lower($1) limit 1",
        name
    )
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(existing) = existing {
        return Err(CreateKeyError::NameTaken(existing));
    }
    let created = match create(&mut *tx, name, role, regions, expires_at).await {
        Ok(created) => created,
        Err(error) if crate::db::is_unique_violation(&error, NAME_UNIQUE) => {
            return Err(CreateKeyError::NameTaken(name.to_owned()));
        }
        Err(error) => return Err(error.into()),
    };
    record(&mut tx, by, "api_key.created", &created.0).await?;
    tx.commit().await?;
    Ok(created)
}

/// The reasons a key cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateKeyError {
    /// A key has or had a name that differs from the new one at most in letter case. Holds
    /// that key's name.
    #[error("an API key named '{0}' exists or existed")]
    NameTaken(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Stores a new key without an audit event, for test fixtures, and returns its row and the key
/// itself. The service uses [`create_recorded`].
pub async fn create(
    executor: impl PgExecutor<'_>,
    name: &str,
    role: Role,
    regions: Option<&[String]>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(ApiKeyRow, String), sqlx::Error> {
    let key = generate_key();
    let row = sqlx::query_as!(
        ApiKeyRow,
        "insert into api_keys (id, name, role, regions, key_hash, expires_at)
         values ($1, $2, $3, $4, $5, $6)
         returning id, name, role, regions, created_at, expires_at, revoked_at",
        Uuid::new_v4(),
        name,
        role.as_str(),
        regions,
        &hash_key(&key)[..],
        expires_at,
    )
    .fetch_one(executor)
    .await?;
    Ok((row, key))
}

/// Finds the key with this hash (see [`hash_key`]), usable or not.
pub async fn find_by_hash(
    executor: impl PgExecutor<'_>,
    hash: &[u8; 32],
) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as!(
        ApiKeyRow,
        "select id, name, role, regions, created_at, expires_at, revoked_at from api_keys where key_hash = $1",
        &hash[..],
    )
    .fetch_optional(executor)
    .await
}

pub async fn list(executor: impl PgExecutor<'_>) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as!(ApiKeyRow, "select id, name, role, regions, created_at, expires_at, revoked_at from api_keys order by name")
        .fetch_all(executor)
        .await
}

/// Revokes a key by id; returns the row, or `None` when no key has that id.
pub async fn revoke(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as!(
        ApiKeyRow,
        "update api_keys set revoked_at = coalesce(revoked_at, now()) where id = $1
         returning id, name, role, regions, created_at, expires_at, revoked_at",
        id,
    )
    .fetch_optional(executor)
    .await
}

/// The result of [`revoke_unless_last_admin`].
#[derive(Debug)]
pub enum Revocation {
    Revoked(ApiKeyRow),
    /// The key was revoked before, and nothing changed.
    AlreadyRevoked(ApiKeyRow),
    NotFound,
    /// The key is the last usable admin key, and stays usable.
    LastAdmin(ApiKeyRow),
}

/// Revokes a key, with its audit event, unless it is the last usable (unrevoked, unexpired)
/// admin key, whose loss would leave no one able to manage keys over HTTP.
///
/// The transaction locks every usable admin key, in id order, before it counts them. So of two
/// concurrent revocations of the last two admin keys, the second waits for the first to commit,
/// then finds the first key revoked and refuses.
pub async fn revoke_unless_last_admin(
    db: &PgPool,
    by: &KeyChanger<'_>,
    id: Uuid,
) -> Result<Revocation, sqlx::Error> {
    let mut tx = db.begin().await?;
    let usable_admins = sqlx::query_scalar!(
        "select id from api_keys
          where role = 'admin' and revoked_at is null and (expires_at is null or expires_at > now())
          order by id
            for update",
    )
    .fetch_all(&mut *tx)
    .await?;
    let Some(row) = sqlx::query_as!(
        ApiKeyRow,
        "select id, name, role, regions, created_at, expires_at, revoked_at
           from api_keys where id = $1
            for update",
        id,
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(Revocation::NotFound);
    };
    if row.revoked_at.is_some() {
        return Ok(Revocation::AlreadyRevoked(row));
    }
    if usable_admins == [id] {
        return Ok(Revocation::LastAdmin(row));
    }
    let row = revoke(&mut *tx, id)
        .await?
        .expect("the key row is locked by this transaction");
    record(&mut tx, by, "api_key.revoked", &row).await?;
    tx.commit().await?;
    Ok(Revocation::Revoked(row))
}

/// A change that the command line makes to a key by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamedChange {
    Revoke,
    /// Ends the key's validity now, without marking it revoked.
    Expire,
}

/// Revokes or expires a key by name for the command line, with its audit event in the same
/// transaction. Returns the row and whether it changed, or `None` when no key has that name.
/// A key that was already revoked or expired stays unchanged and gets no event, and so does
/// a revoked key that is to be expired.
pub async fn change_by_name(
    db: &PgPool,
    by: &KeyChanger<'_>,
    name: &str,
    change: NamedChange,
) -> Result<Option<(ApiKeyRow, bool)>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let Some(before) = sqlx::query_as!(
        ApiKeyRow,
        "select id, name, role, regions, created_at, expires_at, revoked_at
           from api_keys where name = $1
            for update",
        name,
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(None);
    };
    let now = Utc::now();
    let (unchanged, action) = match change {
        NamedChange::Revoke => (before.revoked_at.is_some(), "api_key.revoked"),
        // A revoked key can no longer be used, so its expiry stays as it was.
        NamedChange::Expire => (
            before.revoked_at.is_some() || before.expires_at.is_some_and(|at| at <= now),
            "api_key.expired",
        ),
    };
    if unchanged {
        return Ok(Some((before, false)));
    }
    let after = match change {
        NamedChange::Revoke => revoke_by_name(&mut *tx, name).await?,
        NamedChange::Expire => expire_by_name(&mut *tx, name).await?,
    }
    .expect("the key row is locked by this transaction");
    record(&mut tx, by, action, &after).await?;
    tx.commit().await?;
    Ok(Some((after, true)))
}

/// Revokes a key by name without an audit event, for test fixtures. The command line uses
/// [`change_by_name`].
pub async fn revoke_by_name(
    executor: impl PgExecutor<'_>,
    name: &str,
) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as!(
        ApiKeyRow,
        "update api_keys set revoked_at = coalesce(revoked_at, now()) where name = $1
         returning id, name, role, regions, created_at, expires_at, revoked_at",
        name,
    )
    .fetch_optional(executor)
    .await
}

/// Ends a key's validity now, by name, without marking it revoked or writing an audit event.
pub async fn expire_by_name(
    executor: impl PgExecutor<'_>,
    name: &str,
) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    sqlx::query_as!(
        ApiKeyRow,
        "update api_keys set expires_at = least(coalesce(expires_at, now()), now()) where name = $1
         returning id, name, role, regions, created_at, expires_at, revoked_at",
        name,
    )
    .fetch_optional(executor)
    .await
}

pub async fn count_usable(executor: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select count(*) as "count!" from api_keys where revoked_at is null and (expires_at is null or expires_at > now())"#
    )
    .fetch_one(executor)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_generated_forms_are_well_formed() {
        assert!(is_well_formed(&generate_key()));
        let key = generate_key();
        for malformed in [
            KEY_PREFIX.to_owned(),
            format!("{key}x"),
            key[..key.len() - 1].to_owned(),
            format!("{}!", &key[..key.len() - 1]),
            key.replacen(KEY_PREFIX, "abc_", 1),
        ] {
            assert!(!is_well_formed(&malformed), "{malformed}");
        }
    }

    #[test]
    fn generated_keys_are_distinct_and_long() {
        let first = generate_key();
        let second = generate_key();
        assert_ne!(first, second);
        assert!(first.starts_with(KEY_PREFIX));
        assert_eq!(first.len(), KEY_PREFIX.len() + 43);
    }

    #[test]
    fn hash_is_stable_and_hides_key() {
        let key = generate_key();
        assert_eq!(hash_key(&key), hash_key(&key));
        assert_eq!(hash_key(&key).len(), 32);
    }
}
