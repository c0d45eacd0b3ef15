//! Verifying the closes: each re-planned from the log alone and compared byte for byte.

use super::*;
use crate::ledger_row::{content, content_columns, Identity};
use crate::StoreError;
use domain::billing::close::{plan_close, recheck_set, CloseInput, CloseRecord, KIND_CLOSE};
use domain::billing::invoice::{InvoiceDoc, KIND_INVOICE};
use domain::billing::rating::UsageRow;
use domain::billing::reference::{Reference, ReferenceState};
use domain::billing::Period;
use domain::projection::HourlyUsage;
use domain::usage::{UsageRecorded, LEDGER_KIND};
use postgres::{Client, IsolationLevel};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// One close, re-derived from the log.
#[derive(Debug, Clone)]
pub struct CloseCheck {
    pub period: Period,
    pub documents: usize,
    /// Differences found (empty: every document is byte-identical).
    pub differences: Vec<String>,
}

/// Replays every period close from the log alone: the usage events and adjustments, reference
/// events and earlier documents inside its recorded cut, folded and rated again; each document
/// must come out byte-identical to the one issued.
pub fn verify_closes(client: &mut Client) -> Result<Vec<CloseCheck>, StoreError> {
    let mut tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start()?;
    let names = stream_names(&mut tx)?;
    let Some((billing_sid, _)) = stream_id(&mut tx, BILLING_STREAM)? else {
        tx.commit()?;
        return Ok(Vec::new());
    };
    let reference = reference_events(&mut tx, None)?;
    let billing = tx.query(
        "SELECT stream_pos, event_id, kind, payload FROM ledger_events WHERE stream_id = $1 ORDER BY stream_pos",
        &[&billing_sid],
    )?;
    let params: [&(dyn postgres::types::ToSql + Sync); 1] = [&LEDGER_KIND];
    let mut usage: Vec<(String, i64, UsageRecorded)> = Vec::new();
    {
        use postgres::fallible_iterator::FallibleIterator;
        let mut rows = tx.query_raw(
            &format!(
                "SELECT stream_id, stream_pos, event_id, tenant_id, occurred_at, {} FROM ledger_events WHERE kind = $1",
                content_columns("")
            ),
            params,
        )?;
        while let Some(r) = rows.next()? {
            let (event_id, tenant): (Uuid, String) = (r.get(2), r.get(3));
            let e = content(&r, 5, Identity { event_id, tenant_id: &tenant, occurred_at: r.get(4) })?
                .into_usage(event_id)?;
            usage.push((names[&r.get::<_, i32>(0)].clone(), r.get(1), e));
        }
    }
    tx.commit()?;
    let ref_name = format!("{REFERENCE_STREAM}/0");
    let billing_name = format!("{BILLING_STREAM}/0");

    let (docs_by_pos, stored_json, closes) = parse_billing_rows(billing.iter())?;

    let mut checks = Vec::new();
    for (_, close_id, rec) in &closes {
        let upto = |name: &str| rec.cut.get(name).copied().unwrap_or(0);
        let refs_in: Vec<(i64, Uuid, Reference)> =
            reference.iter().filter(|(pos, _, _)| *pos <= upto(&ref_name)).cloned().collect();
        let mut hourly = HourlyUsage::default();
        for (stream, pos, e) in &usage {
            if *pos <= upto(stream) {
                hourly.apply(e);
            }
        }
        for (_, _, r) in &refs_in {
            if let Reference::Adjustment(a) = r {
                hourly.adjust(a);
            }
        }
        let issued: Vec<InvoiceDoc> =
            docs_by_pos.iter().filter(|(pos, _)| *pos <= upto(&billing_name)).map(|(_, d)| d.clone()).collect();
        let closed: BTreeSet<Period> =
            closes.iter().filter(|(pos, _, _)| *pos <= upto(&billing_name)).map(|(_, _, r)| r.period).collect();
        let differences = match replan_close(rec, *close_id, &hourly, fold_reference(&refs_in), closed, issued) {
            Err(e) => vec![format!("the replay cannot close {}: {e}", rec.period)],
            Ok(replayed) => compare_replayed(rec, &replayed, &stored_json),
        };
        checks.push(CloseCheck { period: rec.period, documents: rec.documents.len(), differences });
    }
    Ok(checks)
}

/// Plans a recorded close again from what the log held at its cut: `hourly` is the usage (events
/// and adjustments) inside the cut, `refs` the reference state, `closed` and `issued` the closes and
/// documents before it. The same rating inputs as the close itself (`close_locked`) read.
pub(crate) fn replan_close(
    rec: &CloseRecord,
    close_id: Uuid,
    hourly: &HourlyUsage,
    refs: ReferenceState,
    closed: BTreeSet<Period>,
    issued: Vec<InvoiceDoc>,
) -> Result<Vec<InvoiceDoc>, String> {
    let mut input = CloseInput { refs, closed, issued, ..CloseInput::default() };
    let mut seconds: BTreeMap<(String, Period, String), Decimal> = BTreeMap::new();
    let mut by_period: BTreeMap<(String, Period), Vec<UsageRow>> = BTreeMap::new();
    for (k, v) in &hourly.rows {
        let p = Period::of(k.hour);
        if p > rec.period {
            continue;
        }
        if p < rec.period {
            *seconds.entry((k.tenant_id.clone(), p, k.gpu_sku.clone())).or_default() += v.gpu_seconds;
        }
        by_period.entry((k.tenant_id.clone(), p)).or_default().push(UsageRow {
            sku: k.gpu_sku.clone(),
            project: k.project.clone(),
            hour: k.hour,
            gpu_seconds: v.gpu_seconds,
            mig_profile: k.mig_profile.clone(),
        });
    }
    let recheck = recheck_set(&seconds, &input.closed, &input.issued);
    for ((t, p), rows) in by_period {
        if p == rec.period || recheck.contains(&(t.clone(), p)) {
            input.usage.entry(t).or_default().insert(p, rows);
        }
    }
    input.recheck = Some(recheck);
    plan_close(rec.period, rec.issued_at, close_id, &input).map_err(|e| e.to_string())
}

/// The replayed documents of a close against the record (numbers) and the ledger's bytes of each
/// document (`stored`: the `data` of its `invoice.issued` event, by number).
pub(crate) fn compare_replayed(
    rec: &CloseRecord,
    replayed: &[InvoiceDoc],
    stored: &BTreeMap<String, Value>,
) -> Vec<String> {
    let mut differences = Vec::new();
    let numbers: Vec<&str> = replayed.iter().map(|d| d.number.as_str()).collect();
    if numbers != rec.documents.iter().map(String::as_str).collect::<Vec<_>>() {
        differences.push(format!("issued {:?}, the replay issues {:?}", rec.documents, numbers));
    }
    for d in replayed {
        // The ledger's bytes of the document against the replay's.
        match stored.get(&d.number) {
            None => differences.push(format!("{} is not in the ledger", d.number)),
            Some(s) if serde_json::to_vec(s).expect("json") != d.canonical_bytes() => differences.push(format!(
                "{} differs from its replay at {}",
                d.number,
                first_difference(s, &d.to_json())
            )),
            Some(_) => {}
        }
    }
    differences
}

/// The billing stream's documents (by stream position), their stored JSON (by number) and its
/// closes (position, event id, record), from rows of (stream_pos, event_id, kind, payload).
pub(crate) type BillingRows = (Vec<(i64, InvoiceDoc)>, BTreeMap<String, Value>, Vec<(i64, Uuid, CloseRecord)>);

pub(crate) fn parse_billing_rows<'a>(rows: impl Iterator<Item = &'a postgres::Row>) -> Result<BillingRows, StoreError> {
    let mut docs_by_pos: Vec<(i64, InvoiceDoc)> = Vec::new();
    let mut stored_json: BTreeMap<String, Value> = BTreeMap::new();
    let mut closes: Vec<(i64, Uuid, CloseRecord)> = Vec::new();
    for r in rows {
        let kind: String = r.get(2);
        let payload: Value = r.get(3);
        if kind == KIND_INVOICE {
            let doc = InvoiceDoc::from_json(&payload["data"]).map_err(StoreError::Invariant)?;
            stored_json.insert(doc.number.clone(), payload["data"].clone());
            docs_by_pos.push((r.get(0), doc));
        } else if kind == KIND_CLOSE {
            let rec: CloseRecord = serde_json::from_value(payload["data"].clone())
                .map_err(|e| StoreError::Invariant(format!("period.closed event does not parse: {e}")))?;
            closes.push((r.get(0), r.get(1), rec));
        }
    }
    Ok((docs_by_pos, stored_json, closes))
}

/// The JSON path of the first difference between two values (for reports).
pub(crate) fn first_difference(a: &Value, b: &Value) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) if p == q => {}
                    (Some(p), Some(q)) => return format!(".{k}{}", first_difference(p, q)),
                    _ => return format!(".{k} (present on one side only)"),
                }
            }
            String::new()
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                if p != q {
                    return format!("[{i}]{}", first_difference(p, q));
                }
            }
            String::new()
        }
        _ => format!(": {a} vs {b}"),
    }
}
