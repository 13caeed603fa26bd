//! When to call DescribeWorkforce next for an operation that SageMaker is applying.
//!
//! With enough history for the operation's region and kind, polls go where completion is
//! likely: the next poll is at the time by which a fixed share of the remaining recorded
//! durations have ended. That spaces polls widely while few operations finish and closely where
//! many do. Without enough history the schedule is a capped exponential backoff with jitter.

use std::time::Duration;

/// Minimum number of recorded durations of a region and kind before the schedule follows them.
pub const MIN_SAMPLES: usize = 5;

/// Most recent durations of a region and kind that the schedule reads.
pub const HISTORY_SIZE: i64 = 200;

/// Share of the remaining recorded durations that end before each adaptive poll. Each poll
/// then finds the change done with about this probability, so an operation takes about
/// `1 / STEP_PROBABILITY` polls once its history is known. A smaller share shortens the
/// detection delay and costs more polls; 0.05 was chosen with `benches/poller_simulation.rs`
/// (results in `docs/benchmarks.md`).
pub const STEP_PROBABILITY: f64 = 0.05;

/// Delays of the poll schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollSchedule {
    /// First delay of the exponential fallback; it doubles with each poll.
    pub initial: Duration,
    /// Maximum delay of the exponential fallback.
    pub max: Duration,
    /// Minimum delay of the adaptive schedule.
    pub floor: Duration,
    /// Maximum delay of the adaptive schedule.
    pub cap: Duration,
    /// See [`STEP_PROBABILITY`].
    pub step_probability: f64,
}

impl PollSchedule {
    /// Derives the adaptive floor and cap from the fallback's delays: half the first delay, and
    /// four times the longest.
    pub fn from_backoff(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            floor: initial / 2,
            cap: max.saturating_mul(4),
            step_probability: STEP_PROBABILITY,
        }
    }

    /// Returns the delay before the next poll.
    ///
    /// `history` contains recorded durations sorted in ascending order, `elapsed` is the time
    /// since SageMaker accepted the change, `attempt` counts polls from 1, and `jitter` is a
    /// random factor in 0.8..=1.2 that only the fallback uses.
    pub fn next_delay(
        &self,
        history: &[Duration],
        elapsed: Duration,
        attempt: u32,
        jitter: f64,
    ) -> Duration {
        match self.adaptive_delay(history, elapsed) {
            Some(delay) => delay,
            None => self.backoff_delay(attempt).mul_f64(jitter),
        }
    }

    /// Returns the delay to the `step_probability` quantile of the durations longer than
    /// `elapsed`, or None when the history is too short or every recorded duration has passed.
    fn adaptive_delay(&self, history: &[Duration], elapsed: Duration) -> Option<Duration> {
        if history.len() < MIN_SAMPLES {
            return None;
        }
        let first_remaining = history.partition_point(|d| *d <= elapsed);
        let remaining = history.len() - first_remaining;
        if remaining == 0 {
            return None;
        }
        let step = (self.step_probability * remaining as f64).ceil().max(1.0) as usize;
        let target = history[first_remaining + step - 1];
        let delay = target.saturating_sub(elapsed);
        Some(delay.clamp(self.floor, self.cap.max(self.floor)))
    }

    /// Capped exponential delay without jitter.
    fn backoff_delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        self.initial.saturating_mul(1 << exponent).min(self.max)
    }
}

/// Draws the jitter factor of [`PollSchedule::next_delay`], so that many operations do not poll
/// in step.
pub fn random_jitter() -> f64 {
    0.8 + fastrand::f64() * 0.4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|s| Duration::from_secs(*s)).collect()
    }

    fn schedule() -> PollSchedule {
        PollSchedule::from_backoff(Duration::from_secs(2), Duration::from_secs(30))
    }

    #[test]
    fn short_history_uses_backoff() {
        let history = seconds(&[100, 110, 120, 130]);
        let schedule = schedule();
        let delays: Vec<_> = (1..=6)
            .map(|attempt| schedule.next_delay(&history, Duration::ZERO, attempt, 1.0))
            .collect();
        assert_eq!(delays, seconds(&[2, 4, 8, 16, 30, 30]));
    }

    #[test]
    fn backoff_applies_jitter() {
        let delay = schedule().next_delay(&[], Duration::ZERO, 2, 1.2);
        assert_eq!(delay, Duration::from_millis(4_800));
    }

    #[test]
    fn adaptive_ignores_jitter() {
        let history = seconds(&[60, 61, 62, 63, 64]);
        let low = schedule().next_delay(&history, Duration::ZERO, 1, 0.8);
        let high = schedule().next_delay(&history, Duration::ZERO, 1, 1.2);
        assert_eq!(low, high);
    }

    #[test]
    fn first_poll_waits_for_likely_completion() {
        // Ten operations that all took 100 to 109 s: the first poll goes at the fastest.
        let history = seconds(&[100, 101, 102, 103, 104, 105, 106, 107, 108, 109]);
        let schedule = PollSchedule {
            cap: Duration::from_secs(600),
            ..schedule()
        };
        let delay = schedule.next_delay(&history, Duration::ZERO, 1, 1.0);
        assert_eq!(delay, Duration::from_secs(100));
    }

    #[test]
    fn adaptive_delay_is_capped() {
        let history = seconds(&[300, 301, 302, 303, 304]);
        let delay = schedule().next_delay(&history, Duration::ZERO, 1, 1.0);
        assert_eq!(delay, Duration::from_secs(120));
    }

    #[test]
    fn adaptive_delay_has_floor() {
        let history = seconds(&[100, 100, 100, 100, 100, 100]);
        let delay = schedule().next_delay(&history, Duration::from_millis(99_900), 3, 1.0);
        assert_eq!(delay, Duration::from_secs(1));
    }

    #[test]
    fn polls_densely_where_durations_cluster() {
        // Half the operations end within a second of 200 s, the rest spread out to 1,000 s.
        let mut values: Vec<u64> = (0..50).map(|i| 200 + i % 2).collect();
        values.extend((0..50).map(|i| 300 + i * 14));
        values.sort_unstable();
        let history = seconds(&values);
        let schedule = PollSchedule {
            cap: Duration::from_secs(1_000),
            ..schedule()
        };

        let in_cluster = schedule.next_delay(&history, Duration::from_secs(199), 1, 1.0);
        let in_tail = schedule.next_delay(&history, Duration::from_secs(400), 1, 1.0);

        assert_eq!(in_cluster, Duration::from_secs(1));
        assert_eq!(in_tail, Duration::from_secs(40));
    }

    #[test]
    fn takes_quantile_of_remaining_durations() {
        // 15 durations remain after 150 s. A twentieth of them rounds up to one, so the poll
        // goes at the first of them, 160 s.
        let values: Vec<u64> = (1..=30).map(|i| i * 10).collect();
        let delay = schedule().next_delay(&seconds(&values), Duration::from_secs(150), 1, 1.0);
        assert_eq!(delay, Duration::from_secs(10));
    }

    #[test]
    fn past_all_history_falls_back_to_backoff() {
        let history = seconds(&[10, 20, 30, 40, 50]);
        let delay = schedule().next_delay(&history, Duration::from_secs(60), 3, 1.0);
        assert_eq!(delay, Duration::from_secs(8));
    }
}
