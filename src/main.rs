use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use workforce_service::auth::api_keys;
use workforce_service::config::{ApiKeyCommand, AuditCommand, Cli, Command, LogFormat};
use workforce_service::domain::Region;
use workforce_service::telemetry::BatchedStderr;

/// mimalloc served about 9% more cached GETs per second than glibc's allocator, whose
/// functions took about a tenth of the server's time in a profile (see docs/benchmarks.md).
/// Its `no_thp` build keeps transparent huge pages off: with them, idle RSS rose from 29 MB to
/// 44 MB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Printed without the backtrace that anyhow adds under RUST_BACKTRACE=1, because
            // these errors come from configuration and input, and their causes name the fix.
            eprintln!("Error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if matches!(command, Command::Serve) {
        // The server logs a line per request; those are written in batches.
        let logs = BatchedStderr::start();
        init_tracing(cli.serve.log_format, logs.clone());
        // Coloured lines for a terminal keep going through `tracing`.
        if !std::io::stderr().is_terminal() {
            workforce_service::telemetry::install_access_log(
                logs.clone(),
                matches!(cli.serve.log_format, LogFormat::Json),
            );
        }
        let default_hook = std::panic::take_hook();
        let on_panic = logs.clone();
        std::panic::set_hook(Box::new(move |info| {
            on_panic.flush();
            default_hook(info);
        }));
        let served = serve(cli.serve).await;
        logs.flush();
        return served;
    }
    init_tracing(cli.serve.log_format, std::io::stderr);
    match command {
        Command::Serve => unreachable!("handled above"),
        Command::Migrate => {
            workforce_service::db::connect(&cli.serve.database_url, 1).await?;
            tracing::info!("database is migrated");
            Ok(())
        }
        Command::Audit(AuditCommand::Verify { through }) => {
            let db = workforce_service::db::connect_existing(&cli.serve.database_url, 2).await?;
            let report = workforce_service::db::audit::verify_chain(&db, through).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            match &report.first_broken {
                None if through.is_some() => {
                    eprintln!(
                        "The audit log is intact through event {}; later events were not checked.",
                        report.events_checked
                    );
                    Ok(())
                }
                None => {
                    eprintln!(
                        "The audit log is intact: {} events checked.",
                        report.events_checked
                    );
                    Ok(())
                }
                Some(broken) if broken.reason == "events_missing" => {
                    eprintln!(
                        "The audit log ends after {} events, before event {}: events were removed from its end, unless --through is larger than the count that an earlier verification reported.",
                        report.events_checked,
                        through.unwrap_or_default()
                    );
                    std::process::exit(1)
                }
                Some(broken) => {
                    eprintln!(
                        "The audit log is broken at event {} ({}).",
                        broken.id, broken.reason
                    );
                    std::process::exit(1)
                }
            }
        }
        Command::ApiKeys(command) => {
            manage_api_keys(&cli.serve.database_url, &cli.serve.regions, command).await
        }
        Command::Openapi => {
            println!("{}", workforce_service::http::openapi().to_pretty_json()?);
            Ok(())
        }
    }
}

async fn manage_api_keys(
    database_url: &str,
    managed_regions: &[String],
    command: ApiKeyCommand,
) -> anyhow::Result<()> {
    let db = workforce_service::db::connect_existing(database_url, 1).await?;
    match command {
        ApiKeyCommand::Create {
            name,
            role,
            regions,
            expires_in_days,
        } => {
            workforce_service::http::api_keys::validate_key_name(&name)
                .map_err(|e| anyhow::anyhow!("invalid --name: {}", e.reason))?;
            // The regions that `--regions` (or WORKFORCE_REGIONS) names, as the service has them.
            let managed: Vec<Region> = managed_regions
                .iter()
                .filter_map(|region| Region::parse("regions", region).ok())
                .collect();
            let region_errors = workforce_service::http::api_keys::check_key_regions(
                role,
                regions.as_deref(),
                Some(&managed),
            );
            if let Some(error) = region_errors.first() {
                let sent = error
                    .field
                    .strip_prefix("regions[")
                    .and_then(|rest| rest.strip_suffix(']'))
                    .and_then(|index| index.parse::<usize>().ok())
                    .and_then(|index| regions.as_ref()?.get(index));
                let value = sent.map(|region| format!(" {region}")).unwrap_or_default();
                anyhow::bail!(
                    "invalid --regions{value}: {} {}. The service's own regions come from --regions (WORKFORCE_REGIONS), given before the command's name",
                    error.field,
                    error.reason
                );
            }
            let expires_at = expires_in_days
                .map(|days| chrono::Utc::now() + chrono::Duration::days(i64::from(days)));
            let created = api_keys::create_recorded(
                &db,
                &api_keys::KeyChanger::COMMAND_LINE,
                &name,
                role,
                regions.as_deref(),
                expires_at,
            )
            .await;
            let (row, key) = match created {
                Ok(created) => created,
                Err(api_keys::CreateKeyError::NameTaken(existing)) => {
                    anyhow::bail!(
                        "{}",
                        workforce_service::http::api_keys::name_in_use_message(&existing)
                    );
                }
                Err(api_keys::CreateKeyError::Database(error)) => return Err(error.into()),
            };
            eprintln!(
                "Created API key '{}' with role {} (id {}). Store it now; it is not shown again:",
                row.name, row.role, row.id
            );
            println!("{key}");
        }
        ApiKeyCommand::List => {
            print!(
                "{}",
                key_table(&api_keys::list(&db).await?, chrono::Utc::now())
            );
        }
        ApiKeyCommand::Revoke { name } => {
            change_key(&db, &name, api_keys::NamedChange::Revoke).await?;
        }
        ApiKeyCommand::Expire { name } => {
            change_key(&db, &name, api_keys::NamedChange::Expire).await?;
        }
    }
    Ok(())
}

/// Revokes or expires a key by name, and says whether anything changed.
async fn change_key(
    db: &sqlx::PgPool,
    name: &str,
    change: api_keys::NamedChange,
) -> anyhow::Result<()> {
    let by = api_keys::KeyChanger::COMMAND_LINE;
    let (row, changed) = api_keys::change_by_name(db, &by, name, change)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no API key named '{name}'"))?;
    let done = match change {
        api_keys::NamedChange::Revoke => "revoked",
        api_keys::NamedChange::Expire => "expired",
    };
    if changed {
        eprintln!("API key '{name}' is now {done}.");
    } else if change == api_keys::NamedChange::Expire && row.revoked_at.is_some() {
        eprintln!("API key '{name}' is revoked, so nothing changed.");
    } else {
        eprintln!("API key '{name}' was already {done}, so nothing changed.");
    }
    Ok(())
}

/// Writes the rows of `api-keys list` as a table whose columns are as wide as their longest
/// value, so that long key names keep the columns in line.
fn key_table(rows: &[api_keys::ApiKeyRow], now: chrono::DateTime<chrono::Utc>) -> String {
    const HEADER: [&str; 6] = ["ID", "NAME", "ROLE", "STATE", "EXPIRES", "REGIONS"];

    let mut lines: Vec<[String; 6]> = vec![HEADER.map(str::to_owned)];
    for row in rows {
        let state = if row.revoked_at.is_some() {
            "revoked"
        } else if row.expires_at.is_some_and(|at| at <= now) {
            "expired"
        } else {
            "active"
        };
        let expires = row.expires_at.map_or_else(
            || "never".to_owned(),
            |at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        let regions = row
            .regions
            .as_ref()
            .map(|r| r.join(","))
            .unwrap_or_else(|| "all".to_owned());
        lines.push([
            row.id.to_string(),
            row.name.clone(),
            row.role.clone(),
            state.to_owned(),
            expires,
            regions,
        ]);
    }
    let mut widths = [0usize; 6];
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut table = String::new();
    for line in &lines {
        let (last, padded) = line.split_last().expect("a line has cells");
        for (cell, width) in padded.iter().zip(widths) {
            table.push_str(&format!("{cell:<width$}  "));
        }
        table.push_str(last);
        table.push('\n');
    }
    table
}

fn init_tracing<W>(format: LogFormat, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,aws_smithy_runtime=warn,aws_config=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(config: workforce_service::config::ServeConfig) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "failed to listen on {} (--listen, WORKFORCE_LISTEN)",
                config.listen
            )
        })?;
    let service = workforce_service::app::start(&config, listener).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    service
        .shutdown(std::time::Duration::from_secs(
            config.shutdown_grace_seconds,
        ))
        .await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c()
            .await
            .expect("failed to listen for Ctrl-C");
    };
    #[cfg(unix)]
    let terminate = async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("failed to listen for SIGTERM")
            .recv()
            .await;
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_table_aligns_long_names() {
        let now = chrono::Utc::now();
        let row = |name: &str, role: &str, regions: Option<Vec<String>>| api_keys::ApiKeyRow {
            id: uuid::Uuid::new_v4(),
            name: name.to_owned(),
            role: role.to_owned(),
            regions,
            created_at: now,
            expires_at: None,
            revoked_at: None,
        };
        let rows = [
            row(
                "a".repeat(30).as_str(),
                "operator",
                Some(vec!["us-east-1".to_owned()]),
            ),
            row("ci", "admin", None),
        ];

        let table = key_table(&rows, now);

        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[2].contains("  never  "), "{table}");
        for column in ["ROLE", "STATE", "EXPIRES", "REGIONS"] {
            let at = lines[0].find(column).expect("a header");
            for line in &lines[1..] {
                let cell = &line[at..];
                assert!(
                    at > 0 && line.as_bytes()[at - 1] == b' ' && !cell.starts_with(' '),
                    "{column} out of line:\n{table}"
                );
            }
        }
    }
}
