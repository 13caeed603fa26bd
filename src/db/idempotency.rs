//! The `idempotency_keys` table: the first response to each (caller, key), for replay.

use std::time::Duration;

use sqlx::PgExecutor;

#[derive(Debug, Clone)]
pub struct StoredRequest {
    pub request_hash: Vec<u8>,
    pub status_code: Option<i32>,
    pub response_body: Option<Vec<u8>>,
    pub location: Option<String>,
    pub operation_id: Option<uuid::Uuid>,
    pub in_progress_expired: bool,
    pub expired: bool,
}

/// Claims a key for a new request; returns false when the key is already taken.
pub async fn claim(
    executor: impl PgExecutor<'_>,
    caller: &str,
    key: &str,
    request_hash: &[u8],
    ttl: Duration,
    lock: Duration,
) -> Result<bool, sqlx::Error> {
    let claimed = sqlx::query!(
        "insert into idempotency_keys (caller, key, request_hash, locked_until, expires_at)
         values ($1, $2, $3, now() + make_interval(secs => $4), now() + make_interval(secs => $5))
         on conflict do nothing",
        caller,
        key,
        request_hash,
        lock.as_secs_f64(),
        ttl.as_secs_f64(),
    )
    .execute(executor)
    .await?;
    Ok(claimed.rows_affected() == 1)
}

pub async fn find(
    executor: impl PgExecutor<'_>,
    caller: &str,
    key: &str,
) -> Result<Option<StoredRequest>, sqlx::Error> {
    sqlx::query_as!(
        StoredRequest,
        r#"select request_hash, status_code, response_body, location, operation_id,
                  (status_code is null and operation_id is null and locked_until < now())
                      as "in_progress_expired!",
                  (expires_at < now()) as "expired!"
             from idempotency_keys where caller = $1 and key = $2"#,
        caller,
        key,
    )
    .fetch_optional(executor)
    .await
}

/// Takes over a key whose first request expired or died before it responded.
pub async fn take_over(
    executor: impl PgExecutor<'_>,
    caller: &str,
    key: &str,
    request_hash: &[u8],
    ttl: Duration,
    lock: Duration,
) -> Result<bool, sqlx::Error> {
    let taken = sqlx::query!(
        "update idempotency_keys
            set request_hash = $3, status_code = null, response_body = null, location = null,
                operation_id = null, locked_until = now() + make_interval(secs => $4), created_at = now(),
                expires_at = now() + make_interval(secs => $5)
          where caller = $1 and key = $2
            and (expires_at < now()
                 or (status_code is null and operation_id is null and locked_until < now()))",
        caller,
        key,
        request_hash,
        lock.as_secs_f64(),
        ttl.as_secs_f64(),
    )
    .execute(executor)
    .await?;
    Ok(taken.rows_affected() == 1)
}

pub async fn store_response(
    executor: impl PgExecutor<'_>,
    caller: &str,
    key: &str,
    status: u16,
    body: &[u8],
    location: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update idempotency_keys set status_code = $3, response_body = $4, location = $5
          where caller = $1 and key = $2",
        caller,
        key,
        i32::from(status),
        body,
        location,
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Records the operation that the key's request created, in the transaction that creates it.
pub async fn link_operation(
    executor: impl PgExecutor<'_>,
    caller: &str,
    key: &str,
    operation_id: uuid::Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update idempotency_keys set operation_id = $3 where caller = $1 and key = $2",
        caller,
        key,
        operation_id,
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Frees a key whose request did not create anything, so that a retry runs it again.
pub async fn release(
    executor: impl PgExecutor<'_>,
    caller: &str,
    key: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "delete from idempotency_keys
          where caller = $1 and key = $2 and status_code is null and operation_id is null",
        caller,
        key
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Deletes up to `limit` expired keys.
pub async fn purge_expired(executor: impl PgExecutor<'_>, limit: i64) -> Result<u64, sqlx::Error> {
    let purged = sqlx::query!(
        "delete from idempotency_keys where ctid in (select ctid from idempotency_keys where expires_at < now() limit $1)",
        limit,
    )
    .execute(executor)
    .await?;
    Ok(purged.rows_affected())
}
