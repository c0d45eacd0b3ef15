//! Reading the ledger back: per-stream accounting, the live hourly projection, a rebuild of the
//! projection from the log alone, and a walk of every hash chain.

use crate::StoreError;
use chrono::{DateTime, Utc};
use domain::chain::{verify, ChainBreak, ChainRow};
use domain::projection::{HourKey, HourTotals, HourlyUsage};
use domain::usage::{UsageRecorded, LEDGER_KIND};
use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
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

/// Folds the hourly projection again from the ledger's usage events alone (streamed, not loaded).
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
    tx.commit()?;
    for v in p.rows.values_mut() {
        v.gpu_seconds = v.gpu_seconds.normalize();
    }
    Ok(p)
}

/// GPU-seconds per tenant and SKU, from the live projection.
pub fn totals_by_tenant_sku(client: &mut Client) -> Result<BTreeMap<String, BTreeMap<String, Decimal>>, StoreError> {
    let mut out: BTreeMap<String, BTreeMap<String, Decimal>> = BTreeMap::new();
    for r in client
        .query("SELECT tenant_id, gpu_sku, sum(gpu_seconds) FROM usage_hourly GROUP BY 1, 2 ORDER BY 1, 2", &[])?
    {
        let d: Decimal = r.get(2);
        out.entry(r.get(0)).or_default().insert(r.get(1), d.normalize());
    }
    Ok(out)
}

/// GPU-seconds per tenant and SKU, summed straight from the ledger rows.
pub fn ledger_totals_by_tenant_sku(
    client: &mut Client,
) -> Result<BTreeMap<String, BTreeMap<String, Decimal>>, StoreError> {
    let mut out: BTreeMap<String, BTreeMap<String, Decimal>> = BTreeMap::new();
    for r in client.query(
        "SELECT tenant_id, payload->'data'->>'gpu_sku', sum((payload->'data'->>'gpu_seconds')::numeric)
           FROM ledger_events WHERE kind = $1 GROUP BY 1, 2 ORDER BY 1, 2",
        &[&LEDGER_KIND],
    )? {
        let d: Decimal = r.get(2);
        out.entry(r.get(0)).or_default().insert(r.get(1), d.normalize());
    }
    Ok(out)
}

/// The result of walking one stream's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub stream_id: i32,
    pub rows: i64,
    pub result: Result<(), ChainBreak>,
}

/// Walks every stream's rows in order, recomputing each hash, and checks the stored head.
pub fn verify_chains(client: &mut Client) -> Result<Vec<ChainReport>, StoreError> {
    let streams: Vec<(i32, i32, Vec<u8>, i64)> = client
        .query("SELECT stream_id, kafka_partition, head_hash, head_pos FROM ledger_streams ORDER BY stream_id", &[])?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let mut reports = Vec::new();
    for (stream_id, partition, head, head_pos) in streams {
        let mut tx = client.transaction()?;
        let params: [&(dyn postgres::types::ToSql + Sync); 1] = [&stream_id];
        let rows: Vec<_> = tx
            .query_raw(
                "SELECT stream_pos, event_id, tenant_id, kind, version, occurred_at, recorded_at, src_offset, payload, hash
                   FROM ledger_events WHERE stream_id = $1 ORDER BY stream_pos",
                params,
            )?
            .collect()?;
        tx.commit()?;
        struct Owned {
            pos: i64,
            id: Uuid,
            tenant: String,
            kind: String,
            version: i16,
            occurred: DateTime<Utc>,
            recorded: DateTime<Utc>,
            offset: Option<i64>,
            payload: Vec<u8>,
            hash: Vec<u8>,
        }
        let owned: Vec<Owned> = rows
            .iter()
            .map(|r| {
                let payload: serde_json::Value = r.get(8);
                Owned {
                    pos: r.get(0),
                    id: r.get(1),
                    tenant: r.get(2),
                    kind: r.get(3),
                    version: r.get(4),
                    occurred: r.get(5),
                    recorded: r.get(6),
                    offset: r.get(7),
                    payload: serde_json::to_vec(&payload).expect("json"),
                    hash: r.get(9),
                }
            })
            .collect();
        let result = verify(owned.iter().map(|o| {
            let mut stored = [0u8; 32];
            if o.hash.len() == 32 {
                stored.copy_from_slice(&o.hash);
            }
            (
                ChainRow {
                    stream_id,
                    stream_pos: o.pos,
                    event_id: o.id,
                    tenant_id: &o.tenant,
                    kind: &o.kind,
                    version: o.version,
                    occurred_at: o.occurred,
                    recorded_at: o.recorded,
                    src_partition: Some(partition),
                    src_offset: o.offset,
                    payload: &o.payload,
                },
                stored,
            )
        }))
        .and_then(|(computed_head, last_pos)| {
            if last_pos != head_pos || computed_head.as_slice() != head.as_slice() {
                Err(ChainBreak {
                    stream_pos: last_pos,
                    reason: format!("stream head says position {head_pos}, the rows end at {last_pos} or hash differs"),
                })
            } else {
                Ok(())
            }
        })
        .map(|_| ());
        reports.push(ChainReport { stream_id, rows: owned.len() as i64, result });
    }
    Ok(reports)
}
