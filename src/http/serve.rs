//! The HTTP/1.1 accept loop.
//!
//! `axum::serve` gives hyper no timer, so hyper cannot time out a connection that is waiting
//! for a request head. A client that opens connections and sends nothing, or half a header,
//! then keeps a task and a file descriptor per connection for as long as it likes. This loop
//! serves the same router with hyper's HTTP/1 builder and a tokio timer, so that a connection
//! that does not deliver a complete request head within the header read timeout is closed.
//! That covers both a slow header and an idle keep-alive connection, because hyper starts the
//! timer whenever it waits for the next head. A client that stops reading a response is cut
//! off by the write timeout in the same way.
//!
//! The number of open connections is capped. At the cap the loop stops accepting, so new
//! connections wait in the kernel's listen backlog until one closes, instead of taking file
//! descriptors that the database pool needs.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Largest request head that the server reads, request line included. A larger one gets
/// `431`. A bearer JWT with many claims takes a few kilobytes, so this leaves ample room, and
/// keeps the head that a connection can make the server buffer far below the 400 KB that
/// hyper's read buffer allows by default.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// On shutdown, a connection with no request in flight gets this long to finish writing its
/// last response. After it, the connection is closed even if the client is part-way through
/// sending a request head, which hyper would otherwise wait for until the header read timeout.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(1);

/// Limits of the connections the loop serves.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time to receive a complete request head, and the longest idle time between requests.
    pub header_read: Duration,
    /// Time a response write may wait for the client to read before the connection is closed.
    pub write: Duration,
    /// Maximum number of connections open at once. More wait to be accepted.
    pub max_open: usize,
}

/// Gate that lets the warning about a reached connection cap through at most once a minute.
static AT_CAPACITY: crate::telemetry::WarningGate =
    crate::telemetry::WarningGate::new(Duration::from_secs(60));

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets each open connection
/// finish the request it is serving, and returns when every connection has closed.
///
/// Each request carries the client's address as [`ConnectInfo<SocketAddr>`], as with
/// `into_make_service_with_connect_info`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_header_size(MAX_HEAD_BYTES);
    // Each connection task keeps a receiver, and dropping the last one ends `closed()` below.
    let (all_closed, open) = watch::channel(());
    let slots = Arc::new(Semaphore::new(limits.max_open));
    let open_gauge = metrics::gauge!("http_connections_open");
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                metrics::counter!("http_connection_cap_reached_total").increment(1);
                if let Some(held_back) = AT_CAPACITY.pass() {
                    tracing::warn!(
                        http_max_connections = limits.max_open,
                        held_back,
                        "open connections reached --http-max-connections; further connections wait in the listen backlog until one closes"
                    );
                }
                // Biased, so that once the shutdown has begun, a slot that frees up at the
                // same moment does not let one more connection in.
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break,
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                }
            }
        };
        let (stream, client) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    wait_after_accept_error(&error).await;
                    continue;
                }
            },
        };
        let mut stream = TimeoutStream::new(stream);
        stream.set_write_timeout(Some(limits.write));
        // Requests of this connection whose handler has not returned yet.
        let in_flight = Arc::new(AtomicUsize::new(0));
        let service = hyper::service::service_fn({
            let (router, in_flight) = (router.clone(), in_flight.clone());
            move |request: hyper::Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(client));
                let started = InFlight::start(&in_flight);
                let response = router.clone().oneshot(request);
                async move {
                    let response = response.await;
                    drop(started);
                    response
                }
            }
        });
        let connection = builder.serve_connection(TokioIo::new(Box::pin(stream)), service);
        let (shutdown, open) = (shutdown.clone(), open.clone());
        let open_gauge = open_gauge.clone();
        open_gauge.increment(1.0);
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = shutdown.cancelled() => {
                    // hyper closes an idle connection at once, and a busy one after its
                    // response, but waits for a request head that has begun to arrive.
                    connection.as_mut().graceful_shutdown();
                    loop {
                        tokio::select! {
                            served = connection.as_mut() => break served,
                            () = tokio::time::sleep(SHUTDOWN_DRAIN) => {
                                if in_flight.load(Ordering::Acquire) == 0 {
                                    tracing::debug!(%client, "closed a connection without a request in flight at shutdown");
                                    break Ok(());
                                }
                            }
                        }
                    }
                }
            };
            if let Err(error) = served {
                log_connection_error(&error, client);
            }
            open_gauge.decrement(1.0);
            drop((slot, open));
        });
    }
    drop(listener);
    drop(open);
    let still_open = limits.max_open - slots.available_permits();
    if still_open > 0 {
        tracing::info!(
            connections = still_open,
            "stopped accepting connections; waiting for the open ones to finish their requests"
        );
    }
    all_closed.closed().await;
}

/// Counts a request as in flight on its connection until dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts and logs why a connection ended early. These are the client's doing (a closed
/// connection, a malformed or slow request, a response it did not read), so they are logged
/// at debug, and `http_connection_errors_total` counts them by reason.
fn log_connection_error(error: &hyper::Error, client: SocketAddr) {
    let timed_out_writing = std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<io::Error>())
        .is_some_and(|io| io.kind() == io::ErrorKind::TimedOut);
    let reason = if error.is_timeout() {
        "header_timeout"
    } else if timed_out_writing {
        "write_timeout"
    } else if error.is_parse() || error.is_parse_too_large() {
        "malformed_request"
    } else if error.is_incomplete_message() {
        "closed_mid_request"
    } else {
        "other"
    };
    metrics::counter!("http_connection_errors_total", "reason" => reason).increment(1);
    tracing::debug!(%client, reason, error = %error, "connection ended with an error");
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
