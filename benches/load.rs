//! Load generators that wrk cannot express, for benches/run.sh. They send requests only to the
//! base URL they are given, which run.sh sets to a service on 127.0.0.1.
//!
//! - `post-change BASE_URL KEY DATABASE_URL COUNT`: sends COUNT workforce creations one after
//!   another and prints the latency percentiles of their `202 Accepted`. Before each request,
//!   outside the timing, it deletes every operation and workforce row so that the creation is
//!   accepted. Run it against a service with `--workers 0`.
//! - `long-poll BASE_URL KEY DATABASE_URL OPERATION_ID WAITERS SERVER_PID`: starts WAITERS
//!   requests with `?wait=30` on one unfinished operation, measures the server's CPU time while
//!   they wait, commits a change of the operation, and prints how long after the commit each
//!   waiter received its response.
//! - `audit-direct DATABASE_URL FILTER RUNS`: runs the same statement RUNS times through the
//!   service's query function on one connection, decoding the rows, and prints the p50 and p99
//!   in milliseconds: the SQL as a client sees it, without HTTP.
//! - `audit-explain FILTER RUNS`: prints a psql script that prepares the statement that
//!   `src/db/audit.rs` sends for one page of 50 filtered by FILTER (`workforce`, `actor` or
//!   `time`, with the values benches/run.sh uses) and explains its execution RUNS times.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn summary(label: &str, mut latencies: Vec<Duration>) {
    latencies.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label}: n={} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms",
        latencies.len(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.90)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap()),
    );
}

fn client(key: &str) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse()?,
    );
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .no_proxy()
        .build()?)
}

async fn post_change(
    base_url: &str,
    key: &str,
    database_url: &str,
    count: usize,
) -> anyhow::Result<()> {
    let client = client(key)?;
    let db = sqlx::PgPool::connect(database_url).await?;
    let body = json!({"name": "bench-post", "cognito_config": {"user_pool": "us-east-1_AbC123", "client_id": "portal"}});
    let url = format!("{base_url}/v1/regions/us-east-1/workforces");
    let mut latencies = Vec::with_capacity(count);
    for index in 0..count + 20 {
        sqlx::query("delete from operations").execute(&db).await?;
        sqlx::query("delete from workforces").execute(&db).await?;
        let started = Instant::now();
        let response = client.post(&url).json(&body).send().await?;
        let status = response.status();
        response.bytes().await?;
        let elapsed = started.elapsed();
        anyhow::ensure!(
            status == reqwest::StatusCode::ACCEPTED,
            "POST answered {status}"
        );
        // The first 20 requests warm up connections and caches.
        if index >= 20 {
            latencies.push(elapsed);
        }
    }
    summary("POST create workforce -> 202", latencies);
    Ok(())
}

/// Returns the user and system CPU time of a process, from /proc (Linux, 100 ticks a second).
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').context("unreadable /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

async fn long_poll(
    base_url: &str,
    key: &str,
    database_url: &str,
    operation_id: &str,
    waiters: usize,
    server_pid: u32,
) -> anyhow::Result<()> {
    let client = client(key)?;
    let db = sqlx::PgPool::connect(database_url).await?;
    let url = format!("{base_url}/v1/operations/{operation_id}?wait=30");
    let mut tasks = Vec::with_capacity(waiters);
    for _ in 0..waiters {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let response = client.get(&url).send().await?;
            let status = response.status();
            let body: serde_json::Value = response.json().await?;
            anyhow::ensure!(
                status == reqwest::StatusCode::OK,
                "GET answered {status}: {body}"
            );
            Ok::<_, anyhow::Error>((Instant::now(), body))
        }));
    }
    // Let every request arrive, then measure the server while all of them wait.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu_before = cpu_time(server_pid)?;
    let idle_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu_idle = cpu_time(server_pid)? - cpu_before;
    let idle_wall = idle_started.elapsed();
    println!(
        "{waiters} waiters: server CPU {:.1} ms in {:.1} s of waiting ({:.2}% of one core)",
        cpu_idle.as_secs_f64() * 1000.0,
        idle_wall.as_secs_f64(),
        100.0 * cpu_idle.as_secs_f64() / idle_wall.as_secs_f64()
    );

    let mut tx = db.begin().await?;
    sqlx::query(
        "update operations set aws_status = 'Initializing', updated_at = now() where id = $1::uuid",
    )
    .bind(operation_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let committed = Instant::now();

    let mut latencies = Vec::with_capacity(waiters);
    let mut unchanged = 0;
    for task in tasks {
        let (answered, body) = task.await??;
        if body["aws_status"] != "Initializing" {
            unchanged += 1;
        }
        latencies.push(answered.saturating_duration_since(committed));
    }
    anyhow::ensure!(
        unchanged == 0,
        "{unchanged} waiters were answered without the change"
    );
    summary("long-poll answer after commit", latencies);
    Ok(())
}

/// Returns the filter of one audit scenario and its parameters as SQL literals.
fn audit_scenario(
    filter: &str,
) -> anyhow::Result<(workforce_service::db::audit::AuditFilter<'static>, String)> {
    use chrono::{DateTime, Utc};
    use workforce_service::db::audit::AuditFilter;

    // run.sh picks a day that its events cover; the smoke run loads only a few days of them.
    let day = |name: &str, default: &str| -> anyhow::Result<DateTime<Utc>> {
        Ok(std::env::var(name)
            .unwrap_or_else(|_| default.to_owned())
            .parse()?)
    };
    let since = day("WFS_AUDIT_SINCE", "2026-03-01T00:00:00Z")?;
    let until = day("WFS_AUDIT_UNTIL", "2026-03-02T00:00:00Z")?;
    // The API requests one row more than the page, to know whether another page follows.
    let limit = 51;
    Ok(match filter {
        "workforce" => (
            AuditFilter {
                workforce_name: Some("wf-42"),
                limit,
                ..Default::default()
            },
            format!("'wf-42', {limit}"),
        ),
        "actor" => (
            AuditFilter {
                actor: Some("actor-7"),
                limit,
                ..Default::default()
            },
            format!("'actor-7', {limit}"),
        ),
        "time" => (
            AuditFilter {
                since: Some(since),
                until: Some(until),
                limit,
                ..Default::default()
            },
            format!(
                "'{}', '{}', {limit}",
                since.to_rfc3339(),
                until.to_rfc3339()
            ),
        ),
        other => anyhow::bail!("unknown audit filter {other}; use workforce, actor or time"),
    })
}

/// Runs one audit scenario's statement through the service's own query function and prints
/// "p50 p99" in milliseconds.
async fn audit_direct(database_url: &str, filter: &str, runs: usize) -> anyhow::Result<()> {
    use sqlx::Connection;

    let mut connection = sqlx::PgConnection::connect(database_url).await?;
    let mut latencies = Vec::with_capacity(runs);
    for index in 0..runs + 20 {
        let (audit_filter, _) = audit_scenario(filter)?;
        let started = Instant::now();
        let rows = workforce_service::db::audit::list(&mut connection, audit_filter).await?;
        let elapsed = started.elapsed();
        anyhow::ensure!(!rows.is_empty(), "the {filter} page is empty");
        // The first runs warm the statement cache and the plan, as the API's would be.
        if index >= 20 {
            latencies.push(elapsed);
        }
    }
    latencies.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{:.2} {:.2}",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99))
    );
    Ok(())
}

/// Prints the psql script of `audit-explain`. The statement comes from the service's own query
/// builder, so the benchmark explains exactly what the API runs.
fn audit_explain(filter: &str, runs: usize) -> anyhow::Result<()> {
    use workforce_service::db::audit::list_query;

    let (audit_filter, parameters) = audit_scenario(filter)?;
    println!(
        "prepare page as {};",
        list_query(&audit_filter).sql().as_str()
    );
    for _ in 0..runs {
        println!("explain (analyze, buffers) execute page({parameters});");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let strings: Vec<&str> = args.iter().map(String::as_str).collect();
    match strings.as_slice() {
        ["post-change", base_url, key, database_url, count] => {
            post_change(base_url, key, database_url, count.parse()?).await
        }
        [
            "long-poll",
            base_url,
            key,
            database_url,
            operation_id,
            waiters,
            pid,
        ] => {
            long_poll(
                base_url,
                key,
                database_url,
                operation_id,
                waiters.parse()?,
                pid.parse()?,
            )
            .await
        }
        ["audit-explain", filter, runs] => audit_explain(filter, runs.parse()?),
        ["audit-direct", database_url, filter, runs] => {
            audit_direct(database_url, filter, runs.parse()?).await
        }
        _ => anyhow::bail!(
            "usage: load post-change BASE_URL KEY DATABASE_URL COUNT\n       load long-poll BASE_URL KEY DATABASE_URL OPERATION_ID WAITERS SERVER_PID\n       load audit-explain workforce|actor|time RUNS\n       load audit-direct DATABASE_URL workforce|actor|time RUNS"
        ),
    }
}
