//! The rate limits: a token bucket per API token, taken from when the token is authenticated
//! (requests), and one per producer token taken by `POST /v1/events` (events).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;
use uuid::Uuid;

/// Requests per token: a token bucket refilled at `RATE_PER_SECOND`, holding at most `RATE_BURST`.
pub const RATE_PER_SECOND: u64 = 100;
pub const RATE_BURST: u64 = 200;

pub(crate) struct RateLimiter {
    /// Units added per second, and the most a bucket holds.
    per_second: u64,
    burst: u64,
    buckets: Mutex<BTreeMap<Uuid, (u64, Instant)>>,
}

impl Default for RateLimiter {
    fn default() -> RateLimiter {
        RateLimiter::new(RATE_PER_SECOND, RATE_BURST)
    }
}

impl RateLimiter {
    pub(crate) fn new(per_second: u64, burst: u64) -> RateLimiter {
        RateLimiter { per_second, burst, buckets: Mutex::new(BTreeMap::new()) }
    }

    /// Takes one request from the token's bucket.
    pub(crate) fn allow(&self, token: Uuid) -> bool {
        self.allow_n(token, 1)
    }

    /// Takes `n` units from the token's bucket, or none if it holds fewer (units in thousandths,
    /// to refill smoothly). More than the burst is never allowed.
    pub(crate) fn allow_n(&self, token: Uuid, n: u64) -> bool {
        let mut b = self.buckets.lock().expect("rate lock");
        let now = Instant::now();
        let full = self.burst.saturating_mul(1000);
        let e = b.entry(token).or_insert((full, now));
        let refill = (now.duration_since(e.1).as_millis() as u64).saturating_mul(self.per_second);
        e.0 = e.0.saturating_add(refill).min(full);
        e.1 = now;
        let want = n.saturating_mul(1000);
        if e.0 >= want {
            e.0 -= want;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_refuses_and_other_tokens_are_apart() {
        let l = RateLimiter::new(1, 1000);
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert!(l.allow_n(a, 600));
        assert!(!l.allow_n(a, 600), "only 400 left");
        assert!(l.allow_n(a, 400));
        assert!(!l.allow(a));
        assert!(l.allow_n(b, 1000));
        assert!(!l.allow_n(b, 1001));
    }
}
