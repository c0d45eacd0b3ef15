//! FOCUS 1.2 cost-and-usage CSV per tenant and month.
//!
//! One row per document line and one tax row per document, for the documents (invoices and
//! credit notes) issued for one tenant at the close of one billing period; the caller picks them.
//!
//! How our charges map onto FOCUS (checked against the FOCUS 1.2 columns and the "Discount
//! Handling" attribute and commitment-discount examples of the specification):
//!
//! - Every line is GPU time consumed or its price: `ChargeCategory` "Usage", "Usage-Based".
//!   A list-price line is `PricingCategory` "Standard" at its tier's price.
//! - A contract is a usage-based commitment discount (`CommitmentDiscountId` = contract id,
//!   category "Usage", unit GPU-hours, type [`COMMITMENT_TYPE`]). Its commitment lines are
//!   "Committed" usage with status "Used"; its minimum top-up (the unused part, take-or-pay) is the
//!   spec's "Unused" usage row: the unused GPU-hours as commitment and pricing quantity, nothing
//!   consumed. Overage is outside the commitment ("Standard", no commitment columns), as in the
//!   spec's example of usage beyond a commitment.
//! - A contract's percentage discount is a negotiated discount, which FOCUS applies to the rows it
//!   pertains to rather than negating it in a row of its own: the invoice's discount line is split
//!   over its contract's rows of that period to the cent ([`fold_discounts`]), so the rows of a
//!   document still add up to it; `ContractedUnitPrice` is the contract rate less the discount.
//! - `ListUnitPrice` and `ListCost` come from the published price list: the price-list amount of the
//!   line's GPU-hours, tier by tier, in force at each hour, as rating recorded it on the line
//!   (`InvoiceLine::list`); the unit price is the average where tiers or price lists changed within
//!   the line. The unused part of a commitment uses no GPU and has no list price of its own; its
//!   list price is the committed rate (as in the spec's SaaS example of a monthly unused fee).
//! - Late lines on an invoice and every line of a credit note are `Correction`s, charged in the
//!   period of the usage they correct. A credit note credits: its amounts and quantities are
//!   negated, so that the rows of all documents add up to what the tenant owes. A correction's list
//!   cost is its billed cost (FOCUS allows discrepancies on corrections), and a discount difference
//!   stays a row of its own (a correction of the usage's price, with no quantity).
//! - Each document has one `Tax` row of its VAT (0.00 for reverse charge and not taxable, so that
//!   every document has one), negated for a credit note. So per `InvoiceId` the `BilledCost`s add
//!   up to the document's gross total (negated for a credit note). Its list cost is the rate on the
//!   rows' list costs.
//! - `EffectiveCost` and `ContractedCost` are the billed cost (billed in arrears, nothing to
//!   amortize).
//! - Text from outside (names, descriptions, projects, ids) is escaped against CSV injection with
//!   [`escape_cell`]; figures are written as plain decimals (a negative amount stays a number).
//!   Null is an empty field. Date-times are UTC, `YYYY-MM-DDTHH:MM:SSZ`; the periods are Berlin
//!   calendar months, so they start at 22:00 or 23:00 UTC of the day before.

mod fold;
mod rows;
#[cfg(test)]
mod tests;

use super::invoice::InvoiceDoc;
use super::period::Period;
use fold::fold_discounts;
use rows::{line_row, tax_row};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// The FOCUS columns written: the 21 mandatory columns of FOCUS 1.2, then the recommended and
/// conditional ones that apply to us.
pub const FOCUS_COLUMNS: &[&str] = &[
    // Mandatory.
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
    // Recommended and conditional.
    "ChargeFrequency",
    "InvoiceId",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ListUnitPrice",
    "ContractedUnitPrice",
    "PricingCategory",
    "RegionId",
    "RegionName",
    "ServiceSubcategory",
    "SkuId",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    // Conditional: we support commitment discounts (contracts).
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountUnit",
];

/// Our own columns (FOCUS custom columns are prefixed `x_`), after all FOCUS columns.
pub const CUSTOM_COLUMNS: &[&str] = &[
    "x_InvoiceLineNumber",
    "x_DocumentType",
    "x_UsagePeriod",
    "x_LateUsage",
    "x_ContractId",
    "x_ChargeKind",
    "x_GpuSeconds",
    "x_TaxCategory",
    "x_TaxRate",
    "x_CorrectedInvoiceId",
    "x_MigProfile",
];

/// The unit of every time quantity (FOCUS units: a count of hours of a GPU).
pub const GPU_HOURS: &str = "GPU-Hours";
pub const SERVICE_NAME: &str = "GPU Compute";
pub const SERVICE_CATEGORY: &str = "Compute";
pub const SERVICE_SUBCATEGORY: &str = "Other (Compute)";
pub const REGION_ID: &str = "de-sovereign-1";
pub const REGION_NAME: &str = "Germany (sovereign)";
pub const TAX_SERVICE_NAME: &str = "Value Added Tax";
/// CommitmentDiscountType: our one kind of commitment, GPU-hours per month of one SKU.
pub const COMMITMENT_TYPE: &str = "Committed GPU-Hours";

/// All columns in order: FOCUS, then custom.
pub fn header() -> impl Iterator<Item = &'static str> {
    FOCUS_COLUMNS.iter().chain(CUSTOM_COLUMNS).copied()
}

/// The FOCUS 1.2 CSV of the documents issued for one tenant at the close of `billing_period`
/// (RFC 4180, comma, CRLF, quoted where needed): each document's lines, then its tax row.
pub fn focus_csv(docs: &[InvoiceDoc], billing_period: Period) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    w.write_record(header()).expect("write to memory");
    for d in docs {
        let (folds, folded) = fold_discounts(d);
        let mut list_base = Decimal::ZERO;
        for (i, l) in d.lines.iter().enumerate().filter(|(i, _)| !folded.contains(i)) {
            let (row, list_cost) = line_row(d, l, billing_period, folds.get(&i).copied().unwrap_or_default());
            list_base += list_cost;
            w.write_record(&row.0).expect("write to memory");
        }
        w.write_record(&tax_row(d, billing_period, list_base).0).expect("write to memory");
    }
    w.into_inner().expect("flush to memory")
}

/// The sum of `BilledCost` per `InvoiceId` of a FOCUS CSV written by [`focus_csv`] (rows without
/// a cost are skipped). Panics when the CSV has no such columns or a cost is not a plain decimal.
pub fn billed_cost_by_invoice(csv: &[u8]) -> BTreeMap<String, Decimal> {
    let mut r = csv::ReaderBuilder::new().has_headers(true).from_reader(csv);
    let headers = r.headers().expect("a header row").clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap_or_else(|| panic!("no {name} column"));
    let (invoice, cost) = (column("InvoiceId"), column("BilledCost"));
    let mut out = BTreeMap::<String, Decimal>::new();
    for record in r.records() {
        let record = record.expect("a CSV record");
        let text = record.get(cost).unwrap_or_default();
        if text.is_empty() {
            continue;
        }
        let amount = super::dec::parse(text).unwrap_or_else(|e| panic!("BilledCost: {e}"));
        *out.entry(record.get(invoice).unwrap_or_default().to_string()).or_default() += amount;
    }
    out
}
