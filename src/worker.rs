//! Background workers that carry operations to SageMaker and wait for the result.
//!
//! A worker claims a due operation with a lease, runs one step (a few AWS calls, never while a
//! transaction is open) while it renews the lease, records the result with its audit event in
//! one transaction, and releases the lease. Each step reads the workforce from AWS before a mutating call, so an
//! operation resumed after a crash or a lost lease never applies its change twice.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::aws::{Aws, AwsError, CreateWorkforceInput, UpdateWorkforceInput, WorkforceSnapshot};
use crate::budget::{self, CallBudget};
use crate::cache::{self, Invalidation, ReadCache};
use crate::db::audit::{self, NewAuditEvent};
use crate::db::operations::{self, OperationRow};
use crate::db::workforces;
use crate::domain::{Change, OidcConfig, OidcSecret, Region, WorkforceName};
use crate::http::models::WorkforceResponse;
use crate::poller::{self, PollSchedule};
use crate::secrets::SecretSealer;
use crate::vpc_checks::{self, Finding};
use crate::watch::{CHANGED_CHANNEL, OperationWatchers};

/// Failure code of an operation whose VPC configuration failed the prerequisite checks that
/// run just before the change is sent to SageMaker.
pub const VPC_PREREQUISITES_FAILED: &str = "VpcPrerequisitesFailed";

/// Timing settings for worker steps.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub lease: Duration,
    pub poll_initial: Duration,
    pub poll_max: Duration,
    pub idle_poll: Duration,
}

/// The result of one step.
#[derive(Debug)]
pub enum StepOutcome {
    /// The mutating call was sent, or AWS already shows it applied: poll from now on.
    Submitted {
        snapshot: Option<WorkforceSnapshot>,
    },
    /// The workforce is still changing: look again later.
    Waiting {
        snapshot: Option<WorkforceSnapshot>,
    },
    Succeeded {
        snapshot: Option<WorkforceSnapshot>,
    },
    Failed {
        code: String,
        message: String,
        snapshot: Option<WorkforceSnapshot>,
    },
    /// The VPC configuration no longer passes the prerequisite checks; nothing was sent.
    PrerequisitesFailed {
        findings: Vec<Finding>,
        snapshot: Option<WorkforceSnapshot>,
    },
    /// A transient AWS failure: try the same step again later.
    Retry {
        error: AwsError,
    },
    /// Another worker took the operation over; this one records nothing.
    LeaseLost,
}

/// One worker. Several may run in one process and in several processes on one database.
#[derive(Clone)]
pub struct Worker {
    db: PgPool,
    aws: Aws,
    sealer: SecretSealer,
    settings: WorkerSettings,
    id: String,
    /// The shared budget of SageMaker calls; without one, steps call SageMaker freely.
    budget: Option<CallBudget>,
    /// Copies of rows that this process drops after each committed step.
    cache: ReadCache,
}

/// How long after an earlier attempt began its mutating call a resumed attempt waits before
/// it sends the call again: the SDK's timeout for the whole call, the time the earlier attempt
/// may take to start it ([`SUBMIT_START_LIMIT`]), and a margin of 5 s.
// NOTE: this assumes that AWS does not apply a call after the client has timed out on it. AWS
// documents no such bound, so a call that lands later still applies the change twice.
const SUBMIT_IN_FLIGHT_GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(
    (crate::aws::OPERATION_TIMEOUT.as_secs() + SUBMIT_START_LIMIT.as_secs() + 5) as i64,
);

/// Maximum time from the request to mark a call as submitting to sending the call. Marking
/// takes a few round trips to the database (a connection check and the statement), so this
/// allows replies of several seconds each. A database that replies later, such as over a
/// stalled connection, may have let another worker take the operation meanwhile.
// NOTE: a database that replies this slowly at every attempt keeps the change from being sent
// until the operation's deadline fails it. Each attempt logs a warning.
const SUBMIT_START_LIMIT: Duration = Duration::from_secs(25);

/// Statuses in which SageMaker is still applying a change.
fn is_transitional(status: Option<&str>) -> bool {
    matches!(status, Some("Initializing" | "Updating" | "Deleting"))
}

impl Worker {
    pub fn new(
        db: PgPool,
        aws: Aws,
        sealer: SecretSealer,
        settings: WorkerSettings,
        id: String,
    ) -> Self {
        Self {
            db,
            aws,
            sealer,
            settings,
            id,
            budget: None,
            cache: ReadCache::disabled(),
        }
    }

    /// Drops this process's cached copies of an operation and its workforce after each step
    /// commits, so that its readers see the step at once.
    pub fn with_cache(mut self, cache: ReadCache) -> Self {
        self.cache = cache;
        self
    }

    /// Makes every step take its SageMaker calls from `budget` first.
    pub fn with_budget(mut self, budget: CallBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs until `shutdown` is cancelled, then gives up this worker's leases.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        tracing::info!(worker.id = %self.id, "worker started");
        // While the database is down, every idle poll fails, so the failures are logged at
        // most every 30 s, each with the count held back since the last one.
        let failures = crate::telemetry::WarningGate::new(Duration::from_secs(30));
        while !shutdown.is_cancelled() {
            match self.run_once().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(error) => {
                    if let Some(held_back) = failures.pass() {
                        tracing::warn!(worker.id = %self.id, held_back, error = %format!("{error:#}"), "worker step failed; retrying");
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = wake.notified() => {}
                () = tokio::time::sleep(self.settings.idle_poll) => {}
            }
        }
        match operations::release_leases(&self.db, &self.id).await {
            // Only operations leased at this moment count. One between steps holds no lease.
            Ok(leases_released) => {
                tracing::info!(worker.id = %self.id, leases_released, "worker stopped; operations it had leased can be taken by any worker at once")
            }
            Err(error) => {
                tracing::warn!(worker.id = %self.id, error = %error, "worker stopped but failed to release its leases")
            }
        }
    }

    /// Claims one due operation and runs one step of it. Returns false when nothing was due.
    pub async fn run_once(&self) -> anyhow::Result<bool> {
        let Some(operation) = self.claim().await? else {
            return Ok(false);
        };
        if !self.take_budget(&operation).await? {
            return Ok(true);
        }
        // Every log line of the step, AWS calls included, carries the operation and the id of
        // the request that created it.
        let span = tracing::info_span!(
            "operation_step",
            operation.id = %operation.id,
            operation.kind = %operation.kind,
            request_id = operation.request_id.as_deref().unwrap_or_default()
        );
        async {
            let outcome = self.perform_with_lease(&operation).await;
            self.record(&operation, outcome).await
        }
        .instrument(span)
        .await?;
        Ok(true)
    }

    /// Runs [`Self::perform`] and renews the lease every third of its length until the step
    /// ends, so that a slow AWS call does not let another worker claim the operation and send
    /// the change a second time.
    async fn perform_with_lease(&self, operation: &OperationRow) -> StepOutcome {
        let period = (self.settings.lease / 3).max(Duration::from_millis(1));
        let mut renewals = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        renewals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let step = self.perform(operation);
        tokio::pin!(step);
        loop {
            tokio::select! {
                outcome = &mut step => return outcome,
                _ = renewals.tick() => {
                    let renewed = operations::renew_lease(&self.db, operation.id, &self.id, self.settings.lease).await;
                    match renewed {
                        Ok(true) => {}
                        Ok(false) => tracing::warn!(worker.id = %self.id, operation.id = %operation.id, "lease taken by another worker during the step"),
                        Err(error) => tracing::warn!(worker.id = %self.id, operation.id = %operation.id, error = %error, "failed to renew the lease; retrying at the next renewal"),
                    }
                }
            }
        }
    }

    /// Skips the call of a step whose marking as submitting took longer than
    /// [`SUBMIT_START_LIMIT`], and records that nothing was sent, so that the next attempt,
    /// by whichever worker holds the lease then, need not wait for a call in flight.
    async fn give_up_late_submit(&self, operation: &OperationRow, took: Duration) -> StepOutcome {
        tracing::warn!(
            worker.id = %self.id,
            operation.id = %operation.id,
            took_ms = took.as_millis() as u64,
            "the database took too long to mark the change as submitting; not sending it in this step"
        );
        if let Err(error) = operations::end_submit_call(&self.db, operation.id, &self.id).await {
            tracing::warn!(operation.id = %operation.id, error = %error, "failed to record that the change was not sent; the next attempt waits for the call grace period");
        }
        StepOutcome::Retry {
            error: AwsError::Transient {
                code: "DatabaseSlow".into(),
                message: format!(
                    "the database took {} ms to mark the change as submitting, so it was not sent; the next attempt sends it",
                    took.as_millis()
                ),
                request_id: None,
            },
        }
    }

    /// Takes the SageMaker calls of the operation's next step from the budget. When too few
    /// are left, gives the operation back for the next second and returns false.
    async fn take_budget(&self, operation: &OperationRow) -> anyhow::Result<bool> {
        let Some(budget) = &self.budget else {
            return Ok(true);
        };
        let calls = match operation.phase.as_str() {
            "poll" => budget::POLL_STEP_CALLS,
            _ => budget::SUBMIT_STEP_CALLS,
        };
        if budget.try_take(&operation.region, calls).await? {
            return Ok(true);
        }
        let delay = budget::retry_delay(chrono::Utc::now());
        operations::defer(&self.db, operation.id, &self.id, delay).await?;
        tracing::debug!(worker.id = %self.id, operation.id = %operation.id, aws.region = %operation.region, delay_ms = delay.as_millis() as u64, "SageMaker call budget spent; deferred the step");
        metrics::counter!("workforce_aws_budget_deferrals_total", "region" => operation.region.clone())
            .increment(1);
        Ok(false)
    }

    /// Claims the next due operation, auditing its start if it was pending.
    pub async fn claim(&self) -> anyhow::Result<Option<OperationRow>> {
        let mut tx = self.db.begin().await?;
        let Some(claimed) = operations::claim_due(&mut tx, &self.id, self.settings.lease).await?
        else {
            return Ok(None);
        };
        let operation = claimed.operation;
        if claimed.previous_status == "pending" {
            audit::insert(
                &mut tx,
                NewAuditEvent {
                    actor: "system",
                    action: "operation.started",
                    outcome: "started",
                    region: Some(&operation.region),
                    workforce_name: Some(&operation.workforce_name),
                    operation_id: Some(operation.id),
                    request_id: operation.request_id.as_deref(),
                    detail: Some(json!({ "worker_id": self.id, "kind": operation.kind })),
                    ..Default::default()
                },
            )
            .await?;
        }
        tx.commit().await?;
        self.cache
            .invalidate_operation(operation.id, &operation.region, &operation.workforce_name);
        tracing::debug!(worker.id = %self.id, operation.id = %operation.id, operation.kind = %operation.kind, "claimed operation");
        Ok(Some(operation))
    }

    /// Runs one step of a claimed operation against AWS, without recording its result.
    pub async fn perform(&self, operation: &OperationRow) -> StepOutcome {
        let Ok(change) = serde_json::from_value::<Change>(operation.request.clone()) else {
            return StepOutcome::Failed {
                code: "InvalidOperation".into(),
                message: "the stored change cannot be read".into(),
                snapshot: None,
            };
        };
        let region = Region::parse("region", &operation.region).expect("stored regions are valid");
        let name = WorkforceName::parse("name", &operation.workforce_name)
            .expect("stored names are valid");

        let current = match self.aws.describe_workforce(&region, name.as_str()).await {
            Ok(current) => current,
            Err(error) => return StepOutcome::Retry { error },
        };
        if chrono::Utc::now() > operation.deadline_at {
            let status = current
                .as_ref()
                .and_then(|c| c.status.as_deref())
                .unwrap_or("gone");
            // Before the call was sent, the delay was this side's, such as a slow database or a
            // spent call budget, not SageMaker's.
            let message = match operation.phase.as_str() {
                "poll" => format!(
                    "SageMaker did not finish the change before the deadline; the workforce is {status}"
                ),
                "submitting" => format!(
                    "the change may have been sent to SageMaker, but no attempt saw it applied before the deadline (the log of each attempt says why); the workforce is {status}"
                ),
                _ => format!(
                    "the change was not sent to SageMaker before the deadline, because every attempt failed or was put off (the log of each attempt says why); the workforce is {status}"
                ),
            };
            return StepOutcome::Failed {
                code: "OperationTimedOut".into(),
                message,
                snapshot: current,
            };
        }
        match operation.phase.as_str() {
            "poll" => poll_outcome(&change, current),
            phase => {
                self.submit(
                    operation,
                    phase == "submitting",
                    &change,
                    &region,
                    &name,
                    current,
                )
                .await
            }
        }
    }

    /// Sends the mutating call unless AWS shows that it was already applied.
    async fn submit(
        &self,
        operation: &OperationRow,
        maybe_sent: bool,
        change: &Change,
        region: &Region,
        name: &WorkforceName,
        current: Option<WorkforceSnapshot>,
    ) -> StepOutcome {
        let status = current.as_ref().and_then(|c| c.status.as_deref());
        // Decide from AWS's state whether the call is needed at all.
        match change {
            // An earlier attempt may have sent the creation, and AWS shows its result.
            Change::CreateWorkforce { .. } if current.is_some() && maybe_sent => {
                return StepOutcome::Submitted { snapshot: current };
            }
            // Nothing was sent yet, so the workforce was created outside the service. Its
            // settings may differ from the requested ones, so the creation is not counted as
            // done; the record takes what AWS shows.
            Change::CreateWorkforce { .. } if current.is_some() => {
                return StepOutcome::Failed {
                    code: "WorkforceAlreadyExists".into(),
                    message: format!(
                        "SageMaker already has a workforce named '{name}' in {region} that this service did not create; its record now shows that workforce, so change it or delete it instead"
                    ),
                    snapshot: current,
                };
            }
            Change::CreateWorkforce { .. } => {}
            Change::DeleteWorkforce => match status {
                None => return StepOutcome::Succeeded { snapshot: None },
                Some("Deleting") => return StepOutcome::Submitted { snapshot: current },
                Some("Active" | "Failed") => {}
                _ => return StepOutcome::Waiting { snapshot: current },
            },
            _ => {
                let Some(snapshot) = current.as_ref() else {
                    return StepOutcome::Failed {
                        code: "WorkforceNotFound".into(),
                        message: format!("SageMaker has no workforce named '{name}' in {region}"),
                        snapshot: None,
                    };
                };
                if maybe_sent && (status == Some("Updating") || change_applied(change, snapshot)) {
                    return StepOutcome::Submitted { snapshot: current };
                }
                match status {
                    Some("Active") => {}
                    Some("Initializing" | "Updating") => {
                        return StepOutcome::Waiting { snapshot: current };
                    }
                    other => {
                        return StepOutcome::Failed {
                            code: "WorkforceNotActive".into(),
                            message: format!(
                                "the workforce is {}; SageMaker accepts changes only when it is Active",
                                other.unwrap_or("in an unknown state")
                            ),
                            snapshot: current,
                        };
                    }
                }
            }
        }

        // A worker that marked the operation `submitting` and then stopped renewing its lease,
        // such as a paused process, may still have its call in flight, and AWS shows nothing
        // until that call ends. Sending again before then would apply the change twice.
        if maybe_sent
            && let Some(started) = operation.submit_started_at
            && chrono::Utc::now() < started + SUBMIT_IN_FLIGHT_GRACE
        {
            tracing::info!(operation.id = %operation.id, "an earlier attempt's call may still be in flight; checking AWS again later");
            return StepOutcome::Waiting { snapshot: current };
        }

        // The VPC may have changed since the change was accepted, so check it again, unless
        // the call may already have been sent.
        let mut fresh_findings = None;
        if !maybe_sent {
            match self.recheck_vpc(change, region, &current).await {
                Ok(findings) => fresh_findings = findings,
                Err(outcome) => return outcome,
            }
        }

        let secret = match operation
            .sealed_secret
            .as_deref()
            .map(|sealed| self.sealer.open(sealed))
        {
            None => None,
            Some(Ok(secret)) => Some(secret),
            Some(Err(error)) => {
                return StepOutcome::Failed {
                    code: "SecretUnavailable".into(),
                    message: format!("{error}; send the OIDC configuration again"),
                    snapshot: current,
                };
            }
        };
        let marking = std::time::Instant::now();
        match operations::mark_submitting(&self.db, operation.id, &self.id).await {
            Ok(true) => {
                // Findings stored at acceptance may be out of date, or only report that the
                // checks were deferred. The operation shows the ones the change is sent with.
                if let Some(findings) = fresh_findings.map(|f| json!(f))
                    && findings != operation.findings
                    && let Err(error) =
                        operations::set_findings(&self.db, operation.id, findings).await
                {
                    tracing::warn!(operation.id = %operation.id, error = %error, "failed to store the findings of the VPC checks before sending the change");
                }
            }
            Ok(false) => return StepOutcome::LeaseLost,
            Err(error) => {
                return StepOutcome::Retry {
                    error: AwsError::Transient {
                        code: "DatabaseUnavailable".into(),
                        message: error.to_string(),
                        request_id: None,
                    },
                };
            }
        }
        if marking.elapsed() > SUBMIT_START_LIMIT {
            return self.give_up_late_submit(operation, marking.elapsed()).await;
        }
        let result = self.send_change(change, region, name, secret).await;
        match result {
            Ok(()) => {
                tracing::info!(operation.id = %operation.id, operation.kind = %operation.kind, workforce.name = %name, aws.region = %region, "submitted change to SageMaker");
                // Read the new status (Initializing, Updating or Deleting) at once, so that reads
                // show it without waiting for the first poll. A failure here only delays that.
                let snapshot = self
                    .aws
                    .describe_workforce(region, name.as_str())
                    .await
                    .ok()
                    .flatten();
                StepOutcome::Submitted { snapshot }
            }
            Err(error) if error.is_transient() => {
                // After an error response, the call has ended without a change, so the next
                // attempt need not wait for it to land. A failure to record that only delays
                // the next attempt.
                if error.has_error_response()
                    && let Err(db_error) =
                        operations::end_submit_call(&self.db, operation.id, &self.id).await
                {
                    tracing::warn!(operation.id = %operation.id, error = %db_error, "failed to record the end of a failed call");
                }
                StepOutcome::Retry { error }
            }
            Err(error) => {
                // Refresh the record, so that it shows what AWS kept after the rejection.
                let snapshot = self
                    .aws
                    .describe_workforce(region, name.as_str())
                    .await
                    .ok()
                    .flatten();
                StepOutcome::Failed {
                    code: error.code().to_owned(),
                    message: error.message().to_owned(),
                    snapshot,
                }
            }
        }
    }

    /// Runs the VPC prerequisite checks for a change that sets a VPC configuration. Returns
    /// the findings when the change may be sent (none for other changes), or the outcome that
    /// stops the step.
    async fn recheck_vpc(
        &self,
        change: &Change,
        region: &Region,
        current: &Option<WorkforceSnapshot>,
    ) -> Result<Option<Vec<Finding>>, StepOutcome> {
        let vpc_config = match change {
            Change::CreateWorkforce {
                vpc_config: Some(vpc_config),
                ..
            }
            | Change::PutVpcConfig { vpc_config } => vpc_config,
            _ => return Ok(None),
        };
        match vpc_checks::run(&self.aws, region, vpc_config).await {
            Ok(findings) if vpc_checks::passed(&findings) => Ok(Some(findings)),
            Ok(findings) => Err(StepOutcome::PrerequisitesFailed {
                findings,
                snapshot: current.clone(),
            }),
            Err(error) if error.is_transient() => Err(StepOutcome::Retry { error }),
            Err(error) => Err(StepOutcome::Failed {
                code: error.code().to_owned(),
                message: format!(
                    "EC2 rejected the VPC prerequisite checks: {}",
                    error.message()
                ),
                snapshot: current.clone(),
            }),
        }
    }

    async fn send_change(
        &self,
        change: &Change,
        region: &Region,
        name: &WorkforceName,
        secret: Option<OidcSecret>,
    ) -> Result<(), AwsError> {
        let missing_secret = || {
            AwsError::Rejected {
            code: "SecretUnavailable".into(),
            message: "the OIDC client secret of this operation is no longer available; send the OIDC configuration again".into(),
            request_id: None,
        }
        };
        match change {
            Change::CreateWorkforce {
                cognito_config,
                oidc_config,
                vpc_config,
                source_ip_config,
                tags,
                ip_address_type,
            } => {
                let oidc = match oidc_config {
                    Some(settings) => Some(OidcConfig {
                        settings: settings.clone(),
                        client_secret: secret.ok_or_else(missing_secret)?,
                    }),
                    None => None,
                };
                self.aws
                    .create_workforce(
                        region,
                        CreateWorkforceInput {
                            name,
                            cognito_config: cognito_config.as_ref(),
                            oidc_config: oidc.as_ref(),
                            vpc_config: vpc_config.as_ref(),
                            source_ip_config: source_ip_config.as_ref(),
                            tags,
                            ip_address_type: *ip_address_type,
                        },
                    )
                    .await
            }
            Change::DeleteWorkforce => self.aws.delete_workforce(region, name).await,
            Change::PutVpcConfig { vpc_config } => {
                self.aws
                    .update_workforce(region, name, UpdateWorkforceInput::VpcConfig(vpc_config))
                    .await
            }
            Change::DeleteVpcConfig => {
                self.aws
                    .update_workforce(region, name, UpdateWorkforceInput::RemoveVpcConfig)
                    .await
            }
            Change::PutSourceIpConfig {
                source_ip_config,
                ip_address_type,
            } => {
                self.aws
                    .update_workforce(
                        region,
                        name,
                        UpdateWorkforceInput::SourceIpConfig(source_ip_config, *ip_address_type),
                    )
                    .await
            }
            Change::PutOidcConfig { oidc_config } => {
                let config = OidcConfig {
                    settings: oidc_config.clone(),
                    client_secret: secret.ok_or_else(missing_secret)?,
                };
                self.aws
                    .update_workforce(region, name, UpdateWorkforceInput::OidcConfig(&config))
                    .await
            }
        }
    }

    /// Records a step's result: the operation, the workforce record and the audit event in one
    /// transaction, provided this worker still holds the lease.
    pub async fn record(
        &self,
        operation: &OperationRow,
        outcome: StepOutcome,
    ) -> anyhow::Result<()> {
        if matches!(outcome, StepOutcome::LeaseLost) {
            tracing::warn!(worker.id = %self.id, operation.id = %operation.id, "lease lost before the step was recorded; another worker continues");
            return Ok(());
        }
        let (outcome, findings) = match outcome {
            StepOutcome::PrerequisitesFailed { findings, snapshot } => {
                let message = vpc_checks::summarize_errors(&findings);
                (
                    StepOutcome::Failed {
                        code: VPC_PREREQUISITES_FAILED.to_owned(),
                        message,
                        snapshot,
                    },
                    Some(findings),
                )
            }
            other => (other, None),
        };
        let mut tx = self.db.begin().await?;
        let Some(current) = operations::lock_if_held(&mut tx, operation.id, &self.id).await? else {
            tracing::warn!(worker.id = %self.id, operation.id = %operation.id, "lease lost before the step was recorded; another worker continues");
            return Ok(());
        };
        let region = current.region.as_str();
        let name = current.workforce_name.as_str();
        let before = workforces::find(&mut *tx, region, name).await?;
        let kind = current.kind.as_str();

        let snapshot = match &outcome {
            StepOutcome::Submitted { snapshot }
            | StepOutcome::Waiting { snapshot }
            | StepOutcome::Succeeded { snapshot }
            | StepOutcome::Failed { snapshot, .. } => snapshot.as_ref(),
            StepOutcome::Retry { .. }
            | StepOutcome::PrerequisitesFailed { .. }
            | StepOutcome::LeaseLost => None,
        };
        if let Some(snapshot) = snapshot {
            workforces::apply_snapshot(&mut tx, region, snapshot).await?;
        }
        let aws_status = snapshot.and_then(|s| s.status.as_deref());
        // A workforce that AWS does not have is removed once a delete succeeds, a create
        // fails, or any change finds it gone. Left in place, the record of a vanished
        // workforce would stay `Updating`, and no later change or delete would be accepted.
        let gone = snapshot.is_none()
            && match &outcome {
                StepOutcome::Succeeded { .. } => kind == "delete_workforce",
                StepOutcome::Failed { code, .. } => {
                    kind == "create_workforce" || code == "WorkforceNotFound"
                }
                _ => false,
            };
        if gone {
            workforces::delete(&mut tx, region, name).await?;
        }
        let after = workforces::find(&mut *tx, region, name).await?;
        let state = |row: &Option<workforces::WorkforceRow>| {
            row.as_ref().map(|w| {
                serde_json::to_value(WorkforceResponse::from_row(w, None))
                    .expect("a workforce serializes")
            })
        };

        let polls = current.attempts.max(1) as u32;
        let mut event: Option<(&str, &str, serde_json::Value)> = None;
        match &outcome {
            StepOutcome::Submitted { .. } => {
                operations::mark_submitted(&mut tx, current.id, aws_status).await?;
                operations::mark_polled(&mut tx, current.id).await?;
                let delay = self
                    .next_poll_delay(&mut tx, &current, Duration::ZERO, 1)
                    .await?;
                operations::reschedule(&mut tx, current.id, delay, aws_status).await?;
                // The findings of the VPC checks that the change was sent with, which may be
                // newer than the ones audited at acceptance.
                let mut detail = json!({ "aws_status": aws_status });
                if current.findings.as_array().is_some_and(|f| !f.is_empty()) {
                    detail["findings"] = current.findings.clone();
                }
                event = Some(("operation.submitted", "submitted", detail));
            }
            StepOutcome::Waiting { .. } => {
                let delay = match current.submitted_at {
                    Some(submitted_at) => {
                        operations::mark_polled(&mut tx, current.id).await?;
                        let elapsed = (chrono::Utc::now() - submitted_at)
                            .to_std()
                            .unwrap_or_default();
                        self.next_poll_delay(&mut tx, &current, elapsed, polls)
                            .await?
                    }
                    // Waiting for the workforce to become Active before submitting.
                    None => self.poll_delay(polls),
                };
                operations::reschedule(&mut tx, current.id, delay, aws_status).await?;
            }
            StepOutcome::Retry { error } => {
                tracing::info!(
                    operation.id = %current.id,
                    aws.error_code = error.code(),
                    aws.request_id = error.request_id().unwrap_or_default(),
                    error = error.message(),
                    "transient failure; retrying later"
                );
                operations::reschedule(&mut tx, current.id, self.poll_delay(polls), None).await?;
            }
            StepOutcome::Succeeded { .. } => {
                // An earlier attempt sent the change and ended before it recorded the call,
                // and AWS finished the change before this attempt looked. The audit log still
                // shows the submission.
                if current.phase == "submitting" && current.submitted_at.is_none() {
                    operations::mark_submitted(&mut tx, current.id, aws_status).await?;
                    audit::insert(
                        &mut tx,
                        NewAuditEvent {
                            actor: "system",
                            action: "operation.submitted",
                            outcome: "submitted",
                            region: Some(region),
                            workforce_name: Some(name),
                            operation_id: Some(current.id),
                            request_id: current.request_id.as_deref(),
                            before_state: state(&before),
                            after_state: state(&before),
                            detail: Some(json!({
                                "aws_status": null,
                                "recorded_late": "an earlier attempt sent the call and ended before it recorded it",
                            })),
                            ..Default::default()
                        },
                    )
                    .await?;
                }
                operations::finish(&mut tx, current.id, "succeeded", aws_status, None).await?;
                record_duration(&mut tx, &current).await?;
                crate::telemetry::record_operation_finished(
                    kind,
                    "succeeded",
                    elapsed_seconds(&current),
                );
                // A finished delete leaves no workforce to report a status, so the event keeps
                // the last one, as the operation does.
                event = Some((
                    "operation.succeeded",
                    "succeeded",
                    json!({ "aws_status": aws_status.or(current.aws_status.as_deref()) }),
                ));
            }
            StepOutcome::Failed { code, message, .. } => {
                operations::finish(
                    &mut tx,
                    current.id,
                    "failed",
                    aws_status,
                    Some((code, message)),
                )
                .await?;
                // Only a failure that SageMaker reached at the end of its work measures how
                // long the work takes.
                if code == "WorkforceFailed" {
                    record_duration(&mut tx, &current).await?;
                }
                crate::telemetry::record_operation_finished(
                    kind,
                    "failed",
                    elapsed_seconds(&current),
                );
                // Like the operation, the event keeps the last status that SageMaker reported
                // when this step found no workforce to report one.
                let last_status = aws_status.or(current.aws_status.as_deref());
                event = Some((
                    "operation.failed",
                    "failed",
                    json!({ "code": code, "message": message, "aws_status": last_status }),
                ));
            }
            StepOutcome::PrerequisitesFailed { .. } => unreachable!("converted to Failed above"),
            StepOutcome::LeaseLost => unreachable!("handled above"),
        }
        if let Some(findings) = &findings {
            operations::set_findings(&mut *tx, current.id, json!(findings)).await?;
            if let Some((_, _, detail)) = event.as_mut() {
                detail["findings"] = json!(findings);
            }
        }
        let mut create_failed = false;
        if let Some((action, outcome_name, detail)) = event {
            create_failed = outcome_name == "failed" && kind == "create_workforce";
            let failure = (outcome_name == "failed").then(|| {
                (
                    detail_text(&detail, "code").to_owned(),
                    detail_text(&detail, "message").to_owned(),
                )
            });
            audit::insert(
                &mut tx,
                NewAuditEvent {
                    actor: "system",
                    action,
                    outcome: outcome_name,
                    region: Some(region),
                    workforce_name: Some(name),
                    operation_id: Some(current.id),
                    request_id: current.request_id.as_deref(),
                    before_state: state(&before),
                    after_state: state(&after),
                    detail: Some(detail),
                    ..Default::default()
                },
            )
            .await?;
            if let Some((code, message)) = failure {
                tracing::warn!(operation.id = %current.id, operation.kind = kind, workforce.name = name, aws.region = region, transition = action, failure.code = code, failure.message = message, "operation failed");
            } else {
                tracing::info!(operation.id = %current.id, operation.kind = kind, workforce.name = name, aws.region = region, transition = action, "operation transition");
            }
        }
        tx.commit().await?;
        self.cache.invalidate_operation(current.id, region, name);
        if create_failed {
            self.sync_region_in_background(region);
        }
        Ok(())
    }

    /// Lists the workforces of a region in the background and records those the service has
    /// no record of. After a failed creation, that records a workforce created outside the
    /// service, which SageMaker reports with "Cannot create more than one workforce", so that
    /// reads show it at once instead of after the next start.
    fn sync_region_in_background(&self, region: &str) {
        let Ok(region) = Region::parse("region", region) else {
            return;
        };
        let budget = self
            .budget
            .clone()
            .unwrap_or_else(|| CallBudget::new(self.db.clone(), "unlimited", 0));
        let (db, aws) = (self.db.clone(), self.aws.clone());
        tokio::spawn(async move {
            crate::refresh::sync_regions(&db, &aws, &budget, &[region]).await;
        });
    }

    fn schedule(&self) -> PollSchedule {
        PollSchedule::from_backoff(self.settings.poll_initial, self.settings.poll_max)
    }

    /// Capped exponential delay with ±20% jitter, so that many operations do not poll in step.
    fn poll_delay(&self, attempt: u32) -> Duration {
        self.schedule()
            .next_delay(&[], Duration::ZERO, attempt, poller::random_jitter())
    }

    /// Delay before the next DescribeWorkforce of a submitted operation, from the durations
    /// recorded for its region and kind.
    async fn next_poll_delay(
        &self,
        conn: &mut sqlx::PgConnection,
        operation: &OperationRow,
        elapsed: Duration,
        attempt: u32,
    ) -> Result<Duration, sqlx::Error> {
        let history =
            operations::recent_durations(conn, &operation.region, &operation.kind).await?;
        Ok(self
            .schedule()
            .next_delay(&history, elapsed, attempt, poller::random_jitter()))
    }
}

/// Records how long SageMaker took for a submitted operation that reached a terminal status.
/// The change ended between the previous poll and this one, so the estimate is the midpoint.
/// Recording this poll's time instead would add the detection delay to the history, and the
/// schedule, polling later, would then drift later still.
async fn record_duration(
    conn: &mut sqlx::PgConnection,
    operation: &OperationRow,
) -> Result<(), sqlx::Error> {
    let Some(submitted_at) = operation.submitted_at else {
        return Ok(());
    };
    let now = chrono::Utc::now();
    let last_in_progress = operation
        .polled_at
        .unwrap_or(submitted_at)
        .max(submitted_at);
    let ended_at = last_in_progress + (now - last_in_progress) / 2;
    let duration = (ended_at - submitted_at).to_std().unwrap_or_default();
    operations::insert_duration(conn, &operation.region, &operation.kind, duration).await
}

fn elapsed_seconds(operation: &OperationRow) -> f64 {
    (chrono::Utc::now() - operation.created_at).num_milliseconds() as f64 / 1000.0
}

/// Returns true when AWS already shows the change.
fn change_applied(change: &Change, snapshot: &WorkforceSnapshot) -> bool {
    match change {
        Change::PutVpcConfig { vpc_config } => snapshot
            .vpc_config
            .as_ref()
            .is_some_and(|v| v.matches(vpc_config)),
        Change::DeleteVpcConfig => snapshot.vpc_config.is_none(),
        Change::PutSourceIpConfig {
            source_ip_config,
            ip_address_type,
        } => {
            source_ip_config.same_cidrs(&snapshot.source_ip_cidrs)
                && ip_address_type.is_none_or(|wanted| {
                    snapshot.ip_address_type.as_deref() == Some(wanted.as_aws_str())
                })
        }
        // NOTE: the client secret cannot be read back, so a change of the secret alone counts
        // as applied once the call may have been sent. It is never sent twice.
        Change::PutOidcConfig { oidc_config } => snapshot.oidc_config.as_ref() == Some(oidc_config),
        Change::CreateWorkforce { .. } | Change::DeleteWorkforce => false,
    }
}

/// Decides the outcome of a poll after the change was submitted.
fn poll_outcome(change: &Change, current: Option<WorkforceSnapshot>) -> StepOutcome {
    let status = current.as_ref().and_then(|c| c.status.clone());
    match (change, status.as_deref()) {
        (Change::DeleteWorkforce, None) => StepOutcome::Succeeded { snapshot: None },
        (_, None) => StepOutcome::Failed {
            code: "WorkforceNotFound".into(),
            message: "the workforce disappeared from SageMaker while the change was in progress"
                .into(),
            snapshot: None,
        },
        (_, Some("Failed")) => {
            let reason = current
                .as_ref()
                .and_then(|c| c.failure_reason.clone())
                .unwrap_or_else(|| "SageMaker gave no reason".into());
            StepOutcome::Failed {
                code: "WorkforceFailed".into(),
                message: reason,
                snapshot: current,
            }
        }
        (Change::DeleteWorkforce, _) => StepOutcome::Waiting { snapshot: current },
        (_, Some("Active")) => StepOutcome::Succeeded { snapshot: current },
        (_, status) if is_transitional(status) => StepOutcome::Waiting { snapshot: current },
        (_, _) => StepOutcome::Waiting { snapshot: current },
    }
}

/// Wakes idle workers when an operation is inserted, through PostgreSQL `LISTEN`, so that work
/// accepted by any process starts at once. Workers also poll, so a lost notification only
/// delays a step.
///
/// The same connection receives the ids of changed operations and passes them to `watchers`,
/// which wakes long-polling readers.
pub async fn listen_for_work(
    db: PgPool,
    wake: Arc<Notify>,
    watchers: OperationWatchers,
    cache: ReadCache,
    shutdown: CancellationToken,
) {
    // A database that accepts connections and then drops them at once would otherwise make
    // this loop reconnect thousands of times a second. The wait doubles up to 5 s, and starts
    // again from 100 ms after a connection that lasted a minute.
    let mut retry_delay = LISTEN_RETRY_FIRST;
    let mut first_attempt = true;
    while !shutdown.is_cancelled() {
        if !first_attempt {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(retry_delay) => {}
            }
            retry_delay = (retry_delay * 2).min(LISTEN_RETRY_MAX);
        }
        first_attempt = false;
        let mut listener = match PgListener::connect_with(&db).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(error = %error, retry_ms = retry_delay.as_millis() as u64, "failed to listen for new operations; retrying");
                continue;
            }
        };
        // Without this, `try_recv` reconnects by itself in a loop with no wait.
        listener.eager_reconnect(false);
        if let Err(error) = listener
            .listen_all([
                operations::WAKE_CHANNEL,
                CHANGED_CHANNEL,
                cache::INVALIDATION_CHANNEL,
            ])
            .await
        {
            tracing::warn!(error = %error, retry_ms = retry_delay.as_millis() as u64, "failed to listen for new operations; retrying");
            continue;
        }
        let listening_since = std::time::Instant::now();
        // Changes may have been missed while no connection listened.
        cache.listening_started();
        watchers.announce_all();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                // `recv` would reconnect silently and lose the notifications sent meanwhile.
                // `try_recv` returns None instead, so the new listener above resets the cache.
                received = listener.try_recv() => match received {
                    Ok(Some(notification)) if notification.channel() == cache::INVALIDATION_CHANNEL => {
                        cache.invalidate(&Invalidation::parse(notification.payload()));
                    }
                    Ok(Some(notification)) if notification.channel() == CHANGED_CHANNEL => {
                        match notification.payload().parse() {
                            Ok(id) => watchers.announce(id),
                            Err(_) => watchers.announce_all(),
                        }
                    }
                    Ok(Some(_)) => wake.notify_waiters(),
                    Ok(None) => {
                        cache.listening_stopped();
                        tracing::warn!("lost the notification connection; reconnecting");
                        break;
                    }
                    Err(error) => {
                        cache.listening_stopped();
                        tracing::warn!(error = %error, "lost the notification connection; reconnecting");
                        break;
                    }
                },
            }
        }
        if listening_since.elapsed() >= LISTEN_STABLE_AFTER {
            retry_delay = LISTEN_RETRY_FIRST;
        }
    }
}

/// First wait before the notification listener connects again.
const LISTEN_RETRY_FIRST: Duration = Duration::from_millis(100);
/// Maximum wait before the notification listener connects again.
const LISTEN_RETRY_MAX: Duration = Duration::from_secs(5);
/// Time a notification connection must last before the listener's wait starts over.
const LISTEN_STABLE_AFTER: Duration = Duration::from_secs(60);

/// Returns the text of the field `key` of an audit event's detail, or "" when it has none.
fn detail_text<'a>(detail: &'a serde_json::Value, key: &str) -> &'a str {
    detail
        .get(key)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
}
