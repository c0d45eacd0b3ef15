//! The usage response cache: answers to `GET /v1/usage` kept as the bytes that were sent, per
//! tenant and query, until the tenant's hourly usage in the answer's range changes.
//!
//! Changes are learnt from PostgreSQL: a statement trigger on `usage_hourly` (migration 0004)
//! notifies channel `gpuledger_usage` with the tenants and hours each committed statement touched,
//! whoever wrote them (the ingester, usage adjustments, a rebuild). A listener task keeps one
//! connection LISTENing; while it is not connected, nothing is cached or served from the cache, and
//! every reconnection empties it, so a missed notification can never leave a stale answer behind.
//!
//! An answer computed from a snapshot that a concurrent commit made stale is not kept: every fill
//! takes a ticket (the tenant's generation and the cache's epoch) before it reads, and the answer
//! is stored only if no change for that tenant, and no reconnection, was seen in between. A change
//! that commits after the read is caught when its notification arrives, which removes the entry.
//! So the cache serves an answer at most one notification delay older than the database.

use chrono::{DateTime, Utc};
use hyper::body::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The notification channel the trigger on `usage_hourly` sends to.
pub const CHANNEL: &str = "gpuledger_usage";

/// What one answer depends on: the caller's tenant and the query, normalized.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageKey {
    pub tenant: String,
    pub granularity: String,
    pub by_sku: bool,
    pub by_project: bool,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// Taken before a fill reads the database; the fill is stored only if it is still current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    epoch: u64,
    generation: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<UsageKey, Bytes>,
    /// Insertion order, for eviction when over the byte budget (oldest first).
    order: VecDeque<UsageKey>,
    bytes: usize,
    /// Per tenant: bumped on every change notified for it.
    generations: HashMap<String, u64>,
    epoch: u64,
}

/// One change notified by the trigger: a tenant and the hours `[from, to)` it touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Tenant {
        tenant: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
    /// Too many to list, or unknown: everything.
    All,
}

pub struct UsageCache {
    inner: Mutex<Inner>,
    /// True only while the listener is connected and LISTENing.
    live: AtomicBool,
    bytes_max: usize,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub invalidations: AtomicU64,
}

impl UsageCache {
    pub fn new(bytes_max: usize) -> UsageCache {
        UsageCache {
            inner: Mutex::new(Inner::default()),
            live: AtomicBool::new(false),
            bytes_max,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
        }
    }

    /// Is the cache in use (the listener is connected)?
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    pub fn get(&self, key: &UsageKey) -> Option<Bytes> {
        if !self.is_live() {
            return None;
        }
        let found = self.inner.lock().expect("cache lock").entries.get(key).cloned();
        match found {
            Some(b) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(b)
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Taken before reading the database for `tenant`.
    pub fn ticket(&self, tenant: &str) -> Ticket {
        let inner = self.inner.lock().expect("cache lock");
        Ticket { epoch: inner.epoch, generation: inner.generations.get(tenant).copied().unwrap_or(0) }
    }

    /// Keeps `body` for `key` if nothing changed for its tenant since `ticket` was taken.
    /// Returns whether it was kept.
    pub fn put(&self, key: UsageKey, ticket: Ticket, body: Bytes) -> bool {
        if !self.is_live() || body.len() > self.bytes_max / 4 {
            return false;
        }
        let mut inner = self.inner.lock().expect("cache lock");
        let generation = inner.generations.get(&key.tenant).copied().unwrap_or(0);
        if ticket.epoch != inner.epoch || ticket.generation != generation {
            return false;
        }
        let len = body.len();
        if let Some(old) = inner.entries.insert(key.clone(), body) {
            inner.bytes -= old.len();
        } else {
            inner.order.push_back(key);
        }
        inner.bytes += len;
        while inner.bytes > self.bytes_max {
            let Some(oldest) = inner.order.pop_front() else { break };
            if let Some(b) = inner.entries.remove(&oldest) {
                inner.bytes -= b.len();
            }
        }
        true
    }

    /// Applies notified changes: drops the answers they make stale and fences fills in flight.
    pub fn apply(&self, changes: &[Change]) {
        let mut inner = self.inner.lock().expect("cache lock");
        for c in changes {
            match c {
                Change::All => clear(&mut inner),
                Change::Tenant { tenant, from, to } => {
                    *inner.generations.entry(tenant.clone()).or_insert(0) += 1;
                    let stale: Vec<UsageKey> = inner
                        .entries
                        .keys()
                        .filter(|k| &k.tenant == tenant && k.from < *to && *from < k.to)
                        .cloned()
                        .collect();
                    for k in stale {
                        if let Some(b) = inner.entries.remove(&k) {
                            inner.bytes -= b.len();
                        }
                    }
                    if inner.order.len() > 2 * inner.entries.len() + 64 {
                        let Inner { entries, order, .. } = &mut *inner;
                        order.retain(|k| entries.contains_key(k));
                    }
                }
            }
        }
        self.invalidations.fetch_add(changes.len() as u64, Ordering::Relaxed);
    }

    /// The listener connected (`true`: LISTEN is in place) or lost its connection (`false`). Both
    /// empty the cache: notifications may have been missed in between.
    pub fn set_live(&self, live: bool) {
        let mut inner = self.inner.lock().expect("cache lock");
        clear(&mut inner);
        self.live.store(live, Ordering::SeqCst);
    }

    /// Entries and bytes held.
    pub fn size(&self) -> (usize, usize) {
        let inner = self.inner.lock().expect("cache lock");
        (inner.entries.len(), inner.bytes)
    }
}

fn clear(inner: &mut Inner) {
    inner.entries.clear();
    inner.order.clear();
    inner.bytes = 0;
    inner.generations.clear();
    inner.epoch += 1;
}

/// Parses a notification payload: `*`, or `tenant first_hour last_hour` items (Unix seconds)
/// separated by `;`. Anything unreadable means everything changed.
pub fn parse_changes(payload: &str) -> Vec<Change> {
    if payload == "*" {
        return vec![Change::All];
    }
    let mut out = Vec::new();
    for item in payload.split(';') {
        let mut parts = item.split(' ');
        let parsed = (|| {
            let tenant = parts.next()?.to_string();
            let lo: i64 = parts.next()?.parse().ok()?;
            let hi: i64 = parts.next()?.parse().ok()?;
            let from = DateTime::<Utc>::from_timestamp(lo, 0)?;
            // The last hour touched is [hi, hi + 1 h).
            let to = DateTime::<Utc>::from_timestamp(hi, 0)? + chrono::Duration::hours(1);
            (parts.next().is_none() && !tenant.is_empty()).then_some(Change::Tenant { tenant, from, to })
        })();
        match parsed {
            Some(c) => out.push(c),
            None => return vec![Change::All],
        }
    }
    out
}

/// Keeps one connection LISTENing on [`CHANNEL`] and applies what arrives, reconnecting with
/// backoff; the cache is live only while it is connected. Runs until the process ends.
pub async fn listen(database_url: String, cache: std::sync::Arc<UsageCache>) {
    use futures_util::StreamExt;
    let mut backoff = Duration::from_millis(100);
    loop {
        match database_url.parse::<tokio_postgres::Config>() {
            Err(e) => {
                tracing::error!(error = %e, "usage cache: bad database url, cache off");
                return;
            }
            Ok(config) => match config.connect(tokio_postgres::NoTls).await {
                Err(e) => {
                    tracing::warn!(error = %store::db_message(&e), "usage cache: listener cannot connect, cache off")
                }
                Ok((client, mut connection)) => {
                    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                    let messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    let driver = tokio::spawn(async move {
                        let mut messages = std::pin::pin!(messages);
                        while let Some(m) = messages.next().await {
                            match m {
                                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                                    if tx.send(n.payload().to_string()).is_err() {
                                        break;
                                    }
                                }
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::warn!(error = %store::db_message(&e), "usage cache: listener connection failed");
                                    break;
                                }
                            }
                        }
                    });
                    match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                        Err(e) => tracing::warn!(error = %store::db_message(&e), "usage cache: LISTEN failed"),
                        Ok(()) => {
                            cache.set_live(true);
                            backoff = Duration::from_millis(100);
                            tracing::info!("usage cache: listening for usage changes");
                            while let Some(payload) = rx.recv().await {
                                cache.apply(&parse_changes(&payload));
                            }
                        }
                    }
                    cache.set_live(false);
                    driver.abort();
                    drop(client);
                }
            },
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tenant: &str, from: i64, to: i64) -> UsageKey {
        UsageKey {
            tenant: tenant.into(),
            granularity: "hour".into(),
            by_sku: false,
            by_project: false,
            from: DateTime::from_timestamp(from, 0).unwrap(),
            to: DateTime::from_timestamp(to, 0).unwrap(),
        }
    }

    fn change(tenant: &str, first_hour: i64, last_hour: i64) -> Change {
        parse_changes(&format!("{tenant} {first_hour} {last_hour}")).remove(0)
    }

    #[test]
    fn nothing_is_cached_until_the_listener_is_live() {
        let c = UsageCache::new(1 << 20);
        let t = c.ticket("a");
        assert!(!c.put(key("a", 0, 3600), t, Bytes::from_static(b"x")));
        assert_eq!(c.get(&key("a", 0, 3600)), None);
        c.set_live(true);
        let t = c.ticket("a");
        assert!(c.put(key("a", 0, 3600), t, Bytes::from_static(b"x")));
        assert_eq!(c.get(&key("a", 0, 3600)).as_deref(), Some(&b"x"[..]));
        c.set_live(false);
        assert_eq!(c.get(&key("a", 0, 3600)), None);
        c.set_live(true);
        assert_eq!(c.get(&key("a", 0, 3600)), None, "a reconnection empties the cache");
    }

    #[test]
    fn a_change_drops_only_the_answers_of_its_tenant_that_cover_its_hours() {
        let c = UsageCache::new(1 << 20);
        c.set_live(true);
        for k in [key("a", 0, 7200), key("a", 7200, 14400), key("b", 0, 7200)] {
            let t = c.ticket(&k.tenant);
            assert!(c.put(k, t, Bytes::from_static(b"x")));
        }
        // Tenant a, the hour starting at 3600: [3600, 7200).
        c.apply(&[change("a", 3600, 3600)]);
        assert_eq!(c.get(&key("a", 0, 7200)), None);
        assert!(c.get(&key("a", 7200, 14400)).is_some(), "the range after is untouched");
        assert!(c.get(&key("b", 0, 7200)).is_some(), "another tenant is untouched");
        c.apply(&[Change::All]);
        assert_eq!(c.size(), (0, 0));
    }

    #[test]
    fn a_fill_that_raced_a_change_is_not_kept() {
        let c = UsageCache::new(1 << 20);
        c.set_live(true);
        let t = c.ticket("a");
        // A change for tenant a commits while the fill reads, even in another range.
        c.apply(&[change("a", 36000, 36000)]);
        assert!(!c.put(key("a", 0, 3600), t, Bytes::from_static(b"stale")));
        // Another tenant's change does not fence it.
        let t = c.ticket("a");
        c.apply(&[change("b", 0, 0)]);
        assert!(c.put(key("a", 0, 3600), t, Bytes::from_static(b"fresh")));
        // Nor a reconnection in between.
        let t = c.ticket("a");
        c.set_live(false);
        c.set_live(true);
        assert!(!c.put(key("a", 0, 7200), t, Bytes::from_static(b"stale")));
    }

    #[test]
    fn the_byte_budget_evicts_the_oldest() {
        let c = UsageCache::new(40);
        c.set_live(true);
        for i in 0..6 {
            let t = c.ticket("a");
            assert!(c.put(key("a", i * 3600, (i + 1) * 3600), t, Bytes::from(vec![b'x'; 10])));
        }
        let (n, bytes) = c.size();
        assert!(bytes <= 40 && n == 4, "{n} entries, {bytes} bytes");
        assert_eq!(c.get(&key("a", 0, 3600)), None);
        assert!(c.get(&key("a", 5 * 3600, 6 * 3600)).is_some());
    }

    #[test]
    fn notifications_parse_and_anything_odd_means_everything() {
        assert_eq!(
            parse_changes("t-1 3600 7200;t-2 0 0"),
            vec![
                Change::Tenant {
                    tenant: "t-1".into(),
                    from: DateTime::from_timestamp(3600, 0).unwrap(),
                    to: DateTime::from_timestamp(10800, 0).unwrap()
                },
                Change::Tenant {
                    tenant: "t-2".into(),
                    from: DateTime::from_timestamp(0, 0).unwrap(),
                    to: DateTime::from_timestamp(3600, 0).unwrap()
                },
            ]
        );
        for odd in ["*", "", "t-1", "t-1 x 3", "t-1 1 2 3", "t-1 1 2;;"] {
            assert_eq!(parse_changes(odd), vec![Change::All], "{odd:?}");
        }
    }
}
