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
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Create, list, expire and revoke API keys.
    #[command(subcommand, name = "api-keys")]
    ApiKeys(ApiKeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the audit log's hash chain and report the first broken link; exits with 1 if one
    /// is found.
    Verify {
        /// Stop after the event with this chain sequence number, to compare its hash with a
        /// `last_hash` kept from an earlier run.
        #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
        through: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key and print it once; only its hash is stored.
    Create {
        /// Unique name of the key, recorded as the actor in the audit log.
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: crate::auth::Role,
        /// Regions an operator key may change, comma-separated; all when omitted.
        #[arg(long, value_delimiter = ',')]
        regions: Option<Vec<String>>,
        /// Days until the key expires, 1 to 36500 (100 years); it never expires when omitted.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=36_500))]
        expires_in_days: Option<u32>,
    },
    /// List keys without showing them.
    List,
    /// Make a key stop working now.
    Revoke {
        #[arg(long)]
        name: String,
    },
    /// End a key's validity now, recorded as an expiry rather than a revocation.
    Expire {
        #[arg(long)]
        name: String,
    },
}

/// Default of `--max-body-bytes`: 512 KiB. The largest valid body is a create request with every
/// field at its maximum length. In it, each character is a JSON `\u` escape, and a surrogate
/// pair (12 bytes) wherever the model allows characters outside the Basic Multilingual Plane.
/// It has 401,852 bytes, and a test in `http::models` builds it.
pub const DEFAULT_MAX_BODY_BYTES: usize = 512 * 1024;

/// Default cap on open HTTP connections. It leaves room for 1,000 long-polling clients several
/// times over, and stays well under common file descriptor limits such as 20,000 or 65,536.
pub const DEFAULT_HTTP_MAX_CONNECTIONS: u32 = 4096;

/// Service name of the workforce interface endpoints in the sandbox, whose
/// DescribeVpcEndpointServices entry lists only the zones the sandbox topology supports.
const SANDBOX_PORTAL_ENDPOINT_SERVICE: &str = "com.amazonaws.{region}.sagemaker.labeling";

/// The destination of the service's AWS calls.
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

    /// PostgreSQL connection URL. The service and `migrate` create the database if it does not
    /// exist, and the `api-keys` and `audit` commands stop with an error. Also read by the
    /// subcommands, before or after their name.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/workforce_service"
    )]
    pub database_url: String,

    /// Maximum number of database connections in the pool.
    #[arg(long, env = "WORKFORCE_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,

    /// Destination of AWS calls: `aws` for real AWS, `sandbox` for the built-in sandbox.
    #[arg(long, env = "WORKFORCE_MODE", value_enum, default_value_t = Mode::Aws)]
    pub mode: Mode,

    /// AWS regions whose workforces this service manages, comma-separated. It goes before a
    /// subcommand's name, because `api-keys create` has a `--regions` of its own.
    #[arg(
        long,
        env = "WORKFORCE_REGIONS",
        value_delimiter = ',',
        default_value = "us-east-1,us-west-2"
    )]
    pub regions: Vec<String>,

    /// Background worker tasks in this process.
    #[arg(long, env = "WORKFORCE_WORKERS", default_value_t = 4)]
    pub workers: usize,

    /// Seconds a worker keeps its lease on an operation before another worker may take it over.
    #[arg(long, env = "WORKFORCE_LEASE_SECONDS", default_value_t = 30)]
    pub lease_seconds: u64,

    /// Minutes an operation may run before it fails as timed out.
    #[arg(
        long,
        env = "WORKFORCE_OPERATION_DEADLINE_MINUTES",
        default_value_t = 60
    )]
    pub operation_deadline_minutes: u64,

    /// Seconds an operation may run before it fails as timed out. When set, it replaces
    /// `--operation-deadline-minutes`; tests and failure drills use it for short deadlines.
    #[arg(long, env = "WORKFORCE_OPERATION_DEADLINE_SECONDS")]
    pub operation_deadline_seconds: Option<u64>,

    /// First delay in milliseconds between DescribeWorkforce polls; it doubles up to the maximum.
    #[arg(long, env = "WORKFORCE_POLL_INITIAL_MS", default_value_t = 2_000)]
    pub poll_initial_ms: u64,

    /// Maximum delay in milliseconds between DescribeWorkforce polls.
    #[arg(long, env = "WORKFORCE_POLL_MAX_MS", default_value_t = 30_000)]
    pub poll_max_ms: u64,

    /// SageMaker calls per second allowed for each region of the AWS account, shared by every
    /// worker and refresh of every process on the database (0 turns the limit off, otherwise
    /// at least 3, the calls of one submitting step). The SDK does not retry, so every
    /// attempt counts.
    #[arg(long, env = "WORKFORCE_AWS_CALLS_PER_SECOND", default_value_t = 5)]
    pub aws_calls_per_second: u32,

    /// Name of the AWS account whose call budget this process shares. Processes on one
    /// database that use the same account must use the same name.
    #[arg(long, env = "WORKFORCE_AWS_ACCOUNT", default_value = "default")]
    pub aws_account: String,

    /// Milliseconds an idle worker waits for a notification before it looks for due work.
    #[arg(long, env = "WORKFORCE_IDLE_POLL_MS", default_value_t = 1_000)]
    pub idle_poll_ms: u64,

    /// Seconds after which a read of a workforce refreshes its record from AWS in the background.
    #[arg(long, env = "WORKFORCE_REFRESH_AFTER_SECONDS", default_value_t = 30)]
    pub refresh_after_seconds: u64,

    /// Maximum time in milliseconds that a cached API key, workforce or operation is served.
    /// Copies are dropped as soon as PostgreSQL announces a change, so this limit matters only
    /// if an announcement were lost. 0 turns the cache off.
    #[arg(long, env = "WORKFORCE_READ_CACHE_MAX_AGE_MS", default_value_t = 5_000)]
    pub read_cache_max_age_ms: u64,

    /// Base64 key (32 bytes) that seals OIDC client secrets until SageMaker has them. Every
    /// process sharing a database needs the same key. Without one, a random key is used, so
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

    /// Endpoint service name of the worker portal's VPC interface endpoints; `{region}` stands
    /// for the region code. The VPC checks then accept subnets only in the availability zones
    /// that DescribeVpcEndpointServices lists for it. Sandbox mode defaults to the sandbox's
    /// `com.amazonaws.{region}.sagemaker.labeling` unless `--supported-az-ids` is set, and an
    /// empty value turns that default off.
    #[arg(long, env = "WORKFORCE_PORTAL_ENDPOINT_SERVICE")]
    pub portal_endpoint_service_name: Option<String>,

    /// Availability zone ids that the worker portal supports, per region, such as
    /// `us-east-1=use1-az1,use1-az2;us-west-2=usw2-az1`. Used when no portal endpoint service
    /// is set; regions that are not listed accept any zone.
    #[arg(long, env = "WORKFORCE_SUPPORTED_AZ_IDS")]
    pub supported_az_ids: Option<String>,

    /// URL that EC2 calls go to instead of the mode's endpoint, such as an EC2 emulator.
    /// SageMaker calls are not affected.
    #[arg(long, env = "WORKFORCE_EC2_ENDPOINT_URL")]
    pub ec2_endpoint_url: Option<String>,

    /// Log format.
    #[arg(long, env = "WORKFORCE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Maximum request body size in bytes.
    #[arg(long, env = "WORKFORCE_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Seconds a request may take before the service returns 503, from 1 to 3600.
    #[arg(
        long,
        env = "WORKFORCE_REQUEST_TIMEOUT_SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub request_timeout_seconds: u64,

    /// Seconds a connection may take to send a complete request head, from 1 to 3600. An idle
    /// keep-alive connection is closed after the same time.
    #[arg(
        long,
        env = "WORKFORCE_HEADER_READ_TIMEOUT_SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub header_read_timeout_seconds: u64,

    /// Seconds a response write may wait for the client to read, from 1 to 3600, before the
    /// connection is closed.
    #[arg(
        long,
        env = "WORKFORCE_WRITE_TIMEOUT_SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub write_timeout_seconds: u64,

    /// Connections open at once, from 1 to 100000. At the cap, new connections wait to be
    /// accepted until one closes. Keep it below the process's file descriptor limit, which the
    /// database pool and AWS calls share.
    #[arg(
        long,
        env = "WORKFORCE_HTTP_MAX_CONNECTIONS",
        default_value_t = DEFAULT_HTTP_MAX_CONNECTIONS,
        value_parser = clap::value_parser!(u32).range(1..=100_000)
    )]
    pub http_max_connections: u32,

    /// Seconds to wait for in-flight requests and worker steps on shutdown.
    #[arg(long, env = "WORKFORCE_SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,

    /// Issuer (`iss`) of accepted bearer JWTs. Setting it, with the audience and JWKS URL,
    /// turns on JWT authentication.
    #[arg(long, env = "WORKFORCE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Audience (`aud`) that accepted JWTs must carry.
    #[arg(long, env = "WORKFORCE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// URL of the identity provider's JSON Web Key Set.
    #[arg(long, env = "WORKFORCE_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,

    /// Signature algorithms accepted for JWTs, comma-separated.
    #[arg(
        long,
        env = "WORKFORCE_JWT_ALGORITHMS",
        value_delimiter = ',',
        default_value = "RS256,ES256"
    )]
    pub jwt_algorithms: Vec<String>,

    /// JWT claim that lists the caller's groups or roles.
    #[arg(long, env = "WORKFORCE_JWT_ROLE_CLAIM", default_value = "groups")]
    pub jwt_role_claim: String,

    /// Claim values mapped to roles, such as `labeling-admins=admin,labeling-ops=operator`. A
    /// claim value that is a role name (viewer, operator, auditor, admin) maps to that role.
    #[arg(long, env = "WORKFORCE_JWT_ROLE_MAP", value_delimiter = ',')]
    pub jwt_role_map: Vec<String>,

    /// Seconds the JWKS is cached before it is fetched again.
    #[arg(long, env = "WORKFORCE_JWT_JWKS_TTL_SECONDS", default_value_t = 600)]
    pub jwt_jwks_ttl_seconds: u64,

    /// Hours an Idempotency-Key and its response are remembered.
    #[arg(long, env = "WORKFORCE_IDEMPOTENCY_TTL_HOURS", default_value_t = 24)]
    pub idempotency_ttl_hours: u64,

    /// Requests per minute allowed for each credential (0 turns the limit off).
    #[arg(long, env = "WORKFORCE_RATE_LIMIT_PER_MINUTE", default_value_t = 1_200)]
    pub rate_limit_per_minute: u32,

    /// Lookups of unknown API keys per client address and minute (0 turns the limit off).
    /// Beyond it, keys that this process has not found before get 429 without a database
    /// lookup. Behind a proxy, all clients share the proxy's address.
    #[arg(long, env = "WORKFORCE_UNKNOWN_KEYS_PER_MINUTE", default_value_t = 120)]
    pub unknown_keys_per_minute: u32,

    /// Browser origins allowed to call the API (CORS), comma-separated; none by default.
    #[arg(long, env = "WORKFORCE_CORS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,

    /// Endpoints served without credentials, comma-separated, from `healthz`, `readyz`,
    /// `metrics` and `docs` (the docs page and `/openapi.json`). Leave one out to require a
    /// credential for it.
    #[arg(
        long,
        env = "WORKFORCE_PUBLIC_ENDPOINTS",
        value_delimiter = ',',
        default_value = "healthz,readyz,metrics,docs"
    )]
    pub public_endpoints: Vec<String>,

    /// Sandbox mode: file that receives the admin API key that the service creates at start
    /// when the file contains no usable admin key and no identity provider is configured. It is
    /// readable only by its owner.
    #[arg(
        long,
        env = "WORKFORCE_BOOTSTRAP_KEY_FILE",
        default_value = ".workforce-service/admin-api-key"
    )]
    pub bootstrap_key_file: PathBuf,
}

impl ServeConfig {
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_seconds)
    }

    pub fn operation_deadline(&self) -> Duration {
        match self.operation_deadline_seconds {
            Some(seconds) => Duration::from_secs(seconds),
            None => Duration::from_secs(self.operation_deadline_minutes * 60),
        }
    }

    /// Returns where the VPC checks learn the worker portal's availability zones. Without
    /// either flag, sandbox mode uses the sandbox's portal endpoint service, which lists only
    /// the zones the sandbox supports, and AWS mode accepts any zone.
    pub fn portal_zone_source(&self) -> anyhow::Result<crate::aws::PortalZoneSource> {
        let zone_ids = match &self.supported_az_ids {
            Some(text) => crate::vpc_checks::parse_zone_ids(text)
                .map_err(|reason| anyhow::anyhow!("invalid --supported-az-ids: {reason}"))?,
            None => Default::default(),
        };
        let endpoint_service = match (&self.portal_endpoint_service_name, self.mode) {
            (Some(name), _) if name.trim().is_empty() => None,
            (Some(name), _) => Some(name.trim().to_owned()),
            (None, Mode::Sandbox) if self.supported_az_ids.is_none() => {
                Some(SANDBOX_PORTAL_ENDPOINT_SERVICE.to_owned())
            }
            (None, _) => None,
        };
        Ok(crate::aws::PortalZoneSource {
            endpoint_service,
            zone_ids,
        })
    }
}
