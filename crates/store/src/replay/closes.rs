//! The closes of a replay: the billing stream and the reference data inside the cut, each
//! close's own cut by stream, and every close planned again from the usage its cut held.

use super::cut::{local_stream, Cut};
use super::{invariant, Difference};
use crate::billing::{
    compare_replayed, fold_reference, reference_events, replan_close, stream_id, BILLING_STREAM, REFERENCE_STREAM,
};
use crate::StoreError;
use chrono::{DateTime, Utc};
use domain::billing::close::{CloseRecord, KIND_CLOSE};
use domain::billing::invoice::InvoiceDoc;
use domain::billing::reference::Reference;
use domain::billing::Period;
use domain::projection::{HourKey, HourTotals, HourlyUsage};
use postgres::Transaction;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// The billing stream inside the cut. A close inside the cut comes with everything its own cut
/// held (read by it, so known then, whatever their recorded_at says: a close records its time in
/// whole seconds), and with its documents (written just before it in the billing stream).
pub(super) struct Billing {
    pub stream_id: Option<i32>,
    /// The position of the last close inside the cut (0 for none).
    pub last_close_pos: i64,
    /// Rows of the billing stream up to that close.
    pub rows: usize,
    pub docs_by_pos: Vec<(i64, InvoiceDoc)>,
    /// The ledger's JSON of each document (by number).
    pub stored_json: BTreeMap<String, Value>,
    /// (position, event id, record), in log order.
    pub closes: Vec<(i64, Uuid, CloseRecord)>,
    /// Each close's cut by stream id (stream names as the close recorded them).
    pub cuts: Vec<BTreeMap<i32, i64>>,
}

impl Billing {
    pub fn read(tx: &mut Transaction<'_>, cut: &Cut, streams: &[(i32, String, i64)]) -> Result<Billing, StoreError> {
        let stream_id = stream_id(tx, BILLING_STREAM)?.map(|(id, _)| id);
        let billing_all = local_stream(tx, BILLING_STREAM)?;
        let last_close_pos = billing_all
            .iter()
            .filter(|r| r.get::<_, String>(2) == KIND_CLOSE && cut.includes(r.get(4), r.get(5)))
            .map(|r| r.get::<_, i64>(0))
            .max()
            .unwrap_or(0);
        let billing_rows: Vec<&postgres::Row> =
            billing_all.iter().filter(|r| r.get::<_, i64>(0) <= last_close_pos).collect();
        let (docs_by_pos, stored_json, closes) = crate::billing::parse_billing_rows(billing_rows.iter().copied())?;
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
        let rows = billing_rows.len();
        Ok(Billing { stream_id, last_close_pos, rows, docs_by_pos, stored_json, closes, cuts })
    }

    /// The last close's cut (empty without closes).
    pub fn last_cut(&self) -> BTreeMap<i32, i64> {
        self.cuts.last().cloned().unwrap_or_default()
    }
}

/// The reference data inside the cut, and what the last close inside it read.
pub(super) struct ReferenceInCut {
    pub stream_id: Option<i32>,
    /// (position, event id, event), in position order.
    pub events: Vec<(i64, Uuid, Reference)>,
}

impl ReferenceInCut {
    pub fn read(tx: &mut Transaction<'_>, cut: &Cut, last_cut: &BTreeMap<i32, i64>) -> Result<Self, StoreError> {
        let stream_id = stream_id(tx, REFERENCE_STREAM)?.map(|(id, _)| id);
        let rows: Vec<(i64, i64, DateTime<Utc>)> =
            local_stream(tx, REFERENCE_STREAM)?.iter().map(|r| (r.get(0), r.get(4), r.get(5))).collect();
        let upto = rows
            .iter()
            .filter(|(_, s, t)| cut.includes(*s, *t))
            .map(|(p, _, _)| *p)
            .chain(stream_id.and_then(|id| last_cut.get(&id).copied()))
            .max()
            .unwrap_or(0);
        let events = reference_events(tx, None)?.into_iter().filter(|(p, _, _)| *p <= upto).collect();
        Ok(ReferenceInCut { stream_id, events })
    }
}

/// The documents the replayed closes issue, each with its close's index (0-based, log order).
pub(super) type ReplayedDocs = Vec<(usize, InvoiceDoc)>;

/// The closes, each replayed from the usage its cut held (the close buckets of
/// `{schema}.usage_delta` up to its own): the documents each issues again (with the close's
/// index in log order), and where they differ from the record and the ledger's documents.
pub(super) fn replay_closes(
    tx: &mut Transaction<'_>,
    schema: &str,
    billing: &Billing,
    reference: &[(i64, Uuid, Reference)],
) -> Result<(ReplayedDocs, Vec<Difference>), StoreError> {
    let mut replayed: ReplayedDocs = Vec::new();
    let mut close_differences: Vec<Difference> = Vec::new();
    let billing_name = format!("{BILLING_STREAM}/0");
    let ref_name = format!("{REFERENCE_STREAM}/0");
    for (k, (_, close_id, rec)) in billing.closes.iter().enumerate() {
        let upto = |name: &str| rec.cut.get(name).copied().unwrap_or(0);
        let hourly = usage_of_close(tx, schema, k)?;
        let refs_in: Vec<(i64, Uuid, Reference)> =
            reference.iter().filter(|(pos, _, _)| *pos <= upto(&ref_name)).cloned().collect();
        let issued: Vec<InvoiceDoc> =
            billing.docs_by_pos.iter().filter(|(pos, _)| *pos <= upto(&billing_name)).map(|(_, d)| d.clone()).collect();
        let closed: BTreeSet<Period> =
            billing.closes.iter().filter(|(pos, _, _)| *pos <= upto(&billing_name)).map(|(_, _, r)| r.period).collect();
        let found = match replan_close(rec, *close_id, &hourly, fold_reference(&refs_in), closed, issued) {
            Err(e) => vec![format!("the replay cannot close {}: {e}", rec.period)],
            Ok(docs) => {
                let found = compare_replayed(rec, &docs, &billing.stored_json);
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
    Ok((replayed, close_differences))
}

/// The hourly usage the `k`-th close (0-based, log order) read: the close buckets up to its own.
fn usage_of_close(tx: &mut Transaction<'_>, schema: &str, k: usize) -> Result<HourlyUsage, StoreError> {
    let bucket = i32::try_from(k).map_err(|_| invariant("too many closes"))?;
    let mut hourly = HourlyUsage::default();
    for r in tx.query(
        &format!(
            "SELECT tenant_id, gpu_sku, project, hour, sum(gpu_seconds)::numeric(24, 6), sum(events)::bigint, mig_profile
               FROM {schema}.usage_delta WHERE bucket <= $1 GROUP BY 1, 2, 3, 4, 7"
        ),
        &[&bucket],
    )? {
        let key =
            HourKey { tenant_id: r.get(0), gpu_sku: r.get(1), project: r.get(2), mig_profile: r.get(6), hour: r.get(3) };
        hourly.rows.insert(key, HourTotals { gpu_seconds: r.get(4), events: r.get(5) });
    }
    Ok(hourly)
}
