//! The auditors' full replay: every projection rebuilt from `ledger_events` alone, as of a cut
//! of the log (everything, the rows up to a sequence number, or the rows recorded up to an
//! instant), into a scratch schema: the hourly usage, the invoices index with each document
//! re-derived by replaying its close, and the budget report as of the cut's date. Then compared
//! with the live projections and hashed in a canonical order, so that two replays of the same
//! log can be compared by one hash.
//!
//! Where the time goes: the hourly fold reads every usage event, so it runs inside PostgreSQL
//! (one `CREATE TABLE ... AS SELECT ... GROUP BY` per monthly partition, which parallel query
//! may spread over workers); streaming the rows out costs more than the fold, because turning a
//! `jsonb` back into text alone takes longer than extracting the four fields the fold needs
//! (docs/benchmarks.md, "Audit replay"). Everything else (closes, reference data, budget) is a
//! few hundred rows folded in Rust by the same domain functions the live system uses.

use crate::billing::{
    compare_replayed, documents_where, fold_reference, reference_events, replan_close, stream_id, BILLING_STREAM,
    REFERENCE_STREAM,
};
use crate::budget::budget_events;
use crate::StoreError;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use domain::billing::close::KIND_CLOSE;
use domain::billing::invoice::InvoiceDoc;
use domain::billing::period::berlin_date;
use domain::billing::reference::{Reference, UsageAdjustment};
use domain::billing::Period;
use domain::budget::report::report;
use domain::budget::{BudgetEvent, BudgetState};
use domain::projection::{HourKey, HourTotals, HourlyUsage};
use domain::usage::LEDGER_KIND;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, IsolationLevel, Transaction};
use rust_decimal::Decimal;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// Which part of the log a replay reads: the rows it knew at that point (by `seq` or by
/// `recorded_at`, the knowledge time), whatever their `occurred_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Every row in the replay's snapshot.
    Now,
    /// Rows with `seq <= n`.
    UntilSeq(i64),
    /// Rows with `recorded_at <= t`.
    AsOf(DateTime<Utc>),
}

impl Cut {
    pub fn is_now(&self) -> bool {
        matches!(self, Cut::Now)
    }

    /// The SQL condition on `ledger_events e` (typed values formatted as literals: `CREATE TABLE
    /// ... AS` takes no parameters).
    fn condition(&self) -> String {
        match self {
            Cut::Now => "true".to_string(),
            Cut::UntilSeq(n) => format!("e.seq <= {n}"),
            Cut::AsOf(t) => {
                format!("e.recorded_at <= '{}'::timestamptz", t.to_rfc3339_opts(SecondsFormat::Micros, true))
            }
        }
    }

    fn includes(&self, seq: i64, recorded_at: DateTime<Utc>) -> bool {
        match self {
            Cut::Now => true,
            Cut::UntilSeq(n) => seq <= *n,
            Cut::AsOf(t) => recorded_at <= *t,
        }
    }
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cut::Now => write!(f, "the whole log"),
            Cut::UntilSeq(n) => write!(f, "seq <= {n}"),
            Cut::AsOf(t) => write!(f, "recorded_at <= {}", t.to_rfc3339_opts(SecondsFormat::Micros, true)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub cut: Cut,
    /// The scratch schema (default `replay_<pid>`, then `replay_<pid>_<n>` for later replays of
    /// the same process); it must not exist yet.
    pub schema: Option<String>,
    /// Keep the scratch schema (committed) instead of dropping it (rolled back).
    pub keep: bool,
    /// How many differences to list (all are counted).
    pub differences_max: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions { cut: Cut::Now, schema: None, keep: false, differences_max: 20 }
    }
}

/// One step of a replay, for progress reporting: `done` of `total` units (events, estimated
/// from the partitions' statistics) after finishing `stage`.
#[derive(Debug, Clone)]
pub struct Progress {
    pub stage: String,
    pub done: u64,
    pub total: u64,
}

/// One rebuilt projection: its rows, the SHA-256 of its canonical form, and how it compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionOutput {
    pub name: &'static str,
    pub rows: u64,
    pub sha256: [u8; 32],
    /// Whether it was compared with the live projection (not for the hourly usage of a past cut).
    pub compared: bool,
    pub differences: u64,
}

/// One difference between the replay and the live projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub projection: &'static str,
    pub key: String,
    pub replayed: String,
    pub live: String,
}

#[derive(Debug, Clone)]
pub struct ReplayReport {
    pub cut: Cut,
    /// The last sequence number inside the cut (None for an empty cut).
    pub cut_seq: Option<i64>,
    /// The knowledge time of the cut: the instant of `--as-of`, else the latest `recorded_at`
    /// of the streams' last rows inside the cut.
    pub cut_at: Option<DateTime<Utc>>,
    /// The budget report's date: the Berlin date of `cut_at`.
    pub as_of_date: NaiveDate,
    pub schema: String,
    pub kept: bool,
    /// Usage events folded, and rows of the local streams (reference, billing, budget) read.
    pub usage_events: u64,
    pub local_rows: u64,
    /// Closes (`period.closed` events) inside the cut, each replayed.
    pub closes: usize,
    pub hourly: ProjectionOutput,
    pub invoices: ProjectionOutput,
    pub budget: ProjectionOutput,
    /// SHA-256 over the cut and the three outputs' hashes.
    pub combined_sha256: [u8; 32],
    /// The first `differences_max` differences, hourly usage first, each in key order.
    pub differences: Vec<Difference>,
    /// For a past cut: GPU-seconds per tenant and SKU of the replayed hourly projection (the live
    /// one cannot be compared; these are what the ledger knew then).
    pub replayed_totals: BTreeMap<(String, String), Decimal>,
}

impl ReplayReport {
    pub fn differences_total(&self) -> u64 {
        self.hourly.differences + self.invoices.differences + self.budget.differences
    }
}

fn invariant(msg: impl Into<String>) -> StoreError {
    StoreError::Invariant(msg.into())
}

/// `[a-z_][a-z0-9_]*`, at most 63 bytes, not a system or the public schema: the only
/// identifiers a replay writes into SQL.
pub fn valid_schema_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
        && !s.starts_with("pg_")
        && !matches!(s, "public" | "information_schema")
}

/// A monthly partition of `ledger_events` (`ledger_events_yYYYYmMM`), the allow-list of table
/// names a replay reads from.
fn valid_partition_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 22
        && s.starts_with("ledger_events_y")
        && b[15..19].iter().all(u8::is_ascii_digit)
        && b[19] == b'm'
        && b[20..22].iter().all(u8::is_ascii_digit)
}

/// Stream rows are keyed `stream_id * 2^40 + stream_pos` for `width_bucket`.
const STREAM_SHIFT: i64 = 1 << 40;

/// Each stream's positions split at the closes' cuts: for `width_bucket(key, thresholds)` = j
/// (1-based), `buckets[j - 1]` is the first close (0-based, in log order) whose cut holds the row,
/// `closes` when none does, and -1 past a stream's known rows.
struct Buckets {
    thresholds: Vec<i64>,
    buckets: Vec<i32>,
}

fn buckets(stream_ids: &[i32], cuts: &[BTreeMap<i32, i64>]) -> Result<Buckets, StoreError> {
    let after_all = i32::try_from(cuts.len()).map_err(|_| invariant("too many closes"))?;
    let (mut thresholds, mut buckets) = (Vec::new(), Vec::new());
    for &s in stream_ids {
        let base = i64::from(s) * STREAM_SHIFT;
        thresholds.push(base);
        buckets.push(if cuts.is_empty() { after_all } else { 0 });
        let mut prev = 0i64;
        for (k, cut) in cuts.iter().enumerate() {
            let upto = cut.get(&s).copied().unwrap_or(0);
            if upto < prev {
                return Err(invariant(format!(
                    "close {} cuts stream {s} at position {upto}, before an earlier close's cut at {prev}",
                    k + 1
                )));
            }
            if !(0..STREAM_SHIFT - 1).contains(&upto) {
                return Err(invariant(format!("a close cuts stream {s} at position {upto}")));
            }
            prev = upto;
            thresholds.push(base + upto + 1);
            buckets.push(i32::try_from(k + 1).unwrap_or(after_all));
        }
        thresholds.push(base + STREAM_SHIFT - 1);
        buckets.push(-1);
    }
    Ok(Buckets { thresholds, buckets })
}

/// Crossing intervals are counted in `spill_code` by this much each: their spilled GPU-seconds
/// (under an hour's worth per interval) stay far below it per group (tenant, SKU, project, hour)
/// unless a group held billions of intervals, and their count far below `BAD_MARK / SPILL_MARK`.
const SPILL_MARK: &str = "1e15";
/// An interval over an hour long (the ledger's occupancy check refuses them) adds this.
const BAD_MARK: &str = "1e24";

/// Per-partition fold of the usage events inside the cut: per (bucket key, tenant, SKU,
/// project, hour of the interval's start) the GPU-seconds and events, and a `spill_code` for
/// intervals that cross into the next hour: for each, `SPILL_MARK` plus what spills over, split
/// exactly as `domain::projection::split_by_hour` does: pro rata to time, rounded half away
/// from zero to microseconds (numeric division at 20 decimal places decides every such rounding
/// exactly for intervals up to an hour), the last hour taking the rest. One sum carries the
/// count and the seconds so that the rare crossing rows alone pay for the arithmetic: PostgreSQL
/// evaluates an expression once per use, and a subquery that would compute it once per row
/// keeps the statement from running in parallel. `tenant_id` and `occurred_at` are the event's
/// tenant and `interval_start`, as the ingester writes them (both under the chain hash).
fn fold_sql(schema: &str, part: &str, table: &str, cond: &str, thresholds: &[i64]) -> String {
    // Without closes (no thresholds given) every row is in the one bucket: no search per row.
    let wb = if thresholds.is_empty() {
        "1".to_string()
    } else {
        let list = thresholds.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        format!("width_bucket(e.stream_id::bigint * {STREAM_SHIFT} + e.stream_pos, ARRAY[{list}]::bigint[])")
    };
    // date_bin is integer arithmetic on the instant (date_trunc goes through calendar fields).
    let h1 = "date_bin(interval '1 hour', e.occurred_at, timestamptz '2000-01-01 00:00:00+00')";
    let h2 = format!("({h1} + interval '1 hour')");
    // Typed columns (migration 0005), or the jsonb payload of a usage row written before it.
    let en = "coalesce(e.interval_end, (e.payload->'data'->>'interval_end')::timestamptz)";
    let g = "coalesce(e.gpu_seconds, (e.payload->'data'->>'gpu_seconds')::numeric)";
    format!(
        "CREATE TABLE {schema}.{table} AS
         SELECT {wb} AS wb, e.tenant_id, coalesce(e.gpu_sku, e.payload->'data'->>'gpu_sku') AS gpu_sku,
                coalesce(e.project, e.payload->'data'->>'project') AS project, {h1} AS h1,
                sum({g}) AS gpu_seconds, count(*) AS events,
                sum(CASE WHEN {en} > {h2} THEN
                      CASE WHEN {en} > e.occurred_at + interval '1 hour' THEN {BAD_MARK}
                           ELSE {SPILL_MARK} + {g} - round({g} * extract(epoch FROM {h2} - e.occurred_at)::numeric(30, 20)
                                                          / extract(epoch FROM {en} - e.occurred_at), 6)
                      END
                    END) AS spill_code
           FROM {part} e
          WHERE e.kind = '{LEDGER_KIND}' AND {cond}
          GROUP BY 1, 2, 3, 4, 5"
    )
}

/// The last row (seq, recorded_at) of a stream inside the cut: positions are searched by halves,
/// `seq` grows with the position (`audit verify` checks it); for `--as-of`, `recorded_at` is
/// taken to grow with it too (one writer per stream, batches committed in order).
fn last_in_cut(
    tx: &mut Transaction<'_>,
    stream_id: i32,
    head_pos: i64,
    cut: &Cut,
) -> Result<Option<(i64, DateTime<Utc>)>, StoreError> {
    let at = |tx: &mut Transaction<'_>, pos: i64| -> Result<Option<(i64, DateTime<Utc>)>, StoreError> {
        Ok(tx
            .query_opt(
                "SELECT seq, recorded_at FROM ledger_events WHERE stream_id = $1 AND stream_pos = $2 ORDER BY seq LIMIT 1",
                &[&stream_id, &pos],
            )?
            .map(|r| (r.get(0), r.get(1))))
    };
    let (mut lo, mut hi) = (0i64, head_pos); // invariant: lo is inside (or 0), everything past hi is outside
    if let Some((seq, t)) = at(tx, hi)? {
        if cut.includes(seq, t) {
            return Ok(Some((seq, t)));
        }
    }
    hi -= 1;
    while lo < hi {
        let mid = lo + (hi - lo + 1) / 2;
        match at(tx, mid)? {
            Some((seq, t)) if cut.includes(seq, t) => lo = mid,
            _ => hi = mid - 1,
        }
    }
    if lo == 0 {
        return Ok(None);
    }
    at(tx, lo)
}

struct Sha(Sha256);

impl Sha {
    fn line(&mut self, fields: &[&str]) {
        self.0.update(fields.join("\t").as_bytes());
        self.0.update(b"\n");
    }
    fn done(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

fn sha() -> Sha {
    Sha(Sha256::new())
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Replays every projection from the log inside `opts.cut` into a scratch schema, in one
/// REPEATABLE READ snapshot, and compares them with the live ones (see the module docs).
/// Differences are returned in the report, never as an error; an error means the replay itself
/// could not run (or the log holds something no projection can fold).
pub fn replay(
    client: &mut Client,
    opts: &ReplayOptions,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<ReplayReport, StoreError> {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let schema = opts.schema.clone().unwrap_or_else(|| {
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n == 0 {
            format!("replay_{}", std::process::id())
        } else {
            format!("replay_{}_{n}", std::process::id())
        }
    });
    if !valid_schema_name(&schema) {
        return Err(StoreError::Refused(format!(
            "schema name {schema:?}: use [a-z_][a-z0-9_]*, at most 63 bytes, not public or pg_*"
        )));
    }
    let exists = client.query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])?.is_some();
    if exists {
        return Err(StoreError::Refused(format!("schema {schema} exists already; drop it or name another")));
    }
    let mut tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).start()?;
    tx.batch_execute("SET LOCAL TimeZone = 'UTC'; SET LOCAL work_mem = '64MB'")?;
    tx.batch_execute(&format!("CREATE SCHEMA {schema}"))?;
    let cut = opts.cut;

    // The cut: each stream's last row inside it.
    let streams: Vec<(i32, String, i64)> = tx
        .query(
            "SELECT stream_id, topic || '/' || kafka_partition, head_pos FROM ledger_streams ORDER BY stream_id",
            &[],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let mut cut_seq: Option<i64> = None;
    let mut last_at: Option<DateTime<Utc>> = None;
    for (sid, _, head) in &streams {
        if let Some((seq, t)) = last_in_cut(&mut tx, *sid, *head, &cut)? {
            cut_seq = cut_seq.max(Some(seq));
            last_at = last_at.max(Some(t));
        }
    }
    let cut_at = match cut {
        Cut::AsOf(t) => Some(t),
        _ => last_at,
    };
    let as_of_date = berlin_date(cut_at.unwrap_or(DateTime::<Utc>::UNIX_EPOCH));

    // The local streams inside the cut: reference data, closes and documents, budget.
    let in_cut = |seq: i64, t: DateTime<Utc>| cut.includes(seq, t);
    let local = |tx: &mut Transaction<'_>, topic: &str| -> Result<Vec<postgres::Row>, StoreError> {
        match stream_id(tx, topic)? {
            None => Ok(Vec::new()),
            Some((sid, _)) => Ok(tx.query(
                "SELECT stream_pos, event_id, kind, payload, seq, recorded_at FROM ledger_events
                  WHERE stream_id = $1 ORDER BY stream_pos",
                &[&sid],
            )?),
        }
    };
    // A close inside the cut comes with everything its own cut held (read by it, so known then,
    // whatever their recorded_at says: a close records its time in whole seconds), and with its
    // documents (written just before it in the billing stream).
    let billing_sid = stream_id(&mut tx, BILLING_STREAM)?.map(|(id, _)| id);
    let billing_all = local(&mut tx, BILLING_STREAM)?;
    let last_close_pos = billing_all
        .iter()
        .filter(|r| r.get::<_, String>(2) == KIND_CLOSE && in_cut(r.get(4), r.get(5)))
        .map(|r| r.get::<_, i64>(0))
        .max()
        .unwrap_or(0);
    let billing_rows: Vec<&postgres::Row> =
        billing_all.iter().filter(|r| r.get::<_, i64>(0) <= last_close_pos).collect();
    let (docs_by_pos, stored_json, closes) = crate::billing::parse_billing_rows(billing_rows.iter().copied())?;
    // Each close's cut by stream id (stream names as the close recorded them).
    let by_name: BTreeMap<&str, i32> = streams.iter().map(|(id, name, _)| (name.as_str(), *id)).collect();
    let mut cuts: Vec<BTreeMap<i32, i64>> = Vec::new();
    for (_, _, rec) in &closes {
        let mut c = BTreeMap::new();
        for (name, pos) in &rec.cut {
            let id = by_name.get(name.as_str()).ok_or_else(|| {
                invariant(format!("the close of {} cuts stream {name}, which does not exist", rec.period))
            })?;
            c.insert(*id, *pos);
        }
        cuts.push(c);
    }
    let last_cut = cuts.last().cloned().unwrap_or_default();
    let ref_sid = stream_id(&mut tx, REFERENCE_STREAM)?.map(|(id, _)| id);
    let ref_rows: Vec<(i64, i64, DateTime<Utc>)> =
        local(&mut tx, REFERENCE_STREAM)?.iter().map(|r| (r.get(0), r.get(4), r.get(5))).collect();
    let ref_upto = ref_rows
        .iter()
        .filter(|(_, s, t)| in_cut(*s, *t))
        .map(|(p, _, _)| *p)
        .chain(ref_sid.and_then(|id| last_cut.get(&id).copied()))
        .max()
        .unwrap_or(0);
    let reference: Vec<(i64, Uuid, Reference)> =
        reference_events(&mut tx, None)?.into_iter().filter(|(p, _, _)| *p <= ref_upto).collect();
    let budget_rows: Vec<(i64, DateTime<Utc>)> = {
        let topic = crate::budget::BUDGET_STREAM;
        local(&mut tx, topic)?.iter().map(|r| (r.get(4), r.get(5))).collect()
    };
    let budget_in: Vec<BudgetEvent> = budget_events(&mut tx)?
        .into_iter()
        .zip(&budget_rows)
        .filter(|(_, (s, t))| in_cut(*s, *t))
        .map(|(e, _)| e)
        .collect();
    let local_rows = (billing_rows.len() + reference.len() + budget_in.len()) as u64;
    // The rows of the usage fold: the cut, and what the last close inside it read.
    let usage_cond = if cut.is_now() || last_cut.is_empty() {
        cut.condition()
    } else {
        let arms: Vec<String> = last_cut.iter().map(|(id, pos)| format!("WHEN {id} THEN {pos}")).collect();
        format!("({} OR e.stream_pos <= CASE e.stream_id {} ELSE 0 END)", cut.condition(), arms.join(" "))
    };
    let ids: Vec<i32> = streams.iter().map(|(id, _, _)| *id).collect();
    let b = buckets(&ids, &cuts)?;

    // The hourly fold, partition by partition, into usage_delta (by close bucket).
    tx.batch_execute(&format!(
        "CREATE TABLE {schema}.bucket_of (wb integer PRIMARY KEY, bucket integer NOT NULL);
         CREATE TABLE {schema}.usage_delta (bucket integer NOT NULL, tenant_id text NOT NULL, gpu_sku text NOT NULL,
             project text NOT NULL, hour timestamptz NOT NULL, gpu_seconds numeric NOT NULL, events bigint NOT NULL)"
    ))?;
    let insert_bucket = tx.prepare(&format!("INSERT INTO {schema}.bucket_of (wb, bucket) VALUES ($1, $2)"))?;
    for (j, bucket) in b.buckets.iter().enumerate() {
        let wb = i32::try_from(j + 1).map_err(|_| invariant("too many buckets"))?;
        tx.execute(&insert_bucket, &[&wb, bucket])?;
    }
    let parts: Vec<(String, i64)> = tx
        .query(
            "SELECT c.relname::text, greatest(c.reltuples::bigint, pg_relation_size(c.oid) / 400)
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'ledger_events'::regclass ORDER BY c.relname",
            &[],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let thresholds: &[i64] = if cuts.is_empty() { &[] } else { &b.thresholds };
    let total: u64 = parts.iter().map(|(_, n)| u64::try_from(*n).unwrap_or(0)).sum();
    let mut done = 0u64;
    on_progress(Progress { stage: "folding usage".into(), done, total });
    for (i, (part, estimate)) in parts.iter().enumerate() {
        if !valid_partition_name(part) {
            return Err(invariant(format!("ledger_events has a partition {part:?} outside the monthly naming")));
        }
        let table = format!("fold_{i}");
        // The planner cannot estimate groups of jsonb fields and picks a sort of every event;
        // the groups are few (tenants x SKUs x projects x hours), so hashing is far cheaper.
        tx.batch_execute("SET LOCAL enable_sort = off")?;
        tx.batch_execute(&fold_sql(&schema, &format!("public.{part}"), &table, &usage_cond, thresholds))?;
        tx.batch_execute("SET LOCAL enable_sort = on")?;
        let bad = tx.query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE f.spill_code >= {BAD_MARK}),
                        count(*) FILTER (WHERE m.bucket IS NULL OR m.bucket < 0)
                   FROM {schema}.{table} f LEFT JOIN {schema}.bucket_of m USING (wb)"
            ),
            &[],
        )?;
        let (bad, unknown): (i64, i64) = (bad.get(0), bad.get(1));
        if bad > 0 {
            return Err(invariant(format!("usage events in {part} have an interval over an hour long")));
        }
        if unknown > 0 {
            return Err(invariant(format!("usage events in {part} lie outside every stream's known positions")));
        }
        tx.batch_execute(&format!(
            "INSERT INTO {schema}.usage_delta
             SELECT m.bucket, f.tenant_id, f.gpu_sku, f.project, f.h1,
                    f.gpu_seconds - coalesce(mod(f.spill_code, {SPILL_MARK}), 0), f.events
               FROM {schema}.{table} f JOIN {schema}.bucket_of m USING (wb)
             UNION ALL
             SELECT m.bucket, f.tenant_id, f.gpu_sku, f.project, f.h1 + interval '1 hour', mod(f.spill_code, {SPILL_MARK}), 0
               FROM {schema}.{table} f JOIN {schema}.bucket_of m USING (wb) WHERE f.spill_code IS NOT NULL;
             DROP TABLE {schema}.{table}"
        ))?;
        done += u64::try_from(*estimate).unwrap_or(0);
        on_progress(Progress { stage: format!("folded {part}"), done, total });
    }
    // Finance's usage adjustments (reference stream), in the bucket of the first close that saw them.
    let insert_delta = tx.prepare(&format!(
        "INSERT INTO {schema}.usage_delta (bucket, tenant_id, gpu_sku, project, hour, gpu_seconds, events)
         VALUES ($1, $2, $3, $4, $5, $6, 0)"
    ))?;
    for (pos, _, r) in &reference {
        if let Reference::Adjustment(a) = r {
            let sid = ref_sid.ok_or_else(|| invariant("an adjustment without its stream"))?;
            let bucket = cuts.iter().position(|c| c.get(&sid).is_some_and(|u| pos <= u)).unwrap_or(cuts.len());
            let bucket = i32::try_from(bucket).map_err(|_| invariant("too many closes"))?;
            let UsageAdjustment { tenant_id, gpu_sku, project, hour, gpu_seconds_delta, .. } = a;
            tx.execute(&insert_delta, &[&bucket, tenant_id, gpu_sku, project, hour, gpu_seconds_delta])?;
        }
    }
    tx.batch_execute(&format!(
        "CREATE TABLE {schema}.usage_hourly AS
         SELECT tenant_id COLLATE \"C\" AS tenant_id, gpu_sku COLLATE \"C\" AS gpu_sku, project COLLATE \"C\" AS project,
                hour, sum(gpu_seconds)::numeric(24, 6) AS gpu_seconds, sum(events)::bigint AS events
           FROM {schema}.usage_delta GROUP BY 1, 2, 3, 4;
         ALTER TABLE {schema}.usage_hourly ADD PRIMARY KEY (tenant_id, gpu_sku, project, hour)"
    ))?;
    on_progress(Progress { stage: "hourly projection built".into(), done: total, total });
    let usage_events: i64 =
        tx.query_one(&format!("SELECT coalesce(sum(events), 0)::bigint FROM {schema}.usage_hourly"), &[])?.get(0);

    // The closes, each replayed from the usage its cut held.
    let mut replayed: Vec<(usize, InvoiceDoc)> = Vec::new();
    let mut close_differences: Vec<Difference> = Vec::new();
    let billing_name = format!("{BILLING_STREAM}/0");
    let ref_name = format!("{REFERENCE_STREAM}/0");
    for (k, (_, close_id, rec)) in closes.iter().enumerate() {
        let upto = |name: &str| rec.cut.get(name).copied().unwrap_or(0);
        let bucket = i32::try_from(k).map_err(|_| invariant("too many closes"))?;
        let mut hourly = HourlyUsage::default();
        for r in tx.query(
            &format!(
                "SELECT tenant_id, gpu_sku, project, hour, sum(gpu_seconds)::numeric(24, 6), sum(events)::bigint
                   FROM {schema}.usage_delta WHERE bucket <= $1 GROUP BY 1, 2, 3, 4"
            ),
            &[&bucket],
        )? {
            let key = HourKey { tenant_id: r.get(0), gpu_sku: r.get(1), project: r.get(2), hour: r.get(3) };
            hourly.rows.insert(key, HourTotals { gpu_seconds: r.get(4), events: r.get(5) });
        }
        let refs_in: Vec<(i64, Uuid, Reference)> =
            reference.iter().filter(|(pos, _, _)| *pos <= upto(&ref_name)).cloned().collect();
        let issued: Vec<InvoiceDoc> =
            docs_by_pos.iter().filter(|(pos, _)| *pos <= upto(&billing_name)).map(|(_, d)| d.clone()).collect();
        let closed: BTreeSet<Period> =
            closes.iter().filter(|(pos, _, _)| *pos <= upto(&billing_name)).map(|(_, _, r)| r.period).collect();
        let found = match replan_close(rec, *close_id, &hourly, fold_reference(&refs_in), closed, issued) {
            Err(e) => vec![format!("the replay cannot close {}: {e}", rec.period)],
            Ok(docs) => {
                let found = compare_replayed(rec, &docs, &stored_json);
                replayed.extend(docs.into_iter().map(|d| (k, d)));
                found
            }
        };
        close_differences.extend(found.into_iter().map(|f| Difference {
            projection: "invoices",
            key: format!("close {}", rec.period),
            replayed: f,
            live: "the issued documents".into(),
        }));
    }

    // The invoices index, replayed, beside the live one (rows whose document is inside the cut).
    tx.batch_execute(&format!(
        "CREATE TABLE {schema}.invoices (number text COLLATE \"C\" PRIMARY KEY, type_code smallint NOT NULL,
             tenant_id text COLLATE \"C\" NOT NULL, period text NOT NULL, close_period text NOT NULL,
             issued_at timestamptz NOT NULL, net_total numeric(18, 2) NOT NULL, vat_total numeric(18, 2) NOT NULL,
             gross_total numeric(18, 2) NOT NULL, event_id uuid NOT NULL, document bytea NOT NULL,
             document_sha256 bytea NOT NULL)"
    ))?;
    let insert_invoice = tx.prepare(&format!(
        "INSERT INTO {schema}.invoices VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    ))?;
    let mut inv_sha = sha();
    let mut replayed_index: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, d) in &replayed {
        let bytes = d.canonical_bytes();
        let doc_sha: [u8; 32] = Sha256::digest(&bytes).into();
        let close_period = closes[*k].2.period.to_string();
        let event_id = Uuid::new_v5(&closes[*k].1, d.number.as_bytes());
        let type_code = i16::try_from(d.type_code).map_err(|_| invariant("type code out of range"))?;
        let params: [&(dyn ToSql + Sync); 12] = [
            &d.number,
            &type_code,
            &d.tenant_id,
            &d.period.to_string(),
            &close_period,
            &d.issued_at,
            &d.net_total,
            &d.vat_total,
            &d.gross_total,
            &event_id,
            &bytes,
            &doc_sha.as_slice(),
        ];
        tx.execute(&insert_invoice, &params)?;
        let fields = vec![
            d.number.clone(),
            d.type_code.to_string(),
            d.tenant_id.clone(),
            d.period.to_string(),
            close_period,
            ts(&d.issued_at),
            d.net_total.to_string(),
            d.vat_total.to_string(),
            d.gross_total.to_string(),
            event_id.to_string(),
        ];
        let mut line: Vec<&str> = fields.iter().map(String::as_str).collect();
        let hex_sha = hex::encode(doc_sha);
        line.push(&hex_sha);
        inv_sha.line(&line);
        replayed_index.insert(d.number.clone(), fields);
    }
    let mut live_index: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in tx.query(
        "SELECT i.number, i.type_code, i.tenant_id, i.period, i.close_period, i.issued_at, i.net_total, i.vat_total,
                i.gross_total, i.event_id, i.stream_id, i.stream_pos, e.event_id
           FROM invoices i LEFT JOIN ledger_events e ON e.stream_id = i.stream_id AND e.stream_pos = i.stream_pos",
        &[],
    )? {
        let (sid, pos): (i32, i64) = (r.get(10), r.get(11));
        let row_event: Option<Uuid> = r.get(12);
        let index_event: Uuid = r.get(9);
        // Documents of the closes inside the cut (all of them, wherever they point, when it is the whole log).
        if !(cut.is_now() || (Some(sid) == billing_sid && pos <= last_close_pos)) {
            continue;
        }
        let number: String = r.get(0);
        let event = if row_event == Some(index_event) {
            index_event.to_string()
        } else {
            format!("{index_event} (its ledger row holds {})", row_event.map_or("nothing".into(), |u| u.to_string()))
        };
        let issued_at: DateTime<Utc> = r.get(5);
        let fields = vec![
            number.clone(),
            r.get::<_, i16>(1).to_string(),
            r.get(2),
            r.get(3),
            r.get(4),
            ts(&issued_at),
            r.get::<_, Decimal>(6).to_string(),
            r.get::<_, Decimal>(7).to_string(),
            r.get::<_, Decimal>(8).to_string(),
            event,
        ];
        live_index.insert(number, fields);
    }
    let mut invoice_differences = close_differences;
    for number in replayed_index.keys().chain(live_index.keys()).collect::<BTreeSet<_>>() {
        let (a, b) = (replayed_index.get(number), live_index.get(number));
        if a != b {
            let show = |v: Option<&Vec<String>>| v.map_or_else(|| "(none)".to_string(), |f| f[1..].join(" "));
            invoice_differences.push(Difference {
                projection: "invoices",
                key: format!("invoice {number}"),
                replayed: show(a),
                live: show(b),
            });
        }
    }
    // Documents in the ledger (inside the cut) that no replayed close issued.
    for number in stored_json.keys().filter(|n| !replayed_index.contains_key(*n)) {
        invoice_differences.push(Difference {
            projection: "invoices",
            key: format!("document {number}"),
            replayed: "(not issued by any replayed close)".into(),
            live: "in the ledger".into(),
        });
    }

    // The budget report as of the cut's date, from the replayed documents; against the live
    // documents (a full replay only: for a past cut the issued documents are the replayed ones).
    let replayed_docs: Vec<InvoiceDoc> = replayed.iter().map(|(_, d)| d.clone()).collect();
    let budget_json = report(&BudgetState::as_of(&budget_in, as_of_date), &replayed_docs, as_of_date).to_json();
    let budget_sha: [u8; 32] = Sha256::digest(&budget_json).into();
    tx.batch_execute(&format!(
        "CREATE TABLE {schema}.budget_report (as_of date NOT NULL, report text NOT NULL, report_sha256 bytea NOT NULL)"
    ))?;
    let budget_text = String::from_utf8(budget_json.clone()).map_err(|_| invariant("budget report is not UTF-8"))?;
    tx.execute(
        &format!("INSERT INTO {schema}.budget_report VALUES ($1, $2, $3)"),
        &[&as_of_date, &budget_text, &budget_sha.as_slice()],
    )?;
    let mut budget_differences = Vec::new();
    if cut.is_now() {
        let live_docs = documents_where(&mut tx, "true", &[])?;
        let live = report(&BudgetState::as_of(&budget_events(&mut tx)?, as_of_date), &live_docs, as_of_date).to_json();
        if live != budget_json {
            let (a, b): (Value, Value) = (
                serde_json::from_slice(&budget_json).unwrap_or(Value::Null),
                serde_json::from_slice(&live).unwrap_or(Value::Null),
            );
            budget_differences.push(Difference {
                projection: "budget",
                key: format!("report as of {as_of_date}"),
                replayed: format!("sha256 {}", hex::encode(budget_sha)),
                live: format!(
                    "sha256 {}, first difference at {}",
                    hex::encode(Sha256::digest(&live)),
                    crate::billing::first_difference(&a, &b)
                ),
            });
        }
    }

    // The hourly projection: hashed in canonical order; compared with the live one for a full
    // replay, its totals reported for a past cut.
    let mut hourly_sha = sha();
    let mut hourly_rows = 0u64;
    let mut replayed_totals: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    {
        let params: [&(dyn ToSql + Sync); 0] = [];
        let mut rows = tx.query_raw(
            &format!(
                "SELECT tenant_id, gpu_sku, project, hour, gpu_seconds, events FROM {schema}.usage_hourly ORDER BY 1, 2, 3, 4"
            ),
            params,
        )?;
        while let Some(r) = rows.next()? {
            let (tenant, sku, project): (String, String, String) = (r.get(0), r.get(1), r.get(2));
            let (hour, seconds, events): (DateTime<Utc>, Decimal, i64) = (r.get(3), r.get(4), r.get(5));
            let seconds = seconds.normalize();
            hourly_sha.line(&[&tenant, &sku, &project, &ts(&hour), &seconds.to_string(), &events.to_string()]);
            hourly_rows += 1;
            *replayed_totals.entry((tenant, sku)).or_default() += seconds;
        }
    }
    let mut hourly_differences = Vec::new();
    if cut.is_now() {
        let params: [&(dyn ToSql + Sync); 0] = [];
        let mut rows = tx.query_raw(
            &format!(
                "SELECT coalesce(r.tenant_id, l.tenant_id), coalesce(r.gpu_sku, l.gpu_sku), coalesce(r.project, l.project),
                        coalesce(r.hour, l.hour), r.gpu_seconds, r.events, l.gpu_seconds, l.events
                   FROM {schema}.usage_hourly r FULL JOIN public.usage_hourly l
                        ON l.tenant_id = r.tenant_id AND l.gpu_sku = r.gpu_sku AND l.project = r.project AND l.hour = r.hour
                  WHERE r.gpu_seconds IS DISTINCT FROM l.gpu_seconds OR r.events IS DISTINCT FROM l.events
                  ORDER BY 1, 2, 3, 4"
            ),
            params,
        )?;
        while let Some(r) = rows.next()? {
            let hour: DateTime<Utc> = r.get(3);
            let side = |s: Option<Decimal>, e: Option<i64>| match (s, e) {
                (Some(s), Some(e)) => format!("{} GPU-seconds, {e} events", s.normalize()),
                _ => "(no row)".to_string(),
            };
            hourly_differences.push(Difference {
                projection: "usage_hourly",
                key: format!(
                    "{} {} {} {}",
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    ts(&hour)
                ),
                replayed: side(r.get(4), r.get(5)),
                live: side(r.get(6), r.get(7)),
            });
        }
    }

    let hourly = ProjectionOutput {
        name: "usage_hourly",
        rows: hourly_rows,
        sha256: hourly_sha.done(),
        compared: cut.is_now(),
        differences: hourly_differences.len() as u64,
    };
    let invoices = ProjectionOutput {
        name: "invoices",
        rows: replayed.len() as u64,
        sha256: inv_sha.done(),
        compared: true,
        differences: invoice_differences.len() as u64,
    };
    let budget = ProjectionOutput {
        name: "budget_report",
        rows: 1,
        sha256: budget_sha,
        compared: cut.is_now(),
        differences: budget_differences.len() as u64,
    };
    let mut combined = sha();
    combined.line(&["gpuledger.replay.v1"]);
    combined.line(&["cut", &cut.to_string(), &cut_seq.map_or("-".into(), |s| s.to_string()), &as_of_date.to_string()]);
    for p in [&hourly, &invoices, &budget] {
        combined.line(&[p.name, &p.rows.to_string(), &hex::encode(p.sha256)]);
    }
    let differences: Vec<Difference> = hourly_differences
        .into_iter()
        .chain(invoice_differences)
        .chain(budget_differences)
        .take(opts.differences_max)
        .collect();
    if opts.keep {
        tx.commit()?;
    } else {
        tx.rollback()?; // drops the scratch schema with everything in it
    }
    Ok(ReplayReport {
        cut,
        cut_seq,
        cut_at,
        as_of_date,
        schema,
        kept: opts.keep,
        usage_events: u64::try_from(usage_events).unwrap_or(0),
        local_rows,
        closes: closes.len(),
        hourly,
        invoices,
        budget,
        combined_sha256: combined.done(),
        differences,
        replayed_totals: if cut.is_now() { BTreeMap::new() } else { replayed_totals },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_come_from_an_allow_list() {
        for ok in ["replay_123", "_x", "audit2026"] {
            assert!(valid_schema_name(ok), "{ok}");
        }
        for bad in ["", "public", "pg_temp", "Replay", "a-b", "a;drop", "x y", &"a".repeat(64)] {
            assert!(!valid_schema_name(bad), "{bad}");
        }
        assert!(valid_partition_name("ledger_events_y2026m10"));
        assert!(!valid_partition_name("ledger_events_y2026m1x"));
        assert!(!valid_partition_name("ledger_events_default"));
    }

    #[test]
    fn buckets_follow_the_closes_cuts() {
        // Stream 1 cut at 5 then 9; stream 2 unknown to the first close.
        let cuts = vec![BTreeMap::from([(1, 5)]), BTreeMap::from([(1, 9), (2, 3)])];
        let b = buckets(&[1, 2], &cuts).unwrap();
        let s = STREAM_SHIFT;
        assert_eq!(b.thresholds, vec![s, s + 6, s + 10, 2 * s - 1, 2 * s, 2 * s + 1, 2 * s + 4, 3 * s - 1]);
        assert_eq!(b.buckets, vec![0, 1, 2, -1, 0, 1, 2, -1]);
        let none = buckets(&[1], &[]).unwrap();
        assert_eq!(none.buckets, vec![0, -1]);
        assert!(buckets(&[1], &[BTreeMap::from([(1, 9)]), BTreeMap::from([(1, 5)])]).is_err());
    }
}
