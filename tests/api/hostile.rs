//! Hostile input: each request is rejected with a problem body, writes nothing, and leaves the
//! server up.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

/// Sends a raw request and checks the response: a 4xx problem with a request id.
async fn assert_rejected(app: &TestApp, label: &str, request: reqwest::RequestBuilder) {
    let response = request
        .send()
        .await
        .unwrap_or_else(|error| panic!("{label}: {error}"));
    let status = response.status();
    assert!(status.is_client_error(), "{label}: {status}");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(content_type, "application/problem+json", "{label}");
    let problem: Value = response
        .json()
        .await
        .unwrap_or_else(|error| panic!("{label}: {error}"));
    assert!(problem["request_id"].is_string(), "{label}: {problem}");
    // A problem echoes at most a short part of what the client sent.
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.len() < 1_000, "{label}: {} bytes", detail.len());
    let health = app
        .client
        .get(format!("{}/healthz", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        health.status(),
        StatusCode::OK,
        "{label}: the server stays up"
    );
}

#[tokio::test]
async fn hostile_requests_change_nothing() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let base = &app.base_url;
    let create = format!("{base}/v1/regions/{REGION}/workforces");
    let workforce = format!("{base}/v1/regions/{REGION}/workforces/labelers");
    let json_body = |body: String| {
        app.client
            .post(&create)
            .header("content-type", "application/json")
            .body(body)
    };

    let nested = format!(
        "{{\"name\": {}1{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let many_subnets: Vec<String> = (0..100_000).map(|i| format!("subnet-{i:x}")).collect();
    let huge_array = json!({"name": "labelers", "cognito_config": {"user_pool": "us-east-1_AbC123", "client_id": "portal"},
                            "vpc_config": {"vpc_id": VPC, "security_group_ids": [SG_1], "subnets": many_subnets}});
    let mut nul_param = oidc_config("s3cret");
    nul_param["authentication_request_extra_params"] = json!({"prompt": "login\u{0}"});
    // serde_json keeps the last of two equal keys, so this body is written by hand.
    let mut duplicate_params = oidc_config("s3cret");
    duplicate_params
        .as_object_mut()
        .unwrap()
        .remove("authentication_request_extra_params");
    let duplicate_params = duplicate_params.to_string();
    let duplicate_params = format!(
        r#"{{"name": "labelers", "oidc_config": {}, "authentication_request_extra_params": {{"a": "1", "a": "2"}}}}}}"#,
        &duplicate_params[..duplicate_params.len() - 1]
    );
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("oversized body", json_body(format!("{{\"name\": \"{}\"}}", "a".repeat(600_000)))),
        ("deeply nested JSON", json_body(nested)),
        ("array of 100,000 subnets", json_body(huge_array.to_string())),
        ("invalid UTF-8 body", app.client.post(&create).header("content-type", "application/json").body(vec![b'{', 0xff, 0xfe, b'}'])),
        ("NUL byte in a name", json_body(json!({"name": "lab\u{0}elers", "cognito_config": {"user_pool": "us-east-1_AbC123", "client_id": "portal"}}).to_string())),
        ("NUL byte in an OIDC parameter", json_body(json!({"name": "labelers", "oidc_config": nul_param}).to_string())),
        ("duplicate OIDC extra parameter", json_body(duplicate_params)),
        ("number as a name", json_body(r#"{"name": 12, "cognito_config": {"user_pool": "us-east-1_AbC123", "client_id": "portal"}}"#.to_owned())),
        ("SQL in a name", json_body(json!({"name": "x'; drop table workforces; --", "cognito_config": {"user_pool": "us-east-1_AbC123", "client_id": "portal"}}).to_string())),
        ("Cyrillic look-alike in a name", json_body(json!({"name": "lаbelers", "cognito_config": {"user_pool": "us-east-1_AbC123", "client_id": "portal"}}).to_string())),
        ("fullwidth letters in a name", json_body(json!({"name": "ｌabelers", "cognito_config": {"user_pool": "us-east-1_AbC123", "client_id": "portal"}}).to_string())),
        ("zero-width joiner in a name", json_body(json!({"name": "lab\u{200d}elers", "cognito_config": {"user_pool": "us-east-1_AbC123", "client_id": "portal"}}).to_string())),
        ("right-to-left mark in an id", json_body(json!({"name": "labelers", "cognito_config": {"user_pool": "us-east-1_AbC123", "client_id": "portal"},
                                                          "vpc_config": {"vpc_id": "vpc-\u{200f}0a1", "security_group_ids": [SG_1], "subnets": [SUBNET_A]}}).to_string())),
        ("SQL in a subnet id", json_body(json!({"name": "labelers", "cognito_config": {"user_pool": "us-east-1_AbC123", "client_id": "portal"},
                                                 "vpc_config": {"vpc_id": VPC, "security_group_ids": [SG_1], "subnets": ["subnet-1' or '1'='1"]}}).to_string())),
        ("60 KB path segment", app.client.get(format!("{base}/v1/regions/{REGION}/workforces/{}", "a".repeat(60_000)))),
        ("invalid UTF-8 in the path", app.client.get(format!("{base}/v1/regions/{REGION}/workforces/%FF%FE"))),
        ("SQL in a path segment", app.client.get(format!("{base}/v1/regions/{REGION}/workforces/x'%20or%201=1--"))),
        ("8,000-character status filter", app.client.get(format!("{base}/v1/workforces?status={}", "A".repeat(8_000)))),
        ("SQL in a query parameter", app.client.get(format!("{base}/v1/operations?workforce_name=x'%20or%201=1--"))),
        ("SQL in a cursor", app.client.get(format!("{base}/v1/audit-events?cursor=1%20or%201=1"))),
        // "us-east-1\n\0": the form of a workforce cursor, with a NUL as the name.
        ("NUL byte in a cursor", app.client.get(format!("{base}/v1/workforces?cursor=dXMtZWFzdC0xCgA"))),
        ("look-alike region", app.client.get(format!("{base}/v1/regions/us-еast-1/workforces"))),
        ("10 KB idempotency key", app.client.post(&create).header("idempotency-key", "k".repeat(10_000)).json(&cognito_workforce("labelers"))),
        ("invalid If-Match", app.client.delete(&workforce).header("if-match", "\"not-a-revision\"")),
    ];
    for (label, request) in cases {
        assert_rejected(&app, label, request).await;
    }
    app.assert_nothing_written().await;
}

/// Every token is a valid HTTP method. Methods that no standard defines share one metrics
/// label, so that a client cannot add series to `/metrics` without end.
#[tokio::test]
async fn invented_methods_share_one_metrics_label() {
    let app = TestApp::spawn().await;
    let padding = "X".repeat(2_000);
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("{padding}{i}").as_bytes()).unwrap();
        let response = app
            .client
            .request(method, format!("{}/healthz", app.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    let metrics = app.metrics_text().await;
    assert!(!metrics.contains("XXXX"), "an invented method is a label");
    let counted = r#"http_requests_total{method="other",route="/healthz",status="405"} 20"#;
    assert!(metrics.contains(counted), "{counted} not in:\n{metrics}");
}

/// Opens a connection to the service and sends `bytes`, which need not be a whole request.
async fn connect_and_send(app: &TestApp, bytes: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let address = app.base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// Waits up to `limit` for the service to close `stream`, and returns how long it took.
async fn time_until_closed(
    mut stream: tokio::net::TcpStream,
    limit: std::time::Duration,
) -> Option<std::time::Duration> {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(limit, stream.read_to_end(&mut rest)).await;
    // A reset is a close too; only a timeout means the connection is still open.
    read.is_ok().then(|| started.elapsed())
}

/// A client that sends half a request head, or nothing at all, loses its connection after the
/// header read timeout, so it cannot hold connections open without end.
#[tokio::test]
async fn connections_without_a_request_head_are_closed() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        extra_args: vec!["--header-read-timeout-seconds=1".to_owned()],
        ..Default::default()
    })
    .await;
    let limit = std::time::Duration::from_secs(10);

    let half_head = connect_and_send(&app, b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await;
    let silent = connect_and_send(&app, b"").await;
    let took = time_until_closed(half_head, limit).await;
    assert!(
        took.is_some(),
        "a half-sent head kept its connection for {limit:?}"
    );
    assert!(
        took.unwrap() >= std::time::Duration::from_millis(800),
        "closed before the timeout: {took:?}"
    );
    let took = time_until_closed(silent, limit).await;
    assert!(
        took.is_some(),
        "a silent connection stayed open for {limit:?}"
    );

    // Complete requests still get a response.
    let response = app
        .client
        .get(format!("{}/healthz", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let metrics = app.metrics_text().await;
    let counted = r#"http_connection_errors_total{reason="header_timeout"}"#;
    assert!(metrics.contains(counted), "{counted} not in:\n{metrics}");
}

/// At `--http-max-connections`, a new connection waits to be accepted until an open one closes.
#[tokio::test]
async fn connection_cap_holds_new_connections_back() {
    use tokio::io::AsyncReadExt;
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        extra_args: vec!["--http-max-connections=2".to_owned()],
        ..Default::default()
    })
    .await;
    let first = connect_and_send(&app, b"").await;
    let second = connect_and_send(&app, b"").await;
    let mut third = connect_and_send(
        &app,
        b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;

    let mut response = Vec::new();
    let early = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        third.read_to_end(&mut response),
    )
    .await;
    assert!(
        early.is_err(),
        "a third connection was served past the cap of 2: {}",
        String::from_utf8_lossy(&response)
    );

    drop(first);
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        third.read_to_end(&mut response),
    )
    .await;
    assert!(read.is_ok(), "not served within 5 s of a slot freeing up");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    drop(second);
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("http_connection_cap_reached_total"),
        "{metrics}"
    );
    assert!(metrics.contains("http_connections_open"), "{metrics}");
}

/// A shutdown closes a connection that is part-way through a request head after a short
/// drain, instead of waiting for the header read timeout (30 s by default), which is longer
/// than the grace period.
#[tokio::test]
async fn shutdown_closes_half_sent_head() {
    let mut app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let half_head = connect_and_send(&app, b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let started = std::time::Instant::now();
    app.service
        .take()
        .unwrap()
        .shutdown(std::time::Duration::from_secs(20))
        .await;
    let shutdown_took = started.elapsed();

    assert!(
        shutdown_took < std::time::Duration::from_secs(5),
        "a half-sent head held the shutdown for {shutdown_took:?}"
    );
    let closed = time_until_closed(half_head, std::time::Duration::from_secs(1)).await;
    assert!(closed.is_some(), "the connection is still open");
}

/// A request head larger than 64 KiB gets `431` before the server buffers more of it.
#[tokio::test]
async fn oversized_request_head_is_rejected() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let filler = "a".repeat(100_000);
    let head = format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-filler: {filler}\r\n\r\n");
    let mut stream = connect_and_send(&app, head.as_bytes()).await;

    let mut response = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut response),
    )
    .await;

    assert!(read.is_ok(), "no answer within 10 s");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");

    // A head of a few kilobytes, such as one with a large JWT, is served.
    let response = app
        .client
        .get(format!("{}/healthz", app.base_url))
        .header("x-filler", "a".repeat(8_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// A client that sends requests but does not read the responses loses its connection after
/// the write timeout.
#[tokio::test]
async fn client_that_stops_reading_is_cut_off() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        extra_args: vec!["--write-timeout-seconds=1".to_owned()],
        ..Default::default()
    })
    .await;
    let address: std::net::SocketAddr = app.base_url.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    // Pipelined requests for the OpenAPI document, about 75 KB each, fill the socket buffers
    // of both sides many times over.
    let request = "GET /openapi.json HTTP/1.1\r\nhost: x\r\n\r\n".repeat(200);
    let sent = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes()),
    )
    .await;
    // The server stops reading once its writes block, so the send may not finish either.
    drop(sent);

    let counted = r#"http_connection_errors_total{reason="write_timeout"}"#;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let metrics = app.metrics_text().await;
        if metrics.contains(counted) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{counted} not in:\n{metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    drop(stream);
}

/// An HTTP/1.1 request needs exactly one `Host` line with a host and an optional port; HTTP/1.0
/// may leave it out.
#[tokio::test]
async fn host_header_is_required_once() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let cases: [(&[u8], &str); 8] = [
        (b"GET /healthz HTTP/1.1\r\nconnection: close\r\n\r\n", "400"),
        (
            b"GET /healthz HTTP/1.1\r\nhost: a\r\nhost: b\r\nconnection: close\r\n\r\n",
            "400",
        ),
        (b"GET /healthz HTTP/1.0\r\n\r\n", "200"),
        (
            b"GET /healthz HTTP/1.1\r\nhost: a b\r\nconnection: close\r\n\r\n",
            "400",
        ),
        (
            b"GET /healthz HTTP/1.1\r\nhost: user@a\r\nconnection: close\r\n\r\n",
            "400",
        ),
        (
            b"GET /healthz HTTP/1.1\r\nhost: [::1]:8080\r\nconnection: close\r\n\r\n",
            "200",
        ),
        (
            b"GET /healthz HTTP/1.1\r\nhost: api.example.com:443\r\nconnection: close\r\n\r\n",
            "200",
        ),
        (
            b"GET /healthz HTTP/1.1\r\nhost:\r\nconnection: close\r\n\r\n",
            "200",
        ),
    ];
    for (request, status) in cases {
        let mut stream = connect_and_send(&app, request).await;
        let mut response = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut response)
            .await
            .unwrap();
        let response = String::from_utf8_lossy(&response);
        let request = String::from_utf8_lossy(request);
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status}"))
                || response.starts_with(&format!("HTTP/1.0 {status}")),
            "{request:?}: {response}"
        );
        if status == "400" {
            assert!(response.contains("\"field\":\"Host\""), "{response}");
        }
    }
}
