//! When to call DescribeWorkforce next for an operation that SageMaker is applying.
//!
//! With enough history for the operation's region and kind, the schedule trades detection
//! delay against calls at a fixed price, [`CALL_COST`]. Each gap ends when the expected wait
//! that it causes, averaged over the operations still running, equals that price. With f the
//! density of the durations, S their survival function and λ the rate of polls, the mean delay
//! is about ∫ f/(2λ) dt and the mean number of calls about ∫ λS dt. Minimizing delay plus
//! `CALL_COST` times calls gives λ = sqrt(f / (2 · CALL_COST · S)), so each gap g satisfies
//! hazard · g² / 2 = `CALL_COST`. Gaps are proportional to 1/sqrt(hazard): short where many
//! operations end, long before the first ones end and in a thin tail. The schedule evaluates
//! the expected wait over the whole gap rather than the hazard at one point, because the
//! operations that end within a long gap are not spread evenly over it. This matters for the
//! first poll after submission.
//!
//! The distribution comes from the recorded durations, smoothed as described at
//! [`SMOOTHING_NEIGHBORS`]. In `benches/poller_simulation.rs` the resulting mean delay is 4 to
//! 9% above the least that a schedule with the same floor, cap and number of polls reaches when
//! it is given the true distribution. Without enough history, or once the operation has
//! outlasted everything recorded, the schedule is a capped exponential backoff with jitter.

use std::time::Duration;

/// Minimum number of recorded durations of a region and kind before the schedule follows them.
pub const MIN_SAMPLES: usize = 5;

/// Most recent durations of a region and kind that the schedule reads.
pub const HISTORY_SIZE: i64 = 200;

/// Detection delay that one DescribeWorkforce call is worth. Gaps scale with the square root of
/// this cost, so halving it gives about 1.4 times the polls and 0.7 times the mean delay once
/// operations start to end. 160 ms was chosen with `benches/poller_simulation.rs`. With the
/// simulation's four kinds of operation it keeps both the calls and the mean delay under half of
/// Terraform's up to sigma 0.15. Wider spreads miss at least one of the two, and at sigma 0.2
/// the simulation's bound shows that no schedule with the service's floor and cap meets both.
pub const CALL_COST: Duration = Duration::from_millis(160);

/// Neighbours that set the smoothing width of each recorded duration.
///
/// A few hundred recorded durations give a noisy distribution, and gaps computed from the raw
/// records follow that noise. So each recorded duration is spread uniformly over plus or minus
/// its distance to its 20th nearest neighbour. The width follows the local spacing, so a tight
/// cluster stays tight and two separate clusters stay apart. In `benches/poller_simulation.rs`
/// at sigma 0.15, the raw records (`--smoothing-neighbors 0`) give a mean delay 22% above the
/// least possible with the same number of polls, and the smoothed records 6% above it.
pub const SMOOTHING_NEIGHBORS: usize = 20;

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
    /// See [`CALL_COST`].
    pub call_cost: Duration,
    /// See [`SMOOTHING_NEIGHBORS`].
    pub smoothing_neighbors: usize,
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
            call_cost: CALL_COST,
            smoothing_neighbors: SMOOTHING_NEIGHBORS,
        }
    }

    /// Returns the delay before the next poll.
    ///
    /// `history` contains recorded durations in any order, `elapsed` is the time since
    /// SageMaker accepted the change, `attempt` counts polls from 1, and `jitter` is a random
    /// factor in 0.8..=1.2 that only the fallback uses.
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

    /// Returns the gap whose expected wait equals the call cost, or None when the history is
    /// too short or `elapsed` is past the smoothed range of the history.
    fn adaptive_delay(&self, history: &[Duration], elapsed: Duration) -> Option<Duration> {
        if history.len() < MIN_SAMPLES {
            return None;
        }
        let mut seconds: Vec<f64> = history.iter().map(Duration::as_secs_f64).collect();
        seconds.sort_by(f64::total_cmp);
        let distribution = SmoothedDistribution::new(&seconds, self.smoothing_neighbors);
        let gap = distribution
            .gap_for_expected_wait(elapsed.as_secs_f64(), self.call_cost.as_secs_f64())?;
        // A gap too large for a Duration is capped anyway.
        let delay = Duration::try_from_secs_f64(gap.max(0.0)).unwrap_or(self.cap);
        Some(delay.clamp(self.floor, self.cap.max(self.floor)))
    }

    /// Capped exponential delay without jitter.
    fn backoff_delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(16);
        self.initial.saturating_mul(1 << exponent).min(self.max)
    }
}

/// Point, in seconds, where the slope of the smoothed CDF changes or the CDF steps up.
#[derive(Debug, Clone, Copy)]
struct Breakpoint {
    at: f64,
    slope_change: f64,
    step: f64,
}

/// Piecewise-linear CDF of the recorded durations, each spread uniformly over a window around
/// it (see [`SMOOTHING_NEIGHBORS`]). A recorded duration whose window has zero width is a step.
///
/// Each record carries probability 1/(n + 1). The remaining 1/(n + 1) is left for durations
/// longer than any recorded, whose place is unknown. It keeps the survival function above zero
/// at the end of the range, where the hazard of the smoothed CDF would otherwise grow without
/// bound and force a run of tiny gaps.
struct SmoothedDistribution {
    breakpoints: Vec<Breakpoint>,
}

impl SmoothedDistribution {
    /// Builds the distribution from durations in seconds sorted in ascending order.
    fn new(sorted: &[f64], neighbors: usize) -> Self {
        let probability = 1.0 / (sorted.len() + 1) as f64;
        let mut breakpoints = Vec::with_capacity(2 * sorted.len());
        for (index, &duration) in sorted.iter().enumerate() {
            let half_width = neighbor_distance(sorted, index, neighbors);
            if half_width > 0.0 {
                let density = probability / (2.0 * half_width);
                breakpoints.push(Breakpoint {
                    at: duration - half_width,
                    slope_change: density,
                    step: 0.0,
                });
                breakpoints.push(Breakpoint {
                    at: duration + half_width,
                    slope_change: -density,
                    step: 0.0,
                });
            } else {
                breakpoints.push(Breakpoint {
                    at: duration,
                    slope_change: 0.0,
                    step: probability,
                });
            }
        }
        breakpoints.sort_by(|a, b| a.at.total_cmp(&b.at));
        Self { breakpoints }
    }

    /// Returns the smallest gap g after `elapsed` for which the expected wait of the
    /// operations that end within the gap, E[elapsed + g − T; elapsed < T ≤ elapsed + g]
    /// divided by the share still running S(elapsed), reaches `cost` (all in seconds). The
    /// wait equals the integral of F(s) − F(elapsed) over the gap. Returns None when nothing
    /// recorded ends after `elapsed`.
    fn gap_for_expected_wait(&self, elapsed: f64, cost: f64) -> Option<f64> {
        // The CDF and its slope at `elapsed`.
        let first_after = self.breakpoints.partition_point(|b| b.at <= elapsed);
        let mut cdf = 0.0;
        let mut slope = 0.0;
        let mut position = f64::NEG_INFINITY;
        for point in &self.breakpoints[..first_after] {
            if slope > 0.0 {
                cdf += slope * (point.at - position);
            }
            position = point.at;
            slope += point.slope_change;
            cdf += point.step;
        }
        if slope > 0.0 {
            cdf += slope * (elapsed - position);
        }
        let survival = (1.0 - cdf).max(f64::MIN_POSITIVE);
        let target = cost * survival;

        // Walk forward. `rise` is F(position) − F(elapsed) and `wait` is its integral from
        // `elapsed` to `position`, which grows quadratically within each linear piece.
        let mut position = elapsed;
        let mut rise = 0.0;
        let mut wait = 0.0;
        for point in &self.breakpoints[first_after..] {
            let width = point.at - position;
            let piece = rise * width + slope * width * width / 2.0;
            if wait + piece >= target {
                return Some(position + solve_piece(rise, slope, target - wait) - elapsed);
            }
            wait += piece;
            rise += slope * width;
            position = point.at;
            slope += point.slope_change;
            rise += point.step;
        }
        // Past the last breakpoint the CDF is flat, so the wait grows linearly.
        if rise > 0.0 {
            Some(position + (target - wait) / rise - elapsed)
        } else {
            None
        }
    }
}

/// Returns the width u ≥ 0 at which rise · u + slope · u² / 2 reaches `remaining`, for
/// `remaining` ≥ 0 and either `rise` or `slope` above zero. This form of the quadratic formula
/// does not cancel when `slope` is small.
fn solve_piece(rise: f64, slope: f64, remaining: f64) -> f64 {
    let remaining = remaining.max(0.0);
    let root = (rise * rise + 2.0 * slope * remaining).sqrt();
    if rise + root > 0.0 {
        2.0 * remaining / (rise + root)
    } else {
        0.0
    }
}

/// Returns the distance from `sorted[index]` to its `neighbors`-th nearest other value, or to
/// the farthest one when there are fewer.
fn neighbor_distance(sorted: &[f64], index: usize, neighbors: usize) -> f64 {
    let count = neighbors.min(sorted.len() - 1);
    let value = sorted[index];
    // The nearest neighbours of a value in a sorted slice are contiguous around it, so the
    // window [low, high] grows by whichever side is closer.
    let (mut low, mut high) = (index, index);
    while high - low < count {
        let take_low = if low == 0 {
            false
        } else if high + 1 == sorted.len() {
            true
        } else {
            value - sorted[low - 1] <= sorted[high + 1] - value
        };
        if take_low {
            low -= 1;
        } else {
            high += 1;
        }
    }
    (value - sorted[low]).max(sorted[high] - value)
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

    /// The service's default schedule with the cost fixed at 150 ms, so that the expected
    /// values below do not change when [`CALL_COST`] is tuned.
    fn schedule() -> PollSchedule {
        PollSchedule {
            call_cost: Duration::from_millis(150),
            ..PollSchedule::from_backoff(Duration::from_secs(2), Duration::from_secs(30))
        }
    }

    fn uncapped() -> PollSchedule {
        PollSchedule {
            cap: Duration::from_secs(3_600),
            ..schedule()
        }
    }

    fn assert_near(actual: Duration, expected_seconds: f64, tolerance: f64) {
        let actual = actual.as_secs_f64();
        assert!(
            (actual - expected_seconds).abs() <= tolerance,
            "delay {actual} s, expected {expected_seconds} ± {tolerance} s"
        );
    }

    #[test]
    fn from_backoff_derives_limits() {
        let schedule = PollSchedule::from_backoff(Duration::from_secs(2), Duration::from_secs(30));
        assert_eq!(schedule.floor, Duration::from_secs(1));
        assert_eq!(schedule.cap, Duration::from_secs(120));
        assert_eq!(schedule.call_cost, CALL_COST);
        assert_eq!(schedule.smoothing_neighbors, SMOOTHING_NEIGHBORS);
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
    fn first_poll_just_after_identical_durations() {
        // Six records of 100 s have zero smoothing width, so F steps to 6/7 at 100 s. The
        // expected wait after 100 s grows at 6/7 per second and reaches 0.15 s after 0.175 s.
        let history = seconds(&[100; 6]);
        let delay = uncapped().next_delay(&history, Duration::ZERO, 1, 1.0);
        assert_near(delay, 100.175, 1e-6);
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
    fn gap_follows_square_root_law() {
        // Records at every second from 100 s to 299 s each spread over ±10 s, so the CDF
        // rises by 1/201 per second around 150 s, where F = 50.5/201. A gap g then has the
        // expected wait g² / 2 / 150.5, which equals the cost c at g = sqrt(301 c).
        let values: Vec<u64> = (100..300).collect();
        let history = seconds(&values);
        let elapsed = Duration::from_secs(150);
        let base = uncapped().next_delay(&history, elapsed, 1, 1.0);
        let four_times = PollSchedule {
            call_cost: Duration::from_millis(600),
            ..uncapped()
        }
        .next_delay(&history, elapsed, 1, 1.0);

        assert_near(base, (301.0f64 * 0.15).sqrt(), 1e-6);
        assert_near(four_times, (301.0f64 * 0.6).sqrt(), 1e-6);
    }

    #[test]
    fn polls_densely_where_durations_cluster() {
        // Half the operations end within a second of 200 s, the rest spread out to 1,000 s.
        let mut values: Vec<u64> = (0..50).map(|i| 200 + i % 2).collect();
        values.extend((0..50).map(|i| 300 + i * 14));
        let history = seconds(&values);

        let in_cluster = uncapped().next_delay(&history, Duration::from_secs(199), 1, 1.0);
        let in_tail = uncapped().next_delay(&history, Duration::from_secs(400), 1, 1.0);

        // The 25 records at 200 s have zero smoothing width, so F steps up by 25/101 there.
        // From 199 s, with all 100 records still ahead, the expected wait reaches
        // 0.15 × 100/101 at 0.6 s after the step.
        assert_near(in_cluster, 1.606, 1e-6);
        // At 400 s about 43 records remain, 14 s apart, so the hazard is about 1/602 per
        // second and the square-root law gives about sqrt(2 × 0.15 × 602) = 13.4 s. The
        // smoothed CDF is a little flatter there, and a separate Python model of the same
        // rule gives 14.852 s.
        assert_near(in_tail, 14.852, 1e-3);
    }

    #[test]
    fn skips_gap_between_clusters() {
        // Two clusters, around 60 s and around 600 s. After the first, nothing is recorded
        // until 590 s, so the next poll goes close to the start of the second cluster.
        let mut values: Vec<u64> = (0..40).map(|i| 55 + i % 10).collect();
        values.extend((0..40).map(|i| 590 + i % 20));
        let history = seconds(&values);

        let delay = uncapped().next_delay(&history, Duration::from_secs(70), 3, 1.0);

        let poll_at = 70.0 + delay.as_secs_f64();
        assert!(poll_at > 585.0, "next poll at {poll_at} s");
        assert!(poll_at < 595.0, "next poll at {poll_at} s");
    }

    #[test]
    fn history_order_does_not_matter() {
        let sorted = seconds(&[40, 50, 60, 70, 80, 90, 100]);
        let shuffled = seconds(&[70, 40, 100, 60, 90, 50, 80]);
        let elapsed = Duration::from_secs(55);
        assert_eq!(
            schedule().next_delay(&sorted, elapsed, 2, 1.0),
            schedule().next_delay(&shuffled, elapsed, 2, 1.0)
        );
    }

    #[test]
    fn past_all_history_falls_back_to_backoff() {
        // With five records every smoothing width covers the whole range, so the smoothed
        // range ends at 50 + 40 = 90 s.
        let history = seconds(&[10, 20, 30, 40, 50]);
        let delay = schedule().next_delay(&history, Duration::from_secs(91), 3, 1.0);
        assert_eq!(delay, Duration::from_secs(8));
    }

    #[test]
    fn within_smoothed_range_stays_adaptive() {
        let history = seconds(&[10, 20, 30, 40, 50]);
        let delay = schedule().next_delay(&history, Duration::from_secs(60), 3, 1.0);
        assert_ne!(delay, Duration::from_secs(8));
    }
}
