//! Period closes: a month's invoices and credit notes issued with its `period.closed` event, and
//! the issued documents read back.

use super::*;
use crate::append::ensure_months_for;
use crate::{Refusal, StoreError};
use chrono::{DateTime, SubsecRound, Utc};
use domain::billing::close::{plan_close, recheck_set, CloseInput, CloseRecord, CLOSE_VERSION, KIND_CLOSE};
use domain::billing::invoice::{InvoiceDoc, INVOICE_VERSION, KIND_INVOICE};
use domain::billing::rating::UsageRow;
use domain::billing::Period;
use postgres::{Client, IsolationLevel, Transaction};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use uuid::Uuid;

/// What a close did.
#[derive(Debug, Clone)]
pub struct CloseOutcome {
    pub period: Period,
    /// The period was closed before: nothing was issued now.
    pub already_closed: bool,
    /// The documents issued by this close (or, when already closed, by the earlier close).
    pub documents: Vec<InvoiceDoc>,
}

/// Documents issued for a closing: the `period.closed` event's record and its documents' events.
pub(super) fn close_events(record: &CloseRecord, close_id: Uuid, docs: &[InvoiceDoc]) -> Vec<LocalEvent> {
    let mut events: Vec<LocalEvent> = docs
        .iter()
        .map(|d| LocalEvent {
            event_id: Uuid::new_v5(&close_id, d.number.as_bytes()),
            tenant_id: d.tenant_id.clone(),
            kind: KIND_INVOICE.to_string(),
            version: INVOICE_VERSION,
            occurred_at: d.issued_at,
            data: d.to_json(),
        })
        .collect();
    events.push(LocalEvent {
        event_id: close_id,
        tenant_id: domain::billing::reference::NO_TENANT.to_string(),
        kind: KIND_CLOSE.to_string(),
        version: CLOSE_VERSION,
        occurred_at: record.issued_at,
        data: serde_json::to_value(record).expect("json"),
    });
    events
}

pub(super) fn stream_names(tx: &mut Transaction<'_>) -> Result<HashMap<i32, String>, StoreError> {
    Ok(tx
        .query("SELECT stream_id, topic, kafka_partition FROM ledger_streams", &[])?
        .iter()
        .map(|r| (r.get(0), format!("{}/{}", r.get::<_, String>(1), r.get::<_, i32>(2))))
        .collect())
}

pub(super) fn usage_rows(rows: Vec<postgres::Row>) -> BTreeMap<String, Vec<UsageRow>> {
    let mut out: BTreeMap<String, Vec<UsageRow>> = BTreeMap::new();
    for r in rows {
        out.entry(r.get(0)).or_default().push(UsageRow {
            sku: r.get(1),
            project: r.get(2),
            hour: r.get(3),
            gpu_seconds: r.get(4),
            mig_profile: r.get(5),
        });
    }
    out
}

/// Closes a Berlin calendar month: issues every tenant's invoice (and the credit notes and late
/// lines of earlier periods) in one transaction with the `period.closed` event. Closing a closed
/// period issues nothing. Closes are serialized; ingest goes on meanwhile: the close reads one
/// snapshot, and records each stream's head in it (the cut) so that a replay reads the same log.
pub fn close_period(client: &mut Client, period: Period, now: DateTime<Utc>) -> Result<CloseOutcome, StoreError> {
    if now < period.end() {
        return Err(Refusal::PeriodNotOver { period, ends_at: period.end() }.into());
    }
    let issued_at = now.trunc_subsecs(0);
    ensure_months_for(client, std::iter::once(issued_at))?;
    client.execute("SELECT pg_advisory_lock(hashtext($1))", &[&CLOSE_LOCK])?;
    let result = close_locked(client, period, issued_at);
    let unlock = client.execute("SELECT pg_advisory_unlock(hashtext($1))", &[&CLOSE_LOCK]);
    let outcome = result?;
    unlock?;
    Ok(outcome)
}

pub(super) fn close_locked(
    client: &mut Client,
    period: Period,
    issued_at: DateTime<Utc>,
) -> Result<CloseOutcome, StoreError> {
    let mut tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).start()?;
    if tx.query_opt("SELECT 1 FROM billing_closes WHERE period = $1", &[&period.to_string()])?.is_some() {
        let documents = documents_where(&mut tx, "close_period = $1", &[&period.to_string()])?;
        tx.commit()?;
        return Ok(CloseOutcome { period, already_closed: true, documents });
    }
    // The cut: every stream's head in this snapshot.
    let cut: BTreeMap<String, i64> = tx
        .query("SELECT topic, kafka_partition, head_pos FROM ledger_streams", &[])?
        .iter()
        .map(|r| (format!("{}/{}", r.get::<_, String>(0), r.get::<_, i32>(1)), r.get(2)))
        .collect();
    let refs = fold_reference(&reference_events(&mut tx, None)?);
    let closed = closed_periods(&mut tx)?;
    let issued = documents_where(&mut tx, "true", &[])?;
    let mut input = CloseInput { refs, closed, issued, ..CloseInput::default() };
    let current = tx.query(
        "SELECT tenant_id, gpu_sku, project, hour, gpu_seconds, mig_profile FROM usage_hourly WHERE hour >= $1 AND hour < $2",
        &[&period.start(), &period.end()],
    )?;
    for (tenant, rows) in usage_rows(current) {
        input.usage.entry(tenant).or_default().insert(period, rows);
    }
    // Earlier closed periods: re-rate those whose usage changed since they were billed.
    if let Some(first) = input.closed.iter().next().copied().filter(|f| *f < period) {
        let totals = tx.query(
            "SELECT tenant_id, to_char(hour AT TIME ZONE 'Europe/Berlin', 'YYYY-MM'), gpu_sku, sum(gpu_seconds)
               FROM usage_hourly WHERE hour >= $1 AND hour < $2 GROUP BY 1, 2, 3",
            &[&first.start(), &period.start()],
        )?;
        let mut seconds = BTreeMap::new();
        for r in totals {
            let p = Period::parse(r.get(1)).map_err(StoreError::Invariant)?;
            seconds.insert((r.get::<_, String>(0), p, r.get::<_, String>(2)), r.get::<_, Decimal>(3));
        }
        let recheck = recheck_set(&seconds, &input.closed, &input.issued);
        for (tenant, q) in &recheck {
            let rows = tx.query(
                "SELECT tenant_id, gpu_sku, project, hour, gpu_seconds, mig_profile FROM usage_hourly
                  WHERE tenant_id = $1 AND hour >= $2 AND hour < $3",
                &[tenant, &q.start(), &q.end()],
            )?;
            for (t, rows) in usage_rows(rows) {
                input.usage.entry(t).or_default().insert(*q, rows);
            }
        }
        input.recheck = Some(recheck);
    } else {
        input.recheck = Some(BTreeSet::new());
    }
    let close_id = Uuid::new_v4();
    let docs = plan_close(period, issued_at, close_id, &input).map_err(Refusal::Close)?;
    let record = CloseRecord { period, issued_at, cut, documents: docs.iter().map(|d| d.number.clone()).collect() };
    let appended = append_local(&mut tx, BILLING_STREAM, &close_events(&record, close_id, &docs), issued_at)?;
    let close_at = appended.last().expect("the close event");
    tx.execute(
        "INSERT INTO billing_closes (period, event_id, closed_at, stream_id, stream_pos) VALUES ($1, $2, $3, $4, $5)",
        &[&period.to_string(), &close_id, &issued_at, &close_at.stream_id, &close_at.stream_pos],
    )?;
    for (d, a) in docs.iter().zip(&appended) {
        let series_no: i32 = d.number.rsplit('-').next().and_then(|n| n.parse().ok()).expect("numbered");
        tx.execute(
            "INSERT INTO invoices (number, series, series_no, type_code, tenant_id, period, close_period, issued_at,
                                   net_total, vat_total, gross_total, event_id, stream_id, stream_pos)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            &[
                &d.number,
                &d.series,
                &series_no,
                &(d.type_code as i16),
                &d.tenant_id,
                &d.period.to_string(),
                &period.to_string(),
                &issued_at,
                &d.net_total.amount(),
                &d.vat_total.amount(),
                &d.gross_total.amount(),
                &a.event_id,
                &a.stream_id,
                &a.stream_pos,
            ],
        )?;
    }
    tx.commit()?;
    Ok(CloseOutcome { period, already_closed: false, documents: docs })
}

/// Issued documents (from their ledger rows) whose index row matches `filter`, in issue order.
pub(crate) fn documents_where(
    tx: &mut Transaction<'_>,
    filter: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Vec<InvoiceDoc>, StoreError> {
    let sql = format!(
        "SELECT e.payload FROM invoices i JOIN ledger_events e ON e.stream_id = i.stream_id AND e.stream_pos = i.stream_pos
          WHERE e.kind = '{KIND_INVOICE}' AND {filter} ORDER BY i.stream_pos"
    );
    tx.query(&sql, params)?
        .iter()
        .map(|r| {
            let payload: Value = r.get(0);
            InvoiceDoc::from_json(&payload["data"]).map_err(StoreError::Invariant)
        })
        .collect()
}

/// Issued documents, optionally of one close period and/or one tenant, in issue order.
pub fn documents(
    client: &mut Client,
    close_period: Option<Period>,
    tenant: Option<&str>,
) -> Result<Vec<InvoiceDoc>, StoreError> {
    let mut tx = client.build_transaction().read_only(true).start()?;
    let p = close_period.map(|p| p.to_string());
    let docs = documents_where(
        &mut tx,
        "($1::text IS NULL OR i.close_period = $1) AND ($2::text IS NULL OR i.tenant_id = $2)",
        &[&p, &tenant],
    )?;
    tx.commit()?;
    Ok(docs)
}
