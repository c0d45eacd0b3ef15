//! Appending a batch: the events, the quarantined messages and the new offsets of every
//! partition in the batch are committed in ONE transaction, or not at all.
//!
//! Inside the transaction, each message is decided in offset order, exactly as if messages came
//! one at a time (so the outcome never depends on where batches are cut):
//! 1. the partition's stream row is locked and the fence checked (owner, epoch, next offset);
//! 2. an event id seen before (in the ledger or earlier in the batch) is a duplicate when the
//!    content's fingerprint is equal (counted, dropped) and a conflict otherwise (quarantined);
//! 3. else usage overlapping GPU time already ledgered (or accepted earlier in the batch) for the
//!    same GPU is quarantined as an overlap (decided under per-GPU-bucket advisory locks, so across
//!    all ingesters);
//! 4. the rest is chained by hash and appended, and folded into the hourly projection.

use crate::StoreError;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use domain::chain::{link, ChainRow};
use domain::projection::HourlyUsage;
use domain::usage::{Rejection, RejectionCode, UsageRecorded, LEDGER_KIND, LEDGER_VERSION};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use postgres::Client;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use uuid::Uuid;

/// A partition this ingester claimed: the epoch fences every older claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub stream_id: i32,
    pub partition: i32,
    pub epoch: i64,
    /// Where to resume; `None` for a partition the ledger has never seen.
    pub next_offset: Option<i64>,
}

/// Claims partitions for `owner`: bumps each stream's epoch so that any earlier owner's batch
/// in flight is refused at commit. Returns where to resume each partition.
pub fn claim_partitions(
    client: &mut Client,
    topic: &str,
    partitions: &[i32],
    owner: &str,
) -> Result<Vec<Claim>, StoreError> {
    let mut tx = client.transaction()?;
    let mut claims = Vec::with_capacity(partitions.len());
    let mut sorted = partitions.to_vec();
    sorted.sort_unstable();
    for p in sorted {
        let row = tx.query_one(
            "INSERT INTO ledger_streams (topic, kafka_partition, owner, epoch, claimed_at)
             VALUES ($1, $2, $3, 1, now())
             ON CONFLICT (topic, kafka_partition) DO UPDATE
                SET owner = excluded.owner, epoch = ledger_streams.epoch + 1, claimed_at = now()
             RETURNING stream_id, epoch, next_offset",
            &[&topic, &p, &owner],
        )?;
        claims.push(Claim { stream_id: row.get(0), partition: p, epoch: row.get(1), next_offset: row.get(2) });
    }
    tx.commit()?;
    Ok(claims)
}

/// One consumed message and the pure validator's verdict on it. For a valid event it also carries
/// the canonical payload bytes and fingerprint, computed once, off the database's critical path.
#[derive(Debug, Clone)]
pub struct InMessage {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub verdict: Result<UsageRecorded, Rejection>,
    canonical: Option<(Vec<u8>, [u8; 32])>,
}

impl InMessage {
    pub fn new(offset: i64, key: Option<Vec<u8>>, payload: Vec<u8>, verdict: Result<UsageRecorded, Rejection>) -> Self {
        let canonical = verdict.as_ref().ok().map(|e| {
            let bytes = e.payload_bytes();
            let print = domain::usage::fingerprint_of(&bytes);
            (bytes, print)
        });
        InMessage { offset, key, payload, verdict, canonical }
    }

    fn canonical(&self) -> &(Vec<u8>, [u8; 32]) {
        self.canonical.as_ref().expect("a valid event has its canonical payload")
    }
}

/// Canonical JSON bytes sent as `jsonb` in binary COPY: a version byte, then the text.
#[derive(Debug)]
pub(crate) struct RawJsonb<'a>(pub(crate) &'a [u8]);

impl ToSql for RawJsonb<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&[1]);
        out.extend_from_slice(self.0);
        Ok(postgres::types::IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }
    postgres::types::to_sql_checked!();
}

/// The binary COPY into `ledger_events`, column by column; every writer of ledger rows uses it.
pub(crate) fn ledger_copy<'a>(tx: &'a mut postgres::Transaction<'_>) -> Result<BinaryCopyInWriter<'a>, StoreError> {
    let sink = tx.copy_in(
        "COPY ledger_events (occurred_at, recorded_at, stream_id, stream_pos, src_offset, version, kind, tenant_id, event_id, hash, payload) FROM STDIN BINARY",
    )?;
    Ok(BinaryCopyInWriter::new(
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
    ))
}

/// A run of consecutive offsets of one claimed partition.
#[derive(Debug, Clone)]
pub struct PartitionBatch {
    pub claim: Claim,
    pub messages: Vec<InMessage>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchCounts {
    pub ledgered: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub by_reason: Vec<(RejectionCode, u64)>,
    /// Partition, offset and reason of every quarantined message of the batch.
    pub quarantined_at: Vec<(i32, i64, RejectionCode)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    Committed(BatchCounts),
    /// Nothing was written: these partitions are no longer ours, or our position in them is not
    /// where the ledger says it is. Each comes with the ledger's owner check and next offset.
    Fenced(Vec<Fence>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub partition: i32,
    /// Still ours (same owner and epoch) but at another offset: seek there and go on.
    pub still_owned: bool,
    pub next_offset: Option<i64>,
}

/// `[start, end)` of GPU time.
type Interval = (DateTime<Utc>, DateTime<Utc>);

struct QuarantineRow<'a> {
    stream_id: i32,
    offset: i64,
    code: RejectionCode,
    message: String,
    event_id: Option<Uuid>,
    tenant: Option<String>,
    key: Option<&'a [u8]>,
    raw: &'a [u8],
}

struct StreamUpdate {
    stream_id: i32,
    epoch: i64,
    next_offset: i64,
    head: Vec<u8>,
    head_pos: i64,
    ledgered: i64,
    duplicates: i64,
    quarantined: i64,
}

fn overlap(e: &UsageRecorded) -> Fate {
    Fate::Quarantine(
        RejectionCode::Overlap,
        format!(
            "GPU-{} is already billed for part of [{}, {})",
            e.gpu_id,
            domain::usage::format_instant(e.interval_start),
            domain::usage::format_instant(e.interval_end)
        ),
    )
}

/// The stored fingerprints of those of these event ids that are in the ledger.
fn stored_fingerprints(
    tx: &mut postgres::Transaction<'_>,
    keys: &[(&str, Uuid)],
) -> Result<HashMap<(String, Uuid), [u8; 32]>, StoreError> {
    let mut out = HashMap::new();
    if keys.is_empty() {
        return Ok(out);
    }
    let (tenants, ids): (Vec<&str>, Vec<Uuid>) = keys.iter().copied().unzip();
    for row in tx.query(
        "SELECT k.tenant_id, k.event_id, k.fingerprint
           FROM ledger_event_ids k
           JOIN unnest($1::text[], $2::uuid[]) AS b(tenant_id, event_id)
             ON k.tenant_id = b.tenant_id AND k.event_id = b.event_id",
        &[&tenants, &ids],
    )? {
        let print: Vec<u8> = row.get(2);
        let print: [u8; 32] = print
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Invariant("a stored fingerprint is not 32 bytes".into()))?;
        out.insert((row.get(0), row.get(1)), print);
    }
    Ok(out)
}

enum Fate {
    Ledger,
    Duplicate,
    Quarantine(RejectionCode, String),
}

fn month_of(t: DateTime<Utc>) -> NaiveDate {
    NaiveDate::from_ymd_opt(t.year(), t.month(), 1).expect("first of a month")
}

/// Overlap checks serialize per bucket of GPUs: enough buckets that two ingesters rarely wait
/// for each other, few enough that a batch's advisory locks fit PostgreSQL's lock table.
pub const GPU_BUCKETS: i64 = 256;

fn gpu_bucket(gpu: &Uuid) -> i64 {
    // A fixed, documented key space: 0x6770_0000 ("gp") + bucket, so other advisory locks can avoid it.
    0x6770_0000 + (u64::from_le_bytes(gpu.as_bytes()[..8].try_into().expect("8 bytes")) % GPU_BUCKETS as u64) as i64
}

/// Months whose ledger partitions exist, known to this process.
#[derive(Debug, Default)]
pub struct PartitionCache(HashSet<NaiveDate>);

/// Ensures the monthly partitions for these events exist, each in its own short transaction.
pub fn ensure_months(
    client: &mut Client,
    cache: &mut PartitionCache,
    batch: &[PartitionBatch],
) -> Result<(), StoreError> {
    let months: BTreeSet<NaiveDate> = batch
        .iter()
        .flat_map(|b| b.messages.iter())
        .filter_map(|m| m.verdict.as_ref().ok())
        .map(|e| month_of(e.interval_start))
        .filter(|m| !cache.0.contains(m))
        .collect();
    ensure_month_set(client, cache, months)
}

/// Ensures the monthly partitions for these instants exist.
pub fn ensure_months_for(client: &mut Client, instants: impl Iterator<Item = DateTime<Utc>>) -> Result<(), StoreError> {
    ensure_month_set(client, &mut PartitionCache::default(), instants.map(month_of).collect())
}

fn ensure_month_set(
    client: &mut Client,
    cache: &mut PartitionCache,
    months: BTreeSet<NaiveDate>,
) -> Result<(), StoreError> {
    for m in months {
        // DDL on a fresh month can meet concurrent catalog updates (other ingesters, GRANTs in
        // other databases of the cluster); it is idempotent, so a few quick retries are safe.
        let mut attempt = 0;
        loop {
            match client.execute("SELECT ledger_ensure_month($1)", &[&m]) {
                Ok(_) => break,
                Err(e) if attempt < 5 && !e.is_closed() => {
                    attempt += 1;
                    tracing::warn!(error = %e, month = %m, "creating the month's partition failed, retrying");
                    std::thread::sleep(std::time::Duration::from_millis(50 * attempt));
                }
                Err(e) => return Err(e.into()),
            }
        }
        cache.0.insert(m);
    }
    Ok(())
}

/// Appends one batch in one transaction. See the module doc for the order of decisions.
///
/// Optimistic first: the ledger's event ids are read only for events whose GPU time is already
/// taken (a redelivered event always overlaps its own first copy). An id reused with other GPU
/// time fails the unique key instead; the transaction is then rolled back and redone reading the
/// ids of the whole batch first.
pub fn append_batch(
    client: &mut Client,
    cache: &mut PartitionCache,
    owner: &str,
    batch: &[PartitionBatch],
    recorded_at: DateTime<Utc>,
) -> Result<AppendOutcome, StoreError> {
    match append_once(client, cache, owner, batch, recorded_at, false) {
        Err(StoreError::Db(e)) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
            tracing::debug!("an event id was reused with other GPU time; redoing the batch with a full id lookup");
            append_once(client, cache, owner, batch, recorded_at, true)
        }
        other => other,
    }
}

fn append_once(
    client: &mut Client,
    cache: &mut PartitionCache,
    owner: &str,
    batch: &[PartitionBatch],
    recorded_at: DateTime<Utc>,
    full_lookup: bool,
) -> Result<AppendOutcome, StoreError> {
    // Microseconds, as PostgreSQL stores them, so the hash of a row read back is the same.
    let recorded_at = DateTime::<Utc>::from_timestamp_micros(recorded_at.timestamp_micros()).expect("valid instant");
    let t0 = std::time::Instant::now();
    ensure_months(client, cache, batch)?;
    let mut tx = client.transaction()?;

    // 1. Lock the streams in a fixed order and check the fences.
    let mut heads: HashMap<i32, (Vec<u8>, i64)> = HashMap::new();
    let mut fences = Vec::new();
    let mut ordered: Vec<&PartitionBatch> = batch.iter().filter(|b| !b.messages.is_empty()).collect();
    // Partition order, as in claim_partitions: stream rows are always locked in the same order.
    ordered.sort_by_key(|b| b.claim.partition);
    for b in &ordered {
        let row = tx.query_one(
            "SELECT owner, epoch, next_offset, head_hash, head_pos FROM ledger_streams WHERE stream_id = $1 FOR UPDATE",
            &[&b.claim.stream_id],
        )?;
        let row_owner: Option<String> = row.get(0);
        let epoch: i64 = row.get(1);
        let next_offset: Option<i64> = row.get(2);
        let owned = row_owner.as_deref() == Some(owner) && epoch == b.claim.epoch;
        let first = b.messages[0].offset;
        let in_place = next_offset.is_none_or(|n| n == first);
        if !owned || !in_place {
            fences.push(Fence { partition: b.claim.partition, still_owned: owned, next_offset });
        }
        heads.insert(b.claim.stream_id, (row.get(3), row.get(4)));
    }
    if !fences.is_empty() {
        tx.rollback()?;
        return Ok(AppendOutcome::Fenced(fences));
    }
    for b in &ordered {
        for w in b.messages.windows(2) {
            if w[1].offset != w[0].offset + 1 {
                return Err(StoreError::Invariant(format!(
                    "partition {} batch skips from offset {} to {}",
                    b.claim.partition, w[0].offset, w[1].offset
                )));
            }
        }
    }

    let t_fence = t0.elapsed();
    // 2. What the ledger already holds for this batch: the GPU time of the batch's GPUs (under
    //    per-GPU-bucket advisory locks), and the fingerprints of the event ids that may be in it —
    //    all of them on the full path; on the optimistic path only those of events whose GPU time
    //    is taken (an event id reused with free GPU time then fails the unique key instead).
    // One window per cluster of a GPU's intervals (clusters split where the gap exceeds an hour),
    // so a batch that mixes late usage with current usage reads only the time it touches.
    let mut per_gpu: BTreeMap<Uuid, Vec<Interval>> = BTreeMap::new();
    for b in &ordered {
        for m in &b.messages {
            if let Ok(e) = &m.verdict {
                per_gpu.entry(e.gpu_id).or_default().push((e.interval_start, e.interval_end));
            }
        }
    }
    let mut windows: Vec<(Uuid, Interval)> = Vec::new();
    for (gpu, mut intervals) in per_gpu {
        intervals.sort_unstable();
        let mut current = intervals[0];
        for (s, e) in intervals.into_iter().skip(1) {
            if s <= current.1 + chrono::Duration::hours(1) {
                current.1 = current.1.max(e);
            } else {
                windows.push((gpu, current));
                current = (s, e);
            }
        }
        windows.push((gpu, current));
    }
    let mut busy: HashMap<Uuid, Vec<Interval>> = HashMap::new();
    if !windows.is_empty() {
        let buckets: BTreeSet<i64> = windows.iter().map(|(g, _)| gpu_bucket(g)).collect();
        let buckets: Vec<i64> = buckets.into_iter().collect();
        // Sorted, in one statement: two writers always take bucket locks in the same order.
        tx.execute("SELECT pg_advisory_xact_lock(b) FROM unnest($1::bigint[]) AS b ORDER BY b", &[&buckets])?;
        let gpus: Vec<Uuid> = windows.iter().map(|(g, _)| *g).collect();
        let los: Vec<DateTime<Utc>> = windows.iter().map(|(_, w)| w.0).collect();
        let his: Vec<DateTime<Utc>> = windows.iter().map(|(_, w)| w.1).collect();
        for row in tx.query(
            "SELECT o.gpu_id, o.starts_at, o.ends_at
               FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) AS w(gpu_id, lo, hi)
               JOIN gpu_occupancy o
                 ON o.gpu_id = w.gpu_id AND o.starts_at > w.lo - interval '1 hour' AND o.starts_at < w.hi
              WHERE o.ends_at > w.lo",
            &[&gpus, &los, &his],
        )? {
            busy.entry(row.get(0)).or_default().push((row.get(1), row.get(2)));
        }
    }
    let overlaps = |v: Option<&Vec<Interval>>, e: &UsageRecorded| {
        v.is_some_and(|v| v.iter().any(|(s, t)| *s < e.interval_end && *t > e.interval_start))
    };
    let lookup: Vec<(&str, Uuid)> = ordered
        .iter()
        .flat_map(|b| b.messages.iter())
        .filter_map(|m| m.verdict.as_ref().ok())
        .filter(|e| full_lookup || overlaps(busy.get(&e.gpu_id), e))
        .map(|e| (e.tenant_id.as_str(), e.event_id))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    // Reference fingerprint per event id, and whether it is the ledger's.
    let mut reference: HashMap<(String, Uuid), ([u8; 32], bool)> =
        stored_fingerprints(&mut tx, &lookup)?.into_iter().map(|(k, p)| (k, (p, true))).collect();
    let t_ids = t0.elapsed();

    // 3. Decide each message in offset order, exactly as if they came one at a time: an id seen
    //    before is a duplicate or a conflict; else GPU time already taken is an overlap; else the
    //    event is ledgered and becomes the reference for its id and its GPU time.
    let mut fates: Vec<Vec<Fate>> = Vec::with_capacity(ordered.len());
    let mut this_batch: HashMap<Uuid, Vec<Interval>> = HashMap::new();
    let mut occupied: Vec<(Uuid, DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for b in &ordered {
        let mut f = Vec::with_capacity(b.messages.len());
        for m in &b.messages {
            let e = match &m.verdict {
                Err(r) => {
                    f.push(Fate::Quarantine(r.code, r.message.clone()));
                    continue;
                }
                Ok(e) => e,
            };
            let print = m.canonical().1;
            let key = (e.tenant_id.clone(), e.event_id);
            f.push(match reference.get(&key) {
                Some((p, _)) if *p == print => Fate::Duplicate,
                Some((_, in_ledger)) => Fate::Quarantine(
                    RejectionCode::Conflict,
                    if *in_ledger {
                        format!("event id {} is already in the ledger with other content", e.event_id)
                    } else {
                        format!("event id {} came earlier in this batch with other content", e.event_id)
                    },
                ),
                None if overlaps(busy.get(&e.gpu_id), e) || overlaps(this_batch.get(&e.gpu_id), e) => overlap(e),
                None => {
                    reference.insert(key, (print, false));
                    this_batch.entry(e.gpu_id).or_default().push((e.interval_start, e.interval_end));
                    occupied.push((e.gpu_id, e.interval_start, e.interval_end));
                    Fate::Ledger
                }
            });
        }
        fates.push(f);
    }
    if !occupied.is_empty() {
        let sink = tx.copy_in("COPY gpu_occupancy (gpu_id, starts_at, ends_at) FROM STDIN BINARY")?;
        let mut w = BinaryCopyInWriter::new(sink, &[Type::UUID, Type::TIMESTAMPTZ, Type::TIMESTAMPTZ]);
        for (g, s, e) in &occupied {
            w.write(&[g, s, e])?;
        }
        w.finish()?;
    }

    let t_gpu = t0.elapsed();
    // 4. Append: event ids, chained rows, projection, quarantine, stream heads and offsets.
    let mut counts = BatchCounts::default();
    let mut by_reason: HashMap<RejectionCode, u64> = HashMap::new();
    // Written after the ledger rows: one COPY at a time on a connection.
    let mut new_ids: Vec<(&str, Uuid, &[u8; 32])> = Vec::new();
    let mut projection = HourlyUsage::default();
    let mut q_rows: Vec<QuarantineRow<'_>> = Vec::new();
    let mut stream_updates: Vec<StreamUpdate> = Vec::new();

    let mut writer = ledger_copy(&mut tx)?;
    for (bi, b) in ordered.iter().enumerate() {
        let (head, mut pos) = heads.remove(&b.claim.stream_id).expect("locked above");
        let mut head: [u8; 32] = head
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Invariant(format!("stream {} head is not 32 bytes", b.claim.stream_id)))?;
        let (mut ledgered, mut dups, mut quarantined) = (0i64, 0i64, 0i64);
        for (mi, m) in b.messages.iter().enumerate() {
            match (&fates[bi][mi], &m.verdict) {
                (Fate::Ledger, Ok(e)) => {
                    pos += 1;
                    let bytes = &m.canonical().0;
                    let payload = RawJsonb(bytes);
                    let row = ChainRow {
                        stream_id: b.claim.stream_id,
                        stream_pos: pos,
                        event_id: e.event_id,
                        tenant_id: &e.tenant_id,
                        kind: LEDGER_KIND,
                        version: LEDGER_VERSION,
                        occurred_at: e.interval_start,
                        recorded_at,
                        src_partition: Some(b.claim.partition),
                        src_offset: Some(m.offset),
                        payload: bytes,
                    };
                    head = link(&head, &row);
                    let values: [&(dyn ToSql + Sync); 11] = [
                        &e.interval_start,
                        &recorded_at,
                        &b.claim.stream_id,
                        &pos,
                        &m.offset,
                        &LEDGER_VERSION,
                        &LEDGER_KIND,
                        &e.tenant_id,
                        &e.event_id,
                        &head.as_slice(),
                        &payload,
                    ];
                    writer.write(&values)?;
                    new_ids.push((&e.tenant_id, e.event_id, &m.canonical().1));
                    projection.apply(e);
                    ledgered += 1;
                }
                (Fate::Duplicate, _) => dups += 1,
                (Fate::Quarantine(code, message), verdict) => {
                    let (event_id, tenant) = match verdict {
                        Ok(e) => (Some(e.event_id), Some(e.tenant_id.clone())),
                        Err(r) => (r.event_id, r.tenant_id.clone()),
                    };
                    q_rows.push(QuarantineRow {
                        stream_id: b.claim.stream_id,
                        offset: m.offset,
                        code: *code,
                        message: message.clone(),
                        event_id,
                        tenant,
                        key: m.key.as_deref(),
                        raw: &m.payload,
                    });
                    *by_reason.entry(*code).or_insert(0) += 1;
                    counts.quarantined_at.push((b.claim.partition, m.offset, *code));
                    quarantined += 1;
                }
                (Fate::Ledger, Err(_)) => unreachable!("a rejected message is never ledgered"),
            }
        }
        let next = b.messages.last().expect("non-empty").offset + 1;
        stream_updates.push(StreamUpdate {
            stream_id: b.claim.stream_id,
            epoch: b.claim.epoch,
            next_offset: next,
            head: head.to_vec(),
            head_pos: pos,
            ledgered,
            duplicates: dups,
            quarantined,
        });
        counts.ledgered += ledgered as u64;
        counts.duplicates += dups as u64;
        counts.quarantined += quarantined as u64;
    }
    writer.finish()?;
    let t_copy = t0.elapsed();

    if !new_ids.is_empty() {
        let sink = tx.copy_in("COPY ledger_event_ids (tenant_id, event_id, fingerprint) FROM STDIN BINARY")?;
        let mut w = BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::UUID, Type::BYTEA]);
        for (tenant, id, print) in &new_ids {
            w.write(&[tenant, id, &print.as_slice()])?;
        }
        w.finish()?;
    }

    let t_keys = t0.elapsed();
    if !projection.rows.is_empty() {
        let mut t = Vec::new();
        let mut s = Vec::new();
        let mut p = Vec::new();
        let mut h = Vec::new();
        let mut g: Vec<Decimal> = Vec::new();
        let mut n = Vec::new();
        for (k, v) in &projection.rows {
            t.push(k.tenant_id.as_str());
            s.push(k.gpu_sku.as_str());
            p.push(k.project.as_str());
            h.push(k.hour);
            g.push(v.gpu_seconds);
            n.push(v.events);
        }
        tx.execute(
            "INSERT INTO usage_hourly AS u (tenant_id, gpu_sku, project, hour, gpu_seconds, events)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::numeric[], $6::bigint[])
             ON CONFLICT (tenant_id, gpu_sku, project, hour) DO UPDATE
                SET gpu_seconds = u.gpu_seconds + excluded.gpu_seconds, events = u.events + excluded.events",
            &[&t, &s, &p, &h, &g, &n],
        )?;
    }

    let t_proj = t0.elapsed();
    if !q_rows.is_empty() {
        let stream_ids: Vec<i32> = q_rows.iter().map(|q| q.stream_id).collect();
        let offsets: Vec<i64> = q_rows.iter().map(|q| q.offset).collect();
        let reasons: Vec<&str> = q_rows.iter().map(|q| q.code.as_str()).collect();
        let messages: Vec<&str> = q_rows.iter().map(|q| q.message.as_str()).collect();
        let event_ids: Vec<Option<Uuid>> = q_rows.iter().map(|q| q.event_id).collect();
        let tenants: Vec<Option<&str>> = q_rows.iter().map(|q| q.tenant.as_deref()).collect();
        let keys: Vec<Option<&[u8]>> = q_rows.iter().map(|q| q.key).collect();
        let raws: Vec<&[u8]> = q_rows.iter().map(|q| q.raw).collect();
        tx.execute(
            "INSERT INTO quarantine (stream_id, src_offset, recorded_at, reason, message, event_id, tenant_id, msg_key, raw)
             SELECT s, o, $3, r, m, e, t, k, b
               FROM unnest($1::int[], $2::bigint[], $4::text[], $5::text[], $6::uuid[], $7::text[], $8::bytea[], $9::bytea[])
                    AS q(s, o, r, m, e, t, k, b)",
            &[&stream_ids, &offsets, &recorded_at, &reasons, &messages, &event_ids, &tenants, &keys, &raws],
        )?;
    }

    for u in &stream_updates {
        let n = tx.execute(
            "UPDATE ledger_streams
                SET next_offset = $2, head_hash = $3, head_pos = $4,
                    ledgered = ledgered + $5, duplicates = duplicates + $6, quarantined = quarantined + $7
              WHERE stream_id = $1 AND owner = $8 AND epoch = $9",
            &[
                &u.stream_id,
                &u.next_offset,
                &u.head,
                &u.head_pos,
                &u.ledgered,
                &u.duplicates,
                &u.quarantined,
                &owner,
                &u.epoch,
            ],
        )?;
        if n != 1 {
            return Err(StoreError::Invariant(format!("stream {} lost its fence inside the transaction", u.stream_id)));
        }
    }
    tx.commit()?;
    tracing::debug!(?t_fence, ?t_ids, ?t_gpu, ?t_copy, ?t_keys, ?t_proj, total = ?t0.elapsed(), "batch timings");
    let mut by_reason: Vec<(RejectionCode, u64)> = by_reason.into_iter().collect();
    by_reason.sort();
    counts.by_reason = by_reason;
    Ok(AppendOutcome::Committed(counts))
}
