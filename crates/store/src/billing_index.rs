//! The billing index tables that the API and the pages read (`invoices`, `billing_closes`),
//! checked against the ledger events they index, in one snapshot (`domain::billing::index`
//! decides what differs). Part of `gpuledger invoices verify`.

use crate::StoreError;
use domain::billing::close::{CloseRecord, KIND_CLOSE};
use domain::billing::index::{close_row_of, differences, invoice_row_of, CloseRow, EventAt, InvoiceRow};
use domain::billing::invoice::{InvoiceDoc, KIND_INVOICE};
use domain::billing::Period;
use domain::money::Money;
use postgres::{Client, IsolationLevel};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;

/// Every difference between the index tables and the `invoice.issued` / `period.closed` events,
/// each naming its table, row and column. Empty: the tables say what the ledger says.
pub fn verify_index(client: &mut Client) -> Result<Vec<String>, StoreError> {
    let mut tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start()?;
    let events = tx.query(
        "SELECT event_id, stream_id, stream_pos, kind, payload FROM ledger_events WHERE kind IN ($1, $2) ORDER BY seq",
        &[&KIND_INVOICE, &KIND_CLOSE],
    )?;
    let invoice_rows = tx.query(
        "SELECT number, series, series_no, type_code, tenant_id, period, close_period, issued_at,
                net_total, vat_total, gross_total, event_id, stream_id, stream_pos FROM invoices",
        &[],
    )?;
    let close_rows = tx.query("SELECT period, closed_at, event_id, stream_id, stream_pos FROM billing_closes", &[])?;
    tx.commit()?;

    let mut docs: Vec<(InvoiceDoc, EventAt)> = Vec::new();
    let mut closes: Vec<(CloseRecord, EventAt)> = Vec::new();
    for r in &events {
        let at = EventAt { event_id: r.get(0), stream_id: r.get(1), stream_pos: r.get(2) };
        let (kind, payload): (String, Value) = (r.get(3), r.get(4));
        if kind == KIND_INVOICE {
            docs.push((InvoiceDoc::from_json(&payload["data"]).map_err(StoreError::Invariant)?, at));
        } else {
            let rec: CloseRecord = serde_json::from_value(payload["data"].clone())
                .map_err(|e| StoreError::Invariant(format!("period.closed event does not parse: {e}")))?;
            closes.push((rec, at));
        }
    }
    // Each document was issued by the close whose event names it.
    let close_of: BTreeMap<uuid::Uuid, Period> = closes.iter().map(|(rec, at)| (at.event_id, rec.period)).collect();
    let expected_invoices = docs
        .iter()
        .map(|(d, at)| invoice_row_of(d, close_of.get(&d.close_event_id).copied().unwrap_or(d.period), *at))
        .collect();
    let expected_closes = closes.iter().map(|(rec, at)| close_row_of(rec, *at)).collect();
    let money = |r: &postgres::Row, i: usize| Money::new(r.get::<_, Decimal>(i));
    let invoice_rows = invoice_rows
        .iter()
        .map(|r| InvoiceRow {
            number: r.get(0),
            series: r.get(1),
            series_no: r.get(2),
            type_code: r.get(3),
            tenant_id: r.get(4),
            period: r.get(5),
            close_period: r.get(6),
            issued_at: r.get(7),
            net_total: money(r, 8),
            vat_total: money(r, 9),
            gross_total: money(r, 10),
            at: EventAt { event_id: r.get(11), stream_id: r.get(12), stream_pos: r.get(13) },
        })
        .collect();
    let close_rows = close_rows
        .iter()
        .map(|r| CloseRow {
            period: r.get(0),
            closed_at: r.get(1),
            at: EventAt { event_id: r.get(2), stream_id: r.get(3), stream_pos: r.get(4) },
        })
        .collect();
    Ok(differences(invoice_rows, close_rows, expected_invoices, expected_closes))
}
