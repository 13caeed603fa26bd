//! Simulates DescribeWorkforce polling of the same operation durations with Terraform's fixed
//! schedule and with this service's adaptive schedule ([`PollSchedule::next_delay`]), and
//! prints the polls per operation and the mean detection delay of each.
//!
//! Terraform's `waitWorkforceActive` (terraform-provider-aws, `internal/service/sagemaker/
//! wait.go`) polls at 0 s, then after 0.2 s doubling to a 10 s cap.
//!
//! Usage: `poller_simulation [OPERATIONS]` (default 20,000 per scenario).

use std::time::Duration;

use workforce_service::poller::{HISTORY_SIZE, PollSchedule, random_jitter};

/// Outcome of polling one operation.
struct Polled {
    polls: u32,
    /// Seconds from the end of the change to the poll that saw it.
    delay: f64,
    /// Duration that the service records: halfway between the last two polls.
    recorded: f64,
}

/// Polls one operation of `duration` seconds with a schedule that returns the delay after poll
/// `attempt` (from 1) at `elapsed` seconds.
fn simulate(duration: f64, mut next_delay: impl FnMut(f64, u32) -> f64) -> Polled {
    let mut time = 0.0;
    let mut previous = 0.0;
    let mut polls = 0;
    loop {
        polls += 1;
        if time >= duration {
            return Polled {
                polls,
                delay: time - duration,
                recorded: (previous + time) / 2.0,
            };
        }
        previous = time;
        time += next_delay(time, polls);
    }
}

fn terraform_delay(attempt: u32) -> f64 {
    // The first poll is at 0 s; then 0.2, 0.4, 0.8 ... capped at 10 s.
    (0.2 * 2f64.powi(attempt as i32 - 1)).min(10.0)
}

/// Draws a standard normal value (Box-Muller).
fn normal() -> f64 {
    let u1 = fastrand::f64().max(f64::MIN_POSITIVE);
    let u2 = fastrand::f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Draws a log-normal duration with the given median and shape, kept between 30 s and 15 min.
fn draw(median: f64, sigma: f64) -> f64 {
    (median * (sigma * normal()).exp()).clamp(30.0, 900.0)
}

struct Scenario {
    name: &'static str,
    /// Median seconds of each operation kind, drawn with equal probability.
    medians: &'static [f64],
    sigma: f64,
}

fn main() {
    let operations: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    fastrand::seed(7);
    // The service's default schedule: --poll-initial-ms 2000 and --poll-max-ms 30000.
    let schedule = PollSchedule::from_backoff(Duration::from_secs(2), Duration::from_secs(30));
    let scenarios = [
        Scenario {
            name: "kinds with medians 45 s, 90 s, 6 min, 10 min; sigma 0.1",
            medians: &[45.0, 90.0, 360.0, 600.0],
            sigma: 0.1,
        },
        Scenario {
            name: "kinds with medians 45 s, 90 s, 6 min, 10 min; sigma 0.15",
            medians: &[45.0, 90.0, 360.0, 600.0],
            sigma: 0.15,
        },
        Scenario {
            name: "kinds with medians 45 s, 90 s, 6 min, 10 min; sigma 0.3",
            medians: &[45.0, 90.0, 360.0, 600.0],
            sigma: 0.3,
        },
        Scenario {
            name: "one kind, median 5 min; sigma 0.6 (broad)",
            medians: &[300.0],
            sigma: 0.6,
        },
    ];
    println!(
        "| scenario | Terraform polls/op | adaptive polls/op | polls ratio | Terraform mean delay (s) | adaptive mean delay (s) | delay ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for scenario in &scenarios {
        // The history of each kind fills from the adaptive poller's own observations, as in
        // the service, starting empty.
        let mut histories: Vec<Vec<f64>> = vec![Vec::new(); scenario.medians.len()];
        let (mut terraform_polls, mut terraform_delay_sum) = (0u64, 0.0);
        let (mut adaptive_polls, mut adaptive_delay_sum) = (0u64, 0.0);
        for _ in 0..operations {
            let kind = fastrand::usize(..scenario.medians.len());
            let duration = draw(scenario.medians[kind], scenario.sigma);

            let terraform = simulate(duration, |_, attempt| terraform_delay(attempt));
            terraform_polls += u64::from(terraform.polls);
            terraform_delay_sum += terraform.delay;

            let history = &mut histories[kind];
            let mut sorted: Vec<Duration> = history
                .iter()
                .map(|s| Duration::from_secs_f64(*s))
                .collect();
            sorted.sort_unstable();
            let adaptive = simulate(duration, |elapsed, attempt| {
                schedule
                    .next_delay(
                        &sorted,
                        Duration::from_secs_f64(elapsed),
                        attempt,
                        random_jitter(),
                    )
                    .as_secs_f64()
            });
            adaptive_polls += u64::from(adaptive.polls);
            adaptive_delay_sum += adaptive.delay;
            history.push(adaptive.recorded);
            if history.len() > HISTORY_SIZE as usize {
                history.remove(0);
            }
        }
        let n = operations as f64;
        let (tp, ap) = (terraform_polls as f64 / n, adaptive_polls as f64 / n);
        let (td, ad) = (terraform_delay_sum / n, adaptive_delay_sum / n);
        println!(
            "| {} | {tp:.1} | {ap:.1} | {:.2} | {td:.2} | {ad:.2} | {:.2} |",
            scenario.name,
            ap / tp,
            ad / td
        );
    }
}
