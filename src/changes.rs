//! Acceptance of changes: the state rules, the operation and its audit event, in one
//! transaction, before the API returns `202 Accepted`.

use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::db::audit::{self, NewAuditEvent};
use crate::db::idempotency;
use crate::db::is_unique_violation;
use crate::db::operations::{self, NewOperation, OperationRow};
use crate::db::workforces::{self, NewWorkforce, WorkforceRow};
use crate::domain::{Change, IpAddressType, OidcSecret, Region, WorkforceName};
use crate::http::error::ApiError;
use crate::http::models::WorkforceResponse;
use crate::secrets::SecretSealer;
use crate::vpc_checks::Finding;

/// The caller of a change and the id of the HTTP request that carried it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: String,
    /// `api_key` or `jwt`.
    pub actor_kind: &'static str,
    /// The role that allowed the change.
    pub role: &'static str,
    pub request_id: Option<String>,
}

/// Dependencies and options for accepting a change.
pub struct Acceptor<'a> {
    pub db: &'a PgPool,
    pub sealer: &'a SecretSealer,
    pub deadline: std::time::Duration,
    /// Warnings and notes of the VPC prerequisite checks, stored with the operation and in
    /// its audit event.
    pub findings: Vec<Finding>,
    /// The caller's `If-Match` header: the change is accepted only while the workforce's ETag
    /// is one of these.
    pub if_match: Option<String>,
    /// Copies of rows that this process drops once an accepted change commits.
    pub cache: &'a crate::cache::ReadCache,
    /// AWS, to read a workforce again before rejecting a change because of its stored status.
    /// Without it, the stored status decides.
    pub recheck: Option<AwsRecheck<'a>>,
}

/// AWS access of an [`Acceptor`], to read a workforce before a rejection.
#[derive(Clone, Copy)]
pub struct AwsRecheck<'a> {
    pub aws: &'a crate::aws::Aws,
    /// The shared SageMaker call budget; when it is spent, the stored status decides.
    pub budget: &'a crate::budget::CallBudget,
    pub recent: &'a RecentRechecks,
}

/// When this process last read each workforce from AWS before a change. A read that fails
/// leaves the stored record as it was, so the record's age alone would not limit the reads.
#[derive(Debug, Default)]
pub struct RecentRechecks(
    std::sync::Mutex<std::collections::HashMap<(String, String), std::time::Instant>>,
);

impl RecentRechecks {
    /// Records a read of the workforce and returns true, unless one started in the last
    /// [`RECHECK_AFTER`].
    fn start(&self, region: &Region, name: &str) -> bool {
        let now = std::time::Instant::now();
        let mut started = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Old entries are dropped once there are many, so that the map stays small.
        if started.len() >= 1_000 {
            started.retain(|_, at| now.duration_since(*at) < RECHECK_AFTER);
        }
        let key = (region.as_str().to_owned(), name.to_owned());
        if started
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < RECHECK_AFTER)
        {
            return false;
        }
        started.insert(key, now);
        true
    }
}

/// A stored status younger than this is trusted without reading AWS again. So a client that
/// retries a rejected change in a loop causes at most one read of AWS per second and process,
/// which is one DescribeWorkforce with the SDK's retries.
const RECHECK_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Maximum wait for that DescribeWorkforce. After it, the stored status decides.
const RECHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Returns the ETag of a workforce record: its revision, quoted as a strong validator.
pub fn etag(revision: i64) -> String {
    format!("\"{revision}\"")
}

/// Returns true when an `If-Match` header value (`*` or a list of ETags) matches `revision`.
pub fn if_match_allows(header: &str, revision: i64) -> bool {
    let current = etag(revision);
    header.trim() == "*" || entity_tags(header).is_some_and(|tags| tags.contains(&current.as_str()))
}

/// Splits a list of entity tags, such as an `If-Match` value, into its tags, or returns `None`
/// when an element is not a tag in double quotes with an optional `W/`. A comma inside the
/// quotes belongs to the tag, and empty elements are skipped (RFC 9110 sections 5.6.1 and 8.8.3).
pub fn entity_tags(list: &str) -> Option<Vec<&str>> {
    let mut tags = Vec::new();
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return Some(tags);
        }
        let quoted = rest.strip_prefix("W/").unwrap_or(rest).strip_prefix('"')?;
        let closing = quoted.find('"')?;
        let is_etagc = |b: u8| b == 0x21 || (0x23..=0x7e).contains(&b);
        if !quoted[..closing].bytes().all(is_etagc) {
            return None;
        }
        let length = rest.len() - quoted.len() + closing + 1;
        tags.push(&rest[..length]);
        rest = rest[length..].trim_start_matches([' ', '\t']);
        if !rest.is_empty() && !rest.starts_with(',') {
            return None;
        }
    }
}

fn change_json(change: &Change) -> Value {
    serde_json::to_value(change).expect("a change serializes to JSON")
}

fn audit_action(change: &Change) -> &'static str {
    match change {
        Change::CreateWorkforce { .. } => "workforce.create.requested",
        Change::DeleteWorkforce => "workforce.delete.requested",
        Change::PutVpcConfig { .. } => "workforce.vpc_config.put.requested",
        Change::DeleteVpcConfig => "workforce.vpc_config.delete.requested",
        Change::PutSourceIpConfig { .. } => "workforce.source_ip_config.put.requested",
        Change::PutOidcConfig { .. } => "workforce.oidc_config.put.requested",
    }
}

fn workforce_state(row: &WorkforceRow) -> Value {
    serde_json::to_value(WorkforceResponse::from_row(row, None))
        .expect("a workforce serializes to JSON")
}

/// Details of a change for the audit log: the change itself, whether a secret was set, and
/// the findings of the VPC prerequisite checks, if any.
fn audit_detail(change: &Change, secret: Option<&OidcSecret>, findings: &[Finding]) -> Value {
    let mut detail =
        json!({ "change": change_json(change), "client_secret_set": secret.is_some() });
    if !findings.is_empty() {
        detail["findings"] = json!(findings);
    }
    detail
}

impl<'a> Acceptor<'a> {
    /// Stores `findings` with the operation that this acceptor creates.
    pub fn with_findings(self, findings: Vec<Finding>) -> Acceptor<'a> {
        Acceptor { findings, ..self }
    }

    /// Accepts the creation of a workforce.
    pub async fn create(
        &self,
        caller: &Caller,
        region: &Region,
        name: &WorkforceName,
        change: Change,
        secret: Option<OidcSecret>,
    ) -> Result<OperationRow, ApiError> {
        let Change::CreateWorkforce {
            cognito_config,
            oidc_config,
            vpc_config,
            source_ip_config,
            tags,
            ip_address_type,
            ..
        } = &change
        else {
            unreachable!("create takes a CreateWorkforce change")
        };
        let (auth_kind, auth_config) = match (cognito_config, oidc_config) {
            (Some(cognito), _) => ("cognito", json!({ "cognito_config": cognito })),
            (None, Some(oidc)) => ("oidc", json!({ "oidc_config": oidc })),
            (None, None) => unreachable!("validation requires one auth config"),
        };
        // The record of a workforce that AWS has since deleted would block the creation.
        if let Some(existing) = workforces::list(self.db, Some(region.as_str()), None, None, 1)
            .await?
            .into_iter()
            .next()
        {
            self.recheck_stored_status(region, &existing, None).await;
        }
        let mut tx = self.db.begin().await?;
        let inserted = workforces::insert(
            &mut tx,
            NewWorkforce {
                region: region.as_str(),
                name: name.as_str(),
                auth_kind,
                auth_config,
                vpc_config: vpc_config
                    .as_ref()
                    .map(|v| serde_json::to_value(v).expect("VPC config serializes")),
                source_ip_cidrs: source_ip_config
                    .as_ref()
                    .map(|s| s.cidrs.iter().map(|c| c.as_str().to_owned()).collect())
                    .unwrap_or_default(),
                tags: serde_json::to_value(tags).expect("tags serialize"),
                ip_address_type: ip_address_type.unwrap_or_default().as_aws_str(),
            },
        )
        .await;
        if let Err(error) = inserted {
            if is_unique_violation(&error, workforces::ONE_PER_REGION)
                || is_unique_violation(&error, workforces::PRIMARY_KEY)
            {
                drop(tx);
                let existing =
                    workforces::list(self.db, Some(region.as_str()), None, None, 1).await?;
                let existing_name = existing
                    .first()
                    .map(|w| w.name.as_str())
                    .unwrap_or("another workforce");
                let detail = format!(
                    "region {region} already has the workforce '{existing_name}'; AWS allows one private workforce per account and region, so delete it first or change it instead"
                );
                return Err(self
                    .state_conflict(caller, region, name, &change, detail)
                    .await);
            }
            return Err(error.into());
        }
        let operation = self
            .insert_operation(&mut tx, caller, region, name, &change, secret.as_ref())
            .await?;
        audit::insert(
            &mut tx,
            NewAuditEvent {
                actor: &caller.actor,
                actor_kind: caller.actor_kind,
                actor_role: Some(caller.role),
                action: audit_action(&change),
                outcome: "accepted",
                region: Some(region.as_str()),
                workforce_name: Some(name.as_str()),
                operation_id: Some(operation.id),
                request_id: caller.request_id.as_deref(),
                before_state: None,
                after_state: Some(change_json(&change)),
                detail: Some(audit_detail(&change, secret.as_ref(), &self.findings)),
            },
        )
        .await?;
        tx.commit().await?;
        self.cache
            .invalidate_operation(operation.id, region.as_str(), name.as_str());
        Ok(operation)
    }

    /// Accepts a change of an existing workforce, if its state allows one.
    pub async fn change(
        &self,
        caller: &Caller,
        region: &Region,
        name: &WorkforceName,
        change: Change,
        secret: Option<OidcSecret>,
    ) -> Result<OperationRow, ApiError> {
        if let Some(stored) = workforces::find(self.db, region.as_str(), name.as_str()).await? {
            self.recheck_stored_status(region, &stored, Some(&change))
                .await;
        }
        let mut tx = self.db.begin().await?;
        let Some(workforce) =
            workforces::find_for_update(&mut tx, region.as_str(), name.as_str()).await?
        else {
            return Err(ApiError::NotFound(format!(
                "no workforce named '{name}' in region {region}"
            )));
        };
        if let Some(expected) = &self.if_match
            && !if_match_allows(expected, workforce.revision)
        {
            let current = etag(workforce.revision);
            // If-Match compares strongly, so a weak tag never matches (RFC 9110 section 13.1.1),
            // even the weak form of the current one.
            let weak_current = format!("W/{current}");
            let detail = if entity_tags(expected)
                .is_some_and(|tags| tags.contains(&weak_current.as_str()))
            {
                format!(
                    "If-Match holds the weak tag {weak_current}, and If-Match never matches a weak tag; send the ETag as the workforce's read returned it, {current}, without W/"
                )
            } else {
                format!(
                    "workforce '{name}' changed since the ETag in If-Match was read (it is now {current}); read it again and decide whether the change still applies"
                )
            };
            return Err(ApiError::PreconditionFailed(detail));
        }
        if let Some(in_flight) =
            operations::find_unfinished(&mut *tx, region.as_str(), name.as_str()).await?
        {
            drop(tx);
            return Err(self
                .in_flight_conflict(caller, region, name, &change, in_flight.id)
                .await);
        }
        let status = workforce.aws_status.as_deref().unwrap_or("not yet created");
        let allowed = match change {
            Change::DeleteWorkforce => matches!(status, "Active" | "Failed"),
            _ => status == "Active",
        };
        if !allowed {
            let needed = if matches!(change, Change::DeleteWorkforce) {
                "Active or Failed"
            } else {
                "Active"
            };
            let next_step = match status {
                "Initializing" | "Updating" | "Deleting" => {
                    "SageMaker is still applying a change made outside this service; send the change again in a few seconds, and the service reads the status from AWS again before it answers"
                }
                "Failed" => "delete the workforce and create it again",
                _ => "read the workforce and send the change again once it is Active",
            };
            let detail = format!(
                "workforce '{name}' is {status}; this change is allowed only when it is {needed}: {next_step}"
            );
            drop(tx);
            return Err(self
                .state_conflict(caller, region, name, &change, detail)
                .await);
        }
        // An IPv6 block needs a dual-stack workforce. The request itself is valid, so a
        // mismatch with the stored address type is a conflict with the workforce's state.
        if let Change::PutSourceIpConfig {
            source_ip_config,
            ip_address_type: None,
        } = &change
            && workforce.ip_address_type != IpAddressType::Dualstack.as_aws_str()
        {
            let ipv6: Vec<&str> = source_ip_config
                .cidrs
                .iter()
                .map(|cidr| cidr.as_str())
                .filter(|cidr| cidr.contains(':'))
                .collect();
            if !ipv6.is_empty() {
                let detail = format!(
                    "workforce '{name}' has ip_address_type '{}', which takes only IPv4 blocks, and the list has the IPv6 blocks {}; remove them, or send ip_address_type 'dualstack' with the list",
                    workforce.ip_address_type,
                    ipv6.join(", ")
                );
                drop(tx);
                return Err(self
                    .state_conflict(caller, region, name, &change, detail)
                    .await);
            }
        }
        let unsupported = match &change {
            Change::DeleteVpcConfig if workforce.vpc_config.is_none() => Some(format!(
                "workforce '{name}' has no VPC configuration to remove"
            )),
            Change::PutOidcConfig { .. } if workforce.auth_kind != "oidc" => Some(format!(
                "workforce '{name}' signs workers in with Cognito; SageMaker cannot switch a workforce to OIDC, so create a new workforce instead"
            )),
            _ => None,
        };
        if let Some(detail) = unsupported {
            drop(tx);
            return Err(self
                .state_conflict(caller, region, name, &change, detail)
                .await);
        }
        let operation = match self
            .insert_operation(&mut tx, caller, region, name, &change, secret.as_ref())
            .await
        {
            Ok(operation) => operation,
            Err(ApiError::Conflict { operation_id, .. }) => {
                drop(tx);
                return Err(self
                    .in_flight_conflict(
                        caller,
                        region,
                        name,
                        &change,
                        operation_id.unwrap_or_default(),
                    )
                    .await);
            }
            Err(other) => return Err(other),
        };
        // A new ETag for the accepted change, so that another change based on the old state
        // fails its If-Match.
        workforces::bump_revision(&mut tx, region.as_str(), name.as_str()).await?;
        audit::insert(
            &mut tx,
            NewAuditEvent {
                actor: &caller.actor,
                actor_kind: caller.actor_kind,
                actor_role: Some(caller.role),
                action: audit_action(&change),
                outcome: "accepted",
                region: Some(region.as_str()),
                workforce_name: Some(name.as_str()),
                operation_id: Some(operation.id),
                request_id: caller.request_id.as_deref(),
                before_state: Some(workforce_state(&workforce)),
                after_state: Some(change_json(&change)),
                detail: Some(audit_detail(&change, secret.as_ref(), &self.findings)),
            },
        )
        .await?;
        tx.commit().await?;
        self.cache
            .invalidate_operation(operation.id, region.as_str(), name.as_str());
        Ok(operation)
    }

    async fn insert_operation(
        &self,
        tx: &mut sqlx::PgConnection,
        caller: &Caller,
        region: &Region,
        name: &WorkforceName,
        change: &Change,
        secret: Option<&OidcSecret>,
    ) -> Result<OperationRow, ApiError> {
        let inserted = operations::insert(
            tx,
            NewOperation {
                id: Uuid::new_v4(),
                kind: change.kind().as_str(),
                region: region.as_str(),
                workforce_name: name.as_str(),
                request: change_json(change),
                sealed_secret: secret.map(|s| self.sealer.seal(s)),
                findings: json!(self.findings),
                deadline: self.deadline,
                request_id: caller.request_id.as_deref(),
                actor: &caller.actor,
            },
        )
        .await;
        match inserted {
            Ok(operation) => {
                if let Some((caller, key)) = crate::http::idempotency::linked_key() {
                    idempotency::link_operation(&mut *tx, &caller, &key, operation.id).await?;
                }
                Ok(operation)
            }
            Err(error) if is_unique_violation(&error, operations::ONE_UNFINISHED_PER_WORKFORCE) => {
                Err(ApiError::Conflict {
                    detail: String::new(),
                    operation_id: None,
                })
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn in_flight_conflict(
        &self,
        caller: &Caller,
        region: &Region,
        name: &WorkforceName,
        change: &Change,
        operation_id: Uuid,
    ) -> ApiError {
        let operation_id = match operation_id.is_nil() {
            true => operations::find_unfinished(self.db, region.as_str(), name.as_str())
                .await
                .ok()
                .flatten()
                .map(|o| o.id),
            false => Some(operation_id),
        };
        let detail = match operation_id {
            Some(id) => format!(
                "workforce '{name}' already has operation {id} in flight; wait for it to finish, then send the change again"
            ),
            None => format!(
                "workforce '{name}' already has an operation in flight; wait for it to finish, then send the change again"
            ),
        };
        if let Err(error) = self
            .record_rejection(caller, region, name, change, &detail)
            .await
        {
            return error;
        }
        ApiError::Conflict {
            detail,
            operation_id,
        }
    }

    /// Reads a workforce from AWS again and stores what AWS reports, when its stored status
    /// would reject `change` (`None` for a creation, which any record rejects). The stored
    /// status comes from the last refresh, and SageMaker may have finished an update or a
    /// deletion since then. Nothing is read while an operation of this service is in flight
    /// (its worker keeps the record current), when the record is younger than
    /// [`RECHECK_AFTER`], or when the call budget is spent. A failed read leaves the record as
    /// it is.
    async fn recheck_stored_status(
        &self,
        region: &Region,
        stored: &WorkforceRow,
        change: Option<&Change>,
    ) {
        let Some(recheck) = self.recheck else {
            return;
        };
        // No status means that SageMaker has not been asked to create the workforce yet.
        let Some(status) = stored.aws_status.as_deref() else {
            return;
        };
        let allowed = match change {
            Some(Change::DeleteWorkforce) => matches!(status, "Active" | "Failed"),
            Some(_) => status == "Active",
            None => false,
        };
        let recent = stored.aws_refreshed_at.is_some_and(|at| {
            (chrono::Utc::now() - at)
                .to_std()
                .is_ok_and(|age| age < RECHECK_AFTER)
        });
        let name = stored.name.as_str();
        if allowed || recent || !recheck.recent.start(region, name) {
            return;
        }
        let reread = async {
            if operations::find_unfinished(self.db, region.as_str(), name)
                .await?
                .is_some()
                || !recheck.budget.try_take(region.as_str(), 1).await?
            {
                return anyhow::Ok(());
            }
            crate::refresh::refresh_workforce(self.db, recheck.aws, region, name).await
        };
        match tokio::time::timeout(RECHECK_TIMEOUT, reread).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::info!(workforce.name = name, aws.region = %region, error = %format!("{error:#}"), "failed to read a workforce from AWS before a change; its stored status decides");
            }
            Err(_) => {
                tracing::info!(workforce.name = name, aws.region = %region, "reading a workforce from AWS before a change timed out; its stored status decides");
            }
        }
        self.cache
            .invalidate(&crate::cache::Invalidation::Workforce {
                region: region.as_str().to_owned(),
                name: name.to_owned(),
            });
    }

    /// Audits a change that the workforce's state rules out, and returns its 409. Callers
    /// end their transaction first, so that no row lock is held while the event is written.
    async fn state_conflict(
        &self,
        caller: &Caller,
        region: &Region,
        name: &WorkforceName,
        change: &Change,
        detail: String,
    ) -> ApiError {
        if let Err(error) = self
            .record_rejection(caller, region, name, change, &detail)
            .await
        {
            return error;
        }
        ApiError::Conflict {
            detail,
            operation_id: None,
        }
    }

    /// Audits a change rejected because of the workforce's state. When the event cannot be
    /// written, the caller gets that error (a 503 while the database is unreachable) in place
    /// of the 409, so that every 409 sent has its event. Nothing was changed either way.
    async fn record_rejection(
        &self,
        caller: &Caller,
        region: &Region,
        name: &WorkforceName,
        change: &Change,
        reason: &str,
    ) -> Result<(), ApiError> {
        let result = async {
            let mut conn = self.db.acquire().await?;
            audit::insert(
                &mut conn,
                NewAuditEvent {
                    actor: &caller.actor,
                    actor_kind: caller.actor_kind,
                    actor_role: Some(caller.role),
                    action: audit_action(change),
                    outcome: "rejected",
                    region: Some(region.as_str()),
                    workforce_name: Some(name.as_str()),
                    operation_id: None,
                    request_id: caller.request_id.as_deref(),
                    before_state: None,
                    after_state: None,
                    detail: Some(json!({ "change": change_json(change), "reason": reason })),
                },
            )
            .await
        }
        .await;
        result.map(drop).map_err(|error| {
            tracing::warn!(
                error = %error,
                workforce.name = %name,
                aws.region = %region,
                request_id = caller.request_id.as_deref().unwrap_or_default(),
                "failed to audit a change rejected with 409, so the request fails instead"
            );
            ApiError::from(error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{entity_tags, if_match_allows};

    #[test]
    fn entity_tags_keep_commas_inside_quotes() {
        assert_eq!(
            entity_tags(r#""a,b", W/"3""#),
            Some(vec![r#""a,b""#, r#"W/"3""#])
        );
    }

    #[test]
    fn entity_tags_skip_empty_elements() {
        assert_eq!(
            entity_tags(", \"9\",,\t\"8\" ,"),
            Some(vec!["\"9\"", "\"8\""])
        );
    }

    #[test]
    fn entity_tags_reject_unquoted_values() {
        for invalid in ["3", "\"3\" \"4\"", "\"3", "W/3", "\"a\"b\""] {
            assert_eq!(entity_tags(invalid), None, "{invalid}");
        }
    }

    #[test]
    fn if_match_compares_whole_strong_tags() {
        assert!(if_match_allows("\"2\", \"3\"", 3));
        assert!(if_match_allows("*", 3));
        assert!(!if_match_allows("W/\"3\"", 3));
        assert!(!if_match_allows("\"3,\"", 3));
    }
}
