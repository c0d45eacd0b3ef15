//! The billing index tables (`invoices`, `billing_closes`) against the ledger events they index.
//!
//! The API and the pages read these tables (lists, totals, which document is where), not only the
//! events; `invoices verify` therefore compares every row with the event it points at, and every
//! event with its row, and names the table, the row and the column of each difference. Pure: the
//! store reads the rows and the events in one snapshot and passes them in.

use super::close::CloseRecord;
use super::invoice::InvoiceDoc;
use super::period::Period;
use crate::money::Money;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use uuid::Uuid;

/// Where an event sits in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventAt {
    pub event_id: Uuid,
    pub stream_id: i32,
    pub stream_pos: i64,
}

/// A row of the `invoices` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceRow {
    pub number: String,
    pub series: String,
    pub series_no: i32,
    pub type_code: i16,
    pub tenant_id: String,
    pub period: String,
    pub close_period: String,
    pub issued_at: DateTime<Utc>,
    pub net_total: Money,
    pub vat_total: Money,
    pub gross_total: Money,
    pub at: EventAt,
}

/// A row of the `billing_closes` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRow {
    pub period: String,
    pub closed_at: DateTime<Utc>,
    pub at: EventAt,
}

/// The row a document's `invoice.issued` event at `at`, issued by the close of `close_period`,
/// must have in `invoices`.
pub fn invoice_row_of(doc: &InvoiceDoc, close_period: Period, at: EventAt) -> InvoiceRow {
    InvoiceRow {
        number: doc.number.clone(),
        series: doc.series.clone(),
        series_no: doc.number.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(0),
        type_code: doc.type_code as i16,
        tenant_id: doc.tenant_id.clone(),
        period: doc.period.to_string(),
        close_period: close_period.to_string(),
        issued_at: doc.issued_at,
        net_total: doc.net_total,
        vat_total: doc.vat_total,
        gross_total: doc.gross_total,
        at,
    }
}

/// The row a `period.closed` event at `at` must have in `billing_closes`.
pub fn close_row_of(rec: &CloseRecord, at: EventAt) -> CloseRow {
    CloseRow { period: rec.period.to_string(), closed_at: rec.issued_at, at }
}

/// Differences of one table: rows without their event, events without their row, and every
/// column that differs, each naming the table and the row's key.
fn table_differences<R: std::fmt::Debug + PartialEq>(
    table: &str,
    event_kind: &str,
    rows: &BTreeMap<String, R>,
    expected: &BTreeMap<String, R>,
    columns: impl Fn(&R) -> Vec<(&'static str, String)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (key, row) in rows {
        match expected.get(key) {
            None => out.push(format!("table {table}: row {key} has no {event_kind} event in the ledger")),
            Some(e) if e != row => {
                for ((name, got), (_, want)) in columns(row).into_iter().zip(columns(e)) {
                    if got != want {
                        out.push(format!(
                            "table {table}: row {key}: {name} is {got}, its {event_kind} event says {want}"
                        ));
                    }
                }
            }
            Some(_) => {}
        }
    }
    for key in expected.keys().filter(|k| !rows.contains_key(*k)) {
        out.push(format!("table {table}: no row for {key}, which the ledger's {event_kind} event issued"));
    }
    out
}

fn at_columns(at: &EventAt) -> [(&'static str, String); 3] {
    [
        ("event_id", at.event_id.to_string()),
        ("stream_id", at.stream_id.to_string()),
        ("stream_pos", at.stream_pos.to_string()),
    ]
}

/// Every difference between the index tables and the ledger: `invoice_rows` and `close_rows`
/// as the tables hold them, `expected_invoices` and `expected_closes` as the events state them
/// (`invoice_row_of`, `close_row_of`). Empty: the tables say exactly what the ledger says.
pub fn differences(
    invoice_rows: Vec<InvoiceRow>,
    close_rows: Vec<CloseRow>,
    expected_invoices: Vec<InvoiceRow>,
    expected_closes: Vec<CloseRow>,
) -> Vec<String> {
    let by_number = |v: Vec<InvoiceRow>| v.into_iter().map(|r| (r.number.clone(), r)).collect::<BTreeMap<_, _>>();
    let by_period = |v: Vec<CloseRow>| v.into_iter().map(|r| (r.period.clone(), r)).collect::<BTreeMap<_, _>>();
    let mut out =
        table_differences("invoices", "invoice.issued", &by_number(invoice_rows), &by_number(expected_invoices), |r| {
            let mut c = vec![
                ("series", r.series.clone()),
                ("series_no", r.series_no.to_string()),
                ("type_code", r.type_code.to_string()),
                ("tenant_id", r.tenant_id.clone()),
                ("period", r.period.clone()),
                ("close_period", r.close_period.clone()),
                ("issued_at", r.issued_at.to_rfc3339()),
                ("net_total", r.net_total.to_string()),
                ("vat_total", r.vat_total.to_string()),
                ("gross_total", r.gross_total.to_string()),
            ];
            c.extend(at_columns(&r.at));
            c
        });
    out.extend(table_differences(
        "billing_closes",
        "period.closed",
        &by_period(close_rows),
        &by_period(expected_closes),
        |r| {
            let mut c = vec![("closed_at", r.closed_at.to_rfc3339())];
            c.extend(at_columns(&r.at));
            c
        },
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rust_decimal::Decimal;

    fn row(number: &str, gross: i64) -> InvoiceRow {
        InvoiceRow {
            number: number.into(),
            series: "GL-2026".into(),
            series_no: 1,
            type_code: 380,
            tenant_id: "t".into(),
            period: "2026-10".into(),
            close_period: "2026-10".into(),
            issued_at: Utc.with_ymd_and_hms(2026, 11, 2, 8, 0, 0).unwrap(),
            net_total: Money::new(Decimal::new(gross, 2)),
            vat_total: Money::new(Decimal::ZERO),
            gross_total: Money::new(Decimal::new(gross, 2)),
            at: EventAt { event_id: Uuid::nil(), stream_id: 2, stream_pos: 5 },
        }
    }

    #[test]
    fn every_column_row_and_event_is_compared() {
        let ok = differences(vec![row("GL-2026-000001", 970)], vec![], vec![row("GL-2026-000001", 970)], vec![]);
        assert!(ok.is_empty(), "{ok:?}");
        let changed = differences(vec![row("GL-2026-000001", 1970)], vec![], vec![row("GL-2026-000001", 970)], vec![]);
        assert_eq!(changed.len(), 2, "{changed:?}");
        assert!(changed[0].starts_with("table invoices: row GL-2026-000001: net_total is 19.70"), "{changed:?}");
        let extra = differences(vec![row("GL-2026-000009", 1)], vec![], vec![], vec![]);
        assert_eq!(extra, ["table invoices: row GL-2026-000009 has no invoice.issued event in the ledger"]);
        let missing = differences(vec![], vec![], vec![row("GL-2026-000001", 1)], vec![]);
        assert!(missing[0].contains("no row for GL-2026-000001"), "{missing:?}");
        let close = |h| CloseRow {
            period: "2026-10".into(),
            closed_at: Utc.with_ymd_and_hms(2026, 11, 2, h, 0, 0).unwrap(),
            at: EventAt { event_id: Uuid::nil(), stream_id: 2, stream_pos: 6 },
        };
        let moved = differences(vec![], vec![close(9)], vec![], vec![close(8)]);
        assert_eq!(moved.len(), 1);
        assert!(moved[0].starts_with("table billing_closes: row 2026-10: closed_at is"), "{moved:?}");
    }
}
