//! Poll scheduling from recorded durations, and the shared budget of SageMaker calls.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

use workforce_service::budget::CallBudget;
use workforce_service::worker::{Worker, WorkerSettings};

use crate::support::*;

const OTHER_REGION: &str = "us-west-2";

/// SageMaker calls of one action that the sandbox counted in a region.
fn region_calls(app: &TestApp, region: &str, action: &str) -> u64 {
    app.sandbox()
        .call_counts()
        .values()
        .filter_map(|regions| regions.get(region))
        .filter_map(|actions| actions.get(action))
        .sum()
}

/// Returns all SageMaker calls that the sandbox counted in a region.
fn region_sagemaker_calls(app: &TestApp, region: &str) -> u64 {
    [
        "CreateWorkforce",
        "DescribeWorkforce",
        "UpdateWorkforce",
        "DeleteWorkforce",
        "ListWorkforces",
    ]
    .iter()
    .map(|action| region_calls(app, region, action))
    .sum()
}

async fn insert_durations(app: &TestApp, region: &str, kind: &str, millis: &[i64]) {
    for duration_ms in millis {
        sqlx::query(
            "insert into operation_durations (region, kind, duration_ms) values ($1, $2, $3)",
        )
        .bind(region)
        .bind(kind)
        .bind(duration_ms)
        .execute(&app.db)
        .await
        .expect("insert a duration");
    }
}

#[tokio::test]
async fn finished_operation_records_duration() {
    let app = TestApp::spawn().await;

    let started = Instant::now();
    app.create_active_workforce("timed", None).await;
    let took = started.elapsed();

    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("select region, kind, duration_ms from operation_durations")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, REGION);
    assert_eq!(rows[0].1, "create_workforce");
    // The recorded duration is the midpoint between the last two polls, counted from when
    // SageMaker accepted the call: it can be shorter than the sandbox's 150 ms, but not longer
    // than the creation that the test timed.
    assert!(rows[0].2 > 0, "{rows:?}");
    assert!(
        u128::try_from(rows[0].2).unwrap() <= took.as_millis(),
        "{rows:?} for a creation that took {took:?}"
    );
}

#[tokio::test]
async fn history_makes_polls_sparse() {
    // Each creation takes 1.5 s. us-east-1 has a history of creations that took that long;
    // us-west-2 has none and polls with the exponential backoff (20 ms doubling to 100 ms).
    // The call budget is off, so that it does not thin out the backoff's polls.
    let app = TestApp::spawn_with(TestOptions {
        sandbox_delay_ms: 1_500,
        extra_args: vec!["--aws-calls-per-second=0".to_owned()],
        ..Default::default()
    })
    .await;
    insert_durations(
        &app,
        REGION,
        "create_workforce",
        &[1_480, 1_500, 1_510, 1_520, 1_530, 1_540, 1_550, 1_560],
    )
    .await;
    app.sandbox().reset_call_counts();

    let (status, with_history) = app.create_workforce(cognito_workforce("learned")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{with_history}");
    let mut body = json!({"name": "fresh", "cognito_config": {"user_pool": "us-west-2_AbC123", "client_id": "portal"}});
    let (status, _, without_history) = app
        .request(
            reqwest::Method::POST,
            &format!("/v1/regions/{OTHER_REGION}/workforces"),
            Some(body.take()),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{without_history}");
    for operation in [&with_history, &without_history] {
        let finished = app
            .wait_for_operation(operation["id"].as_str().unwrap())
            .await;
        assert_eq!(finished["status"], "succeeded", "{finished}");
    }

    let adaptive = region_calls(&app, REGION, "DescribeWorkforce");
    let backoff = region_calls(&app, OTHER_REGION, "DescribeWorkforce");
    // Backoff: about 1.5 s / 100 ms = 15 polls. Adaptive: 400 ms steps (the cap, four times
    // the longest backoff delay) to 1.2 s, then one or two polls at the recorded durations.
    // On a loaded machine each poll takes longer, so fewer fit in the 1.5 s: one full run of
    // the suite failed a bound of 12.
    assert!(backoff >= 8, "backoff polls: {backoff}");
    assert!(
        adaptive * 2 <= backoff,
        "adaptive polls: {adaptive}, backoff polls: {backoff}"
    );
}

/// Connects a second pool to the test's database, as another process would.
async fn second_pool(app: &TestApp) -> sqlx::PgPool {
    PgPoolOptions::new()
        .max_connections(8)
        .connect(&app.database_url)
        .await
        .expect("connect a second pool")
}

#[tokio::test]
async fn call_budget_grants_limit_per_second_across_processes() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        ..Default::default()
    })
    .await;
    let first = CallBudget::new(app.db.clone(), "default", 5);
    let second = CallBudget::new(second_pool(&app).await, "default", 5);

    // Start just after a second begins, so that the burst fits in one second.
    let into_second = chrono::Utc::now().timestamp_subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from(1_050 - into_second))).await;
    let started = Instant::now();
    let mut takes = Vec::new();
    for index in 0..40 {
        let budget = if index % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        takes.push(tokio::spawn(async move {
            budget.try_take(REGION, 1).await.expect("take from budget")
        }));
    }
    let mut granted = 0;
    for take in takes {
        granted += usize::from(take.await.unwrap());
    }
    let burst = started.elapsed();

    assert!(burst < Duration::from_millis(900), "burst took {burst:?}");
    assert_eq!(granted, 5);
    let other_region = first.try_take(OTHER_REGION, 1).await.unwrap();
    assert!(other_region, "each region has its own budget");
}

#[tokio::test]
async fn two_processes_stay_within_call_budget() {
    // Two workers in the service and two in a second "process" with its own pool and budget
    // handle, all polling every 20 ms to 100 ms, against a budget of 5 calls per second.
    let app = TestApp::spawn_with(TestOptions {
        sandbox_delay_ms: 3_000,
        extra_args: vec!["--aws-calls-per-second=5".to_owned()],
        ..Default::default()
    })
    .await;
    let other_db = second_pool(&app).await;
    let other_budget = CallBudget::new(other_db.clone(), "default", 5);
    let shutdown = CancellationToken::new();
    let wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let state = &app.service().state;
    let mut other_workers = Vec::new();
    for index in 0..2 {
        let worker = Worker::new(
            other_db.clone(),
            state.aws.clone(),
            state.sealer.clone(),
            WorkerSettings {
                lease: Duration::from_secs(30),
                poll_initial: Duration::from_millis(20),
                poll_max: Duration::from_millis(100),
                idle_poll: Duration::from_millis(10),
            },
            format!("other-process-{index}"),
        )
        .with_budget(other_budget.clone());
        other_workers.push(tokio::spawn(worker.run(wake.clone(), shutdown.clone())));
    }
    app.sandbox().reset_call_counts();
    let started = Instant::now();

    let (status, operation) = app.create_workforce(cognito_workforce("budgeted")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{operation}");
    let finished = app
        .wait_for_operation(operation["id"].as_str().unwrap())
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let calls = region_sagemaker_calls(&app, REGION);
    shutdown.cancel();
    for worker in other_workers {
        worker.await.unwrap();
    }

    assert_eq!(finished["status"], "succeeded", "{finished}");
    // The calls fall into at most ceil(seconds) + 1 whole seconds of the budget.
    let allowed = 5 * (seconds.ceil() as u64 + 1);
    assert!(
        calls <= allowed,
        "{calls} SageMaker calls in {seconds:.2} s; the budget allows {allowed}"
    );
    // Without the budget the 20 ms to 100 ms backoff polls about 35 times in 3 s.
    assert!(calls >= 4, "{calls} SageMaker calls");
}

/// The listing of each region at start is a SageMaker call too, taken from the shared budget.
#[tokio::test]
async fn region_listing_takes_from_budget() {
    let app = TestApp::spawn_with(TestOptions {
        workers: 0,
        extra_args: vec!["--aws-calls-per-second=5".to_owned()],
        ..Default::default()
    })
    .await;
    app.service().regions_synced().await;
    let regions: Vec<String> =
        sqlx::query_scalar("select region from aws_call_budgets where calls > 0 order by region")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(regions, ["us-east-1", "us-west-2"]);
}
