//! Reverse charge for a GPU service to a business customer in another EU member state.
//!
//! The service is a B2B service (Art. 44 Directive 2006/112/EC; § 3a Abs. 2 UStG): it is taxable
//! where the customer is established, and there the customer owes the VAT (Art. 196 Directive
//! 2006/112/EC). The seller, established in Germany, must issue an invoice stating
//! "Steuerschuldnerschaft des Leistungsempfängers" with both VAT ids (§ 14a Abs. 1 Sätze 1 and 3
//! UStG), by the fifteenth day of the month after the month in which the service was performed
//! (§ 14a Abs. 1 Satz 2 UStG). A month's GPU service is performed by the end of that month.
//! (§ 13b UStG is the German rule for services received in Germany; it is not the basis here.)

use super::invoice::InvoiceDoc;
use super::period::{berlin_date, Period};
use super::reference::VatTreatment;
use chrono::{Datelike, NaiveDate};
use std::collections::BTreeSet;

/// The note on a reverse-charge document (BT-120 and the document notes).
pub const NOTE: &str = "Steuerschuldnerschaft des Leistungsempfängers (reverse charge): the service is taxable in the member state where the recipient is established (Art. 44 Directive 2006/112/EC, § 3a Abs. 2 UStG), the recipient is liable for the VAT (Art. 196 Directive 2006/112/EC)";

/// The last day on which the invoice of a service performed in `service` may be issued (§ 14a
/// Abs. 1 Satz 2 UStG): the fifteenth of the month after.
pub fn invoice_deadline(service: Period) -> NaiveDate {
    service.next().first_day().with_day0(14).expect("the 15th exists")
}

/// The warning for a reverse-charge invoice issued after the § 14a deadline of any month it bills
/// (its own period, or an earlier one in late lines); `None` when in time or not reverse charge.
/// Credit notes correct an invoice and have no such deadline.
pub fn late_invoice_warning(doc: &InvoiceDoc) -> Option<String> {
    if doc.vat_treatment != VatTreatment::ReverseCharge || doc.is_credit_note() {
        return None;
    }
    let issued = berlin_date(doc.issued_at);
    let late: BTreeSet<Period> = doc.lines.iter().map(|l| l.period).filter(|&p| invoice_deadline(p) < issued).collect();
    let first = *late.first()?;
    let months: Vec<String> = late.iter().map(Period::to_string).collect();
    Some(format!(
        "{} to {} (reverse charge) is issued on {issued}, after the § 14a Abs. 1 Satz 2 UStG deadline of {} for the service of {first} (months billed late: {})",
        doc.number,
        doc.tenant_id,
        invoice_deadline(first),
        months.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Period {
        Period::parse(s).unwrap()
    }

    #[test]
    fn the_deadline_is_the_fifteenth_of_the_next_month() {
        assert_eq!(invoice_deadline(p("2026-10")), NaiveDate::from_ymd_opt(2026, 11, 15).unwrap());
        assert_eq!(invoice_deadline(p("2026-12")), NaiveDate::from_ymd_opt(2027, 1, 15).unwrap());
        assert_eq!(invoice_deadline(p("2028-01")), NaiveDate::from_ymd_opt(2028, 2, 15).unwrap());
    }

    #[test]
    fn the_note_cites_the_directive_and_the_german_wording() {
        for needle in ["Steuerschuldnerschaft des Leistungsempfängers", "Art. 44", "Art. 196", "2006/112/EC"] {
            assert!(NOTE.contains(needle), "{needle}");
        }
        assert!(!NOTE.contains("13b"), "§ 13b UStG concerns services received in Germany");
    }
}
