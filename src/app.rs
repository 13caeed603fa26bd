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

use crate::aws::{Aws, Endpoint};
use crate::config::{Mode, ServeConfig};
use crate::domain::Region;
use crate::http::{AppState, HttpLimits};
use crate::secrets::SecretSealer;
use crate::worker::{Worker, WorkerSettings};

/// A running service: its address, and the handles to stop it.
pub struct RunningService {
    pub local_addr: SocketAddr,
    pub state: AppState,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    /// The in-process sandbox in sandbox mode, kept alive as long as the service.
    pub sandbox: Option<workforce_sandbox::SandboxHandle>,
}

impl RunningService {
    /// Stops accepting requests, lets in-flight requests and worker steps finish within
    /// `grace`, and releases the workers' leases.
    pub async fn shutdown(mut self, grace: Duration) {
        self.shutdown.cancel();
        let drained = tokio::time::timeout(grace, async { while self.tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("shutdown grace period ended; aborting the remaining tasks");
            self.tasks.abort_all();
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
        let region = Region::parse("regions", value).map_err(|e| anyhow::anyhow!("invalid --regions entry: {}", e.reason))?;
        if !regions.contains(&region) {
            regions.push(region);
        }
    }
    anyhow::ensure!(!regions.is_empty(), "--regions must name at least one AWS region");
    Ok(regions)
}

/// Connects to the database and AWS (or starts the sandbox), then serves the API on `listener`
/// and runs the workers until [`RunningService::shutdown`].
pub async fn start(config: &ServeConfig, listener: TcpListener) -> anyhow::Result<RunningService> {
    let regions = parse_regions(&config.regions)?;
    let db = crate::db::connect(&config.database_url, config.database_max_connections).await?;

    let (endpoint, sandbox) = match config.mode {
        Mode::Aws => (Endpoint::Aws, None),
        Mode::Sandbox => {
            let mut sandbox_config = workforce_sandbox::SandboxConfig::default();
            if let Some(path) = &config.sandbox_topology {
                sandbox_config.topology = workforce_sandbox::Topology::from_file(path)
                    .with_context(|| format!("failed to load the sandbox topology {}", path.display()))?;
            }
            let delay = Duration::from_millis(config.sandbox_delay_ms);
            sandbox_config.delays = workforce_sandbox::Delays { initializing: delay, updating: delay, deleting: delay };
            let sandbox_listener = TcpListener::bind(("127.0.0.1", config.sandbox_port)).await.context("failed to bind the sandbox port")?;
            let handle = workforce_sandbox::start(sandbox_config, sandbox_listener).await?;
            tracing::info!(sandbox.url = %handle.endpoint_url(), "sandbox started");
            (Endpoint::Sandbox { url: handle.endpoint_url() }, Some(handle))
        }
    };
    let aws = Aws::connect(&endpoint, &regions).await;

    let sealer = match &config.secret_key {
        Some(key) => SecretSealer::from_base64(key).context("invalid WORKFORCE_SECRET_KEY")?,
        None => {
            tracing::warn!("no WORKFORCE_SECRET_KEY set; OIDC changes accepted by this process can be submitted only by this process");
            SecretSealer::ephemeral()
        }
    };

    let workers_running = Arc::new(AtomicBool::new(false));
    let state = AppState {
        db: db.clone(),
        aws: aws.clone(),
        sealer: sealer.clone(),
        mode: config.mode,
        regions: Arc::new(regions.clone()),
        operation_deadline: config.operation_deadline(),
        refresh_after: Duration::from_secs(config.refresh_after_seconds),
        refreshes: Default::default(),
        workers_running: workers_running.clone(),
    };

    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();

    let wake = Arc::new(Notify::new());
    tasks.spawn(crate::worker::listen_for_work(db.clone(), wake.clone(), shutdown.clone()));
    let settings = WorkerSettings {
        lease: config.lease(),
        poll_initial: Duration::from_millis(config.poll_initial_ms),
        poll_max: Duration::from_millis(config.poll_max_ms),
        idle_poll: Duration::from_millis(config.idle_poll_ms),
    };
    let process_id = uuid::Uuid::new_v4().simple().to_string();
    for index in 0..config.workers {
        let worker = Worker::new(db.clone(), aws.clone(), sealer.clone(), settings.clone(), format!("{}-{index}", &process_id[..12]));
        tasks.spawn(worker.run(wake.clone(), shutdown.clone()));
    }
    workers_running.store(config.workers > 0, Ordering::Relaxed);

    {
        let (db, aws, regions) = (db.clone(), aws.clone(), regions.clone());
        tasks.spawn(async move { crate::refresh::sync_regions(&db, &aws, &regions).await });
    }

    let limits = HttpLimits { max_body_bytes: config.max_body_bytes, request_timeout: Duration::from_secs(config.request_timeout_seconds) };
    let app = crate::http::app(state.clone(), &limits);
    let local_addr = listener.local_addr()?;
    let serve_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move { serve_shutdown.cancelled().await }).await;
        if let Err(error) = served {
            tracing::error!(error = %error, "HTTP server failed");
        }
    });
    tracing::info!(http.address = %local_addr, mode = config.mode.as_str(), "workforce-service listening");

    Ok(RunningService { local_addr, state, shutdown, tasks, sandbox })
}
