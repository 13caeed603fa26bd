//! The baseline of the HTTP benchmarks: a bare axum handler that returns fixed JSON bytes from
//! memory, on the same tokio runtime as the service (`#[tokio::main]`, one worker thread per
//! core), with no middleware, authentication or database. It is served by the service's own
//! accept loop with the service's default timeouts, so that the two differ only in the
//! request path.
//!
//! Usage: `baseline_server LISTEN_ADDRESS BODY_FILE`. Every GET path returns the body.

use axum::http::header;
use axum::response::IntoResponse;

/// The service's allocator, so that the baseline differs from it only in the request path.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(address), Some(body_file)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: baseline_server LISTEN_ADDRESS BODY_FILE");
    };
    let body: &'static [u8] = Box::leak(std::fs::read(&body_file)?.into_boxed_slice());
    let handler =
        move || async move { ([(header::CONTENT_TYPE, "application/json")], body).into_response() };
    let app = axum::Router::new().fallback(axum::routing::get(handler));
    let listener = tokio::net::TcpListener::bind(&address).await?;
    eprintln!(
        "baseline listening on {address}, {} bytes per answer",
        body.len()
    );
    let limits = workforce_service::http::serve::ConnectionLimits {
        header_read: std::time::Duration::from_secs(30),
        write: std::time::Duration::from_secs(30),
        max_open: workforce_service::config::DEFAULT_HTTP_MAX_CONNECTIONS as usize,
    };
    workforce_service::http::serve::serve(
        listener,
        app,
        limits,
        tokio_util::sync::CancellationToken::new(),
    )
    .await;
    Ok(())
}
