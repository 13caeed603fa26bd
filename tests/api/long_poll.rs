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

/// What a read of an operation returned: status, `ETag` header and body text.
struct Read {
    status: StatusCode,
    etag: String,
    content_length: Option<String>,
    body: String,
}

/// Reads an operation, with `If-None-Match` when `seen` is given, and `?wait` when `wait` is.
async fn read_operation(app: &TestApp, id: &str, seen: Option<&str>, wait: Option<u32>) -> Read {
    let mut url = format!("{}/v1/operations/{id}", app.base_url);
    if let Some(seconds) = wait {
        url.push_str(&format!("?wait={seconds}"));
    }
    let mut request = app.client.get(url);
    if let Some(tags) = seen {
        request = request.header("if-none-match", tags);
    }
    let response = request.send().await.expect("request is sent");
    let status = response.status();
    let etag = response
        .headers()
        .get("etag")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let content_length = response
        .headers()
        .get("content-length")
        .map(|value| value.to_str().unwrap().to_owned());
    Read {
        status,
        etag,
        content_length,
        body: response.text().await.unwrap(),
    }
}

#[tokio::test]
async fn current_etag_gets_not_modified() {
    let app = spawn_without_workers().await;
    let id = pending_operation(&app).await;
    let first = read_operation(&app, &id, None, None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert!(
        first.etag.starts_with("W/\"") && first.etag.len() > 4,
        "ETag {:?}",
        first.etag
    );
    let strong = first.etag.trim_start_matches("W/");
    let listed = format!("\"other\", {}", first.etag);

    for seen in [first.etag.as_str(), strong, listed.as_str(), "*"] {
        let read = read_operation(&app, &id, Some(seen), None).await;
        assert_eq!(
            read.status,
            StatusCode::NOT_MODIFIED,
            "If-None-Match {seen}"
        );
        assert_eq!(read.etag, first.etag, "If-None-Match {seen}");
        assert_eq!(read.body, "", "If-None-Match {seen}");
        // A 304 may carry a Content-Length only with the length of the 200 response's body.
        let length = first.body.len().to_string();
        assert!(
            read.content_length.is_none() || read.content_length == Some(length),
            "Content-Length {:?} in a 304",
            read.content_length
        );
    }
    let other = read_operation(&app, &id, Some("\"other\""), None).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.body, first.body);

    commit_change(&app, &id).await;
    let changed = read_operation(&app, &id, Some(&first.etag), None).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_ne!(changed.etag, first.etag);
    assert!(changed.body.contains("Initializing"), "{}", changed.body);
}

/// A worker's step changes only `attempts` and `updated_at`, and a poll of SageMaker writes the
/// operation twice. Neither ends a wait, with or without `If-None-Match`.
#[tokio::test]
async fn worker_steps_do_not_end_wait() {
    let app = spawn_without_workers().await;
    let id = pending_operation(&app).await;
    let first = read_operation(&app, &id, None, None).await;
    let url = format!("{}/v1/operations/{id}?wait=2", app.base_url);
    let with_etag = app.client.get(&url).header("if-none-match", &first.etag);
    let without_etag = app.client.get(&url);
    let waiting = tokio::spawn(async move {
        let (with_etag, without_etag) = tokio::join!(with_etag.send(), without_etag.send());
        (with_etag.unwrap(), without_etag.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    for _ in 0..3 {
        sqlx::query(
            "update operations set attempts = attempts + 1, updated_at = now() where id = $1::uuid",
        )
        .bind(&id)
        .execute(&app.db)
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (with_etag, without_etag) = waiting.await.unwrap();

    assert_eq!(with_etag.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(with_etag.headers()["etag"].to_str().unwrap(), first.etag);
    assert_eq!(without_etag.status(), StatusCode::OK);
    let operation: Value = without_etag.json().await.unwrap();
    assert_eq!(operation["attempts"], 3, "{operation}");
    let now = read_operation(&app, &id, Some(&first.etag), None).await;
    assert_eq!(now.status, StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn malformed_if_none_match_is_rejected() {
    let app = spawn_without_workers().await;
    let id = pending_operation(&app).await;
    for seen in ["abc", "\"unclosed", "\"a\" \"b\""] {
        let read = read_operation(&app, &id, Some(seen), Some(1)).await;
        assert_eq!(read.status, StatusCode::BAD_REQUEST, "If-None-Match {seen}");
        let problem: Value = serde_json::from_str(&read.body).unwrap();
        assert_eq!(problem["errors"][0]["field"], "If-None-Match", "{problem}");
    }

    // Two lines form one list, in which `*` cannot stand beside a tag.
    let response = app
        .client
        .get(format!("{}/v1/operations/{id}", app.base_url))
        .header("if-none-match", "*")
        .header("if-none-match", "\"abc\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

/// A shutdown ends the waits at once, with the state they have, instead of leaving them open
/// until the grace period ends.
#[tokio::test]
async fn shutdown_ends_waits() {
    let mut app = spawn_without_workers().await;
    let id = pending_operation(&app).await;
    let first = read_operation(&app, &id, None, None).await;
    let waiters: Vec<_> = (0..5)
        .map(|_| {
            let request = app
                .client
                .get(format!("{}/v1/operations/{id}?wait=30", app.base_url))
                .header("if-none-match", &first.etag);
            tokio::spawn(async move { request.send().await.map(|response| response.status()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let service = app.service.take().unwrap();
    service.shutdown(Duration::from_secs(20)).await;
    let shutdown_took = started.elapsed();

    for waiter in waiters {
        let status = waiter.await.unwrap().expect("the wait gets a response");
        assert_eq!(status, StatusCode::NOT_MODIFIED);
    }
    assert!(
        shutdown_took < Duration::from_secs(10),
        "shutdown took {shutdown_took:?}"
    );
}

/// A change committed between two reads is returned at once when the second read sends the
/// first one's ETag. Without it, the wait would take the changed state as its starting point.
#[tokio::test]
async fn wait_with_stale_etag_returns_at_once() {
    let app = spawn_without_workers().await;
    let id = pending_operation(&app).await;
    let first = read_operation(&app, &id, None, None).await;
    commit_change(&app, &id).await;

    let started = Instant::now();
    let read = read_operation(&app, &id, Some(&first.etag), Some(10)).await;

    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert!(read.body.contains("Initializing"), "{}", read.body);
    assert_ne!(read.etag, first.etag);
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "answered after {elapsed:?}"
    );
}

#[tokio::test]
async fn wait_with_current_etag_returns_change() {
    let app = spawn_without_workers().await;
    let id = pending_operation(&app).await;
    let first = read_operation(&app, &id, None, None).await;
    let url = format!("{}/v1/operations/{id}?wait=10", app.base_url);
    let request = app.client.get(url).header("if-none-match", &first.etag);
    let waiting = tokio::spawn(async move { request.send().await.expect("request is sent") });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let committed = commit_change(&app, &id).await;
    let response = waiting.await.unwrap();
    let after_commit = committed.elapsed();

    assert_eq!(response.status(), StatusCode::OK);
    assert_ne!(response.headers()["etag"].to_str().unwrap(), first.etag);
    let operation: Value = response.json().await.unwrap();
    assert_eq!(operation["aws_status"], "Initializing", "{operation}");
    assert!(
        after_commit < Duration::from_secs(5),
        "answered {after_commit:?} after the commit"
    );
}

#[tokio::test]
async fn wait_with_current_etag_ends_with_not_modified() {
    let app = spawn_without_workers().await;
    let id = pending_operation(&app).await;
    let first = read_operation(&app, &id, None, None).await;

    let started = Instant::now();
    let read = read_operation(&app, &id, Some(&first.etag), Some(1)).await;
    let elapsed = started.elapsed();

    assert_eq!(read.status, StatusCode::NOT_MODIFIED, "{}", read.body);
    assert_eq!(read.etag, first.etag);
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
async fn finished_operation_is_not_modified_at_once() {
    let app = TestApp::spawn().await;
    let finished = app.create_active_workforce("done", None).await;
    let id = finished["id"].as_str().unwrap();
    let first = read_operation(&app, id, None, None).await;

    let started = Instant::now();
    let read = read_operation(&app, id, Some(&first.etag), Some(30)).await;

    assert_eq!(read.status, StatusCode::NOT_MODIFIED, "{}", read.body);
    assert!(started.elapsed() < Duration::from_secs(5));
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
