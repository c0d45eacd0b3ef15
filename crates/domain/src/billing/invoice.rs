//! Invoices and credit notes as documents: every line and total, the seller and the buyer as they
//! were at issue. A document is built once, at issue, and stored as an `invoice.issued` event; it
//! never changes. Its canonical JSON (keys sorted, decimals as strings) is the invoice.

use super::dec;
use super::period::Period;
use super::rating::{LineKey, LineKind};
use super::reference::{BillingProfile, Seller, VatTreatment};
use crate::gpu_hours::GpuHours;
use crate::money::{Money, UnitPrice};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub const KIND_INVOICE: &str = "invoice.issued";
pub const INVOICE_VERSION: i16 = 1;
pub const TYPE_INVOICE: u16 = 380;
pub const TYPE_CREDIT_NOTE: u16 = 381;

/// The invoice a credit note corrects (BT-25, BT-26).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceRef {
    pub number: String,
    pub issue_date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceLine {
    pub line_no: u32,
    /// The period the usage belongs to: the invoice's period, or an earlier one for late usage.
    pub period: Period,
    pub late: bool,
    pub charge: LineKey,
    pub description: String,
    /// Signed GPU-seconds this line bills (credited, on a credit note).
    #[serde(with = "dec")]
    pub gpu_seconds: Decimal,
    /// GPU-hours (6 decimals) for time lines; ±1 for a discount.
    #[serde(with = "dec")]
    pub quantity: Decimal,
    /// UN/ECE rec 20: HUR (hour) or C62 (one).
    pub unit: String,
    /// EUR per GPU-hour (HUR), or the discount's amount per one (C62); four digits.
    pub unit_price: UnitPrice,
    /// Net amount in EUR, rounded half away from zero to cents.
    pub net: Money,
    /// The published price list's figures for this line (FOCUS list price and cost), recorded
    /// for the lines of a document's own period; `None` on late lines and credit notes (FOCUS
    /// corrections) and on documents issued before it was recorded, which keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<ListPrice>,
}

/// What a line's GPU-hours cost at the published price list: `cost` rounded once to cents, and
/// `unit_price` the exact average EUR per GPU-hour (6 decimals), one tier's price when a single
/// tier and price list applied. For a minimum top-up (no GPU used) the committed rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPrice {
    #[serde(with = "dec")]
    pub unit_price: Decimal,
    pub cost: Money,
}

impl ListPrice {
    /// From a rated line's exact list numerator; `None` for a line with no GPU-seconds or no list
    /// figure (a discount).
    pub fn of(r: &super::rating::Rated) -> Option<ListPrice> {
        if r.gpu_seconds.is_zero() || r.list_numerator.is_zero() {
            return None;
        }
        let unit_price = dec::fixed(r.list_numerator / r.gpu_seconds, 6).normalize();
        Some(ListPrice { unit_price: dec::fixed(unit_price, unit_price.scale().max(2)), cost: r.list_net() })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VatBreakdown {
    pub category: String,
    #[serde(with = "dec::option")]
    pub rate: Option<Decimal>,
    pub taxable: Money,
    pub tax: Money,
    pub exemption_reason: Option<String>,
    pub exemption_code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceDoc {
    pub number: String,
    pub series: String,
    pub type_code: u16,
    pub tenant_id: String,
    pub period: Period,
    pub issued_at: DateTime<Utc>,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
    pub currency: String,
    pub seller: Seller,
    pub buyer: BillingProfile,
    /// The event id of the billing profile version used.
    pub buyer_profile_event: Uuid,
    pub vat_treatment: VatTreatment,
    pub corrects: Option<InvoiceRef>,
    pub lines: Vec<InvoiceLine>,
    pub vat: VatBreakdown,
    pub net_total: Money,
    pub vat_total: Money,
    pub gross_total: Money,
    pub notes: Vec<String>,
    /// The `period.closed` event that issued this document.
    pub close_event_id: Uuid,
}

impl InvoiceDoc {
    /// The canonical JSON value (the ledger payload).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("documents serialize")
    }

    /// The canonical bytes: what "byte-identical" compares.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_json()).expect("documents serialize")
    }

    pub fn from_json(v: &serde_json::Value) -> Result<InvoiceDoc, String> {
        serde_json::from_value(v.clone()).map_err(|e| format!("not an invoice document: {e}"))
    }

    pub fn is_credit_note(&self) -> bool {
        self.type_code == TYPE_CREDIT_NOTE
    }

    /// +1 for an invoice, −1 for a credit note: how the document's lines count towards what was billed.
    pub fn sign(&self) -> Decimal {
        if self.is_credit_note() {
            Decimal::NEGATIVE_ONE
        } else {
            Decimal::ONE
        }
    }
}

/// The SKU, and a MIG slice's profile (`nvidia-h200 MIG 1g.18gb`), with the line's GPU-hours.
fn sku_words(key: &LineKey) -> String {
    let what = match &key.mig_profile {
        Some(m) => format!("{} MIG {m}", key.sku),
        None => key.sku.clone(),
    };
    match &key.project {
        Some(p) => format!("{what} GPU-hours, project {p}"),
        None => format!("{what} GPU-hours"),
    }
}

/// A line's words, as a person reads them on the invoice.
pub fn describe(key: &LineKey) -> String {
    let contract = key.contract_id.as_deref().unwrap_or("");
    match key.kind {
        LineKind::Usage => format!("{}, list price tier {} at {} EUR", sku_words(key), key.tier, key.unit_price),
        LineKind::Commitment => format!("{}, committed (contract {contract})", sku_words(key)),
        LineKind::Overage => format!("{}, overage beyond commitment (contract {contract})", sku_words(key)),
        LineKind::MinimumTopUp => {
            format!("{} minimum charge: unused committed GPU-hours (contract {contract})", key.sku)
        }
        LineKind::Discount => format!("{} discount {}% (contract {contract})", key.sku, key.unit_price.normalize()),
    }
}

/// A document line from a charge's GPU-seconds and net amount (both signed as billed).
pub fn make_line(
    line_no: u32,
    period: Period,
    late: bool,
    prefix: &str,
    key: &LineKey,
    secs: Decimal,
    net: Money,
) -> InvoiceLine {
    let (quantity, unit, unit_price) = if key.kind == LineKind::Discount {
        let q = if net.is_negative() { Decimal::NEGATIVE_ONE } else { Decimal::ONE };
        (q, "C62", net.abs().amount())
    } else {
        (GpuHours::billed(secs).value(), "HUR", key.unit_price)
    };
    InvoiceLine {
        line_no,
        period,
        late,
        charge: key.clone(),
        description: format!("{prefix}{}", describe(key)),
        gpu_seconds: secs.normalize(),
        quantity,
        unit: unit.to_string(),
        unit_price: UnitPrice::new(unit_price).on_document(),
        net: net.round_cents(),
        list: None,
    }
}

/// VAT per category on the sum of line nets (EN 16931 BR-CO-17), and the document totals.
pub fn totals(treatment: VatTreatment, lines: &[InvoiceLine]) -> (VatBreakdown, Money, Money, Money) {
    let net_total = lines.iter().map(|l| l.net).sum::<Money>().round_cents();
    let tax = match treatment.rate() {
        Some(rate) => net_total.percent(rate).round_cents(),
        None => Money::ZERO.round_cents(),
    };
    let exemption = treatment.exemption();
    let vat = VatBreakdown {
        category: treatment.category().to_string(),
        rate: treatment.rate().map(|r| dec::fixed(r, 2)),
        taxable: net_total,
        tax,
        exemption_reason: exemption.map(|e| e.0.to_string()),
        exemption_code: exemption.map(|e| e.1.to_string()),
    };
    (vat, net_total, tax, (net_total + tax).round_cents())
}

/// The GPU-seconds and nets a set of documents billed, per line, for one tenant and period.
pub fn billed_lines<'a>(
    docs: impl Iterator<Item = &'a InvoiceDoc>,
    tenant_id: &str,
    period: Period,
) -> std::collections::BTreeMap<LineKey, (Decimal, Money)> {
    let mut out = std::collections::BTreeMap::<LineKey, (Decimal, Money)>::new();
    for d in docs.filter(|d| d.tenant_id == tenant_id) {
        for l in d.lines.iter().filter(|l| l.period == period) {
            let e = out.entry(l.charge.clone()).or_default();
            e.0 += d.sign() * l.gpu_seconds;
            e.1 += d.sign() * l.net;
        }
    }
    out
}
