//! Graceful shutdown: SIGTERM releases the leases, so a second process continues at once.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;
use workforce_service::auth::{Role, api_keys};

async fn operation(client: &reqwest::Client, port: u16, id: &str) -> Value {
    client
        .get(format!("http://127.0.0.1:{port}/v1/operations/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn sigterm_hands_operation_to_next_process() {
    // The test's own service only prepares the database and the sandbox; it runs no workers.
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        sandbox_delay_ms: 1_500,
        ..Default::default()
    })
    .await;
    let (_, key) = api_keys::create(&app.db, "shutdown-test", Role::Admin, None, None)
        .await
        .unwrap();
    let client = client_with_key(&key);
    let sandbox_url = app.sandbox().endpoint_url();

    let first_port = free_port();
    let mut first = start_process(&app.database_url, &sandbox_url, first_port, None).await;
    let response = client
        .post(format!(
            "http://127.0.0.1:{first_port}/v1/regions/{REGION}/workforces"
        ))
        .json(&cognito_workforce("handover"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Wait until the first process has submitted the change and is polling SageMaker.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while operation(&client, first_port, &id).await["submitted_at"].is_null() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first process never submitted the change"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let status = Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || first.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        exit.success(),
        "the first process exits cleanly on SIGTERM: {exit:?}"
    );
    let locked_by: Option<String> =
        sqlx::query_scalar("select locked_by from operations where id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(locked_by.is_none(), "the lease was released on shutdown");

    // The lease lasts 120 s; the second process finishes the operation long before that.
    let second_port = free_port();
    let mut second = start_process(&app.database_url, &sandbox_url, second_port, None).await;
    let started = tokio::time::Instant::now();
    let finished = loop {
        let current = operation(&client, second_port, &id).await;
        if matches!(current["status"].as_str(), Some("succeeded" | "failed")) {
            break current;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the second process did not finish the operation: {current}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = second.kill();
    let _ = second.wait();
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(app.sandbox().call_count("CreateWorkforce"), 1);
}

/// A worker step still waiting on AWS when the grace period ends is cut off, and its lease is
/// given up, so that another process can take the operation at once instead of after the
/// lease expires.
#[tokio::test]
async fn shutdown_releases_lease_of_cut_off_step() {
    let mut app = TestApp::spawn().await;
    app.sandbox().set_faults(workforce_sandbox::Faults {
        latency_ms: 60_000,
        actions: Some(vec!["CreateWorkforce".to_owned()]),
        ..Default::default()
    });
    let (status, created) = app.create_workforce(cognito_workforce("stuck")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let locked_by = || async {
        sqlx::query_scalar::<_, Option<String>>(
            "select locked_by from operations where id = $1::uuid",
        )
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while locked_by().await.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no worker took the operation"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    app.service
        .take()
        .unwrap()
        .shutdown(Duration::from_secs(1))
        .await;

    assert_eq!(locked_by().await, None, "the cut-off step kept its lease");
}
