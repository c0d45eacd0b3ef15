//! Local streams: events gpuledger writes itself (not consumed from Kafka), appended to a stream
//! of their own, chained, deduplicated by event id.

use crate::{Refusal, StoreError};
use chrono::{DateTime, SubsecRound, Utc};
use domain::chain::{link, ChainRow};
use postgres::Transaction;
use serde_json::{json, Value};
use uuid::Uuid;

/// An event written by gpuledger itself (not consumed from Kafka).
#[derive(Debug, Clone)]
pub struct LocalEvent {
    pub event_id: Uuid,
    pub tenant_id: String,
    pub kind: String,
    pub version: i16,
    pub occurred_at: DateTime<Utc>,
    pub data: Value,
}

impl LocalEvent {
    fn payload(&self) -> Value {
        json!({ "data": self.data })
    }
}

/// Where a local event landed, or that it was there already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub event_id: Uuid,
    pub new: bool,
    pub stream_id: i32,
    pub stream_pos: i64,
}

pub(super) fn fingerprint(kind: &str, payload: &[u8]) -> Vec<u8> {
    domain::usage::fingerprint_of(&[kind.as_bytes(), b"\n", payload].concat()).to_vec()
}

/// The stream row of a local stream (made on first use), locked for this transaction.
pub(crate) fn lock_stream(tx: &mut Transaction<'_>, topic: &str) -> Result<(i32, i64, [u8; 32]), StoreError> {
    tx.execute(
        "INSERT INTO ledger_streams (topic, kafka_partition) VALUES ($1, 0) ON CONFLICT (topic, kafka_partition) DO NOTHING",
        &[&topic],
    )?;
    let row = tx.query_one(
        "SELECT stream_id, head_pos, head_hash FROM ledger_streams WHERE topic = $1 AND kafka_partition = 0 FOR UPDATE",
        &[&topic],
    )?;
    let hash: Vec<u8> = row.get(2);
    let mut head = [0u8; 32];
    head.copy_from_slice(&hash);
    Ok((row.get(0), row.get(1), head))
}

/// Appends local events to a stream, chained, in this transaction. An event id already in the
/// ledger with the same content is a duplicate (skipped); with other content it is refused.
/// The ledger partitions for the events' months must exist (`ensure_months_for`).
pub fn append_local(
    tx: &mut Transaction<'_>,
    topic: &str,
    events: &[LocalEvent],
    recorded_at: DateTime<Utc>,
) -> Result<Vec<Appended>, StoreError> {
    let (stream_id, mut pos, mut head) = lock_stream(tx, topic)?;
    let recorded_at = recorded_at.trunc_subsecs(6);
    let mut out = Vec::with_capacity(events.len());
    let mut new = 0i64;
    for e in events {
        let payload = e.payload();
        let bytes = serde_json::to_vec(&payload).expect("json");
        let print = fingerprint(&e.kind, &bytes);
        let inserted = tx.execute(
            "INSERT INTO ledger_event_ids (tenant_id, event_id, fingerprint) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, event_id) DO NOTHING",
            &[&e.tenant_id, &e.event_id, &print],
        )?;
        if inserted == 0 {
            // A usage event's id has no fingerprint: the same id here is other content.
            let old: Option<Vec<u8>> = tx
                .query_one(
                    "SELECT fingerprint FROM ledger_event_ids WHERE tenant_id = $1 AND event_id = $2",
                    &[&e.tenant_id, &e.event_id],
                )?
                .get(0);
            if old.as_deref() != Some(print.as_slice()) {
                return Err(Refusal::EventIdReused { event_id: e.event_id, tenant_id: e.tenant_id.clone() }.into());
            }
            out.push(Appended { event_id: e.event_id, new: false, stream_id, stream_pos: 0 });
            continue;
        }
        pos += 1;
        let occurred_at = e.occurred_at.trunc_subsecs(6);
        let row = ChainRow {
            stream_id,
            stream_pos: pos,
            event_id: e.event_id,
            tenant_id: &e.tenant_id,
            kind: &e.kind,
            version: e.version,
            occurred_at,
            recorded_at,
            src_partition: Some(0),
            src_offset: None,
            payload: &bytes,
        };
        head = link(&head, &row);
        tx.execute(
            "INSERT INTO ledger_events (occurred_at, recorded_at, stream_id, stream_pos, src_offset, version, kind, tenant_id, event_id, hash, payload)
             VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8, $9, $10)",
            &[&occurred_at, &recorded_at, &stream_id, &pos, &e.version, &e.kind, &e.tenant_id, &e.event_id, &head.as_slice(), &payload],
        )?;
        new += 1;
        out.push(Appended { event_id: e.event_id, new: true, stream_id, stream_pos: pos });
    }
    tx.execute(
        "UPDATE ledger_streams SET head_pos = $2, head_hash = $3, ledgered = ledgered + $4 WHERE stream_id = $1",
        &[&stream_id, &pos, &head.as_slice(), &new],
    )?;
    Ok(out)
}

pub(crate) fn stream_id(tx: &mut Transaction<'_>, topic: &str) -> Result<Option<(i32, i64)>, StoreError> {
    Ok(tx
        .query_opt(
            "SELECT stream_id, head_pos FROM ledger_streams WHERE topic = $1 AND kafka_partition = 0",
            &[&topic],
        )?
        .map(|r| (r.get(0), r.get(1))))
}
