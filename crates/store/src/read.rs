//! Reading the ledger back: per-stream accounting, the live hourly projection, a rebuild of the
//! projection from the log alone, and a walk of every hash chain.

use crate::StoreError;
use chrono::{DateTime, Utc};
use domain::chain::{ChainBreak, ChainRow, ChainVerifier};
use domain::projection::{HourKey, HourTotals, HourlyUsage};
use domain::usage::{UsageRecorded, LEDGER_KIND};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, IsolationLevel};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use uuid::Uuid;

/// What happened to every consumed offset of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStats {
    pub stream_id: i32,
    pub topic: String,
    pub partition: i32,
    pub next_offset: Option<i64>,
    pub ledgered: i64,
    pub duplicates: i64,
    pub quarantined: i64,
    pub head_pos: i64,
    pub owner: Option<String>,
    pub epoch: i64,
}

pub fn stream_stats(client: &mut Client, topic: &str) -> Result<Vec<StreamStats>, StoreError> {
    Ok(client
        .query(
            "SELECT stream_id, topic, kafka_partition, next_offset, ledgered, duplicates, quarantined, head_pos, owner, epoch
               FROM ledger_streams WHERE topic = $1 ORDER BY kafka_partition",
            &[&topic],
        )?
        .iter()
        .map(|r| StreamStats {
            stream_id: r.get(0),
            topic: r.get(1),
            partition: r.get(2),
            next_offset: r.get(3),
            ledgered: r.get(4),
            duplicates: r.get(5),
            quarantined: r.get(6),
            head_pos: r.get(7),
            owner: r.get(8),
            epoch: r.get(9),
        })
        .collect())
}

/// The live hourly projection as stored.
pub fn live_hourly(client: &mut Client) -> Result<HourlyUsage, StoreError> {
    let mut p = HourlyUsage::default();
    for r in client.query("SELECT tenant_id, gpu_sku, project, hour, gpu_seconds, events FROM usage_hourly", &[])? {
        let key = HourKey { tenant_id: r.get(0), gpu_sku: r.get(1), project: r.get(2), hour: r.get(3) };
        let seconds: Decimal = r.get(4);
        p.rows.insert(key, HourTotals { gpu_seconds: seconds.normalize(), events: r.get(5) });
    }
    Ok(p)
}

/// Folds the hourly projection again from the ledger's usage events and usage adjustments alone
/// (streamed, not loaded).
pub fn rebuild_hourly(client: &mut Client) -> Result<HourlyUsage, StoreError> {
    let mut p = HourlyUsage::default();
    let mut tx = client.transaction()?;
    let params: [&str; 1] = [LEDGER_KIND];
    let mut rows = tx.query_raw("SELECT event_id, payload FROM ledger_events WHERE kind = $1", params)?;
    while let Some(r) = rows.next()? {
        let id: Uuid = r.get(0);
        let payload: serde_json::Value = r.get(1);
        let e = UsageRecorded::from_payload(id, &payload)
            .map_err(|rej| StoreError::Invariant(format!("ledgered event {id} does not parse: {rej}")))?;
        p.apply(&e);
    }
    drop(rows);
    // Finance's usage adjustments change the projection too (see store::billing).
    let kind = domain::billing::reference::KIND_ADJUSTMENT;
    for r in tx.query("SELECT payload FROM ledger_events WHERE kind = $1 ORDER BY seq", &[&kind])? {
        let payload: serde_json::Value = r.get(0);
        let a: domain::billing::reference::UsageAdjustment = serde_json::from_value(payload["data"].clone())
            .map_err(|e| StoreError::Invariant(format!("ledgered usage adjustment does not parse: {e}")))?;
        p.adjust(&a);
    }
    tx.commit()?;
    for v in p.rows.values_mut() {
        v.gpu_seconds = v.gpu_seconds.normalize();
    }
    Ok(p)
}

type TenantSkuTotals = BTreeMap<String, BTreeMap<String, Decimal>>;

/// Rows of (tenant, SKU, GPU-seconds) as nested maps, normalized.
fn by_tenant_sku(rows: Vec<postgres::Row>) -> TenantSkuTotals {
    let mut out = TenantSkuTotals::new();
    for r in rows {
        let d: Decimal = r.get(2);
        out.entry(r.get(0)).or_default().insert(r.get(1), d.normalize());
    }
    out
}

/// GPU-seconds per tenant and SKU, from the live projection.
pub fn totals_by_tenant_sku(client: &mut Client) -> Result<TenantSkuTotals, StoreError> {
    Ok(by_tenant_sku(client.query("SELECT tenant_id, gpu_sku, sum(gpu_seconds) FROM usage_hourly GROUP BY 1, 2", &[])?))
}

/// GPU-seconds per tenant and SKU, summed straight from the ledger rows.
pub fn ledger_totals_by_tenant_sku(client: &mut Client) -> Result<TenantSkuTotals, StoreError> {
    Ok(by_tenant_sku(client.query(
        "SELECT tenant_id, payload->'data'->>'gpu_sku', sum((payload->'data'->>'gpu_seconds')::numeric)
           FROM ledger_events WHERE kind = $1 GROUP BY 1, 2",
        &[&LEDGER_KIND],
    )?))
}

/// The result of walking one stream's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub stream_id: i32,
    pub rows: i64,
    pub result: Result<(), ChainBreak>,
}

/// Walks every stream's rows in order, recomputing each hash, and checks the stored head. Each
/// stream is read in one REPEATABLE READ snapshot (head and rows agree while ingesters write) and
/// streamed row by row (constant memory).
pub fn verify_chains(client: &mut Client) -> Result<Vec<ChainReport>, StoreError> {
    let streams: Vec<i32> = client
        .query("SELECT stream_id FROM ledger_streams ORDER BY stream_id", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut reports = Vec::new();
    for stream_id in streams {
        let mut tx =
            client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start()?;
        let head_row = tx.query_one(
            "SELECT kafka_partition, head_hash, head_pos FROM ledger_streams WHERE stream_id = $1",
            &[&stream_id],
        )?;
        let (partition, head, head_pos): (i32, Vec<u8>, i64) = (head_row.get(0), head_row.get(1), head_row.get(2));
        let params: [&(dyn postgres::types::ToSql + Sync); 1] = [&stream_id];
        let mut rows = tx.query_raw(
            "SELECT stream_pos, event_id, tenant_id, kind, version, occurred_at, recorded_at, src_offset, payload, hash
               FROM ledger_events WHERE stream_id = $1 ORDER BY stream_pos",
            params,
        )?;
        let mut verifier = ChainVerifier::default();
        let mut count = 0i64;
        let mut result = Ok(());
        while let Some(r) = rows.next()? {
            count += 1;
            if result.is_err() {
                continue; // keep counting rows after the first break
            }
            let payload: serde_json::Value = r.get(8);
            let payload = serde_json::to_vec(&payload).expect("json");
            let tenant: String = r.get(2);
            let kind: String = r.get(3);
            let hash: Vec<u8> = r.get(9);
            let mut stored = [0u8; 32];
            if hash.len() == 32 {
                stored.copy_from_slice(&hash);
            }
            let occurred: DateTime<Utc> = r.get(5);
            let recorded: DateTime<Utc> = r.get(6);
            let row = ChainRow {
                stream_id,
                stream_pos: r.get(0),
                event_id: r.get(1),
                tenant_id: &tenant,
                kind: &kind,
                version: r.get(4),
                occurred_at: occurred,
                recorded_at: recorded,
                src_partition: Some(partition),
                src_offset: r.get(7),
                payload: &payload,
            };
            result = verifier.check(&row, &stored);
        }
        drop(rows);
        tx.commit()?;
        if result.is_ok() {
            let (computed_head, last_pos) = verifier.head();
            if last_pos != head_pos || computed_head.as_slice() != head.as_slice() {
                result = Err(ChainBreak {
                    stream_pos: last_pos,
                    reason: format!(
                        "stream head says position {head_pos}, the rows end at {last_pos} or the hash differs"
                    ),
                });
            }
        }
        reports.push(ChainReport { stream_id, rows: count, result });
    }
    Ok(reports)
}
