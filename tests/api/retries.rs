//! Retries and races: idempotency keys and conditional requests.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

async fn send_with_key(
    app: &TestApp,
    method: Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.base_url))
        .header("idempotency-key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

/// Sends `body` as it is, as JSON, with an idempotency key to `path`.
async fn post_json_text(app: &TestApp, path: &str, key: &str, body: String) -> reqwest::Response {
    app.client
        .post(format!("{}{path}", app.base_url))
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn idempotency_key_replays_original_response() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let path = format!("/v1/regions/{REGION}/workforces");
    let (status, headers, first) = send_with_key(
        &app,
        Method::POST,
        &path,
        "create-1",
        Some(cognito_workforce("labelers")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, replayed_headers, second) = send_with_key(
        &app,
        Method::POST,
        &path,
        "create-1",
        Some(cognito_workforce("labelers")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    assert_eq!(second, first);
    assert_eq!(replayed_headers["location"], headers["location"]);
    assert_eq!(replayed_headers["idempotency-replayed"], "true");
    assert_eq!(app.count_rows("operations").await, 1);

    // The same document with its keys in another order and other white space is the same
    // request.
    let reordered = format!(
        "{{\n  \"cognito_config\": {}, \"name\": \"labelers\"\n}}",
        cognito_workforce("labelers")["cognito_config"]
    );
    let response = post_json_text(&app, &path, "create-1", reordered).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["idempotency-replayed"], "true");
    assert_eq!(app.count_rows("operations").await, 1);

    // A repeated key, whose last value matches, is not the same request: the handler would
    // reject that body.
    let repeated = format!(
        "{{\"name\": \"other\", \"name\": \"labelers\", \"cognito_config\": {}}}",
        cognito_workforce("labelers")["cognito_config"]
    );
    let response = post_json_text(&app, &path, "create-1", repeated).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(response.headers().get("idempotency-replayed").is_none());

    // The same key with another body is rejected, and creates nothing.
    let (status, _, problem) = send_with_key(
        &app,
        Method::POST,
        &path,
        "create-1",
        Some(cognito_workforce("other")),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(app.count_rows("operations").await, 1);

    // Without a key, a repeat is a new request, which conflicts.
    let (status, _) = app.create_workforce(cognito_workforce("labelers")).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn concurrent_repeats_create_one_operation() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let path = format!("{}/v1/regions/{REGION}/workforces", app.base_url);
    let mut requests = Vec::new();
    for _ in 0..20 {
        let client = app.client.clone();
        let path = path.clone();
        requests.push(tokio::spawn(async move {
            let response = client
                .post(path)
                .header("idempotency-key", "same-key")
                .json(&cognito_workforce("labelers"))
                .send()
                .await
                .unwrap();
            (
                response.status(),
                response.json::<Value>().await.unwrap()["id"].clone(),
            )
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for request in requests {
        let (status, id) = request.await.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED);
        ids.insert(id.to_string());
    }
    assert_eq!(ids.len(), 1, "every repeat returns the one operation");
    assert_eq!(app.count_rows("operations").await, 1);
}

#[tokio::test]
async fn keys_belong_to_one_caller() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (_, other_key) = workforce_service::auth::api_keys::create(
        &app.db,
        "other-caller",
        workforce_service::auth::Role::Operator,
        None,
        None,
    )
    .await
    .unwrap();
    let other = client_with_key(&other_key);
    let path = format!("/v1/regions/{REGION}/workforces");
    let (status, _, _) = send_with_key(
        &app,
        Method::POST,
        &path,
        "shared",
        Some(cognito_workforce("labelers")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // The other caller's request with the same key is its own request (and conflicts on state).
    let response = other
        .post(format!("{}{path}", app.base_url))
        .header("idempotency-key", "shared")
        .json(&cognito_workforce("labelers"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
}

/// Returns the ETag of the workforce at `path`.
async fn etag_of(app: &TestApp, path: &str) -> String {
    let response = app
        .client
        .get(format!("{}{path}", app.base_url))
        .send()
        .await
        .unwrap();
    response.headers()["etag"].to_str().unwrap().to_owned()
}

/// Sends a source-IP change with `If-Match: if_match` to the workforce at `path`.
async fn put_cidrs_if_match(
    app: &TestApp,
    path: &str,
    if_match: &str,
    cidrs: &[&str],
) -> reqwest::Response {
    app.client
        .put(format!("{}{path}/source-ip-config", app.base_url))
        .header("if-match", if_match)
        .json(&json!({ "cidrs": cidrs }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn if_match_guards_changes() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("labelers", None).await;
    let path = format!("/v1/regions/{REGION}/workforces/labelers");
    let etag = etag_of(&app, &path).await;
    assert!(etag.starts_with('"'));

    let response = put_cidrs_if_match(&app, &path, "\"0\"", &[]).await;
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    // If-Match compares strongly, so the weak form of the current tag fails too. The problem
    // explains why instead of claiming that the workforce changed.
    let response = put_cidrs_if_match(&app, &path, &format!("W/{etag}"), &[]).await;
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
    let problem: Value = response.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("weak"), "{problem}");
    assert!(!detail.contains("changed since"), "{problem}");

    let response = put_cidrs_if_match(&app, &path, &etag, &["10.0.0.0/8"]).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let operation: Value = response.json().await.unwrap();
    app.wait_for_operation(operation["id"].as_str().unwrap())
        .await;

    // The accepted change gave the workforce a new ETag; the old one no longer matches.
    assert_ne!(etag_of(&app, &path).await, etag);
    let response = put_cidrs_if_match(&app, &path, &etag, &[]).await;
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
    let response = put_cidrs_if_match(&app, &path, "*", &[]).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

/// A workforce deleted and created again under the same name gets ETags that its earlier
/// record never had, so an If-Match read before the deletion fails.
#[tokio::test]
async fn etags_do_not_repeat_after_recreation() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("labelers", None).await;
    let path = format!("/v1/regions/{REGION}/workforces/labelers");
    let old_etag = etag_of(&app, &path).await;
    let (status, _, operation) = app.request(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    app.wait_for_operation(operation["id"].as_str().unwrap())
        .await;
    app.create_active_workforce("labelers", None).await;

    assert_ne!(etag_of(&app, &path).await, old_etag);
    let response = put_cidrs_if_match(&app, &path, &old_etag, &[]).await;
    assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
}

/// A malformed entity tag, such as an unquoted revision, is the caller's mistake and gets 400,
/// not 412. A well-formed list with a weak tag or an empty element is read.
#[tokio::test]
async fn malformed_if_match_is_rejected() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let path = format!("{}/v1/regions/{REGION}/workforces/labelers", app.base_url);
    let delete_if_match =
        |value: &'static str| app.client.delete(&path).header("if-match", value).send();
    for value in ["3", "\"3", "\"3\", 4", "W/3", ",", "\"a\"b\""] {
        let response = delete_if_match(value).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{value}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(
            problem["errors"][0]["field"], "If-Match",
            "{value}: {problem}"
        );
        let reason = problem["errors"][0]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("double quotes"), "{value}: {problem}");
    }
    // Well-formed values reach the workforce lookup, which finds none.
    // A comma inside the quotes belongs to the tag (RFC 9110), and a tab is white space.
    for value in [
        "\"3\"",
        "W/\"3\", \"4\"",
        "\"3\", ,\"4\"",
        "*",
        "\"a,b\"",
        "\"3\",\t\"4\",",
    ] {
        let response = delete_if_match(value).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{value}");
    }
}

/// A replayed response is stored, and the response of an API key's creation carries the key,
/// which must never be stored.
/// The stored hash of a keyed OIDC change covers the client secret only as an HMAC under the
/// service's key, so that a reader of the database cannot test guesses of the secret with it.
/// The same secret still makes the same request, and another secret does not.
#[tokio::test]
async fn stored_hash_does_not_test_secret_guesses() {
    use sha2::{Digest, Sha256};

    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let path = format!("/v1/regions/{REGION}/workforces");
    let body = |secret: &str| json!({"name": "oidc-team", "oidc_config": oidc_config(secret)});
    let (status, _, first) =
        send_with_key(&app, Method::POST, &path, "oidc-1", Some(body("hunter2"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let (status, headers, _) =
        send_with_key(&app, Method::POST, &path, "oidc-1", Some(body("hunter2"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(headers["idempotency-replayed"], "true");
    let (status, _, problem) =
        send_with_key(&app, Method::POST, &path, "oidc-1", Some(body("hunter3"))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    // A process with another secret key would also see a true repeat as another request, so
    // the problem does not advise a new key right away.
    let reason = problem["errors"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("WORKFORCE_SECRET_KEY"), "{problem}");
    // A secret of another JSON type with the same text is another request.
    let west = "/v1/regions/us-west-2/workforces";
    let mut as_number = body("42");
    let (status, _, accepted) =
        send_with_key(&app, Method::POST, west, "oidc-2", Some(as_number.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    as_number["oidc_config"]["client_secret"] = json!(42);
    let (status, _, problem) =
        send_with_key(&app, Method::POST, west, "oidc-2", Some(as_number)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");

    let stored: Vec<u8> =
        sqlx::query_scalar("select request_hash from idempotency_keys where key = 'oidc-1'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    // A guess of the secret, hashed the way the request is hashed but with a bare SHA-256.
    let mut guess = Sha256::new();
    guess.update(format!("POST\0{path}\0"));
    guess.update(serde_json::to_vec(&body("hunter2")).unwrap());
    assert_ne!(stored, guess.finalize().to_vec());
}

#[tokio::test]
async fn idempotency_key_rejected_for_api_key_creation() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (status, _, problem) = send_with_key(
        &app,
        Method::POST,
        "/v1/api-keys",
        "key-creation-1",
        Some(json!({"name": "portal", "role": "viewer"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(
        problem["errors"][0]["field"], "Idempotency-Key",
        "{problem}"
    );
    let created: i64 = sqlx::query_scalar("select count(*) from api_keys where name = 'portal'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(created, 0);
    assert_eq!(app.count_rows("idempotency_keys").await, 0);
}

/// Two `Idempotency-Key` headers on one request are rejected, because a retry could send
/// either of them and get a second operation.
#[tokio::test]
async fn repeated_idempotency_header_is_rejected() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let response = app
        .client
        .post(format!("{}/v1/regions/{REGION}/workforces", app.base_url))
        .header("idempotency-key", "first")
        .header("idempotency-key", "second")
        .json(&json!({"name": "twice", "cognito_config": {"user_pool": "us-east-1_AbC123", "client_id": "portal"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(
        problem["errors"][0]["field"], "Idempotency-Key",
        "{problem}"
    );
    assert_eq!(app.count_rows("operations").await, 0);
    assert_eq!(app.count_rows("idempotency_keys").await, 0);
}

/// Sends a VPC prerequisite check, a keyed change that succeeds without a workforce, with
/// `key` as its Idempotency-Key.
async fn check_vpc_with_key(app: &TestApp, key: &str) -> (StatusCode, Value) {
    let path = format!("/v1/regions/{REGION}/vpc-config-checks");
    let body = Some(vpc_config(&[SUBNET_A]));
    let (status, _, response) = send_with_key(app, Method::POST, &path, key, body).await;
    (status, response)
}

/// An Idempotency-Key with a tab is rejected, as HTTP allows tabs in header values but the
/// key must be printable.
#[tokio::test]
async fn idempotency_key_with_tab_is_rejected() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (status, problem) = check_vpc_with_key(&app, "a\tb").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(
        problem["errors"][0]["field"], "Idempotency-Key",
        "{problem}"
    );
}

/// A method that the route does not serve gets 405 even with a key that an accepted request
/// used, instead of the 422 of a reused key.
#[tokio::test]
async fn unserved_method_ignores_idempotency_key() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (status, checked) = check_vpc_with_key(&app, "used-once").await;
    assert_eq!(status, StatusCode::OK, "{checked}");
    let (status, _, problem) = send_with_key(
        &app,
        Method::POST,
        &format!("/v1/regions/{REGION}/workforces/team/vpc-config"),
        "used-once",
        Some(vpc_config(&[SUBNET_A])),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{problem}");
}

/// A request that times out has no response to replay, so its key is freed and a repeat runs
/// again instead of waiting for the key's lock to expire.
#[tokio::test]
async fn idempotency_key_freed_after_timeout() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        extra_args: vec!["--request-timeout-seconds=1".to_owned()],
        ..Default::default()
    })
    .await;
    let body = json!({
        "name": "slow",
        "cognito_config": {"user_pool": "us-east-1_AbC123", "client_id": "portal"}
    });
    let path = format!("/v1/regions/{REGION}/workforces");
    // Holding a lock on the workforces table keeps the creation waiting past the timeout.
    let mut blocker = app.db.begin().await.unwrap();
    sqlx::query("lock table workforces in access exclusive mode")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let (status, _, problem) =
        send_with_key(&app, Method::POST, &path, "slow-1", Some(body.clone())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert_eq!(problem["type"], "/problems/timeout", "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("limit of 1 s (--request-timeout-seconds)"),
        "{problem}"
    );
    blocker.rollback().await.unwrap();

    let (status, _, created) = send_with_key(&app, Method::POST, &path, "slow-1", Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    assert_eq!(app.count_rows("operations").await, 1);
}

/// A process that dies after it commits a keyed change, but before it stores the response,
/// leaves the key linked to the operation. The repeat gets that operation, not a second one.
#[tokio::test]
async fn repeat_after_crash_gets_first_operation() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("labelers", None).await;
    let path = format!("/v1/regions/{REGION}/workforces/labelers/source-ip-config");
    let body = json!({"cidrs": ["10.0.0.0/16"]});
    let (status, _, first) =
        send_with_key(&app, Method::PUT, &path, "crash-1", Some(body.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let linked: Option<uuid::Uuid> =
        sqlx::query_scalar("select operation_id from idempotency_keys where key = 'crash-1'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(
        linked.map(|id| id.to_string()),
        first["id"].as_str().map(str::to_owned)
    );

    // The state that a crash between the commit and the stored response leaves, with the
    // first request's lock expired.
    sqlx::query(
        "update idempotency_keys
            set status_code = null, response_body = null, location = null,
                locked_until = now() - interval '1 second'
          where key = 'crash-1'",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let operations = app.count_rows("operations").await;
    let (status, headers, repeated) =
        send_with_key(&app, Method::PUT, &path, "crash-1", Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{repeated}");
    assert_eq!(repeated["id"], first["id"]);
    assert_eq!(headers["idempotency-replayed"], "true");
    assert_eq!(
        headers["location"].to_str().unwrap(),
        format!("/v1/operations/{}", first["id"].as_str().unwrap())
    );
    assert_eq!(app.count_rows("operations").await, operations);
}

/// Only a success is replayed. A rejection, which may depend on headers or on the
/// workforce's state, frees the key, so the corrected request runs with the same key.
#[tokio::test]
async fn rejection_frees_the_key() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("labelers", None).await;
    let url = format!(
        "{}/v1/regions/{REGION}/workforces/labelers/source-ip-config",
        app.base_url
    );
    let body = r#"{"cidrs": ["10.0.0.0/16"]}"#;
    let without_type = app
        .client
        .put(&url)
        .header("idempotency-key", "fixed-1")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(without_type.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(app.count_rows("idempotency_keys").await, 0);

    let corrected = app
        .client
        .put(&url)
        .header("idempotency-key", "fixed-1")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(corrected.status(), StatusCode::ACCEPTED);
    assert!(corrected.headers().get("idempotency-replayed").is_none());
}

/// A repeat of a request still in progress gets 409 before the request timeout would end it
/// with 503.
#[tokio::test]
async fn repeat_of_slow_request_gets_conflict() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        extra_args: vec!["--request-timeout-seconds=4".to_owned()],
        ..Default::default()
    })
    .await;
    let path = format!("/v1/regions/{REGION}/workforces");
    let body = cognito_workforce("slow");

    // The lock keeps the first request waiting inside its handler.
    let mut blocker = app.db.begin().await.unwrap();
    sqlx::query("lock table workforces in access exclusive mode")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let first = {
        let request = app
            .client
            .post(format!("{}{path}", app.base_url))
            .header("idempotency-key", "slow-2")
            .json(&body);
        tokio::spawn(async move { request.send().await.unwrap().status() })
    };

    // The first request claims the key before it waits on the lock.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, _, problem) = send_with_key(&app, Method::POST, &path, "slow-2", Some(body)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(
        problem["type"], "/problems/request-in-progress",
        "{problem}"
    );

    // Released within the timeout, the first request completes.
    blocker.rollback().await.unwrap();
    assert_eq!(first.await.unwrap(), StatusCode::ACCEPTED);
}
