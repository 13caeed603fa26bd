//! A budget of SageMaker calls per second for each AWS account and region, shared through
//! PostgreSQL by every worker of every process on the database.
//!
//! The budget counts calls in whole seconds of the database server's clock, in one row per
//! account and region that an `insert ... on conflict do update` takes from atomically. A
//! worker takes the calls of a whole step before it starts, and a worker that finds too few
//! left reschedules the step for the next second instead of calling.

use std::time::Duration;

use sqlx::PgPool;

/// SageMaker calls that a step may make: the DescribeWorkforce that starts every step, and,
/// while submitting, the mutating call and the DescribeWorkforce after it.
pub const SUBMIT_STEP_CALLS: u32 = 3;

/// SageMaker calls of a step that only polls: one DescribeWorkforce.
pub const POLL_STEP_CALLS: u32 = 1;

/// The shared budget of one process.
#[derive(Debug, Clone)]
pub struct CallBudget {
    db: PgPool,
    account: String,
    calls_per_second: u32,
}

impl CallBudget {
    /// Creates a budget of `calls_per_second` SageMaker calls per region of `account`; 0 means
    /// no limit. Processes that use the same AWS account must pass the same account name.
    pub fn new(db: PgPool, account: impl Into<String>, calls_per_second: u32) -> Self {
        Self {
            db,
            account: account.into(),
            calls_per_second,
        }
    }

    pub fn calls_per_second(&self) -> u32 {
        self.calls_per_second
    }

    /// Takes `calls` calls from the current second of `region`'s budget. Returns false, and
    /// takes nothing, when fewer are left. A request for more calls than the whole budget
    /// takes the whole budget.
    pub async fn try_take(&self, region: &str, calls: u32) -> Result<bool, sqlx::Error> {
        if self.calls_per_second == 0 {
            return Ok(true);
        }
        let calls = calls.min(self.calls_per_second) as i32;
        let limit = self.calls_per_second as i32;
        let calls_after = sqlx::query_scalar!(
            "insert into aws_call_budgets as b (account, region, window_start, calls)
             values ($1, $2, floor(extract(epoch from clock_timestamp()))::bigint, $3)
             on conflict (account, region) do update
                set calls = case when b.window_start = excluded.window_start
                                 then b.calls + excluded.calls
                                 else excluded.calls end,
                    window_start = excluded.window_start
              where b.window_start <> excluded.window_start or b.calls + excluded.calls <= $4
             returning calls",
            self.account,
            region,
            calls,
            limit,
        )
        .fetch_optional(&self.db)
        .await?;
        Ok(calls_after.is_some())
    }
}

/// Delay after which a step that found the budget spent tries again: the rest of the current
/// second, and up to a fifth of a second more so that waiting workers do not all retry at once.
pub fn retry_delay(now: chrono::DateTime<chrono::Utc>) -> Duration {
    let into_second = Duration::from_nanos(u64::from(now.timestamp_subsec_nanos()));
    let rest = Duration::from_secs(1).saturating_sub(into_second);
    rest + Duration::from_millis(fastrand::u64(0..200))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_waits_for_next_second() {
        let now = chrono::DateTime::from_timestamp(1_700_000_000, 750_000_000).unwrap();
        let delay = retry_delay(now);
        assert!(delay >= Duration::from_millis(250), "{delay:?}");
        assert!(delay < Duration::from_millis(450), "{delay:?}");
    }
}
