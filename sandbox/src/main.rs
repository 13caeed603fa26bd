//! Runs the workforce sandbox as a standalone server.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;
use workforce_sandbox::{Delays, SandboxConfig, Spread, Topology};

/// Local stand-in for the SageMaker workforce API and the EC2 VPC describe calls.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SANDBOX_BIND", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    bind: IpAddr,

    /// TCP port to listen on.
    #[arg(long, env = "SANDBOX_PORT", default_value_t = 4566)]
    port: u16,

    /// JSON topology file that replaces the built-in topology.
    #[arg(long, env = "SANDBOX_TOPOLOGY")]
    topology: Option<PathBuf>,

    /// Duration of the Initializing, Updating and Deleting statuses, in milliseconds
    /// [default: 2000].
    #[arg(long, env = "SANDBOX_DELAY_MS")]
    delay_ms: Option<u64>,

    /// Draw each transition's length from a log-normal distribution with this sigma around
    /// the delay (its median), instead of using the delay exactly.
    #[arg(long, env = "SANDBOX_DELAY_SIGMA")]
    delay_sigma: Option<f64>,

    /// Minimum drawn transition length, in milliseconds, with --delay-sigma.
    #[arg(long, env = "SANDBOX_DELAY_MIN_MS", default_value_t = 0)]
    delay_min_ms: u64,

    /// Maximum drawn transition length, in milliseconds, with --delay-sigma.
    #[arg(long, env = "SANDBOX_DELAY_MAX_MS", default_value_t = 3_600_000)]
    delay_max_ms: u64,

    /// Print the built-in topology as JSON and exit.
    #[arg(long)]
    print_topology: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.print_topology {
        let json = serde_json::to_string_pretty(&Topology::built_in())?;
        println!("{json}");
        return Ok(());
    }
    // The log goes to standard output; colour codes only make sense on a terminal.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();

    let topology = match &args.topology {
        Some(path) => Topology::from_file(path)?,
        None => Topology::built_in(),
    };
    let mut delays = args.delay_ms.map_or_else(Delays::default, |ms| {
        Delays::uniform(Duration::from_millis(ms))
    });
    if let Some(sigma) = args.delay_sigma {
        anyhow::ensure!(
            sigma.is_finite() && sigma >= 0.0,
            "--delay-sigma must be a non-negative number"
        );
        delays.spread = Spread::LogNormal {
            sigma,
            min_ms: args.delay_min_ms,
            max_ms: args.delay_max_ms,
        };
    }
    let address = SocketAddr::new(args.bind, args.port);
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("failed to listen on {address}"))?;
    let config = SandboxConfig {
        topology,
        delays,
        ..SandboxConfig::default()
    };
    let handle = workforce_sandbox::start(config, listener).await?;
    tracing::info!(endpoint_url = %handle.endpoint_url(), "sandbox ready");

    wait_for_stop_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await;
    Ok(())
}

/// Waits for Ctrl-C or, on Unix, SIGTERM.
async fn wait_for_stop_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "failed to listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "failed to listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
