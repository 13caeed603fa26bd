//! The workforce's state decides which changes are allowed: each rule returns 409 with a reason.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn create_conflicts_when_region_has_a_workforce() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("first", None).await;
    let (status, problem) = app.create_workforce(cognito_workforce("second")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("first"));
    assert_eq!(app.count_rows("workforces").await, 1);
    assert_eq!(
        app.audit_actions("second").await,
        [(
            "workforce.create.requested".to_owned(),
            "rejected".to_owned()
        )]
    );
}

/// A change that the workforce's configuration rules out is audited like any other 409.
#[tokio::test]
async fn unsupported_change_conflicts_and_is_audited() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("plain", None).await;
    let path = format!("/v1/regions/{REGION}/workforces/plain");
    let cases = [
        (
            Method::DELETE,
            format!("{path}/vpc-config"),
            None,
            "no VPC configuration",
            "workforce.vpc_config.delete.requested",
        ),
        (
            Method::PUT,
            format!("{path}/oidc-config"),
            Some(oidc_config("never-sent")),
            "signs workers in with Cognito",
            "workforce.oidc_config.put.requested",
        ),
    ];
    for (method, path, body, reason, action) in cases {
        let (status, _, problem) = app.request(method, &path, body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(reason),
            "{problem}"
        );
        let actions = app.audit_actions("plain").await;
        assert_eq!(
            actions.last(),
            Some(&(action.to_owned(), "rejected".to_owned())),
            "{actions:?}"
        );
    }
    assert_eq!(app.count_rows("operations").await, 1);
}

/// A 409 is sent only with its audit event: when the event cannot be written, the request
/// fails instead, and a retry once the log takes events again gets its 409.
#[tokio::test]
async fn conflict_without_audit_event_is_not_sent() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (status, _) = app.create_workforce(cognito_workforce("first")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.fail_audit_events("rejected").await;

    let (status, problem) = app.create_workforce(cognito_workforce("second")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{problem}");
    assert!(app.audit_actions("second").await.is_empty());

    app.accept_audit_events().await;
    let (status, problem) = app.create_workforce(cognito_workforce("second")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(
        app.audit_actions("second").await,
        [(
            "workforce.create.requested".to_owned(),
            "rejected".to_owned()
        )]
    );
}

#[tokio::test]
async fn change_conflicts_while_operation_in_flight() {
    // SageMaker takes 2 s per transition, so the first change is still in flight.
    let app = TestApp::spawn_with(TestOptions {
        sandbox_delay_ms: 2_000,
        ..Default::default()
    })
    .await;
    app.create_active_workforce("labelers", None).await;
    let path = format!("/v1/regions/{REGION}/workforces/labelers");

    let (status, _, first) = app
        .request(
            Method::PUT,
            &format!("{path}/source-ip-config"),
            Some(json!({"cidrs": ["10.0.0.0/8"]})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, _, problem) = app
        .request(
            Method::PUT,
            &format!("{path}/vpc-config"),
            Some(vpc_config(&[SUBNET_A])),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("in flight"),
        "{problem}"
    );
    assert_eq!(problem["operation_id"], first["id"]);
    let (status, _, _) = app.request(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    app.wait_for_operation(first["id"].as_str().unwrap()).await;
}

#[tokio::test]
async fn concurrent_changes_accept_exactly_one() {
    let app = TestApp::spawn_with(TestOptions {
        sandbox_delay_ms: 2_000,
        ..Default::default()
    })
    .await;
    app.create_active_workforce("labelers", None).await;
    let path = format!("/v1/regions/{REGION}/workforces/labelers/source-ip-config");
    let mut requests = Vec::new();
    for i in 0..50 {
        let client = app.client.clone();
        let url = format!("{}{path}", app.base_url);
        requests.push(tokio::spawn(async move {
            client
                .put(url)
                .json(&json!({"cidrs": [format!("10.{i}.0.0/16")]}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut statuses = Vec::new();
    for request in requests {
        statuses.push(request.await.unwrap());
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::ACCEPTED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count(),
        49,
        "{statuses:?}"
    );
    let unfinished: i64 = sqlx::query_scalar(
        "select count(*) from operations where status in ('pending', 'running')",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(unfinished, 1);
    let rejected: i64 =
        sqlx::query_scalar("select count(*) from audit_events where outcome = 'rejected'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(rejected, 49);
}

#[tokio::test]
async fn change_conflicts_unless_workforce_active() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    // A workforce that SageMaker is still initializing, with no operation of this service.
    // The status was read just now, so the service does not read it from AWS again.
    sqlx::query(
        "insert into workforces (region, name, aws_status, auth_kind, auth_config, aws_refreshed_at)
         values ('us-east-1', 'labelers', 'Initializing', 'cognito', '{}', now())",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let path = format!("/v1/regions/{REGION}/workforces/labelers");
    let (status, _, problem) = app
        .request(
            Method::PUT,
            &format!("{path}/source-ip-config"),
            Some(json!({"cidrs": []})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("Initializing"),
        "{problem}"
    );
    let (status, _, problem) = app.request(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("Active or Failed"),
        "{problem}"
    );
    assert_eq!(app.count_rows("operations").await, 0);
}

#[tokio::test]
async fn delete_is_allowed_for_failed_workforce() {
    let app = TestApp::spawn().await;
    app.sandbox().fail_next_transition(
        REGION,
        "doomed",
        "Ground Truth could not create the portal",
    );
    let (status, operation) = app.create_workforce(cognito_workforce("doomed")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let finished = app
        .wait_for_operation(operation["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "failed");
    let path = format!("/v1/regions/{REGION}/workforces/doomed");
    let (status, _, problem) = app
        .request(
            Method::PUT,
            &format!("{path}/source-ip-config"),
            Some(json!({"cidrs": []})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    let (status, _, operation) = app.request(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let finished = app
        .wait_for_operation(operation["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
}

#[tokio::test]
async fn missing_workforce_is_not_found() {
    let app = TestApp::spawn().await;
    let path = format!("/v1/regions/{REGION}/workforces/nobody");
    let (status, problem) = app.get(&path).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    for (method, suffix, body) in [
        (Method::DELETE, "", None),
        (Method::PUT, "/vpc-config", Some(vpc_config(&[SUBNET_A]))),
        (Method::DELETE, "/vpc-config", None),
        (Method::PUT, "/source-ip-config", Some(json!({"cidrs": []}))),
        (Method::PUT, "/oidc-config", Some(oidc_config("s"))),
    ] {
        let (status, _, problem) = app
            .request(method.clone(), &format!("{path}{suffix}"), body)
            .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{method} {suffix}: {problem}"
        );
    }
    assert_eq!(app.count_rows("operations").await, 0);
}

/// Stores `status` as the workforce's last known AWS status, read from AWS at `refreshed_at`
/// (an SQL expression), as a background refresh would have stored it.
async fn store_status(app: &TestApp, name: &str, status: &str, refreshed_at: &str) {
    let statement = format!(
        "update workforces set aws_status = $1, aws_refreshed_at = {refreshed_at} where name = $2"
    );
    let updated = sqlx::query(sqlx::AssertSqlSafe(statement))
        .bind(status)
        .bind(name)
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(updated.rows_affected(), 1);
}

fn source_ip_path(name: &str) -> String {
    format!("/v1/regions/{REGION}/workforces/{name}/source-ip-config")
}

/// A refresh may have stored `Updating` before SageMaker finished the update. Before that old
/// status rejects a change, the service reads the workforce from AWS again.
#[tokio::test]
async fn old_status_is_read_again_before_conflict() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("reread", None).await;
    store_status(&app, "reread", "Updating", "now() - interval '1 minute'").await;

    let body = json!({ "cidrs": ["198.51.100.0/24"] });
    let (status, _, operation) = app
        .request(Method::PUT, &source_ip_path("reread"), Some(body))
        .await;

    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let finished = app
        .wait_for_operation(operation["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
}

/// A status stored less than a second ago decides on its own, so that retries of a rejected
/// change do not each call AWS.
#[tokio::test]
async fn fresh_status_conflicts_without_aws_call() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("fresh", None).await;
    store_status(&app, "fresh", "Updating", "now()").await;
    let describes = app.sandbox().call_count("DescribeWorkforce");

    let body = json!({ "cidrs": ["198.51.100.0/24"] });
    let (status, _, problem) = app
        .request(Method::PUT, &source_ip_path("fresh"), Some(body))
        .await;

    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("is Updating"),
        "{problem}"
    );
    assert_eq!(app.sandbox().call_count("DescribeWorkforce"), describes);
}

/// The record of a workforce that was deleted outside the service does not block a new
/// creation in its region: the service finds it gone in AWS and removes it.
#[tokio::test]
async fn deleted_workforce_does_not_block_create() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("deleted-elsewhere", None).await;
    app.sandbox().forget_region(REGION);
    store_status(
        &app,
        "deleted-elsewhere",
        "Active",
        "now() - interval '1 minute'",
    )
    .await;

    let (status, operation) = app.create_workforce(cognito_workforce("successor")).await;

    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let (status, _) = app
        .get(&format!(
            "/v1/regions/{REGION}/workforces/deleted-elsewhere"
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let finished = app
        .wait_for_operation(operation["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
}

/// Reads of AWS before a conflict are limited to one per workforce and second even when they
/// fail, so that retries of a rejected change add no calls to an AWS that is failing.
#[tokio::test]
async fn failed_rereads_are_limited() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("limited", None).await;
    store_status(&app, "limited", "Updating", "now() - interval '1 minute'").await;
    app.sandbox().set_faults(workforce_sandbox::Faults {
        server_error_ratio: 1.0,
        actions: Some(vec!["DescribeWorkforce".to_owned()]),
        ..Default::default()
    });
    let describes = app.sandbox().call_count("DescribeWorkforce");

    let url = format!("{}{}", app.base_url, source_ip_path("limited"));
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let request = app
            .client
            .put(&url)
            .json(&json!({ "cidrs": ["198.51.100.0/24"] }));
        requests.spawn(async move { request.send().await.unwrap().status() });
    }
    let statuses = requests.join_all().await;

    assert!(
        statuses.iter().all(|s| *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );
    // One read, with the SDK's retries of the server error.
    let calls = app.sandbox().call_count("DescribeWorkforce") - describes;
    assert!((1..=3).contains(&calls), "{calls} DescribeWorkforce calls");
}
