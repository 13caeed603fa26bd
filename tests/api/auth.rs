//! Authentication and roles: every route with every role, and every kind of bad credential.

use std::time::Duration;

use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;
use workforce_service::auth::{Role, api_keys};

/// Test-only EC P-256 keys: `jwt-signing.pem` matches `jwks.json`, `jwt-other.pem` matches
/// nothing the identity provider publishes.
const SIGNING_KEY: &[u8] = include_bytes!("fixtures/jwt-signing.pem");
const OTHER_KEY: &[u8] = include_bytes!("fixtures/jwt-other.pem");
const JWKS: &str = include_str!("fixtures/jwks.json");
const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "workforce-service";

/// The permission that each route group requires.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Needs {
    Read,
    Change,
    Audit,
    Admin,
}

fn allowed(role: Role, needs: Needs) -> bool {
    match needs {
        Needs::Read => matches!(role, Role::Viewer | Role::Operator | Role::Admin),
        Needs::Change => matches!(role, Role::Operator | Role::Admin),
        Needs::Audit => matches!(role, Role::Auditor | Role::Admin),
        Needs::Admin => role == Role::Admin,
    }
}

/// Every `/v1` route, with a body where it takes one. Bodies are valid, but the workforce does
/// not exist, so allowed changes return 404 and change nothing.
fn routes() -> Vec<(Method, String, Option<Value>, Needs)> {
    let workforce = format!("/v1/regions/{REGION}/workforces/nobody");
    vec![
        (Method::GET, "/v1/workforces".into(), None, Needs::Read),
        (
            Method::POST,
            format!("/v1/regions/{REGION}/workforces"),
            Some(json!({"name": "x"})),
            Needs::Change,
        ),
        (Method::GET, workforce.clone(), None, Needs::Read),
        (Method::DELETE, workforce.clone(), None, Needs::Change),
        (
            Method::GET,
            format!("{workforce}/vpc-config"),
            None,
            Needs::Read,
        ),
        (
            Method::PUT,
            format!("{workforce}/vpc-config"),
            Some(vpc_config(&[SUBNET_A])),
            Needs::Change,
        ),
        (
            Method::DELETE,
            format!("{workforce}/vpc-config"),
            None,
            Needs::Change,
        ),
        (
            Method::PUT,
            format!("{workforce}/source-ip-config"),
            Some(json!({"cidrs": []})),
            Needs::Change,
        ),
        (
            Method::PUT,
            format!("{workforce}/oidc-config"),
            Some(oidc_config("s")),
            Needs::Change,
        ),
        (
            Method::POST,
            format!("/v1/regions/{REGION}/vpc-config-checks"),
            Some(vpc_config(&[SUBNET_A])),
            Needs::Read,
        ),
        (Method::GET, "/v1/operations".into(), None, Needs::Read),
        (
            Method::GET,
            format!("/v1/operations/{}", uuid::Uuid::nil()),
            None,
            Needs::Read,
        ),
        (Method::GET, "/v1/audit-events".into(), None, Needs::Audit),
        (Method::GET, "/v1/api-keys".into(), None, Needs::Admin),
        (
            Method::POST,
            "/v1/api-keys".into(),
            Some(json!({"name": "", "role": "viewer"})),
            Needs::Admin,
        ),
        (
            Method::DELETE,
            format!("/v1/api-keys/{}", uuid::Uuid::nil()),
            None,
            Needs::Admin,
        ),
    ]
}

async fn send(
    client: &reqwest::Client,
    app: &TestApp,
    method: &Method,
    path: &str,
    body: &Option<Value>,
) -> reqwest::Response {
    let mut request = client.request(method.clone(), format!("{}{path}", app.base_url));
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.expect("request is sent")
}

#[tokio::test]
async fn every_route_checks_every_role() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let mut denied_changes = 0;
    for role in [Role::Viewer, Role::Operator, Role::Auditor, Role::Admin] {
        let (_, key) =
            api_keys::create(&app.db, &format!("key-{}", role.as_str()), role, None, None)
                .await
                .unwrap();
        let client = client_with_key(&key);
        for (method, path, body, needs) in routes() {
            let status = send(&client, &app, &method, &path, &body).await.status();
            if allowed(role, needs) {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{role:?} {method} {path}: {status}"
                );
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{role:?} {method} {path}");
                if method != Method::GET && matches!(needs, Needs::Change | Needs::Admin) {
                    denied_changes += 1;
                }
            }
        }
    }
    assert_eq!(app.count_rows("operations").await, 0);
    // Forbidden changes are audited. Forbidden reads, such as a VPC check, are not.
    let audited: i64 =
        sqlx::query_scalar("select count(*) from audit_events where action = 'access.denied'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(audited, denied_changes);
    // A denied key revocation names the key's id.
    let ids: Vec<Option<String>> = sqlx::query_scalar(
        "select detail->>'id' from audit_events
          where action = 'access.denied' and detail->>'route' = '/v1/api-keys/{id}'",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert!(!ids.is_empty());
    for id in ids {
        assert_eq!(id, Some(uuid::Uuid::nil().to_string()));
    }
}

/// A request that no route serves gets its 404 or 405 with any role's key, leaves no audit
/// event, and stays a 401 without a key.
#[tokio::test]
async fn unserved_requests_are_not_forbidden() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let workforce = format!("/v1/regions/{REGION}/workforces/team");
    let cases = [
        (
            Method::GET,
            "/v1/nothing-here".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/v1/nothing-here".to_owned(),
            StatusCode::NOT_FOUND,
        ),
        (Method::PATCH, workforce, StatusCode::METHOD_NOT_ALLOWED),
        (
            Method::PATCH,
            "/v1/api-keys".to_owned(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        // These routes serve other methods, and the method alone makes each request a change.
        (
            Method::POST,
            "/v1/operations".to_owned(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::DELETE,
            format!("/v1/operations/{}", uuid::Uuid::nil()),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::PUT,
            "/v1/workforces".to_owned(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::PUT,
            "/v1/api-keys".to_owned(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::DELETE,
            "/v1/audit-events".to_owned(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for role in [Role::Viewer, Role::Auditor, Role::Operator] {
        let (_, key) =
            api_keys::create(&app.db, &format!("key-{}", role.as_str()), role, None, None)
                .await
                .unwrap();
        let client = client_with_key(&key);
        for (method, path, expected) in &cases {
            let status = send(&client, &app, method, path, &None).await.status();
            assert_eq!(status, *expected, "{role:?} {method} {path}");
        }
    }
    let denied: i64 =
        sqlx::query_scalar("select count(*) from audit_events where action = 'access.denied'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(denied, 0);
    for (method, path, _) in &cases {
        let status = send(&reqwest::Client::new(), &app, method, path, &None)
            .await
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
}

#[tokio::test]
async fn bad_credentials_are_unauthenticated() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (_, expired) = api_keys::create(
        &app.db,
        "expired",
        Role::Admin,
        None,
        Some(Utc::now() - chrono::Duration::seconds(1)),
    )
    .await
    .unwrap();
    let (revoked_row, revoked) = api_keys::create(&app.db, "revoked", Role::Admin, None, None)
        .await
        .unwrap();
    let (status, _, _) = app
        .request(
            Method::DELETE,
            &format!("/v1/api-keys/{}", revoked_row.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let anonymous = reqwest::Client::new();
    let credentials: Vec<(&str, reqwest::Client)> = vec![
        ("none", anonymous),
        (
            "unknown key",
            client_with_key("wfs_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ),
        ("expired key", client_with_key(&expired)),
        ("revoked key", client_with_key(&revoked)),
        ("not a JWT", client_with_key("eyJhbGciOi.garbage.x")),
    ];
    for (label, client) in credentials {
        for (method, path, body, _) in routes() {
            let response = send(&client, &app, &method, &path, &body).await;
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{label}: {method} {path}"
            );
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            assert!(
                challenge.starts_with("Bearer realm="),
                "{label}: {challenge}"
            );
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
        }
    }
    // The public endpoints respond without a credential.
    for path in ["/healthz", "/readyz", "/openapi.json", "/docs/"] {
        let status = reqwest::get(format!("{}{path}", app.base_url))
            .await
            .unwrap()
            .status();
        assert_ne!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn operator_limited_to_regions() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let regions = vec!["us-west-2".to_owned()];
    let (_, key) = api_keys::create(
        &app.db,
        "west-operator",
        Role::Operator,
        Some(&regions),
        None,
    )
    .await
    .unwrap();
    let client = client_with_key(&key);
    let east = send(
        &client,
        &app,
        &Method::POST,
        "/v1/regions/us-east-1/workforces",
        &Some(cognito_workforce("east")),
    )
    .await;
    assert_eq!(east.status(), StatusCode::FORBIDDEN);
    // The handler reads the decoded path, so the check must too: `%2D` is `-`.
    let encoded_east = send(
        &client,
        &app,
        &Method::POST,
        "/v1/regions/us%2Deast%2D1/workforces",
        &Some(cognito_workforce("east")),
    )
    .await;
    assert_eq!(encoded_east.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.count_rows("operations").await, 0);
    // Both attempts are in the audit log, with the caller, the region and the request id.
    // The columns: actor, outcome, region, request id and detail.
    type DeniedEvent = (
        String,
        String,
        Option<String>,
        Option<String>,
        serde_json::Value,
    );
    let denied: Vec<DeniedEvent> = sqlx::query_as(
        "select actor, outcome, region, request_id, detail from audit_events
              where action = 'access.denied' order by id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(denied.len(), 2, "{denied:?}");
    for (actor, outcome, region, request_id, detail) in &denied {
        assert_eq!(actor, "west-operator");
        assert_eq!(outcome, "denied");
        assert_eq!(region.as_deref(), Some("us-east-1"));
        assert!(request_id.is_some());
        assert_eq!(detail["method"], "POST");
        assert_eq!(detail["route"], "/v1/regions/{region}/workforces");
    }
    assert_eq!(
        denied[0].3.as_deref(),
        east.headers()["x-request-id"].to_str().ok()
    );

    // Names from the path are stored cut to 64 characters, with control characters shown as
    // U+FFFD, and every denied change is recorded, whatever its name.
    let long_name = "n".repeat(5_000);
    for name in [long_name.as_str(), "a%00b", "c%FFd"] {
        let path = format!("/v1/regions/us-east-1/workforces/{name}");
        let response = send(&client, &app, &Method::DELETE, &path, &None).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{name}");
    }
    let names: Vec<(String, Option<String>)> = sqlx::query_as(
        "select workforce_name, actor_role from audit_events
          where action = 'access.denied' and workforce_name is not null order by id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0].0.starts_with("nnn"));
    assert!(names[0].0.chars().count() <= 65, "{}", names[0].0);
    assert_eq!(names[1].0, "a\u{fffd}b");
    assert_eq!(names[1].1.as_deref(), Some("operator"));
    // Invalid UTF-8 in the name does not hide the region, so the region check still applies.
    assert_eq!(names[2].0, "c\u{fffd}d");
    let west = send(
        &client,
        &app,
        &Method::POST,
        "/v1/regions/us-west-2/workforces",
        &Some(cognito_workforce("west")),
    )
    .await;
    assert_eq!(west.status(), StatusCode::ACCEPTED);
    let read = send(&client, &app, &Method::GET, "/v1/workforces", &None).await;
    assert_eq!(read.status(), StatusCode::OK);

    let actor: (String, String, Option<String>) = sqlx::query_as(
        "select actor, actor_kind, actor_role from audit_events where workforce_name = 'west'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        actor,
        (
            "west-operator".to_owned(),
            "api_key".to_owned(),
            Some("operator".to_owned())
        )
    );
}

#[tokio::test]
async fn admin_manages_keys_through_api() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (status, headers, created) = app
        .request(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "portal", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(headers["cache-control"], "no-store");
    let key = created["api_key"].as_str().unwrap().to_owned();
    let stored: Vec<u8> = sqlx::query_scalar("select key_hash from api_keys where name = 'portal'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, api_keys::hash_key(&key).to_vec());
    let dump: String = sqlx::query_scalar("select string_agg(t::text, ' ') from api_keys t")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(!dump.contains(&key), "the key is stored only as a hash");

    let (_, listed) = app.get("/v1/api-keys").await;
    assert!(
        !listed.to_string().contains(&key),
        "listing never shows a key"
    );
    let (status, _, duplicate) = app
        .request(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "portal", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{duplicate}");

    let portal = client_with_key(&key);
    assert_eq!(
        send(&portal, &app, &Method::GET, "/v1/workforces", &None)
            .await
            .status(),
        StatusCode::OK
    );
    // The scheme is case-insensitive, and only the bearer scheme carries a key.
    for (authorization, expected) in [
        (format!("BEARER {key}"), StatusCode::OK),
        (format!("Basic {key}"), StatusCode::UNAUTHORIZED),
    ] {
        let status = reqwest::Client::new()
            .get(format!("{}/v1/workforces", app.base_url))
            .header("authorization", &authorization)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, expected, "{}", &authorization[..6]);
    }
    let (status, _, _) = app
        .request(
            Method::DELETE,
            &format!("/v1/api-keys/{}", created["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        send(&portal, &app, &Method::GET, "/v1/workforces", &None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    // The name of a revoked key stays reserved, and the problem's detail explains that.
    let (status, _, reused) = app
        .request(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "portal", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{reused}");
    assert_eq!(reused["type"], "/problems/name-in-use", "{reused}");
    assert!(
        reused["detail"].as_str().unwrap().contains("revoked"),
        "{reused}"
    );
}

/// Only operator keys take a region list, and the list names managed regions, each once.
#[tokio::test]
async fn key_region_lists_are_checked() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let rejected = [
        (
            json!({"name": "a", "role": "admin", "regions": [REGION]}),
            "regions",
        ),
        (
            json!({"name": "v", "role": "viewer", "regions": [REGION]}),
            "regions",
        ),
        (
            json!({"name": "o", "role": "operator", "regions": []}),
            "regions",
        ),
        (
            json!({"name": "o", "role": "operator", "regions": [REGION, REGION]}),
            "regions[1]",
        ),
        (
            json!({"name": "o", "role": "operator", "regions": ["eu-west-9"]}),
            "regions[0]",
        ),
    ];
    for (body, field) in rejected {
        let (status, _, problem) = app
            .request(Method::POST, "/v1/api-keys", Some(body.clone()))
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {problem}"
        );
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    assert_eq!(
        app.count_rows("api_keys").await,
        1,
        "only the test's own key"
    );

    let (status, _, created) = app
        .request(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "o", "role": "operator", "regions": ["us-west-2"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["regions"], json!(["us-west-2"]), "{created}");
}

/// Serves the test JWKS on a loopback port and returns its URL.
async fn serve_jwks() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let router = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(|| async { ([("content-type", "application/json")], JWKS) }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

fn token(key: &[u8], kid: &str, audience: &str, expires_in: i64, groups: &[&str]) -> String {
    let claims = json!({
        "iss": ISSUER, "aud": audience, "sub": "alice@example.com", "groups": groups,
        "iat": Utc::now().timestamp(), "exp": Utc::now().timestamp() + expires_in,
    });
    signed_token(key, kid, &claims)
}

fn signed_token(key: &[u8], kid: &str, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(key).unwrap(),
    )
    .unwrap()
}

/// A token is rejected before its `nbf` and after its `exp`, each with 60 s of clock skew,
/// and when its subject could not name the caller in the logs.
#[tokio::test]
async fn jwt_lifetime_and_subject_are_checked() {
    let jwks_url = serve_jwks().await;
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        extra_args: vec![
            format!("--jwt-issuer={ISSUER}"),
            format!("--jwt-audience={AUDIENCE}"),
            format!("--jwt-jwks-url={jwks_url}"),
        ],
        ..Default::default()
    })
    .await;
    let now = Utc::now().timestamp();
    let claims = |subject: &str, not_before: i64, expires: i64| {
        json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": subject, "groups": ["viewer"],
            "iat": now, "nbf": now + not_before, "exp": now + expires,
        })
    };
    let long_subject = "x".repeat(257);
    let cases = [
        ("valid", claims("alice@example.com", 0, 300), StatusCode::OK),
        (
            "within the skew",
            claims("alice@example.com", 30, 300),
            StatusCode::OK,
        ),
        (
            "expired within the skew",
            claims("alice@example.com", -600, -30),
            StatusCode::OK,
        ),
        (
            "not yet valid",
            claims("alice@example.com", 3600, 7200),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "expired",
            claims("alice@example.com", -600, -120),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "reserved subject",
            claims("System", 0, 300),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "long subject",
            claims(&long_subject, 0, 300),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "reordering subject",
            claims("eve\u{202e}nimda", 0, 300),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (case, claims, expected) in cases {
        let client = client_with_key(&signed_token(SIGNING_KEY, "test-key-1", &claims));
        let status = send(&client, &app, &Method::GET, "/v1/workforces", &None)
            .await
            .status();
        assert_eq!(status, expected, "{case}");
    }
}

#[tokio::test]
async fn jwt_roles_and_rejections() {
    let jwks_url = serve_jwks().await;
    let options = TestOptions {
        workers: 0,
        extra_args: vec![
            format!("--jwt-issuer={ISSUER}"),
            format!("--jwt-audience={AUDIENCE}"),
            format!("--jwt-jwks-url={jwks_url}"),
            "--jwt-role-map=labeling-ops=operator,labeling-auditors=auditor".to_owned(),
        ],
        ..Default::default()
    };
    let app = TestApp::spawn_with(options).await;

    let operator = client_with_key(&token(
        SIGNING_KEY,
        "test-key-1",
        AUDIENCE,
        300,
        &["labeling-ops"],
    ));
    let response = send(
        &operator,
        &app,
        &Method::POST,
        &format!("/v1/regions/{REGION}/workforces"),
        &Some(cognito_workforce("jwt-team")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(
        send(&operator, &app, &Method::GET, "/v1/audit-events", &None)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    let actor: (String, String, Option<String>) = sqlx::query_as(
        "select actor, actor_kind, actor_role from audit_events where workforce_name = 'jwt-team'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(
        actor,
        (
            "alice@example.com".to_owned(),
            "jwt".to_owned(),
            Some("operator".to_owned())
        )
    );

    let auditor = client_with_key(&token(
        SIGNING_KEY,
        "test-key-1",
        AUDIENCE,
        300,
        &["labeling-auditors"],
    ));
    assert_eq!(
        send(&auditor, &app, &Method::GET, "/v1/audit-events", &None)
            .await
            .status(),
        StatusCode::OK
    );
    let no_roles = client_with_key(&token(
        SIGNING_KEY,
        "test-key-1",
        AUDIENCE,
        300,
        &["someone-else"],
    ));
    assert_eq!(
        send(&no_roles, &app, &Method::GET, "/v1/workforces", &None)
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    // A request that no route serves gets its 404 or 405 without a role, and no audit event.
    let denied_before: i64 =
        sqlx::query_scalar("select count(*) from audit_events where action = 'access.denied'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    for (method, path, expected) in [
        (
            Method::POST,
            "/v1/operations",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (Method::GET, "/v1/nothing-here", StatusCode::NOT_FOUND),
    ] {
        let status = send(&no_roles, &app, &method, path, &None).await.status();
        assert_eq!(status, expected, "{method} {path}");
    }
    let denied_after: i64 =
        sqlx::query_scalar("select count(*) from audit_events where action = 'access.denied'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(denied_after, denied_before);

    let rejected = [
        (
            "wrong signature",
            token(OTHER_KEY, "test-key-1", AUDIENCE, 300, &["labeling-ops"]),
        ),
        (
            "wrong audience",
            token(
                SIGNING_KEY,
                "test-key-1",
                "another-service",
                300,
                &["labeling-ops"],
            ),
        ),
        (
            "expired",
            token(SIGNING_KEY, "test-key-1", AUDIENCE, -600, &["labeling-ops"]),
        ),
        (
            "unknown key id",
            token(SIGNING_KEY, "test-key-9", AUDIENCE, 300, &["labeling-ops"]),
        ),
    ];
    for (label, bad) in rejected {
        let client = client_with_key(&bad);
        for (method, path, body, _) in routes() {
            let status = send(&client, &app, &method, &path, &body).await.status();
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{label}: {method} {path}");
        }
    }
    // A token whose header names a shared-secret algorithm is rejected before any key lookup.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("test-key-1".to_owned());
    let claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "groups": ["admin"], "exp": Utc::now().timestamp() + 300});
    let forged = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWKS.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        send(
            &client_with_key(&forged),
            &app,
            &Method::GET,
            "/v1/workforces",
            &None
        )
        .await
        .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn rate_limit_answers_429() {
    let options = TestOptions {
        workers: 0,
        extra_args: vec!["--rate-limit-per-minute=5".to_owned()],
        ..Default::default()
    };
    let app = TestApp::spawn_with(options).await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let response = app
            .client
            .get(format!("{}/v1/workforces", app.base_url))
            .send()
            .await
            .unwrap();
        statuses.push((
            response.status(),
            response.headers().get("retry-after").is_some(),
        ));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|(s, _)| *s == StatusCode::OK)
            .count(),
        5,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
            .all(|(_, retry)| *retry)
    );
}

/// An address that sent too many unknown keys gets 429 for keys the service has not found
/// before, without a lookup, while keys it has found keep working. The read cache is off, so
/// the admin key is looked up on every request.
#[tokio::test]
async fn unknown_keys_hit_lookup_limit() {
    let options = TestOptions {
        workers: 0,
        extra_args: vec![
            "--unknown-keys-per-minute=3".to_owned(),
            "--read-cache-max-age-ms=0".to_owned(),
        ],
        ..Default::default()
    };
    let app = TestApp::spawn_with(options).await;
    let url = format!("{}/v1/workforces", app.base_url);
    let first = app.client.get(&url).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);

    let mut statuses = Vec::new();
    for _ in 0..4 {
        let unknown = api_keys::generate_key();
        let response = client_with_key(&unknown).get(&url).send().await.unwrap();
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(response.headers().contains_key("retry-after"));
        }
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // A malformed key is rejected without a lookup, so it still gets 401.
    let malformed = client_with_key("wfs_short").get(&url).send().await.unwrap();
    assert_eq!(malformed.status(), StatusCode::UNAUTHORIZED);
    for _ in 0..3 {
        let known = app.client.get(&url).send().await.unwrap();
        assert_eq!(known.status(), StatusCode::OK);
    }
    // A key this process has never found waits, like an unknown one, until the limit refills.
    let (_, new_key) = api_keys::create(&app.db, "late-viewer", Role::Viewer, None, None)
        .await
        .unwrap();
    let late = client_with_key(&new_key).get(&url).send().await.unwrap();
    assert_eq!(late.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// Unknown keys sent at once cannot all pass the limit before the first of them counts.
#[tokio::test]
async fn unknown_key_burst_respects_limit() {
    let options = TestOptions {
        workers: 0,
        extra_args: vec!["--unknown-keys-per-minute=3".to_owned()],
        ..Default::default()
    };
    let app = TestApp::spawn_with(options).await;
    let url = format!("{}/v1/workforces", app.base_url);
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let client = client_with_key(&api_keys::generate_key());
        let url = url.clone();
        requests.spawn(async move { client.get(&url).send().await.unwrap().status() });
    }
    let statuses = requests.join_all().await;
    let looked_up = statuses
        .iter()
        .filter(|status| **status == StatusCode::UNAUTHORIZED)
        .count();
    let limited = statuses
        .iter()
        .filter(|status| **status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(looked_up, 3, "{statuses:?}");
    assert_eq!(limited, 27, "{statuses:?}");
}

#[tokio::test]
async fn public_endpoints_can_require_credentials() {
    let options = TestOptions {
        workers: 0,
        extra_args: vec!["--public-endpoints=healthz".to_owned()],
        ..Default::default()
    };
    let app = TestApp::spawn_with(options).await;
    let anonymous = reqwest::Client::new();
    let status = anonymous
        .get(format!("{}/healthz", app.base_url))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    for path in ["/readyz", "/metrics", "/openapi.json", "/docs/"] {
        let status = anonymous
            .get(format!("{}{path}", app.base_url))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        let status = app
            .client
            .get(format!("{}{path}", app.base_url))
            .send()
            .await
            .unwrap()
            .status();
        assert_ne!(status, StatusCode::UNAUTHORIZED, "{path} with a key");
    }
    // Made private, these routes keep the viewer's permission: an auditor reads none of them.
    let (_, auditor_key) = api_keys::create(&app.db, "auditor", Role::Auditor, None, None)
        .await
        .unwrap();
    let auditor = client_with_key(&auditor_key);
    for path in ["/readyz", "/metrics", "/openapi.json", "/docs/"] {
        let status = auditor
            .get(format!("{}{path}", app.base_url))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::FORBIDDEN, "{path} as an auditor");
    }
}

/// The CLI reports a name in use, revoked keys included, in words and with a failing exit
/// status, instead of PostgreSQL's unique-violation error.
#[tokio::test]
async fn cli_rejects_name_in_use() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    api_keys::create(&app.db, "in-use", Role::Viewer, None, None)
        .await
        .unwrap();
    api_keys::create(&app.db, "retired", Role::Viewer, None, None)
        .await
        .unwrap();
    api_keys::revoke_by_name(&app.db, "retired").await.unwrap();

    for name in ["in-use", "retired"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_workforce-service"))
            .arg(format!("--database-url={}", app.database_url))
            .args(["api-keys", "create", "--name", name, "--role", "viewer"])
            .output()
            .expect("the CLI runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("an API key named '{name}' exists or existed")),
            "{name}: {stderr}"
        );
        assert!(
            stderr.contains("revoked keys stay reserved"),
            "{name}: {stderr}"
        );
        assert!(!stderr.contains("duplicate key"), "{name}: {stderr}");
        assert!(output.stdout.is_empty(), "{name}");
    }
}

/// The key and audit commands stop on a database that does not exist, without creating it,
/// and without a stack trace even when RUST_BACKTRACE is set.
#[tokio::test]
async fn commands_reject_missing_database() {
    let name = format!("wfs_test_missing_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{}/{name}", server_url());

    for args in [&["api-keys", "list"][..], &["audit", "verify"][..]] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_workforce-service"))
            .arg(format!("--database-url={url}"))
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("the CLI runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&format!("the database '{name}' on ")),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains("does not exist"), "{args:?}: {stderr}");
        assert!(!stderr.contains("backtrace"), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let mut connection =
        <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{}/postgres", server_url()))
            .await
            .unwrap();
    let created: i64 = sqlx::query_scalar("select count(*) from pg_database where datname = $1")
        .bind(&name)
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(created, 0, "the commands created {name}");
}

/// A database without the service's schema, such as a mistyped name of another application's
/// database, is not migrated by the key and audit commands.
#[tokio::test]
async fn commands_reject_database_without_schema() {
    let name = format!("wfs_test_foreign_{}", uuid::Uuid::new_v4().simple());
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{}/postgres", server_url()))
            .await
            .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("create database \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap();

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_workforce-service"))
        .arg(format!("--database-url={}/{name}", server_url()))
        .args(["api-keys", "list"])
        .output()
        .expect("the CLI runs");
    let mut foreign =
        <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{}/{name}", server_url()))
            .await
            .unwrap();
    let tables: i64 =
        sqlx::query_scalar("select count(*) from pg_tables where schemaname = 'public'")
            .fetch_one(&mut foreign)
            .await
            .unwrap();
    drop(foreign);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "drop database \"{name}\" with (force)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("has no workforce-service schema"),
        "{stderr}"
    );
    assert_eq!(tables, 0, "the command created tables");
}

/// Two processes that start at the same moment on a database that does not exist yet both
/// connect: the one that loses the race to create it uses the other's.
#[tokio::test]
async fn concurrent_starts_create_database_once() {
    let name = format!("wfs_test_race_{}", uuid::Uuid::new_v4().simple());
    let url = format!("{}/{name}", server_url());

    let (first, second) = tokio::join!(
        workforce_service::db::connect(&url, 1),
        workforce_service::db::connect(&url, 1)
    );
    let first_error = first.as_ref().err().map(|error| format!("{error:#}"));
    let second_error = second.as_ref().err().map(|error| format!("{error:#}"));
    drop((first, second));
    let mut admin =
        <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{}/postgres", server_url()))
            .await
            .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "drop database if exists \"{name}\" with (force)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();

    assert_eq!(first_error, None);
    assert_eq!(second_error, None);
}

/// Runs `workforce-service api-keys ARGS` against the test database and returns whether it
/// succeeded.
fn key_command(app: &TestApp, args: &[&str]) -> bool {
    std::process::Command::new(env!("CARGO_BIN_EXE_workforce-service"))
        .arg(format!("--database-url={}", app.database_url))
        .arg("api-keys")
        .args(args)
        .output()
        .expect("the CLI runs")
        .status
        .success()
}

/// Each change to a key, over HTTP or on the command line, writes one audit event naming the
/// key's scope. Revoking a revoked key, or expiring it, changes nothing and writes none.
#[tokio::test]
async fn key_changes_are_audited_once() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let response = app
        .client
        .post(format!("{}/v1/api-keys", app.base_url))
        .header("x-request-id", "create-scoped")
        .json(&json!({"name": "scoped", "role": "operator", "regions": [REGION]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    let path = format!("/v1/api-keys/{}", created["id"].as_str().unwrap());
    for _ in 0..2 {
        let (status, _, revoked) = app.request(Method::DELETE, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{revoked}");
        assert!(revoked["revoked_at"].is_string(), "{revoked}");
    }
    let admin: String = sqlx::query_scalar("select name from api_keys where role = 'admin'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(key_command(
        &app,
        &["create", "--name", "from-cli", "--role", "viewer"]
    ));
    assert!(key_command(&app, &["revoke", "--name", "from-cli"]));
    assert!(key_command(&app, &["revoke", "--name", "from-cli"]));
    // A revoked key keeps its expiry.
    assert!(key_command(&app, &["expire", "--name", "from-cli"]));
    assert!(key_command(
        &app,
        &["create", "--name", "expiring", "--role", "viewer"]
    ));
    assert!(key_command(&app, &["expire", "--name", "expiring"]));
    assert!(key_command(&app, &["expire", "--name", "expiring"]));
    // The database URL may also follow the subcommand's name.
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_workforce-service"))
        .args(["api-keys", "list"])
        .arg(format!("--database-url={}", app.database_url))
        .output()
        .expect("the CLI runs");
    assert!(listed.status.success(), "{listed:?}");
    assert!(String::from_utf8_lossy(&listed.stdout).contains("expiring"));

    let events: Vec<(String, String, Option<String>, Value)> = sqlx::query_as(
        "select action, actor, request_id, detail->'api_key' from audit_events
          where detail->'api_key'->>'name' in ('scoped', 'from-cli', 'expiring') order by id",
    )
    .fetch_all(&app.db)
    .await
    .unwrap();
    let actions: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|(action, actor, _, key)| {
            (
                action.as_str(),
                actor.as_str(),
                key["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("api_key.created", admin.as_str(), "scoped"),
            ("api_key.revoked", admin.as_str(), "scoped"),
            ("api_key.created", "command-line", "from-cli"),
            ("api_key.revoked", "command-line", "from-cli"),
            ("api_key.created", "command-line", "expiring"),
            ("api_key.expired", "command-line", "expiring"),
        ]
    );
    assert_eq!(events[0].2.as_deref(), Some("create-scoped"));
    assert_eq!(events[0].3["regions"], json!([REGION]));
    assert_eq!(events[0].3["role"], "operator");
    assert!(events[5].3["expires_at"].is_string(), "{:?}", events[5]);

    // The command line's events have a kind of their own, apart from the service's.
    let (status, page) = app.get("/v1/audit-events?actor_kind=command_line").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let kinds: Vec<(&str, &str)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["actor"].as_str().unwrap(),
                event["actor_kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(kinds, [("command-line", "command_line"); 4]);
    let (_, page) = app.get("/v1/audit-events?actor_kind=system").await;
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|event| event["actor"] == "system"),
        "{page}"
    );
}

/// Key names that differ only in letter case would name two callers alike in the audit log,
/// so the second is rejected, also when requested at the same time.
#[tokio::test]
async fn key_names_differing_in_case_conflict() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;

    let create = |name: &'static str| {
        let app = &app;
        async move {
            app.request(
                Method::POST,
                "/v1/api-keys",
                Some(json!({"name": name, "role": "viewer"})),
            )
            .await
        }
    };

    // Two concurrent creations: one wins.
    let (first, second) = tokio::join!(create("Portal"), create("portal"));
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT]);

    // A later creation is rejected with a reason.
    let (status, _, problem) = create("PORTAL").await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("letter case"),
        "{problem}"
    );

    let stored: i64 =
        sqlx::query_scalar("select count(*) from api_keys where lower(name) = 'portal'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(stored, 1);
}

/// Names that the audit log uses for callers other than keys are not given to keys.
#[tokio::test]
async fn reserved_key_names_are_rejected() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    for name in ["system", "anonymous", "command-line"] {
        let (status, _, problem) = app
            .request(
                Method::POST,
                "/v1/api-keys",
                Some(json!({"name": name, "role": "operator"})),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name}: {problem}"
        );
        assert_eq!(problem["errors"][0]["field"], "name", "{problem}");
        assert!(!key_command(
            &app,
            &["create", "--name", name, "--role", "viewer"]
        ));
    }
    let stored: i64 = sqlx::query_scalar(
        "select count(*) from api_keys where name in ('system', 'anonymous', 'command-line')",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(stored, 0);
}

/// The last usable admin key cannot revoke itself, so someone can still manage keys; with a
/// second admin key the revocation goes through.
#[tokio::test]
async fn last_admin_key_is_not_revoked() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (_, keys) = app.get("/v1/api-keys").await;
    let admins: Vec<&Value> = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|key| key["role"] == "admin")
        .collect();
    assert_eq!(admins.len(), 1, "{keys}");
    let id = admins[0]["id"].as_str().unwrap().to_owned();
    // An expired admin key does not count as a usable one.
    let (expired, _) = api_keys::create(
        &app.db,
        "expired-admin",
        Role::Admin,
        None,
        Some(Utc::now() - chrono::Duration::minutes(1)),
    )
    .await
    .unwrap();
    assert!(expired.expires_at.is_some());

    let path = format!("/v1/api-keys/{id}");
    let (status, _, problem) = app.request(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["type"], "/problems/last-admin-key", "{problem}");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("create another admin key"), "{problem}");
    assert!(detail.contains("api-keys revoke --name"), "{problem}");
    let (status, _) = app.get("/v1/api-keys").await;
    assert_eq!(status, StatusCode::OK, "the key still works");

    let body = json!({"name": "second-admin", "role": "admin"});
    let (status, _, created) = app.request(Method::POST, "/v1/api-keys", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, _, revoked) = app.request(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
}

/// Two concurrent revocations of the last two admin keys: one succeeds and the other is
/// rejected, in every round.
#[tokio::test]
async fn concurrent_revocations_keep_one_admin() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    for round in 0..20 {
        sqlx::query(
            "update api_keys set revoked_at = now() where role = 'admin' and revoked_at is null",
        )
        .execute(&app.db)
        .await
        .unwrap();
        let (first, _) =
            api_keys::create(&app.db, &format!("first-{round}"), Role::Admin, None, None)
                .await
                .unwrap();
        let (second, _) =
            api_keys::create(&app.db, &format!("second-{round}"), Role::Admin, None, None)
                .await
                .unwrap();

        let by = api_keys::KeyChanger::COMMAND_LINE;
        let (a, b) = tokio::join!(
            api_keys::revoke_unless_last_admin(&app.db, &by, first.id),
            api_keys::revoke_unless_last_admin(&app.db, &by, second.id),
        );

        let outcomes = [a.unwrap(), b.unwrap()];
        let revoked = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, api_keys::Revocation::Revoked(_)))
            .count();
        let rejected = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, api_keys::Revocation::LastAdmin(_)))
            .count();
        assert_eq!(revoked, 1, "round {round}: {outcomes:?}");
        assert_eq!(rejected, 1, "round {round}: {outcomes:?}");
        assert_eq!(
            api_keys::count_usable(&app.db).await.unwrap(),
            1,
            "round {round}"
        );
    }
}

/// A request with two credentials is rejected before either is looked at.
#[tokio::test]
async fn second_authorization_header_is_rejected() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (_, key) = api_keys::create(&app.db, "viewer-key", Role::Viewer, None, None)
        .await
        .unwrap();
    let response = app
        .client
        .get(format!("{}/v1/workforces", app.base_url))
        .header("authorization", format!("Bearer {key}"))
        .header("authorization", "Bearer not-a-key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "Authorization", "{problem}");
}

/// A 403 is sent only with its `access.denied` event: when the event cannot be written, the
/// request fails instead.
#[tokio::test]
async fn denial_without_audit_event_is_not_sent() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let (_, key) = api_keys::create(&app.db, "reader", Role::Viewer, None, None)
        .await
        .unwrap();
    let viewer = client_with_key(&key);
    let path = format!("/v1/regions/{REGION}/workforces");
    let body = Some(cognito_workforce("denied"));
    let denials = async || -> i64 {
        sqlx::query_scalar("select count(*) from audit_events where action = 'access.denied'")
            .fetch_one(&app.db)
            .await
            .unwrap()
    };
    app.fail_audit_events("denied").await;

    let status = send(&viewer, &app, &Method::POST, &path, &body)
        .await
        .status();
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(denials().await, 0);

    app.accept_audit_events().await;
    let status = send(&viewer, &app, &Method::POST, &path, &body)
        .await
        .status();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(denials().await, 1);
}

/// The JWKS request follows up to five redirects, each checked like the configured URL, and
/// a token that cannot be checked gets a 503 that names the identity provider.
#[tokio::test]
async fn jwks_redirects_are_limited() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = axum::Router::new()
        .route(
            "/jwks.json",
            axum::routing::get(|| async { ([("content-type", "application/json")], JWKS) }),
        )
        .route(
            "/hop/{left}",
            axum::routing::get(
                |axum::extract::Path(left): axum::extract::Path<u32>| async move {
                    let next = match left {
                        0 => "/jwks.json".to_owned(),
                        _ => format!("/hop/{}", left - 1),
                    };
                    axum::response::Redirect::temporary(&next)
                },
            ),
        );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // /hop/4 redirects five times, and /hop/5 six times.
    for (hops, expected) in [(4, StatusCode::OK), (5, StatusCode::SERVICE_UNAVAILABLE)] {
        let app = TestApp::spawn_with(TestOptions {
            workers: 0,
            extra_args: vec![
                format!("--jwt-issuer={ISSUER}"),
                format!("--jwt-audience={AUDIENCE}"),
                format!("--jwt-jwks-url={base}/hop/{hops}"),
            ],
            ..Default::default()
        })
        .await;
        let viewer = client_with_key(&token(
            SIGNING_KEY,
            "test-key-1",
            AUDIENCE,
            300,
            &["viewer"],
        ));
        let response = send(&viewer, &app, &Method::GET, "/v1/workforces", &None).await;
        assert_eq!(response.status(), expected, "/hop/{hops}");
        if expected != StatusCode::OK {
            let problem: Value = response.json().await.unwrap();
            assert!(
                problem["detail"]
                    .as_str()
                    .unwrap()
                    .contains("identity provider"),
                "{problem}"
            );
        }
    }
}

/// Two sandbox-mode processes that start at the same moment without a key file each create an
/// admin key. Both start, and the file ends with one of the two keys, readable only by its
/// owner and accepted by both processes.
#[tokio::test]
async fn sandbox_processes_starting_together_both_create_a_key() {
    use clap::Parser;
    use std::os::unix::fs::PermissionsExt;

    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let folder = std::env::temp_dir().join(format!("wfs-test-{}", uuid::Uuid::new_v4().simple()));
    let key_file = folder.join("admin-api-key");
    let start = || {
        let cli = workforce_service::config::Cli::parse_from([
            "workforce-service".to_owned(),
            "--mode=sandbox".to_owned(),
            format!("--database-url={}", app.database_url),
            "--database-max-connections=4".to_owned(),
            "--workers=0".to_owned(),
            format!("--bootstrap-key-file={}", key_file.display()),
        ]);
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            workforce_service::app::start(&cli.serve, listener).await
        }
    };

    let (first, second) = tokio::join!(start(), start());
    let first = first.expect("the first process starts");
    let second = second.expect("the second process starts");

    let key = std::fs::read_to_string(&key_file).expect("the key file is written");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(files, ["admin-api-key"], "files left beside the key");
    let client = client_with_key(key.trim());
    for service in [&first, &second] {
        let response = client
            .get(format!("http://{}/v1/workforces", service.local_addr))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let created: i64 = sqlx::query_scalar(
        "select count(*) from audit_events where action = 'api_key.created' and actor = 'system'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    // The test's own key and one per process. Under load, the second process may start after
    // the first has written the file, and then it uses that key.
    assert!(
        (2..=3).contains(&created),
        "{created} keys created at start"
    );

    first.shutdown(Duration::from_secs(5)).await;
    second.shutdown(Duration::from_secs(5)).await;
    let _ = std::fs::remove_dir_all(&folder);
}

/// An expiry must be in the future and have an RFC 3339 form, so before the year 10000. The
/// command line takes at most 100 years instead of panicking on a date out of range.
#[tokio::test]
async fn key_expiry_is_bounded() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    for expires_at in ["+10005-03-10T22:25:06Z", "2020-01-01T00:00:00Z"] {
        let (status, _, problem) = app
            .request(
                Method::POST,
                "/v1/api-keys",
                Some(json!({"name": "far", "role": "viewer", "expires_at": expires_at})),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{expires_at}: {problem}"
        );
        assert_eq!(problem["errors"][0]["field"], "expires_at", "{problem}");
    }
    let (status, _, created) = app
        .request(
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "late", "role": "viewer", "expires_at": "9999-12-31T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");

    for days in ["36501", "99999999"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_workforce-service"))
            .arg(format!("--database-url={}", app.database_url))
            .args(["api-keys", "create", "--name", "far", "--role", "viewer"])
            .args(["--expires-in-days", days])
            .output()
            .expect("the CLI runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{days}: {stderr}");
        assert!(stderr.contains("--expires-in-days"), "{days}: {stderr}");
    }
}
