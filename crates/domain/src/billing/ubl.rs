//! XRechnung 3.0 (UBL 2.1 Invoice and CreditNote, EN 16931) from issued documents.
//!
//! One document in, one XML text out, byte for byte the same every time: the figures are the
//! document's own (lines, VAT breakdown, totals were computed once, at issue, per EN 16931), this
//! module only lays them out in the order the UBL 2.1 schema demands.
//!
//! - Type 380 is a UBL `Invoice`, type 381 a UBL `CreditNote` (no `cbc:DueDate` there: the due
//!   date goes to `cac:PaymentMeans/cbc:PaymentDueDate`; lines are `cac:CreditNoteLine` with
//!   `cbc:CreditedQuantity`; the corrected invoice is the `cac:BillingReference`).
//! - Every line carries its own invoicing period (BG-26, the Berlin month of the usage it bills:
//!   the document's, or an earlier one for late usage and corrections). The header
//!   `cac:InvoicePeriod` (BG-14) spans all of them: from the first day of the earliest line's
//!   month to the last day of the document's, since a line's period must lie within the
//!   header's (PEPPOL-EN16931-R110/R111, which XRechnung applies).
//! - VAT: category S shows the seller's VAT id (and the buyer's, when known); AE shows both VAT
//!   ids and the exemption reason; O shows no VAT id at all (BR-O-02), only the seller's tax number
//!   (Steuernummer, tax scheme `FC`, and as the seller identifier BT-29 for BR-CO-26), no rate on
//!   the lines and rate 0 in the breakdown.
//! - Payment: SEPA credit transfer (code 58) to the seller's IBAN, and the terms as a note.

use super::invoice::{InvoiceDoc, InvoiceLine};
use crate::money::Money;
use chrono::NaiveDate;
use rust_decimal::Decimal;

pub const CUSTOMIZATION_ID: &str = "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0";
pub const PROFILE_ID: &str = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0";
const NS_INVOICE: &str = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2";
const NS_CREDIT_NOTE: &str = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2";
const NS_CAC: &str = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2";
const NS_CBC: &str = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2";
/// UNTDID 4461: SEPA credit transfer.
const PAYMENT_MEANS_SEPA: &str = "58";

/// Text as XML character data or attribute value: `& < > " '` escaped, carriage returns kept as
/// a character reference (a parser would turn a raw one into a line feed), and the characters XML
/// 1.0 cannot carry at all (other control characters, unpaired surrogates cannot occur in `str`,
/// U+FFFE/U+FFFF) replaced by U+FFFD.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// An amount as EN 16931 wants it: exactly two decimals.
fn money(m: Money) -> String {
    m.round_cents().to_string()
}

/// A VAT rate in percent without trailing zeros (`19`, `0`, `7.5`).
fn percent(d: Decimal) -> String {
    d.normalize().to_string()
}

/// An indenting writer of elements; every name is a literal of this module, every text escaped.
struct Xml {
    out: String,
    depth: usize,
}

impl Xml {
    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    fn open(&mut self, name: &str) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        self.out.push_str(">\n");
        self.depth += 1;
    }

    fn close(&mut self, name: &str) {
        self.depth -= 1;
        self.indent();
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    fn leaf_with(&mut self, name: &str, attr: Option<(&str, &str)>, text: &str) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        if let Some((a, v)) = attr {
            self.out.push(' ');
            self.out.push_str(a);
            self.out.push_str("=\"");
            self.out.push_str(&escape(v));
            self.out.push('"');
        }
        self.out.push('>');
        self.out.push_str(&escape(text));
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    fn leaf(&mut self, name: &str, text: &str) {
        self.leaf_with(name, None, text);
    }

    fn amount(&mut self, name: &str, currency: &str, d: Money) {
        self.leaf_with(name, Some(("currencyID", currency)), &money(d));
    }

    /// `cac:PartyTaxScheme` with a company id in a tax scheme (`VAT`, or `FC` for the tax number).
    fn party_tax_scheme(&mut self, company_id: &str, scheme: &str) {
        self.open("cac:PartyTaxScheme");
        self.leaf("cbc:CompanyID", company_id);
        self.open("cac:TaxScheme");
        self.leaf("cbc:ID", scheme);
        self.close("cac:TaxScheme");
        self.close("cac:PartyTaxScheme");
    }

    /// `cac:InvoicePeriod` (BG-14 in the header, BG-26 on a line).
    fn invoice_period(&mut self, first: NaiveDate, last: NaiveDate) {
        self.open("cac:InvoicePeriod");
        self.leaf("cbc:StartDate", &first.to_string());
        self.leaf("cbc:EndDate", &last.to_string());
        self.close("cac:InvoicePeriod");
    }

    fn postal_address(&mut self, street: &str, city: &str, postal_code: &str, country: &str) {
        self.open("cac:PostalAddress");
        self.leaf("cbc:StreetName", street);
        self.leaf("cbc:CityName", city);
        self.leaf("cbc:PostalZone", postal_code);
        self.open("cac:Country");
        self.leaf("cbc:IdentificationCode", country);
        self.close("cac:Country");
        self.close("cac:PostalAddress");
    }

    /// `cac:TaxCategory` (breakdown) or `cac:ClassifiedTaxCategory` (line).
    fn tax_category(&mut self, name: &str, category: &str, rate: Option<Decimal>, exemption: Option<(&str, &str)>) {
        self.open(name);
        self.leaf("cbc:ID", category);
        if let Some(r) = rate {
            self.leaf("cbc:Percent", &percent(r));
        }
        if let Some((code, reason)) = exemption {
            self.leaf("cbc:TaxExemptionReasonCode", code);
            self.leaf("cbc:TaxExemptionReason", reason);
        }
        self.open("cac:TaxScheme");
        self.leaf("cbc:ID", "VAT");
        self.close("cac:TaxScheme");
        self.close(name);
    }
}

/// The document as XRechnung 3.0 UBL: an `Invoice` for type 380, a `CreditNote` for type 381.
pub fn xrechnung(doc: &InvoiceDoc) -> String {
    let credit = doc.is_credit_note();
    let (root, ns) = if credit { ("CreditNote", NS_CREDIT_NOTE) } else { ("Invoice", NS_INVOICE) };
    let category = doc.vat.category.as_str();
    // Category O: no VAT id of anyone (BR-O-02), no rate on lines (BR-O-05), 0 in the breakdown.
    let not_taxable = category == "O";
    let mut x = Xml { out: String::with_capacity(8192 + 1536 * doc.lines.len()), depth: 0 };
    x.out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.out.push_str(&format!("<{root} xmlns=\"{ns}\" xmlns:cac=\"{NS_CAC}\" xmlns:cbc=\"{NS_CBC}\">\n"));
    x.depth = 1;

    header(&mut x, doc);
    // The seller (BG-4): electronic address, name, address, tax ids, legal name, contact (BR-DE-2).
    seller(&mut x, doc, not_taxable);
    // The buyer (BG-7), as the document recorded it at issue.
    buyer(&mut x, doc, not_taxable);
    // Payment instructions (BG-16, BR-DE-1) and terms (BT-20).
    payment(&mut x, doc);
    // VAT: one category per document, its tax computed once on the sum of the line nets.
    tax_and_totals(&mut x, doc);

    let line_rate = if not_taxable { None } else { Some(doc.vat.rate.unwrap_or(Decimal::ZERO)) };
    for l in &doc.lines {
        line(&mut x, doc, l, category, line_rate);
    }

    x.depth = 0;
    x.out.push_str(&format!("</{root}>\n"));
    x.out
}

/// Identification, dates, notes, currency, buyer reference, period (BG-14) and the corrected invoice.
fn header(x: &mut Xml, doc: &InvoiceDoc) {
    let credit = doc.is_credit_note();
    let cur = doc.currency.as_str();
    x.leaf("cbc:CustomizationID", CUSTOMIZATION_ID);
    x.leaf("cbc:ProfileID", PROFILE_ID);
    x.leaf("cbc:ID", &doc.number);
    x.leaf("cbc:IssueDate", &doc.issue_date.to_string());
    if credit {
        x.leaf("cbc:CreditNoteTypeCode", &doc.type_code.to_string());
    } else {
        x.leaf("cbc:DueDate", &doc.due_date.to_string());
        x.leaf("cbc:InvoiceTypeCode", &doc.type_code.to_string());
    }
    for n in &doc.notes {
        x.leaf("cbc:Note", n);
    }
    x.leaf("cbc:DocumentCurrencyCode", cur);
    x.leaf("cbc:BuyerReference", &doc.buyer.buyer_reference);
    let earliest = doc.lines.iter().map(|l| l.period).chain([doc.period]).min().unwrap_or(doc.period);
    x.invoice_period(earliest.first_day(), doc.period.last_day());
    if let Some(c) = &doc.corrects {
        x.open("cac:BillingReference");
        x.open("cac:InvoiceDocumentReference");
        x.leaf("cbc:ID", &c.number);
        x.leaf("cbc:IssueDate", &c.issue_date.to_string());
        x.close("cac:InvoiceDocumentReference");
        x.close("cac:BillingReference");
    }
}

fn seller(x: &mut Xml, doc: &InvoiceDoc, not_taxable: bool) {
    let s = &doc.seller;
    x.open("cac:AccountingSupplierParty");
    x.open("cac:Party");
    x.leaf_with("cbc:EndpointID", Some(("schemeID", "EM")), &s.electronic_address);
    if not_taxable {
        // BR-CO-26 wants a seller identifier (BT-29), a legal registration id (BT-30) or the VAT
        // id (BT-31); category O may not show the VAT id, and documents issued before the seller's
        // register number was recorded have no BT-30, so the tax number identifies the seller.
        x.open("cac:PartyIdentification");
        x.leaf("cbc:ID", &s.tax_number);
        x.close("cac:PartyIdentification");
    }
    x.open("cac:PartyName");
    x.leaf("cbc:Name", &s.legal_name);
    x.close("cac:PartyName");
    x.postal_address(&s.street, &s.city, &s.postal_code, &s.country);
    if !not_taxable {
        x.party_tax_scheme(&s.vat_id, "VAT");
    }
    x.party_tax_scheme(&s.tax_number, "FC");
    x.open("cac:PartyLegalEntity");
    x.leaf("cbc:RegistrationName", &s.legal_name);
    // BT-30: the commercial register number; BT-33: seat, register court and number, managing
    // directors (§ 35a GmbHG), as "seller additional legal information".
    if let Some(n) = &s.register_number {
        x.leaf("cbc:CompanyID", n);
    }
    if let Some(info) = s.legal_information() {
        x.leaf("cbc:CompanyLegalForm", &info);
    }
    x.close("cac:PartyLegalEntity");
    x.open("cac:Contact");
    x.leaf("cbc:Name", &s.contact_name);
    x.leaf("cbc:Telephone", &s.contact_phone);
    x.leaf("cbc:ElectronicMail", &s.contact_email);
    x.close("cac:Contact");
    x.close("cac:Party");
    x.close("cac:AccountingSupplierParty");
}

fn buyer(x: &mut Xml, doc: &InvoiceDoc, not_taxable: bool) {
    let b = &doc.buyer;
    x.open("cac:AccountingCustomerParty");
    x.open("cac:Party");
    x.leaf_with("cbc:EndpointID", Some(("schemeID", "EM")), &b.invoice_email);
    x.open("cac:PartyName");
    x.leaf("cbc:Name", &b.legal_name);
    x.close("cac:PartyName");
    x.postal_address(&b.street, &b.city, &b.postal_code, &b.country);
    if let Some(v) = b.vat_id.as_deref().filter(|_| !not_taxable) {
        x.party_tax_scheme(v, "VAT");
    }
    x.open("cac:PartyLegalEntity");
    x.leaf("cbc:RegistrationName", &b.legal_name);
    x.close("cac:PartyLegalEntity");
    x.close("cac:Party");
    x.close("cac:AccountingCustomerParty");
}

fn payment(x: &mut Xml, doc: &InvoiceDoc) {
    let s = &doc.seller;
    x.open("cac:PaymentMeans");
    x.leaf("cbc:PaymentMeansCode", PAYMENT_MEANS_SEPA);
    if doc.is_credit_note() {
        x.leaf("cbc:PaymentDueDate", &doc.due_date.to_string());
    }
    x.leaf("cbc:PaymentID", &doc.number);
    x.open("cac:PayeeFinancialAccount");
    x.leaf("cbc:ID", &s.iban);
    x.leaf("cbc:Name", &s.legal_name);
    x.close("cac:PayeeFinancialAccount");
    x.close("cac:PaymentMeans");
    x.open("cac:PaymentTerms");
    x.leaf("cbc:Note", &payment_terms(doc));
    x.close("cac:PaymentTerms");
}

/// The VAT breakdown (BG-23) and the document totals (BG-22).
fn tax_and_totals(x: &mut Xml, doc: &InvoiceDoc) {
    let category = doc.vat.category.as_str();
    let cur = doc.currency.as_str();
    let exemption = doc.vat.exemption_code.as_deref().zip(doc.vat.exemption_reason.as_deref());
    x.open("cac:TaxTotal");
    x.amount("cbc:TaxAmount", cur, doc.vat_total);
    x.open("cac:TaxSubtotal");
    x.amount("cbc:TaxableAmount", cur, doc.vat.taxable);
    x.amount("cbc:TaxAmount", cur, doc.vat.tax);
    x.tax_category("cac:TaxCategory", category, Some(doc.vat.rate.unwrap_or(Decimal::ZERO)), exemption);
    x.close("cac:TaxSubtotal");
    x.close("cac:TaxTotal");

    x.open("cac:LegalMonetaryTotal");
    x.amount("cbc:LineExtensionAmount", cur, doc.net_total);
    x.amount("cbc:TaxExclusiveAmount", cur, doc.net_total);
    x.amount("cbc:TaxInclusiveAmount", cur, doc.gross_total);
    x.amount("cbc:PayableAmount", cur, doc.gross_total);
    x.close("cac:LegalMonetaryTotal");
}

fn payment_terms(doc: &InvoiceDoc) -> String {
    let days = (doc.due_date - doc.issue_date).num_days();
    if doc.is_credit_note() {
        format!("The credited amount is paid out within {days} days, by {}.", doc.due_date)
    } else {
        format!("Payable within {days} days without deduction, due {}.", doc.due_date)
    }
}

fn line(x: &mut Xml, doc: &InvoiceDoc, l: &InvoiceLine, category: &str, rate: Option<Decimal>) {
    let cur = doc.currency.as_str();
    let (tag, qty_tag) = if doc.is_credit_note() {
        ("cac:CreditNoteLine", "cbc:CreditedQuantity")
    } else {
        ("cac:InvoiceLine", "cbc:InvoicedQuantity")
    };
    let (first, last) = (l.period.first_day(), l.period.last_day());
    x.open(tag);
    x.leaf("cbc:ID", &l.line_no.to_string());
    if l.late {
        let note = if doc.is_credit_note() {
            format!("Corrects usage of period {} ({first} to {last}), already invoiced.", l.period)
        } else {
            format!(
                "Late usage of period {} ({first} to {last}): reached the ledger after that period was invoiced.",
                l.period
            )
        };
        x.leaf("cbc:Note", &note);
    }
    x.leaf_with(qty_tag, Some(("unitCode", &l.unit)), &l.quantity.to_string());
    x.amount("cbc:LineExtensionAmount", cur, l.net);
    x.invoice_period(first, last);
    x.open("cac:Item");
    let mut description = format!("Usage period {} ({first} to {last})", l.period);
    if !l.gpu_seconds.is_zero() {
        description.push_str(&format!(", {} GPU-seconds", l.gpu_seconds.normalize()));
    }
    x.leaf("cbc:Description", &description);
    x.leaf("cbc:Name", &l.description);
    x.tax_category("cac:ClassifiedTaxCategory", category, rate, None);
    x.close("cac:Item");
    x.open("cac:Price");
    x.leaf_with("cbc:PriceAmount", Some(("currencyID", cur)), &l.unit_price.to_string());
    x.close("cac:Price");
    x.close(tag);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::invoice::{make_line, totals, InvoiceRef, TYPE_CREDIT_NOTE, TYPE_INVOICE};
    use crate::billing::period::Period;
    use crate::billing::rating::{LineKey, LineKind};
    use crate::billing::reference::{BillingProfile, Seller, VatTreatment};
    use chrono::{NaiveDate, TimeZone, Utc};
    use uuid::Uuid;

    fn doc(type_code: u16, treatment: VatTreatment) -> InvoiceDoc {
        let period = Period::parse("2026-11").unwrap();
        let key = LineKey {
            kind: LineKind::Usage,
            sku: "nvidia-h100-sxm".into(),
            project: Some("r&d <\"x\"> 'y'".into()),
            tier: 1,
            unit_price: Decimal::new(210, 2),
            contract_id: None,
            mig_profile: None,
        };
        let lines = vec![
            make_line(1, period, false, "", &key, Decimal::new(7200, 0), Money::new(Decimal::new(420, 2))),
            make_line(
                2,
                period.prev(),
                true,
                "Late usage of 2026-10: ",
                &key,
                Decimal::new(3600, 0),
                Money::new(Decimal::new(210, 2)),
            ),
        ];
        let (vat, net_total, vat_total, gross_total) = totals(treatment, &lines);
        InvoiceDoc {
            number: "GL-2026-000001".into(),
            series: "GL-2026".into(),
            type_code,
            tenant_id: "acme".into(),
            period,
            issued_at: Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap(),
            issue_date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            due_date: NaiveDate::from_ymd_opt(2026, 12, 15).unwrap(),
            currency: "EUR".into(),
            seller: Seller {
                legal_name: "Müller & Söhne <GPU> GmbH".into(),
                street: "Leopoldstraße 42".into(),
                city: "München".into(),
                postal_code: "80802".into(),
                country: "DE".into(),
                vat_id: "DE123456789".into(),
                tax_number: "143/123/45678".into(),
                contact_name: "Erika O'Brien".into(),
                contact_phone: "+49 89 12345678".into(),
                contact_email: "billing@example.de".into(),
                electronic_address: "rechnung@example.de".into(),
                iban: "DE02120300000000202051".into(),
                series_prefix: "GL".into(),
                registered_office: Some("München".into()),
                register_court: Some("Amtsgericht München".into()),
                register_number: Some("HRB 276543".into()),
                managing_directors: vec!["Erika O'Brien".into(), "Hans <Müller> & Sohn".into()],
            },
            buyer: BillingProfile {
                tenant_id: "acme".into(),
                legal_name: "Acme \"Research\" AG".into(),
                street: "Friedrichstraße 100".into(),
                city: "Berlin".into(),
                postal_code: "10117".into(),
                country: "DE".into(),
                vat_id: Some("DE987654321".into()),
                vat_treatment: treatment,
                buyer_reference: "PO-<4711>&1".into(),
                payment_terms_days: 14,
                invoice_email: "ap@acme.de".into(),
                lines_by_project: true,
            },
            buyer_profile_event: Uuid::from_u128(1),
            vat_treatment: treatment,
            corrects: (type_code == TYPE_CREDIT_NOTE).then(|| InvoiceRef {
                number: "GL-2026-000000".into(),
                issue_date: NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(),
            }),
            lines,
            vat,
            net_total,
            vat_total,
            gross_total,
            notes: vec!["a note with <markup> & 'quotes'".into()],
            close_event_id: Uuid::from_u128(2),
        }
    }

    #[test]
    fn escapes_all_text() {
        assert_eq!(escape(r#"a&b<c>d"e'f"#), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
        assert_eq!(escape("x\u{1}y\rz\tw\n"), "x\u{FFFD}y&#13;z\tw\n");
        let xml = xrechnung(&doc(TYPE_INVOICE, VatTreatment::Domestic));
        assert!(xml.contains("<cbc:Name>Müller &amp; Söhne &lt;GPU&gt; GmbH</cbc:Name>"), "{xml}");
        assert!(xml.contains("<cbc:Name>Erika O&apos;Brien</cbc:Name>"));
        assert!(xml.contains("<cbc:Name>Acme &quot;Research&quot; AG</cbc:Name>"));
        assert!(xml.contains("<cbc:BuyerReference>PO-&lt;4711&gt;&amp;1</cbc:BuyerReference>"));
        assert!(xml.contains("project r&amp;d &lt;&quot;x&quot;&gt; &apos;y&apos;"));
        assert!(xml.contains("<cbc:Note>a note with &lt;markup&gt; &amp; &apos;quotes&apos;</cbc:Note>"));
        // Outside markup, no raw special character survives in any text or attribute.
        let body: String = xml.split('<').skip(2).map(|part| part.split_once('>').map_or("", |(_, t)| t)).collect();
        assert!(!body.contains(['>', '"', '\'']), "{body}");
    }

    #[test]
    fn invoice_layout() {
        let xml = xrechnung(&doc(TYPE_INVOICE, VatTreatment::Domestic));
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Invoice "));
        assert!(xml.contains("<cbc:DueDate>2026-12-15</cbc:DueDate>\n  <cbc:InvoiceTypeCode>380</cbc:InvoiceTypeCode>"));
        // The header's period spans the late line's month (October) and the document's (November).
        assert!(xml.contains("<cac:InvoicePeriod>\n    <cbc:StartDate>2026-10-01</cbc:StartDate>\n    <cbc:EndDate>2026-11-30</cbc:EndDate>"));
        assert!(xml.contains("<cbc:Note>Payable within 14 days without deduction, due 2026-12-15.</cbc:Note>"));
        assert!(xml.contains("<cbc:InvoicedQuantity unitCode=\"HUR\">2.000000</cbc:InvoicedQuantity>"));
        assert!(xml.contains("<cbc:TaxAmount currencyID=\"EUR\">1.20</cbc:TaxAmount>"));
        assert!(xml.contains("<cbc:PayableAmount currencyID=\"EUR\">7.50</cbc:PayableAmount>"));
        assert!(xml.contains("<cbc:Percent>19</cbc:Percent>"));
        assert!(xml.contains("<cbc:Note>Late usage of period 2026-10 (2026-10-01 to 2026-10-31)"));
        // Each line its own period (BG-26): November for the current line, October for the late one.
        assert_eq!(xml.matches("<cac:InvoicePeriod>").count(), 3);
        let late = xml.split("<cac:InvoiceLine>").nth(2).unwrap();
        assert!(late.contains("<cac:InvoicePeriod>\n      <cbc:StartDate>2026-10-01</cbc:StartDate>\n      <cbc:EndDate>2026-10-31</cbc:EndDate>"), "{late}");
        let current = xml.split("<cac:InvoiceLine>").nth(1).unwrap();
        assert!(
            current.contains("<cbc:StartDate>2026-11-01</cbc:StartDate>\n      <cbc:EndDate>2026-11-30</cbc:EndDate>"),
            "{current}"
        );
        assert!(!xml.contains("BillingReference"));
        assert_eq!(xml, xrechnung(&doc(TYPE_INVOICE, VatTreatment::Domestic)), "deterministic");
    }

    #[test]
    fn credit_note_has_no_due_date_element() {
        let xml = xrechnung(&doc(TYPE_CREDIT_NOTE, VatTreatment::Domestic));
        assert!(xml.contains("\n<CreditNote xmlns=\"urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2\""));
        assert!(!xml.contains("<cbc:DueDate>"), "{xml}");
        assert!(!xml.contains("InvoiceLine") && !xml.contains("InvoicedQuantity") && !xml.contains("InvoiceTypeCode"));
        assert!(xml.contains("<cbc:CreditNoteTypeCode>381</cbc:CreditNoteTypeCode>"));
        assert!(xml.contains("<cbc:PaymentDueDate>2026-12-15</cbc:PaymentDueDate>"));
        assert!(xml.contains("<cbc:CreditedQuantity unitCode=\"HUR\">1.000000</cbc:CreditedQuantity>"));
        assert!(xml.contains(
            "<cac:InvoiceDocumentReference>\n      <cbc:ID>GL-2026-000000</cbc:ID>\n      <cbc:IssueDate>2026-11-02</cbc:IssueDate>"
        ));
        assert!(xml.trim_end().ends_with("</CreditNote>"));
    }

    #[test]
    fn seller_register_and_managing_directors_are_bt30_and_bt33() {
        let xml = xrechnung(&doc(TYPE_INVOICE, VatTreatment::Domestic));
        let seller = xml.split("<cac:AccountingCustomerParty>").next().unwrap();
        assert!(
            seller.contains(
                "<cbc:RegistrationName>Müller &amp; Söhne &lt;GPU&gt; GmbH</cbc:RegistrationName>\n        \
                 <cbc:CompanyID>HRB 276543</cbc:CompanyID>\n        \
                 <cbc:CompanyLegalForm>Sitz der Gesellschaft: München; Registergericht: Amtsgericht München, HRB 276543; \
                 Geschäftsführer: Erika O&apos;Brien, Hans &lt;Müller&gt; &amp; Sohn</cbc:CompanyLegalForm>"
            ),
            "{seller}"
        );
        // A document issued before the seller's register was recorded keeps its XML.
        let mut old = doc(TYPE_INVOICE, VatTreatment::Domestic);
        (old.seller.registered_office, old.seller.register_court, old.seller.register_number) = (None, None, None);
        old.seller.managing_directors.clear();
        let xml = xrechnung(&old);
        assert!(!xml.contains("CompanyLegalForm") && !xml.contains("HRB"), "{xml}");
        assert!(!serde_json::to_string(&old.seller).unwrap().contains("register"), "old documents keep their bytes");
    }

    #[test]
    fn vat_ids_by_category() {
        let o = xrechnung(&doc(TYPE_INVOICE, VatTreatment::NotTaxable));
        assert!(!o.contains("DE123456789") && !o.contains("DE987654321"), "{o}");
        assert!(o.contains("<cbc:CompanyID>143/123/45678</cbc:CompanyID>"));
        assert!(o.contains("<cac:PartyIdentification>\n        <cbc:ID>143/123/45678</cbc:ID>"), "{o}");
        assert!(o.contains("<cbc:Percent>0</cbc:Percent>\n        <cbc:TaxExemptionReasonCode>VATEX-EU-O"));
        assert_eq!(o.matches("<cbc:Percent>").count(), 1, "no rate on category O lines");
        let ae = xrechnung(&doc(TYPE_INVOICE, VatTreatment::ReverseCharge));
        assert!(ae.contains("DE123456789") && ae.contains("DE987654321"));
        assert!(!ae.contains("PartyIdentification"));
        assert!(ae.contains("<cbc:TaxExemptionReasonCode>VATEX-EU-AE</cbc:TaxExemptionReasonCode>"));
        assert_eq!(ae.matches("<cbc:Percent>0</cbc:Percent>").count(), 3);
    }
}
