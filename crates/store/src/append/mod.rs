//! Appending a batch: the events, the quarantined messages and the new offsets of every
//! partition in the batch are committed in ONE transaction, or not at all.
//!
//! Inside the transaction, each message is decided in offset order, exactly as if messages came
//! one at a time (so the outcome never depends on where batches are cut):
//! 1. the partition's stream row is locked and the fence checked (owner, epoch, next offset);
//! 2. an event id seen before (in the ledger or earlier in the batch) is a duplicate when the
//!    content is equal (counted, dropped) and a conflict otherwise (quarantined);
//! 3. else usage overlapping GPU time already ledgered (or accepted earlier in the batch) for the
//!    same GPU is quarantined as an overlap;
//! 4. the rest is chained by hash and appended (typed columns, one binary COPY), and folded into
//!    the hourly projection;
//! 5. holding the commit lock, what other writers committed meanwhile is checked (see
//!    [`append_batch`]), and the transaction commits.

use crate::copy::BinaryCopy;
use crate::ledger_row::{content as content_of, content_columns, Identity};
use crate::StoreError;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use domain::chain::{link, ChainRow};
use domain::projection::BatchHourly;
use domain::usage::{Rejection, RejectionCode, UsageRecorded, LEDGER_KIND, LEDGER_VERSION};
use parking_lot::Mutex;
use postgres::types::{ToSql, Type};
use postgres::Client;
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
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

/// One consumed message and the pure validator's verdict on it.
#[derive(Debug, Clone)]
pub struct InMessage {
    pub offset: i64,
    /// The message key as received; not kept for a valid event, whose key is its tenant id.
    key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub verdict: Result<UsageRecorded, Rejection>,
}

impl InMessage {
    pub fn new(offset: i64, key: Option<Vec<u8>>, payload: Vec<u8>, verdict: Result<UsageRecorded, Rejection>) -> Self {
        let key = if verdict.is_ok() { None } else { key };
        InMessage { offset, key, payload, verdict }
    }

    /// Sets a valid event aside: the database refused it (see `StoreError::refusal`), so it is
    /// quarantined with the database's reason instead. Returns false if it was not valid.
    pub fn refuse(&mut self, why: &str) -> bool {
        let Ok(e) = &self.verdict else { return false };
        let mut r = Rejection::new(RejectionCode::RefusedByDatabase, format!("the database refused the event: {why}"));
        r.event_id = Some(e.event_id);
        r.tenant_id = Some(e.tenant_id.clone());
        self.key = Some(e.tenant_id.as_bytes().to_vec());
        self.verdict = Err(r);
        true
    }

    /// The message key: as received (a valid event's key is its tenant id, checked).
    pub fn key(&self) -> Option<&[u8]> {
        match &self.verdict {
            Ok(e) => Some(e.tenant_id.as_bytes()),
            Err(_) => self.key.as_deref(),
        }
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

/// One usage row as it goes into `ledger_events`: the event in typed columns (no payload), its
/// place in its stream and its chained hash.
pub(crate) struct UsageRow<'a> {
    pub(crate) event: &'a UsageRecorded,
    pub(crate) recorded_at: DateTime<Utc>,
    pub(crate) stream_id: i32,
    pub(crate) stream_pos: i64,
    pub(crate) src_offset: i64,
    pub(crate) hash: &'a [u8; 32],
}

/// The columns of a usage row, in the order of [`UsageRow::with_values`] and [`USAGE_TYPES`].
pub(crate) const USAGE_COLUMNS: &str = "occurred_at, recorded_at, stream_id, stream_pos, src_offset, version, kind, \
    tenant_id, event_id, hash, gpu_id, interval_end, gpu_seconds, gpu_sku, node, project, job, labels, source";

pub(crate) const USAGE_TYPES: [Type; 19] = [
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
    Type::UUID,
    Type::TIMESTAMPTZ,
    Type::NUMERIC,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
    Type::TEXT,
];

impl UsageRow<'_> {
    /// Calls `f` with the row's values in [`USAGE_COLUMNS`] order.
    pub(crate) fn with_values<R>(&self, f: impl FnOnce(&[&(dyn ToSql + Sync)]) -> R) -> R {
        let e = self.event;
        let labels =
            (!e.labels.is_empty()).then(|| serde_json::to_vec(&e.labels).expect("a map of strings always serializes"));
        let labels = labels.as_deref().map(RawJsonb);
        let seconds = e.gpu_seconds.value();
        f(&[
            &e.interval_start,
            &self.recorded_at,
            &self.stream_id,
            &self.stream_pos,
            &self.src_offset,
            &LEDGER_VERSION,
            &LEDGER_KIND,
            &e.tenant_id,
            &e.event_id,
            &self.hash.as_slice(),
            &e.gpu_id,
            &e.interval_end,
            &seconds,
            &e.gpu_sku,
            &e.node,
            &e.project,
            &e.job,
            &labels,
            &e.source,
        ])
    }
}

/// The binary COPY of usage rows into `ledger_events`; the ingester and the benchmarks' ceiling
/// write rows through it, so both write the same rows.
pub(crate) struct UsageCopy<'a>(BinaryCopy<'a>);

impl<'a> UsageCopy<'a> {
    pub(crate) fn start(tx: &'a mut postgres::Transaction<'_>) -> Result<UsageCopy<'a>, StoreError> {
        Ok(UsageCopy(BinaryCopy::start(
            tx,
            &format!("COPY ledger_events ({USAGE_COLUMNS}) FROM STDIN BINARY"),
            &USAGE_TYPES,
        )?))
    }

    pub(crate) fn write(&mut self, r: &UsageRow<'_>) -> Result<(), StoreError> {
        r.with_values(|v| self.0.write(v))
    }

    pub(crate) fn finish(self) -> Result<u64, StoreError> {
        self.0.finish()
    }
}

/// A run of consecutive offsets of one claimed partition.
#[derive(Debug, Clone)]
pub struct PartitionBatch {
    pub claim: Claim,
    pub messages: Vec<InMessage>,
}

/// How a batch was checked, at commit time, against what other writers committed meanwhile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CommitCheck {
    /// Decided holding the commit lock from the start: nothing to check.
    #[default]
    Serial,
    /// Every commit since its look at the ledger was this process's: checked in memory.
    InMemory,
    /// Some were not (another process's, or forgotten): the GPU-time index was probed.
    Probed,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchCounts {
    pub ledgered: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub by_reason: Vec<(RejectionCode, u64)>,
    /// Partition, offset and reason of every quarantined message of the batch.
    pub quarantined_at: Vec<(i32, i64, RejectionCode)>,
    pub commit_check: CommitCheck,
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

/// GPU time known to be taken, per GPU: disjoint intervals by start.
#[derive(Default)]
struct GpuTime(FxHashMap<Uuid, BTreeMap<DateTime<Utc>, DateTime<Utc>>>);

impl GpuTime {
    /// Does `[s, e)` overlap any interval of `gpu`? The intervals are disjoint, so only the last
    /// one starting before `e` can.
    fn overlaps(&self, gpu: &Uuid, s: DateTime<Utc>, e: DateTime<Utc>) -> bool {
        self.0.get(gpu).and_then(|m| m.range(..e).next_back()).is_some_and(|(_, end)| *end > s)
    }

    fn insert(&mut self, gpu: Uuid, s: DateTime<Utc>, e: DateTime<Utc>) {
        self.0.entry(gpu).or_default().insert(s, e);
    }

    /// Every interval, as `(gpu, start, end)`.
    fn intervals(&self) -> impl Iterator<Item = (Uuid, DateTime<Utc>, DateTime<Utc>)> + '_ {
        self.0.iter().flat_map(|(g, m)| m.iter().map(move |(s, e)| (*g, *s, *e)))
    }
}

/// The GPU time a batch asks about: per GPU, each run of touching or overlapping intervals
/// becomes one window `[lo, hi)`.
fn windows(intervals: impl Iterator<Item = (Uuid, DateTime<Utc>, DateTime<Utc>)>) -> Vec<(Uuid, Interval)> {
    let mut all: Vec<(Uuid, DateTime<Utc>, DateTime<Utc>)> = intervals.collect();
    all.sort_unstable();
    let mut out: Vec<(Uuid, Interval)> = Vec::new();
    for (g, s, e) in all {
        match out.last_mut() {
            Some((gpu, current)) if *gpu == g && s <= current.1 => current.1 = current.1.max(e),
            _ => out.push((g, (s, e))),
        }
    }
    out
}

/// A ledgered interval of GPU time, with the id and content of its row (none for the bare
/// intervals kept from before migration 0005).
type Taken = (Uuid, Interval, Option<(Uuid, String, crate::ledger_row::Content)>);

/// The ledgered GPU time that overlaps these windows, with each row's event id and content, as
/// `client` sees the ledger (a transaction sees its own rows too; another connection only what is
/// committed).
///
/// A row overlaps `[lo, hi)` when it ends after `lo` and starts before `hi`; rows are at most an
/// hour long, so it ends before `hi + 1 hour`. One probe per window on the index
/// `(gpu_id, interval_end)`, in each monthly partition the windows reach, named directly so that
/// nothing is pruned per probe. Usage arriving in time order overlaps nothing, and the probe finds
/// no entry at all: what the GPU did before `lo` ended by `lo`.
fn gpu_time(
    client: &mut impl postgres::GenericClient,
    windows: &[(Uuid, Interval)],
    legacy: bool,
) -> Result<Vec<Taken>, StoreError> {
    let mut out = Vec::new();
    if windows.is_empty() {
        return Ok(out);
    }
    // The months each window's rows may start in: from the month of lo - 1 hour to that of hi.
    type Columns = (Vec<Uuid>, Vec<DateTime<Utc>>, Vec<DateTime<Utc>>);
    let mut by_month: BTreeMap<NaiveDate, Columns> = BTreeMap::new();
    for (gpu, (lo, hi)) in windows {
        let mut m = month_of(*lo - chrono::Duration::hours(1));
        while m <= month_of(*hi) {
            let w = by_month.entry(m).or_default();
            w.0.push(*gpu);
            w.1.push(*lo);
            w.2.push(*hi);
            m = m.checked_add_months(chrono::Months::new(1)).expect("a month within range");
        }
    }
    let names: Vec<String> = by_month.keys().map(|m| partition_name(*m)).collect();
    let existing: HashSet<String> = client
        .query("SELECT relname::text FROM pg_class WHERE relname = ANY($1) AND relkind = 'r'", &[&names])?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let content = content_columns("e");
    for ((gpus, los, his), name) in by_month.values().zip(&names) {
        if !existing.contains(name) {
            continue;
        }
        let sql = format!(
            "SELECT w.gpu_id, e.occurred_at, e.interval_end, e.event_id, e.tenant_id, {content}
               FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) AS w(gpu_id, lo, hi)
               JOIN {name} e ON e.gpu_id = w.gpu_id AND e.interval_end > w.lo AND e.interval_end < w.hi + interval '1 hour'
              WHERE e.occurred_at < w.hi"
        );
        for row in client.query(&sql, &[gpus, los, his])? {
            let (gpu, starts, ends): (Uuid, DateTime<Utc>, DateTime<Utc>) = (row.get(0), row.get(1), row.get(2));
            let event_id: Uuid = row.get(3);
            let tenant: String = row.get(4);
            let c = content_of(&row, 5, Identity { event_id, tenant_id: &tenant, occurred_at: starts })?;
            out.push((gpu, (starts, ends), Some((event_id, tenant, c))));
        }
    }
    // Intervals of usage rows from before migration 0005 (the table is only read now; in a
    // ledger that began after it, it is empty and the probe is skipped).
    if legacy {
        let gpus: Vec<Uuid> = windows.iter().map(|(g, _)| *g).collect();
        let los: Vec<DateTime<Utc>> = windows.iter().map(|(_, w)| w.0).collect();
        let his: Vec<DateTime<Utc>> = windows.iter().map(|(_, w)| w.1).collect();
        for row in client.query(
            "SELECT w.gpu_id, g.starts_at, g.ends_at
               FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) AS w(gpu_id, lo, hi)
               JOIN gpu_occupancy g ON g.gpu_id = w.gpu_id AND g.starts_at > w.lo - interval '1 hour'
                                   AND g.starts_at < w.hi AND g.ends_at > w.lo",
            &[&gpus, &los, &his],
        )? {
            out.push((row.get(0), (row.get(1), row.get(2)), None));
        }
    }
    Ok(out)
}

/// The name of the monthly partition of `ledger_events` holding `month` (as
/// `ledger_ensure_month` names it).
fn partition_name(month: NaiveDate) -> String {
    format!("ledger_events_y{:04}m{:02}", month.year(), month.month())
}

/// Which clock a commit number was read from: the clock table (a database recreated or restored
/// by dump has a new one) on one run of the server (a restart, a failover or a restore from a
/// backup starts a new one). A number means the same commit only on the same clock. Read with
/// every number a commit takes, in the same statement, so that a connection kept open by a proxy
/// across a failover cannot pass off the old clock's numbers as the new one's. (The transaction's
/// earlier reading, `seen`, is on the same clock: a transaction never outlives its server run,
/// and that reading holds the clock table against a DROP until the commit.)
#[derive(Debug, Clone, PartialEq, Eq)]
struct Server {
    clock: u32,
    started: DateTime<Utc>,
}

/// Numbers the transaction's commit on the commit clock: the number, with the clock it is on (see
/// [`Server`]), read in the same statement.
fn number_commit(tx: &mut postgres::Transaction<'_>) -> Result<(i64, Server), StoreError> {
    let row = tx.query_one(
        "UPDATE ledger_commit_clock SET commits = commits + 1 RETURNING commits, tableoid, pg_postmaster_start_time()",
        &[],
    )?;
    Ok((row.get(0), Server { clock: row.get::<_, postgres::types::Oid>(1), started: row.get(2) }))
}

/// The GPU time one commit wrote: `(gpu, start, end)` sorted, disjoint per GPU. The log keeps
/// this rather than the batch's [`GpuTime`]: 40 bytes an interval against a B-tree node (some
/// 280 bytes) for each GPU, with one interval a GPU the common case at 10,000 GPUs.
struct Written(Vec<(Uuid, DateTime<Utc>, DateTime<Utc>)>);

impl Written {
    fn of(t: &GpuTime) -> Written {
        let mut v: Vec<_> = t.intervals().collect();
        v.sort_unstable();
        Written(v)
    }

    /// Does `[s, e)` overlap any interval of `gpu`? As in [`GpuTime::overlaps`], only the last one
    /// starting before `e` can.
    fn overlaps(&self, gpu: &Uuid, s: DateTime<Utc>, e: DateTime<Utc>) -> bool {
        let before = self.0.partition_point(|(g, start, _)| (g, start) < (gpu, &e));
        before > 0 && {
            let (g, _, end) = &self.0[before - 1];
            g == gpu && *end > s
        }
    }
}

/// How long a writer waits for another writer's commit to be recorded before it probes instead.
const LOG_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// How many of its latest commits a process remembers. A writer needs those made between its
/// look at the ledger's GPU time and its commit: with a few writers, the last one or two.
const COMMITS_KEPT: usize = 8;

/// The commits this process's writers made, by their number on the commit clock (migration 0007),
/// with the GPU time each wrote. At commit time a writer must know what was committed since it
/// read the ledger's GPU time: the commits numbered after its reading of the clock. When all of
/// them are here, it checks its batch against them in memory; otherwise (another process wrote,
/// or the log has forgotten) it probes the ledger's GPU-time index.
///
/// A commit is recorded only after PostgreSQL confirmed it, so a number here never stands for a
/// transaction that rolled back (whose number the next commit takes).
#[derive(Default)]
pub struct CommitLog(Mutex<Option<(Server, Commits)>>);

/// Commits by number, on one server run.
type Commits = BTreeMap<i64, Arc<Written>>;

impl CommitLog {
    /// Commits `tx`, numbered `n`, and records it. The log stays locked from before the commit
    /// until the record is in: a writer of this process that takes the commit lock after this
    /// commit finds it here, never a moment too early.
    fn commit(
        &self,
        tx: postgres::Transaction<'_>,
        server: &Server,
        n: i64,
        written: Written,
    ) -> Result<(), StoreError> {
        let mut log = self.0.lock();
        tx.commit()?;
        let (s, commits) = log.get_or_insert_with(|| (server.clone(), BTreeMap::new()));
        if s != server {
            *s = server.clone();
            commits.clear();
        }
        commits.insert(n, Arc::new(written));
        while commits.len() > COMMITS_KEPT {
            commits.pop_first();
        }
        Ok(())
    }

    /// What commits `after + 1 ..= upto` wrote, if this process made every one of them.
    fn between(&self, server: &Server, after: i64, upto: i64) -> Option<Vec<Arc<Written>>> {
        if upto <= after {
            return Some(Vec::new());
        }
        // The log is locked across a commit (see `commit`); a commit that hangs (its answer lost
        // in the network) must not stop this writer, which then probes the index instead.
        let log = self.0.try_lock_for(LOG_WAIT)?;
        let (s, commits) = log.as_ref()?;
        if s != server || upto - after > COMMITS_KEPT as i64 {
            return None;
        }
        (after + 1..=upto).map(|n| commits.get(&n).cloned()).collect()
    }
}

/// A writer's two connections: `db` for its transactions, `check` to read, at commit time, what
/// other writers committed (a second session sees only committed rows, none of this batch's).
pub struct LedgerWriter {
    pub db: Client,
    check: Client,
    cache: PartitionCache,
    /// Whether gpu_occupancy holds intervals from before migration 0005 (read once: nothing
    /// writes it any more).
    legacy: Option<bool>,
    /// What this process's writers committed (see [`CommitLog`]).
    commits: Arc<CommitLog>,
}

impl LedgerWriter {
    /// A writer with a commit log of its own; see [`LedgerWriter::with_commit_log`].
    pub fn new(db: Client, check: Client) -> LedgerWriter {
        LedgerWriter { db, check, cache: PartitionCache::default(), legacy: None, commits: Arc::default() }
    }

    /// Shares one commit log among the writers of a process (and a writer's reconnections), so
    /// that each checks the others' commits in memory.
    pub fn with_commit_log(mut self, commits: Arc<CommitLog>) -> LedgerWriter {
        self.commits = commits;
        self
    }

    /// Starts again on new connections (the old ones were lost), still sharing its commit log.
    pub fn reconnect(&mut self, db: Client, check: Client) {
        let commits = self.commits.clone();
        *self = LedgerWriter::new(db, check).with_commit_log(commits);
    }

    /// Either connection lost: open both again.
    pub fn is_closed(&self) -> bool {
        self.db.is_closed() || self.check.is_closed()
    }

    /// Forgets which monthly partitions are known to exist, so that the next append ensures them
    /// again (a month detached or dropped by an operator meanwhile is created anew).
    pub fn forget_partitions(&mut self) {
        self.cache = PartitionCache::default();
    }

    /// See [`append_batch`].
    pub fn append(
        &mut self,
        owner: &str,
        batch: &[PartitionBatch],
        recorded_at: DateTime<Utc>,
    ) -> Result<AppendOutcome, StoreError> {
        append_batch(self, owner, batch, recorded_at)
    }
}

/// Serializes the last step of every writer's transaction (see [`append_batch`]): an advisory
/// lock key of its own ("gpLEDGER").
pub const COMMIT_LOCK: i64 = 0x6770_4c45_4447_4552;

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

/// What an event id is known as, to tell a duplicate from a conflict.
enum Known<'a> {
    /// A ledgered usage row whose GPU time the batch touches: its content.
    Row(Box<UsageRecorded>),
    /// Earlier in this batch.
    Batch(&'a UsageRecorded),
    /// In `ledger_event_ids` only: the fingerprint of its content where one is kept (rows of
    /// other kinds, usage rows from before migration 0005), else `None`: a usage row whose GPU
    /// time the batch does not touch, so its content differs from any event that carries the id.
    Id(Option<[u8; 32]>),
}

/// What each (event id, tenant) is known as (see `Known`); the first entry for a key stands.
type References<'a> = FxHashMap<(Uuid, Cow<'a, str>), Known<'a>>;

/// An event id in `ledger_event_ids`: its tenant, the id, the fingerprint where one is kept.
type StoredId = (String, Uuid, Option<[u8; 32]>);

/// The key of an event in `References`.
fn key(e: &UsageRecorded) -> (Uuid, Cow<'_, str>) {
    (e.event_id, Cow::Borrowed(e.tenant_id.as_str()))
}

/// Which of these (tenant, event id) pairs `ledger_event_ids` holds.
fn stored_ids(tx: &mut postgres::Transaction<'_>, keys: &[(&str, Uuid)]) -> Result<Vec<StoredId>, StoreError> {
    let mut out = Vec::new();
    if keys.is_empty() {
        return Ok(out);
    }
    let (tenants, ids): (Vec<&str>, Vec<Uuid>) = keys.iter().copied().unzip();
    for row in tx.query(
        "SELECT k.tenant_id, k.event_id, k.fingerprint
           FROM ledger_event_ids k
           JOIN unnest($1::text[], $2::uuid[]) AS b(tenant_id, event_id)
             ON k.event_id = b.event_id AND k.tenant_id = b.tenant_id",
        &[&tenants, &ids],
    )? {
        let print = match row.get::<_, Option<Vec<u8>>>(2) {
            None => None,
            Some(p) => Some(
                p.as_slice()
                    .try_into()
                    .map_err(|_| StoreError::Invariant("a stored fingerprint is not 32 bytes".into()))?,
            ),
        };
        out.push((row.get(0), row.get(1), print));
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

/// How a batch is appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Writers work side by side: the batch is decided against its own streams' rows (no one
    /// else writes them), written, and only then, holding [`COMMIT_LOCK`], checked against what
    /// other writers committed meanwhile, and committed.
    Optimistic,
    /// Holding [`COMMIT_LOCK`] from the start, decided against every stream's rows and every event
    /// id of the batch: after an event id turned out to be in the ledger already (the unique key
    /// refused it), or another writer's commit overlapped the batch.
    Serial,
}

/// Appends one batch in one transaction. See the module doc for the order of decisions.
///
/// Several writers (threads of one ingester, or other ingesters) append at once; a GPU-second
/// may be claimed by any of them (GPUs move between tenants, tenants between partitions). The
/// expensive part runs in parallel: each batch is decided against its own streams, then written.
/// The last step is serialized by one advisory lock, [`COMMIT_LOCK`]: holding it, a writer reads
/// what other streams committed in the batch's GPU time (a few index probes per GPU), and commits
/// only if none of it overlaps; a commit therefore always sees every commit before it. When it
/// does overlap (two partitions billing one GPU-second at once, rare), the transaction is rolled
/// back and the batch decided again serially. An event id already in the ledger fails the unique
/// key of `ledger_event_ids` (written first, so little is lost) and sends the batch the serial way
/// too, which looks every id up and tells duplicates from conflicts by content.
pub fn append_batch(
    w: &mut LedgerWriter,
    owner: &str,
    batch: &[PartitionBatch],
    recorded_at: DateTime<Utc>,
) -> Result<AppendOutcome, StoreError> {
    match append_once(w, owner, batch, recorded_at, Mode::Optimistic) {
        Err(StoreError::Db(e)) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
            tracing::debug!("an event id of the batch is in the ledger already; deciding the batch serially");
            append_once(w, owner, batch, recorded_at, Mode::Serial)
        }
        Err(StoreError::Raced) => {
            tracing::debug!("another writer's commit overlapped the batch; deciding it serially");
            append_once(w, owner, batch, recorded_at, Mode::Serial)
        }
        other => other,
    }
}

fn append_once(
    w: &mut LedgerWriter,
    owner: &str,
    batch: &[PartitionBatch],
    recorded_at: DateTime<Utc>,
    mode: Mode,
) -> Result<AppendOutcome, StoreError> {
    // Microseconds, as PostgreSQL stores them, so the hash of a row read back is the same.
    let recorded_at = DateTime::<Utc>::from_timestamp_micros(recorded_at.timestamp_micros()).expect("valid instant");
    let t0 = std::time::Instant::now();
    ensure_months(&mut w.db, &mut w.cache, batch)?;
    let legacy = match w.legacy {
        Some(l) => l,
        None => {
            let l: bool = w.db.query_one("SELECT EXISTS (SELECT 1 FROM gpu_occupancy)", &[])?.get(0);
            *w.legacy.insert(l)
        }
    };
    // Read committed, whatever the server's default: every statement sees every commit before
    // it (the commit clock's reasoning in step 5 rests on it).
    let mut tx = w.db.build_transaction().isolation_level(postgres::IsolationLevel::ReadCommitted).start()?;

    // 1. Lock the streams in a fixed order and check the fences.
    let mut heads: HashMap<i32, (Vec<u8>, i64)> = HashMap::new();
    let mut fences = Vec::new();
    let mut ordered: Vec<&PartitionBatch> = batch.iter().filter(|b| !b.messages.is_empty()).collect();
    // Partition order, as in claim_partitions: stream rows are always locked in the same order.
    ordered.sort_by_key(|b| b.claim.partition);
    // One statement; the rows are locked in the order they are returned.
    let ids: Vec<i32> = ordered.iter().map(|b| b.claim.stream_id).collect();
    let rows = tx.query(
        "SELECT stream_id, owner, epoch, next_offset, head_hash, head_pos FROM ledger_streams
          WHERE stream_id = ANY($1) ORDER BY kafka_partition FOR UPDATE",
        &[&ids],
    )?;
    for b in &ordered {
        let row = rows
            .iter()
            .find(|r| r.get::<_, i32>(0) == b.claim.stream_id)
            .ok_or_else(|| StoreError::Invariant(format!("stream {} has no row", b.claim.stream_id)))?;
        let row_owner: Option<String> = row.get(1);
        let epoch: i64 = row.get(2);
        let next_offset: Option<i64> = row.get(3);
        let owned = row_owner.as_deref() == Some(owner) && epoch == b.claim.epoch;
        let first = b.messages[0].offset;
        let in_place = next_offset.is_none_or(|n| n == first);
        if !owned || !in_place {
            fences.push(Fence { partition: b.claim.partition, still_owned: owned, next_offset });
        }
        heads.insert(b.claim.stream_id, (row.get(4), row.get(5)));
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
    if mode == Mode::Serial {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&COMMIT_LOCK])?;
    }

    let t_fence = t0.elapsed();
    // Every commit up to this number is seen by the reads below (step 5 checks those after it).
    let seen: i64 = tx.query_one("SELECT commits FROM ledger_commit_clock", &[])?.get(0);
    // 2. What the ledger already holds for this batch: the committed GPU time its events touch,
    //    with the ids and content of those rows, and which of its event ids are in
    //    `ledger_event_ids` — every one when serial, else only those of events whose GPU time is
    //    taken (a redelivered event always overlaps its first copy; an id reused with free GPU
    //    time fails the unique key instead).
    let valid = || ordered.iter().flat_map(|b| b.messages.iter()).filter_map(|m| m.verdict.as_ref().ok());
    let asked = windows(valid().map(|e| (e.gpu_id, e.interval_start, e.interval_end)));
    let mut busy = GpuTime::default();
    let mut reference: References<'_> = FxHashMap::default();
    for (gpu, (s, e), known) in gpu_time(&mut tx, &asked, legacy)? {
        busy.insert(gpu, s, e);
        if let Some((event_id, tenant, c)) = known {
            let row = Known::Row(Box::new(c.into_usage(event_id)?));
            reference.entry((event_id, Cow::Owned(tenant))).or_insert(row);
        }
    }
    let lookup: Vec<(&str, Uuid)> = valid()
        .filter(|e| mode == Mode::Serial || busy.overlaps(&e.gpu_id, e.interval_start, e.interval_end))
        .filter(|e| !reference.contains_key(&key(e)))
        .map(|e| (e.tenant_id.as_str(), e.event_id))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    for (tenant, id, print) in stored_ids(&mut tx, &lookup)? {
        reference.entry((id, Cow::Owned(tenant))).or_insert(Known::Id(print));
    }
    let t_ids = t0.elapsed();

    // 3. Decide each message in offset order, exactly as if they came one at a time: an id seen
    //    before is a duplicate or a conflict; else GPU time already taken is an overlap; else the
    //    event is ledgered and becomes the reference for its id and its GPU time.
    let mut fates: Vec<Vec<Fate>> = Vec::with_capacity(ordered.len());
    let mut this_batch = GpuTime::default();
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
            let conflict = |why: &str| {
                Fate::Quarantine(RejectionCode::Conflict, format!("event id {} {why} with other content", e.event_id))
            };
            let known = reference.get(&key(e));
            f.push(match known {
                Some(Known::Row(r)) if **r == *e => Fate::Duplicate,
                Some(Known::Batch(r)) if *r == e => Fate::Duplicate,
                Some(Known::Id(Some(p))) if *p == e.fingerprint() => Fate::Duplicate,
                Some(Known::Batch(_)) => conflict("came earlier in this batch"),
                Some(_) => conflict("is already in the ledger"),
                None if busy.overlaps(&e.gpu_id, e.interval_start, e.interval_end)
                    || this_batch.overlaps(&e.gpu_id, e.interval_start, e.interval_end) =>
                {
                    overlap(e)
                }
                None => {
                    reference.insert(key(e), Known::Batch(e));
                    this_batch.insert(e.gpu_id, e.interval_start, e.interval_end);
                    Fate::Ledger
                }
            });
        }
        fates.push(f);
    }
    let t_decide = t0.elapsed();

    // 4. Append: event ids first (a known id fails here, before the big write), then the chained
    //    rows, the projection, the quarantine, the stream heads and offsets.
    let mut ledgered_ids: Vec<(Uuid, &str)> = ordered
        .iter()
        .zip(&fates)
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
    if !ledgered_ids.is_empty() {
        // No fingerprint: a later copy of the event is told apart by its content (see `Known`).
        let types = [Type::UUID, Type::TEXT];
        let mut w =
            BinaryCopy::start(&mut tx, "COPY ledger_event_ids (event_id, tenant_id) FROM STDIN BINARY", &types)?;
        for (id, tenant) in &ledgered_ids {
            w.write(&[id, tenant])?;
        }
        w.finish()?;
    }
    let t_keys = t0.elapsed();

    let mut counts = BatchCounts::default();
    let mut by_reason: HashMap<RejectionCode, u64> = HashMap::new();
    let mut projection = BatchHourly::default();
    let mut q_rows: Vec<QuarantineRow<'_>> = Vec::new();
    let mut stream_updates: Vec<StreamUpdate> = Vec::new();
    let mut writer = UsageCopy::start(&mut tx)?;
    // The canonical bytes of each event, hashed into the chain: one buffer for the batch.
    let mut payload = Vec::with_capacity(512);
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
                    payload.clear();
                    e.write_payload(&mut payload);
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
                        payload: &payload,
                    };
                    head = link(&head, &row);
                    writer.write(&UsageRow {
                        event: e,
                        recorded_at,
                        stream_id: b.claim.stream_id,
                        stream_pos: pos,
                        src_offset: m.offset,
                        hash: &head,
                    })?;
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
                        key: m.key(),
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

    if !projection.rows.is_empty() {
        let mut t = Vec::new();
        let mut s = Vec::new();
        let mut p = Vec::new();
        let mut h = Vec::new();
        let mut g: Vec<Decimal> = Vec::new();
        let mut n = Vec::new();
        for ((tenant, sku, project, hour), v) in &projection.rows {
            t.push(*tenant);
            s.push(*sku);
            p.push(*project);
            h.push(*hour);
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

    // One statement for every stream of the batch, fenced once more by owner and epoch.
    let n = tx.execute(
        "UPDATE ledger_streams s
            SET next_offset = u.next_offset, head_hash = u.head, head_pos = u.head_pos,
                ledgered = s.ledgered + u.ledgered, duplicates = s.duplicates + u.duplicates,
                quarantined = s.quarantined + u.quarantined
           FROM unnest($1::int[], $2::bigint[], $3::bigint[], $4::bytea[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[])
                AS u(stream_id, epoch, next_offset, head, head_pos, ledgered, duplicates, quarantined)
          WHERE s.stream_id = u.stream_id AND s.owner = $9 AND s.epoch = u.epoch",
        &[
            &stream_updates.iter().map(|u| u.stream_id).collect::<Vec<_>>(),
            &stream_updates.iter().map(|u| u.epoch).collect::<Vec<_>>(),
            &stream_updates.iter().map(|u| u.next_offset).collect::<Vec<_>>(),
            &stream_updates.iter().map(|u| u.head.as_slice()).collect::<Vec<_>>(),
            &stream_updates.iter().map(|u| u.head_pos).collect::<Vec<_>>(),
            &stream_updates.iter().map(|u| u.ledgered).collect::<Vec<_>>(),
            &stream_updates.iter().map(|u| u.duplicates).collect::<Vec<_>>(),
            &stream_updates.iter().map(|u| u.quarantined).collect::<Vec<_>>(),
            &owner,
        ],
    )?;
    if n != stream_updates.len() as u64 {
        return Err(StoreError::Invariant(format!(
            "{} of {} streams lost their fence inside the transaction",
            stream_updates.len() as u64 - n,
            stream_updates.len()
        )));
    }
    let t_rest = t0.elapsed();

    // 5. Holding COMMIT_LOCK (serial mode took it at the start), the commit gets its number.
    //    Optimistic: what did other writers commit in the GPU time just written, since step 2?
    //    The commits numbered after `seen`. When this process made each of them, their GPU time
    //    is in the commit log; otherwise it is read on the second connection (which sees every
    //    commit and none of this batch's rows). Holding the lock until this transaction commits,
    //    every commit sees every commit before it.
    if mode == Mode::Optimistic {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&COMMIT_LOCK])?;
    }
    let (number, server) = number_commit(&mut tx)?;
    let check = match mode {
        Mode::Serial => CommitCheck::Serial,
        Mode::Optimistic => {
            let known = w.commits.between(&server, seen, number - 1);
            let (check, raced) = match known {
                Some(others) => (
                    CommitCheck::InMemory,
                    this_batch.intervals().any(|(g, s, e)| others.iter().any(|o| o.overlaps(&g, s, e))),
                ),
                None => {
                    // gpu_occupancy is read-only since 0005: step 2 saw all of it that matters.
                    let taken = gpu_time(&mut w.check, &windows(this_batch.intervals()), false)?;
                    (CommitCheck::Probed, taken.into_iter().any(|(gpu, (s, e), _)| this_batch.overlaps(&gpu, s, e)))
                }
            };
            if raced {
                tx.rollback()?;
                return Err(StoreError::Raced);
            }
            check
        }
    };
    let t_check = t0.elapsed();
    w.commits.commit(tx, &server, number, Written::of(&this_batch))?;
    counts.commit_check = check;
    tracing::debug!(
        ?mode, ?t_fence, ?t_ids, ?t_decide, ?t_keys, ?t_copy, ?t_rest, ?t_check, total = ?t0.elapsed(),
        commits_since = number - 1 - seen, ?check,
        "batch timings"
    );
    let mut by_reason: Vec<(RejectionCode, u64)> = by_reason.into_iter().collect();
    by_reason.sort();
    counts.by_reason = by_reason;
    Ok(AppendOutcome::Committed(counts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_790_000_000 + minute * 60, 0).expect("valid")
    }

    proptest! {
        /// A commit's GPU time kept as a sorted list answers every question as the map it came
        /// from: the in-memory check at commit time sees exactly what the commit wrote.
        #[test]
        fn written_answers_as_the_gpu_time_it_came_from(
            runs in proptest::collection::vec((0u8..4, 0i64..3, 1i64..4), 0..40),
            asks in proptest::collection::vec((0u8..5, 0i64..120, 1i64..6), 1..40),
        ) {
            // Disjoint intervals per GPU: each GPU's runs laid one after another, with gaps.
            let mut t = GpuTime::default();
            let mut next = [0i64; 4];
            for (g, gap, len) in runs {
                let s = next[g as usize] + gap;
                t.insert(Uuid::from_u128(g as u128), at(s), at(s + len));
                next[g as usize] = s + len;
            }
            let w = Written::of(&t);
            for (g, s, len) in asks {
                let gpu = Uuid::from_u128(g as u128);
                prop_assert_eq!(w.overlaps(&gpu, at(s), at(s + len)), t.overlaps(&gpu, at(s), at(s + len)));
            }
        }
    }

    proptest! {
        /// The windows of a batch cover each of its intervals, and only GPU time between them:
        /// per GPU, sorted, apart (touching intervals make one window), each made of intervals.
        #[test]
        fn windows_are_the_union_of_the_intervals(
            intervals in proptest::collection::vec((0u8..4, 0i64..60, 1i64..5), 0..40),
        ) {
            let ivs: Vec<_> = intervals.iter().map(|(g, s, l)| (Uuid::from_u128(*g as u128), at(*s), at(s + l))).collect();
            let w = windows(ivs.iter().copied());
            for (g, s, e) in &ivs {
                prop_assert!(w.iter().any(|(wg, (lo, hi))| wg == g && lo <= s && e <= hi));
            }
            for pair in w.windows(2) {
                let ((g0, (_, hi0)), (g1, (lo1, _))) = (pair[0], pair[1]);
                prop_assert!(g0 < g1 || (g0 == g1 && hi0 < lo1));
            }
            for (g, (lo, hi)) in &w {
                // Every minute of a window is some interval's.
                let mut t = *lo;
                while t < *hi {
                    prop_assert!(ivs.iter().any(|(ig, s, e)| ig == g && *s <= t && t < *e));
                    t += chrono::Duration::minutes(1);
                }
            }
        }
    }

    #[test]
    fn the_commit_log_answers_only_for_commits_it_holds_on_the_same_server() {
        let log = CommitLog::default();
        let one = Server { clock: 1, started: at(0) };
        let restarted = Server { clock: 1, started: at(1) };
        let mut t = GpuTime::default();
        t.insert(Uuid::from_u128(7), at(0), at(1));
        // Nothing committed since: nothing to check, whatever the log holds.
        assert_eq!(log.between(&one, 5, 5).map(|v| v.len()), Some(0));
        // A commit the log never saw: unknown.
        assert!(log.between(&one, 5, 6).is_none());
        log.0.lock().get_or_insert_with(|| (one.clone(), BTreeMap::new())).1.insert(6, Arc::new(Written::of(&t)));
        let known = log.between(&one, 5, 6).expect("commit 6 is known");
        assert!(known[0].overlaps(&Uuid::from_u128(7), at(0), at(2)));
        assert!(!known[0].overlaps(&Uuid::from_u128(8), at(0), at(2)));
        // 7 is not: the range is unknown as a whole.
        assert!(log.between(&one, 5, 7).is_none());
        // A log held by a commit that does not come back: unknown after a short wait, not stuck.
        {
            let _held = log.0.lock();
            assert!(log.between(&one, 5, 6).is_none());
        }
        // Another server run (or database) numbers its commits anew: nothing is known there.
        assert!(log.between(&restarted, 5, 6).is_none());
    }
}
