//! Every error is an RFC 9457 problem with the request id, including axum's own rejections.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;

/// Method, path, content type, body and the expected status of one raw request.
type RawCase = (
    reqwest::Method,
    String,
    Option<&'static str>,
    &'static [u8],
    StatusCode,
);

async fn raw(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    content_type: Option<&str>,
    body: &'static [u8],
) -> (StatusCode, String, Value) {
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.base_url))
        .header("x-request-id", "req-test-1")
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, content_type, body)
}

#[tokio::test]
async fn rejections_are_problem_documents() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let create = format!("/v1/regions/{REGION}/workforces");
    let cases: Vec<RawCase> = vec![
        (
            reqwest::Method::POST,
            create.clone(),
            Some("application/json"),
            b"{not json",
            StatusCode::BAD_REQUEST,
        ),
        (
            reqwest::Method::POST,
            create.clone(),
            Some("application/json"),
            b"{\"name\": 5}",
            StatusCode::BAD_REQUEST,
        ),
        (
            reqwest::Method::POST,
            create.clone(),
            Some("application/json"),
            b"{\"name\": \"a\", \"unknown\": 1}",
            StatusCode::BAD_REQUEST,
        ),
        (
            reqwest::Method::POST,
            create.clone(),
            Some("text/plain"),
            b"{}",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            reqwest::Method::POST,
            create.clone(),
            None,
            b"",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            reqwest::Method::POST,
            create.clone(),
            Some("application/json"),
            b"\xff\xfe",
            StatusCode::BAD_REQUEST,
        ),
        (
            reqwest::Method::GET,
            "/v1/nothing-here".to_owned(),
            None,
            b"",
            StatusCode::NOT_FOUND,
        ),
        (
            reqwest::Method::PATCH,
            create.clone(),
            None,
            b"",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            reqwest::Method::GET,
            "/v1/operations?limit=0".to_owned(),
            None,
            b"",
            StatusCode::BAD_REQUEST,
        ),
        (
            reqwest::Method::GET,
            "/v1/operations?status=bogus".to_owned(),
            None,
            b"",
            StatusCode::BAD_REQUEST,
        ),
        (
            reqwest::Method::GET,
            "/v1/audit-events?cursor=%%%".to_owned(),
            None,
            b"",
            StatusCode::BAD_REQUEST,
        ),
        (
            reqwest::Method::GET,
            "/v1/workforces?since=yesterday".to_owned(),
            None,
            b"",
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (method, path, content_type, body, expected) in cases {
        let (status, received_type, problem) =
            raw(&app, method.clone(), &path, content_type, body).await;
        assert_eq!(status, expected, "{method} {path}: {problem}");
        assert_eq!(received_type, "application/problem+json", "{method} {path}");
        assert_eq!(problem["status"], expected.as_u16(), "{method} {path}");
        assert!(
            problem["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("/problems/")),
            "{problem}"
        );
        assert!(problem["title"].is_string(), "{problem}");
        assert!(problem["detail"].is_string(), "{problem}");
        assert_eq!(problem["request_id"], "req-test-1", "{method} {path}");
    }
    assert_eq!(app.count_rows("operations").await, 0);
}

#[tokio::test]
async fn oversized_body_is_rejected() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let body = format!("{{\"name\": \"{}\"}}", "a".repeat(600_000));
    let response = app
        .client
        .post(format!("{}/v1/regions/{REGION}/workforces", app.base_url))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("524288 bytes"), "{problem}");
}

/// Writes `value` as JSON with every character of its strings as a `\u` escape, so that a
/// character outside the Basic Multilingual Plane takes 12 bytes.
fn escape_every_character(value: &Value) -> String {
    let escape = |text: &str| {
        let units: String = text
            .encode_utf16()
            .map(|unit| format!("\\u{unit:04x}"))
            .collect();
        format!("\"{units}\"")
    };
    match value {
        Value::String(text) => escape(text),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(escape_every_character).collect();
            format!("[{}]", items.join(","))
        }
        Value::Object(members) => {
            let members: Vec<String> = members
                .iter()
                .map(|(name, member)| {
                    format!("{}:{}", escape(name), escape_every_character(member))
                })
                .collect();
            format!("{{{}}}", members.join(","))
        }
        other => other.to_string(),
    }
}

/// 50 tags and 10 OIDC extra parameters at their maximum lengths, in a CJK letter outside the
/// Basic Multilingual Plane and fully escaped, make a body of about 350 KB. Every documented
/// limit allows it, so the body limit must too.
#[tokio::test]
async fn largest_tags_and_params_are_accepted() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let letter = |offset: u32| char::from_u32(0x20000 + offset).unwrap();
    let repeated = |count: usize| letter(0).to_string().repeat(count);
    let mut oidc = oidc_config("s3cret");
    for index in 0..10 {
        let key = format!("{}{}", repeated(511), letter(index + 1));
        oidc["authentication_request_extra_params"][key] = Value::String(repeated(512));
    }
    let tags: Vec<Value> = (0..50)
        .map(|index| {
            serde_json::json!({"key": format!("{}{}", repeated(127), letter(index + 1)), "value": repeated(256)})
        })
        .collect();
    let body = serde_json::json!({"name": "escaped", "oidc_config": oidc, "tags": tags});
    let body = escape_every_character(&body);
    assert!(body.len() > 300_000, "{}", body.len());

    let response = app
        .client
        .post(format!("{}/v1/regions/{REGION}/workforces", app.base_url))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();

    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
}

/// A query value that does not parse gets a reason with the parameter's valid range or form,
/// in place of serde's "invalid digit found in string".
#[tokio::test]
async fn unparsable_query_names_valid_form() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let operation = "3f1c7d7e-2c1b-4a8e-9c55-0d6f5a1b2c3d";
    for (path, field, expected) in [
        (
            format!("/v1/operations/{operation}?wait=-1"),
            "wait",
            "must be a whole number of seconds from 0 to 60",
        ),
        (
            format!("/v1/operations/{operation}?wait=soon"),
            "wait",
            "must be a whole number of seconds from 0 to 60",
        ),
        (
            "/v1/workforces?limit=-5".to_owned(),
            "limit",
            "must be a whole number from 1 to 200",
        ),
        (
            "/v1/audit-events?since=yesterday".to_owned(),
            "since",
            "must be an RFC 3339 time, such as 2026-01-01T00:00:00Z",
        ),
        (
            "/v1/audit-events?operation_id=42".to_owned(),
            "operation_id",
            "must be a UUID",
        ),
    ] {
        let (status, problem) = app.get(&path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{path}: {problem}");
        let reason = problem["errors"][0]["reason"].as_str().unwrap_or_default();
        assert!(reason.starts_with(expected), "{path}: {problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(field), "{path}: {problem}");
    }
}

/// One invalid field is written in the singular.
#[tokio::test]
async fn one_invalid_field_reads_singular() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (status, problem) = app.create_workforce(serde_json::json!({"name": "-bad", "cognito_config": {"user_pool": "us-east-1_AbC123", "client_id": "portal"}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(
        problem["detail"],
        "1 field is invalid; fix it as its reason says and send the request again"
    );
}

/// A missing required field is named by its whole path in the problem's `errors`.
#[tokio::test]
async fn missing_field_is_named() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let mut oidc = oidc_config("s3cret");
    oidc.as_object_mut().unwrap().remove("client_secret");
    let (status, problem) = app
        .create_workforce(serde_json::json!({"name": "no-secret", "oidc_config": oidc}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "oidc_config.client_secret");

    let response = app
        .client
        .post(format!("{}/v1/api-keys", app.base_url))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "name", "{problem}");
}

/// A body is read as UTF-8 JSON as sent, so a compressed body or another character set is
/// rejected with 415 rather than misread. UTF-8 named in any case is accepted.
#[tokio::test]
async fn body_encodings_are_checked() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let body = cognito_workforce("labelers").to_string();
    let cases = [
        (
            "application/json; charset=latin1",
            None,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "application/json; charset=utf-16",
            None,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "application/json",
            Some("gzip"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "application/json; charset=UTF-8",
            Some("identity"),
            StatusCode::ACCEPTED,
        ),
    ];
    for (content_type, encoding, expected) in cases {
        let mut request = app
            .client
            .post(format!("{}/v1/regions/{REGION}/workforces", app.base_url))
            .header("content-type", content_type)
            .body(body.clone());
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), expected, "{content_type} {encoding:?}");
    }

    // A second line of Content-Type or Content-Encoding is rejected, whatever its value.
    for (name, first, second) in [
        ("content-type", "application/json", "text/plain"),
        ("content-encoding", "identity", "identity"),
    ] {
        let response = app
            .client
            .post(format!("{}/v1/regions/{REGION}/workforces", app.base_url))
            .header("content-type", "application/json")
            .header(name, first)
            .header(name, second)
            .body(cognito_workforce("twice").to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
        let problem: serde_json::Value = response.json().await.unwrap();
        let field = problem["errors"][0]["field"].as_str().unwrap().to_owned();
        assert!(field.eq_ignore_ascii_case(name), "{name}: {problem}");
    }
    // So is a charset named twice in one line.
    let response = app
        .client
        .post(format!("{}/v1/regions/{REGION}/workforces", app.base_url))
        .header(
            "content-type",
            "application/json; charset=utf-8; charset=latin1",
        )
        .body(cognito_workforce("twice").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.audit_actions("twice").await, []);
}

/// A repeated or unknown query parameter gets a problem whose `errors` name it.
#[tokio::test]
async fn bad_query_parameters_are_named() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    for (query, field) in [("limit=1&limit=2", "limit"), ("colour=red", "colour")] {
        let (status, problem) = app.get(&format!("/v1/operations?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }
    // A value that does not parse gets a reason that names the form the parameter takes.
    for (path, field, form) in [
        (
            "/v1/audit-events/verify?through=abc",
            "through",
            "whole number",
        ),
        (
            "/v1/audit-events/verify?through=",
            "through",
            "whole number",
        ),
        ("/v1/operations?status=bogus", "status", "pending, running"),
    ] {
        let (status, problem) = app.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{path}: {problem}");
        let reason = problem["errors"][0]["reason"].as_str().unwrap();
        assert!(reason.contains(form), "{path}: {problem}");
    }
}

/// A body sent in chunks declares no length, so the limit applies while it is read. With an
/// idempotency key, the key's check reads the body first.
#[tokio::test]
async fn oversized_chunked_body_is_rejected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (_, key) = workforce_service::auth::api_keys::create(
        &app.db,
        "chunked-caller",
        workforce_service::auth::Role::Admin,
        None,
        None,
    )
    .await
    .unwrap();
    let body = format!("{{\"name\": \"{}\"}}", "a".repeat(600_000));
    let address = app.base_url.trim_start_matches("http://").to_owned();
    for idempotency_key in [None, Some("chunked-1")] {
        let mut head = format!(
            "POST /v1/regions/{REGION}/workforces HTTP/1.1\r\nhost: {address}\r\n\
             authorization: Bearer {key}\r\ncontent-type: application/json\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n"
        );
        if let Some(idempotency_key) = idempotency_key {
            head.push_str(&format!("idempotency-key: {idempotency_key}\r\n"));
        }
        head.push_str("\r\n");
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        for chunk in body.as_bytes().chunks(16 * 1024) {
            let sent = async {
                stream
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                stream.write_all(chunk).await?;
                stream.write_all(b"\r\n").await
            };
            // The service may respond and close before the whole body is sent.
            if sent.await.is_err() {
                break;
            }
        }
        let _ = stream.write_all(b"0\r\n\r\n").await;
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response).await;
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.starts_with("HTTP/1.1 413"),
            "{idempotency_key:?}: {response}"
        );
        assert!(
            response.contains("application/problem+json"),
            "{idempotency_key:?}: {response}"
        );
        assert!(
            response.contains("524288 bytes"),
            "{idempotency_key:?}: {response}"
        );
    }
    assert_eq!(app.count_rows("operations").await, 0);
}

#[tokio::test]
async fn request_id_is_generated_and_echoed() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let response = app
        .client
        .get(format!("{}/healthz", app.base_url))
        .send()
        .await
        .unwrap();
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(generated.len(), 36, "{generated}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["mode"], "sandbox");

    let response = app
        .client
        .get(format!("{}/healthz", app.base_url))
        .header("x-request-id", "mine-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "mine-42");
}

#[tokio::test]
async fn readiness_reports_database_and_workers() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["database"], true);
    assert_eq!(body["migrations"], true);
    assert_eq!(body["workers"], true);

    let idle = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (status, body) = idle.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["workers"], false);
}

#[tokio::test]
async fn docs_and_openapi_are_served() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (status, spec) = app.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(spec["paths"]["/v1/regions/{region}/workforces/{name}/vpc-config"]["put"].is_object());
    let response = app
        .client
        .get(format!("{}/docs/", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(
        !page.contains("cdn."),
        "the docs page must not load from a CDN"
    );

    // A missing docs asset is a not-found problem, not a bad request.
    let (status, problem) = app.get("/docs/missing-asset.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert_eq!(problem["type"], "/problems/not-found", "{problem}");
}

#[tokio::test]
async fn metrics_describe_a_scenario() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("labelers", None).await;
    app.get("/v1/workforces").await;
    // Metrics are public by default, like the health endpoints.
    let response = reqwest::get(format!("{}/metrics", app.base_url))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    for expected in [
        "http_requests_total{method=\"POST\",route=\"/v1/regions/{region}/workforces\",status=\"202\"}",
        "http_request_duration_seconds_bucket",
        "workforce_operations_finished_total{kind=\"create_workforce\",outcome=\"succeeded\"}",
        "workforce_operation_duration_seconds_bucket",
        "workforce_operations_in_flight",
        "workforce_operations_oldest_pending_age_seconds",
        "aws_calls_total{service=\"sagemaker\",operation=\"CreateWorkforce\",outcome=\"success\"}",
        "aws_call_duration_seconds_bucket",
        "audit_events_written_total{action=\"operation.succeeded\"}",
        "db_pool_connections{state=\"idle\"}",
        "# HELP aws_calls_total Calls to AWS",
        "# HELP workforce_operations_in_flight Operations pending or running",
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
}

/// The polls that find a deleted workforce gone are counted as `not_found`, not as errors.
#[tokio::test]
async fn deleted_workforce_polls_count_as_not_found() {
    let app = TestApp::spawn().await;
    app.create_active_workforce("leaving", None).await;
    let (status, _, operation) = app
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/regions/{REGION}/workforces/leaving"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let finished = app
        .wait_for_operation(operation["id"].as_str().unwrap())
        .await;
    assert_eq!(finished["status"], "succeeded", "{finished}");

    let text = app.metrics_text().await;
    let not_found = "aws_calls_total{service=\"sagemaker\",operation=\"DescribeWorkforce\",outcome=\"not_found\"}";
    assert!(text.contains(not_found), "missing {not_found} in:\n{text}");
    let errors: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("aws_calls_total") && line.contains("outcome=\"error\""))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

/// A browser's preflight request carries no credential, so the service responds to it for an
/// allowed origin without authentication. Every response, errors included, names the origin.
#[tokio::test]
async fn cors_preflight_needs_no_credential() {
    let origin = "https://portal.example";
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        extra_args: vec![
            format!("--cors-allowed-origins={origin}"),
            "--request-timeout-seconds=1".to_owned(),
        ],
        ..Default::default()
    })
    .await;
    let anonymous = reqwest::Client::new();
    let url = format!("{}/v1/workforces", app.base_url);
    let preflight = anonymous
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::OK);
    assert_eq!(preflight.headers()["access-control-allow-origin"], origin);
    // A browser sends a request only with the headers that the preflight allows. A portal
    // sends these to change safely, to repeat a change, and to long-poll.
    let allowed_headers = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    for name in [
        "authorization",
        "content-type",
        "idempotency-key",
        "if-match",
        "if-none-match",
        "x-request-id",
    ] {
        assert!(
            allowed_headers.contains(name),
            "{name} in {allowed_headers}"
        );
    }
    // The preflight passes through the access log and the metrics like any request.
    assert!(preflight.headers().contains_key("x-request-id"));
    let metrics = anonymous
        .get(format!("{}/metrics", app.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"http_requests_total{method="OPTIONS",route="/v1/workforces",status="200"} 1"#
        ),
        "{metrics}"
    );

    let from_portal = |client: &reqwest::Client| client.get(&url).header("origin", origin);
    let allowed = from_portal(&app.client).send().await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allowed.headers()["access-control-allow-origin"], origin);
    let exposed = allowed.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    for name in [
        "location",
        "etag",
        "retry-after",
        "x-request-id",
        "idempotency-replayed",
    ] {
        assert!(exposed.contains(name), "{name} in {exposed}");
    }

    let rejected = from_portal(&anonymous).send().await.unwrap();
    assert_eq!(rejected.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(rejected.headers()["access-control-allow-origin"], origin);
    let problem: Value = rejected.json().await.unwrap();
    assert!(problem["request_id"].is_string(), "{problem}");

    // A request that runs past the timeout gets a 503 that names the origin too, so that the
    // portal can read it.
    let mut blocker = app.db.begin().await.unwrap();
    sqlx::query("lock table workforces in access exclusive mode")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let timed_out = from_portal(&app.client).send().await.unwrap();
    blocker.rollback().await.unwrap();
    assert_eq!(timed_out.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(timed_out.headers()["access-control-allow-origin"], origin);

    let other = anonymous
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", "https://elsewhere.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(
        other.headers().get("access-control-allow-origin").is_none(),
        "{:?}",
        other.headers()
    );
}

/// A statement cancelled by a timeout or an administrator is a 503 condition, not a bug.
#[tokio::test]
async fn cancelled_statement_counts_as_unavailable() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let mut connection = app.db.acquire().await.unwrap();
    let error = sqlx::raw_sql("set statement_timeout = 1; select pg_sleep(1)")
        .execute(&mut *connection)
        .await
        .unwrap_err();
    let code = error
        .as_database_error()
        .and_then(|db| db.code())
        .map(|code| code.into_owned());
    assert_eq!(code.as_deref(), Some("57014"), "{error}");
    assert!(workforce_service::db::is_unavailable(&error));
    sqlx::raw_sql("reset statement_timeout")
        .execute(&mut *connection)
        .await
        .unwrap();
}

/// Request ids are stored with operations and audit events, so an empty, overlong or
/// non-ASCII id sent by a caller is replaced by a new one.
#[tokio::test]
async fn unusable_request_id_is_replaced() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let long = "r".repeat(129);
    let non_ascii = reqwest::header::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap();
    let cases = [
        reqwest::header::HeaderValue::from_static(""),
        reqwest::header::HeaderValue::from_str(&long).unwrap(),
        non_ascii,
    ];
    for sent in cases {
        let response = app
            .client
            .get(format!("{}/v1/workforces", app.base_url))
            .header("x-request-id", sent.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let echoed = response.headers()["x-request-id"].clone();
        assert_ne!(echoed, sent);
        assert_eq!(echoed.len(), 36, "{echoed:?}");
    }
    let accepted_id = "r".repeat(128);
    let response = app
        .client
        .get(format!("{}/v1/workforces", app.base_url))
        .header("x-request-id", accepted_id.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], accepted_id.as_str());
}

#[tokio::test]
async fn invalid_cors_origins_stop_start() {
    use clap::Parser;

    for origin in [
        "*",
        "https://portal.example/",
        "https://portal.example/app",
        "portal.example",
        "https://Portal.example",
        "https://portal.example:443",
        "https://portal.example:99999",
        "https://portal.example.",
    ] {
        let cli = workforce_service::config::Cli::parse_from([
            "workforce-service",
            "--mode=sandbox",
            &format!("--database-url={}/wfs_test_unused", server_url()),
            &format!("--cors-allowed-origins=https://portal.example,{origin}"),
        ]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let error = workforce_service::app::start(&cli.serve, listener)
            .await
            .err()
            .unwrap_or_else(|| panic!("the start accepted the origin {origin}"));
        assert!(
            error.to_string().contains("--cors-allowed-origins"),
            "{origin}: {error}"
        );
    }
}
