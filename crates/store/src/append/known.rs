//! Step 2 of an append: what the ledger already holds for the batch — the committed GPU time its
//! events touch, with the ids and content of those rows, and which of its event ids are in
//! `ledger_event_ids` — read into the [`Known`] that the pure decision takes.

use super::months::{month_of, partition_name};
use super::{Mode, PartitionBatch};
use crate::ledger_row::{content as content_of, content_columns, Identity};
use crate::StoreError;
use chrono::{DateTime, NaiveDate, Utc};
use domain::decide::{windows, Interval, Known, KnownId, Slot};
use std::collections::{BTreeMap, HashSet};
use uuid::Uuid;

/// What the ledger holds for these partitions' valid events: the ledgered GPU time their
/// windows touch, with each such row's content under its id, and the stored ids of the events
/// asked about — every one when serial, else only those whose GPU time is taken (a redelivered
/// event always overlaps its first copy; an id reused with free GPU time fails the unique key
/// of `ledger_event_ids` instead, and the batch is decided again serially).
pub(super) fn read_known(
    tx: &mut postgres::Transaction<'_>,
    ordered: &[&PartitionBatch],
    legacy: bool,
    mode: Mode,
) -> Result<Known, StoreError> {
    let valid = || ordered.iter().flat_map(|b| b.messages.iter()).filter_map(|m| m.verdict.as_ref().ok());
    let asked = windows(valid().map(|e| (e.gpu_id, e.interval_start, e.interval_end)));
    #[cfg(feature = "measure-without-guards")]
    let asked = super::measure::without_probe(asked);
    let mut known = Known::default();
    for (gpu, slot, (s, e), row) in gpu_time(tx, &asked, legacy)? {
        known.busy.insert(gpu, slot, s, e);
        if let Some((event_id, tenant, c)) = row {
            let usage = c.into_usage(event_id)?;
            known.add_id(event_id, tenant, KnownId::Row(Box::new(usage)));
        }
    }
    let lookup: Vec<(&str, Uuid)> = valid()
        .filter(|e| mode == Mode::Serial || known.busy.overlaps(&e.gpu_id, e.slot(), e.interval_start, e.interval_end))
        .filter(|e| !known.has_id(e))
        .map(|e| (e.tenant_id.as_str(), e.event_id))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    for (tenant, id, print) in stored_ids(tx, &lookup)? {
        known.add_id(id, tenant, KnownId::Id(print));
    }
    Ok(known)
}

/// An event id in `ledger_event_ids`: its tenant, the id, the fingerprint where one is kept.
type StoredId = (String, Uuid, Option<[u8; 32]>);

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

/// A ledgered interval of GPU time in its slot (the whole GPU or a MIG instance), with the id and
/// content of its row (none for the bare intervals kept from before migration 0005, all of them
/// whole GPUs).
type Taken = (Uuid, Slot, Interval, Option<(Uuid, String, crate::ledger_row::Content)>);

/// The ledgered GPU time that overlaps these windows (windows are per GPU: every slot of the GPU is
/// read), with each row's event id and content, as
/// `client` sees the ledger (a transaction sees its own rows too; another connection only what is
/// committed).
///
/// A row overlaps `[lo, hi)` when it ends after `lo` and starts before `hi`; rows are at most an
/// hour long, so it ends before `hi + 1 hour`. One probe per window on the index
/// `(gpu_id, interval_end)`, in each monthly partition the windows reach, named directly so that
/// nothing is pruned per probe. Usage arriving in time order overlaps nothing, and the probe finds
/// no entry at all: what the GPU did before `lo` ended by `lo`.
pub(super) fn gpu_time(
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
            "SELECT w.gpu_id, e.occurred_at, e.interval_end, e.event_id, e.tenant_id, e.mig_instance, {content}
               FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) AS w(gpu_id, lo, hi)
               JOIN {name} e ON e.gpu_id = w.gpu_id AND e.interval_end > w.lo AND e.interval_end < w.hi + interval '1 hour'
              WHERE e.occurred_at < w.hi"
        );
        for row in client.query(&sql, &[gpus, los, his])? {
            let (gpu, starts, ends): (Uuid, DateTime<Utc>, DateTime<Utc>) = (row.get(0), row.get(1), row.get(2));
            let event_id: Uuid = row.get(3);
            let tenant: String = row.get(4);
            let slot = slot_of(row.get(5))?;
            let c = content_of(&row, 6, Identity { event_id, tenant_id: &tenant, occurred_at: starts })?;
            out.push((gpu, slot, (starts, ends), Some((event_id, tenant, c))));
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
            out.push((row.get(0), None, (row.get(1), row.get(2)), None));
        }
    }
    Ok(out)
}

/// The slot of a row from its `mig_instance` column (migration 0013 holds it to 0..99).
fn slot_of(mig_instance: Option<i16>) -> Result<Slot, StoreError> {
    mig_instance
        .map(|i| u8::try_from(i).map_err(|_| StoreError::Invariant(format!("a ledgered MIG instance of {i}"))))
        .transpose()
}
