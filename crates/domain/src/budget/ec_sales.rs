//! The EC Sales List (Zusammenfassende Meldung, section 18a UStG) of a period: per customer VAT
//! id, the net amount of the intra-EU services invoiced under reverse charge (VAT category AE),
//! credit notes deducted. It covers the same documents as the period's SAP journal (those issued
//! by its close), so its total equals the revenue the journal posts on the AE revenue account and
//! the net of the period's AE invoices. Columns: docs/sap-export.md.

use super::events::{err, BudgetError};
use crate::billing::dec::cents;
use crate::billing::invoice::InvoiceDoc;
use crate::billing::reference::VatTreatment;
use crate::billing::Period;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// The kind of supply: S, "sonstige Leistung" (a service), the only kind gpuledger invoices.
pub const KIND_SERVICE: &str = "S";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcSalesLine {
    pub period: Period,
    /// The country code of the VAT id (its first two letters, e.g. FR; EL for Greece).
    pub country: String,
    /// The customer's VAT id as on the invoices, country code included.
    pub vat_id: String,
    /// Net, in EUR and cents, credit notes deducted.
    pub amount: Decimal,
    pub kind: &'static str,
    pub documents: u32,
}

/// The list of `period` from the documents its close issued. Refused when a reverse-charge
/// document names no customer VAT id (it could not have been issued as such).
pub fn ec_sales_list(docs: &[InvoiceDoc], period: Period) -> Result<Vec<EcSalesLine>, BudgetError> {
    let mut out: BTreeMap<(String, String), EcSalesLine> = BTreeMap::new();
    for d in docs.iter().filter(|d| d.vat_treatment == VatTreatment::ReverseCharge) {
        let vat_id = d
            .buyer
            .vat_id
            .as_deref()
            .map(|v| v.replace(' ', ""))
            .filter(|v| v.len() > 2 && v.is_char_boundary(2))
            .ok_or_else(|| err("vat_id", format!("reverse-charge document {} names no customer VAT id", d.number)))?;
        let country = vat_id[..2].to_ascii_uppercase();
        let line = out.entry((country.clone(), vat_id.clone())).or_insert(EcSalesLine {
            period,
            country,
            vat_id,
            amount: Decimal::ZERO,
            kind: KIND_SERVICE,
            documents: 0,
        });
        line.amount += (d.sign() * d.net_total).amount();
        line.documents += 1;
    }
    Ok(out
        .into_values()
        .map(|mut l| {
            l.amount = cents(l.amount);
            l
        })
        .collect())
}

pub const EC_SALES_COLUMNS: [&str; 6] = ["period", "country", "vat_id", "amount", "kind", "documents"];

/// The list as CSV (semicolon-separated, CRLF, amounts with a decimal point).
pub fn ec_sales_csv(lines: &[EcSalesLine]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new().delimiter(b';').terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    w.write_record(EC_SALES_COLUMNS).expect("memory");
    for l in lines {
        w.write_record([
            l.period.to_string(),
            l.country.clone(),
            crate::billing::export::escape_cell(&l.vat_id),
            l.amount.to_string(),
            l.kind.to_string(),
            l.documents.to_string(),
        ])
        .expect("memory");
    }
    w.into_inner().expect("memory")
}
