//! The `workforces` table: each workforce's last known AWS state.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};

use crate::aws::WorkforceSnapshot;

/// Name of the unique index that allows one workforce per region.
pub const ONE_PER_REGION: &str = "workforces_one_per_region";
/// Name of the primary key (region, name).
pub const PRIMARY_KEY: &str = "workforces_pkey";

#[derive(Debug, Clone)]
pub struct WorkforceRow {
    pub region: String,
    pub name: String,
    pub arn: Option<String>,
    pub aws_status: Option<String>,
    pub failure_reason: Option<String>,
    pub subdomain: Option<String>,
    pub auth_kind: String,
    pub auth_config: Value,
    pub vpc_config: Option<Value>,
    pub source_ip_cidrs: Vec<String>,
    /// `ipv4` or `dualstack`.
    pub ip_address_type: String,
    pub tags: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub aws_refreshed_at: Option<DateTime<Utc>>,
    pub revision: i64,
}

/// A workforce accepted for creation, before AWS has seen it.
pub struct NewWorkforce<'a> {
    pub region: &'a str,
    pub name: &'a str,
    pub auth_kind: &'a str,
    pub auth_config: Value,
    pub vpc_config: Option<Value>,
    pub source_ip_cidrs: Vec<String>,
    pub ip_address_type: &'a str,
    pub tags: Value,
}

pub async fn insert(conn: &mut PgConnection, new: NewWorkforce<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into workforces (region, name, auth_kind, auth_config, vpc_config, source_ip_cidrs, tags,
                                 ip_address_type)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
        new.region,
        new.name,
        new.auth_kind,
        new.auth_config,
        new.vpc_config,
        &new.source_ip_cidrs,
        new.tags,
        new.ip_address_type,
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find(
    executor: impl PgExecutor<'_>,
    region: &str,
    name: &str,
) -> Result<Option<WorkforceRow>, sqlx::Error> {
    sqlx::query_as!(
        WorkforceRow,
        "select region, name, arn, aws_status, failure_reason, subdomain, auth_kind, auth_config,
                vpc_config, source_ip_cidrs, ip_address_type, tags, created_at, updated_at, aws_refreshed_at,
                revision
         from workforces where region = $1 and name = $2",
        region,
        name,
    )
    .fetch_optional(executor)
    .await
}

/// Locks a workforce row until the end of the transaction, so that the state checks of a
/// change and the insert of its operation see the same row.
pub async fn find_for_update(
    conn: &mut PgConnection,
    region: &str,
    name: &str,
) -> Result<Option<WorkforceRow>, sqlx::Error> {
    sqlx::query_as!(
        WorkforceRow,
        "select region, name, arn, aws_status, failure_reason, subdomain, auth_kind, auth_config,
                vpc_config, source_ip_cidrs, ip_address_type, tags, created_at, updated_at, aws_refreshed_at,
                revision
         from workforces where region = $1 and name = $2 for update",
        region,
        name,
    )
    .fetch_optional(conn)
    .await
}

/// Lists workforces ordered by region and name, after the cursor position if one is given.
pub async fn list(
    executor: impl PgExecutor<'_>,
    region: Option<&str>,
    status: Option<&str>,
    after: Option<(&str, &str)>,
    limit: i64,
) -> Result<Vec<WorkforceRow>, sqlx::Error> {
    let (after_region, after_name) = after.unzip();
    sqlx::query_as!(
        WorkforceRow,
        "select region, name, arn, aws_status, failure_reason, subdomain, auth_kind, auth_config,
                vpc_config, source_ip_cidrs, ip_address_type, tags, created_at, updated_at, aws_refreshed_at,
                revision
         from workforces
         where ($1::text is null or region = $1)
           and ($2::text is null or aws_status = $2)
           and ($3::text is null or (region, name) > ($3, $4::text))
         order by region, name
         limit $5",
        region,
        status,
        after_region,
        after_name,
        limit,
    )
    .fetch_all(executor)
    .await
}

/// Stores what `DescribeWorkforce` reported. The auth settings are kept when AWS returned
/// none, because a stored OIDC or Cognito config never includes anything AWS would lack. A
/// change of any stored field, the address type and auth settings included, moves the
/// revision and so the `ETag`.
pub async fn apply_snapshot(
    conn: &mut PgConnection,
    region: &str,
    snapshot: &WorkforceSnapshot,
) -> Result<(), sqlx::Error> {
    let vpc_config = snapshot
        .vpc_config
        .as_ref()
        .map(|v| serde_json::to_value(v).expect("VPC snapshot serializes"));
    let (auth_kind, auth_config) = match (&snapshot.cognito_config, &snapshot.oidc_config) {
        (Some(cognito), _) => (
            Some("cognito"),
            Some(serde_json::json!({ "cognito_config": cognito })),
        ),
        (None, Some(oidc)) => (
            Some("oidc"),
            Some(serde_json::json!({ "oidc_config": oidc })),
        ),
        (None, None) => (None, None),
    };
    sqlx::query!(
        "update workforces
            set arn = $3, aws_status = $4, failure_reason = $5, subdomain = $6, vpc_config = $7,
                source_ip_cidrs = $8, auth_kind = coalesce($9, auth_kind),
                auth_config = coalesce($10, auth_config), aws_refreshed_at = now(),
                ip_address_type = coalesce($11, ip_address_type),
                updated_at = case when (arn, aws_status, failure_reason, subdomain, vpc_config,
                                        source_ip_cidrs, auth_kind, auth_config, ip_address_type)
                                       is distinct from ($3, $4, $5, $6, $7, $8, coalesce($9, auth_kind),
                                        coalesce($10, auth_config), coalesce($11, ip_address_type))
                                  then now() else updated_at end,
                revision = case when (arn, aws_status, failure_reason, subdomain, vpc_config,
                                      source_ip_cidrs, auth_kind, auth_config, ip_address_type)
                                     is distinct from ($3, $4, $5, $6, $7, $8, coalesce($9, auth_kind),
                                      coalesce($10, auth_config), coalesce($11, ip_address_type))
                                then nextval('workforce_revisions') else revision end
          where region = $1 and name = $2",
        region,
        snapshot.name,
        snapshot.arn,
        snapshot.status,
        snapshot.failure_reason,
        snapshot.subdomain,
        vpc_config,
        &snapshot.source_ip_cidrs,
        auth_kind,
        auth_config,
        snapshot.ip_address_type,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Inserts a workforce found in AWS that the service has no record of yet.
pub async fn adopt(
    conn: &mut PgConnection,
    region: &str,
    snapshot: &WorkforceSnapshot,
) -> Result<bool, sqlx::Error> {
    let (auth_kind, auth_config) = match (&snapshot.cognito_config, &snapshot.oidc_config) {
        (_, Some(oidc)) => ("oidc", serde_json::json!({ "oidc_config": oidc })),
        (Some(cognito), None) => ("cognito", serde_json::json!({ "cognito_config": cognito })),
        (None, None) => ("cognito", serde_json::json!({})),
    };
    let inserted = sqlx::query!(
        "insert into workforces (region, name, auth_kind, auth_config)
         values ($1, $2, $3, $4)
         on conflict do nothing",
        region,
        snapshot.name,
        auth_kind,
        auth_config,
    )
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if inserted {
        apply_snapshot(conn, region, snapshot).await?;
    }
    Ok(inserted)
}

/// Deletes a workforce's record; returns whether there was one.
pub async fn delete(
    conn: &mut PgConnection,
    region: &str,
    name: &str,
) -> Result<bool, sqlx::Error> {
    let deleted = sqlx::query!(
        "delete from workforces where region = $1 and name = $2",
        region,
        name
    )
    .execute(conn)
    .await?;
    Ok(deleted.rows_affected() > 0)
}

/// Gives the record a new revision, and so a new ETag.
pub async fn bump_revision(
    conn: &mut PgConnection,
    region: &str,
    name: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update workforces set revision = nextval('workforce_revisions') where region = $1 and name = $2",
        region,
        name
    )
    .execute(conn)
    .await?;
    Ok(())
}
