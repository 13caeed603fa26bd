//! The `operations` table: durable long-running changes, claimed by workers with a lease.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// Name of the partial unique index that allows one unfinished operation per workforce.
pub const ONE_UNFINISHED_PER_WORKFORCE: &str = "operations_one_unfinished_per_workforce";

/// Channel on which a new or rescheduled operation is announced to idle workers.
pub const WAKE_CHANNEL: &str = "operations_due";

#[derive(Debug, Clone)]
pub struct OperationRow {
    pub id: Uuid,
    pub kind: String,
    pub region: String,
    pub workforce_name: String,
    pub status: String,
    pub request: Value,
    pub sealed_secret: Option<Vec<u8>>,
    pub phase: String,
    pub aws_status: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub findings: Value,
    pub attempts: i32,
    pub run_at: DateTime<Utc>,
    pub locked_by: Option<String>,
    pub locked_until: Option<DateTime<Utc>>,
    pub deadline_at: DateTime<Utc>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub request_id: Option<String>,
    pub actor: String,
    pub polled_at: Option<DateTime<Utc>>,
    /// When a worker last marked the operation `submitting`, before its mutating call.
    pub submit_started_at: Option<DateTime<Utc>>,
}

impl OperationRow {
    pub fn is_finished(&self) -> bool {
        self.status == "succeeded" || self.status == "failed"
    }
}

pub struct NewOperation<'a> {
    pub id: Uuid,
    pub kind: &'a str,
    pub region: &'a str,
    pub workforce_name: &'a str,
    pub request: Value,
    pub sealed_secret: Option<Vec<u8>>,
    pub findings: Value,
    pub deadline: Duration,
    pub request_id: Option<&'a str>,
    pub actor: &'a str,
}

/// Inserts a pending operation and wakes idle workers when the transaction commits.
pub async fn insert(
    conn: &mut PgConnection,
    new: NewOperation<'_>,
) -> Result<OperationRow, sqlx::Error> {
    let deadline_seconds = new.deadline.as_secs_f64();
    let row = sqlx::query_as!(
        OperationRow,
        "insert into operations (id, kind, region, workforce_name, status, request, sealed_secret,
                                 findings, deadline_at, request_id, actor)
         values ($1, $2, $3, $4, 'pending', $5, $6, $7, now() + make_interval(secs => $8), $9, $10)
         returning *",
        new.id,
        new.kind,
        new.region,
        new.workforce_name,
        new.request,
        new.sealed_secret,
        new.findings,
        deadline_seconds,
        new.request_id,
        new.actor,
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query!("select pg_notify($1, $2)", WAKE_CHANNEL, row.id.to_string())
        .execute(conn)
        .await?;
    Ok(row)
}

pub async fn find(
    executor: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<OperationRow>, sqlx::Error> {
    sqlx::query_as!(OperationRow, "select * from operations where id = $1", id)
        .fetch_optional(executor)
        .await
}

/// Returns the unfinished operation of a workforce, if there is one.
pub async fn find_unfinished(
    executor: impl PgExecutor<'_>,
    region: &str,
    workforce_name: &str,
) -> Result<Option<OperationRow>, sqlx::Error> {
    sqlx::query_as!(
        OperationRow,
        "select * from operations
          where region = $1 and workforce_name = $2 and status in ('pending', 'running')",
        region,
        workforce_name,
    )
    .fetch_optional(executor)
    .await
}

pub struct OperationFilter<'a> {
    pub region: Option<&'a str>,
    pub workforce_name: Option<&'a str>,
    pub status: Option<&'a str>,
    pub kind: Option<&'a str>,
    /// Position after which to continue: (created_at, id) of the last row of the previous page.
    pub before: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// Lists operations, newest first.
pub async fn list(
    executor: impl PgExecutor<'_>,
    filter: OperationFilter<'_>,
) -> Result<Vec<OperationRow>, sqlx::Error> {
    let (before_time, before_id) = filter.before.unzip();
    sqlx::query_as!(
        OperationRow,
        "select * from operations
          where ($1::text is null or region = $1)
            and ($2::text is null or workforce_name = $2)
            and ($3::text is null or status = $3)
            and ($4::text is null or kind = $4)
            and ($5::timestamptz is null or (created_at, id) < ($5, $6::uuid))
          order by created_at desc, id desc
          limit $7",
        filter.region,
        filter.workforce_name,
        filter.status,
        filter.kind,
        before_time,
        before_id,
        filter.limit,
    )
    .fetch_all(executor)
    .await
}

/// An operation taken by a worker, with the status it had before.
pub struct Claimed {
    pub operation: OperationRow,
    pub previous_status: String,
}

/// Takes the oldest due operation that no live lease holds, in a short statement that skips
/// rows other workers are taking at the same moment. The lease lasts `lease`.
pub async fn claim_due(
    conn: &mut PgConnection,
    worker_id: &str,
    lease: Duration,
) -> Result<Option<Claimed>, sqlx::Error> {
    let lease_seconds = lease.as_secs_f64();
    let row = sqlx::query!(
        r#"with due as (
               select id, status as previous_status
                 from operations
                where status in ('pending', 'running')
                  and run_at <= now()
                  and (locked_until is null or locked_until < now())
                order by run_at
                limit 1
                for update skip locked
           )
           update operations o
              set status = 'running', locked_by = $1,
                  locked_until = now() + make_interval(secs => $2),
                  attempts = o.attempts + 1, updated_at = now()
             from due
            where o.id = due.id
           returning o.id, due.previous_status"#,
        worker_id,
        lease_seconds,
    )
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let operation = find(&mut *conn, row.id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    Ok(Some(Claimed {
        operation,
        previous_status: row.previous_status,
    }))
}

/// Locks an operation for recording a step's result, if `worker_id` still holds its lease.
pub async fn lock_if_held(
    conn: &mut PgConnection,
    id: Uuid,
    worker_id: &str,
) -> Result<Option<OperationRow>, sqlx::Error> {
    sqlx::query_as!(
        OperationRow,
        "select * from operations
          where id = $1 and locked_by = $2 and status = 'running'
          for update",
        id,
        worker_id,
    )
    .fetch_optional(conn)
    .await
}

/// Extends the lease of a step in progress by `lease` from now, if `worker_id` still holds it.
/// Returns false when another worker has taken the operation.
pub async fn renew_lease(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    worker_id: &str,
    lease: Duration,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query!(
        "update operations set locked_until = now() + make_interval(secs => $3)
          where id = $1 and locked_by = $2 and status = 'running'",
        id,
        worker_id,
        lease.as_secs_f64(),
    )
    .execute(executor)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Records that the mutating AWS call is about to be sent, if the lease is still held. A worker
/// that resumes an operation in this phase checks AWS before it sends the call again.
pub async fn mark_submitting(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    worker_id: &str,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query!(
        "update operations set phase = 'submitting', submit_started_at = now(), updated_at = now()
          where id = $1 and locked_by = $2 and locked_until > now() and status = 'running'",
        id,
        worker_id,
    )
    .execute(executor)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Records that the mutating call of `worker_id` ended without a change, so that a resumed
/// attempt need not wait for it.
pub async fn end_submit_call(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    worker_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update operations set submit_started_at = null where id = $1 and locked_by = $2",
        id,
        worker_id,
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Moves the operation to polling after SageMaker accepted the change, and erases the sealed
/// secret, which is no longer needed.
pub async fn mark_submitted(
    conn: &mut PgConnection,
    id: Uuid,
    aws_status: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update operations
            set phase = 'poll', submitted_at = coalesce(submitted_at, now()), sealed_secret = null,
                aws_status = coalesce($2, aws_status), updated_at = now()
          where id = $1",
        id,
        aws_status,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that a DescribeWorkforce just showed the change still in progress.
pub async fn mark_polled(conn: &mut PgConnection, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("update operations set polled_at = now() where id = $1", id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Releases the lease and schedules the next step after `delay`.
pub async fn reschedule(
    conn: &mut PgConnection,
    id: Uuid,
    delay: Duration,
    aws_status: Option<&str>,
) -> Result<(), sqlx::Error> {
    let delay_seconds = delay.as_secs_f64();
    sqlx::query!(
        "update operations
            set run_at = now() + make_interval(secs => $2), locked_by = null, locked_until = null,
                aws_status = coalesce($3, aws_status), updated_at = now()
          where id = $1",
        id,
        delay_seconds,
        aws_status,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends an operation as succeeded or failed and releases its lease.
pub async fn finish(
    conn: &mut PgConnection,
    id: Uuid,
    status: &str,
    aws_status: Option<&str>,
    failure: Option<(&str, &str)>,
) -> Result<(), sqlx::Error> {
    let (code, message) = failure.unzip();
    sqlx::query!(
        "update operations
            set status = $2, aws_status = coalesce($3, aws_status), failure_code = $4,
                failure_message = $5, finished_at = now(), updated_at = now(), sealed_secret = null,
                locked_by = null, locked_until = null
          where id = $1",
        id,
        status,
        aws_status,
        code,
        message,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives up the leases of one worker, so that another process can continue its operations at
/// once, as on shutdown.
pub async fn release_leases(
    executor: impl PgExecutor<'_>,
    worker_id: &str,
) -> Result<u64, sqlx::Error> {
    let released = sqlx::query!(
        "update operations set locked_by = null, locked_until = null, updated_at = now()
          where locked_by = $1 and status = 'running'",
        worker_id,
    )
    .execute(executor)
    .await?;
    Ok(released.rows_affected())
}

/// Replaces the findings of the VPC prerequisite checks stored with an operation.
pub async fn set_findings(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    findings: Value,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update operations set findings = $2, updated_at = now() where id = $1",
        id,
        findings
    )
    .execute(executor)
    .await?;
    Ok(())
}

/// Gives up the lease of a step that did not run and schedules it again after `delay`, without
/// counting it as an attempt. The new `updated_at` announces the change, so that readers do not
/// keep the claim's count of attempts.
pub async fn defer(
    executor: impl PgExecutor<'_>,
    id: Uuid,
    worker_id: &str,
    delay: Duration,
) -> Result<bool, sqlx::Error> {
    let delay_seconds = delay.as_secs_f64();
    let updated = sqlx::query!(
        "update operations
            set run_at = now() + make_interval(secs => $3), locked_by = null, locked_until = null,
                attempts = greatest(attempts - 1, 0), updated_at = now()
          where id = $1 and locked_by = $2 and status = 'running'",
        id,
        worker_id,
        delay_seconds,
    )
    .execute(executor)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Records how long SageMaker took to apply an operation of `kind` in `region`.
pub async fn insert_duration(
    conn: &mut PgConnection,
    region: &str,
    kind: &str,
    duration: Duration,
) -> Result<(), sqlx::Error> {
    let duration_ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
    sqlx::query!(
        "insert into operation_durations (region, kind, duration_ms) values ($1, $2, $3)",
        region,
        kind,
        duration_ms,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Returns the most recent durations recorded for `kind` in `region`, shortest first.
pub async fn recent_durations(
    conn: &mut PgConnection,
    region: &str,
    kind: &str,
) -> Result<Vec<Duration>, sqlx::Error> {
    let rows = sqlx::query_scalar!(
        r#"select duration_ms as "duration_ms!" from (
               select duration_ms from operation_durations
                where region = $1 and kind = $2
                order by id desc
                limit $3
           ) recent
           order by duration_ms"#,
        region,
        kind,
        crate::poller::HISTORY_SIZE,
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
        .collect())
}
