//! Prometheus metrics: HTTP requests, operations, AWS calls, audit events and the database
//! pool. Counters and histograms are recorded where things happen. Gauges that describe the
//! database (operations in flight, the oldest pending one, pool use) are read at scrape time.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

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

/// Lets through at most one warning per interval, for warnings that a client can cause on
/// every request and that would otherwise flood the log. It counts the warnings it holds back,
/// so that the next warning that passes can report how many were left out.
#[derive(Debug)]
pub struct WarningGate {
    interval: Duration,
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    last: Option<Instant>,
    held_back: u64,
}

impl WarningGate {
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(GateState {
                last: None,
                held_back: 0,
            }),
        }
    }

    /// Returns how many warnings were held back since the last logged one when a warning may
    /// be logged now. Within the interval, it counts the warning and returns `None`.
    pub fn pass(&self) -> Option<u64> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state
            .last
            .is_some_and(|at| now.duration_since(at) < self.interval)
        {
            state.held_back += 1;
            return None;
        }
        state.last = Some(now);
        Some(std::mem::take(&mut state.held_back))
    }
}

/// Installs the process-wide recorder once and returns the handle that renders it.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
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
                .expect("no other metrics recorder is installed");
            describe_metrics();
            handle
        })
        .clone()
}

/// Gives each metric the help text that `/metrics` shows in its `# HELP` line.
fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

    describe_counter!(
        "http_requests_total",
        "HTTP requests served, by method, route and status (499: closed by the client)"
    );
    describe_counter!(
        "http_connection_errors_total",
        "Connections that ended with an error, by reason: header_timeout (no complete request \
         head in time, which includes idle keep-alive connections), write_timeout, \
         malformed_request (answered by hyper with 400 or 431, outside http_requests_total), \
         closed_mid_request or other"
    );
    describe_gauge!(
        "http_connections_open",
        "HTTP connections open in this process"
    );
    describe_counter!(
        "http_connection_cap_reached_total",
        "Times the open connections reached --http-max-connections, after which further connections wait to be accepted"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival to its response, by method, route and status"
    );
    describe_counter!(
        "aws_calls_total",
        "Calls to AWS, by service, operation and outcome: success, not_found (no such workforce, \
         expected while a deletion finishes) or error"
    );
    describe_histogram!(
        "aws_call_duration_seconds",
        Unit::Seconds,
        "Duration of calls to AWS, by service, operation and outcome"
    );
    describe_counter!(
        "workforce_operations_finished_total",
        "Operations that ended, by kind and outcome"
    );
    describe_histogram!(
        "workforce_operation_duration_seconds",
        Unit::Seconds,
        "Time from an operation's acceptance to its end, by kind and outcome"
    );
    describe_counter!(
        "audit_events_written_total",
        "Audit events written by this process, by action"
    );
    describe_counter!(
        "workforce_aws_budget_deferrals_total",
        "Worker steps put off because the region's SageMaker call budget was spent"
    );
    describe_gauge!(
        "db_pool_connections",
        "Connections of this process's database pool, by state (idle or in_use)"
    );
    describe_gauge!(
        "workforce_operations_in_flight",
        "Operations pending or running, across all processes on the database"
    );
    describe_gauge!(
        "workforce_operations_oldest_pending_age_seconds",
        Unit::Seconds,
        "Age of the oldest pending operation, 0 when none is pending"
    );
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

/// Lines collected beyond this size wake the background thread to write them.
const LOG_BUFFER_BYTES: usize = 256 * 1024;

/// Lines collected beyond this size are written by the thread that logs, which bounds the
/// memory of the batch when standard error is slower than the logging.
const LOG_BUFFER_LIMIT_BYTES: usize = 8 * 1024 * 1024;

/// How often the background thread writes the collected log lines.
const LOG_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// A log destination that collects lines in memory and writes them to standard error in batches,
/// so that the access log line of each request costs no system call.
///
/// A background thread writes the batch every 100 ms, or sooner once it reaches 256 KiB, so that
/// a request does not wait for the disk. Warnings and errors are written at once, with the lines
/// before them, and [`BatchedStderr::flush`] writes the rest at exit. A process killed with
/// SIGKILL loses at most the last 100 ms of informational lines.
#[derive(Clone)]
pub struct BatchedStderr(std::sync::Arc<LogBuffer>);

struct LogBuffer {
    lines: std::sync::Mutex<Vec<u8>>,
    /// Wakes the background thread when the batch reaches [`LOG_BUFFER_BYTES`].
    batch_full: std::sync::Condvar,
    /// Held while a batch is written, so that batches reach standard error in order.
    writing: std::sync::Mutex<()>,
}

impl BatchedStderr {
    /// Creates the destination and starts its flushing thread.
    pub fn start() -> Self {
        let batched = Self(std::sync::Arc::new(LogBuffer {
            lines: std::sync::Mutex::new(Vec::with_capacity(64 * 1024)),
            batch_full: std::sync::Condvar::new(),
            writing: std::sync::Mutex::new(()),
        }));
        let flusher = batched.clone();
        std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || {
                loop {
                    flusher.wait_for_batch();
                    flusher.flush();
                }
            })
            .expect("the log flushing thread starts");
        batched
    }

    /// Waits until the flush interval has passed or the batch is full.
    fn wait_for_batch(&self) {
        let lines = self
            .0
            .lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _waited = self
            .0
            .batch_full
            .wait_timeout_while(lines, LOG_FLUSH_INTERVAL, |lines| {
                lines.len() < LOG_BUFFER_BYTES
            })
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }

    /// Adds a line written by `write_line` to the batch.
    fn append(&self, write_line: impl FnOnce(&mut Vec<u8>)) {
        let (before, after) = {
            let mut lines = self
                .0
                .lines
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let before = lines.len();
            write_line(&mut lines);
            (before, lines.len())
        };
        if after >= LOG_BUFFER_LIMIT_BYTES {
            self.flush();
        } else if before < LOG_BUFFER_BYTES && after >= LOG_BUFFER_BYTES {
            self.0.batch_full.notify_one();
        }
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
        self.target.append(|lines| lines.extend_from_slice(buf));
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

/// The access log line of one request.
pub struct AccessLine<'a> {
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub duration: std::time::Duration,
    pub request_id: &'a str,
    pub actor: &'a str,
}

/// Writes access log lines straight into the batch, in the same layout as `tracing`'s text or
/// JSON formatter.
///
/// `tracing`'s formatter took about 12% of the server's CPU per cached `GET` in a profile: it
/// visits each field through `fmt::Debug` and formats the time through `fmt::Display`. This
/// writer formats the few fields of the line directly.
struct AccessLog {
    sink: BatchedStderr,
    json: bool,
}

static ACCESS_LOG: OnceLock<AccessLog> = OnceLock::new();

/// The target that `tracing` would name for the access log; filters apply to it as before.
const ACCESS_LOG_TARGET: &str = "workforce_service::http::middleware";

/// Sends access log lines to `sink` from now on. Without this call, for example when the lines
/// go to a terminal in colour, [`write_access_line`] returns false and the caller logs them
/// through `tracing`.
pub fn install_access_log(sink: BatchedStderr, json: bool) {
    let _ = ACCESS_LOG.set(AccessLog { sink, json });
}

/// Writes `line` to the access log installed by [`install_access_log`]; returns false when
/// none is installed. The caller checks first that the level is enabled.
pub fn write_access_line(line: &AccessLine<'_>) -> bool {
    let Some(log) = ACCESS_LOG.get() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    log.sink
        .append(|out| format_access_line(out, line, log.json, now));
    true
}

/// One field value of an access log line.
enum FieldValue<'a> {
    /// Text that the text format writes as it is, as `tracing` does for `Display` fields.
    Plain(&'a str),
    /// Text that both formats quote.
    Quoted(&'a str),
    Number(u16),
    Milliseconds(u128),
}

/// Writes the access log line of `line` at the time `now` (since 1970) to `out`.
fn format_access_line(
    out: &mut Vec<u8>,
    line: &AccessLine<'_>,
    json: bool,
    now: std::time::Duration,
) {
    let fields = [
        ("http.method", FieldValue::Plain(line.method)),
        ("http.route", FieldValue::Plain(line.route)),
        ("http.status", FieldValue::Number(line.status)),
        (
            "duration_ms",
            FieldValue::Milliseconds(line.duration.as_micros()),
        ),
        ("request_id", FieldValue::Quoted(line.request_id)),
        ("actor", FieldValue::Quoted(line.actor)),
    ];
    if json {
        out.extend_from_slice(b"{\"timestamp\":\"");
        write_timestamp(out, now);
        out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\"");
    } else {
        write_timestamp(out, now);
        out.extend_from_slice(b"  INFO ");
        out.extend_from_slice(ACCESS_LOG_TARGET.as_bytes());
        out.extend_from_slice(b": request");
    }
    for (name, value) in fields {
        if json {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
        } else {
            out.push(b' ');
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
        }
        match value {
            FieldValue::Plain(text) if !json => out.extend_from_slice(text.as_bytes()),
            FieldValue::Plain(text) | FieldValue::Quoted(text) => write_json_string(out, text),
            FieldValue::Number(number) => write_decimal(out, u128::from(number)),
            FieldValue::Milliseconds(micros) => write_milliseconds(out, micros),
        }
    }
    if json {
        out.extend_from_slice(b",\"target\":\"");
        out.extend_from_slice(ACCESS_LOG_TARGET.as_bytes());
        out.extend_from_slice(b"\"}\n");
    } else {
        out.push(b'\n');
    }
}

/// Writes `text` as a quoted JSON string. The text format quotes strings the same way.
fn write_json_string(out: &mut Vec<u8>, text: &str) {
    // Request ids and caller names are nearly always printable ASCII with nothing to escape,
    // and copying them directly skips serde_json's escaping loop.
    if text
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        return;
    }
    // A string always serializes, and `Vec`'s `io::Write` never returns an error.
    let _ = serde_json::to_writer(&mut *out, text);
}

fn write_decimal(out: &mut Vec<u8>, mut value: u128) {
    let mut digits = [0u8; 39];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Writes microseconds as milliseconds with three decimals, such as `0.845`.
fn write_milliseconds(out: &mut Vec<u8>, micros: u128) {
    write_decimal(out, micros / 1000);
    let fraction = (micros % 1000) as u16;
    out.extend_from_slice(&[
        b'.',
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ]);
}

/// Writes a time as RFC 3339 in UTC with microseconds, such as `2026-12-05T02:55:17.145930Z`,
/// the layout of `tracing`'s default timer.
fn write_timestamp(out: &mut Vec<u8>, since_epoch: std::time::Duration) {
    let seconds = since_epoch.as_secs();
    let (year, month, day) = civil_date(seconds / 86_400);
    let second_of_day = seconds % 86_400;

    let year = year.min(9999);
    out.extend_from_slice(&[
        b'0' + (year / 1000) as u8,
        b'0' + (year / 100 % 10) as u8,
        b'0' + (year / 10 % 10) as u8,
        b'0' + (year % 10) as u8,
        b'-',
    ]);

    let mut two = |value: u64, separator: u8| {
        out.extend_from_slice(&[
            b'0' + (value / 10) as u8,
            b'0' + (value % 10) as u8,
            separator,
        ]);
    };
    two(month, b'-');
    two(day, b'T');
    two(second_of_day / 3600, b':');
    two(second_of_day / 60 % 60, b':');
    two(second_of_day % 60, b'.');

    let mut digits = [b'0'; 6];
    let mut rest = since_epoch.subsec_micros();
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits);
    out.push(b'Z');
}

/// Returns the year, month and day, in the Gregorian calendar, of a count of days since
/// 1970-01-01. The tests compare it with chrono.
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_gate_passes_one_warning_per_interval() {
        let gate = WarningGate::new(Duration::from_secs(3600));
        assert_eq!(gate.pass(), Some(0));
        assert_eq!(gate.pass(), None);
        assert_eq!(gate.pass(), None);

        let short = WarningGate::new(Duration::from_millis(10));
        assert_eq!(short.pass(), Some(0));
        assert_eq!(short.pass(), None);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            short.pass(),
            Some(1),
            "the next warning counts the one held back"
        );
        assert_eq!(short.pass(), None);
    }

    fn timestamp(since_epoch: std::time::Duration) -> String {
        let mut out = Vec::new();
        write_timestamp(&mut out, since_epoch);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn timestamps_match_chrono() {
        use std::time::Duration;

        assert_eq!(timestamp(Duration::ZERO), "1970-01-01T00:00:00.000000Z");
        // Leap days, ends of years and centuries, and a time with every field above 9.
        let seconds = [
            951_782_400,   // 2000-02-29
            1_709_164_799, // 2024-02-28T23:59:59
            1_709_251_200, // 2024-03-01
            4_102_444_800, // 2100-01-01
            1_796_439_317, // 2026-12-05T02:55:17
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let random = std::iter::repeat_with(|| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % 8_000_000_000
        });
        for second in seconds.into_iter().chain(random.take(10_000)) {
            let time = Duration::new(second, 123_456_789);
            let expected = chrono::DateTime::from_timestamp(second as i64, 123_456_789)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string();
            assert_eq!(timestamp(time), expected, "{second}");
        }
    }

    #[test]
    fn access_lines_have_the_layout_of_tracing() {
        let line = AccessLine {
            method: "GET",
            route: "/v1/operations/{id}",
            status: 200,
            duration: std::time::Duration::from_nanos(844_508),
            request_id: "a\"b\\c",
            actor: "admin",
        };
        let now = std::time::Duration::new(1_796_439_317, 145_930_000);
        let mut text = Vec::new();
        format_access_line(&mut text, &line, false, now);
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "2026-12-05T02:55:17.145930Z  INFO workforce_service::http::middleware: request \
             http.method=GET http.route=/v1/operations/{id} http.status=200 duration_ms=0.844 \
             request_id=\"a\\\"b\\\\c\" actor=\"admin\"\n"
        );
        let mut json = Vec::new();
        format_access_line(&mut json, &line, true, now);
        assert_eq!(json.last(), Some(&b'\n'));
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "timestamp": "2026-12-05T02:55:17.145930Z",
                "level": "INFO",
                "message": "request",
                "http.method": "GET",
                "http.route": "/v1/operations/{id}",
                "http.status": 200,
                "duration_ms": 0.844,
                "request_id": "a\"b\\c",
                "actor": "admin",
                "target": "workforce_service::http::middleware",
            })
        );
    }

    #[test]
    fn quoted_strings_match_serde_json() {
        for text in [
            "",
            "plain-id_1.2:3",
            "with space",
            "quote\"",
            "back\\slash",
            "tab\tnewline\n",
            "\u{7f}\u{1}",
            "é and 視",
        ] {
            let mut out = Vec::new();
            write_json_string(&mut out, text);
            assert_eq!(out, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn milliseconds_keep_three_decimals() {
        for (micros, expected) in [
            (0, "0.000"),
            (845, "0.845"),
            (12_005, "12.005"),
            (1_000, "1.000"),
        ] {
            let mut out = Vec::new();
            write_milliseconds(&mut out, micros);
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }
}
