//! The rows of a FOCUS CSV: the columns a document's rows share, a line's row, the tax row.

use super::fold::Fold;
use super::{header, COMMITMENT_TYPE, CUSTOM_COLUMNS, FOCUS_COLUMNS, GPU_HOURS, REGION_ID, REGION_NAME};
use super::{SERVICE_CATEGORY, SERVICE_NAME, SERVICE_SUBCATEGORY, TAX_SERVICE_NAME};
use crate::billing::export::escape_cell;
use crate::billing::invoice::{InvoiceDoc, InvoiceLine};
use crate::billing::period::Period;
use crate::billing::rating::LineKind;
use crate::money::Money;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// One CSV row under construction: every cell null until set.
pub(super) struct Row(pub(super) Vec<String>);

impl Row {
    fn new() -> Row {
        Row(vec![String::new(); FOCUS_COLUMNS.len() + CUSTOM_COLUMNS.len()])
    }

    fn set(&mut self, column: &str, value: impl Into<String>) {
        let i = header().position(|c| c == column).unwrap_or_else(|| panic!("{column} is not a column"));
        self.0[i] = value.into();
    }

    /// Text from outside: escaped against CSV injection.
    fn text(&mut self, column: &str, value: &str) {
        self.set(column, escape_cell(value));
    }

    fn number(&mut self, column: &str, value: Decimal) {
        self.set(column, value.to_string());
    }
}

pub(super) fn instant(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `d` as it counts towards what was billed: negated on a credit note, never a negative zero.
fn signed(credit: bool, d: Decimal) -> Decimal {
    let mut r = if credit { -d } else { d };
    if r.is_zero() {
        r.set_sign_positive(true);
    }
    r
}

fn kind_name(kind: LineKind) -> String {
    serde_json::to_value(kind).expect("kind").as_str().unwrap_or_default().to_string()
}

/// The columns every row of a document shares.
fn common(doc: &InvoiceDoc, billing_period: Period) -> Row {
    let mut r = Row::new();
    r.text("BillingAccountId", &doc.tenant_id);
    r.text("BillingAccountName", &doc.buyer.legal_name);
    r.text("BillingCurrency", &doc.currency);
    r.set("BillingPeriodStart", instant(billing_period.start()));
    r.set("BillingPeriodEnd", instant(billing_period.end()));
    r.text("InvoiceIssuerName", &doc.seller.legal_name);
    r.text("ProviderName", &doc.seller.legal_name);
    r.text("PublisherName", &doc.seller.legal_name);
    r.text("InvoiceId", &doc.number);
    r.set("x_DocumentType", doc.type_code.to_string());
    r.set("x_TaxCategory", escape_cell(&doc.vat.category));
    if let Some(rate) = doc.vat.rate {
        r.number("x_TaxRate", rate);
    }
    if let Some(c) = &doc.corrects {
        r.text("x_CorrectedInvoiceId", &c.number);
    }
    r
}

/// The commitment-discount columns of a contract's commitment line ("Used") or minimum top-up
/// ("Unused"); other rows have none (an overage is outside the commitment, FOCUS's scenario of
/// usage beyond a commitment).
fn commitment_columns(r: &mut Row, line: &InvoiceLine, hours: Decimal) {
    let status = match line.charge.kind {
        LineKind::Commitment => "Used",
        LineKind::MinimumTopUp => "Unused",
        _ => return,
    };
    let Some(id) = &line.charge.contract_id else { return };
    r.text("CommitmentDiscountId", id);
    r.text("CommitmentDiscountName", &format!("Contract {id}: committed GPU-hours of {}", line.charge.sku));
    r.set("CommitmentDiscountCategory", "Usage");
    r.set("CommitmentDiscountType", COMMITMENT_TYPE);
    r.set("CommitmentDiscountStatus", status);
    r.number("CommitmentDiscountQuantity", hours);
    r.set("CommitmentDiscountUnit", GPU_HOURS);
}

/// A line's row; its `BilledCost` (with any folded discount) and `ListCost`, as they count.
pub(super) fn line_row(doc: &InvoiceDoc, line: &InvoiceLine, billing_period: Period, fold: Fold) -> (Row, Decimal) {
    let credit = doc.is_credit_note();
    let correction = credit || line.late;
    let key = &line.charge;
    let mut r = common(doc, billing_period);
    let net = signed(credit, (line.net + fold.share).amount());
    for cost in ["BilledCost", "EffectiveCost", "ContractedCost"] {
        r.number(cost, net);
    }
    // The list cost from the published price list, recorded at issue; a correction's, and a line
    // issued before it was recorded, is its billed cost (FOCUS: discrepancies may exist for
    // corrections; a row without a list unit price has its billed cost as list cost).
    let list = line.list.filter(|_| !correction);
    let list_cost = list.map_or(net, |l| signed(credit, l.cost.amount()));
    r.number("ListCost", list_cost);
    // Everything is GPU time consumed, or its price: FOCUS "Usage" (a discount correction
    // corrects the price of usage). The unused part of a commitment is "Usage" too, marked
    // "Unused" in the commitment columns.
    r.set("ChargeCategory", "Usage");
    r.set("ChargeFrequency", "Usage-Based");
    if correction {
        r.set("ChargeClass", "Correction");
    }
    let mut description = line.description.clone();
    if let (Some(p), false) = (fold.percent, fold.share.is_zero()) {
        description.push_str(&format!(", less the contract's {} % discount ({} EUR)", p.normalize(), fold.share));
    }
    r.text("ChargeDescription", &description);
    r.set("ChargePeriodStart", instant(line.period.start()));
    r.set("ChargePeriodEnd", instant(line.period.end()));
    r.set("ServiceCategory", SERVICE_CATEGORY);
    r.set("ServiceSubcategory", SERVICE_SUBCATEGORY);
    r.set("ServiceName", SERVICE_NAME);
    r.set("RegionId", REGION_ID);
    r.set("RegionName", REGION_NAME);
    if key.kind != LineKind::Discount {
        let hours = signed(credit, line.quantity);
        r.number("PricingQuantity", hours);
        r.set("PricingUnit", GPU_HOURS);
        if key.kind != LineKind::MinimumTopUp {
            r.number("ConsumedQuantity", hours);
            r.set("ConsumedUnit", GPU_HOURS);
        }
        // A list-price line's unit price is its tier's list price; a contract line's list price
        // is recorded with it (old documents: none).
        let list_unit = match (list, key.kind) {
            (Some(l), _) => Some(l.unit_price),
            (None, LineKind::Usage) => Some(line.unit_price.value()),
            (None, _) => None,
        };
        if let Some(u) = list_unit {
            r.number("ListUnitPrice", u);
        }
        let contracted = match fold.percent {
            Some(p) => (line.unit_price.value() * (Decimal::ONE_HUNDRED - p) / Decimal::ONE_HUNDRED).normalize(),
            None => line.unit_price.value(),
        };
        r.number("ContractedUnitPrice", contracted);
        let category = match key.kind {
            LineKind::Commitment | LineKind::MinimumTopUp => "Committed",
            _ => "Standard",
        };
        r.set("PricingCategory", category);
        r.text("SkuId", &key.sku);
        let sku = match &key.mig_profile {
            Some(m) => format!("{}/{m}", key.sku),
            None => key.sku.clone(),
        };
        r.text("SkuPriceId", &format!("{sku}:{}:{}:{}", kind_name(key.kind), key.tier, key.unit_price));
        commitment_columns(&mut r, line, hours);
    }
    if let Some(p) = &key.project {
        r.text("SubAccountId", p);
        r.text("SubAccountName", p);
    }
    r.set("x_InvoiceLineNumber", line.line_no.to_string());
    r.set("x_UsagePeriod", line.period.to_string());
    r.set("x_LateUsage", line.late.to_string());
    if let Some(c) = &key.contract_id {
        r.text("x_ContractId", c);
    }
    r.set("x_ChargeKind", kind_name(key.kind));
    r.number("x_GpuSeconds", signed(credit, line.gpu_seconds));
    if let Some(m) = &key.mig_profile {
        r.text("x_MigProfile", m);
    }
    (r, list_cost)
}

/// The document's VAT row. Its list cost is the VAT rate on the rows' list costs (FOCUS: a
/// charge computed from other charges takes its list cost from theirs).
pub(super) fn tax_row(doc: &InvoiceDoc, billing_period: Period, list_base: Decimal) -> Row {
    let credit = doc.is_credit_note();
    let mut r = common(doc, billing_period);
    let vat = signed(credit, doc.vat_total.amount());
    for cost in ["BilledCost", "EffectiveCost", "ContractedCost"] {
        r.number(cost, vat);
    }
    let list_vat = Money::new(list_base).percent(doc.vat.rate.unwrap_or(Decimal::ZERO)).round_cents().amount();
    r.number("ListCost", signed(credit, list_vat));
    r.set("ChargeCategory", "Tax");
    if credit {
        r.set("ChargeClass", "Correction");
    }
    r.set("ChargeFrequency", "One-Time");
    let rate = match doc.vat.rate {
        Some(rate) => format!("rate {rate} %"),
        None => "no rate".to_string(),
    };
    let mut description = format!("Value added tax, category {}, {rate}", doc.vat.category);
    if let Some(reason) = &doc.vat.exemption_reason {
        description.push_str(": ");
        description.push_str(reason);
    }
    r.text("ChargeDescription", &description);
    r.set("ChargePeriodStart", instant(doc.period.start()));
    r.set("ChargePeriodEnd", instant(doc.period.end()));
    r.set("ServiceCategory", "Other");
    r.set("ServiceSubcategory", "Other (Other)");
    r.set("ServiceName", TAX_SERVICE_NAME);
    r
}
