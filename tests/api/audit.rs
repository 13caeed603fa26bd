//! The audit table is append-only at the database level, and its hash chain reveals tampering.

use crate::support::*;

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
    let mut tx = app.db.begin().await.unwrap();
    sqlx::query("set local session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("update audit_events set actor = 'mallory' where id = $1")
        .bind(target)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let (_, report) = app.get("/v1/audit-events/verify").await;
    assert_eq!(report["valid"], false);
    assert_eq!(report["first_broken"]["id"], target);
    assert_eq!(report["first_broken"]["reason"], "content_changed");
}

#[tokio::test]
async fn verify_detects_deleted_event() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("labelers", None).await;
    let mut tx = app.db.begin().await.unwrap();
    sqlx::query("set local session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("delete from audit_events where chain_seq = 2")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (_, report) = app.get("/v1/audit-events/verify").await;
    assert_eq!(report["valid"], false);
    assert_eq!(report["first_broken"]["reason"], "sequence_gap");
    assert_eq!(report["first_broken"]["chain_seq"], 3);
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
                let action = format!("test.writer{writer}.event{event}");
                workforce_service::db::audit::insert(
                    &mut tx,
                    workforce_service::db::audit::NewAuditEvent {
                        actor: "test",
                        action: &action,
                        outcome: "succeeded",
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
    assert_eq!(report["events_checked"], 200);
}
