//! Test harness: one fresh database and one service with an in-process sandbox per test.

use std::time::Duration;

use clap::Parser;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use workforce_sandbox::SandboxHandle;
use workforce_service::app::{self, RunningService};
use workforce_service::config::Cli;
use workforce_service::worker::{Worker, WorkerSettings};

/// Fixed ids of the sandbox's built-in topology in us-east-1.
pub const VPC: &str = "vpc-0a10000000000000a";
pub const SUBNET_A: &str = "subnet-0a10000000000001a";
pub const SUBNET_B: &str = "subnet-0a10000000000002a";
pub const SUBNET_C: &str = "subnet-0a10000000000003a";
/// A subnet in an availability zone that the topology marks unsupported by Ground Truth.
pub const SUBNET_UNSUPPORTED_AZ: &str = "subnet-0a10000000000004a";
pub const SG_1: &str = "sg-0a10000000000001a";
pub const SG_2: &str = "sg-0a10000000000002a";
pub const REGION: &str = "us-east-1";

pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_SERVER_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// Options that tests change; everything else uses fast test timings.
pub struct TestOptions {
    pub workers: usize,
    pub sandbox_delay_ms: u64,
    pub lease_seconds: u64,
    pub deadline_minutes: u64,
    /// More command-line flags for the service, such as `--ec2-endpoint-url=...`.
    pub extra_args: Vec<String>,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            workers: 2,
            sandbox_delay_ms: 150,
            lease_seconds: 30,
            deadline_minutes: 60,
            extra_args: Vec::new(),
        }
    }
}

pub struct TestApp {
    pub base_url: String,
    pub client: reqwest::Client,
    pub db: PgPool,
    pub service: Option<RunningService>,
    pub database_url: String,
    /// Audit events written before the test began, such as the creation of the admin key.
    pub events_at_start: i64,
}

/// Builds an HTTP client that sends `key` as a bearer credential on every request.
pub fn client_with_key(key: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
        .expect("a key is a valid header value");
    headers.insert(reqwest::header::AUTHORIZATION, value);
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("an HTTP client builds")
}

impl Drop for TestApp {
    /// Drops the test's database, so that a run does not leave one database per test behind.
    /// The database of a failed test is kept for inspection. `with (force)` ends the
    /// connections that the service and the test still hold.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let Some(name) = self.database_url.rsplit('/').next().map(str::to_owned) else {
            return;
        };
        let server = server_url();
        // The test's own runtime may have one thread, which must not block on this statement,
        // so it runs on a thread and runtime of its own.
        let dropped = std::thread::spawn(move || -> Result<(), sqlx::Error> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime builds");
            runtime.block_on(async {
                use sqlx::Connection;
                let mut connection =
                    sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
                let statement = format!("drop database if exists \"{name}\" with (force)");
                sqlx::query(sqlx::AssertSqlSafe(statement))
                    .execute(&mut connection)
                    .await?;
                Ok(())
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!(
                "failed to drop the test database {}: {error}",
                self.database_url
            );
        }
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(TestOptions::default()).await
    }

    pub async fn spawn_with(options: TestOptions) -> Self {
        // Logs are shown only when RUST_LOG is set, for example RUST_LOG=workforce_service=debug.
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let test_id = uuid::Uuid::new_v4().simple().to_string();
        let database_url = format!("{}/wfs_test_{test_id}", server_url());
        // Sandbox mode creates an admin key on first start; the tests sign in with it.
        let key_file = std::env::temp_dir()
            .join(format!("wfs-test-{test_id}"))
            .join("admin-api-key");
        let mut args = vec![
            "workforce-service".to_owned(),
            "--mode=sandbox".to_owned(),
            format!("--database-url={database_url}"),
            "--database-max-connections=8".to_owned(),
            format!("--workers={}", options.workers),
            format!("--lease-seconds={}", options.lease_seconds),
            format!("--operation-deadline-minutes={}", options.deadline_minutes),
            "--poll-initial-ms=20".to_owned(),
            "--poll-max-ms=100".to_owned(),
            "--idle-poll-ms=50".to_owned(),
            format!("--sandbox-delay-ms={}", options.sandbox_delay_ms),
            "--refresh-after-seconds=3600".to_owned(),
            format!("--bootstrap-key-file={}", key_file.display()),
        ];
        args.extend(options.extra_args);
        let cli = Cli::parse_from(args);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let service = app::start(&cli.serve, listener)
            .await
            .expect("service starts");
        // Tests that write workforce records directly must not race the sync at start, which
        // removes records that AWS does not have.
        service.regions_synced().await;
        let base_url = format!("http://{}", service.local_addr);
        let db = service.state.db.clone();
        // With an identity provider configured, no key is created at start; make one.
        let admin_key = match std::fs::read_to_string(&key_file) {
            Ok(key) => key.trim().to_owned(),
            Err(_) => {
                workforce_service::auth::api_keys::create(
                    &db,
                    "test-admin",
                    workforce_service::auth::Role::Admin,
                    None,
                    None,
                )
                .await
                .expect("create a key")
                .1
            }
        };
        let events_at_start = sqlx::query_scalar("select count(*) from audit_events")
            .fetch_one(&db)
            .await
            .expect("count the audit events");
        Self {
            base_url,
            client: client_with_key(&admin_key),
            db,
            service: Some(service),
            database_url,
            events_at_start,
        }
    }

    /// Asserts that no workforce, operation or audit event was written since the start.
    pub async fn assert_nothing_written(&self) {
        assert_eq!(
            self.count_rows("workforces").await,
            0,
            "workforces has rows"
        );
        assert_eq!(
            self.count_rows("operations").await,
            0,
            "operations has rows"
        );
        let events = self.count_rows("audit_events").await - self.events_at_start;
        assert_eq!(events, 0, "audit events were written");
    }

    pub fn sandbox(&self) -> &SandboxHandle {
        self.service
            .as_ref()
            .and_then(|s| s.sandbox.as_ref())
            .expect("sandbox mode")
    }

    pub fn service(&self) -> &RunningService {
        self.service.as_ref().expect("service running")
    }

    /// Builds a worker that the test drives step by step.
    pub fn manual_worker(&self, id: &str, lease: Duration) -> Worker {
        let state = &self.service().state;
        Worker::new(
            state.db.clone(),
            state.aws.clone(),
            state.sealer.clone(),
            WorkerSettings {
                lease,
                poll_initial: Duration::from_millis(20),
                poll_max: Duration::from_millis(100),
                idle_poll: Duration::from_millis(50),
            },
            id.to_owned(),
        )
        .with_cache(state.cache.clone())
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base_url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request is sent");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body is read");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, headers, body)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.request(Method::GET, path, None).await;
        (status, body)
    }

    pub async fn create_workforce(&self, body: Value) -> (StatusCode, Value) {
        let (status, _, body) = self
            .request(
                Method::POST,
                &format!("/v1/regions/{REGION}/workforces"),
                Some(body),
            )
            .await;
        (status, body)
    }

    /// Polls an operation until it has finished, and returns it.
    pub async fn wait_for_operation(&self, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, operation) = self.get(&format!("/v1/operations/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{operation}");
            if matches!(operation["status"].as_str(), Some("succeeded" | "failed")) {
                return operation;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "operation {id} did not finish: {operation}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Creates a Cognito workforce and waits until its operation has finished.
    pub async fn create_active_workforce(&self, name: &str, vpc_config: Option<Value>) -> Value {
        let mut body = cognito_workforce(name);
        if let Some(vpc) = vpc_config {
            body["vpc_config"] = vpc;
        }
        let (status, operation) = self.create_workforce(body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
        let finished = self
            .wait_for_operation(operation["id"].as_str().unwrap())
            .await;
        assert_eq!(finished["status"], "succeeded", "{finished}");
        finished
    }

    /// Returns the Prometheus text of `/metrics`, which needs no credential.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn count_rows(&self, table: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("select count(*) from {table}")))
            .fetch_one(&self.db)
            .await
            .expect("count")
    }

    /// Returns the audit actions recorded for a workforce, oldest first.
    /// Makes every insert of an audit event with `outcome` fail, as a database that cannot
    /// take the event would, until [`Self::accept_audit_events`].
    pub async fn fail_audit_events(&self, outcome: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "create function fail_audit_events() returns trigger language plpgsql as $$
             begin
                 if new.outcome = '{outcome}' then
                     raise exception 'this test makes the audit log fail for {outcome} events';
                 end if;
                 return new;
             end $$;
             create trigger fail_audit_events before insert on audit_events
                 for each row execute function fail_audit_events();"
        )))
        .execute(&self.db)
        .await
        .expect("the failing trigger is created");
    }

    /// Ends what [`Self::fail_audit_events`] began.
    pub async fn accept_audit_events(&self) {
        sqlx::raw_sql(
            "drop trigger fail_audit_events on audit_events;
             drop function fail_audit_events();",
        )
        .execute(&self.db)
        .await
        .expect("the failing trigger is dropped");
    }

    pub async fn audit_actions(&self, name: &str) -> Vec<(String, String)> {
        sqlx::query_as::<_, (String, String)>(
            "select action, outcome from audit_events where workforce_name = $1 order by id",
        )
        .bind(name)
        .fetch_all(&self.db)
        .await
        .expect("audit events")
    }
}

pub fn cognito_workforce(name: &str) -> Value {
    json!({"name": name, "cognito_config": {"user_pool": "us-east-1_AbC123", "client_id": "portal"}})
}

pub fn oidc_config(secret: &str) -> Value {
    json!({
        "client_id": "labeling-portal",
        "client_secret": secret,
        "issuer": "https://idp.example.com",
        "authorization_endpoint": "https://idp.example.com/authorize",
        "token_endpoint": "https://idp.example.com/token",
        "user_info_endpoint": "https://idp.example.com/userinfo",
        "logout_endpoint": "https://idp.example.com/logout",
        "jwks_uri": "https://idp.example.com/jwks"
    })
}

pub fn vpc_config(subnets: &[&str]) -> Value {
    json!({"vpc_id": VPC, "security_group_ids": [SG_1], "subnets": subnets})
}

/// Starts the service binary in AWS mode, pointed at a sandbox by the standard endpoint
/// variables, and waits until it is ready. With `log_file`, its JSON logs at debug level go
/// there; otherwise they are discarded.
#[expect(
    clippy::zombie_processes,
    reason = "the child is returned to the caller, which waits for it"
)]
pub async fn start_process(
    database_url: &str,
    sandbox_url: &str,
    port: u16,
    log_file: Option<&std::path::Path>,
) -> std::process::Child {
    use std::process::{Command, Stdio};

    let stderr = match log_file {
        Some(path) => Stdio::from(std::fs::File::create(path).expect("create the log file")),
        None => Stdio::null(),
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_workforce-service"))
        .args([
            "--mode=aws",
            "--workers=1",
            "--lease-seconds=120",
            "--poll-initial-ms=100",
            "--poll-max-ms=200",
            "--idle-poll-ms=100",
        ])
        .args(["--log-format=json", "--rate-limit-per-minute=0"])
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--database-url={database_url}"))
        .env("RUST_LOG", "debug")
        .env("AWS_ENDPOINT_URL_SAGEMAKER", sandbox_url)
        .env("AWS_ENDPOINT_URL_EC2", sandbox_url)
        .env("AWS_ACCESS_KEY_ID", "AKIDPROCESSTEST")
        .env("AWS_SECRET_ACCESS_KEY", "process-test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("the service binary starts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await
            && response.status() == StatusCode::OK
        {
            return child;
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the service did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Returns a loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
