//! Simulates DescribeWorkforce polling of the same operation durations with Terraform's fixed
//! schedule and with this service's adaptive schedule ([`PollSchedule::next_delay`]), and
//! prints the polls per operation and the mean detection delay of each. It also prints the
//! smallest mean delay that any schedule could reach with half of Terraform's polls.
//!
//! Terraform's `waitWorkforceActive` (terraform-provider-aws, `internal/service/sagemaker/
//! wait.go`) polls at 0 s, then after 0.2 s doubling to a 10 s cap.
//!
//! The bound assumes that a schedule is given the exact duration distribution of each kind. A
//! schedule that learns it from recorded durations cannot do better, except by chance. For a
//! price c per poll, dynamic programming over poll times on a 0.1 s grid finds the schedule of
//! each kind with the least mean delay plus c times mean polls. A search over c then finds the
//! price at which the kinds together use half of Terraform's expected polls. Mixing the two
//! schedules on either side of that price gives the least mean delay at exactly half the polls.
//! Both targets (at most 0.5× polls and 0.5× delay) are reachable only where that delay is
//! at most half of Terraform's. The next column repeats the bound for schedules held to the
//! service's 1 s floor and 120 s cap between polls. The last column gives that bound at the
//! polls ratio that the adaptive schedule reached, to compare with its delay ratio.
//!
//! Usage: `poller_simulation [OPERATIONS] [--call-cost-ms MS] [--smoothing-neighbors N]`
//! (defaults: 20,000 operations per scenario and the service's schedule).

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

/// Shortest and longest simulated durations in seconds. Draws outside are clamped to them.
const SHORTEST: f64 = 30.0;
const LONGEST: f64 = 900.0;

/// Draws a standard normal value (Box-Muller).
fn normal() -> f64 {
    let u1 = fastrand::f64().max(f64::MIN_POSITIVE);
    let u2 = fastrand::f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Draws a log-normal duration with the given median and shape, kept between 30 s and 15 min.
fn draw(median: f64, sigma: f64) -> f64 {
    (median * (sigma * normal()).exp()).clamp(SHORTEST, LONGEST)
}

struct Scenario {
    name: &'static str,
    /// Median seconds of each operation kind, drawn with equal probability.
    medians: &'static [f64],
    sigma: f64,
}

const FOUR_KINDS: &[f64] = &[45.0, 90.0, 360.0, 600.0];
const ONE_KIND: &[f64] = &[300.0];

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "kinds with medians 45 s, 90 s, 6 min, 10 min; sigma 0.1",
        medians: FOUR_KINDS,
        sigma: 0.1,
    },
    Scenario {
        name: "same kinds, sigma 0.15",
        medians: FOUR_KINDS,
        sigma: 0.15,
    },
    Scenario {
        name: "same kinds, sigma 0.175",
        medians: FOUR_KINDS,
        sigma: 0.175,
    },
    Scenario {
        name: "same kinds, sigma 0.2",
        medians: FOUR_KINDS,
        sigma: 0.2,
    },
    Scenario {
        name: "same kinds, sigma 0.25",
        medians: FOUR_KINDS,
        sigma: 0.25,
    },
    Scenario {
        name: "same kinds, sigma 0.3",
        medians: FOUR_KINDS,
        sigma: 0.3,
    },
    Scenario {
        name: "one kind, median 5 min; sigma 0.1",
        medians: ONE_KIND,
        sigma: 0.1,
    },
    Scenario {
        name: "one kind, median 5 min; sigma 0.15",
        medians: ONE_KIND,
        sigma: 0.15,
    },
    Scenario {
        name: "one kind, median 5 min; sigma 0.2",
        medians: ONE_KIND,
        sigma: 0.2,
    },
    Scenario {
        name: "one kind, median 5 min; sigma 0.6 (broad)",
        medians: ONE_KIND,
        sigma: 0.6,
    },
];

const USAGE: &str = "\
Usage: poller_simulation [OPERATIONS] [--call-cost-ms MS] [--smoothing-neighbors N]

Replays log-normal operation durations with Terraform's poll schedule and with the service's
adaptive schedule, and prints a Markdown table of polls, mean detection delay and the bound
for any schedule.

  OPERATIONS                 operations per scenario (default 20000)
  --call-cost-ms MS          detection delay in milliseconds that one poll is worth
                             (default: the service's CALL_COST)
  --smoothing-neighbors N    neighbours that set each recorded duration's smoothing width
                             (default: the service's SMOOTHING_NEIGHBORS)";

struct Options {
    operations: usize,
    schedule: PollSchedule,
}

fn parse_options() -> Result<Options, String> {
    // The service's default schedule: --poll-initial-ms 2000 and --poll-max-ms 30000.
    let mut options = Options {
        operations: 20_000,
        schedule: PollSchedule::from_backoff(Duration::from_secs(2), Duration::from_secs(30)),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            // `cargo bench` appends --bench to the arguments of a bench without a harness.
            "--bench" => {}
            "--call-cost-ms" => {
                let value = option_value(&mut args, &arg)?;
                options.schedule.call_cost = Duration::from_millis(value);
            }
            "--smoothing-neighbors" => {
                let value = option_value(&mut args, &arg)?;
                options.schedule.smoothing_neighbors = value as usize;
            }
            _ => {
                options.operations = arg.parse().map_err(|_| {
                    format!(
                        "invalid argument {arg:?}: expected a number of operations or an option"
                    )
                })?;
            }
        }
    }
    Ok(options)
}

fn option_value(args: &mut impl Iterator<Item = String>, name: &str) -> Result<u64, String> {
    let value = args
        .next()
        .ok_or_else(|| format!("missing value after {name}"))?;
    value
        .parse()
        .map_err(|_| format!("invalid value {value:?} for {name}: expected a whole number"))
}

fn main() {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("poller_simulation: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let operations = options.operations;
    let schedule = options.schedule;
    fastrand::seed(7);
    println!(
        "| scenario | Terraform polls/op | adaptive polls/op | polls ratio | Terraform mean delay (s) | adaptive mean delay (s) | delay ratio | bound: delay ratio at 0.5× polls | same, with 1 s floor and 120 s cap | same, at the adaptive polls ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for scenario in SCENARIOS {
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

        let kinds: Vec<KindDistribution> = scenario
            .medians
            .iter()
            .map(|median| KindDistribution::clamped_log_normal(*median, scenario.sigma))
            .collect();
        let any_schedule = bound_delay_ratio(&kinds, GapLimits::NONE, 0.5);
        let service_limits = GapLimits {
            min_steps: (schedule.floor.as_secs_f64() * STEPS_PER_SECOND).round() as usize,
            max_steps: (schedule.cap.as_secs_f64() * STEPS_PER_SECOND).round() as usize,
        };
        let limited = bound_delay_ratio(&kinds, service_limits, 0.5);
        let same_polls = bound_delay_ratio(&kinds, service_limits, ap / tp);
        println!(
            "| {} | {tp:.1} | {ap:.1} | {:.3} | {td:.2} | {ad:.2} | {:.3} | {any_schedule:.3} | {limited:.3} | {same_polls:.3} |",
            scenario.name,
            ap / tp,
            ad / td
        );
    }
}

/// Grid points per second of the bound's dynamic program.
const STEPS_PER_SECOND: f64 = 10.0;

/// Duration distribution of one kind on a grid of 0.1 s from 0 s to 10 s past [`LONGEST`],
/// so that the grid also contains Terraform's first poll after the longest duration.
struct KindDistribution {
    times: Vec<f64>,
    /// P(T ≤ time) at each grid point.
    cdf: Vec<f64>,
    /// E[T; T ≤ time] at each grid point, in seconds.
    partial_mean: Vec<f64>,
}

impl KindDistribution {
    /// Log-normal with the given median and shape, clamped to 30 s..15 min as [`draw`] does.
    /// The clamped draws form point masses at both ends.
    fn clamped_log_normal(median: f64, sigma: f64) -> Self {
        let last = ((LONGEST + 10.0) * STEPS_PER_SECOND).round() as usize;
        let times: Vec<f64> = (0..=last).map(|i| i as f64 / STEPS_PER_SECOND).collect();
        let cdf: Vec<f64> = times
            .iter()
            .map(|&time| {
                if time < SHORTEST {
                    0.0
                } else if time >= LONGEST {
                    1.0
                } else {
                    normal_cdf((time / median).ln() / sigma)
                }
            })
            .collect();
        let mut partial_mean = vec![0.0; times.len()];
        for i in 1..times.len() {
            let mass = cdf[i] - cdf[i - 1];
            // The point masses sit at the right end of their grid cell. Elsewhere the cell's
            // mass is placed at its midpoint.
            let at = if times[i - 1] < SHORTEST || times[i] == LONGEST {
                times[i]
            } else {
                (times[i - 1] + times[i]) / 2.0
            };
            partial_mean[i] = partial_mean[i - 1] + mass * at;
        }
        Self {
            times,
            cdf,
            partial_mean,
        }
    }

    /// Expected delay E[poll − T; T in (times[from], times[to]]] of operations that the poll at
    /// `to` is the first to see, when the previous poll was at `from`.
    fn wait(&self, from: usize, to: usize) -> f64 {
        self.times[to] * (self.cdf[to] - self.cdf[from])
            - (self.partial_mean[to] - self.partial_mean[from])
    }

    /// Expected polls and delay of Terraform's schedule.
    fn terraform(&self) -> (f64, f64) {
        let last = self.times.len() - 1;
        let (mut polls, mut delay) = (1.0, 0.0);
        let (mut at, mut attempt) = (0usize, 1u32);
        while self.cdf[at] < 1.0 {
            polls += 1.0 - self.cdf[at];
            let step = (terraform_delay(attempt) * STEPS_PER_SECOND).round() as usize;
            let next = (at + step).min(last);
            delay += self.wait(at, next);
            at = next;
            attempt += 1;
        }
        (polls, delay)
    }

    /// Expected polls and delay of the schedule that minimizes mean delay plus `price` times
    /// mean polls, with gaps between polls within `limits`.
    fn optimal(&self, price: f64, limits: GapLimits) -> (f64, f64) {
        let last = self.times.len() - 1;
        // Per grid point: least cost, expected polls and expected delay from a poll there on.
        let mut cost = vec![0.0; last + 1];
        let mut polls = vec![0.0; last + 1];
        let mut delay = vec![0.0; last + 1];
        // The best next poll never moves earlier when the current poll moves earlier, because
        // wait(j, k) satisfies the Monge inequality. So the search for poll j stops at the
        // best next poll of j + 1.
        let mut best_next = last;
        for j in (0..last).rev() {
            let survival = 1.0 - self.cdf[j];
            if survival <= 0.0 {
                best_next = last;
                continue;
            }
            let low = (j + limits.min_steps.max(1)).min(last);
            let high = (j + limits.max_steps).min(last).min(best_next.max(low));
            let mut best = (f64::INFINITY, low);
            for (offset, later) in cost[low..=high].iter().enumerate() {
                let k = low + offset;
                let total = self.wait(j, k) + later;
                if total < best.0 {
                    best = (total, k);
                }
            }
            let (total, next) = best;
            cost[j] = total + price * survival;
            polls[j] = survival + polls[next];
            delay[j] = self.wait(j, next) + delay[next];
            best_next = next;
        }
        (1.0 + polls[0], delay[0])
    }
}

/// Minimum and maximum gap between polls, in grid steps.
#[derive(Clone, Copy)]
struct GapLimits {
    min_steps: usize,
    max_steps: usize,
}

impl GapLimits {
    const NONE: Self = Self {
        min_steps: 1,
        max_steps: usize::MAX / 2,
    };
}

/// Returns the least mean delay that a schedule given each kind's distribution reaches with
/// `polls_ratio` times Terraform's expected polls, as a ratio to Terraform's expected delay.
fn bound_delay_ratio(kinds: &[KindDistribution], limits: GapLimits, polls_ratio: f64) -> f64 {
    let count = kinds.len() as f64;
    let mean = |pairs: Vec<(f64, f64)>| {
        let polls: f64 = pairs.iter().map(|p| p.0).sum();
        let delay: f64 = pairs.iter().map(|p| p.1).sum();
        (polls / count, delay / count)
    };
    let (terraform_polls, terraform_delay) = mean(kinds.iter().map(|k| k.terraform()).collect());
    let target = terraform_polls * polls_ratio;
    let at_price = |price: f64| mean(kinds.iter().map(|k| k.optimal(price, limits)).collect());

    // Bisection on the logarithm of the price: a higher price buys fewer polls.
    let (mut low, mut high) = (1e-3f64.ln(), 100f64.ln());
    let (mut many, mut few) = (at_price(low.exp()), at_price(high.exp()));
    if many.0 < target {
        // Even the lowest price stays under the target number of polls.
        return many.1 / terraform_delay;
    }
    for _ in 0..24 {
        let middle = (low + high) / 2.0;
        let point = at_price(middle.exp());
        if point.0 > target {
            (low, many) = (middle, point);
        } else {
            (high, few) = (middle, point);
        }
    }
    // Randomizing between the two schedules reaches any point on the line between them.
    let share = if many.0 > few.0 {
        (many.0 - target) / (many.0 - few.0)
    } else {
        0.0
    };
    (many.1 + share * (few.1 - many.1)) / terraform_delay
}

/// Standard normal CDF.
fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Complementary error function with a fractional error below 1.2e-7: the Chebyshev fit
/// `erfcc` of Numerical Recipes in C, 2nd edition, section 6.2.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let polynomial = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let value = t * polynomial.exp();
    if x >= 0.0 { value } else { 2.0 - value }
}
