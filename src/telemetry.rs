//! Prometheus metrics: HTTP requests, operations, AWS calls, audit events and the database
//! pool. Counters and histograms are recorded where things happen. Gauges that describe the
//! database (operations in flight, the oldest pending one, pool use) are read at scrape time.

use std::collections::HashMap;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets in seconds for HTTP requests and AWS calls: 1 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Histogram buckets in seconds for whole operations: 1 s to 2 h, since SageMaker takes minutes.
const OPERATION_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns the handle that renders it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("request_duration_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("aws_call_duration_seconds".into()),
                        LATENCY_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("workforce_operation_duration_seconds".into()),
                        OPERATION_BUCKETS,
                    )
                })
                .expect("bucket lists are not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed")
        })
        .clone()
}

/// The HTTP metrics of one method, route and status.
struct HttpSeries {
    method: String,
    route: String,
    status: u16,
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

/// HTTP series by a hash of their labels. Registering a series builds its label strings and
/// looks it up in the recorder's registry. That cost about 1 µs of CPU per request on the
/// benchmark machine, so each series is registered once per process.
static HTTP_SERIES: std::sync::LazyLock<std::sync::Mutex<HashMap<u64, Vec<HttpSeries>>>> =
    std::sync::LazyLock::new(Default::default);

pub fn record_http_request(method: &str, route: &str, status: u16, seconds: f64) {
    use std::hash::BuildHasher;

    static HASHER: std::sync::LazyLock<std::collections::hash_map::RandomState> =
        std::sync::LazyLock::new(Default::default);
    let hash = HASHER.hash_one((method, route, status));
    let mut series = HTTP_SERIES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let same_hash = series.entry(hash).or_default();
    let position = same_hash
        .iter()
        .position(|s| s.status == status && s.method == method && s.route == route);
    let found = match position {
        Some(index) => &same_hash[index],
        None => {
            let labels = [
                ("method", method.to_owned()),
                ("route", route.to_owned()),
                ("status", status.to_string()),
            ];
            same_hash.push(HttpSeries {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
                requests: metrics::counter!("http_requests_total", &labels),
                duration: metrics::histogram!("http_request_duration_seconds", &labels),
            });
            same_hash.last().expect("just pushed")
        }
    };
    found.requests.increment(1);
    found.duration.record(seconds);
}

pub fn record_aws_call(
    service: &'static str,
    operation: &str,
    outcome: &'static str,
    seconds: f64,
) {
    let labels = [
        ("service", service.to_owned()),
        ("operation", operation.to_owned()),
        ("outcome", outcome.to_owned()),
    ];
    metrics::counter!("aws_calls_total", &labels).increment(1);
    metrics::histogram!("aws_call_duration_seconds", &labels).record(seconds);
}

pub fn record_operation_finished(kind: &str, outcome: &'static str, seconds: f64) {
    let labels = [("kind", kind.to_owned()), ("outcome", outcome.to_owned())];
    metrics::counter!("workforce_operations_finished_total", &labels).increment(1);
    metrics::histogram!("workforce_operation_duration_seconds", &labels).record(seconds);
}

pub fn record_audit_event(action: &str) {
    metrics::counter!("audit_events_written_total", "action" => action.to_owned()).increment(1);
}

/// Reads the gauges that describe the database and the pool, just before a scrape.
pub async fn refresh_gauges(db: &sqlx::PgPool) {
    let pool_size = db.size();
    let idle = db.num_idle() as u32;
    metrics::gauge!("db_pool_connections", "state" => "idle").set(f64::from(idle));
    metrics::gauge!("db_pool_connections", "state" => "in_use")
        .set(f64::from(pool_size.saturating_sub(idle)));
    let row = sqlx::query_as::<_, (i64, Option<f64>)>(
        "select count(*), extract(epoch from now() - min(created_at) filter (where status = 'pending'))::float8
           from operations where status in ('pending', 'running')",
    )
    .fetch_one(db)
    .await;
    if let Ok((in_flight, oldest_pending)) = row {
        metrics::gauge!("workforce_operations_in_flight").set(in_flight as f64);
        metrics::gauge!("workforce_operations_oldest_pending_age_seconds")
            .set(oldest_pending.unwrap_or(0.0));
    }
}

/// Lines collected beyond this size are written at once by the thread that logs.
const LOG_BUFFER_BYTES: usize = 256 * 1024;

/// How often the background thread writes the collected log lines.
const LOG_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// A log destination that collects lines in memory and writes them to standard error in batches,
/// so that the access log line of each request costs no system call.
///
/// A background thread writes the batch every 100 ms. Warnings and errors are written at once,
/// with the lines before them, and [`BatchedStderr::flush`] writes the rest at exit. A process
/// killed with SIGKILL loses at most the last 100 ms of informational lines.
#[derive(Clone)]
pub struct BatchedStderr(std::sync::Arc<LogBuffer>);

struct LogBuffer {
    lines: std::sync::Mutex<Vec<u8>>,
    /// Held while a batch is written, so that batches reach standard error in order.
    writing: std::sync::Mutex<()>,
}

impl BatchedStderr {
    /// Creates the destination and starts its flushing thread.
    pub fn start() -> Self {
        let batched = Self(std::sync::Arc::new(LogBuffer {
            lines: std::sync::Mutex::new(Vec::with_capacity(64 * 1024)),
            writing: std::sync::Mutex::new(()),
        }));
        let flusher = batched.clone();
        std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(LOG_FLUSH_INTERVAL);
                    flusher.flush();
                }
            })
            .expect("the log flushing thread starts");
        batched
    }

    /// Writes every collected line to standard error.
    pub fn flush(&self) {
        use std::io::Write;

        let writing = self
            .0
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let batch = {
            let mut lines = self
                .0
                .lines
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if lines.is_empty() {
                return;
            }
            std::mem::replace(&mut *lines, Vec::with_capacity(64 * 1024))
        };
        // A failed write of the log cannot be logged, so it is ignored.
        let _ = std::io::stderr().lock().write_all(&batch);
        drop(writing);
    }
}

/// One log line on its way into a [`BatchedStderr`].
pub struct BatchedLine<'a> {
    target: &'a BatchedStderr,
    urgent: bool,
}

impl std::io::Write for BatchedLine<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let full = {
            let mut lines = self
                .target
                .0
                .lines
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            lines.extend_from_slice(buf);
            lines.len() >= LOG_BUFFER_BYTES
        };
        if full {
            self.target.flush();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for BatchedLine<'_> {
    fn drop(&mut self) {
        if self.urgent {
            self.target.flush();
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedStderr {
    type Writer = BatchedLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        BatchedLine {
            target: self,
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        BatchedLine {
            target: self,
            urgent: *meta.level() <= tracing::Level::WARN,
        }
    }
}
