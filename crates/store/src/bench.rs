//! Baselines for the ingest benchmark (docs/benchmarks.md): PostgreSQL's own ceiling — a binary
//! COPY of the same ledger rows into the same table, committed per batch like the ingester — and a
//! naive writer that INSERTs and commits one event at a time. Not used by the ingester.

use crate::append::ensure_months_for;
use crate::StoreError;
use chrono::{DateTime, Utc};
use domain::chain::{link, ChainRow, GENESIS};
use domain::usage::{UsageRecorded, LEDGER_KIND, LEDGER_VERSION};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use postgres::Client;
use std::time::{Duration, Instant};

/// A ledger row as the ingester would write it.
pub struct LedgerRow {
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub stream_pos: i64,
    pub tenant_id: String,
    pub event_id: uuid::Uuid,
    pub hash: [u8; 32],
    pub payload: serde_json::Value,
}

/// Builds chained rows for these events on one stream, as the ingester would.
pub fn rows_for(events: &[UsageRecorded], stream_id: i32) -> Vec<LedgerRow> {
    let recorded_at = DateTime::<Utc>::from_timestamp_micros(Utc::now().timestamp_micros()).expect("now");
    let mut head = GENESIS;
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let bytes = e.payload_bytes();
            let pos = i as i64 + 1;
            head = link(
                &head,
                &ChainRow {
                    stream_id,
                    stream_pos: pos,
                    event_id: e.event_id,
                    tenant_id: &e.tenant_id,
                    kind: LEDGER_KIND,
                    version: LEDGER_VERSION,
                    occurred_at: e.interval_start,
                    recorded_at,
                    src_partition: Some(0),
                    src_offset: Some(i as i64),
                    payload: &bytes,
                },
            );
            LedgerRow {
                occurred_at: e.interval_start,
                recorded_at,
                stream_pos: pos,
                tenant_id: e.tenant_id.clone(),
                event_id: e.event_id,
                hash: head,
                payload: e.payload_json(),
            }
        })
        .collect()
}

/// Binary COPY of `rows` into `ledger_events`, one transaction per `batch` rows. Returns the time
/// spent in COPY and COMMIT only.
pub fn copy_rows(client: &mut Client, rows: &[LedgerRow], batch: usize) -> Result<Duration, StoreError> {
    ensure_months_for(client, rows.iter().map(|r| r.occurred_at))?;
    let start = Instant::now();
    for chunk in rows.chunks(batch.max(1)) {
        let mut tx = client.transaction()?;
        let sink = tx.copy_in(
            "COPY ledger_events (occurred_at, recorded_at, stream_id, stream_pos, src_offset, version, kind, tenant_id, event_id, hash, payload) FROM STDIN BINARY",
        )?;
        let mut w = BinaryCopyInWriter::new(
            sink,
            &[
                Type::TIMESTAMPTZ,
                Type::TIMESTAMPTZ,
                Type::INT4,
                Type::INT8,
                Type::INT8,
                Type::INT2,
                Type::TEXT,
                Type::TEXT,
                Type::UUID,
                Type::BYTEA,
                Type::JSONB,
            ],
        );
        for r in chunk {
            let offset = r.stream_pos - 1;
            w.write(&[
                &r.occurred_at,
                &r.recorded_at,
                &0i32,
                &r.stream_pos,
                &offset,
                &LEDGER_VERSION,
                &LEDGER_KIND,
                &r.tenant_id,
                &r.event_id,
                &r.hash.as_slice(),
                &r.payload,
            ])?;
        }
        w.finish()?;
        tx.commit()?;
    }
    Ok(start.elapsed())
}

/// One INSERT and one COMMIT per row. Returns the time spent.
pub fn insert_one_by_one(client: &mut Client, rows: &[LedgerRow]) -> Result<Duration, StoreError> {
    ensure_months_for(client, rows.iter().map(|r| r.occurred_at))?;
    let stmt = client.prepare(
        "INSERT INTO ledger_events (occurred_at, recorded_at, stream_id, stream_pos, src_offset, version, kind, tenant_id, event_id, hash, payload)
         VALUES ($1, $2, 0, $3, $4, $5, $6, $7, $8, $9, $10)",
    )?;
    let start = Instant::now();
    for r in rows {
        let offset = r.stream_pos - 1;
        let mut tx = client.transaction()?;
        tx.execute(
            &stmt,
            &[
                &r.occurred_at,
                &r.recorded_at,
                &r.stream_pos,
                &offset,
                &LEDGER_VERSION,
                &LEDGER_KIND,
                &r.tenant_id,
                &r.event_id,
                &r.hash.as_slice(),
                &r.payload,
            ],
        )?;
        tx.commit()?;
    }
    Ok(start.elapsed())
}
