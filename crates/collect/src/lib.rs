//! `gpuledger collect dcgm`: scrapes dcgm-exporter endpoints every interval, turns the scrapes
//! into usage events with the pure meter (`domain::meter`), keeps its cursor in PostgreSQL and
//! produces the events to Kafka. Per round: scrape every endpoint (in parallel, each with a
//! timeout) → observations → the meter closes whole minutes into runs → one transaction writes
//! the new cursor, the runs' coverage rows and the billed events into the outbox → the outbox
//! is produced (idempotent producer, acks=all) and each event is deleted from it once Kafka
//! acknowledged it. A restarted collector produces what the outbox still holds first. The
//! ledger's reference data (namespace map, SKU catalogue) is read again whenever the reference
//! stream moved (`reference`), so a new mapping or model needs no restart.

use domain::billing::namespace_map::ClusterTenants;
use domain::meter::event::{meter, Class, Metered};
use domain::meter::exposition;
use domain::meter::scrape::{observations, Observation, Skipped};
use domain::meter::timeline::MeterState;
use domain::meter::DeviceKey;
use postgres::Client;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod cursor;
pub mod http;
pub mod reference;

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("database")]
    Db(#[from] postgres::Error),
    #[error("store")]
    Store(#[from] store::StoreError),
    #[error("cursor: {0}")]
    Cursor(String),
}

pub struct Config {
    pub endpoints: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    /// The longest gap between two observations of a device that is bridged.
    pub bridge: Duration,
    /// The CloudEvents source of the events, and the cursor's key.
    pub source: String,
    pub cluster: Option<String>,
    pub brokers: String,
    pub topic: String,
    /// `modelName` → SKU pairs that take precedence over the SKU catalogue's model names.
    pub sku_overrides: BTreeMap<String, String>,
    pub max_rounds: Option<u64>,
    pub stop: Arc<AtomicBool>,
}

/// What a run of the collector did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub rounds: u64,
    pub failed_scrapes: u64,
    pub skipped: u64,
    pub events: u64,
    pub unmapped_runs: u64,
    /// GPU-seconds of the runs billed to a tenant (their events are in the outbox or acknowledged).
    pub billed_gpu_seconds: rust_decimal::Decimal,
}

/// The devices of one scrape's text, observed at its samples' latest timestamp if they carry
/// one (dcgm-exporter writes none; a recorded scrape may), else at `received_ms`; and what was
/// skipped.
pub fn observe_text(text: &str, received_ms: i64) -> (Vec<(DeviceKey, i64, Observation)>, Vec<Skipped>, i64) {
    let (samples, malformed) = exposition::parse(text);
    let at_ms = samples.iter().filter_map(|s| s.timestamp_ms).max().unwrap_or(received_ms);
    let (devices, mut skipped) = observations(&samples);
    skipped.extend(malformed.into_iter().map(Skipped::Line));
    (devices.into_iter().map(|(k, o)| (k, at_ms, o)).collect(), skipped, at_ms)
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Runs rounds until stopped (or `max_rounds`).
pub fn run(cfg: &Config, db: &mut Client) -> Result<Totals, CollectError> {
    let mut state = cursor::load(db, &cfg.source)?;
    let mut totals = Totals::default();
    totals.events += flush_outbox(cfg, db)?;
    let agent = http::agent(cfg.timeout);
    let mut reference = reference::ReferenceCache::new(cfg.sku_overrides.clone());
    while !cfg.stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        round(cfg, db, &agent, &mut reference, &mut state, &mut totals)?;
        totals.rounds += 1;
        if cfg.max_rounds.is_some_and(|m| totals.rounds >= m) {
            break;
        }
        while started.elapsed() < cfg.interval && !cfg.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5).min(cfg.interval));
        }
    }
    Ok(totals)
}

/// Every endpoint scraped at once: its body (or why not) and when it arrived.
fn scrape_all(cfg: &Config, agent: &ureq::Agent) -> Vec<(String, Result<String, String>, i64)> {
    std::thread::scope(|s| {
        let handles: Vec<_> =
            cfg.endpoints.iter().map(|url| s.spawn(move || (url.clone(), http::fetch(agent, url), now_ms()))).collect();
        handles.into_iter().map(|h| h.join().expect("a scrape thread does not panic")).collect()
    })
}

fn round(
    cfg: &Config,
    db: &mut Client,
    agent: &ureq::Agent,
    reference: &mut reference::ReferenceCache,
    state: &mut MeterState,
    totals: &mut Totals,
) -> Result<(), CollectError> {
    let mut seen = Vec::new();
    let mut round_ms = None;
    for (url, body, received_ms) in scrape_all(cfg, agent) {
        let text = match body {
            Ok(text) => text,
            Err(error) => {
                tracing::warn!(endpoint = %url, %error, "scrape failed");
                totals.failed_scrapes += 1;
                continue;
            }
        };
        let (devices, skipped, at_ms) = observe_text(&text, received_ms);
        for s in &skipped {
            tracing::warn!(endpoint = %url, skipped = ?s, "skipped part of a scrape");
        }
        totals.skipped += skipped.len() as u64;
        round_ms = round_ms.max(Some(at_ms));
        seen.extend(devices);
    }
    let Some(round_ms) = round_ms else { return Ok(()) };
    let (namespaces, skus) = reference.current(db)?;
    let tenants = ClusterTenants { map: namespaces, cluster: cfg.cluster.as_deref() };
    let bridge_ms = i64::try_from(cfg.bridge.as_millis()).unwrap_or(i64::MAX);
    let runs = state.observe(seen, round_ms, bridge_ms);
    let metered: Vec<Metered> = runs.into_iter().map(|r| meter(r, &cfg.source, skus, &tenants)).collect();
    let outgoing: Vec<cursor::Outgoing> = metered.iter().filter_map(outgoing).collect();
    for m in metered.iter().filter(|m| m.class == Class::Unmapped) {
        tracing::warn!(device = %m.run.key, seconds = %m.gpu_seconds, held = ?m.run.held, "unmapped namespace: not billed");
        totals.unmapped_runs += 1;
    }
    cursor::commit(db, &cfg.source, state, &outgoing, &metered)?;
    totals.billed_gpu_seconds += metered
        .iter()
        .filter(|m| matches!(m.class, Class::Billed { .. }))
        .map(|m| m.gpu_seconds)
        .sum::<rust_decimal::Decimal>();
    totals.events += flush_outbox(cfg, db)?;
    Ok(())
}

fn outgoing(m: &Metered) -> Option<cursor::Outgoing> {
    let event = m.event.as_ref()?;
    Some(cursor::Outgoing {
        event_id: event["id"].as_str()?.parse().ok()?,
        key: event["data"]["tenant_id"].as_str()?.to_string(),
        payload: serde_json::to_vec(event).expect("an event serializes"),
    })
}

/// Produces the outbox and forgets what Kafka acknowledged; a Kafka failure leaves the outbox
/// for the next round. Returns how many were acknowledged.
fn flush_outbox(cfg: &Config, db: &mut Client) -> Result<u64, CollectError> {
    let waiting = cursor::outbox(db, &cfg.source)?;
    if waiting.is_empty() {
        return Ok(0);
    }
    let ids: Vec<uuid::Uuid> = waiting.iter().map(|o| o.event_id).collect();
    let messages = waiting.into_iter().map(|o| (Some(o.key.into_bytes()), o.payload));
    match ingest::produce(&cfg.brokers, &cfg.topic, messages) {
        Ok(stats) => {
            cursor::acknowledged(db, &cfg.source, &ids)?;
            Ok(stats.delivered)
        }
        Err(error) => {
            tracing::error!(%error, waiting = ids.len(), "producing the outbox failed; kept for the next round");
            Ok(0)
        }
    }
}
