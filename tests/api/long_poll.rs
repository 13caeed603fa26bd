//! Long-polling of operations: `GET /v1/operations/{id}?wait=SECONDS`.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;

/// Starts a workforce creation that no worker takes up, and returns its operation id.
async fn pending_operation(app: &TestApp) -> String {
    let (status, operation) = app.create_workforce(cognito_workforce("waiting")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    operation["id"].as_str().unwrap().to_owned()
}

async fn spawn_without_workers() -> TestApp {
    TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await
}

/// Changes the operation's AWS status in a transaction on its own connection, as a worker of
/// another process would, and returns when the change is committed.
async fn commit_change(app: &TestApp, id: &str) -> Instant {
    let mut tx = app.db.begin().await.unwrap();
    sqlx::query(
        "update operations set aws_status = 'Initializing', updated_at = now() where id = $1::uuid",
    )
    .bind(id)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    Instant::now()
}

fn spawn_wait(
    app: &TestApp,
    id: &str,
    seconds: u32,
) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let url = format!("{}/v1/operations/{id}?wait={seconds}", app.base_url);
    let client = app.client.clone();
    tokio::spawn(async move {
        let response = client.get(url).send().await.expect("request is sent");
        let status = response.status();
        (status, response.json().await.expect("JSON body"))
    })
}

#[tokio::test]
async fn wait_returns_soon_after_change() {
    let app = spawn_without_workers().await;
    let id = pending_operation(&app).await;
    let started = Instant::now();
    let waiting = spawn_wait(&app, &id, 10);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let committed = commit_change(&app, &id).await;
    let (status, operation) = waiting.await.unwrap();
    let after_commit = committed.elapsed();

    assert_eq!(status, StatusCode::OK, "{operation}");
    assert_eq!(operation["aws_status"], "Initializing", "{operation}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "answered before the change"
    );
    // The wait is 10 s, so a response well before that came from the notification. How fast it
    // comes is measured in the benchmarks, not asserted here.
    assert!(
        after_commit < Duration::from_secs(5),
        "answered {after_commit:?} after the commit"
    );
}

#[tokio::test]
async fn wait_ends_unchanged_after_timeout() {
    let app = spawn_without_workers().await;
    let id = pending_operation(&app).await;
    let started = Instant::now();

    let (status, operation) = spawn_wait(&app, &id, 1).await.unwrap();
    let elapsed = started.elapsed();

    assert_eq!(status, StatusCode::OK, "{operation}");
    assert_eq!(operation["status"], "pending", "{operation}");
    assert!(
        elapsed >= Duration::from_secs(1),
        "answered after {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "answered after {elapsed:?}"
    );
}

#[tokio::test]
async fn finished_operation_returns_without_waiting() {
    let app = TestApp::spawn().await;
    let finished = app.create_active_workforce("done", None).await;
    let id = finished["id"].as_str().unwrap();
    let started = Instant::now();

    let (status, operation) = spawn_wait(&app, id, 30).await.unwrap();

    assert_eq!(status, StatusCode::OK, "{operation}");
    assert_eq!(operation["status"], "succeeded");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn invalid_wait_is_rejected() {
    let app = spawn_without_workers().await;
    let id = pending_operation(&app).await;

    for wait in ["61", "-1", "soon", "1.5"] {
        let (status, problem) = app.get(&format!("/v1/operations/{id}?wait={wait}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "wait={wait}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("wait"),
            "wait={wait}: {problem}"
        );
    }
    let (_, problem) = app.get(&format!("/v1/operations/{id}?wait=61")).await;
    assert_eq!(problem["errors"][0]["field"], "wait", "{problem}");
}

#[tokio::test]
async fn waiters_hold_no_database_connection() {
    // The test service has a pool of 8 connections; 20 waiters must not exhaust it.
    let app = spawn_without_workers().await;
    let id = pending_operation(&app).await;
    let waiters: Vec<_> = (0..20).map(|_| spawn_wait(&app, &id, 10)).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let (status, workforces) = app.get("/v1/workforces").await;
    let read_time = started.elapsed();
    commit_change(&app, &id).await;
    let mut answers = Vec::new();
    for waiter in waiters {
        answers.push(waiter.await.unwrap());
    }

    assert_eq!(status, StatusCode::OK, "{workforces}");
    assert!(
        read_time < Duration::from_secs(5),
        "read took {read_time:?}"
    );
    for (status, operation) in answers {
        assert_eq!(status, StatusCode::OK, "{operation}");
        assert_eq!(operation["aws_status"], "Initializing", "{operation}");
    }
}

/// A client that gives up on a wait closes its connection. The request is still counted, with
/// the status 499 that nginx uses for a request closed by its client.
#[tokio::test]
async fn abandoned_wait_is_counted() {
    let app = spawn_without_workers().await;
    let id = pending_operation(&app).await;
    let error = app
        .client
        .get(format!("{}/v1/operations/{id}?wait=10", app.base_url))
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");

    let counted = r#"http_requests_total{method="GET",route="/v1/operations/{id}",status="499"} 1"#;
    let mut metrics = String::new();
    for _ in 0..50 {
        let response = app
            .client
            .get(format!("{}/metrics", app.base_url))
            .send()
            .await
            .unwrap();
        metrics = response.text().await.unwrap();
        if metrics.contains(counted) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no request counted with status 499:\n{metrics}");
}
