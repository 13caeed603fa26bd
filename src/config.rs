//! Command-line flags and environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Manage SageMaker Ground Truth private workforces and their VPC configurations through one
/// audited REST API.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub serve: ServeConfig,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API and the background workers (the default).
    Serve,
    /// Create the database if it is missing, apply the migrations and exit.
    Migrate,
    /// Print the OpenAPI document as JSON and exit.
    Openapi,
}

/// Where the service sends its AWS calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Real AWS, with the standard credential chain and region settings.
    Aws,
    /// An in-process sandbox that speaks the SageMaker and EC2 wire protocols.
    Sandbox,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Sandbox => "sandbox",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address and port of the HTTP API.
    #[arg(long, env = "WORKFORCE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// PostgreSQL connection URL. The database is created if it does not exist.
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/workforce_service")]
    pub database_url: String,

    /// Maximum number of database connections in the pool.
    #[arg(long, env = "WORKFORCE_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,

    /// Where AWS calls go: `aws` for real AWS, `sandbox` for the built-in sandbox.
    #[arg(long, env = "WORKFORCE_MODE", value_enum, default_value_t = Mode::Aws)]
    pub mode: Mode,

    /// AWS regions whose workforces this service manages, comma-separated.
    #[arg(long, env = "WORKFORCE_REGIONS", value_delimiter = ',', default_value = "us-east-1,us-west-2")]
    pub regions: Vec<String>,

    /// Background worker tasks in this process.
    #[arg(long, env = "WORKFORCE_WORKERS", default_value_t = 4)]
    pub workers: usize,

    /// Seconds a worker holds an operation before another worker may take it over.
    #[arg(long, env = "WORKFORCE_LEASE_SECONDS", default_value_t = 30)]
    pub lease_seconds: u64,

    /// Minutes an operation may run before it fails as timed out.
    #[arg(long, env = "WORKFORCE_OPERATION_DEADLINE_MINUTES", default_value_t = 60)]
    pub operation_deadline_minutes: u64,

    /// First delay in milliseconds between DescribeWorkforce polls; it doubles up to the maximum.
    #[arg(long, env = "WORKFORCE_POLL_INITIAL_MS", default_value_t = 2_000)]
    pub poll_initial_ms: u64,

    /// Longest delay in milliseconds between DescribeWorkforce polls.
    #[arg(long, env = "WORKFORCE_POLL_MAX_MS", default_value_t = 30_000)]
    pub poll_max_ms: u64,

    /// Milliseconds an idle worker waits for a notification before it looks for due work.
    #[arg(long, env = "WORKFORCE_IDLE_POLL_MS", default_value_t = 1_000)]
    pub idle_poll_ms: u64,

    /// Seconds after which a read of a workforce refreshes its record from AWS in the background.
    #[arg(long, env = "WORKFORCE_REFRESH_AFTER_SECONDS", default_value_t = 30)]
    pub refresh_after_seconds: u64,

    /// Base64 key (32 bytes) that seals OIDC client secrets until SageMaker has them. Every
    /// process sharing a database needs the same key; without one, a random key is used and
    /// only this process can submit the OIDC changes it accepted.
    #[arg(long, env = "WORKFORCE_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,

    /// Sandbox mode: port of the in-process sandbox on 127.0.0.1 (0 picks a free one).
    #[arg(long, env = "WORKFORCE_SANDBOX_PORT", default_value_t = 0)]
    pub sandbox_port: u16,

    /// Sandbox mode: topology file that replaces the built-in VPCs, subnets and security groups.
    #[arg(long, env = "WORKFORCE_SANDBOX_TOPOLOGY")]
    pub sandbox_topology: Option<PathBuf>,

    /// Sandbox mode: milliseconds each workforce status transition takes.
    #[arg(long, env = "WORKFORCE_SANDBOX_DELAY_MS", default_value_t = 3_000)]
    pub sandbox_delay_ms: u64,

    /// Log format.
    #[arg(long, env = "WORKFORCE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Maximum request body size in bytes.
    #[arg(long, env = "WORKFORCE_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Seconds a request may take before it is answered with 503.
    #[arg(long, env = "WORKFORCE_REQUEST_TIMEOUT_SECONDS", default_value_t = 30)]
    pub request_timeout_seconds: u64,

    /// Seconds to wait for in-flight requests and worker steps on shutdown.
    #[arg(long, env = "WORKFORCE_SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,
}

impl ServeConfig {
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_seconds)
    }

    pub fn operation_deadline(&self) -> Duration {
        Duration::from_secs(self.operation_deadline_minutes * 60)
    }
}
