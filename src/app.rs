//! Start and stop: configuration to a running API with its workers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::auth::api_keys;
use crate::auth::jwt::{JwtSettings, JwtVerifier};
use crate::auth::{Authenticator, RateLimiter, Role};
use crate::aws::{Aws, Endpoint};
use crate::budget::{self, CallBudget};
use crate::cache::ReadCache;
use crate::config::{Mode, ServeConfig};
use crate::domain::Region;
use crate::http::{AppState, HttpLimits, Shared};
use crate::secrets::SecretSealer;
use crate::watch::OperationWatchers;
use crate::worker::{Worker, WorkerSettings};

/// A running service: its address, and the handles to stop it.
pub struct RunningService {
    pub local_addr: SocketAddr,
    pub state: AppState,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    /// The in-process sandbox in sandbox mode, kept alive as long as the service.
    pub sandbox: Option<workforce_sandbox::SandboxHandle>,
    /// Cancelled once the sync of every region at start has finished.
    regions_synced: CancellationToken,
    /// Ids of this process's workers, whose leases the shutdown gives up.
    worker_ids: Vec<String>,
}

impl RunningService {
    /// Waits until the records of every region have been synced with AWS once. Until then the
    /// sync may add or remove workforce records.
    pub async fn regions_synced(&self) {
        self.regions_synced.cancelled().await;
    }

    /// Stops accepting requests, lets in-flight requests and worker steps finish within
    /// `grace`, and releases the workers' leases.
    pub async fn shutdown(mut self, grace: Duration) {
        self.shutdown.cancel();
        self.state.watchers.close();
        let drained = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("shutdown grace period ended; aborting the remaining tasks");
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
            self.release_aborted_leases().await;
        }
    }

    /// Releases the leases of worker steps that the grace period cut off. A step that waits on
    /// an AWS call that never returns does not reach the worker's own release at its stop, and
    /// its lease would keep other processes from the operation until it expires.
    async fn release_aborted_leases(&self) {
        for worker_id in &self.worker_ids {
            match crate::db::operations::release_leases(&self.state.db, worker_id).await {
                Ok(0) => {}
                Ok(leases_released) => tracing::info!(
                    worker.id = %worker_id,
                    leases_released,
                    "released the lease of a worker step that the grace period cut off; another worker can take the operation at once"
                ),
                Err(error) => tracing::warn!(
                    worker.id = %worker_id,
                    error = %error,
                    "could not release the lease of a worker step that the grace period cut off; it expires on its own"
                ),
            }
        }
    }

    /// Waits until the service stops on its own (it does not, unless a task ends).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

fn parse_regions(values: &[String]) -> anyhow::Result<Vec<Region>> {
    let mut regions = Vec::new();
    for value in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
        let region = Region::parse("regions", value)
            .map_err(|e| anyhow::anyhow!("invalid --regions entry: {}", e.reason))?;
        if !regions.contains(&region) {
            regions.push(region);
        }
    }
    anyhow::ensure!(
        !regions.is_empty(),
        "--regions must name at least one AWS region"
    );
    Ok(regions)
}

/// Returns whether `value` is a browser origin exactly as the `Origin` header sends it, because
/// the CORS layer compares the bytes. That is `http://` or `https://`, a lower-case host of
/// letters, digits, dots and hyphens, and a port only when it is not the scheme's default.
fn is_origin(value: &str) -> bool {
    let (authority, default_port) = match value.split_once("://") {
        Some(("https", authority)) => (authority, "443"),
        Some(("http", authority)) => (authority, "80"),
        _ => return false,
    };
    let (host, port) = authority
        .split_once(':')
        .map_or((authority, None), |(host, port)| (host, Some(port)));
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !host.starts_with(['.', '-'])
        && !host.ends_with(['.', '-']);
    let port_ok = port.is_none_or(|port| {
        port != default_port
            && !port.starts_with('0')
            && port.parse::<u16>().is_ok_and(|number| number > 0)
    });
    host_ok && port_ok
}

/// Connects to the database and AWS (or starts the sandbox), then serves the API on `listener`
/// and runs the workers until [`RunningService::shutdown`].
pub async fn start(config: &ServeConfig, listener: TcpListener) -> anyhow::Result<RunningService> {
    let regions = parse_regions(&config.regions)?;
    // tower-http's origin list panics on a wildcard, and a wildcard would let any site call
    // the API with a credential a user pasted into it.
    anyhow::ensure!(
        !config
            .cors_allowed_origins
            .iter()
            .any(|origin| origin.trim() == "*"),
        "--cors-allowed-origins does not accept '*'; list each portal origin, such as https://portal.example.com"
    );
    for origin in &config.cors_allowed_origins {
        anyhow::ensure!(
            is_origin(origin.trim()),
            "--cors-allowed-origins: '{}' is not an origin; write the scheme, the lower-case host and a port only if it is not the default, with no path or trailing slash, such as https://portal.example.com",
            origin.trim()
        );
    }
    let db = crate::db::connect(&config.database_url, config.database_max_connections).await?;

    let (endpoint, sandbox) = match config.mode {
        Mode::Aws => (Endpoint::Aws, None),
        Mode::Sandbox => {
            let mut sandbox_config = workforce_sandbox::SandboxConfig::default();
            if let Some(path) = &config.sandbox_topology {
                sandbox_config.topology = workforce_sandbox::Topology::from_file(path)
                    .with_context(|| {
                        format!("failed to load the sandbox topology {}", path.display())
                    })?;
            }
            let delay = Duration::from_millis(config.sandbox_delay_ms);
            sandbox_config.delays = workforce_sandbox::Delays::uniform(delay);
            let sandbox_listener = TcpListener::bind(("127.0.0.1", config.sandbox_port))
                .await
                .context("failed to bind the sandbox port")?;
            let handle = workforce_sandbox::start(sandbox_config, sandbox_listener).await?;
            tracing::info!(sandbox.url = %handle.endpoint_url(), "sandbox started");
            (
                Endpoint::Sandbox {
                    url: handle.endpoint_url(),
                },
                Some(handle),
            )
        }
    };
    let aws = Aws::connect_with(&endpoint, &regions, config.ec2_endpoint_url.as_deref())
        .await
        .with_portal_zones(config.portal_zone_source()?);

    let sealer = match &config.secret_key {
        Some(key) => {
            SecretSealer::from_base64(key).context("invalid --secret-key (WORKFORCE_SECRET_KEY)")?
        }
        None => {
            tracing::warn!(
                "no WORKFORCE_SECRET_KEY set; OIDC changes accepted by this process can be submitted, and repeated with their Idempotency-Key, only by this process"
            );
            SecretSealer::ephemeral()
        }
    };

    anyhow::ensure!(
        config.aws_calls_per_second == 0
            || config.aws_calls_per_second >= budget::SUBMIT_STEP_CALLS,
        "--aws-calls-per-second must be 0 (no limit) or at least {}, the SageMaker calls of one submitting step",
        budget::SUBMIT_STEP_CALLS
    );
    // A long poll ends a second before the request timeout would end it with a 503.
    let watchers = OperationWatchers::new(
        Duration::from_secs(config.request_timeout_seconds.saturating_sub(1))
            .min(crate::http::operations::MAX_WAIT),
    );

    let budget = CallBudget::new(db.clone(), &config.aws_account, config.aws_calls_per_second);
    let workers_running = Arc::new(AtomicBool::new(false));
    let cache = ReadCache::new(Duration::from_millis(config.read_cache_max_age_ms));
    let state = AppState::new(Shared {
        db: db.clone(),
        aws: aws.clone(),
        sealer: sealer.clone(),
        mode: config.mode,
        regions: Arc::new(regions.clone()),
        operation_deadline: config.operation_deadline(),
        refresh_after: Duration::from_secs(config.refresh_after_seconds),
        refreshes: Default::default(),
        metrics: crate::telemetry::install(),
        idempotency_ttl: Duration::from_secs(config.idempotency_ttl_hours * 3600),
        workers_running: workers_running.clone(),
        watchers: watchers.clone(),
        cache: cache.clone(),
        budget: budget.clone(),
        rechecks: Default::default(),
    });

    // Authentication is set up before any task starts, so that a process that stops here for
    // want of a credential has claimed no operation.
    let authenticator = build_authenticator(config, &db, &cache).await?;
    let limits = HttpLimits {
        max_body_bytes: config.max_body_bytes,
        request_timeout: Duration::from_secs(config.request_timeout_seconds),
    };
    let app = crate::http::app(
        state.clone(),
        &limits,
        authenticator,
        &config.cors_allowed_origins,
    );

    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();

    let wake = Arc::new(Notify::new());
    tasks.spawn(crate::worker::listen_for_work(
        db.clone(),
        wake.clone(),
        watchers,
        cache.clone(),
        shutdown.clone(),
    ));
    let settings = WorkerSettings {
        lease: config.lease(),
        poll_initial: Duration::from_millis(config.poll_initial_ms),
        poll_max: Duration::from_millis(config.poll_max_ms),
        idle_poll: Duration::from_millis(config.idle_poll_ms),
    };
    let process_id = uuid::Uuid::new_v4().simple().to_string();
    let worker_ids: Vec<String> = (0..config.workers)
        .map(|index| format!("{}-{index}", &process_id[..12]))
        .collect();
    for worker_id in &worker_ids {
        let worker = Worker::new(
            db.clone(),
            aws.clone(),
            sealer.clone(),
            settings.clone(),
            worker_id.clone(),
        )
        .with_budget(budget.clone())
        .with_cache(cache.clone());
        tasks.spawn(worker.run(wake.clone(), shutdown.clone()));
    }
    workers_running.store(config.workers > 0, Ordering::Relaxed);
    if config.workers == 0 {
        tracing::warn!(
            "--workers is 0: this process accepts changes but runs none, and /readyz reports 503; other processes on the database must run them"
        );
    }

    let regions_synced = CancellationToken::new();
    {
        let (db, aws, regions) = (db.clone(), aws.clone(), regions.clone());
        let (budget, synced) = (budget.clone(), regions_synced.clone());
        tasks.spawn(async move {
            crate::refresh::sync_regions(&db, &aws, &budget, &regions).await;
            synced.cancel();
        });
    }

    let local_addr = listener.local_addr()?;
    let limits = crate::http::serve::ConnectionLimits {
        header_read: Duration::from_secs(config.header_read_timeout_seconds),
        write: Duration::from_secs(config.write_timeout_seconds),
        max_open: config.http_max_connections as usize,
    };
    tasks.spawn(crate::http::serve::serve(
        listener,
        app,
        limits,
        shutdown.clone(),
    ));
    tracing::info!(http.address = %local_addr, mode = config.mode.as_str(), "workforce-service listening");

    Ok(RunningService {
        local_addr,
        state,
        shutdown,
        tasks,
        sandbox,
        regions_synced,
        worker_ids,
    })
}

/// Paths of each endpoint group that `--public-endpoints` can name.
fn public_paths(name: &str) -> anyhow::Result<&'static [&'static str]> {
    Ok(match name.trim() {
        "healthz" => &["/healthz"],
        "readyz" => &["/readyz"],
        "metrics" => &["/metrics"],
        "docs" => &["/docs", "/openapi.json"],
        other => anyhow::bail!(
            "invalid --public-endpoints entry '{other}'; use healthz, readyz, metrics or docs"
        ),
    })
}

fn jwt_settings(config: &ServeConfig) -> anyhow::Result<Option<JwtSettings>> {
    let (issuer, audience, jwks_url) = match (
        &config.jwt_issuer,
        &config.jwt_audience,
        &config.jwt_jwks_url,
    ) {
        (None, None, None) => return Ok(None),
        (Some(issuer), Some(audience), Some(jwks_url)) => {
            crate::auth::jwt::check_jwks_url(jwks_url).map_err(|reason| {
                anyhow::anyhow!("invalid --jwt-jwks-url '{jwks_url}': {reason}")
            })?;
            (issuer.clone(), audience.clone(), jwks_url.clone())
        }
        _ => anyhow::bail!(
            "JWT authentication needs all of --jwt-issuer, --jwt-audience and --jwt-jwks-url"
        ),
    };
    let mut algorithms = Vec::new();
    for name in config
        .jwt_algorithms
        .iter()
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
    {
        let algorithm: jsonwebtoken::Algorithm = name
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid --jwt-algorithms entry '{name}'"))?;
        anyhow::ensure!(
            !matches!(
                algorithm,
                jsonwebtoken::Algorithm::HS256
                    | jsonwebtoken::Algorithm::HS384
                    | jsonwebtoken::Algorithm::HS512
            ),
            "--jwt-algorithms must name public-key algorithms; {name} uses a shared secret"
        );
        algorithms.push(algorithm);
    }
    anyhow::ensure!(
        !algorithms.is_empty(),
        "--jwt-algorithms must name at least one algorithm"
    );
    let mut role_map = std::collections::HashMap::new();
    for entry in config.jwt_role_map.iter().filter(|e| !e.trim().is_empty()) {
        let (value, role) = entry.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("invalid --jwt-role-map entry '{entry}'; expected CLAIM_VALUE=ROLE")
        })?;
        let role = Role::parse(role.trim()).ok_or_else(|| {
            anyhow::anyhow!(
                "invalid role '{role}' in --jwt-role-map; use viewer, operator, auditor or admin"
            )
        })?;
        role_map.insert(value.trim().to_owned(), role);
    }
    Ok(Some(JwtSettings {
        issuer,
        audience,
        jwks_url,
        algorithms,
        role_claim: config.jwt_role_claim.clone(),
        role_map,
        jwks_ttl: Duration::from_secs(config.jwt_jwks_ttl_seconds),
    }))
}

/// Builds the authenticator and makes sure that some credential can sign in. In sandbox mode
/// the key file always contains a usable admin key. In AWS mode the service refuses to start
/// without an API key or an identity provider.
async fn build_authenticator(
    config: &ServeConfig,
    db: &sqlx::PgPool,
    cache: &ReadCache,
) -> anyhow::Result<Authenticator> {
    let jwt = jwt_settings(config)?;
    let mut public_prefixes = Vec::new();
    for name in config
        .public_endpoints
        .iter()
        .filter(|n| !n.trim().is_empty())
    {
        public_prefixes.extend(public_paths(name)?.iter().map(|p| (*p).to_owned()));
    }
    if jwt.is_none() {
        match config.mode {
            Mode::Aws if api_keys::count_usable(db).await? == 0 => anyhow::bail!(
                "no way to authenticate: create an API key with `workforce-service api-keys create --name NAME --role admin`, or configure --jwt-issuer, --jwt-audience and --jwt-jwks-url"
            ),
            Mode::Aws => {}
            Mode::Sandbox => ensure_sandbox_key(db, &config.bootstrap_key_file).await?,
        }
    }
    Ok(Authenticator {
        db: db.clone(),
        cache: cache.clone(),
        jwt: jwt.map(|settings| Arc::new(JwtVerifier::new(settings))),
        rate_limiter: (config.rate_limit_per_minute > 0)
            .then(|| Arc::new(RateLimiter::new(config.rate_limit_per_minute))),
        unknown_key_limiter: (config.unknown_keys_per_minute > 0)
            .then(|| Arc::new(RateLimiter::new(config.unknown_keys_per_minute))),
        known_keys: Arc::default(),
        public_prefixes: Arc::new(public_prefixes),
    })
}

/// Makes sure that the sandbox key file contains a usable admin key: the one already there, or
/// a new one. A fresh clone pointed at a database that other checkouts already used thus still
/// gets a key of its own.
async fn ensure_sandbox_key(db: &sqlx::PgPool, path: &std::path::Path) -> anyhow::Result<()> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let usable = api_keys::find_by_hash(db, &api_keys::hash_key(existing.trim()))
            .await?
            .is_some_and(|row| {
                row.is_usable(chrono::Utc::now()) && row.role == Role::Admin.as_str()
            });
        if usable {
            tracing::info!(key.file = %path.display(), "sandbox mode: the admin API key is in this file; send it as Authorization: Bearer <key>");
            return Ok(());
        }
        tracing::warn!(key.file = %path.display(), "sandbox mode: the key in this file is unknown, expired or revoked; creating a new one");
    }
    bootstrap_admin_key(db, path).await
}

async fn bootstrap_admin_key(db: &sqlx::PgPool, path: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    // The random part keeps two processes that start in the same second on one database from
    // choosing the same name.
    let name = format!(
        "bootstrap-admin-{}-{}",
        chrono::Utc::now().format("%Y%m%d%H%M%S"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let by = api_keys::KeyChanger::SERVICE;
    let (_, key) = api_keys::create_recorded(db, &by, &name, Role::Admin, None, None).await?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
    }
    // The key is written beside the file and renamed over it, so a reader never sees half a
    // key. Two processes that write at once both succeed, and the file keeps one of the keys.
    let mut partial = path.as_os_str().to_owned();
    partial.push(format!(".{}.partial", std::process::id()));
    let partial = std::path::PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)?;
        writeln!(file, "{key}")?;
        file.sync_all()?;
        std::fs::rename(&partial, path)
    };
    if let Err(error) = write() {
        let _ = std::fs::remove_file(&partial);
        return Err(anyhow::Error::new(error).context(format!(
            "failed to write the admin API key to {}",
            path.display()
        )));
    }
    tracing::warn!(key.name = %name, key.file = %path.display(), "created an admin API key for sandbox mode; send it as Authorization: Bearer <key>");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_origin;

    #[test]
    fn origins_match_what_browsers_send() {
        for origin in [
            "https://portal.example.com",
            "http://localhost:5173",
            "https://10.0.0.7:8443",
        ] {
            assert!(is_origin(origin), "{origin}");
        }
        for origin in [
            "https://portal.example.com/",
            "https://PORTAL.example.com",
            "https://portal.example.com:443",
            "http://portal.example.com:80",
            "https://portal.example.com:0",
            "https://portal.example.com:0443",
            "https://-portal.example.com",
            "ftp://portal.example.com",
            "*",
        ] {
            assert!(!is_origin(origin), "{origin}");
        }
    }
}
