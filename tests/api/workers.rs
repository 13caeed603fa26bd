//! Durable operations: failures reported by SageMaker, lease takeover and racing workers.

use std::collections::HashSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn failed_workforce_fails_operation_with_reason() {
    // The VPC checks reject a subnet in an unsupported zone before SageMaker gets it. A zone
    // table that lists every zone lets the create reach SageMaker, which ends it Failed.
    let extra_args =
        vec!["--supported-az-ids=us-east-1=use1-az1,use1-az2,use1-az3,use1-az4".to_owned()];
    let app = TestApp::spawn_with(TestOptions {
        extra_args,
        ..Default::default()
    })
    .await;
    let reason = "Ground Truth could not create the worker portal endpoints";
    app.sandbox().fail_next_transition(REGION, "doomed", reason);
    let (status, operation) = app.create_workforce(cognito_workforce("doomed")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let finished = app
        .wait_for_operation(operation["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "failed");
    assert_eq!(finished["failure"]["code"], "WorkforceFailed");
    assert_eq!(finished["failure"]["message"], reason);

    let (_, workforce) = app
        .get(&format!("/v1/regions/{REGION}/workforces/doomed"))
        .await;
    assert_eq!(workforce["status"], "Failed");
    assert_eq!(workforce["failure_reason"], reason);
    let actions = app.audit_actions("doomed").await;
    assert_eq!(
        actions.last().unwrap(),
        &("operation.failed".to_owned(), "failed".to_owned())
    );
}

/// Builds a SageMaker client pointed at the test's sandbox, to set up state around the service.
async fn sagemaker_client(app: &TestApp) -> aws_sdk_sagemaker::Client {
    use aws_sdk_sagemaker::config::{BehaviorVersion, Credentials, Region};
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(app.sandbox().endpoint_url())
        .credentials_provider(Credentials::new(
            "AKIDTEST",
            "test-secret",
            None,
            None,
            "test",
        ))
        .load()
        .await;
    aws_sdk_sagemaker::Client::new(&config)
}

#[tokio::test]
async fn rejected_change_fails_with_aws_code() {
    // EC2 calls go to a second sandbox in which the other VPC's security group belongs to
    // VPC, so the VPC checks pass and SageMaker, which uses the built-in topology, rejects
    // the update.
    let mut topology = workforce_sandbox::Topology::built_in();
    let region = topology
        .accounts
        .get_mut(workforce_sandbox::topology::DEFAULT_ACCOUNT)
        .unwrap()
        .regions
        .get_mut(REGION)
        .unwrap();
    region
        .security_groups
        .iter_mut()
        .find(|g| g.group_id == "sg-0b10000000000001b")
        .unwrap()
        .vpc_id = VPC.to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ec2 = workforce_sandbox::start(
        workforce_sandbox::SandboxConfig {
            topology,
            ..Default::default()
        },
        listener,
    )
    .await
    .unwrap();
    let extra_args = vec![format!("--ec2-endpoint-url={}", ec2.endpoint_url())];
    let app = TestApp::spawn_with(TestOptions {
        extra_args,
        ..Default::default()
    })
    .await;
    let (status, operation) = app
        .create_workforce(json!({"name": "oidc-team", "oidc_config": oidc_config("first-secret")}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    app.wait_for_operation(operation["id"].as_str().unwrap())
        .await;

    // SageMaker rejects an OIDC change while a work team uses the workforce.
    let sagemaker = sagemaker_client(&app).await;
    let member = aws_sdk_sagemaker::types::MemberDefinition::builder()
        .oidc_member_definition(
            aws_sdk_sagemaker::types::OidcMemberDefinition::builder()
                .groups("labelers")
                .build(),
        )
        .build();
    sagemaker
        .create_workteam()
        .workteam_name("team-a")
        .workforce_name("oidc-team")
        .description("labelers")
        .member_definitions(member)
        .send()
        .await
        .expect("the sandbox creates the work team");

    let (status, _, operation) = app
        .request(
            reqwest::Method::PUT,
            &format!("/v1/regions/{REGION}/workforces/oidc-team/oidc-config"),
            Some(oidc_config("second-secret")),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let finished = app
        .wait_for_operation(operation["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "failed");
    assert_eq!(
        finished["failure"]["code"], "ValidationException",
        "{finished}"
    );
    assert_eq!(
        app.sandbox().call_count("UpdateWorkforce"),
        1,
        "a rejected change is not retried"
    );
    let (_, workforce) = app
        .get(&format!("/v1/regions/{REGION}/workforces/oidc-team"))
        .await;
    assert_eq!(workforce["status"], "Active");
    let actions = app.audit_actions("oidc-team").await;
    assert_eq!(
        actions.last().unwrap(),
        &("operation.failed".to_owned(), "failed".to_owned())
    );
}

/// Starts a service without workers and accepts the creation of `labelers`; returns the
/// service and the operation's id.
async fn pending_creation() -> (TestApp, String) {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        sandbox_delay_ms: 100,
        ..Default::default()
    })
    .await;
    let (status, operation) = app.create_workforce(cognito_workforce("labelers")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = operation["id"].as_str().unwrap().to_owned();
    (app, id)
}

/// Has worker A claim the due operation with `lease` and run one step that submits the change,
/// without recording the step, as a worker that dies right after its call would.
async fn submit_without_recording(
    app: &TestApp,
    lease: Duration,
) -> (
    workforce_service::worker::Worker,
    workforce_service::db::operations::OperationRow,
) {
    let worker = app.manual_worker("worker-a", lease);
    let claimed = worker.claim().await.unwrap().expect("an operation is due");
    let outcome = worker.perform(&claimed).await;
    assert!(
        matches!(
            outcome,
            workforce_service::worker::StepOutcome::Submitted { .. }
        ),
        "{outcome:?}"
    );
    (worker, claimed)
}

#[tokio::test]
async fn expired_lease_is_finished_by_another_worker() {
    let (app, id) = pending_creation().await;

    // Worker A claims the operation with a short lease, sends CreateWorkforce, and dies before
    // it records anything.
    let lease = Duration::from_millis(300);
    let (first, claimed) = submit_without_recording(&app, lease).await;
    assert_eq!(app.sandbox().call_count("CreateWorkforce"), 1);

    // While A's lease lasts, no other worker may take the operation.
    let second = app.manual_worker("worker-b", Duration::from_secs(30));
    assert!(!second.run_once().await.unwrap());

    // After the lease expires, B finishes it without sending CreateWorkforce again.
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    drive_to_success(&app, &second, &id).await;
    assert_eq!(app.sandbox().call_count("CreateWorkforce"), 1);

    // A's late result is discarded because it no longer holds the lease.
    first
        .record(
            &claimed,
            workforce_service::worker::StepOutcome::Waiting { snapshot: None },
        )
        .await
        .unwrap();
    let (_, current) = app.get(&format!("/v1/operations/{id}")).await;
    assert_eq!(current["status"], "succeeded");
}

/// Delays the sandbox's CreateWorkforce responses by 1.5 s, five leases of 300 ms.
fn slow_down_creation(app: &TestApp) {
    app.sandbox().set_faults(workforce_sandbox::faults::Faults {
        latency_ms: 1_500,
        actions: Some(vec!["CreateWorkforce".to_owned()]),
        ..Default::default()
    });
}

/// A step that takes longer than the lease keeps it: the worker renews it while the AWS call
/// is in flight, so another worker cannot claim the operation and send the change again.
#[tokio::test]
async fn slow_step_keeps_its_lease() {
    let (app, id) = pending_creation().await;
    slow_down_creation(&app);

    // A's step lasts five leases. B tries to claim the operation all along.
    let lease = Duration::from_millis(300);
    let first = app.manual_worker("worker-a", lease);
    let second = app.manual_worker("worker-b", lease);
    let slow_step = tokio::spawn(async move { first.run_once().await.unwrap() });
    // B starts once A has claimed the operation.
    let operation_id: uuid::Uuid = id.parse().unwrap();
    loop {
        let holder: Option<String> =
            sqlx::query_scalar("select locked_by from operations where id = $1")
                .bind(operation_id)
                .fetch_one(&app.db)
                .await
                .unwrap();
        if holder.as_deref() == Some("worker-a") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut claimed_by_second = 0;
    while !slow_step.is_finished() {
        if second.run_once().await.unwrap() {
            claimed_by_second += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(slow_step.await.unwrap(), "A ran a step");
    assert_eq!(claimed_by_second, 0, "B claimed during A's step");
    assert_eq!(app.sandbox().call_count("CreateWorkforce"), 1);

    app.sandbox().set_faults(Default::default());
    drive_to_success(&app, &second, &id).await;
    assert_eq!(app.sandbox().call_count("CreateWorkforce"), 1);
}

/// A throttled call is not retried inside the SDK, where the shared call budget would not
/// count it: the step ends, and the worker retries it later through the budget.
#[tokio::test]
async fn throttled_call_is_sent_once_per_step() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (status, _) = app.create_workforce(cognito_workforce("labelers")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.sandbox().reset_call_counts();
    app.sandbox().set_faults(workforce_sandbox::faults::Faults {
        throttle_ratio: 1.0,
        actions: Some(vec!["DescribeWorkforce".to_owned()]),
        ..Default::default()
    });
    let worker = app.manual_worker("worker-a", Duration::from_secs(30));
    assert!(worker.run_once().await.unwrap(), "a step ran");
    assert_eq!(app.sandbox().call_count("DescribeWorkforce"), 1);
    assert_eq!(app.sandbox().call_count("CreateWorkforce"), 0);
}

/// A worker whose call is in flight but who no longer renews its lease, as a paused process
/// would, loses the operation to another worker. That worker does not send the change again
/// while the first call may still land.
#[tokio::test]
async fn paused_attempt_is_not_sent_again() {
    let (app, id) = pending_creation().await;
    slow_down_creation(&app);
    let lease = Duration::from_millis(300);
    let first = app.manual_worker("worker-a", lease);
    let claimed = first.claim().await.unwrap().expect("the creation is due");
    // `perform` runs the step without renewing the lease.
    let paused = tokio::spawn(async move { first.perform(&claimed).await });

    let second = app.manual_worker("worker-b", lease);
    while !paused.is_finished() {
        second.run_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.sandbox().call_count("CreateWorkforce"), 1);
    app.sandbox().set_faults(Default::default());
    drive_to_success(&app, &second, &id).await;
    assert_eq!(app.sandbox().call_count("CreateWorkforce"), 1);
}

/// Runs steps of `worker` until the operation `id` succeeds.
async fn drive_to_success(app: &TestApp, worker: &workforce_service::worker::Worker, id: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        worker.run_once().await.unwrap();
        let (_, current) = app.get(&format!("/v1/operations/{id}")).await;
        if current["status"] == "succeeded" {
            return;
        }
        assert_ne!(current["status"], "failed", "{current}");
        assert!(tokio::time::Instant::now() < deadline, "{current}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

/// A worker that sends DeleteWorkforce and dies before it records the call leaves the
/// operation to another worker, which finds the workforce gone. The audit log still shows
/// the submission before the success.
#[tokio::test]
async fn resumed_delete_records_its_submission() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        sandbox_delay_ms: 100,
        ..Default::default()
    })
    .await;
    let helper = app.manual_worker("helper", Duration::from_secs(30));
    let (_, created) = app.create_workforce(cognito_workforce("doomed")).await;
    drive_to_success(&app, &helper, created["id"].as_str().unwrap()).await;
    let (status, _, deleted) = app
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/regions/{REGION}/workforces/doomed"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{deleted}");

    let lease = Duration::from_millis(300);
    submit_without_recording(&app, lease).await;
    // Worker A dies here. The sandbox finishes the delete while its lease runs out.
    tokio::time::sleep(lease + Duration::from_millis(500)).await;
    drive_to_success(&app, &helper, deleted["id"].as_str().unwrap()).await;
    assert_eq!(app.sandbox().call_count("DeleteWorkforce"), 1);

    let actions: Vec<String> = app
        .audit_actions("doomed")
        .await
        .into_iter()
        .map(|(action, _)| action)
        .skip_while(|action| action != "workforce.delete.requested")
        .collect();
    assert_eq!(
        actions,
        [
            "workforce.delete.requested",
            "operation.started",
            "operation.submitted",
            "operation.succeeded"
        ]
    );
}

#[tokio::test]
async fn racing_workers_never_share_an_operation() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
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

/// A worker whose database took longer than 25 s to mark the change as submitting may have
/// lost the operation meanwhile to a worker that then sent the change, so it does not send the
/// change in that step. A row lock held by the test simulates a stalled database
/// connection. The next attempt sends the change once.
#[tokio::test]
async fn late_submit_mark_skips_the_call() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 1,
        lease_seconds: 120,
        ..Default::default()
    })
    .await;
    app.create_active_workforce("labelers", None).await;
    app.sandbox().set_faults(workforce_sandbox::Faults {
        latency_ms: 1_500,
        actions: Some(vec!["DescribeWorkforce".to_owned()]),
        ..Default::default()
    });
    let (status, _, accepted) = app
        .request(
            reqwest::Method::PUT,
            &format!("/v1/regions/{REGION}/workforces/labelers/source-ip-config"),
            Some(json!({"cidrs": ["10.0.0.0/8"]})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();

    // Once the worker holds the lease and reads SageMaker, lock the row, so that marking the
    // change as submitting waits for the lock.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let locked: Option<String> =
            sqlx::query_scalar("select locked_by from operations where id = $1::uuid")
                .bind(&id)
                .fetch_one(&app.db)
                .await
                .unwrap();
        if locked.is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never claimed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut lock = app.db.begin().await.unwrap();
    sqlx::query("select 1 from operations where id = $1::uuid for update")
        .bind(&id)
        .execute(&mut *lock)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(27)).await;
    lock.commit().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.sandbox().call_count("UpdateWorkforce"),
        0,
        "the change was sent after a 27 s wait for the database"
    );

    app.sandbox()
        .set_faults(workforce_sandbox::Faults::default());
    let finished = app.wait_for_operation(&id).await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(app.sandbox().call_count("UpdateWorkforce"), 1);
}
