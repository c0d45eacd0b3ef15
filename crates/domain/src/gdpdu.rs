//! The typed tables of the GDPdU / GoBD data-access export: usage, invoices, invoice lines,
//! budget bookings and SAP journal lines, each a CSV whose amounts are `Numeric` with their
//! decimals (comma as the decimal symbol, as `index.xml` declares) and whose business dates are
//! `Date` (DD.MM.YYYY), so that an auditor's tool sums and filters them without reading the JSON
//! payload of the raw log. Each record names the ledger row (`seq`) it comes from.

use crate::audit::{Column, ColumnType};
use crate::billing::dec::fixed;
use crate::billing::invoice::InvoiceDoc;
use crate::billing::period::berlin_date;
use crate::billing::reference::UsageAdjustment;
use crate::budget::sap::{cells, JournalLine};
use crate::budget::BudgetEvent;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use ColumnType::{AlphaNumeric as Text, Date, Decimal as Dec, Numeric as Int};

pub const USAGE_COLUMNS: &[Column] = &[
    ("seq", Int, "ledger row (ledger_events.csv)"),
    ("kind", Text, "usage.recorded (metered) or usage.adjusted (finance's correction)"),
    ("tenant_id", Text, "tenant"),
    ("gpu_sku", Text, "GPU model"),
    ("project", Text, "tenant's project"),
    ("gpu_id", Text, "GPU (empty for an adjustment)"),
    ("interval_start", Text, "start of the interval (an adjustment: its hour), RFC 3339 UTC"),
    ("usage_date", Date, "Berlin date of interval_start: the business date"),
    ("gpu_seconds", Dec(6), "GPU-seconds (an adjustment: signed)"),
];

pub const INVOICE_COLUMNS: &[Column] = &[
    ("number", Text, "invoice or credit note number (primary key)"),
    ("seq", Int, "ledger row (ledger_events.csv)"),
    ("type_code", Int, "380 invoice, 381 credit note"),
    ("tenant_id", Text, "tenant"),
    ("buyer_vat_id", Text, "the buyer's VAT id (empty if none)"),
    ("period", Text, "billing period YYYY-MM"),
    ("issue_date", Date, "issue date"),
    ("due_date", Date, "due date"),
    ("vat_category", Text, "S domestic, AE reverse charge, O not taxable"),
    ("currency", Text, "EUR"),
    ("net_total", Dec(2), "net amount as on the document (a credit note's positive)"),
    ("vat_total", Dec(2), "VAT as on the document"),
    ("gross_total", Dec(2), "gross amount as on the document"),
    ("signed_net", Dec(2), "net amount, negative for a credit note: the revenue it books"),
    ("corrects", Text, "the invoice a credit note corrects"),
];

pub const INVOICE_LINE_COLUMNS: &[Column] = &[
    ("number", Text, "invoice or credit note number (invoices.csv)"),
    ("line_no", Int, "line number"),
    ("period", Text, "period the usage belongs to, YYYY-MM"),
    ("late", Text, "true: late usage of an earlier period"),
    ("kind", Text, "usage, commitment, overage, minimum, discount"),
    ("gpu_sku", Text, "GPU model"),
    ("description", Text, "line text"),
    ("gpu_seconds", Dec(6), "GPU-seconds the line bills"),
    ("quantity", Dec(6), "quantity in unit"),
    ("unit", Text, "HUR hour, C62 one"),
    ("unit_price", Dec(4), "EUR per unit"),
    ("net", Dec(2), "net amount as on the document"),
];

pub const BUDGET_BOOKING_COLUMNS: &[Column] = &[
    ("seq", Int, "ledger row (ledger_events.csv)"),
    ("line", Int, "1, 2, ... within the event (a reallocation's moves)"),
    ("kind", Text, "budget.allocated, budget.reallocated, purchase_order.committed, cost.booked, asset.commissioned"),
    ("reference", Text, "supplier invoice, purchase order, reallocation or asset id; an allocation's approval"),
    ("cost_center", Text, "cost centre"),
    ("wbs", Text, "WBS element"),
    ("category", Text, "budget category (empty for an asset)"),
    ("amount", Dec(2), "EUR; a reallocation move signed"),
    ("booking_date", Date, "business date (an asset: in service)"),
];

/// The journal's columns (docs/sap-export.md), the key (period, reference, line) first.
pub const JOURNAL_LINE_COLUMNS: &[Column] = &[
    ("period", Text, "period of the SAP journal handed over, YYYY-MM"),
    ("reference", Text, "document reference"),
    ("line_item", Int, "line in the document"),
    ("company_code", Text, "SAP company code"),
    ("document_type", Text, "DR invoice, DG credit memo, AF depreciation"),
    ("document_date", Date, "document date"),
    ("posting_date", Date, "posting date"),
    ("account_type", Text, "S G/L account, D customer"),
    ("gl_account", Text, "G/L account"),
    ("customer", Text, "customer account"),
    ("debit_credit", Text, "S debit, H credit"),
    ("amount", Dec(2), "EUR, positive"),
    ("currency", Text, "EUR"),
    ("tax_code", Text, "tax code"),
    ("cost_center", Text, "cost centre"),
    ("profit_center", Text, "profit centre"),
    ("wbs_element", Text, "WBS element"),
    ("text", Text, "item text"),
];

/// A decimal as the tables write it: fixed digits, comma as the decimal symbol, no grouping.
pub fn number(d: Decimal, digits: u32) -> String {
    fixed(d, digits).to_string().replace('.', ",")
}

pub fn date(d: NaiveDate) -> String {
    d.format("%d.%m.%Y").to_string()
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The record of a metered usage event's `data` (`usage.recorded`).
pub fn usage_record(seq: i64, data: &serde_json::Value) -> Result<Vec<String>, String> {
    let text = |k: &str| data[k].as_str().map(str::to_string).ok_or_else(|| format!("usage row {seq}: no {k}"));
    let start: DateTime<Utc> = text("interval_start")?.parse().map_err(|e| format!("usage row {seq}: {e}"))?;
    let seconds: Decimal = text("gpu_seconds")?.parse().map_err(|e| format!("usage row {seq}: {e}"))?;
    Ok(vec![
        seq.to_string(),
        crate::usage::LEDGER_KIND.into(),
        text("tenant_id")?,
        text("gpu_sku")?,
        text("project")?,
        text("gpu_id")?,
        instant(start),
        date(berlin_date(start)),
        number(seconds, 6),
    ])
}

/// The record of a usage adjustment.
pub fn adjustment_record(seq: i64, a: &UsageAdjustment) -> Vec<String> {
    vec![
        seq.to_string(),
        crate::billing::reference::KIND_ADJUSTMENT.into(),
        a.tenant_id.clone(),
        a.gpu_sku.clone(),
        a.project.clone(),
        String::new(),
        instant(a.hour),
        date(berlin_date(a.hour)),
        number(a.gpu_seconds_delta, 6),
    ]
}

/// The invoice's record and its lines' records.
pub fn invoice_records(seq: i64, d: &InvoiceDoc) -> (Vec<String>, Vec<Vec<String>>) {
    let head = vec![
        d.number.clone(),
        seq.to_string(),
        d.type_code.to_string(),
        d.tenant_id.clone(),
        d.buyer.vat_id.clone().unwrap_or_default(),
        d.period.to_string(),
        date(d.issue_date),
        date(d.due_date),
        d.vat.category.clone(),
        d.currency.clone(),
        number(d.net_total.amount(), 2),
        number(d.vat_total.amount(), 2),
        number(d.gross_total.amount(), 2),
        number((d.sign() * d.net_total).amount(), 2),
        d.corrects.as_ref().map(|c| c.number.clone()).unwrap_or_default(),
    ];
    let lines = d
        .lines
        .iter()
        .map(|l| {
            vec![
                d.number.clone(),
                l.line_no.to_string(),
                l.period.to_string(),
                l.late.to_string(),
                serde_json::to_value(l.charge.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                l.charge.sku.clone(),
                l.description.clone(),
                number(l.gpu_seconds, 6),
                number(l.quantity, 6),
                l.unit.clone(),
                number(l.unit_price.value(), 4),
                number(l.net.amount(), 2),
            ]
        })
        .collect();
    (head, lines)
}

/// The bookings of a budget event: one per allocation, order, supplier invoice and asset, one per
/// move of a reallocation; none for master data, forecasts and the journal's hand-over.
pub fn budget_booking_records(seq: i64, e: &BudgetEvent) -> Vec<Vec<String>> {
    let rec = |line: usize, reference: &str, cc: &str, wbs: &str, category: &str, amount: Decimal, day: NaiveDate| {
        vec![
            seq.to_string(),
            (line + 1).to_string(),
            e.kind().to_string(),
            reference.to_string(),
            cc.to_string(),
            wbs.to_string(),
            category.to_string(),
            number(amount, 2),
            date(day),
        ]
    };
    match e {
        BudgetEvent::Allocated(a) => {
            vec![rec(0, &a.approved_by, &a.cost_center, &a.wbs, a.category.as_str(), a.amount, a.date)]
        }
        BudgetEvent::Reallocated(r) => r
            .moves
            .iter()
            .enumerate()
            .map(|(i, m)| rec(i, &r.reallocation_id, &m.cost_center, &m.wbs, m.category.as_str(), m.amount, r.date))
            .collect(),
        BudgetEvent::PurchaseOrder(p) => {
            vec![rec(0, &p.po_number, &p.cost_center, &p.wbs, p.category.as_str(), p.amount, p.date)]
        }
        BudgetEvent::Cost(c) => {
            vec![rec(0, &c.document, &c.cost_center, &c.wbs, c.category.as_str(), c.amount, c.date)]
        }
        BudgetEvent::Asset(a) => vec![rec(0, &a.asset_id, &a.cost_center, &a.wbs, "", a.cost, a.in_service)],
        _ => Vec::new(),
    }
}

/// The records of a handed-over period's journal.
pub fn journal_records(period: crate::billing::Period, lines: &[JournalLine]) -> Vec<Vec<String>> {
    lines
        .iter()
        .map(|l| {
            // cells: company code, type, document date, posting date, reference, line, then the rest.
            let mut c = cells(l).to_vec();
            c[2] = date(l.document_date);
            c[3] = date(l.posting_date);
            c[10] = number(l.amount, 2);
            let rest = c.split_off(4);
            let mut rec = vec![period.to_string(), rest[0].clone(), rest[1].clone()];
            rec.extend(c);
            rec.extend(rest[2..].iter().cloned());
            rec
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_use_the_declared_decimal_comma_and_dates_the_declared_format() {
        assert_eq!(number(Decimal::new(-123456, 2), 2), "-1234,56");
        assert_eq!(number(Decimal::from(7), 2), "7,00");
        assert_eq!(number(Decimal::new(15, 1), 6), "1,500000");
        assert_eq!(date(NaiveDate::from_ymd_opt(2026, 8, 31).unwrap()), "31.08.2026");
        for cols in [USAGE_COLUMNS, INVOICE_COLUMNS, INVOICE_LINE_COLUMNS, BUDGET_BOOKING_COLUMNS, JOURNAL_LINE_COLUMNS]
        {
            assert!(cols.iter().any(|c| matches!(c.1, ColumnType::Decimal(_))), "typed amounts");
        }
        assert_eq!(JOURNAL_LINE_COLUMNS.len(), 1 + crate::budget::sap::COLUMNS.len());
    }
}
