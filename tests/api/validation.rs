//! Every validation rule rejects the request with a problem naming the field, and writes nothing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

fn with(mut body: Value, field: &str, value: Value) -> Value {
    body[field] = value;
    body
}

/// Asserts a 422 problem whose errors name `field`.
fn assert_rejects_field(status: StatusCode, problem: &Value, field: &str) {
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{field}: {problem}"
    );
    assert_eq!(problem["status"], 422);
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&field), "expected {field} among {fields:?}");
}

#[tokio::test]
async fn create_rejects_each_model_violation() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let base = cognito_workforce("labelers");
    let long_list = |prefix: &str, count: usize| {
        json!(
            (0..count)
                .map(|i| format!("{prefix}-{i:x}"))
                .collect::<Vec<_>>()
        )
    };
    let cases: Vec<(Value, &str)> = vec![
        (with(base.clone(), "name", json!("")), "name"),
        (with(base.clone(), "name", json!("-leading-hyphen")), "name"),
        (with(base.clone(), "name", json!("a".repeat(64))), "name"),
        (with(base.clone(), "name", json!("under_score")), "name"),
        (with(base.clone(), "name", json!("naïve")), "name"),
        (
            with(
                base.clone(),
                "cognito_config",
                json!({"user_pool": "no-underscore", "client_id": "portal"}),
            ),
            "cognito_config.user_pool",
        ),
        (
            with(
                base.clone(),
                "cognito_config",
                json!({"user_pool": "us-east-1_AbC123", "client_id": ""}),
            ),
            "cognito_config.client_id",
        ),
        (json!({"name": "labelers"}), "cognito_config"),
        (
            with(base.clone(), "oidc_config", oidc_config("s")),
            "oidc_config",
        ),
        (
            json!({"name": "x", "oidc_config": with(oidc_config("s"), "issuer", json!("http://idp.example.com"))}),
            "oidc_config.issuer",
        ),
        (
            json!({"name": "x", "oidc_config": with(oidc_config("s"), "jwks_uri", json!("https://"))}),
            "oidc_config.jwks_uri",
        ),
        (
            json!({"name": "x", "oidc_config": with(oidc_config(""), "client_id", json!("portal"))}),
            "oidc_config.client_secret",
        ),
        (
            json!({"name": "x", "oidc_config": with(oidc_config("s"), "scope", json!("openid  email"))}),
            "oidc_config.scope",
        ),
        (
            with(
                base.clone(),
                "vpc_config",
                json!({"vpc_id": "vpc_bad", "security_group_ids": [SG_1], "subnets": [SUBNET_A]}),
            ),
            "vpc_config.vpc_id",
        ),
        (
            with(
                base.clone(),
                "vpc_config",
                json!({"vpc_id": VPC, "security_group_ids": [], "subnets": [SUBNET_A]}),
            ),
            "vpc_config.security_group_ids",
        ),
        (
            with(
                base.clone(),
                "vpc_config",
                json!({"vpc_id": VPC, "security_group_ids": long_list("sg", 6), "subnets": [SUBNET_A]}),
            ),
            "vpc_config.security_group_ids",
        ),
        (
            with(
                base.clone(),
                "vpc_config",
                json!({"vpc_id": VPC, "security_group_ids": [SG_1], "subnets": []}),
            ),
            "vpc_config.subnets",
        ),
        (
            with(
                base.clone(),
                "vpc_config",
                json!({"vpc_id": VPC, "security_group_ids": [SG_1], "subnets": long_list("subnet", 17)}),
            ),
            "vpc_config.subnets",
        ),
        (
            with(
                base.clone(),
                "vpc_config",
                json!({"vpc_id": VPC, "security_group_ids": ["group-1"], "subnets": [SUBNET_A]}),
            ),
            "vpc_config.security_group_ids[0]",
        ),
        (
            with(
                base.clone(),
                "vpc_config",
                json!({"vpc_id": VPC, "security_group_ids": [SG_1], "subnets": [SUBNET_A, SUBNET_A]}),
            ),
            "vpc_config.subnets[1]",
        ),
        (
            with(
                base.clone(),
                "vpc_config",
                json!({"vpc_id": VPC, "security_group_ids": [SG_1], "subnets": ["subnet-UPPER"]}),
            ),
            "vpc_config.subnets[0]",
        ),
        (
            with(
                base.clone(),
                "source_ip_config",
                json!({"cidrs": ["10.0.0.0"]}),
            ),
            "source_ip_config.cidrs[0]",
        ),
        (
            with(
                base.clone(),
                "source_ip_config",
                json!({"cidrs": ["10.0.0.0/33"]}),
            ),
            "source_ip_config.cidrs[0]",
        ),
        (
            with(
                base.clone(),
                "source_ip_config",
                json!({"cidrs": ["2001:db8::/32"]}),
            ),
            "source_ip_config.cidrs[0]",
        ),
        (
            with(
                base.clone(),
                "source_ip_config",
                json!({"cidrs": long_list("10.0.0.0/24", 11)}),
            ),
            "source_ip_config.cidrs",
        ),
        (
            with(base.clone(), "tags", json!([{"key": "", "value": "v"}])),
            "tags[0].key",
        ),
        (
            with(
                base.clone(),
                "tags",
                json!([{"key": "k", "value": "semi;colon"}]),
            ),
            "tags[0].value",
        ),
        (
            // A combining mark, which SageMaker's pattern rejects.
            with(
                base.clone(),
                "tags",
                json!([{"key": "k", "value": "\u{345}"}]),
            ),
            "tags[0].value",
        ),
        (
            with(
                base.clone(),
                "tags",
                json!([{"key": "aws:reserved", "value": "v"}]),
            ),
            "tags[0].key",
        ),
        (
            with(
                base.clone(),
                "tags",
                json!(
                    (0..51)
                        .map(|i| json!({"key": format!("k{i}"), "value": "v"}))
                        .collect::<Vec<_>>()
                ),
            ),
            "tags",
        ),
    ];
    for (body, field) in cases {
        let (status, problem) = app.create_workforce(body).await;
        assert_rejects_field(status, &problem, field);
        assert_eq!(problem["type"], "/problems/validation-error");
        assert!(problem["request_id"].is_string(), "{problem}");
    }
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn create_reports_every_invalid_field_at_once() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let body = json!({
        "name": "bad name",
        "cognito_config": {"user_pool": "pool", "client_id": "portal"},
        "vpc_config": {"vpc_id": "vpc-1", "security_group_ids": [], "subnets": ["bad"]}
    });
    let (status, problem) = app.create_workforce(body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"].as_array().unwrap().len(), 4, "{problem}");
    app.assert_nothing_written().await;
}

/// A body with hundreds of invalid fields gets a problem that lists the first 50 and counts
/// them all, rather than one too large to send.
#[tokio::test]
async fn create_lists_first_fifty_errors() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let tags: Vec<_> = (0..300)
        .map(|_| json!({"key": "aws:x", "value": "<"}))
        .collect();
    let body = with(cognito_workforce("labelers"), "tags", json!(tags));
    let (status, problem) = app.create_workforce(body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["type"], "/problems/validation-error", "{problem}");
    assert_eq!(problem["errors"].as_array().unwrap().len(), 50, "{problem}");
    // 300 keys, 300 values and the length of the list.
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("601 fields are invalid (the first 50 are listed)"),
        "{detail}"
    );
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn changes_reject_invalid_bodies() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let path = format!("/v1/regions/{REGION}/workforces/labelers");
    let cases = [
        (
            Method::PUT,
            "vpc-config",
            json!({"vpc_id": VPC, "security_group_ids": [SG_1], "subnets": []}),
            "subnets",
        ),
        (
            Method::PUT,
            "source-ip-config",
            json!({"cidrs": ["300.0.0.0/8"]}),
            "cidrs[0]",
        ),
        (
            Method::PUT,
            "oidc-config",
            with(oidc_config("s"), "token_endpoint", json!("ftp://x")),
            "token_endpoint",
        ),
    ];
    for (method, suffix, body, field) in cases {
        let (status, _, problem) = app
            .request(method, &format!("{path}/{suffix}"), Some(body))
            .await;
        assert_rejects_field(status, &problem, field);
    }
    app.assert_nothing_written().await;
}

/// A named value, such as an address type or a role, is read only from a string. Any other
/// JSON type gets 400 naming the field. A one-key object, which serde would otherwise read as
/// the name, is rejected too.
#[tokio::test]
async fn named_values_must_be_strings() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let source_ip = format!("/v1/regions/{REGION}/workforces/labelers/source-ip-config");
    for value in [
        json!(4),
        json!(true),
        json!({"ipv4": null}),
        json!(["ipv4"]),
    ] {
        let (status, _, problem) = app
            .request(
                Method::PUT,
                &source_ip,
                Some(json!({"cidrs": [], "ip_address_type": value})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{value}: {problem}");
        assert_eq!(
            problem["errors"][0]["field"], "ip_address_type",
            "{value}: {problem}"
        );
    }
    let (status, _, problem) = app
        .request(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "portal", "role": {"admin": null}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "role", "{problem}");
    app.assert_nothing_written().await;
}

#[tokio::test]
async fn path_parameters_are_validated() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (status, problem) = app
        .get("/v1/regions/not_a_region/workforces/labelers")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "region");

    // A long value is not echoed whole. Echoed in full, 40,000 characters made the problem too
    // large to rewrite, and it lost its errors entry.
    let long_region = "x".repeat(40_000);
    let (status, problem) = app
        .get(&format!("/v1/regions/{long_region}/workforces/labelers"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "region");
    assert!(problem.to_string().len() < 1000, "{problem}");

    let (status, problem) = app.get("/v1/regions/eu-west-3/workforces/labelers").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("us-east-1"));

    // The list's region filter treats a region that the service does not manage the same way.
    let (status, problem) = app.get("/v1/workforces?region=eu-west-3").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("us-east-1"));

    let (status, problem) = app
        .get(&format!("/v1/regions/{REGION}/workforces/bad%20name"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "name");

    let (status, problem) = app.get("/v1/operations/not-a-uuid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "id", "{problem}");
    assert!(
        problem["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("UUID"),
        "{problem}"
    );

    // A long value is not echoed whole.
    let long = "x".repeat(3000);
    let (status, problem) = app.get(&format!("/v1/operations/{long}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert!(problem["detail"].as_str().unwrap().len() < 200, "{problem}");
}

/// A status filter that is not one of the operation statuses names the rejected value.
#[tokio::test]
async fn operation_status_filter_names_value() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (status, problem) = app.get("/v1/operations?status=Active").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "status", "{problem}");
    let reason = problem["errors"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("'Active' is not one of pending"),
        "{problem}"
    );
}
