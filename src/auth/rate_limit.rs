//! A token bucket per credential, kept in memory. Each process limits on its own, so with N
//! replicas a credential may reach N times the configured rate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    /// Limits the warnings about rejected requests to one per 10 s, since a client over its
    /// limit is rejected on every request.
    pub warnings: crate::telemetry::WarningGate,
}

/// Buckets kept before idle ones are dropped, so that many credentials cannot grow the map
/// without bound.
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
            warnings: crate::telemetry::WarningGate::new(Duration::from_secs(10)),
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Returns a token that [`Self::check`] took for `key`, up to the bucket's capacity.
    pub fn refund(&self, key: &str) {
        let capacity = f64::from(self.per_minute);
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if let Some((tokens, _)) = buckets.get_mut(key) {
            *tokens = (*tokens + 1.0).min(capacity);
        }
    }

    /// Takes one token for `key`, or returns how long to wait for the next one.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            buckets.retain(|_, (tokens, at)| {
                *tokens + at.elapsed().as_secs_f64() * per_second < capacity
            });
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * per_second).min(capacity);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refund_returns_a_token() {
        let limiter = RateLimiter::new(1);
        assert!(limiter.check("a").is_ok());
        assert!(limiter.check("a").is_err());
        limiter.refund("a");
        assert!(limiter.check("a").is_ok());
    }

    #[test]
    fn bucket_allows_burst_then_limits() {
        let limiter = RateLimiter::new(3);
        for _ in 0..3 {
            assert!(limiter.check("a").is_ok());
        }
        assert!(limiter.check("a").is_err());
        assert!(
            limiter.check("b").is_ok(),
            "each credential has its own bucket"
        );
    }
}
