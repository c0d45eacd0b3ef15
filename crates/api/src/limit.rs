//! The rate limit: a token bucket per API token, taken from when the token is authenticated.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;
use uuid::Uuid;

/// Requests per token: a token bucket refilled at `RATE_PER_SECOND`, holding at most `RATE_BURST`.
pub const RATE_PER_SECOND: u64 = 100;
pub const RATE_BURST: u64 = 200;

#[derive(Default)]
pub(crate) struct RateLimiter {
    buckets: Mutex<BTreeMap<Uuid, (u64, Instant)>>,
}

impl RateLimiter {
    /// Takes one request from the token's bucket (tokens in thousandths, to refill smoothly).
    pub(crate) fn allow(&self, token: Uuid) -> bool {
        let mut b = self.buckets.lock().expect("rate lock");
        let now = Instant::now();
        let e = b.entry(token).or_insert((RATE_BURST * 1000, now));
        let refill = now.duration_since(e.1).as_millis() as u64 * RATE_PER_SECOND;
        e.0 = (e.0 + refill).min(RATE_BURST * 1000);
        e.1 = now;
        if e.0 >= 1000 {
            e.0 -= 1000;
            true
        } else {
            false
        }
    }
}
