//! Secrets never leave the request that carried them: an OIDC client secret and an API key are
//! looked for in the logs, in every table and in every response of a full scenario.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn canary_secrets_appear_nowhere() {
    // The test's own service prepares the database and the sandbox; a second process, whose
    // debug-level JSON logs are kept, serves the scenario.
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let log_path =
        std::env::temp_dir().join(format!("wfs-canary-{}.log", uuid::Uuid::new_v4().simple()));
    let port = free_port();
    let mut process = start_process(
        &app.database_url,
        &app.sandbox().endpoint_url(),
        port,
        Some(&log_path),
    )
    .await;
    let base_url = format!("http://127.0.0.1:{port}");
    let (_, api_key) = workforce_service::auth::api_keys::create(
        &app.db,
        "canary-caller",
        workforce_service::auth::Role::Admin,
        None,
        None,
    )
    .await
    .unwrap();
    let client = client_with_key(&api_key);
    let first_secret = "canary-oidc-secret-51f0c3";
    let second_secret = "canary-oidc-secret-9a77e2";
    let mut responses = String::new();

    let mut send = async |method: Method, path: String, body: Option<serde_json::Value>| {
        let mut request = client.request(method, format!("{base_url}{path}"));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        responses.push_str(&format!("{:?}", response.headers()));
        let text = response.text().await.unwrap();
        responses.push_str(&text);
        serde_json::from_str::<serde_json::Value>(&text).unwrap_or_default()
    };

    let workforce = format!("/v1/regions/{REGION}/workforces/canary");
    let created = send(
        Method::POST,
        format!("/v1/regions/{REGION}/workforces"),
        Some(json!({"name": "canary", "oidc_config": oidc_config(first_secret)})),
    )
    .await;
    app.wait_for_operation(created["id"].as_str().unwrap())
        .await;
    let changed = send(
        Method::PUT,
        format!("{workforce}/oidc-config"),
        Some(oidc_config(second_secret)),
    )
    .await;
    app.wait_for_operation(changed["id"].as_str().unwrap())
        .await;
    send(Method::GET, workforce.clone(), None).await;
    send(Method::GET, "/v1/workforces".into(), None).await;
    send(Method::GET, "/v1/operations".into(), None).await;
    send(
        Method::GET,
        format!("/v1/operations/{}", changed["id"].as_str().unwrap()),
        None,
    )
    .await;
    send(Method::GET, "/v1/audit-events?limit=200".into(), None).await;
    send(Method::GET, "/v1/api-keys".into(), None).await;
    // The access line of a caller without the role still names the caller.
    let (_, viewer_key) = workforce_service::auth::api_keys::create(
        &app.db,
        "canary-viewer",
        workforce_service::auth::Role::Viewer,
        None,
        None,
    )
    .await
    .unwrap();
    let forbidden = client_with_key(&viewer_key)
        .delete(format!("{base_url}{workforce}"))
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    // So does the line of a request that the client abandons. The lock keeps the audit query
    // waiting until the client's timeout closes the connection.
    let mut lock = app.db.begin().await.unwrap();
    sqlx::query("lock table audit_events in access exclusive mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    let abandoned = client
        .get(format!("{base_url}/v1/audit-events"))
        .timeout(std::time::Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(abandoned.is_timeout(), "{abandoned}");
    // The server notices the closed connection after a short delay, so the lock is held until then.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    lock.rollback().await.unwrap();
    let deleted = send(Method::DELETE, workforce.clone(), None).await;
    app.wait_for_operation(deleted["id"].as_str().unwrap())
        .await;

    let tables: Vec<String> =
        sqlx::query_scalar("select tablename::text from pg_tables where schemaname = 'public'")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert!(tables.len() >= 5, "{tables:?}");
    let mut database = String::new();
    for table in &tables {
        let dump: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select string_agg(t::text, ' ') from {table} t"
        )))
        .fetch_one(&app.db)
        .await
        .unwrap();
        database.push_str(&dump.unwrap_or_default());
    }
    let _ = process.kill();
    let _ = process.wait();
    let logs = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    // The create and the delete each find no workforce at some point, an expected outcome
    // that is logged at debug, and a failure line carries no raw response.
    assert!(
        logs.lines()
            .any(|line| line.contains("AWS call found no workforce")
                && line.contains(r#""level":"DEBUG""#)),
        "no debug line for a missing workforce"
    );
    for line in logs.lines().filter(|line| line.contains("AWS call failed")) {
        assert!(!line.contains("No workforce"), "{line}");
        assert!(line.len() < 800, "{line}");
    }
    assert!(
        logs.contains("submitted change to SageMaker"),
        "the capture saw the service's logs"
    );
    // The access log line of the creation, as JSON with the caller's name.
    let created_line = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "request" && line["http.method"] == "POST");
    let created_line = created_line.expect("an access log line of the POST");
    assert_eq!(created_line["http.status"], 202, "{created_line}");
    assert_eq!(
        created_line["http.route"], "/v1/regions/{region}/workforces",
        "{created_line}"
    );
    assert_eq!(created_line["actor"], "canary-caller", "{created_line}");
    assert!(
        created_line["duration_ms"].as_f64().is_some(),
        "{created_line}"
    );
    let forbidden_line = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "request" && line["http.status"] == 403);
    let forbidden_line = forbidden_line.expect("an access log line of the forbidden DELETE");
    assert_eq!(forbidden_line["actor"], "canary-viewer", "{forbidden_line}");
    let abandoned_line = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "request" && line["http.status"] == 499);
    let abandoned_line = abandoned_line.expect("an access log line of the abandoned request");
    assert_eq!(abandoned_line["actor"], "canary-caller", "{abandoned_line}");

    for (name, secret) in [
        ("first OIDC secret", first_secret),
        ("second OIDC secret", second_secret),
        ("API key", api_key.as_str()),
    ] {
        assert!(!logs.contains(secret), "the {name} is in the logs");
        assert!(!database.contains(secret), "the {name} is in the database");
        assert!(!responses.contains(secret), "the {name} is in a response");
    }
    // The audit log shows that a secret was set, and a change of it, without the value.
    assert!(database.contains("client_secret_set"));
}

/// A client secret sent with the wrong type, or inside an OIDC object sent as a string, is
/// rejected without being repeated.
#[tokio::test]
async fn mistyped_secret_is_not_echoed() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let mut oidc = oidc_config("unused");
    oidc["client_secret"] = json!(99887766);
    let response = app
        .client
        .post(format!("{}/v1/regions/{REGION}/workforces", app.base_url))
        .json(&json!({"name": "typed", "oidc_config": oidc}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let text = response.text().await.unwrap();
    assert!(!text.contains("99887766"), "{text}");
    let problem: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(problem["errors"][0]["field"], "oidc_config.client_secret");
    assert!(
        problem["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("expected a string"),
        "{problem}"
    );

    let as_text = oidc_config("double-encoded-secret").to_string();
    for (method, path, body) in [
        (
            Method::POST,
            format!("/v1/regions/{REGION}/workforces"),
            json!({"name": "typed", "oidc_config": as_text}),
        ),
        (
            Method::PUT,
            format!("/v1/regions/{REGION}/workforces/typed/oidc-config"),
            json!(as_text),
        ),
    ] {
        let response = app
            .client
            .request(method, format!("{}{path}", app.base_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{path}");
        let text = response.text().await.unwrap();
        assert!(!text.contains("double-encoded"), "{text}");
        assert!(text.contains("expected struct"), "{text}");
    }
}
