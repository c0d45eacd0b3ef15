//! The journal for SAP S/4HANA: a CSV of journal-entry lines for one period — revenue per invoice
//! and credit note issued by the period's close (the customer's receivable, revenue per VAT
//! category with its tax code, split by the allocation key per cost / profit centre, output VAT)
//! and the month's straight-line depreciation of the assets. Every document balances (debits
//! equal credits) and every field keeps within SAP's length for it (`FIELD_LIMITS`).
//! Columns: docs/sap-export.md.

use super::events::{err, BudgetError, GlRole};
use super::report::{depreciation_of_month, split_by_shares};
use super::sap_master::{DepreciationAssignment, DepreciationSource};
use super::state::BudgetState;
use crate::billing::dec::cents;
use crate::billing::invoice::InvoiceDoc;
use crate::billing::Period;
use chrono::NaiveDate;
use rust_decimal::Decimal;

/// Every column with the most characters SAP takes in the field it goes to (ABAP Dictionary
/// lengths of the accounting document, as `BAPI_ACC_DOCUMENT_POST` and the journal-entry upload
/// take them; sources in docs/sap-export.md).
pub const FIELD_LIMITS: &[(&str, usize)] = &[
    ("company_code", 4),   // BUKRS
    ("document_type", 2),  // BLART
    ("document_date", 8),  // BLDAT, YYYYMMDD
    ("posting_date", 8),   // BUDAT, YYYYMMDD
    ("reference", 16),     // XBLNR (BAPIACHE09-REF_DOC_NO)
    ("line_item", 3),      // BUZEI: at most 999 lines per document
    ("account_type", 1),   // KOART: S G/L account, D customer
    ("gl_account", 10),    // HKONT
    ("customer", 10),      // KUNNR
    ("debit_credit", 1),   // SHKZG
    ("amount", 24),        // WRBTR, CURR 23 digits and the decimal point
    ("currency", 5),       // WAERS
    ("tax_code", 2),       // MWSKZ
    ("cost_center", 10),   // KOSTL
    ("profit_center", 10), // PRCTR
    ("wbs_element", 24),   // PS_POSID
    ("text", 50),          // SGTXT
];

pub const COLUMNS: [&str; 17] = {
    let mut c = [""; 17];
    let mut i = 0;
    while i < 17 {
        c[i] = FIELD_LIMITS[i].0;
        i += 1;
    }
    c
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalLine {
    pub company_code: String,
    /// DR customer invoice, DG customer credit memo, AF depreciation.
    pub document_type: &'static str,
    pub document_date: NaiveDate,
    pub posting_date: NaiveDate,
    pub reference: String,
    pub line_item: u32,
    /// S a G/L account line, D a customer line (SAP takes the reconciliation account from the
    /// customer's master record).
    pub account_type: char,
    pub gl_account: String,
    pub customer: String,
    /// S (Soll, debit) or H (Haben, credit).
    pub debit_credit: char,
    /// Positive, in cents.
    pub amount: Decimal,
    pub currency: &'static str,
    pub tax_code: String,
    pub cost_center: String,
    pub profit_center: String,
    pub wbs_element: String,
    pub text: String,
    /// Revenue posting (for the checks), not a column.
    pub revenue: bool,
}

/// Where a line posts and what it carries besides the amount.
#[derive(Default)]
struct Posting<'a> {
    gl_account: &'a str,
    customer: &'a str,
    tax_code: &'a str,
    cost_center: &'a str,
    profit_center: &'a str,
    wbs: &'a str,
    text: &'a str,
    revenue: bool,
}

struct Doc<'a> {
    lines: &'a mut Vec<JournalLine>,
    company_code: &'a str,
    document_type: &'static str,
    document_date: NaiveDate,
    posting_date: NaiveDate,
    reference: String,
    next: u32,
}

impl Doc<'_> {
    /// Posts a signed amount on the debit side (negative: credit).
    fn post(&mut self, debit: Decimal, p: Posting<'_>) {
        let amount = cents(debit);
        if amount.is_zero() {
            return;
        }
        self.next += 1;
        self.lines.push(JournalLine {
            company_code: self.company_code.to_string(),
            document_type: self.document_type,
            document_date: self.document_date,
            posting_date: self.posting_date,
            reference: self.reference.clone(),
            line_item: self.next,
            account_type: if p.customer.is_empty() { 'S' } else { 'D' },
            gl_account: p.gl_account.to_string(),
            customer: p.customer.to_string(),
            debit_credit: if amount.is_sign_negative() { 'H' } else { 'S' },
            amount: amount.abs(),
            currency: "EUR",
            tax_code: p.tax_code.to_string(),
            cost_center: p.cost_center.to_string(),
            profit_center: p.profit_center.to_string(),
            wbs_element: p.wbs.to_string(),
            text: clip(p.text, 50),
            revenue: p.revenue,
        });
    }
}

/// The first `max` characters: item texts are descriptive, SAP keeps 50 of them.
fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// The journal of `period`: `docs` are the documents issued by that period's close. Refused when
/// master data is missing (a G/L role, a tax code for a category, a tenant's customer account, an
/// allocation key) or when a field would exceed SAP's length for it.
pub fn journal(state: &BudgetState, docs: &[InvoiceDoc], period: Period) -> Result<Vec<JournalLine>, BudgetError> {
    let programme = state.programme.as_ref().ok_or_else(|| err("programme", "no programme.set"))?;
    let posting_date = period.last_day();
    let mut lines = Vec::new();
    for d in docs {
        revenue_document(state, &programme.company_code, d, posting_date, &mut lines)?;
    }
    depreciation_document(state, &programme.company_code, period, &mut lines)?;
    check_lengths(&lines)?;
    Ok(lines)
}

fn gl(state: &BudgetState, role: GlRole) -> Result<&str, BudgetError> {
    state
        .gl
        .get(&role)
        .map(|g| g.account.as_str())
        .ok_or_else(|| err("gl_account", format!("no G/L account for {role:?}")))
}

/// One invoice or credit note: the customer's receivable (gross), revenue (net, on the category's
/// account with its tax code, per cost centre of the key) and output VAT (with the tax code).
fn revenue_document(
    state: &BudgetState,
    company_code: &str,
    d: &InvoiceDoc,
    posting_date: NaiveDate,
    lines: &mut Vec<JournalLine>,
) -> Result<(), BudgetError> {
    let key = state
        .key_for(d.period)
        .ok_or_else(|| err("allocation_key", format!("no allocation key in force for {} ({})", d.period, d.number)))?;
    let category = d.vat.category.as_str();
    let tax = state
        .tax_codes
        .get(category)
        .ok_or_else(|| err("tax_code", format!("no tax_code.set for VAT category {category} ({})", d.number)))?;
    let customer = state
        .customers
        .get(&d.tenant_id)
        .ok_or_else(|| err("customer", format!("no customer.set for tenant {} ({})", d.tenant_id, d.number)))?;
    let vat_account = gl(state, GlRole::VatPayable)?;
    let sign = d.sign();
    let mut doc = Doc {
        lines,
        company_code,
        document_type: if d.is_credit_note() { "DG" } else { "DR" },
        document_date: d.issue_date,
        posting_date,
        reference: d.number.clone(),
        next: 0,
    };
    let kind = if d.is_credit_note() { "credit note" } else { "invoice" };
    let text = format!("{} {} {}", d.tenant_id, d.period, kind);
    doc.post(
        (sign * d.gross_total).amount(),
        Posting { customer: &customer.customer, text: &text, ..Posting::default() },
    );
    let shares: Vec<(String, Decimal)> = key.shares.iter().map(|s| (s.cost_center.clone(), s.percent)).collect();
    let text = format!("revenue {} {} ({})", category, d.tenant_id, key.key_id);
    for (cc, part) in split_by_shares((sign * d.net_total).amount(), &shares) {
        let c = &state.cost_centers[&cc];
        doc.post(
            -part,
            Posting {
                gl_account: &tax.revenue_account,
                tax_code: &tax.tax_code,
                cost_center: &c.sap_cost_center,
                profit_center: &c.profit_center,
                text: &text,
                revenue: true,
                ..Posting::default()
            },
        );
    }
    let text = format!("output VAT {} {}", category, d.tenant_id);
    doc.post(
        -(sign * d.vat_total).amount(),
        Posting { gl_account: vat_account, tax_code: &tax.tax_code, text: &text, ..Posting::default() },
    );
    Ok(())
}

/// The month's depreciation: one document for the period (reference `AFA-YYYY-MM`, within SAP's
/// 16 characters whatever the asset ids), an expense and an accumulated-depreciation line per
/// asset, each naming the asset in its text. The expense line carries one account assignment, the
/// cost centre or the WBS element (`depreciation_posting.set`); none at all when SAP Asset
/// Accounting computes depreciation itself.
fn depreciation_document(
    state: &BudgetState,
    company_code: &str,
    period: Period,
    lines: &mut Vec<JournalLine>,
) -> Result<(), BudgetError> {
    if state.depreciation.computed_by == DepreciationSource::SapAssetAccounting {
        return Ok(());
    }
    let by_wbs = state.depreciation.assignment == DepreciationAssignment::WbsElement;
    let posting_date = period.last_day();
    let mut doc = Doc {
        lines,
        company_code,
        document_type: "AF",
        document_date: posting_date,
        posting_date,
        reference: format!("AFA-{period}"),
        next: 0,
    };
    for a in state.assets.values() {
        let amount = depreciation_of_month(a, period);
        if amount.is_zero() {
            continue;
        }
        let (dep_exp, dep_acc) = (gl(state, GlRole::DepreciationExpense)?, gl(state, GlRole::AccumulatedDepreciation)?);
        let c = state
            .cost_centers
            .get(&a.cost_center)
            .ok_or_else(|| err("cost_center", format!("unknown {}", a.cost_center)))?;
        let text = format!("depreciation {} {}", a.asset_id, period);
        doc.post(
            amount,
            match by_wbs {
                true => Posting { gl_account: dep_exp, wbs: &a.wbs, text: &text, ..Posting::default() },
                false => Posting {
                    gl_account: dep_exp,
                    cost_center: &c.sap_cost_center,
                    profit_center: &c.profit_center,
                    text: &text,
                    ..Posting::default()
                },
            },
        );
        doc.post(-amount, Posting { gl_account: dep_acc, text: &text, ..Posting::default() });
    }
    Ok(())
}

/// The cells of a line as written, in `COLUMNS` order.
pub fn cells(l: &JournalLine) -> [String; 17] {
    let esc = crate::billing::export::escape_cell;
    [
        l.company_code.clone(),
        l.document_type.to_string(),
        l.document_date.format("%Y%m%d").to_string(),
        l.posting_date.format("%Y%m%d").to_string(),
        l.reference.clone(),
        l.line_item.to_string(),
        l.account_type.to_string(),
        l.gl_account.clone(),
        l.customer.clone(),
        l.debit_credit.to_string(),
        l.amount.to_string(),
        l.currency.to_string(),
        l.tax_code.clone(),
        l.cost_center.clone(),
        l.profit_center.clone(),
        l.wbs_element.clone(),
        clip(&esc(&l.text), 50),
    ]
}

/// Refuses a journal with a cell longer than SAP's field (e.g. an invoice number series whose
/// prefix makes numbers longer than the 16 characters of the reference).
fn check_lengths(lines: &[JournalLine]) -> Result<(), BudgetError> {
    for l in lines {
        for (cell, (column, max)) in cells(l).iter().zip(FIELD_LIMITS) {
            let n = cell.chars().count();
            if n > *max {
                return Err(err(
                    column,
                    format!("{cell:?} ({}, line {}) has {n} characters; SAP takes {max}", l.reference, l.line_item),
                ));
            }
        }
    }
    Ok(())
}

/// The journal as CSV (semicolon-separated, as SAP's upload templates expect; dates YYYYMMDD,
/// amounts with a decimal point).
pub fn journal_csv(lines: &[JournalLine]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new().delimiter(b';').terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    w.write_record(COLUMNS).expect("memory");
    for l in lines {
        w.write_record(cells(l)).expect("memory");
    }
    w.into_inner().expect("memory")
}

/// Debits minus credits per reference document (all zero in a balanced journal).
pub fn imbalances(lines: &[JournalLine]) -> std::collections::BTreeMap<String, Decimal> {
    let mut out = std::collections::BTreeMap::<String, Decimal>::new();
    for l in lines {
        let signed = if l.debit_credit == 'S' { l.amount } else { -l.amount };
        *out.entry(l.reference.clone()).or_default() += signed;
    }
    out.retain(|_, v| !v.is_zero());
    out
}

/// Revenue credited minus debited (the net revenue the journal books).
pub fn revenue_total(lines: &[JournalLine]) -> Decimal {
    lines.iter().filter(|l| l.revenue).map(|l| if l.debit_credit == 'H' { l.amount } else { -l.amount }).sum()
}
