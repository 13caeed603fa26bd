//! Durable operations: failures reported by SageMaker, lease takeover and racing workers.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn failed_workforce_fails_operation_with_reason() {
    let app = TestApp::spawn().await;
    let body = json!({"name": "doomed", "cognito_config": {"user_pool": "us-east-1_AbC123", "client_id": "portal"},
                      "vpc_config": vpc_config(&[SUBNET_UNSUPPORTED_AZ])});
    let (status, operation) = app.create_workforce(body).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let finished = app.wait_for_operation(operation["id"].as_str().unwrap()).await;
    assert_eq!(finished["status"], "failed");
    assert_eq!(finished["failure"]["code"], "WorkforceFailed");
    let message = finished["failure"]["message"].as_str().unwrap();
    assert!(message.contains(SUBNET_UNSUPPORTED_AZ), "{message}");

    let (_, workforce) = app.get(&format!("/v1/regions/{REGION}/workforces/doomed")).await;
    assert_eq!(workforce["status"], "Failed");
    assert_eq!(workforce["failure_reason"], message);
    let actions = app.audit_actions("doomed").await;
    assert_eq!(actions.last().unwrap(), &("operation.failed".to_owned(), "failed".to_owned()));
}

#[tokio::test]
async fn rejected_change_fails_with_aws_code() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("labelers", None).await;
    // A security group of another VPC: SageMaker rejects the update.
    let body = json!({"vpc_id": VPC, "security_group_ids": ["sg-0b10000000000001b"], "subnets": [SUBNET_A]});
    let (status, _, operation) = app
        .request(reqwest::Method::PUT, &format!("/v1/regions/{REGION}/workforces/labelers/vpc-config"), Some(body))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let finished = app.wait_for_operation(operation["id"].as_str().unwrap()).await;
    assert_eq!(finished["status"], "failed");
    assert_eq!(finished["failure"]["code"], "ValidationException", "{finished}");
    let (_, workforce) = app.get(&format!("/v1/regions/{REGION}/workforces/labelers")).await;
    assert_eq!(workforce["status"], "Active");
    assert!(workforce["vpc_config"].is_null());
}

#[tokio::test]
async fn expired_lease_is_finished_by_another_worker() {
    let app = TestApp::spawn_with(TestOptions { workers: 0, sandbox_delay_ms: 100, ..Default::default() }).await;
    let (status, operation) = app.create_workforce(cognito_workforce("labelers")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = operation["id"].as_str().unwrap().to_owned();

    // Worker A claims the operation with a short lease, sends CreateWorkforce, and dies before
    // it records anything.
    let lease = Duration::from_millis(300);
    let first = app.manual_worker("worker-a", lease);
    let claimed = first.claim().await.unwrap().expect("operation is due");
    let outcome = first.perform(&claimed).await;
    assert!(matches!(outcome, workforce_service::worker::StepOutcome::Submitted { .. }), "{outcome:?}");
    drop(outcome);
    assert_eq!(app.sandbox().call_count("CreateWorkforce"), 1);

    // While A's lease lasts, nobody else may take the operation.
    let second = app.manual_worker("worker-b", Duration::from_secs(30));
    assert!(second.run_once().await.unwrap() == false);

    // After the lease expires, B finishes it without sending CreateWorkforce again.
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        second.run_once().await.unwrap();
        let (_, current) = app.get(&format!("/v1/operations/{id}")).await;
        if current["status"] == "succeeded" {
            break;
        }
        assert_ne!(current["status"], "failed", "{current}");
        assert!(tokio::time::Instant::now() < deadline, "operation did not finish: {current}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(app.sandbox().call_count("CreateWorkforce"), 1);

    // A's late result is discarded because it no longer holds the lease.
    first.record(&claimed, workforce_service::worker::StepOutcome::Waiting { snapshot: None }).await.unwrap();
    let (_, current) = app.get(&format!("/v1/operations/{id}")).await;
    assert_eq!(current["status"], "succeeded");
}

#[tokio::test]
async fn racing_workers_never_share_an_operation() {
    let app = TestApp::spawn_with(TestOptions { workers: 0, ..Default::default() }).await;
    // Fifty due operations, inserted directly so that they need no AWS state.
    for i in 0..50 {
        sqlx::query(
            "insert into operations (id, kind, region, workforce_name, status, request, deadline_at, actor)
             values (gen_random_uuid(), 'delete_workforce', 'us-east-1', $1, 'pending', '{\"kind\":\"delete_workforce\"}',
                     now() + interval '1 hour', 'test')",
        )
        .bind(format!("workforce-{i}"))
        .execute(&app.db)
        .await
        .unwrap();
    }
    let mut claimers = Vec::new();
    for w in 0..8 {
        let worker = app.manual_worker(&format!("racer-{w}"), Duration::from_secs(60));
        claimers.push(tokio::spawn(async move {
            let mut taken = Vec::new();
            while let Some(operation) = worker.claim().await.unwrap() {
                taken.push(operation.id);
            }
            taken
        }));
    }
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 50, "every operation is claimed once");
    assert_eq!(unique.len(), 50, "no operation is claimed twice");
}
