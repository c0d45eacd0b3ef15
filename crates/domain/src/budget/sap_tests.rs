//! The SAP journal's form: every field within SAP's length for it, read back from the CSV as
//! written; tax codes and revenue accounts per VAT category; receivables on the tenant's customer
//! account; refusals when that master data is missing.

use super::sap::{journal, journal_csv, FIELD_LIMITS};
use super::sap_master::Customer;
use super::tests::journal_fixture;
use super::BudgetEvent;
use crate::billing::Period;
use std::collections::BTreeMap;

fn oct() -> Period {
    Period::parse("2026-10").unwrap()
}

#[test]
fn every_field_of_the_written_journal_keeps_within_the_sap_field_length() {
    let (state, docs) = journal_fixture();
    let csv = journal_csv(&journal(&state, &docs, oct()).unwrap());
    let mut r = csv::ReaderBuilder::new().delimiter(b';').from_reader(csv.as_slice());
    let limits: BTreeMap<&str, usize> = FIELD_LIMITS.iter().copied().collect();
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    for h in &header {
        assert!(limits.contains_key(h.as_str()), "column {h} has no documented SAP length");
    }
    let mut rows = 0;
    for rec in r.records() {
        let rec = rec.unwrap();
        for (h, cell) in header.iter().zip(rec.iter()) {
            assert!(cell.chars().count() <= limits[h.as_str()], "{h} = {cell:?} is longer than {}", limits[h.as_str()]);
        }
        rows += 1;
    }
    assert!(rows > 10, "invoices of three tenants and two assets' depreciation");
}

#[test]
fn revenue_and_vat_carry_the_tax_code_and_account_of_their_category_and_receivables_the_customer() {
    let (state, docs) = journal_fixture();
    let lines = journal(&state, &docs, oct()).unwrap();
    let mut categories = std::collections::BTreeSet::new();
    for d in &docs {
        let tax = &state.tax_codes[&d.vat.category];
        categories.insert(d.vat.category.clone());
        let doc: Vec<_> = lines.iter().filter(|l| l.reference == d.number).collect();
        let receivable: Vec<_> = doc.iter().filter(|l| l.account_type == 'D').collect();
        assert_eq!(receivable.len(), 1, "{}", d.number);
        assert_eq!(receivable[0].customer, state.customers[&d.tenant_id].customer);
        assert!(receivable[0].gl_account.is_empty(), "SAP takes the reconciliation account from the customer");
        for l in doc.iter().filter(|l| l.revenue) {
            assert_eq!(
                (l.tax_code.as_str(), l.gl_account.as_str()),
                (tax.tax_code.as_str(), tax.revenue_account.as_str())
            );
        }
        for l in doc.iter().filter(|l| !l.revenue && l.account_type == 'S') {
            assert_eq!(l.tax_code, tax.tax_code, "the VAT line of {}", d.number);
        }
    }
    assert_eq!(categories.len(), 3, "the fixture has S, AE and O invoices");
}

#[test]
fn the_journal_is_refused_without_a_tax_code_a_customer_or_when_a_reference_is_too_long() {
    let (state, docs) = journal_fixture();
    let mut s = state.clone();
    s.tax_codes.remove("AE");
    assert!(journal(&s, &docs, oct()).unwrap_err().to_string().contains("VAT category AE"));
    let mut s = state.clone();
    s.customers.remove("us-search");
    assert!(journal(&s, &docs, oct()).unwrap_err().to_string().contains("tenant us-search"));
    let mut long = docs.clone();
    long[0].number = "GLOBALKI-2026-000001".into();
    let e = journal(&state, &long, oct()).unwrap_err();
    assert_eq!(e.field, "reference", "{e}");
    assert!(e.message.contains("SAP takes 16"), "{e}");
    // Master data beyond SAP's lengths is refused when it is loaded.
    let c = BudgetEvent::Customer(Customer {
        tenant_id: "t".into(),
        customer: "12345678901".into(),
        date: chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
    });
    assert!(c.validate().is_err());
}
