//! The audit table is append-only at the database level, and its hash chain reveals tampering.

use crate::support::*;

/// Runs a statement as a superuser who has switched the append-only triggers off.
async fn tamper(app: &TestApp, statement: &str) {
    let mut tx = app.db.begin().await.unwrap();
    sqlx::query("set local session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn audit_table_rejects_update_delete_truncate() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("labelers", None).await;
    assert!(app.count_rows("audit_events").await > 0);
    for statement in [
        "update audit_events set actor = 'mallory'",
        "delete from audit_events",
        "truncate audit_events",
    ] {
        let error = sqlx::query(statement)
            .execute(&app.db)
            .await
            .expect_err(statement);
        let message = error.to_string();
        assert!(message.contains("append-only"), "{statement}: {message}");
    }
    let changed: i64 =
        sqlx::query_scalar("select count(*) from audit_events where actor = 'mallory'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(changed, 0);
}

#[tokio::test]
async fn verify_names_tampered_event() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("labelers", None).await;
    let (status, report) = app.get("/v1/audit-events/verify").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(report["valid"], true, "{report}");
    let total = app.count_rows("audit_events").await;
    assert_eq!(report["events_checked"], total);

    // A superuser edits one event with the append-only triggers switched off.
    let target: i64 =
        sqlx::query_scalar("select id from audit_events order by chain_seq offset 1 limit 1")
            .fetch_one(&app.db)
            .await
            .unwrap();
    tamper(
        &app,
        &format!("update audit_events set actor = 'mallory' where id = {target}"),
    )
    .await;

    let (_, report) = app.get("/v1/audit-events/verify").await;
    assert_eq!(report["valid"], false);
    assert_eq!(report["first_broken"]["id"], target);
    assert_eq!(report["first_broken"]["reason"], "content_changed");
}

/// A rewrite of the whole chain after an edit passes the walk, and only the last hash,
/// compared with a copy kept outside, shows it.
#[tokio::test]
async fn rewritten_chain_changes_last_hash() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("labelers", None).await;
    let (_, before) = app.get("/v1/audit-events/verify").await;
    let kept_hash = before["last_hash"]
        .as_str()
        .expect("a last hash")
        .to_owned();
    assert_eq!(kept_hash.len(), 64, "{before}");
    let through = before["events_checked"].as_i64().unwrap();
    let (_, unchanged) = app
        .get(&format!("/v1/audit-events/verify?through={through}"))
        .await;
    assert_eq!(unchanged["last_hash"], kept_hash.as_str(), "{unchanged}");

    tamper(
        &app,
        "do $$
         declare
             event record;
             previous bytea;
         begin
             update audit_events set actor = 'mallory' where chain_seq = 2;
             for event in select id, chain_seq from audit_events order by chain_seq loop
                 update audit_events set prev_hash = previous where id = event.id;
                 update audit_events e set hash = audit_event_digest(e, e.prev_hash)
                  where id = event.id
                 returning hash into previous;
             end loop;
         end $$",
    )
    .await;

    // New events move the last hash on, so the walk stops where the kept copy was taken.
    app.create_workforce(cognito_workforce("later")).await;
    let through = before["events_checked"].as_i64().unwrap();
    let (_, after) = app
        .get(&format!("/v1/audit-events/verify?through={through}"))
        .await;
    assert_eq!(after["valid"], true, "{after}");
    assert_eq!(after["events_checked"], through);
    assert_ne!(after["last_hash"], kept_hash.as_str(), "{after}");
}

#[tokio::test]
async fn verify_detects_deleted_event() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("labelers", None).await;
    tamper(&app, "delete from audit_events where chain_seq = 2").await;
    let (_, report) = app.get("/v1/audit-events/verify").await;
    assert_eq!(report["valid"], false);
    assert_eq!(report["first_broken"]["reason"], "sequence_gap");
    assert_eq!(report["first_broken"]["chain_seq"], 3);
}

/// Events removed from the end leave a valid chain behind, so only a walk through the count
/// kept from an earlier walk finds that they are missing.
#[tokio::test]
async fn verify_through_finds_removed_tail() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("labelers", None).await;
    let (_, before) = app.get("/v1/audit-events/verify").await;
    let kept_count = before["events_checked"].as_i64().unwrap();
    assert!(kept_count >= 3, "{before}");

    tamper(
        &app,
        &format!(
            "delete from audit_events where chain_seq > {}",
            kept_count - 2
        ),
    )
    .await;

    let (_, shortened) = app.get("/v1/audit-events/verify").await;
    assert_eq!(shortened["valid"], true, "{shortened}");
    assert_eq!(shortened["events_checked"], kept_count - 2);

    let (status, report) = app
        .get(&format!("/v1/audit-events/verify?through={kept_count}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(report["valid"], false, "{report}");
    assert_eq!(report["events_checked"], kept_count - 2);
    assert_eq!(report["first_broken"]["reason"], "events_missing");
    assert_eq!(report["first_broken"]["chain_seq"], kept_count - 1);
    assert_eq!(report["last_hash"], serde_json::Value::Null);
}

#[tokio::test]
async fn chain_holds_under_concurrent_writers() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let mut writers = Vec::new();
    for writer in 0..8 {
        let db = app.db.clone();
        writers.push(tokio::spawn(async move {
            for event in 0..25 {
                let mut tx = db.begin().await.unwrap();
                workforce_service::db::audit::insert(
                    &mut tx,
                    workforce_service::db::audit::NewAuditEvent {
                        actor: "test",
                        action: "operation.succeeded",
                        outcome: "succeeded",
                        detail: Some(serde_json::json!({"writer": writer, "event": event})),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
                tx.commit().await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let (_, report) = app.get("/v1/audit-events/verify").await;
    assert_eq!(report["valid"], true, "{report}");
    assert_eq!(report["events_checked"], 200 + app.events_at_start);
}

/// Follows `next_cursor` from `first` to the last page and returns the ids in page order.
async fn page_ids(app: &TestApp, first: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut path = first.to_owned();
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{path}: {page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3, "{page}");
        ids.extend(items.iter().map(|event| event["id"].as_i64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("{first}&cursor={cursor}"),
            None => return ids,
        }
    }
}

#[tokio::test]
async fn pages_cover_every_event_once_in_order() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    // Times that do not follow the ids, as with transactions that commit out of order, and
    // two events at the same instant.
    let minutes = [5, 1, 4, 4, 2, 9, 3, 7, 8, 6];
    for minute in minutes {
        sqlx::query(
            "insert into audit_events (occurred_at, actor, action, outcome, region, workforce_name)
             values (timestamptz '2026-06-01 12:00:00+00' + $1 * interval '1 minute',
                     'pager', 'test.paged', 'recorded', 'us-east-1', 'paged')",
        )
        .bind(f64::from(minute))
        .execute(&app.db)
        .await
        .unwrap();
    }
    let events: Vec<(i64, i32)> = sqlx::query_as(
        "select id, extract(minute from occurred_at)::int from audit_events
          where actor = 'pager' order by id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();

    // Without a time range: newest id first.
    let by_id = page_ids(&app, "/v1/audit-events?actor=pager&limit=3").await;
    let mut expected: Vec<i64> = events.iter().map(|(id, _)| *id).collect();
    expected.reverse();
    assert_eq!(by_id, expected);

    // With a time range: newest time first, then newest id, and only events in the range.
    let by_time = page_ids(
        &app,
        "/v1/audit-events?actor=pager&limit=3&since=2026-06-01T12:02:00Z&until=2026-06-01T12:09:00Z",
    )
    .await;
    let mut in_range: Vec<(i32, i64)> = events
        .iter()
        .filter(|(_, minute)| (2..9).contains(minute))
        .map(|(id, minute)| (*minute, *id))
        .collect();
    in_range.sort_unstable_by(|a, b| b.cmp(a));
    let expected: Vec<i64> = in_range.iter().map(|(_, id)| *id).collect();
    assert_eq!(by_time, expected);
    assert_eq!(by_time.len(), 8);
}

/// A token whose subject is `system` is distinguished from the service by the actor kind.
#[tokio::test]
async fn actor_kind_separates_callers_of_one_name() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    for kind in ["jwt", "system", "jwt"] {
        sqlx::query(
            "insert into audit_events (actor, actor_kind, action, outcome, region, workforce_name)
             values ('system', $1, 'test.named', 'recorded', 'us-east-1', 'named')",
        )
        .bind(kind)
        .execute(&app.db)
        .await
        .unwrap();
    }
    let kinds_of = |page: &serde_json::Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|event| event["workforce_name"] == "named")
            .map(|event| event["actor_kind"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, all) = app.get("/v1/audit-events?actor=system").await;
    assert_eq!(kinds_of(&all), ["jwt", "system", "jwt"], "{all}");
    let (_, tokens) = app
        .get("/v1/audit-events?actor=system&actor_kind=jwt")
        .await;
    assert_eq!(kinds_of(&tokens), ["jwt", "jwt"], "{tokens}");
    let (_, service) = app
        .get("/v1/audit-events?actor=system&actor_kind=system")
        .await;
    assert_eq!(kinds_of(&service), ["system"], "{service}");
}

/// Checks that an audit query gets a 400 whose first error names `field`.
async fn assert_query_rejected(app: &TestApp, query: &str, field: &str) {
    let (status, problem) = app.get(&format!("/v1/audit-events?{query}")).await;
    assert_eq!(
        status,
        reqwest::StatusCode::BAD_REQUEST,
        "{query}: {problem}"
    );
    assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
}

#[tokio::test]
async fn time_range_out_of_bounds_is_rejected() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let cases = [
        ("since=-4713-01-01T00:00:00Z", "since"),
        ("until=-0001-01-01T00:00:00Z", "until"),
        (
            "since=2030-01-01T00:00:00Z&until=2020-01-01T00:00:00Z",
            "until",
        ),
        // The cursor `5@-62135596800000001`: one microsecond before the year 1.
        (
            "since=2020-01-01T00:00:00Z&cursor=NUAtNjIxMzU1OTY4MDAwMDAwMDE",
            "cursor",
        ),
    ];
    for (query, field) in cases {
        assert_query_rejected(&app, query, field).await;
    }
}

/// A value that the service never writes is rejected instead of matching nothing.
#[tokio::test]
async fn unknown_action_or_outcome_is_rejected() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    for (query, field, listed) in [
        ("outcome=bogus", "outcome", "denied"),
        ("action=bogus", "action", "access.denied"),
        (
            "action=operation.succeeded&outcome=Succeeded",
            "outcome",
            "succeeded",
        ),
        ("actor_kind=key", "actor_kind", "api_key"),
    ] {
        assert_query_rejected(&app, query, field).await;
        let (_, problem) = app.get(&format!("/v1/audit-events?{query}")).await;
        let reason = problem["errors"][0]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(listed), "{query}: {problem}");
    }

    for query in ["outcome=denied", "action=access.denied", "outcome=removed"] {
        let (status, page) = app.get(&format!("/v1/audit-events?{query}")).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{query}: {page}");
    }
}

#[tokio::test]
async fn nul_in_filter_is_rejected() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    for (query, field) in [
        ("action=%00", "action"),
        ("actor=a%00b", "actor"),
        ("limit=5&outcome=%00", "outcome"),
    ] {
        assert_query_rejected(&app, query, field).await;
    }
}
