//! The journal for SAP S/4HANA: a CSV of journal-entry lines for one period — revenue per invoice
//! and credit note issued by the period's close (receivable, revenue split by the allocation key
//! per cost / profit centre, output VAT) and the month's straight-line depreciation per asset.
//! Every document balances (debits equal credits). Columns: docs/sap-export.md.

use super::events::{err, BudgetError, GlRole};
use super::report::{depreciation_of_month, split_by_shares};
use super::state::BudgetState;
use crate::billing::dec::cents;
use crate::billing::invoice::InvoiceDoc;
use crate::billing::Period;
use chrono::NaiveDate;
use rust_decimal::Decimal;

pub const COLUMNS: &[&str] = &[
    "company_code",
    "document_type",
    "document_date",
    "posting_date",
    "reference",
    "line_item",
    "gl_account",
    "debit_credit",
    "amount",
    "currency",
    "cost_center",
    "profit_center",
    "wbs_element",
    "text",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalLine {
    pub company_code: String,
    /// DR customer invoice, DG customer credit memo, AF depreciation.
    pub document_type: &'static str,
    pub document_date: NaiveDate,
    pub posting_date: NaiveDate,
    pub reference: String,
    pub line_item: u32,
    pub gl_account: String,
    /// S (Soll, debit) or H (Haben, credit).
    pub debit_credit: char,
    /// Positive, in cents.
    pub amount: Decimal,
    pub currency: &'static str,
    pub cost_center: String,
    pub profit_center: String,
    pub wbs_element: String,
    pub text: String,
    /// Revenue posting (for the checks), not a column.
    pub revenue: bool,
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
    #[allow(clippy::too_many_arguments)]
    fn post(&mut self, account: &str, debit: Decimal, cc: &str, pc: &str, wbs: &str, text: &str, revenue: bool) {
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
            gl_account: account.to_string(),
            debit_credit: if amount.is_sign_negative() { 'H' } else { 'S' },
            amount: amount.abs(),
            currency: "EUR",
            cost_center: cc.to_string(),
            profit_center: pc.to_string(),
            wbs_element: wbs.to_string(),
            text: text.to_string(),
            revenue,
        });
    }
}

/// The journal of `period`: `docs` are the documents issued by that period's close.
pub fn journal(state: &BudgetState, docs: &[InvoiceDoc], period: Period) -> Result<Vec<JournalLine>, BudgetError> {
    let programme = state.programme.as_ref().ok_or_else(|| err("programme", "no programme.set"))?;
    let gl = |role: GlRole| {
        state
            .gl
            .get(&role)
            .map(|g| g.account.clone())
            .ok_or_else(|| err("gl_account", format!("no G/L account for {role:?}")))
    };
    let (receivable, revenue, vat, dep_exp, dep_acc) = (
        gl(GlRole::Receivable)?,
        gl(GlRole::Revenue)?,
        gl(GlRole::VatPayable)?,
        gl(GlRole::DepreciationExpense)?,
        gl(GlRole::AccumulatedDepreciation)?,
    );
    let posting_date = period.last_day();
    let mut lines = Vec::new();
    for d in docs {
        let key = state.key_for(d.period).ok_or_else(|| {
            err("allocation_key", format!("no allocation key in force for {} ({})", d.period, d.number))
        })?;
        let sign = d.sign();
        let mut doc = Doc {
            lines: &mut lines,
            company_code: &programme.company_code,
            document_type: if d.is_credit_note() { "DG" } else { "DR" },
            document_date: d.issue_date,
            posting_date,
            reference: d.number.clone(),
            next: 0,
        };
        let text =
            format!("{} {} {}", d.tenant_id, d.period, if d.is_credit_note() { "credit note" } else { "invoice" });
        doc.post(&receivable, (sign * d.gross_total).amount(), "", "", "", &text, false);
        let shares: Vec<(String, Decimal)> = key.shares.iter().map(|s| (s.cost_center.clone(), s.percent)).collect();
        for (cc, part) in split_by_shares((sign * d.net_total).amount(), &shares) {
            let c = &state.cost_centers[&cc];
            doc.post(
                &revenue,
                -part,
                &c.sap_cost_center,
                &c.profit_center,
                "",
                &format!("revenue {} ({})", d.tenant_id, key.key_id),
                true,
            );
        }
        doc.post(
            &vat,
            -(sign * d.vat_total).amount(),
            "",
            "",
            "",
            &format!("output VAT {} {}", d.vat.category, d.tenant_id),
            false,
        );
    }
    for a in state.assets.values() {
        let amount = depreciation_of_month(a, period);
        if amount.is_zero() {
            continue;
        }
        let c = state
            .cost_centers
            .get(&a.cost_center)
            .ok_or_else(|| err("cost_center", format!("unknown {}", a.cost_center)))?;
        let mut doc = Doc {
            lines: &mut lines,
            company_code: &programme.company_code,
            document_type: "AF",
            document_date: posting_date,
            posting_date,
            reference: format!("{}/{}", a.asset_id, period),
            next: 0,
        };
        let text = format!("depreciation {} {}", a.asset_id, period);
        doc.post(&dep_exp, amount, &c.sap_cost_center, &c.profit_center, &a.wbs, &text, false);
        doc.post(&dep_acc, -amount, "", "", "", &text, false);
    }
    Ok(lines)
}

/// The journal as CSV (semicolon-separated, as SAP's upload templates expect; dates YYYYMMDD,
/// amounts with a decimal point).
pub fn journal_csv(lines: &[JournalLine]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new().delimiter(b';').terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    w.write_record(COLUMNS).expect("memory");
    let esc = crate::billing::export::escape_cell;
    for l in lines {
        w.write_record([
            l.company_code.clone(),
            l.document_type.to_string(),
            l.document_date.format("%Y%m%d").to_string(),
            l.posting_date.format("%Y%m%d").to_string(),
            esc(&l.reference),
            l.line_item.to_string(),
            l.gl_account.clone(),
            l.debit_credit.to_string(),
            l.amount.to_string(),
            l.currency.to_string(),
            l.cost_center.clone(),
            l.profit_center.clone(),
            esc(&l.wbs_element),
            esc(&l.text),
        ])
        .expect("memory");
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
