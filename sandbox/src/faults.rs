//! Fault injection: throttling, server errors, added latency and dropped connections, picked at
//! random per request from configured ratios.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Fault ratios and latency applied to AWS requests. Control requests under `/_sandbox/` are
/// never faulted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Share of requests, 0.0 to 1.0, that get `ThrottlingException` (SageMaker, HTTP
    /// 400) or `RequestLimitExceeded` (EC2, HTTP 503).
    #[serde(default)]
    pub throttle_ratio: f64,
    /// Share of requests that get HTTP 500 `InternalFailure` (SageMaker) or
    /// `InternalError` (EC2).
    #[serde(default)]
    pub server_error_ratio: f64,
    /// Delay added before every affected request, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    /// Share of requests whose connection is closed without a response.
    #[serde(default)]
    pub drop_ratio: f64,
    /// Action names the faults apply to, such as `DescribeWorkforce`; all actions when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<String>>,
}

/// A fault chosen for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Throttle,
    ServerError,
    Drop,
}

impl Faults {
    /// Returns whether the faults apply to this action.
    pub fn applies_to(&self, action: &str) -> bool {
        self.actions
            .as_ref()
            .is_none_or(|actions| actions.iter().any(|a| a == action))
    }

    /// Returns the latency to add before responding to this action.
    pub fn latency_for(&self, action: &str) -> Duration {
        if self.applies_to(action) {
            Duration::from_millis(self.latency_ms)
        } else {
            Duration::ZERO
        }
    }

    /// Picks at random the fault for one request of this action, if any.
    pub fn pick(&self, action: &str) -> Option<Fault> {
        if !self.applies_to(action) {
            return None;
        }
        if fastrand::f64() < self.drop_ratio {
            return Some(Fault::Drop);
        }
        if fastrand::f64() < self.throttle_ratio {
            return Some(Fault::Throttle);
        }
        if fastrand::f64() < self.server_error_ratio {
            return Some(Fault::ServerError);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_ratio_always_throttles() {
        let faults = Faults {
            throttle_ratio: 1.0,
            ..Faults::default()
        };
        assert_eq!(faults.pick("DescribeVpcs"), Some(Fault::Throttle));
    }

    #[test]
    fn action_list_limits_faults() {
        let faults = Faults {
            server_error_ratio: 1.0,
            latency_ms: 5,
            actions: Some(vec!["DescribeWorkforce".to_owned()]),
            ..Faults::default()
        };
        assert_eq!(faults.pick("DescribeVpcs"), None);
        assert_eq!(faults.latency_for("DescribeVpcs"), Duration::ZERO);
        assert_eq!(faults.pick("DescribeWorkforce"), Some(Fault::ServerError));
    }
}
