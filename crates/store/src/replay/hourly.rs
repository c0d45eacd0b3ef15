//! The hourly usage of a replay: every usage event inside the cut (and what the closes inside it
//! read) folded inside PostgreSQL, partition by partition, into `{schema}.usage_delta` by close
//! bucket, with finance's adjustments; summed into `{schema}.usage_hourly`, then hashed in
//! canonical order and compared with the live projection.

use super::closes::ReferenceInCut;
use super::compare::{sha, ts, Difference, ProjectionOutput};
use super::cut::Cut;
use super::{invariant, Progress};
use crate::StoreError;
use chrono::{DateTime, Utc};
use domain::billing::reference::{Reference, UsageAdjustment};
use domain::usage::LEDGER_KIND;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::Transaction;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// A monthly partition of `ledger_events` (`ledger_events_yYYYYmMM`), the allow-list of table
/// names a replay reads from.
pub(super) fn valid_partition_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 22
        && s.starts_with("ledger_events_y")
        && b[15..19].iter().all(u8::is_ascii_digit)
        && b[19] == b'm'
        && b[20..22].iter().all(u8::is_ascii_digit)
}

/// Stream rows are keyed `stream_id * 2^40 + stream_pos` for `width_bucket`.
pub(super) const STREAM_SHIFT: i64 = 1 << 40;

/// Each stream's positions split at the closes' cuts: for `width_bucket(key, thresholds)` = j
/// (1-based), `buckets[j - 1]` is the first close (0-based, in log order) whose cut holds the row,
/// `closes` when none does, and -1 past a stream's known rows.
pub(super) struct Buckets {
    pub thresholds: Vec<i64>,
    pub buckets: Vec<i32>,
}

pub(super) fn buckets(stream_ids: &[i32], cuts: &[BTreeMap<i32, i64>]) -> Result<Buckets, StoreError> {
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
/// project, hour of the interval's start, MIG profile: NULL for a whole GPU and for jsonb rows) the GPU-seconds and events, and a `spill_code` for
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
                coalesce(e.project, e.payload->'data'->>'project') AS project, {h1} AS h1, e.mig_profile,
                sum({g}) AS gpu_seconds, count(*) AS events,
                sum(CASE WHEN {en} > {h2} THEN
                      CASE WHEN {en} > e.occurred_at + interval '1 hour' THEN {BAD_MARK}
                           ELSE {SPILL_MARK} + {g} - round({g} * extract(epoch FROM {h2} - e.occurred_at)::numeric(30, 20)
                                                          / extract(epoch FROM {en} - e.occurred_at), 6)
                      END
                    END) AS spill_code
           FROM {part} e
          WHERE e.kind = '{LEDGER_KIND}' AND {cond}
          GROUP BY 1, 2, 3, 4, 5, 6"
    )
}

/// The rows of the usage fold: the cut, and what the last close inside it read.
fn usage_condition(cut: &Cut, last_cut: &BTreeMap<i32, i64>) -> String {
    if cut.is_now() || last_cut.is_empty() {
        cut.condition()
    } else {
        let arms: Vec<String> = last_cut.iter().map(|(id, pos)| format!("WHEN {id} THEN {pos}")).collect();
        format!("({} OR e.stream_pos <= CASE e.stream_id {} ELSE 0 END)", cut.condition(), arms.join(" "))
    }
}

/// Builds `{schema}.usage_hourly` (and `usage_delta` by close bucket, which the closes read) from
/// the usage events inside the cut and the closes' cuts; returns the events folded.
pub(super) fn build(
    tx: &mut Transaction<'_>,
    schema: &str,
    cut: &Cut,
    stream_ids: &[i32],
    cuts: &[BTreeMap<i32, i64>],
    reference: &ReferenceInCut,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<i64, StoreError> {
    let last_cut = cuts.last().cloned().unwrap_or_default();
    let usage_cond = usage_condition(cut, &last_cut);
    let b = buckets(stream_ids, cuts)?;

    // The hourly fold, partition by partition, into usage_delta (by close bucket).
    tx.batch_execute(&format!(
        "CREATE TABLE {schema}.bucket_of (wb integer PRIMARY KEY, bucket integer NOT NULL);
         CREATE TABLE {schema}.usage_delta (bucket integer NOT NULL, tenant_id text NOT NULL, gpu_sku text NOT NULL,
             project text NOT NULL, hour timestamptz NOT NULL, gpu_seconds numeric NOT NULL, events bigint NOT NULL,
             mig_profile text)"
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
        fold_partition(tx, schema, part, &format!("fold_{i}"), &usage_cond, thresholds)?;
        done += u64::try_from(*estimate).unwrap_or(0);
        on_progress(Progress { stage: format!("folded {part}"), done, total });
    }
    add_adjustments(tx, schema, cuts, reference)?;
    tx.batch_execute(&format!(
        "CREATE TABLE {schema}.usage_hourly AS
         SELECT tenant_id COLLATE \"C\" AS tenant_id, gpu_sku COLLATE \"C\" AS gpu_sku, project COLLATE \"C\" AS project,
                hour, sum(gpu_seconds)::numeric(24, 6) AS gpu_seconds, sum(events)::bigint AS events,
                mig_profile COLLATE \"C\" AS mig_profile
           FROM {schema}.usage_delta GROUP BY 1, 2, 3, 4, 7;
         CREATE UNIQUE INDEX ON {schema}.usage_hourly (tenant_id, gpu_sku, project, mig_profile, hour) NULLS NOT DISTINCT"
    ))?;
    on_progress(Progress { stage: "hourly projection built".into(), done: total, total });
    Ok(tx.query_one(&format!("SELECT coalesce(sum(events), 0)::bigint FROM {schema}.usage_hourly"), &[])?.get(0))
}

/// Folds one monthly partition into `{schema}.usage_delta`, through the scratch table `table`;
/// an interval over an hour long, or a row outside every stream's known positions, is an error.
fn fold_partition(
    tx: &mut Transaction<'_>,
    schema: &str,
    part: &str,
    table: &str,
    usage_cond: &str,
    thresholds: &[i64],
) -> Result<(), StoreError> {
    if !valid_partition_name(part) {
        return Err(invariant(format!("ledger_events has a partition {part:?} outside the monthly naming")));
    }
    // The planner cannot estimate groups of jsonb fields and picks a sort of every event;
    // the groups are few (tenants x SKUs x projects x hours), so hashing is far cheaper.
    tx.batch_execute("SET LOCAL enable_sort = off")?;
    tx.batch_execute(&fold_sql(schema, &format!("public.{part}"), table, usage_cond, thresholds))?;
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
                f.gpu_seconds - coalesce(mod(f.spill_code, {SPILL_MARK}), 0), f.events, f.mig_profile
           FROM {schema}.{table} f JOIN {schema}.bucket_of m USING (wb)
         UNION ALL
         SELECT m.bucket, f.tenant_id, f.gpu_sku, f.project, f.h1 + interval '1 hour', mod(f.spill_code, {SPILL_MARK}), 0,
                f.mig_profile
           FROM {schema}.{table} f JOIN {schema}.bucket_of m USING (wb) WHERE f.spill_code IS NOT NULL;
         DROP TABLE {schema}.{table}"
    ))?;
    Ok(())
}

/// Finance's usage adjustments (reference stream), in the bucket of the first close that saw
/// them; an adjustment changes a whole-GPU row (NULL profile).
fn add_adjustments(
    tx: &mut Transaction<'_>,
    schema: &str,
    cuts: &[BTreeMap<i32, i64>],
    reference: &ReferenceInCut,
) -> Result<(), StoreError> {
    let insert_delta = tx.prepare(&format!(
        "INSERT INTO {schema}.usage_delta (bucket, tenant_id, gpu_sku, project, hour, gpu_seconds, events)
         VALUES ($1, $2, $3, $4, $5, $6, 0)"
    ))?;
    for (pos, _, r) in &reference.events {
        if let Reference::Adjustment(a) = r {
            let sid = reference.stream_id.ok_or_else(|| invariant("an adjustment without its stream"))?;
            let bucket = cuts.iter().position(|c| c.get(&sid).is_some_and(|u| pos <= u)).unwrap_or(cuts.len());
            let bucket = i32::try_from(bucket).map_err(|_| invariant("too many closes"))?;
            let UsageAdjustment { tenant_id, gpu_sku, project, hour, gpu_seconds_delta, .. } = a;
            tx.execute(&insert_delta, &[&bucket, tenant_id, gpu_sku, project, hour, gpu_seconds_delta])?;
        }
    }
    Ok(())
}

/// GPU-seconds per (tenant, SKU).
pub(super) type TenantSkuTotals = BTreeMap<(String, String), Decimal>;

/// The replayed hourly projection: hashed in canonical order; compared with the live one for a
/// full replay, its totals per tenant and SKU reported for a past cut.
pub(super) fn hash_and_compare(
    tx: &mut Transaction<'_>,
    schema: &str,
    cut: &Cut,
) -> Result<(ProjectionOutput, Vec<Difference>, TenantSkuTotals), StoreError> {
    let mut hourly_sha = sha();
    let mut hourly_rows = 0u64;
    let mut replayed_totals: TenantSkuTotals = BTreeMap::new();
    {
        let params: [&(dyn ToSql + Sync); 0] = [];
        let mut rows = tx.query_raw(
            &format!(
                "SELECT tenant_id, gpu_sku, project, hour, gpu_seconds, events, mig_profile
                   FROM {schema}.usage_hourly ORDER BY 1, 2, 3, 4, 7 NULLS FIRST"
            ),
            params,
        )?;
        while let Some(r) = rows.next()? {
            let (tenant, sku, project): (String, String, String) = (r.get(0), r.get(1), r.get(2));
            let (hour, seconds, events): (DateTime<Utc>, Decimal, i64) = (r.get(3), r.get(4), r.get(5));
            let seconds = seconds.normalize();
            let line: [&str; 6] = [&tenant, &sku, &project, &ts(&hour), &seconds.to_string(), &events.to_string()];
            // A whole-GPU row hashes as it did before MIG slices had rows of their own.
            match r.get::<_, Option<String>>(6) {
                None => hourly_sha.line(&line),
                Some(p) => {
                    let mut with_profile = line.to_vec();
                    with_profile.push(&p);
                    hourly_sha.line(&with_profile)
                }
            }
            hourly_rows += 1;
            *replayed_totals.entry((tenant, sku)).or_default() += seconds;
        }
    }
    let hourly_differences = if cut.is_now() { compare_live(tx, schema)? } else { Vec::new() };
    let hourly = ProjectionOutput {
        name: "usage_hourly",
        rows: hourly_rows,
        sha256: hourly_sha.done(),
        compared: cut.is_now(),
        differences: hourly_differences.len() as u64,
    };
    Ok((hourly, hourly_differences, replayed_totals))
}

/// Every hour where the replayed projection and the live one differ, in key order.
fn compare_live(tx: &mut Transaction<'_>, schema: &str) -> Result<Vec<Difference>, StoreError> {
    let mut hourly_differences = Vec::new();
    let params: [&(dyn ToSql + Sync); 0] = [];
    let mut rows = tx.query_raw(
        &format!(
            "SELECT coalesce(r.tenant_id, l.tenant_id), coalesce(r.gpu_sku, l.gpu_sku), coalesce(r.project, l.project),
                    coalesce(r.hour, l.hour), r.gpu_seconds, r.events, l.gpu_seconds, l.events,
                    coalesce(r.mig_profile, l.mig_profile)
               FROM {schema}.usage_hourly r FULL JOIN public.usage_hourly l
                    ON l.tenant_id = r.tenant_id AND l.gpu_sku = r.gpu_sku AND l.project = r.project AND l.hour = r.hour
                   AND coalesce(l.mig_profile, '') = coalesce(r.mig_profile, '')
              WHERE r.gpu_seconds IS DISTINCT FROM l.gpu_seconds OR r.events IS DISTINCT FROM l.events
              ORDER BY 1, 2, 3, 9 NULLS FIRST, 4"
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
            key: match r.get::<_, Option<String>>(8) {
                None => format!(
                    "{} {} {} {}",
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    ts(&hour)
                ),
                Some(m) => format!(
                    "{} {} {} {m} {}",
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, String>(2),
                    ts(&hour)
                ),
            },
            replayed: side(r.get(4), r.get(5)),
            live: side(r.get(6), r.get(7)),
        });
    }
    Ok(hourly_differences)
}
