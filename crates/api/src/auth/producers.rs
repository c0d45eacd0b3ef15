//! Producer tokens remembered for a moment. `POST /v1/events` takes hundreds of requests a second
//! from a few producers; asking PostgreSQL who each request is from would cost a round trip and a
//! query per request, more than judging its hundred events. A producer token that PostgreSQL
//! found valid is believed for [`PRODUCER_RECHECK`] without asking again (never past its expiry);
//! so a revoked producer token is refused within that time. Unknown, revoked and expired tokens
//! and every other credential are looked up on every request, as before.

use super::{Caller, TokenLookup};
use crate::error::ApiError;
use crate::AppState;
use axum::http::{header, HeaderMap};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a producer token found valid is believed without asking PostgreSQL again.
pub const PRODUCER_RECHECK: Duration = Duration::from_secs(2);
/// Most producer tokens remembered at once (then the stale ones are forgotten, or all).
pub const PRODUCERS_REMEMBERED_MAX: usize = 10_000;

/// Valid producer tokens by the hash of their secret.
#[derive(Default)]
pub(crate) struct ProducerTokens(Mutex<HashMap<Vec<u8>, Known>>);

struct Known {
    caller: Caller,
    expires_at: DateTime<Utc>,
    checked_at: Instant,
}

impl ProducerTokens {
    /// The caller of a token checked less than [`PRODUCER_RECHECK`] before `now`, not expired at `wall`.
    fn recall(&self, hash: &[u8], now: Instant, wall: DateTime<Utc>) -> Option<Caller> {
        let known = self.0.lock().expect("producer tokens lock");
        let k = known.get(hash)?;
        (now.duration_since(k.checked_at) < PRODUCER_RECHECK && k.expires_at > wall).then(|| k.caller.clone())
    }

    fn remember(&self, hash: Vec<u8>, caller: Caller, expires_at: DateTime<Utc>, now: Instant) {
        let mut known = self.0.lock().expect("producer tokens lock");
        if known.len() >= PRODUCERS_REMEMBERED_MAX {
            known.retain(|_, k| now.duration_since(k.checked_at) < PRODUCER_RECHECK);
            if known.len() >= PRODUCERS_REMEMBERED_MAX {
                known.clear();
            }
        }
        known.insert(hash, Known { caller, expires_at, checked_at: now });
    }
}

/// The producer behind the request ([`TokenLookup::authenticate_producer`]: 401, or 403 for any
/// other role), from memory when its bearer token was found valid a moment ago.
pub(crate) async fn authenticate_producer(s: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|a| a.strip_prefix("Bearer "));
    let Some(secret) = bearer else {
        return TokenLookup::get(s).await?.authenticate_producer(headers).await.map(|(caller, _)| caller);
    };
    let hash = store::tokens::hash_token(secret);
    if let Some(caller) = s.producers.recall(&hash, Instant::now(), Utc::now()) {
        crate::access::note_caller(&caller);
        return Ok(caller);
    }
    let (caller, expires_at) = TokenLookup::get(s).await?.authenticate_producer(headers).await?;
    s.producers.remember(hash, caller.clone(), expires_at, Instant::now());
    Ok(caller)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{ProducerScope, Role, WallKey};
    use std::sync::Arc;

    fn caller(n: u128) -> Caller {
        let scope = ProducerScope { source: "//x".into(), tenants: vec!["rheinbank".into()] };
        Caller {
            token_id: uuid::Uuid::from_u128(n),
            role: Role::Producer,
            tenant: None,
            producer: Some(Arc::new(scope)),
            wall_key: WallKey(vec![]),
        }
    }

    #[test]
    fn a_token_is_believed_for_the_recheck_time_and_never_past_its_expiry() {
        let (t, now) = (ProducerTokens::default(), Instant::now());
        let wall = Utc::now();
        let day = chrono::Duration::days(1);
        t.remember(vec![1], caller(1), wall + day, now);
        t.remember(vec![2], caller(2), wall + chrono::Duration::seconds(1), now);
        let id = |c: Option<Caller>| c.map(|c| c.token_id.as_u128());
        assert_eq!(id(t.recall(&[1], now + Duration::from_millis(1999), wall)), Some(1));
        assert_eq!(id(t.recall(&[1], now + PRODUCER_RECHECK, wall)), None, "asked again after the recheck time");
        assert_eq!(id(t.recall(&[2], now, wall)), Some(2));
        assert_eq!(id(t.recall(&[2], now, wall + chrono::Duration::seconds(1))), None, "expired");
        assert_eq!(id(t.recall(&[3], now, wall)), None, "never seen");
    }

    #[test]
    fn memory_is_bounded() {
        let (t, now) = (ProducerTokens::default(), Instant::now());
        let until = Utc::now() + chrono::Duration::days(1);
        for i in 0..PRODUCERS_REMEMBERED_MAX + 5 {
            t.remember(i.to_be_bytes().to_vec(), caller(i as u128), until, now);
        }
        assert!(t.0.lock().unwrap().len() <= PRODUCERS_REMEMBERED_MAX);
    }
}
