//! Keeps the stored workforce records close to AWS: a background refresh when a read finds a
//! stale record, and a sync of every configured region at start.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::aws::Aws;
use crate::db::{operations, workforces};
use crate::domain::Region;
use crate::http::AppState;

/// Workforces whose refresh is running, so that a burst of reads starts one refresh.
#[derive(Debug, Clone, Default)]
pub struct RefreshesInFlight(Arc<Mutex<HashSet<(Region, String)>>>);

/// Starts a background refresh of a workforce record that is older than the refresh interval.
/// The read that triggered it returns the stored record at once.
pub fn refresh_if_stale(state: &AppState, region: &Region, row: &workforces::WorkforceRow) {
    // A workforce that SageMaker has not been asked to create yet has nothing to refresh.
    if row.aws_status.is_none() {
        return;
    }
    let stale = row.aws_refreshed_at.is_none_or(|at| {
        chrono::Utc::now()
            .signed_duration_since(at)
            .to_std()
            .unwrap_or_default()
            > state.refresh_after
    });
    if !stale {
        return;
    }
    let key = (region.clone(), row.name.clone());
    if !state
        .refreshes
        .0
        .lock()
        .expect("refresh set lock")
        .insert(key.clone())
    {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        // A refresh is one DescribeWorkforce. When the budget is spent, the refresh is
        // skipped, and the next read of the stale record tries again.
        match state.budget.try_take(key.0.as_str(), 1).await {
            Ok(true) => {
                if let Err(error) = refresh_workforce(&state.db, &state.aws, &key.0, &key.1).await {
                    tracing::info!(workforce.name = %key.1, aws.region = %key.0, error = %format!("{error:#}"), "failed to refresh a workforce from AWS");
                }
            }
            Ok(false) => {
                tracing::debug!(workforce.name = %key.1, aws.region = %key.0, "SageMaker call budget spent; skipped a refresh");
            }
            Err(error) => {
                tracing::info!(workforce.name = %key.1, aws.region = %key.0, error = %error, "failed to take a refresh from the call budget");
            }
        }
        state
            .cache
            .invalidate(&crate::cache::Invalidation::Workforce {
                region: key.0.as_str().to_owned(),
                name: key.1.clone(),
            });
        state
            .refreshes
            .0
            .lock()
            .expect("refresh set lock")
            .remove(&key);
    });
}

/// Reads one workforce from AWS and stores what it reported, unless an operation is in flight
/// (its worker keeps the record current).
pub async fn refresh_workforce(
    db: &sqlx::PgPool,
    aws: &Aws,
    region: &Region,
    name: &str,
) -> anyhow::Result<()> {
    let snapshot = aws.describe_workforce(region, name).await?;
    let mut tx = db.begin().await?;
    if !lock_unless_in_flight(&mut tx, region, name).await? {
        return Ok(());
    }
    match snapshot {
        Some(snapshot) => workforces::apply_snapshot(&mut tx, region.as_str(), &snapshot).await?,
        None => {
            if forget_vanished(&mut tx, region, name, "AWS has no workforce of this name").await? {
                tracing::info!(workforce.name = name, aws.region = %region, "removed the record of a workforce that AWS no longer has");
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Brings the records of every configured region in line with AWS. It records workforces that
/// exist in AWS but not in the database, such as ones created before this service ran. It
/// removes records of workforces that AWS no longer has and no operation is working on.
pub async fn sync_regions(
    db: &sqlx::PgPool,
    aws: &Aws,
    budget: &crate::budget::CallBudget,
    regions: &[Region],
) {
    for region in regions {
        // The listing is one SageMaker call, taken from the shared budget like every other.
        loop {
            match budget.try_take(region.as_str(), 1).await {
                Ok(true) => break,
                Ok(false) => {
                    tokio::time::sleep(crate::budget::retry_delay(chrono::Utc::now())).await;
                }
                Err(error) => {
                    tracing::warn!(aws.region = %region, error = %error, "failed to take the listing from the call budget; listing anyway");
                    break;
                }
            }
        }
        let listed = match aws.list_workforces(region).await {
            Ok(listed) => listed,
            Err(error) => {
                tracing::warn!(aws.region = %region, error = %error, "failed to list workforces; the region is synced on the next start");
                continue;
            }
        };
        let present: std::collections::HashSet<&str> =
            listed.iter().map(|w| w.name.as_str()).collect();
        match workforces::list(db, Some(region.as_str()), None, None, 1_000).await {
            Ok(records) => {
                for record in records
                    .iter()
                    .filter(|r| r.aws_status.is_some() && !present.contains(r.name.as_str()))
                {
                    if let Err(error) = remove_vanished(db, region, &record.name).await {
                        tracing::warn!(workforce.name = %record.name, aws.region = %region, error = %error, "failed to remove the record of a vanished workforce");
                    }
                }
            }
            Err(error) => {
                tracing::warn!(aws.region = %region, error = %error, "failed to read the workforce records of a region")
            }
        }
        for snapshot in listed {
            let adopted = async {
                let mut conn = db.acquire().await?;
                workforces::adopt(&mut conn, region.as_str(), &snapshot).await
            }
            .await;
            match adopted {
                Ok(true) => {
                    tracing::info!(workforce.name = %snapshot.name, aws.region = %region, "recorded a workforce found in AWS")
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(workforce.name = %snapshot.name, aws.region = %region, error = %error, "failed to record a workforce found in AWS")
                }
            }
        }
    }
}

/// Removes the record of a workforce that AWS no longer has, unless an operation is working
/// on it, and audits the removal.
async fn remove_vanished(
    db: &sqlx::PgPool,
    region: &Region,
    name: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = db.begin().await?;
    if !lock_unless_in_flight(&mut tx, region, name).await? {
        return Ok(());
    }
    let removed =
        forget_vanished(&mut tx, region, name, "AWS no longer lists this workforce").await?;
    tx.commit().await?;
    if removed {
        tracing::info!(workforce.name = name, aws.region = %region, "removed the record of a workforce that AWS no longer has");
    }
    Ok(())
}

/// Locks the record of a workforce and returns true, unless there is no record or an
/// operation is working on it. The lock comes first: a creation of the same name that commits
/// between the two reads would otherwise be taken for the old record, and removed with it.
async fn lock_unless_in_flight(
    tx: &mut sqlx::PgConnection,
    region: &Region,
    name: &str,
) -> Result<bool, sqlx::Error> {
    if workforces::find_for_update(&mut *tx, region.as_str(), name)
        .await?
        .is_none()
    {
        return Ok(false);
    }
    Ok(operations::find_unfinished(&mut *tx, region.as_str(), name)
        .await?
        .is_none())
}

/// Deletes the record of a workforce that AWS no longer has and audits the removal as
/// `workforce.vanished`, in the caller's transaction. Returns whether there was a record.
async fn forget_vanished(
    tx: &mut sqlx::PgConnection,
    region: &Region,
    name: &str,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let Some(last_known) = workforces::find(&mut *tx, region.as_str(), name).await? else {
        return Ok(false);
    };
    if !workforces::delete(tx, region.as_str(), name).await? {
        return Ok(false);
    }
    let before = crate::http::models::WorkforceResponse::from_row(&last_known, None);
    crate::db::audit::insert(
        tx,
        crate::db::audit::NewAuditEvent {
            actor: "system",
            action: "workforce.vanished",
            outcome: "removed",
            region: Some(region.as_str()),
            workforce_name: Some(name),
            before_state: Some(serde_json::to_value(before).expect("a workforce serializes")),
            detail: Some(serde_json::json!({ "reason": reason })),
            ..Default::default()
        },
    )
    .await?;
    Ok(true)
}
