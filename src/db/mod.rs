//! Storage: the PostgreSQL pool, migrations and one module of queries per table.

pub mod audit;
pub mod idempotency;
pub mod operations;
pub mod workforces;

use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::MigrateDatabase;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

/// Migrations embedded in the binary, applied at start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A connection idle for longer than this is checked with a round trip before it is handed out.
///
/// sqlx checks every connection by default, which doubles the round trips of a request that
/// runs one statement. A connection that ran a statement within the last second is very likely
/// still open. If it is not, that request fails with a 503, and the pool drops the connection.
const CHECK_IDLE_CONNECTION_AFTER: Duration = Duration::from_secs(1);

/// Creates the database if it is missing, connects and applies pending migrations.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    open(url, max_connections, true).await
}

/// Connects to a database that must exist already and hold this service's schema, and applies
/// pending migrations. The commands that read or change keys and the audit log use it, so that
/// a mistyped URL fails instead of creating a database or tables that then pass every check.
pub async fn connect_existing(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    open(url, max_connections, false).await
}

async fn open(url: &str, max_connections: u32, create: bool) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url
        .parse()
        .context("invalid --database-url (DATABASE_URL)")?;
    let place = format!(
        "database '{}' on {}:{}",
        options.get_database().unwrap_or_default(),
        options.get_host(),
        options.get_port()
    );
    let exists = Postgres::database_exists(url)
        .await
        .with_context(|| format!("failed to reach PostgreSQL for the {place}"))?;
    if !exists && !create {
        anyhow::bail!(
            "the {place} does not exist: check --database-url (DATABASE_URL), or create and migrate it with `workforce-service --database-url URL migrate`"
        );
    }
    if !exists {
        match Postgres::create_database(url).await {
            Ok(()) => tracing::info!("created the {place}"),
            // Another process that starts at the same moment may have created it first.
            Err(_) if Postgres::database_exists(url).await.unwrap_or(false) => {}
            Err(error) => {
                return Err(anyhow::Error::new(error))
                    .with_context(|| format!("failed to create the {place}"));
            }
        }
    }
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        // Fail fast while the database is down, so requests get a 503 instead of hanging.
        .acquire_timeout(Duration::from_secs(3))
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for > CHECK_IDLE_CONNECTION_AFTER {
                    sqlx::Connection::ping(connection).await?;
                }
                Ok(true)
            })
        })
        .connect_with(options.application_name("workforce-service"))
        .await
        .with_context(|| format!("failed to connect to the {place}"))?;
    if !create {
        let migrated: Option<String> =
            sqlx::query_scalar("select to_regclass('_sqlx_migrations')::text")
                .fetch_one(&pool)
                .await
                .with_context(|| format!("failed to read the {place}"))?;
        if migrated.is_none() {
            anyhow::bail!(
                "the {place} has no workforce-service schema: check --database-url (DATABASE_URL), or migrate it with `workforce-service --database-url URL migrate`"
            );
        }
    }
    MIGRATOR
        .run(&pool)
        .await
        .context("failed to apply database migrations")?;
    Ok(pool)
}

/// Returns true when `error` is a unique violation of the named constraint or index.
pub fn is_unique_violation(error: &sqlx::Error, constraint: &str) -> bool {
    match error {
        sqlx::Error::Database(db_error) => {
            db_error.is_unique_violation() && db_error.constraint() == Some(constraint)
        }
        _ => false,
    }
}

/// Returns true when `error` means the database cannot be reached right now, or cancelled the
/// statement (57014, which an administrator's cancel or a statement timeout causes).
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
    ) || matches!(error, sqlx::Error::Database(db) if db.code().is_some_and(|code| code.starts_with("57P") || code.starts_with("08") || code == "57014"))
}
