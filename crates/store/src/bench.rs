//! Baselines for the ingest benchmark (docs/benchmarks.md): PostgreSQL's own ceiling — a binary
//! COPY of the same ledger rows into the same table, committed per batch like the ingester — and a
//! naive writer that INSERTs and commits one event at a time. Not used by the ingester.

use crate::append::{ensure_months_for, ledger_copy, RawJsonb};
use crate::StoreError;
use chrono::{DateTime, Utc};
use domain::chain::{link, ChainRow, GENESIS};
use domain::usage::{UsageRecorded, LEDGER_KIND, LEDGER_VERSION};
use postgres::types::{ToSql, Type};
use postgres::Client;
use std::time::{Duration, Instant};

/// A ledger row as the ingester would write it: canonical payload bytes, chained hash.
pub struct LedgerRow {
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub stream_pos: i64,
    pub src_offset: i64,
    pub tenant_id: String,
    pub event_id: uuid::Uuid,
    pub hash: Vec<u8>,
    pub payload: Vec<u8>,
}

/// Stream 0: no Kafka partition behind these rows.
const BENCH_STREAM: i32 = 0;

impl LedgerRow {
    /// The row's values in `ledger_copy`'s column order.
    fn values<'a>(&'a self, payload: &'a RawJsonb<'a>) -> Vec<&'a (dyn ToSql + Sync)> {
        vec![
            &self.occurred_at,
            &self.recorded_at,
            &BENCH_STREAM,
            &self.stream_pos,
            &self.src_offset,
            &LEDGER_VERSION,
            &LEDGER_KIND,
            &self.tenant_id,
            &self.event_id,
            &self.hash,
            payload,
        ]
    }
}

/// Builds chained rows for these events on one stream, as the ingester would.
pub fn rows_for(events: &[UsageRecorded]) -> Vec<LedgerRow> {
    let recorded_at = DateTime::<Utc>::from_timestamp_micros(Utc::now().timestamp_micros()).expect("now");
    let mut head = GENESIS;
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let payload = e.payload_bytes();
            let (pos, offset) = (i as i64 + 1, i as i64);
            head = link(
                &head,
                &ChainRow {
                    stream_id: BENCH_STREAM,
                    stream_pos: pos,
                    event_id: e.event_id,
                    tenant_id: &e.tenant_id,
                    kind: LEDGER_KIND,
                    version: LEDGER_VERSION,
                    occurred_at: e.interval_start,
                    recorded_at,
                    src_partition: Some(0),
                    src_offset: Some(offset),
                    payload: &payload,
                },
            );
            LedgerRow {
                occurred_at: e.interval_start,
                recorded_at,
                stream_pos: pos,
                src_offset: offset,
                tenant_id: e.tenant_id.clone(),
                event_id: e.event_id,
                hash: head.to_vec(),
                payload,
            }
        })
        .collect()
}

/// Binary COPY of `rows` into `ledger_events` (the ingester's own COPY), one transaction per
/// `batch` rows. Returns the time spent in COPY and COMMIT only.
pub fn copy_rows(client: &mut Client, rows: &[LedgerRow], batch: usize) -> Result<Duration, StoreError> {
    ensure_months_for(client, rows.iter().map(|r| r.occurred_at))?;
    let start = Instant::now();
    for chunk in rows.chunks(batch.max(1)) {
        let mut tx = client.transaction()?;
        let mut w = ledger_copy(&mut tx)?;
        for r in chunk {
            w.write(&r.values(&RawJsonb(&r.payload)))?;
        }
        w.finish()?;
        tx.commit()?;
    }
    Ok(start.elapsed())
}

/// One INSERT and one COMMIT per row. Returns the time spent.
pub fn insert_one_by_one(client: &mut Client, rows: &[LedgerRow]) -> Result<Duration, StoreError> {
    ensure_months_for(client, rows.iter().map(|r| r.occurred_at))?;
    let stmt = client.prepare_typed(
        "INSERT INTO ledger_events (occurred_at, recorded_at, stream_id, stream_pos, src_offset, version, kind, tenant_id, event_id, hash, payload)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[Type::TIMESTAMPTZ, Type::TIMESTAMPTZ, Type::INT4, Type::INT8, Type::INT8, Type::INT2, Type::TEXT, Type::TEXT, Type::UUID, Type::BYTEA, Type::JSONB],
    )?;
    let start = Instant::now();
    for r in rows {
        let mut tx = client.transaction()?;
        tx.execute(&stmt, &r.values(&RawJsonb(&r.payload)))?;
        tx.commit()?;
    }
    Ok(start.elapsed())
}
