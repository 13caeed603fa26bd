//! The in-memory copies of API keys, workforces and operations: every change, from this process
//! or from another one, is visible to the next reads.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{REGION, TestApp, TestOptions, client_with_key};
use workforce_service::auth::{Role, api_keys};

/// Repeats `check` until it returns true or two seconds pass; a change made by another process
/// reaches this one through a PostgreSQL notification, within milliseconds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn idle_app_options() -> TestOptions {
    TestOptions {
        workers: 0,
        ..Default::default()
    }
}

async fn status_with(client: &reqwest::Client, app: &TestApp, path: &str) -> StatusCode {
    client
        .get(format!("{}{path}", app.base_url))
        .send()
        .await
        .expect("request is sent")
        .status()
}

#[tokio::test]
async fn revoked_key_fails_next_request() {
    let app = TestApp::spawn_with(idle_app_options()).await;
    let (row, key) = api_keys::create(&app.db, "portal", Role::Viewer, None, None)
        .await
        .unwrap();
    let portal = client_with_key(&key);
    // Used first, so that the process has a cached copy of the key.
    for _ in 0..3 {
        assert_eq!(
            status_with(&portal, &app, "/v1/operations").await,
            StatusCode::OK
        );
    }

    let (status, _, body) = app
        .request(Method::DELETE, &format!("/v1/api-keys/{}", row.id), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    assert_eq!(
        status_with(&portal, &app, "/v1/operations").await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn key_revoked_elsewhere_stops_working() {
    let app = TestApp::spawn_with(idle_app_options()).await;
    let (_, key) = api_keys::create(&app.db, "script", Role::Viewer, None, None)
        .await
        .unwrap();
    let script = client_with_key(&key);
    assert_eq!(
        status_with(&script, &app, "/v1/operations").await,
        StatusCode::OK
    );

    // What `workforce-service api-keys revoke` does from its own process.
    api_keys::revoke_by_name(&app.db, "script").await.unwrap();

    eventually("the revoked key was still accepted", async || {
        status_with(&script, &app, "/v1/operations").await == StatusCode::UNAUTHORIZED
    })
    .await;
}

#[tokio::test]
async fn expired_key_rejected_without_notification() {
    let app = TestApp::spawn_with(idle_app_options()).await;
    let expires_at = chrono::Utc::now() + chrono::Duration::milliseconds(600);
    let (_, key) = api_keys::create(&app.db, "short", Role::Viewer, None, Some(expires_at))
        .await
        .unwrap();
    let short = client_with_key(&key);
    assert_eq!(
        status_with(&short, &app, "/v1/operations").await,
        StatusCode::OK
    );

    tokio::time::sleep(Duration::from_millis(700)).await;

    assert_eq!(
        status_with(&short, &app, "/v1/operations").await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn workforce_changed_elsewhere_reads_fresh() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("cached", None).await;
    let path = format!("/v1/regions/{REGION}/workforces/cached");
    let (_, first_headers, first) = app.request(Method::GET, &path, None).await;
    assert_eq!(first["failure_reason"], Value::Null, "{first}");

    // Another replica records a refresh from AWS.
    sqlx::query(
        "update workforces set failure_reason = 'seen by another process', revision = revision + 1
          where region = $1 and name = 'cached'",
    )
    .bind(REGION)
    .execute(&app.db)
    .await
    .unwrap();

    eventually("the workforce response kept the old record", async || {
        let (_, headers, body) = app.request(Method::GET, &path, None).await;
        body["failure_reason"] == "seen by another process"
            && headers.get("etag") != first_headers.get("etag")
    })
    .await;
}

#[tokio::test]
async fn accepted_change_shows_at_once() {
    let app = TestApp::spawn_with(idle_app_options()).await;
    sqlx::query(
        "insert into workforces (region, name, aws_status, auth_kind, auth_config, created_at, updated_at, aws_refreshed_at)
         values ($1, 'steady', 'Active', 'cognito', '{}'::jsonb, now(), now(), now())",
    )
    .bind(REGION)
    .execute(&app.db)
    .await
    .unwrap();
    let path = format!("/v1/regions/{REGION}/workforces/steady");
    let (status, before) = app.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{before}");
    assert!(before["operation_in_flight"].is_null(), "{before}");

    let (status, _, accepted) = app
        .request(
            Method::PUT,
            &format!("{path}/source-ip-config"),
            Some(serde_json::json!({ "cidrs": ["10.0.0.0/16"] })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");

    // No wait: the process that accepted the change dropped its copies when it committed.
    let (_, after) = app.get(&path).await;
    assert_eq!(
        after["operation_in_flight"]["id"], accepted["id"],
        "{after}"
    );
    let (_, operation) = app
        .get(&format!(
            "/v1/operations/{}",
            accepted["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(operation["status"], "pending", "{operation}");
}

#[tokio::test]
async fn finished_operation_reads_finished_everywhere() {
    let app = TestApp::spawn().await;
    let finished = app.create_active_workforce("followed", None).await;
    // wait_for_operation saw it finish through the cached operation route; the workforce
    // route must agree at once.
    let (_, workforce) = app
        .get(&format!("/v1/regions/{REGION}/workforces/followed"))
        .await;
    assert_eq!(workforce["status"], "Active", "{workforce}");
    assert!(workforce["operation_in_flight"].is_null(), "{workforce}");
    let (_, again) = app
        .get(&format!(
            "/v1/operations/{}",
            finished["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(again, finished);
}

#[tokio::test]
async fn cache_can_be_turned_off() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        extra_args: vec!["--read-cache-max-age-ms=0".to_owned()],
        ..Default::default()
    })
    .await;
    let (_, key) = api_keys::create(&app.db, "uncached", Role::Viewer, None, None)
        .await
        .unwrap();
    let client = client_with_key(&key);
    assert_eq!(
        status_with(&client, &app, "/v1/operations").await,
        StatusCode::OK
    );
    // Without a cache, the next request reads the key's row and finds it revoked.
    api_keys::revoke_by_name(&app.db, "uncached").await.unwrap();
    assert_eq!(
        status_with(&client, &app, "/v1/operations").await,
        StatusCode::UNAUTHORIZED
    );
}

/// A change committed while the notification connection is lost is not announced. The cache
/// is emptied when the connection drops, so the next read is fresh.
#[tokio::test]
async fn change_during_lost_connection_reads_fresh() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("cached", None).await;
    let path = format!("/v1/regions/{REGION}/workforces/cached");
    let (_, _, first) = app.request(Method::GET, &path, None).await;
    assert_eq!(first["failure_reason"], Value::Null, "{first}");

    // One transaction ends the listener's connection and changes the workforce, so that its
    // notification is sent while no connection listens.
    let mut tx = app.db.begin().await.unwrap();
    sqlx::query(
        "update workforces set failure_reason = 'changed while nobody listened', revision = revision + 1
          where region = $1 and name = 'cached'",
    )
    .bind(REGION)
    .execute(&mut *tx)
    .await
    .unwrap();
    let ended: i64 = sqlx::query_scalar(
        "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity
          where datname = current_database() and query ilike 'listen%') ended",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(ended, 1, "one listening connection");
    tx.commit().await.unwrap();

    // Without the reset, the copy would be served until its maximum age of 5 s.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, _, body) = app.request(Method::GET, &path, None).await;
    assert_eq!(body["failure_reason"], "changed while nobody listened");
}
