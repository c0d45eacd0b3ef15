//! Reading the ledger back: per-stream accounting, the live hourly projection, a rebuild of the
//! projection from the log alone, and a walk of every hash chain.

use crate::ledger_row::{content, content_columns, Identity};
use crate::StoreError;
use domain::chain::{ChainBreak, ChainRow, ChainVerifier};
use domain::projection::{HourKey, HourTotals, HourlyUsage};
use domain::usage::LEDGER_KIND;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, IsolationLevel, Transaction};
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
    for r in client
        .query("SELECT tenant_id, gpu_sku, project, hour, gpu_seconds, events, mig_profile FROM usage_hourly", &[])?
    {
        let key = HourKey {
            tenant_id: r.get(0),
            gpu_sku: r.get(1),
            project: r.get(2),
            mig_profile: r.get(6),
            hour: r.get(3),
        };
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
    let mut rows = tx.query_raw(
        &format!("SELECT event_id, tenant_id, occurred_at, {} FROM ledger_events WHERE kind = $1", content_columns("")),
        params,
    )?;
    while let Some(r) = rows.next()? {
        let id: Uuid = r.get(0);
        let tenant: String = r.get(1);
        let e = content(&r, 3, Identity { event_id: id, tenant_id: &tenant, occurred_at: r.get(2) })?.into_usage(id)?;
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
        "SELECT tenant_id, coalesce(gpu_sku, payload->'data'->>'gpu_sku'),
                sum(coalesce(gpu_seconds, (payload->'data'->>'gpu_seconds')::numeric))
           FROM ledger_events WHERE kind = $1 GROUP BY 1, 2",
        &[&LEDGER_KIND],
    )?))
}

/// One row of `ledger_streams`: a stream's head, and for a Kafka partition its offset counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamInfo {
    pub stream_id: i32,
    pub topic: String,
    pub partition: i32,
    pub next_offset: Option<i64>,
    pub head_pos: i64,
    pub head_hash: Vec<u8>,
    pub ledgered: i64,
    pub duplicates: i64,
    pub quarantined: i64,
    /// Claims of a Kafka partition count from 1; a local stream is never claimed.
    pub epoch: i64,
}

impl StreamInfo {
    /// `topic/partition`, the way reports name a stream.
    pub fn name(&self) -> String {
        format!("{}/{}", self.topic, self.partition)
    }

    /// A Kafka topic-partition (claimed by an ingester), as opposed to a local stream.
    pub fn is_kafka(&self) -> bool {
        self.epoch > 0
    }
}

/// Every stream, in `stream_id` order.
pub fn streams(tx: &mut Transaction<'_>) -> Result<Vec<StreamInfo>, StoreError> {
    Ok(tx
        .query(
            "SELECT stream_id, topic, kafka_partition, next_offset, head_pos, head_hash, ledgered, duplicates, quarantined, epoch
               FROM ledger_streams ORDER BY stream_id",
            &[],
        )?
        .iter()
        .map(|r| StreamInfo {
            stream_id: r.get(0),
            topic: r.get(1),
            partition: r.get(2),
            next_offset: r.get(3),
            head_pos: r.get(4),
            head_hash: r.get(5),
            ledgered: r.get(6),
            duplicates: r.get(7),
            quarantined: r.get(8),
            epoch: r.get(9),
        })
        .collect())
}

/// The first thing wrong with a stream: the row (its global sequence number, when there is a
/// row to name) and position where the log stops agreeing with itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamBreak {
    pub seq: Option<i64>,
    pub stream_pos: i64,
    pub reason: String,
}

/// The result of walking one stream's rows from the first to the head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamCheck {
    pub stream: StreamInfo,
    pub rows: i64,
    /// The sequence number of the stream's last row.
    pub last_seq: Option<i64>,
    pub broken: Option<StreamBreak>,
}

/// Walks one stream in this transaction's snapshot, row by row (constant memory): every hash
/// link (`domain::chain`), positions 1, 2, 3, ... without gaps, `seq` increasing with the
/// position, Kafka offsets increasing and below `next_offset` (local streams have none); then the
/// stored head against the last row, and the counters that can be checked against rows:
/// `ledgered` = rows, and for Kafka `quarantined` = quarantine rows and
/// `next_offset` = ledgered + duplicates + quarantined (duplicates leave no row to count).
pub fn walk_stream(tx: &mut Transaction<'_>, stream: &StreamInfo) -> Result<StreamCheck, StoreError> {
    let stream_id = stream.stream_id;
    let params: [&(dyn postgres::types::ToSql + Sync); 1] = [&stream_id];
    let mut rows = tx.query_raw(
        &format!(
            "SELECT stream_pos, event_id, tenant_id, kind, version, occurred_at, recorded_at, src_offset, hash, seq, {}
               FROM ledger_events WHERE stream_id = $1 ORDER BY stream_pos, seq",
            content_columns("")
        ),
        params,
    )?;
    let mut verifier = ChainVerifier::default();
    let mut count = 0i64;
    let mut broken: Option<StreamBreak> = None;
    let mut last_seq: Option<i64> = None;
    let mut last_offset: Option<i64> = None;
    while let Some(r) = rows.next()? {
        count += 1;
        let seq: i64 = r.get(9);
        let prev_seq = last_seq;
        last_seq = Some(seq);
        if broken.is_some() {
            continue; // keep counting rows after the first break
        }
        broken = check_row(&r, stream, &mut verifier, prev_seq, &mut last_offset);
    }
    drop(rows);
    if broken.is_none() {
        broken = check_head(stream, &verifier, last_seq);
    }
    if broken.is_none() {
        broken = check_counters(tx, stream, count)?;
    }
    Ok(StreamCheck { stream: stream.clone(), rows: count, last_seq, broken })
}

/// What is wrong with one row of a stream, read in position order after the row with sequence
/// number `prev_seq`: its content, its hash link, its sequence number, its Kafka offset (after
/// `last_offset`, which it moves on).
fn check_row(
    r: &postgres::Row,
    stream: &StreamInfo,
    verifier: &mut ChainVerifier,
    prev_seq: Option<i64>,
    last_offset: &mut Option<i64>,
) -> Option<StreamBreak> {
    let seq: i64 = r.get(9);
    let at = |stream_pos: i64, reason: String| Some(StreamBreak { seq: Some(seq), stream_pos, reason });
    let tenant: String = r.get(2);
    let id = Identity { event_id: r.get(1), tenant_id: &tenant, occurred_at: r.get(5) };
    let payload = match content(r, 10, id).and_then(|c| c.payload_bytes()) {
        Ok(p) => p,
        Err(e) => return at(r.get(0), format!("the row's content cannot be read: {e}")),
    };
    let kind: String = r.get(3);
    let hash: Vec<u8> = r.get(8);
    let mut stored = [0u8; 32];
    if hash.len() == 32 {
        stored.copy_from_slice(&hash);
    }
    let src_offset: Option<i64> = r.get(7);
    let row = ChainRow {
        stream_id: stream.stream_id,
        stream_pos: r.get(0),
        event_id: r.get(1),
        tenant_id: &tenant,
        kind: &kind,
        version: r.get(4),
        occurred_at: r.get(5),
        recorded_at: r.get(6),
        src_partition: Some(stream.partition),
        src_offset,
        payload: &payload,
    };
    if let Err(b) = verifier.check(&row, &stored) {
        let after = prev_seq.map(|p| format!(" (the row before it is seq {p})")).unwrap_or_default();
        return at(b.stream_pos, format!("{}{after}", b.reason));
    }
    if let Some(p) = prev_seq.filter(|p| *p >= seq) {
        return at(row.stream_pos, format!("seq {seq} does not come after seq {p} of the previous position"));
    }
    match (stream.is_kafka(), src_offset) {
        (false, None) => None,
        (false, Some(o)) => at(row.stream_pos, format!("a local stream's row has a Kafka offset ({o})")),
        (true, None) => at(row.stream_pos, "a Kafka stream's row has no offset".into()),
        (true, Some(o)) => {
            let broken = if last_offset.is_some_and(|l| l >= o) {
                at(row.stream_pos, format!("offset {o} does not come after offset {last_offset:?}"))
            } else if stream.next_offset.is_none_or(|n| o >= n) {
                at(row.stream_pos, format!("offset {o} is not below next_offset {:?}", stream.next_offset))
            } else {
                None
            };
            *last_offset = Some(o);
            broken
        }
    }
}

/// The stored head of a stream against where its rows ended (`verifier`, after the last row,
/// whose sequence number is `last_seq`).
fn check_head(stream: &StreamInfo, verifier: &ChainVerifier, last_seq: Option<i64>) -> Option<StreamBreak> {
    let (computed_head, last_pos) = verifier.head();
    if last_pos != stream.head_pos || computed_head.as_slice() != stream.head_hash.as_slice() {
        return Some(StreamBreak {
            seq: last_seq,
            stream_pos: last_pos,
            reason: format!(
                "the stream head says position {} hash {}, the rows end at position {last_pos} hash {}",
                stream.head_pos,
                hex::encode(&stream.head_hash),
                hex::encode(computed_head)
            ),
        });
    }
    None
}

/// The offset accounting of `ledger_streams` against the rows it counts.
fn check_counters(tx: &mut Transaction<'_>, s: &StreamInfo, rows: i64) -> Result<Option<StreamBreak>, StoreError> {
    let at = |reason: String| Some(StreamBreak { seq: None, stream_pos: s.head_pos, reason });
    if s.ledgered != rows {
        return Ok(at(format!("ledgered says {}, the stream has {rows} rows", s.ledgered)));
    }
    let q = tx.query_one("SELECT count(*), max(src_offset) FROM quarantine WHERE stream_id = $1", &[&s.stream_id])?;
    let (quarantine_rows, max_offset): (i64, Option<i64>) = (q.get(0), q.get(1));
    if quarantine_rows != s.quarantined {
        return Ok(at(format!("quarantined says {}, the quarantine has {quarantine_rows} rows", s.quarantined)));
    }
    if !s.is_kafka() {
        return Ok(None);
    }
    let consumed = s.next_offset.unwrap_or(0);
    if consumed != s.ledgered + s.duplicates + s.quarantined {
        return Ok(at(format!(
            "next_offset {consumed} is not ledgered {} + duplicates {} + quarantined {}",
            s.ledgered, s.duplicates, s.quarantined
        )));
    }
    if let Some(m) = max_offset.filter(|m| *m >= consumed) {
        return Ok(at(format!("quarantined offset {m} is not below next_offset {consumed}")));
    }
    let both: i64 = tx
        .query_one(
            "SELECT count(*) FROM quarantine q JOIN ledger_events e ON e.stream_id = q.stream_id AND e.src_offset = q.src_offset
              WHERE q.stream_id = $1",
            &[&s.stream_id],
        )?
        .get(0);
    if both != 0 {
        return Ok(at(format!("{both} offsets are both ledgered and quarantined")));
    }
    Ok(None)
}

/// The result of walking one stream's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub stream_id: i32,
    pub rows: i64,
    pub result: Result<(), ChainBreak>,
    /// The sequence number of the row where the chain breaks, when there is one to name.
    pub seq: Option<i64>,
}

/// Walks every stream's rows in order (`walk_stream`). Each stream is read in one REPEATABLE READ
/// snapshot (head and rows agree while ingesters write) and streamed row by row (constant memory).
pub fn verify_chains(client: &mut Client) -> Result<Vec<ChainReport>, StoreError> {
    let mut tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start()?;
    let ids: Vec<i32> = streams(&mut tx)?.iter().map(|s| s.stream_id).collect();
    tx.commit()?;
    let mut reports = Vec::new();
    for stream_id in ids {
        let mut tx =
            client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start()?;
        let Some(stream) = streams(&mut tx)?.into_iter().find(|s| s.stream_id == stream_id) else {
            continue;
        };
        let check = walk_stream(&mut tx, &stream)?;
        tx.commit()?;
        reports.push(ChainReport {
            stream_id,
            rows: check.rows,
            seq: check.broken.as_ref().and_then(|b| b.seq),
            result: match check.broken {
                None => Ok(()),
                Some(b) => Err(ChainBreak { stream_pos: b.stream_pos, reason: b.reason }),
            },
        });
    }
    Ok(reports)
}
