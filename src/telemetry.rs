//! Prometheus metrics: HTTP requests, operations, AWS calls, audit events and the database
//! pool. Counters and histograms are recorded where things happen. Gauges that describe the
//! database (operations in flight, the oldest pending one, pool use) are read at scrape time.

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

pub fn record_http_request(method: &str, route: &str, status: u16, seconds: f64) {
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(seconds);
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
