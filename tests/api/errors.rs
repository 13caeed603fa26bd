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
    let body = format!("{{\"name\": \"{}\"}}", "a".repeat(200_000));
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
    ] {
        assert!(text.contains(expected), "missing {expected} in:\n{text}");
    }
}
