//! The `audit_events` table: an append-only record of every accepted change, every operation
//! transition and every failure. The database rejects updates and deletes of it.

use chrono::{DateTime, Utc};
use serde_json::Value;
use serde_json::value::RawValue;
use sqlx::types::Json;
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

/// An event as listed. Its JSON columns stay the text that PostgreSQL sends, because the audit
/// route returns them unchanged and parsing them took a sixth of a page's time.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditEventRow {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub actor: String,
    pub actor_kind: String,
    pub actor_role: Option<String>,
    pub action: String,
    pub outcome: String,
    pub region: Option<String>,
    pub workforce_name: Option<String>,
    pub operation_id: Option<Uuid>,
    pub request_id: Option<String>,
    pub before_state: Option<Json<Box<RawValue>>>,
    pub after_state: Option<Json<Box<RawValue>>>,
    pub detail: Option<Json<Box<RawValue>>>,
}

/// Every action that the service writes. `insert` checks each new event against it in debug
/// builds, so that the list filter of the audit route stays complete.
pub const ACTIONS: [&str; 15] = [
    "workforce.create.requested",
    "workforce.delete.requested",
    "workforce.vpc_config.put.requested",
    "workforce.vpc_config.delete.requested",
    "workforce.source_ip_config.put.requested",
    "workforce.oidc_config.put.requested",
    "workforce.vanished",
    "operation.started",
    "operation.submitted",
    "operation.succeeded",
    "operation.failed",
    "access.denied",
    "api_key.created",
    "api_key.revoked",
    "api_key.expired",
];

/// Every outcome that the service writes, checked like [`ACTIONS`].
pub const OUTCOMES: [&str; 8] = [
    "accepted",
    "rejected",
    "denied",
    "started",
    "submitted",
    "succeeded",
    "failed",
    "removed",
];

/// Every kind of caller that the service records: a key, a token subject, an unauthenticated
/// request, the service's command line, or the service itself.
pub const ACTOR_KINDS: [&str; 5] = ["api_key", "jwt", "anonymous", "command_line", "system"];

#[derive(Debug, Default)]
pub struct NewAuditEvent<'a> {
    pub actor: &'a str,
    /// `api_key`, `jwt`, `anonymous`, `command_line` or `system`; empty means `system`.
    pub actor_kind: &'a str,
    pub actor_role: Option<&'a str>,
    pub action: &'a str,
    pub outcome: &'a str,
    pub region: Option<&'a str>,
    pub workforce_name: Option<&'a str>,
    pub operation_id: Option<Uuid>,
    pub request_id: Option<&'a str>,
    pub before_state: Option<Value>,
    pub after_state: Option<Value>,
    pub detail: Option<Value>,
}

pub async fn insert(conn: &mut PgConnection, event: NewAuditEvent<'_>) -> Result<i64, sqlx::Error> {
    debug_assert!(
        ACTIONS.contains(&event.action),
        "audit action {} is missing from ACTIONS",
        event.action
    );
    debug_assert!(
        OUTCOMES.contains(&event.outcome),
        "audit outcome {} is missing from OUTCOMES",
        event.outcome
    );
    crate::telemetry::record_audit_event(event.action);
    sqlx::query_scalar!(
        "insert into audit_events (actor, action, outcome, region, workforce_name, operation_id,
                                   request_id, before_state, after_state, detail, actor_kind, actor_role)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         returning id",
        event.actor,
        event.action,
        event.outcome,
        event.region,
        event.workforce_name,
        event.operation_id,
        event.request_id,
        event.before_state,
        event.after_state,
        event.detail,
        if event.actor_kind.is_empty() { "system" } else { event.actor_kind },
        event.actor_role,
    )
    .fetch_one(conn)
    .await
}

#[derive(Debug, Default)]
pub struct AuditFilter<'a> {
    pub region: Option<&'a str>,
    pub workforce_name: Option<&'a str>,
    pub operation_id: Option<Uuid>,
    pub action: Option<&'a str>,
    pub actor: Option<&'a str>,
    pub actor_kind: Option<&'a str>,
    pub outcome: Option<&'a str>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// The last event of the previous page.
    pub after: Option<PagePosition>,
    pub limit: i64,
}

impl AuditFilter<'_> {
    /// Returns whether the page is ordered by time (see [`list`]).
    pub fn is_time_range(&self) -> bool {
        self.since.is_some() || self.until.is_some()
    }
}

/// The end of a page: the last event's id, and its time for pages ordered by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagePosition {
    pub id: i64,
    pub occurred_at: Option<DateTime<Utc>>,
}

/// Builds the statement of [`list`] with only the conditions the filter sets. Public so that
/// the benchmarks explain exactly this SQL.
///
/// Each combination of filters gets its own statement, and thus a plan that uses the index of
/// its condition. A single statement with `($1 is null or region = $1)` conditions would share
/// one plan between all of them.
pub fn list_query(filter: &AuditFilter<'_>) -> QueryBuilder<Postgres> {
    let mut query = QueryBuilder::new(
        "select id, occurred_at, actor, actor_kind, actor_role, action, outcome, region, workforce_name, \
         operation_id, request_id, before_state, after_state, detail from audit_events where true",
    );
    let text_conditions = [
        (" and region = ", filter.region),
        (" and workforce_name = ", filter.workforce_name),
        (" and action = ", filter.action),
        (" and actor = ", filter.actor),
        (" and actor_kind = ", filter.actor_kind),
        (" and outcome = ", filter.outcome),
    ];
    for (condition, value) in text_conditions {
        if let Some(value) = value {
            query.push(condition).push_bind(value.to_owned());
        }
    }
    if let Some(id) = filter.operation_id {
        query.push(" and operation_id = ").push_bind(id);
    }
    if let Some(since) = filter.since {
        query.push(" and occurred_at >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        query.push(" and occurred_at < ").push_bind(until);
    }
    match filter.after {
        Some(PagePosition {
            id,
            occurred_at: Some(occurred_at),
        }) if filter.is_time_range() => {
            query.push(" and (occurred_at, id) < (");
            query
                .push_bind(occurred_at)
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        Some(PagePosition { id, .. }) => {
            query.push(" and id < ").push_bind(id);
        }
        None => {}
    }
    if filter.is_time_range() {
        query.push(" order by occurred_at desc, id desc");
    } else {
        query.push(" order by id desc");
    }
    query.push(" limit ").push_bind(filter.limit);
    query
}

/// Lists events newest first: by id, or by time and then id when a time range is given.
///
/// Ids grow with time, but the planner does not know it. Ordered by time, a time range is read
/// from the time index instead of by scanning every newer id.
pub async fn list(
    executor: impl PgExecutor<'_>,
    filter: AuditFilter<'_>,
) -> Result<Vec<AuditEventRow>, sqlx::Error> {
    list_query(&filter)
        .build_query_as::<AuditEventRow>()
        .fetch_all(executor)
        .await
}

/// The result of walking the audit hash chain.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ChainReport {
    /// True when every event's hash and link to its predecessor check out.
    pub valid: bool,
    pub events_checked: i64,
    /// The first event whose hash or link does not check out.
    pub first_broken: Option<BrokenLink>,
    /// Hash of the last event of a valid chain, in hexadecimal. The chain uses no secret, so
    /// a copy kept outside the database shows whether the events up to it were rewritten.
    pub last_hash: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct BrokenLink {
    /// Id of the event, or of the event after a gap. For `events_missing`, the id of the last
    /// event found, or 0 when there is none.
    pub id: i64,
    /// The event's number in the chain; for `events_missing`, the first number not found.
    pub chain_seq: Option<i64>,
    /// `content_changed`, `link_broken` (an event before it was changed, removed or moved),
    /// `sequence_gap` (events were removed), `events_missing` (the chain ends before the event
    /// asked for with `through`) or `not_chained`.
    pub reason: String,
}

/// Events read per query while the chain is walked.
const VERIFY_PAGE: i64 = 5_000;

/// Walks the chain in order, up to the event numbered `through` if given, and reports the
/// first event that does not check out. A chain that ends before `through` is broken, because
/// events were removed from its end. Without `through`, such a removal, or an edit followed
/// by new hashes for every later event, leaves no trace in the table. Copies of
/// `events_checked` and `last_hash` kept elsewhere show them.
pub async fn verify_chain(
    db: &sqlx::PgPool,
    through: Option<i64>,
) -> Result<ChainReport, sqlx::Error> {
    let unchained: Option<i64> =
        sqlx::query_scalar!("select min(id) from audit_events where chain_seq is null")
            .fetch_one(db)
            .await?;
    if let Some(id) = unchained {
        return Ok(ChainReport {
            valid: false,
            events_checked: 0,
            first_broken: Some(BrokenLink {
                id,
                chain_seq: None,
                reason: "not_chained".into(),
            }),
            last_hash: None,
        });
    }
    let mut checked = 0i64;
    let mut last_id = 0i64;
    let mut previous_seq = 0i64;
    let mut previous_hash: Option<Vec<u8>> = None;
    loop {
        let rows = sqlx::query!(
            r#"select id, chain_seq as "chain_seq!", prev_hash, hash, audit_event_digest(e, e.prev_hash) as "recomputed!"
                 from audit_events e
                where chain_seq > $1 and chain_seq <= $3
                order by chain_seq
                limit $2"#,
            previous_seq,
            VERIFY_PAGE,
            through.unwrap_or(i64::MAX),
        )
        .fetch_all(db)
        .await?;
        if rows.is_empty() {
            if through.is_some_and(|through| checked < through) {
                return Ok(ChainReport {
                    valid: false,
                    events_checked: checked,
                    first_broken: Some(BrokenLink {
                        id: last_id,
                        chain_seq: Some(checked + 1),
                        reason: "events_missing".into(),
                    }),
                    last_hash: None,
                });
            }
            let last_hash = previous_hash.map(|hash| {
                hash.iter()
                    .map(|byte| format!("{byte:02x}"))
                    .collect::<String>()
            });
            return Ok(ChainReport {
                valid: true,
                events_checked: checked,
                first_broken: None,
                last_hash,
            });
        }
        for row in rows {
            let broken = |reason: &str| ChainReport {
                valid: false,
                events_checked: checked,
                first_broken: Some(BrokenLink {
                    id: row.id,
                    chain_seq: Some(row.chain_seq),
                    reason: reason.to_owned(),
                }),
                last_hash: None,
            };
            if row.chain_seq != previous_seq + 1 {
                return Ok(broken("sequence_gap"));
            }
            if row.prev_hash != previous_hash {
                return Ok(broken("link_broken"));
            }
            if row.hash.as_deref() != Some(row.recomputed.as_slice()) {
                return Ok(broken("content_changed"));
            }
            checked += 1;
            last_id = row.id;
            previous_seq = row.chain_seq;
            previous_hash = row.hash;
        }
    }
}
