//! Step 4 of an append: what the decision says, written. Event ids first (a known id fails their
//! unique key here, before the big write), then the chained rows (one binary COPY), the hourly
//! projection, the quarantine, and the streams' heads and offsets.

use super::fence::Heads;
use super::usage_row::{UsageCopy, UsageRow};
use super::{BatchCounts, PartitionBatch};
use crate::copy::BinaryCopy;
use crate::StoreError;
use chrono::{DateTime, Utc};
use domain::chain::{link, ChainRow, UsagePlace};
use domain::decide::Fate;
use domain::projection::BatchHourly;
use domain::usage::RejectionCode;
use postgres::types::Type;
use rust_decimal::Decimal;
use std::collections::HashMap;
use uuid::Uuid;

/// Writes the ids of the events to ledger into `ledger_event_ids`.
pub(super) fn write_ids(
    tx: &mut postgres::Transaction<'_>,
    ordered: &[&PartitionBatch],
    fates: &[Vec<Fate>],
) -> Result<(), StoreError> {
    let mut ledgered_ids: Vec<(Uuid, &str)> = ordered
        .iter()
        .zip(fates)
        .flat_map(|(b, f)| b.messages.iter().zip(f))
        .filter_map(|(m, f)| match (f, &m.verdict) {
            (Fate::Ledger, Ok(e)) => Some((e.event_id, e.tenant_id.as_str())),
            _ => None,
        })
        .collect();
    // In key order (uuid and "C" text both compare bytewise, in Rust as in PostgreSQL): each insert
    // lands next to the previous one in the key's btree, and time-ordered ids at its right edge.
    // Six rounds side by side: 4 % less PostgreSQL CPU per batch (docs/benchmarks.md).
    ledgered_ids.sort_unstable();
    #[cfg(feature = "measure-without-guards")]
    super::measure::without_ids(&mut ledgered_ids);
    if ledgered_ids.is_empty() {
        return Ok(());
    }
    // No fingerprint: a later copy of the event is told apart by its content (see `KnownId`).
    let types = [Type::UUID, Type::TEXT];
    let mut w = BinaryCopy::start(tx, "COPY ledger_event_ids (event_id, tenant_id) FROM STDIN BINARY", &types)?;
    for (id, tenant) in &ledgered_ids {
        w.write(&[id, tenant])?;
    }
    w.finish()?;
    Ok(())
}

/// A quarantined message as it goes into `quarantine`.
pub(super) struct QuarantineRow<'a> {
    stream_id: i32,
    offset: i64,
    code: RejectionCode,
    message: String,
    event_id: Option<Uuid>,
    tenant: Option<String>,
    key: Option<&'a [u8]>,
    raw: &'a [u8],
}

/// A stream's new head, offset and counts.
pub(super) struct StreamUpdate {
    stream_id: i32,
    epoch: i64,
    next_offset: i64,
    head: Vec<u8>,
    head_pos: i64,
    ledgered: i64,
    duplicates: i64,
    quarantined: i64,
}

/// What the rows of a batch add up to, written after them.
#[derive(Default)]
pub(super) struct Chained<'a> {
    pub(super) counts: BatchCounts,
    pub(super) by_reason: HashMap<RejectionCode, u64>,
    pub(super) projection: BatchHourly<'a>,
    pub(super) quarantine: Vec<QuarantineRow<'a>>,
    pub(super) streams: Vec<StreamUpdate>,
}

/// Chains and copies every ledgered event of the batch, partition by partition from its stream's
/// head, and collects the projection, the quarantine rows and the streams' updates.
pub(super) fn write_rows<'a>(
    tx: &mut postgres::Transaction<'_>,
    ordered: &[&'a PartitionBatch],
    fates: &[Vec<Fate>],
    mut heads: Heads,
    recorded_at: DateTime<Utc>,
) -> Result<Chained<'a>, StoreError> {
    let mut out = Chained::default();
    let mut copy = UsageCopy::start(tx)?;
    // The canonical bytes of each event, hashed into the chain: one buffer for the batch.
    let mut payload = Vec::with_capacity(512);
    for (b, fates) in ordered.iter().zip(fates) {
        let (head, pos) = heads.remove(&b.claim.stream_id).expect("locked in step 1");
        let head: [u8; 32] = head
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Invariant(format!("stream {} head is not 32 bytes", b.claim.stream_id)))?;
        let update = chain_partition(&mut copy, &mut out, &mut payload, b, fates, (head, pos), recorded_at)?;
        out.counts.ledgered += update.ledgered as u64;
        out.counts.duplicates += update.duplicates as u64;
        out.counts.quarantined += update.quarantined as u64;
        out.streams.push(update);
    }
    copy.finish()?;
    Ok(out)
}

/// One partition's messages: ledgered events chained from `head` and copied, quarantined ones
/// collected, duplicates counted.
fn chain_partition<'a>(
    copy: &mut UsageCopy<'_>,
    out: &mut Chained<'a>,
    payload: &mut Vec<u8>,
    b: &'a PartitionBatch,
    fates: &[Fate],
    (mut head, mut pos): ([u8; 32], i64),
    recorded_at: DateTime<Utc>,
) -> Result<StreamUpdate, StoreError> {
    let stream_id = b.claim.stream_id;
    let (mut ledgered, mut duplicates, mut quarantined) = (0i64, 0i64, 0i64);
    for (m, fate) in b.messages.iter().zip(fates) {
        match (fate, &m.verdict) {
            (Fate::Ledger, Ok(e)) => {
                pos += 1;
                payload.clear();
                e.write_payload(payload);
                let place = UsagePlace {
                    stream_id,
                    stream_pos: pos,
                    recorded_at,
                    src_partition: b.claim.partition,
                    src_offset: m.offset,
                };
                head = link(&head, &ChainRow::usage(e, payload, place));
                let row =
                    UsageRow { event: e, recorded_at, stream_id, stream_pos: pos, src_offset: m.offset, hash: &head };
                copy.write(&row)?;
                out.projection.apply(e);
                ledgered += 1;
            }
            (Fate::Duplicate, _) => duplicates += 1,
            (Fate::Quarantine(code, message), verdict) => {
                let (event_id, tenant) = match verdict {
                    Ok(e) => (Some(e.event_id), Some(e.tenant_id.clone())),
                    Err(r) => (r.event_id, r.tenant_id.clone()),
                };
                out.quarantine.push(QuarantineRow {
                    stream_id,
                    offset: m.offset,
                    code: *code,
                    message: message.clone(),
                    event_id,
                    tenant,
                    key: m.key(),
                    raw: &m.payload,
                });
                *out.by_reason.entry(*code).or_insert(0) += 1;
                out.counts.quarantined_at.push((b.claim.partition, m.offset, *code));
                quarantined += 1;
            }
            (Fate::Ledger, Err(_)) => unreachable!("a rejected message is never ledgered"),
        }
    }
    let next_offset = b.messages.last().expect("non-empty").offset + 1;
    Ok(StreamUpdate {
        stream_id,
        epoch: b.claim.epoch,
        next_offset,
        head: head.to_vec(),
        head_pos: pos,
        ledgered,
        duplicates,
        quarantined,
    })
}

/// Adds the batch's hourly fold to `usage_hourly`.
pub(super) fn write_projection(
    tx: &mut postgres::Transaction<'_>,
    projection: &BatchHourly<'_>,
) -> Result<(), StoreError> {
    if projection.rows.is_empty() {
        return Ok(());
    }
    let mut t = Vec::new();
    let mut s = Vec::new();
    let mut p = Vec::new();
    let mut m: Vec<Option<&str>> = Vec::new();
    let mut h = Vec::new();
    let mut g: Vec<Decimal> = Vec::new();
    let mut n = Vec::new();
    for ((tenant, sku, project, profile, hour), v) in &projection.rows {
        t.push(*tenant);
        s.push(*sku);
        p.push(*project);
        m.push(*profile);
        h.push(*hour);
        g.push(v.gpu_seconds);
        n.push(v.events);
    }
    tx.execute(
        "INSERT INTO usage_hourly AS u (tenant_id, gpu_sku, project, mig_profile, hour, gpu_seconds, events)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $7::text[], $4::timestamptz[], $5::numeric[], $6::bigint[])
         ON CONFLICT (tenant_id, gpu_sku, project, mig_profile, hour) DO UPDATE
            SET gpu_seconds = u.gpu_seconds + excluded.gpu_seconds, events = u.events + excluded.events",
        &[&t, &s, &p, &h, &g, &n, &m],
    )?;
    Ok(())
}

/// Writes the quarantined messages of the batch.
pub(super) fn write_quarantine(
    tx: &mut postgres::Transaction<'_>,
    rows: &[QuarantineRow<'_>],
    recorded_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let stream_ids: Vec<i32> = rows.iter().map(|q| q.stream_id).collect();
    let offsets: Vec<i64> = rows.iter().map(|q| q.offset).collect();
    let reasons: Vec<&str> = rows.iter().map(|q| q.code.as_str()).collect();
    let messages: Vec<&str> = rows.iter().map(|q| q.message.as_str()).collect();
    let event_ids: Vec<Option<Uuid>> = rows.iter().map(|q| q.event_id).collect();
    let tenants: Vec<Option<&str>> = rows.iter().map(|q| q.tenant.as_deref()).collect();
    let keys: Vec<Option<&[u8]>> = rows.iter().map(|q| q.key).collect();
    let raws: Vec<&[u8]> = rows.iter().map(|q| q.raw).collect();
    tx.execute(
        "INSERT INTO quarantine (stream_id, src_offset, recorded_at, reason, message, event_id, tenant_id, msg_key, raw)
         SELECT s, o, $3, r, m, e, t, k, b
           FROM unnest($1::int[], $2::bigint[], $4::text[], $5::text[], $6::uuid[], $7::text[], $8::bytea[], $9::bytea[])
                AS q(s, o, r, m, e, t, k, b)",
        &[&stream_ids, &offsets, &recorded_at, &reasons, &messages, &event_ids, &tenants, &keys, &raws],
    )?;
    Ok(())
}

/// One statement for every stream of the batch, fenced once more by owner and epoch.
pub(super) fn update_streams(
    tx: &mut postgres::Transaction<'_>,
    owner: &str,
    updates: &[StreamUpdate],
) -> Result<(), StoreError> {
    let n = tx.execute(
        "UPDATE ledger_streams s
            SET next_offset = u.next_offset, head_hash = u.head, head_pos = u.head_pos,
                ledgered = s.ledgered + u.ledgered, duplicates = s.duplicates + u.duplicates,
                quarantined = s.quarantined + u.quarantined
           FROM unnest($1::int[], $2::bigint[], $3::bigint[], $4::bytea[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])
                AS u(stream_id, epoch, next_offset, head, head_pos, ledgered, duplicates, quarantined)
          WHERE s.stream_id = u.stream_id AND s.owner = $9 AND s.epoch = u.epoch",
        &[
            &updates.iter().map(|u| u.stream_id).collect::<Vec<_>>(),
            &updates.iter().map(|u| u.epoch).collect::<Vec<_>>(),
            &updates.iter().map(|u| u.next_offset).collect::<Vec<_>>(),
            &updates.iter().map(|u| u.head.as_slice()).collect::<Vec<_>>(),
            &updates.iter().map(|u| u.head_pos).collect::<Vec<_>>(),
            &updates.iter().map(|u| u.ledgered).collect::<Vec<_>>(),
            &updates.iter().map(|u| u.duplicates).collect::<Vec<_>>(),
            &updates.iter().map(|u| u.quarantined).collect::<Vec<_>>(),
            &owner,
        ],
    )?;
    if n != updates.len() as u64 {
        return Err(StoreError::Invariant(format!(
            "{} of {} streams lost their fence inside the transaction",
            updates.len() as u64 - n,
            updates.len()
        )));
    }
    Ok(())
}
