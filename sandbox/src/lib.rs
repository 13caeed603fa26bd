//! Local stand-in for the Amazon SageMaker private-workforce API (AWS JSON 1.1) and the EC2 VPC
//! describe calls (EC2 Query), for use by the real AWS SDK clients through an endpoint URL.

mod control;
mod dispatch;
mod ec2;
mod error;
pub mod faults;
mod lifecycle;
mod sagemaker;
mod state;
pub mod topology;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use faults::Faults;
pub use topology::Topology;

use state::{Scope, Shared};

/// How long each transitional workforce status lasts before the next one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Delays {
    pub initializing: Duration,
    pub updating: Duration,
    pub deleting: Duration,
    /// Whether each transition takes exactly its delay or a length drawn around it.
    pub spread: Spread,
}

/// The rule that picks the length of one transition from its configured delay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Spread {
    /// Every transition takes exactly the configured delay.
    #[default]
    Fixed,
    /// Each transition's length is drawn from a log-normal distribution whose median is the
    /// configured delay, then clamped to `min_ms..=max_ms`. Real workforce changes take from
    /// about half a minute to several minutes, with a long tail.
    LogNormal {
        sigma: f64,
        min_ms: u64,
        max_ms: u64,
    },
}

impl Delays {
    /// Returns the length of one transition whose configured delay is `base`.
    pub fn sample(&self, base: Duration) -> Duration {
        match self.spread {
            Spread::Fixed => base,
            Spread::LogNormal {
                sigma,
                min_ms,
                max_ms,
            } => {
                // Box-Muller: a standard normal sample from two uniform ones.
                let u1 = fastrand::f64().max(f64::MIN_POSITIVE);
                let u2 = fastrand::f64();
                let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                let millis = base.as_secs_f64() * 1000.0 * (sigma * normal).exp();
                let clamped = millis.clamp(min_ms as f64, max_ms.max(min_ms) as f64);
                Duration::from_secs_f64(clamped / 1000.0)
            }
        }
    }
}

impl Delays {
    /// Sets every delay to the same duration.
    pub fn uniform(delay: Duration) -> Delays {
        Delays {
            initializing: delay,
            updating: delay,
            deleting: delay,
            spread: Spread::Fixed,
        }
    }

    /// Zero delays: a transition ends at the next request of the same account and region.
    pub fn instant() -> Delays {
        Delays::uniform(Duration::ZERO)
    }
}

impl Default for Delays {
    /// Two seconds each, long enough for a caller to see every transitional status.
    fn default() -> Delays {
        Delays::uniform(Duration::from_secs(2))
    }
}

/// Everything [`start`] needs.
#[derive(Clone, Debug, Default)]
pub struct SandboxConfig {
    pub topology: Topology,
    pub delays: Delays,
    pub faults: Faults,
}

impl Default for Topology {
    fn default() -> Topology {
        Topology::built_in()
    }
}

/// Call counts by account, then region, then action.
pub type CallCounts = BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>>;

/// A running sandbox. Dropping the handle leaves the server running; call
/// [`SandboxHandle::shutdown`] to stop it.
pub struct SandboxHandle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// Starts serving on `listener` in a new task and returns at once.
pub async fn start(config: SandboxConfig, listener: TcpListener) -> anyhow::Result<SandboxHandle> {
    config.topology.check().context("inconsistent topology")?;
    let local_addr = listener
        .local_addr()
        .context("failed to read the listener's address")?;
    let shared = Arc::new(Shared::new(config.topology, config.delays));
    shared.lock().faults = config.faults;

    let app = dispatch::router(shared.clone());
    let stop = shared.clone();
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.shutdown.notified().await });
        if let Err(error) = server.await {
            tracing::error!(%error, "sandbox server failed");
        }
    });
    tracing::info!(%local_addr, "sandbox listening");
    Ok(SandboxHandle {
        local_addr,
        shared,
        task,
    })
}

impl SandboxHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Returns the base URL for SDK clients, e.g. `http://127.0.0.1:4566`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Returns the total calls of one action name, such as `CreateWorkforce` or
    /// `DescribeVpcs`, across accounts and regions.
    pub fn call_count(&self, operation: &str) -> u64 {
        self.shared.lock().call_count(operation)
    }

    /// Returns every call count by account, region and action.
    pub fn call_counts(&self) -> CallCounts {
        control::call_counts(&self.shared.lock())
    }

    /// Sets every call count back to zero.
    pub fn reset_call_counts(&self) {
        let mut inner = self.shared.lock();
        inner.calls.clear();
        inner.outcomes.clear();
    }

    /// Changes the delays for transitions that start from now on.
    pub fn set_delays(&self, delays: Delays) {
        self.shared.lock().delays = delays;
    }

    /// Replaces the fault settings.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults = faults;
    }

    /// Replaces the topology, keeping workforces, work teams and created endpoints.
    pub fn set_topology(&self, topology: Topology) -> anyhow::Result<()> {
        topology.check().context("inconsistent topology")?;
        self.shared.lock().topology = topology;
        Ok(())
    }

    /// Makes the next transition of a workforce in the default account end `Failed` with
    /// `reason`. A transition already under way counts as the next one.
    pub fn fail_next_transition(&self, region: &str, workforce_name: &str, reason: &str) {
        let mut inner = self.shared.lock();
        let account = inner.topology.default_account.clone();
        control::fail_next_transition(&mut inner, &account, region, workforce_name, reason);
    }

    /// Removes the workforce, work teams and created endpoints of the default account in
    /// `region` at once, as a restart of the in-process sandbox does.
    pub fn forget_region(&self, region: &str) {
        let mut inner = self.shared.lock();
        let account = inner.topology.default_account.clone();
        inner.regions.remove(&Scope::new(&account, region));
    }

    /// Holds a workforce of the default account in its transitional status (`stuck` true)
    /// or lets the transition end again (`stuck` false).
    pub fn set_stuck(&self, region: &str, workforce_name: &str, stuck: bool) {
        let mut inner = self.shared.lock();
        let account = inner.topology.default_account.clone();
        control::set_stuck(&mut inner, &account, region, workforce_name, stuck);
    }

    /// Stops accepting connections, lets open requests finish and waits for the server task.
    pub async fn shutdown(self) {
        self.shared.shutdown.notify_one();
        if let Err(error) = self.task.await {
            tracing::error!(%error, "sandbox server task ended abnormally");
        }
    }
}

/// Delays in milliseconds, the JSON form used by the control API.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelaysMs {
    pub initializing_ms: u64,
    pub updating_ms: u64,
    pub deleting_ms: u64,
    #[serde(default)]
    pub spread: Spread,
}

impl From<DelaysMs> for Delays {
    fn from(ms: DelaysMs) -> Delays {
        Delays {
            initializing: Duration::from_millis(ms.initializing_ms),
            updating: Duration::from_millis(ms.updating_ms),
            deleting: Duration::from_millis(ms.deleting_ms),
            spread: ms.spread,
        }
    }
}

impl From<Delays> for DelaysMs {
    fn from(delays: Delays) -> DelaysMs {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        DelaysMs {
            initializing_ms: ms(delays.initializing),
            updating_ms: ms(delays.updating),
            deleting_ms: ms(delays.deleting),
            spread: delays.spread,
        }
    }
}

impl Scope {
    pub fn new(account: impl Into<String>, region: impl Into<String>) -> Scope {
        Scope {
            account: account.into(),
            region: region.into(),
        }
    }
}

#[cfg(test)]
mod delay_tests {
    use super::*;

    #[test]
    fn fixed_spread_returns_the_delay() {
        let delays = Delays::uniform(Duration::from_secs(3));
        assert_eq!(delays.sample(delays.updating), Duration::from_secs(3));
    }

    #[test]
    fn log_normal_spread_stays_within_bounds() {
        let mut delays = Delays::uniform(Duration::from_secs(120));
        delays.spread = Spread::LogNormal {
            sigma: 0.8,
            min_ms: 30_000,
            max_ms: 900_000,
        };
        let samples: Vec<Duration> = (0..2_000)
            .map(|_| delays.sample(delays.initializing))
            .collect();
        assert!(
            samples
                .iter()
                .all(|d| (Duration::from_secs(30)..=Duration::from_secs(900)).contains(d))
        );
        let below_median = samples
            .iter()
            .filter(|d| **d < Duration::from_secs(120))
            .count();
        assert!(
            (800..1_200).contains(&below_median),
            "about half fall below the median: {below_median}"
        );
        assert!(samples.windows(2).any(|w| w[0] != w[1]), "lengths vary");
    }
}
