//! The HTTP/1.1 accept loop.
//!
//! `axum::serve` gives hyper no timer, so hyper cannot time out a connection that is waiting
//! for a request head. A client that opens connections and sends nothing, or half a header,
//! then keeps a task and a file descriptor per connection for as long as it likes. This loop
//! serves the same router with hyper's HTTP/1 builder and a tokio timer, so that a connection
//! that does not deliver a complete request head within the header read timeout is closed.
//! That covers both a slow header and an idle keep-alive connection, because hyper starts the
//! timer whenever it waits for the next head.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets each open connection
/// finish the request it is serving, and returns when every connection has closed.
///
/// Each request carries the client's address as [`ConnectInfo<SocketAddr>`], as with
/// `into_make_service_with_connect_info`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    // Every connection task holds a receiver; dropping the last one ends `closed()` below.
    let (all_closed, open) = watch::channel(());
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    wait_after_accept_error(&error).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let service = hyper::service::service_fn({
            let router = router.clone();
            move |request: hyper::Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(client));
                router.clone().oneshot(request)
            }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let (shutdown, open) = (shutdown.clone(), open.clone());
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = shutdown.cancelled() => {
                    // Finish the request in flight, if any, and close instead of keeping the
                    // connection alive; an idle connection closes at once.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = served {
                log_connection_error(&error, client);
            }
            drop(open);
        });
    }
    drop(listener);
    drop(open);
    all_closed.closed().await;
}

/// Logs why a connection ended early. These are the client's doing (a closed connection, a
/// malformed or slow request head), so they are logged at debug.
fn log_connection_error(error: &hyper::Error, client: SocketAddr) {
    if error.is_timeout() {
        tracing::debug!(%client, "closed a connection that sent no complete request head in time");
    } else {
        tracing::debug!(%client, error = %error, "connection ended with an error");
    }
}

/// Accepting fails for one connection when it was reset before it was accepted; that is
/// skipped at once. Other errors, such as running out of file descriptors, last a while, so
/// the loop waits a second instead of spinning.
async fn wait_after_accept_error(error: &io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %error, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
