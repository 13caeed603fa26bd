//! AWS faults: throttling, server errors and latency spikes in the sandbox slow operations
//! down but never make them fail, never reach a client as a 5xx, and never apply a change
//! twice. A workforce stuck past the deadline fails its operation as timed out.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::support::*;
use workforce_service::auth::{Role, api_keys};

/// Account of every call the service makes in sandbox mode (the sandbox's default account).
const ACCOUNT: &str = "123456789012";
const WEST: &str = "us-west-2";

/// Time allowed for one operation while faults slow every AWS call down. The SDK backs off
/// for up to a few seconds between its attempts, so this is well above the fault-free time.
const FAULTY_OPERATION_TIMEOUT: Duration = Duration::from_secs(90);

/// Status codes that clients received, with the request that got each one.
type Responses = Arc<Mutex<Vec<(String, StatusCode)>>>;

/// Returns the sandbox's call counts by account, region, action and outcome.
async fn call_outcomes(app: &TestApp) -> Value {
    reqwest::get(format!(
        "{}/_sandbox/calls/outcomes",
        app.sandbox().endpoint_url()
    ))
    .await
    .expect("the sandbox answers")
    .json()
    .await
    .expect("the outcome counts are JSON")
}

fn outcome_count(outcomes: &Value, region: &str, action: &str, outcome: &str) -> u64 {
    outcomes[ACCOUNT][region][action][outcome]
        .as_u64()
        .unwrap_or(0)
}

/// Sends a change, which must be accepted at once whatever AWS does: no request calls AWS in a
/// way that can fail it. A change with a VPC configuration whose checks cannot read EC2 is
/// accepted with a `vpc_checks_deferred` warning, and the worker runs the checks later.
async fn send_change(
    app: &TestApp,
    responses: &Responses,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> String {
    let (status, _, response) = app.request(method.clone(), path, body).await;
    responses
        .lock()
        .unwrap()
        .push((format!("{method} {path}"), status));
    assert_eq!(status, StatusCode::ACCEPTED, "{method} {path}: {response}");
    response["id"].as_str().expect("an operation id").to_owned()
}

/// Polls an operation until it has finished, with a deadline that allows for faults.
async fn wait_finished(app: &TestApp, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + FAULTY_OPERATION_TIMEOUT;
    loop {
        let (status, operation) = app.get(&format!("/v1/operations/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{operation}");
        if matches!(operation["status"].as_str(), Some("succeeded" | "failed")) {
            return operation;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "operation {id} did not finish under faults: {operation}"
        );
        // Two chains poll at once; 200 ms keeps the admin key under the default rate limit
        // of 1200 requests per minute.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs changes one after another on one workforce and returns their finished operations.
async fn run_changes(
    app: &TestApp,
    responses: &Responses,
    changes: Vec<(Method, String, Option<Value>)>,
) -> Vec<Value> {
    let mut finished = Vec::new();
    for (method, path, body) in changes {
        let id = send_change(app, responses, method, &path, body).await;
        finished.push(wait_finished(app, &id).await);
    }
    finished
}

/// Reads workforces, operations and the audit log in a loop until `stop`, recording every
/// status code. About 15 reads per second stay under the rate limit of the reader's key.
async fn read_until(
    client: reqwest::Client,
    base_url: String,
    responses: Responses,
    stop: CancellationToken,
) {
    let paths = [
        "/v1/workforces".to_owned(),
        "/v1/operations?limit=20".to_owned(),
        "/v1/audit-events?limit=20".to_owned(),
        format!("/v1/regions/{REGION}/workforces/faulty-east"),
        format!("/v1/regions/{WEST}/workforces/faulty-west"),
    ];
    while !stop.is_cancelled() {
        for path in &paths {
            let response = client
                .get(format!("{base_url}{path}"))
                .send()
                .await
                .expect("a read is answered");
            responses
                .lock()
                .unwrap()
                .push((format!("GET {path}"), response.status()));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Alternates the sandbox's added latency between none and 400 ms every 250 ms, on top of
/// the throttling and server error ratios, until `stop`.
async fn spike_latency(sandbox_url: String, stop: CancellationToken) {
    let client = reqwest::Client::new();
    let mut latency_ms = 0;
    while !stop.is_cancelled() {
        latency_ms = if latency_ms == 0 { 400 } else { 0 };
        let faults = json!({
            "throttle_ratio": 0.3,
            "server_error_ratio": 0.1,
            "latency_ms": latency_ms,
        });
        let response = client
            .put(format!("{sandbox_url}/_sandbox/faults"))
            .json(&faults)
            .send()
            .await
            .expect("the sandbox answers");
        assert_eq!(response.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn operations_finish_under_aws_faults() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 4,
        ..Default::default()
    })
    .await;
    let sandbox_url = app.sandbox().endpoint_url();
    let reads: Responses = Arc::default();
    let changes: Responses = Arc::default();
    let stop = CancellationToken::new();
    let spikes = tokio::spawn(spike_latency(sandbox_url.clone(), stop.clone()));
    let (_, reader_key) = api_keys::create(&app.db, "fault-reader", Role::Admin, None, None)
        .await
        .unwrap();
    let reader = tokio::spawn(read_until(
        client_with_key(&reader_key),
        app.base_url.clone(),
        reads.clone(),
        stop.clone(),
    ));

    let east = format!("/v1/regions/{REGION}/workforces/faulty-east");
    let mut east_create = cognito_workforce("faulty-east");
    east_create["vpc_config"] = vpc_config(&[SUBNET_A, SUBNET_B]);
    let east_changes = vec![
        (
            Method::POST,
            format!("/v1/regions/{REGION}/workforces"),
            Some(east_create),
        ),
        (
            Method::PUT,
            format!("{east}/vpc-config"),
            Some(vpc_config(&[SUBNET_C])),
        ),
        (Method::DELETE, format!("{east}/vpc-config"), None),
        (Method::DELETE, east.clone(), None),
    ];
    let west = format!("/v1/regions/{WEST}/workforces/faulty-west");
    let west_create = json!({
        "name": "faulty-west",
        "cognito_config": {"user_pool": "us-west-2_AbC123", "client_id": "portal"}
    });
    let west_changes = vec![
        (
            Method::POST,
            format!("/v1/regions/{WEST}/workforces"),
            Some(west_create),
        ),
        (
            Method::PUT,
            format!("{west}/source-ip-config"),
            Some(json!({"cidrs": ["10.0.0.0/16"]})),
        ),
        (Method::DELETE, west.clone(), None),
    ];
    let (east_operations, west_operations) = tokio::join!(
        run_changes(&app, &changes, east_changes),
        run_changes(&app, &changes, west_changes),
    );
    stop.cancel();
    spikes.await.unwrap();
    reader.await.unwrap();
    app.sandbox().set_faults(Default::default());

    for operation in east_operations.iter().chain(&west_operations) {
        assert_eq!(operation["status"], "succeeded", "{operation}");
    }

    let reads = reads.lock().unwrap().clone();
    assert!(reads.len() > 20, "the reader ran: {} reads", reads.len());
    let rejected_reads: Vec<_> = reads
        .iter()
        .filter(|(_, s)| !matches!(s.as_u16(), 200 | 404))
        .collect();
    assert!(rejected_reads.is_empty(), "reads got {rejected_reads:?}");
    let failed_reads: Vec<_> = reads.iter().filter(|(_, s)| s.is_server_error()).collect();
    assert!(failed_reads.is_empty(), "reads got 5xx: {failed_reads:?}");

    // Only changes with a VPC configuration call AWS (EC2) on the request path.
    let changes = changes.lock().unwrap().clone();
    let failed_changes: Vec<_> = changes
        .iter()
        .filter(|(request, status)| {
            status.is_server_error()
                && !(request.starts_with(&format!("POST /v1/regions/{REGION}/workforces"))
                    || request.starts_with(&format!("PUT {east}/vpc-config")))
        })
        .collect();
    assert!(
        failed_changes.is_empty(),
        "changes without AWS calls got 5xx: {failed_changes:?}"
    );

    // Faults are injected before the sandbox handles a call, so a throttled or failed call
    // changed nothing, and each change must have succeeded exactly once.
    let outcomes = call_outcomes(&app).await;
    let applied = [
        (REGION, "CreateWorkforce", 1),
        (REGION, "UpdateWorkforce", 2),
        (REGION, "DeleteWorkforce", 1),
        (WEST, "CreateWorkforce", 1),
        (WEST, "UpdateWorkforce", 1),
        (WEST, "DeleteWorkforce", 1),
    ];
    for (region, action, expected) in applied {
        assert_eq!(
            outcome_count(&outcomes, region, action, "succeeded"),
            expected,
            "{action} in {region} applied: {outcomes}"
        );
    }
    let faulted: u64 = outcomes[ACCOUNT]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|actions| actions.as_object().unwrap().values())
        .map(|counts| {
            counts["throttled"].as_u64().unwrap_or(0) + counts["server_error"].as_u64().unwrap_or(0)
        })
        .sum();
    assert!(faulted > 10, "the faults hit AWS calls: {outcomes}");

    // Each operation went through every transition once.
    for operation in east_operations.iter().chain(&west_operations) {
        let id = operation["id"].as_str().unwrap();
        let actions: Vec<String> = sqlx::query_scalar(
            "select action from audit_events where operation_id = $1::uuid order by id",
        )
        .bind(id)
        .fetch_all(&app.db)
        .await
        .unwrap();
        assert_eq!(
            actions[1..],
            [
                "operation.started",
                "operation.submitted",
                "operation.succeeded"
            ],
            "{id}: {actions:?}"
        );
        assert!(actions[0].ends_with(".requested"), "{id}: {actions:?}");
    }
}

#[tokio::test]
async fn stuck_workforce_times_out() {
    let app = TestApp::spawn_with(TestOptions {
        extra_args: vec!["--operation-deadline-seconds=2".to_owned()],
        ..Default::default()
    })
    .await;
    app.sandbox().set_stuck(REGION, "stuck", true);

    let (status, operation) = app.create_workforce(cognito_workforce("stuck")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let finished = app
        .wait_for_operation(operation["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "failed", "{finished}");
    assert_eq!(
        finished["failure"]["code"], "OperationTimedOut",
        "{finished}"
    );
    assert_eq!(finished["aws_status"], "Initializing", "{finished}");

    // The record shows what SageMaker reports, not a status the service made up.
    let region = workforce_service::domain::Region::parse("region", REGION).unwrap();
    let in_aws = app
        .service()
        .state
        .aws
        .describe_workforce(&region, "stuck")
        .await
        .unwrap()
        .expect("SageMaker still has the workforce");
    assert_eq!(in_aws.status.as_deref(), Some("Initializing"));
    let (status, workforce) = app
        .get(&format!("/v1/regions/{REGION}/workforces/stuck"))
        .await;
    assert_eq!(status, StatusCode::OK, "{workforce}");
    assert_eq!(workforce["status"], "Initializing", "{workforce}");
    assert!(workforce["operation_in_flight"].is_null(), "{workforce}");

    // Once SageMaker finishes on its own, a read of the record, once it is older than
    // --refresh-after-seconds (made so here by backdating it), picks up the true state.
    app.sandbox().set_stuck(REGION, "stuck", false);
    let (_, workforce) = read_after_refresh(&app, "stuck", |_, workforce| {
        workforce["status"] == "Active"
    })
    .await;
    assert_eq!(workforce["status"], "Active", "{workforce}");
}

/// A change made outside the service that touches only the address type still moves the
/// workforce's `ETag` once a refresh picks it up, so an `If-Match` read before it gets 412.
#[tokio::test]
async fn address_type_changed_outside_moves_the_etag() {
    use workforce_service::aws::UpdateWorkforceInput;
    use workforce_service::domain::{IpAddressType, Region, SourceIpConfig, WorkforceName};

    let app = TestApp::spawn().await;
    let (status, created) = app.create_workforce(cognito_workforce("outside")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    app.wait_for_operation(created["id"].as_str().unwrap())
        .await;
    let path = format!("/v1/regions/{REGION}/workforces/outside");
    let (_, headers, _) = app.request(Method::GET, &path, None).await;
    let before = headers[reqwest::header::ETAG].to_str().unwrap().to_owned();

    let region = Region::parse("region", REGION).unwrap();
    let name = WorkforceName::parse("name", "outside").unwrap();
    app.service()
        .state
        .aws
        .update_workforce(
            &region,
            &name,
            UpdateWorkforceInput::SourceIpConfig(
                &SourceIpConfig::default(),
                Some(IpAddressType::Dualstack),
            ),
        )
        .await
        .unwrap();
    let (_, workforce) = read_after_refresh(&app, "outside", |_, workforce| {
        workforce["ip_address_type"] == "dualstack"
    })
    .await;
    assert_eq!(workforce["ip_address_type"], "dualstack", "{workforce}");

    let (_, headers, _) = app.request(Method::GET, &path, None).await;
    assert_ne!(headers[reqwest::header::ETAG], before.as_str());
    let response = app
        .client
        .put(format!("{}{path}/source-ip-config", app.base_url))
        .header("if-match", &before)
        .json(&json!({"cidrs": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
}

/// Backdates every workforce record past --refresh-after-seconds, then reads the workforce
/// `name` until `done` accepts the response or 15 s pass, and returns the last response.
async fn read_after_refresh(
    app: &TestApp,
    name: &str,
    done: impl Fn(StatusCode, &Value) -> bool,
) -> (StatusCode, Value) {
    sqlx::query("update workforces set aws_refreshed_at = now() - interval '2 hours'")
        .execute(&app.db)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, workforce) = app
            .get(&format!("/v1/regions/{REGION}/workforces/{name}"))
            .await;
        if done(status, &workforce) || tokio::time::Instant::now() >= deadline {
            return (status, workforce);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deletes a workforce in SageMaker behind the service's back and waits until it is gone.
async fn delete_behind_the_service(app: &TestApp, name: &str) {
    let region = workforce_service::domain::Region::parse("region", REGION).unwrap();
    let workforce_name = workforce_service::domain::WorkforceName::parse("name", name).unwrap();
    let aws = &app.service().state.aws;
    aws.delete_workforce(&region, &workforce_name)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while aws
        .describe_workforce(&region, name)
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} is still in SageMaker"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A workforce that disappears while its change is polled, as after a restart of the
/// in-process sandbox, fails the operation. Its failure event keeps the last status that
/// SageMaker reported, as the operation does.
#[tokio::test]
async fn vanished_during_poll_keeps_last_status() {
    let app = TestApp::spawn_with(TestOptions {
        sandbox_delay_ms: 2_000,
        ..Default::default()
    })
    .await;
    app.create_active_workforce("polled", None).await;
    let (status, _, operation) = app
        .request(
            Method::PUT,
            &format!("/v1/regions/{REGION}/workforces/polled/source-ip-config"),
            Some(json!({"cidrs": ["10.0.0.0/8"]})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let id = operation["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, polled) = app.get(&format!("/v1/operations/{id}")).await;
        if polled["aws_status"] == "Updating" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{polled}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    app.sandbox().forget_region(REGION);
    let finished = app.wait_for_operation(&id).await;
    assert_eq!(finished["status"], "failed", "{finished}");
    assert_eq!(finished["failure"]["code"], "WorkforceNotFound");
    assert_eq!(finished["aws_status"], "Updating");
    let event_status: Option<String> = sqlx::query_scalar(
        "select detail->>'aws_status' from audit_events
          where operation_id = $1 and action = 'operation.failed'",
    )
    .bind(uuid::Uuid::parse_str(&id).unwrap())
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(event_status.as_deref(), Some("Updating"));
}

/// A workforce deleted in AWS by someone else leaves no record behind once a change or a read
/// finds it gone, and both removals are audited. The name can then be used again.
#[tokio::test]
async fn workforces_deleted_outside_the_service_are_forgotten() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("changed", None).await;
    delete_behind_the_service(&app, "changed").await;

    let (status, _, operation) = app
        .request(
            Method::PUT,
            &format!("/v1/regions/{REGION}/workforces/changed/source-ip-config"),
            Some(json!({"cidrs": ["10.0.0.0/8"]})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let finished = app
        .wait_for_operation(operation["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "failed", "{finished}");
    assert_eq!(
        finished["failure"]["code"], "WorkforceNotFound",
        "{finished}"
    );
    let (status, workforce) = app
        .get(&format!("/v1/regions/{REGION}/workforces/changed"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{workforce}");

    // SageMaker allows one workforce per account and region, so the next one is created only
    // now. A read of a record older than --refresh-after-seconds (backdated here) calls
    // DescribeWorkforce, which finds the workforce gone.
    app.create_active_workforce("read", None).await;
    delete_behind_the_service(&app, "read").await;
    let (status, workforce) =
        read_after_refresh(&app, "read", |status, _| status == StatusCode::NOT_FOUND).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{workforce}");
    let vanished: Vec<(String, Option<String>)> = sqlx::query_as(
        "select workforce_name, before_state->>'status' from audit_events
          where action = 'workforce.vanished'",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    // The event keeps the record's last known state.
    assert_eq!(vanished, [("read".to_owned(), Some("Active".to_owned()))]);
    let changed_actions = app.audit_actions("changed").await;
    assert!(
        changed_actions
            .iter()
            .any(|(action, _)| action == "operation.failed"),
        "{changed_actions:?}"
    );

    let (status, operation) = app.create_workforce(cognito_workforce("changed")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
}

/// Creates a Cognito workforce in SageMaker behind the service's back, with the app client id
/// `client_id`.
async fn create_behind_the_service(app: &TestApp, name: &str, client_id: &str) {
    let region = workforce_service::domain::Region::parse("region", REGION).unwrap();
    let name = workforce_service::domain::WorkforceName::parse("name", name).unwrap();
    let cognito = workforce_service::domain::CognitoConfig {
        user_pool: "us-east-1_AbC123".to_owned(),
        client_id: client_id.to_owned(),
    };
    app.service()
        .state
        .aws
        .create_workforce(
            &region,
            workforce_service::aws::CreateWorkforceInput {
                name: &name,
                cognito_config: Some(&cognito),
                oidc_config: None,
                vpc_config: None,
                source_ip_config: None,
                tags: &[],
                ip_address_type: None,
            },
        )
        .await
        .unwrap();
}

/// A creation fails when the region has a workforce that was created behind the service's
/// back. The service then lists the region, so that reads show that workforce at once.
#[tokio::test]
async fn failed_create_records_workforce_made_elsewhere() {
    let app = TestApp::spawn().await;
    create_behind_the_service(&app, "made-elsewhere", "portal").await;

    let (status, operation) = app.create_workforce(cognito_workforce("ours")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let finished = app
        .wait_for_operation(operation["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "failed", "{finished}");

    let (status, workforce) =
        read_after_refresh(&app, "made-elsewhere", |status, _| status == StatusCode::OK).await;
    assert_eq!(status, StatusCode::OK, "{workforce}");
}

/// A workforce of the requested name that was created behind the service's back, with other
/// settings, does not count as the service's creation: the operation fails without calling
/// CreateWorkforce, and the record shows the settings that SageMaker has.
#[tokio::test]
async fn same_name_made_elsewhere_fails_create() {
    let app = TestApp::spawn().await;
    create_behind_the_service(&app, "labelers", "other-client").await;
    let creations = app.sandbox().call_count("CreateWorkforce");

    let (status, operation) = app.create_workforce(cognito_workforce("labelers")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let finished = app
        .wait_for_operation(operation["id"].as_str().unwrap())
        .await;

    assert_eq!(finished["status"], "failed", "{finished}");
    assert_eq!(
        finished["failure"]["code"], "WorkforceAlreadyExists",
        "{finished}"
    );
    assert_eq!(app.sandbox().call_count("CreateWorkforce"), creations);
    let (status, workforce) = app
        .get(&format!("/v1/regions/{REGION}/workforces/labelers"))
        .await;
    assert_eq!(status, StatusCode::OK, "{workforce}");
    assert_eq!(
        workforce["cognito_config"]["client_id"], "other-client",
        "{workforce}"
    );
}
