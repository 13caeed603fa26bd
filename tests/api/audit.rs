//! The audit table is append-only at the database level.

use crate::support::*;

#[tokio::test]
async fn audit_table_rejects_update_delete_truncate() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("labelers", None).await;
    assert!(app.count_rows("audit_events").await > 0);
    for statement in ["update audit_events set actor = 'mallory'", "delete from audit_events", "truncate audit_events"] {
        let error = sqlx::query(statement).execute(&app.db).await.expect_err(statement);
        let message = error.to_string();
        assert!(message.contains("append-only"), "{statement}: {message}");
    }
    let changed: i64 = sqlx::query_scalar("select count(*) from audit_events where actor = 'mallory'").fetch_one(&app.db).await.unwrap();
    assert_eq!(changed, 0);
}
