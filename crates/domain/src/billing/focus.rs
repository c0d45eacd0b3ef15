//! FOCUS 1.2 cost-and-usage CSV per tenant and month.
//!
//! One row per document line and one tax row per document, for the documents (invoices and
//! credit notes) issued for one tenant at the close of one billing period; the caller picks them.
//!
//! How our charges map onto FOCUS:
//!
//! - Commitments are modelled without the FOCUS commitment-discount columns: every invoice line is
//!   one row. Usage, commitment and overage lines are `Usage` (`Usage-Based`, pricing category
//!   `Standard`; a commitment line's unit price is the committed rate). The unused part of a
//!   commitment (minimum top-up) is an `Adjustment` (`Recurring`) priced per unused GPU-hour with
//!   nothing consumed. A contract discount is a `Credit` (`Recurring`) with no quantity, price or SKU.
//! - Late lines on an invoice and every line of a credit note are `Correction`s, charged in the
//!   period of the usage they correct. A credit note credits: its amounts and quantities are
//!   negated, so that the rows of all documents add up to what the tenant owes.
//! - Each document has one `Tax` row of its VAT (0.00 for reverse charge and not taxable, so that
//!   every document has one), negated for a credit note. So per `InvoiceId` the `BilledCost`s add
//!   up to the document's gross total (negated for a credit note).
//! - `BilledCost`, `EffectiveCost`, `ContractedCost` and `ListCost` are all the line's net amount,
//!   and `ListUnitPrice` equals `ContractedUnitPrice`: a line is priced either at the public list
//!   price of a tier (there is no negotiated rate below it) or at a contract's rate (whose list
//!   counterpart we do not price per hour; the contract replaces the list price). Rating keeps no
//!   second, hypothetical amount to report as a list cost, so none is invented here.
//! - Text from outside (names, descriptions, projects, ids) is escaped against CSV injection with
//!   [`escape_cell`]; figures are written as plain decimals (a negative amount stays a number).
//!   Null is an empty field. Date-times are UTC, `YYYY-MM-DDTHH:MM:SSZ`; the periods are Berlin
//!   calendar months, so they start at 22:00 or 23:00 UTC of the day before.

use super::export::escape_cell;
use super::invoice::{InvoiceDoc, InvoiceLine};
use super::period::Period;
use super::rating::LineKind;
use chrono::{DateTime, Utc};
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
];

/// The unit of every time quantity (FOCUS units: a count of hours of a GPU).
pub const GPU_HOURS: &str = "GPU-Hours";
pub const SERVICE_NAME: &str = "GPU Compute";
pub const SERVICE_CATEGORY: &str = "Compute";
pub const SERVICE_SUBCATEGORY: &str = "Other (Compute)";
pub const REGION_ID: &str = "de-sovereign-1";
pub const REGION_NAME: &str = "Germany (sovereign)";
pub const TAX_SERVICE_NAME: &str = "Value Added Tax";

/// All columns in order: FOCUS, then custom.
pub fn header() -> impl Iterator<Item = &'static str> {
    FOCUS_COLUMNS.iter().chain(CUSTOM_COLUMNS).copied()
}

/// One CSV row under construction: every cell null until set.
struct Row(Vec<String>);

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

fn instant(t: DateTime<Utc>) -> String {
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

fn line_row(doc: &InvoiceDoc, line: &InvoiceLine, billing_period: Period) -> Row {
    let credit = doc.is_credit_note();
    let key = &line.charge;
    let mut r = common(doc, billing_period);
    let net = signed(credit, line.net.amount());
    for cost in ["BilledCost", "EffectiveCost", "ContractedCost", "ListCost"] {
        r.number(cost, net);
    }
    let (category, frequency) = match key.kind {
        LineKind::Usage | LineKind::Commitment | LineKind::Overage => ("Usage", "Usage-Based"),
        LineKind::MinimumTopUp => ("Adjustment", "Recurring"),
        LineKind::Discount => ("Credit", "Recurring"),
    };
    r.set("ChargeCategory", category);
    r.set("ChargeFrequency", frequency);
    if credit || line.late {
        r.set("ChargeClass", "Correction");
    }
    r.text("ChargeDescription", &line.description);
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
        r.number("ListUnitPrice", line.unit_price.value());
        r.number("ContractedUnitPrice", line.unit_price.value());
        r.set("PricingCategory", "Standard");
        r.text("SkuId", &key.sku);
        r.text("SkuPriceId", &format!("{}:{}:{}:{}", key.sku, kind_name(key.kind), key.tier, key.unit_price));
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
    r
}

fn tax_row(doc: &InvoiceDoc, billing_period: Period) -> Row {
    let credit = doc.is_credit_note();
    let mut r = common(doc, billing_period);
    let vat = signed(credit, doc.vat_total.amount());
    for cost in ["BilledCost", "EffectiveCost", "ContractedCost", "ListCost"] {
        r.number(cost, vat);
    }
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

/// The FOCUS 1.2 CSV of the documents issued for one tenant at the close of `billing_period`
/// (RFC 4180, comma, CRLF, quoted where needed): each document's lines, then its tax row.
pub fn focus_csv(docs: &[InvoiceDoc], billing_period: Period) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new());
    w.write_record(header()).expect("write to memory");
    for d in docs {
        for l in &d.lines {
            w.write_record(&line_row(d, l, billing_period).0).expect("write to memory");
        }
        w.write_record(&tax_row(d, billing_period).0).expect("write to memory");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::close::{plan_close, CloseInput};
    use crate::billing::invoice::TYPE_CREDIT_NOTE;
    use crate::billing::rating::UsageRow;
    use crate::billing::reference::{
        BillingProfile, Contract, PriceList, PriceTier, Reference, ReferenceState, Seller, VatTreatment,
    };
    use chrono::TimeZone;
    use std::collections::BTreeSet;
    use uuid::Uuid;

    const MANDATORY: &[&str] = &[
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
    ];

    const TENANT: &str = "acme";
    const HOSTILE_PROJECT: &str = "=cmd|' /C calc'!A0";

    fn d(s: &str) -> Decimal {
        crate::billing::dec::parse(s).unwrap()
    }

    fn p(s: &str) -> Period {
        Period::parse(s).unwrap()
    }

    fn refs() -> ReferenceState {
        let mut refs = ReferenceState::default();
        let seller = Seller {
            legal_name: "GPU Sovereign Cloud GmbH".into(),
            street: "Friedrichstraße 1".into(),
            city: "Berlin".into(),
            postal_code: "10117".into(),
            country: "DE".into(),
            vat_id: "DE123456789".into(),
            tax_number: "30/123/45678".into(),
            contact_name: "Billing".into(),
            contact_phone: "+49 30 123456".into(),
            contact_email: "billing@example.com".into(),
            electronic_address: "billing@example.com".into(),
            iban: "DE89370400440532013000".into(),
            series_prefix: "GL".into(),
            registered_office: Some("München".into()),
            register_court: Some("Amtsgericht Charlottenburg".into()),
            register_number: Some("HRB 12345 B".into()),
            managing_directors: vec!["Anna Schmidt".into()],
        };
        let prices = PriceList {
            sku: "nvidia-h100-sxm".into(),
            effective_from: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            currency: "EUR".into(),
            tiers: vec![
                PriceTier { from_gpu_hours: d("0"), eur_per_gpu_hour: d("2.50") },
                PriceTier { from_gpu_hours: d("100"), eur_per_gpu_hour: d("2.00") },
            ],
        };
        let profile = BillingProfile {
            tenant_id: TENANT.into(),
            legal_name: "=HYPERLINK(\"http://evil.example\",\"ACME\")".into(),
            street: "Hauptstraße 5".into(),
            city: "München".into(),
            postal_code: "80331".into(),
            country: "DE".into(),
            vat_id: Some("DE987654321".into()),
            vat_treatment: VatTreatment::Domestic,
            buyer_reference: "ACME-PO-1".into(),
            payment_terms_days: 14,
            invoice_email: "ap@acme.example".into(),
            lines_by_project: true,
        };
        let contract = |id: &str, sku: &str, hours: &str, rate: &str, over: &str, discount: &str| Contract {
            contract_id: id.into(),
            tenant_id: TENANT.into(),
            sku: sku.into(),
            committed_gpu_hours_per_month: d(hours),
            committed_eur_per_gpu_hour: d(rate),
            overage_eur_per_gpu_hour: d(over),
            discount_percent: d(discount),
            start_month: p("2026-11"),
            end_month: p("2026-12"),
        };
        for r in [
            Reference::Seller(seller),
            Reference::PriceList(prices),
            Reference::Profile(profile),
            Reference::Contract(contract("C-B200", "nvidia-b200", "50", "4.00", "5.00", "10")),
            Reference::Contract(contract("C-GB200", "nvidia-gb200", "100", "6.00", "7.00", "0")),
        ] {
            let data = r.data();
            let r = Reference::parse(r.kind(), &data).expect("valid reference");
            refs.apply(r, Uuid::nil());
        }
        refs
    }

    fn row(sku: &str, project: &str, period: Period, hour: u32, gpu_hours: i64) -> UsageRow {
        UsageRow {
            sku: sku.into(),
            project: project.into(),
            hour: period.start() + chrono::Duration::hours(i64::from(hour)),
            gpu_seconds: Decimal::from(gpu_hours * 3600),
        }
    }

    /// Closes September, October and November 2026. By November's close, 6 of September's 10
    /// GPU-hours were taken back (a credit note) and 5 GPU-hours of October arrived late (late
    /// lines on November's invoice). Returns November's documents.
    fn november_documents() -> Vec<InvoiceDoc> {
        let (sep, oct, nov) = (p("2026-09"), p("2026-10"), p("2026-11"));
        let mut input = CloseInput { refs: refs(), ..CloseInput::default() };
        let h100 = "nvidia-h100-sxm";
        let usage = input.usage.entry(TENANT.into()).or_default();
        usage.insert(sep, vec![row(h100, "train", sep, 3, 10)]);
        usage.insert(oct, vec![row(h100, "train", oct, 3, 10)]);
        for (period, day) in [(sep, 1), (oct, 2)] {
            let issued_at = period.end() + chrono::Duration::days(day);
            let docs = plan_close(period, issued_at, Uuid::nil(), &input).unwrap();
            input.issued.extend(docs);
            input.closed.insert(period);
        }
        let usage = input.usage.get_mut(TENANT).unwrap();
        usage.insert(sep, vec![row(h100, "train", sep, 3, 4)]);
        usage.insert(oct, vec![row(h100, "train", oct, 3, 10), row(h100, "train", oct, 4, 5)]);
        usage.insert(
            nov,
            vec![
                // 120 GPU-hours of H100 in one hour: tier 1 to 100, tier 2 beyond.
                row(h100, HOSTILE_PROJECT, nov, 10, 60),
                row(h100, "train", nov, 10, 60),
                // 60 of 50 committed GPU-hours of B200: commitment and overage, 10 % discount.
                row("nvidia-b200", "train", nov, 11, 60),
                // 10 of 100 committed GPU-hours of GB200: a minimum top-up of 90.
                row("nvidia-gb200", "train", nov, 12, 10),
            ],
        );
        input.recheck = Some(BTreeSet::from([(TENANT.to_string(), sep), (TENANT.to_string(), oct)]));
        plan_close(nov, nov.end() + chrono::Duration::days(1), Uuid::nil(), &input).unwrap()
    }

    type Rows = Vec<BTreeMap<String, String>>;

    fn parse(csv: &[u8]) -> (Vec<String>, Rows) {
        let mut r = csv::ReaderBuilder::new().from_reader(csv);
        let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
        let rows = r
            .records()
            .map(|rec| header.iter().cloned().zip(rec.unwrap().iter().map(String::from)).collect())
            .collect();
        (header, rows)
    }

    fn focus() -> (Vec<InvoiceDoc>, Vec<u8>) {
        let docs = november_documents();
        let csv = focus_csv(&docs, p("2026-11"));
        (docs, csv)
    }

    #[test]
    fn the_scenario_has_every_kind_of_line() {
        let docs = november_documents();
        assert_eq!(docs.len(), 2, "{docs:#?}");
        assert!(!docs[0].is_credit_note() && docs[1].is_credit_note());
        let kinds: BTreeSet<LineKind> = docs[0].lines.iter().map(|l| l.charge.kind).collect();
        assert_eq!(kinds.len(), 5, "{kinds:?}");
        assert!(docs[0].lines.iter().any(|l| l.late && l.period == p("2026-10")));
        assert!(docs[0].lines.iter().any(|l| l.charge.tier == 2));
        assert_eq!(docs[1].period, p("2026-09"));
        assert_eq!(docs[1].gross_total.amount(), d("17.85"));
    }

    #[test]
    fn header_has_every_mandatory_column_and_custom_columns_last() {
        let (_, csv) = focus();
        let (header, rows) = parse(&csv);
        for c in MANDATORY {
            assert!(header.iter().any(|h| h == c), "missing {c}");
        }
        let first_custom = header.iter().position(|h| h.starts_with("x_")).unwrap();
        assert!(header[..first_custom].iter().all(|h| !h.starts_with("x_")));
        assert!(header[first_custom..].iter().all(|h| h.starts_with("x_")));
        assert_eq!(header.len(), FOCUS_COLUMNS.len() + CUSTOM_COLUMNS.len());
        assert_eq!(header.iter().collect::<BTreeSet<_>>().len(), header.len(), "duplicate columns");
        assert!(csv.windows(2).any(|w| w == b"\r\n"));
        assert!(rows.iter().all(|r| r["BillingCurrency"] == "EUR"));
        assert!(rows.iter().all(|r| r["BillingPeriodStart"] == "2026-10-31T23:00:00Z"));
        assert!(rows.iter().all(|r| r["BillingPeriodEnd"] == "2026-11-30T23:00:00Z"));
        assert!(rows.iter().all(|r| r["ProviderName"] == "GPU Sovereign Cloud GmbH"));
    }

    #[test]
    fn billed_cost_per_invoice_is_the_gross_total() {
        let (docs, csv) = focus();
        let sums = billed_cost_by_invoice(&csv);
        assert_eq!(sums.len(), docs.len());
        for doc in &docs {
            assert_eq!(sums[&doc.number], (doc.sign() * doc.gross_total).amount(), "{}", doc.number);
        }
        let (_, rows) = parse(&csv);
        let lines: usize = docs.iter().map(|d| d.lines.len() + 1).sum();
        assert_eq!(rows.len(), lines);
        for r in &rows {
            for c in ["EffectiveCost", "ContractedCost", "ListCost"] {
                assert_eq!(r[c], r["BilledCost"], "{c}");
            }
        }
    }

    #[test]
    fn rows_follow_the_charge_kind() {
        let (docs, csv) = focus();
        let (_, rows) = parse(&csv);
        let invoice = &docs[0];
        let of_kind = |kind: &str| -> Vec<&BTreeMap<String, String>> {
            rows.iter().filter(|r| r["x_ChargeKind"] == kind && r["InvoiceId"] == invoice.number).collect()
        };
        for kind in ["usage", "commitment", "overage"] {
            for r in of_kind(kind) {
                assert_eq!(r["ChargeCategory"], "Usage");
                assert_eq!(r["ChargeFrequency"], "Usage-Based");
                assert_eq!(r["PricingCategory"], "Standard");
                assert_eq!(r["ConsumedQuantity"], r["PricingQuantity"]);
                assert_eq!(r["ConsumedUnit"], GPU_HOURS);
                assert!(r["SkuPriceId"].starts_with(&format!("{}:{kind}:", r["SkuId"])), "{}", r["SkuPriceId"]);
                assert!(!r["SubAccountId"].is_empty());
            }
        }
        let commitment = of_kind("commitment");
        assert_eq!(commitment.len(), 2);
        let b200 = commitment.iter().find(|r| r["x_ContractId"] == "C-B200").unwrap();
        assert_eq!(b200["ContractedUnitPrice"], "4.0000");
        assert_eq!(b200["PricingQuantity"], "50.000000");
        assert_eq!(b200["BilledCost"], "200.00");
        let overage = of_kind("overage");
        assert_eq!(overage.len(), 1);
        assert_eq!((overage[0]["PricingQuantity"].as_str(), overage[0]["BilledCost"].as_str()), ("10.000000", "50.00"));
        let top_up = of_kind("minimum_top_up");
        assert_eq!(top_up.len(), 1);
        let t = top_up[0];
        assert_eq!(t["ChargeCategory"], "Adjustment");
        assert_eq!(t["ChargeFrequency"], "Recurring");
        assert_eq!((t["ConsumedQuantity"].as_str(), t["ConsumedUnit"].as_str()), ("", ""));
        assert_eq!((t["PricingQuantity"].as_str(), t["PricingUnit"].as_str()), ("90.000000", GPU_HOURS));
        assert_eq!((t["ListUnitPrice"].as_str(), t["ContractedUnitPrice"].as_str()), ("6.0000", "6.0000"));
        assert_eq!(t["BilledCost"], "540.00");
        let discount = of_kind("discount");
        assert_eq!(discount.len(), 1);
        let x = discount[0];
        assert_eq!(x["ChargeCategory"], "Credit");
        assert_eq!(x["ChargeFrequency"], "Recurring");
        // 10 % of 50 h × 4.00 + 10 h × 5.00.
        assert_eq!(x["BilledCost"], "-25.00");
        for c in [
            "PricingQuantity",
            "PricingUnit",
            "ConsumedQuantity",
            "ConsumedUnit",
            "ListUnitPrice",
            "ContractedUnitPrice",
            "PricingCategory",
            "SkuId",
            "SkuPriceId",
        ] {
            assert_eq!(x[c], "", "{c}");
        }
        // Tiers: 100 GPU-hours at 2.50 (60 + 40 over two projects), 20 at 2.00.
        let tier2: Vec<_> = of_kind("usage").into_iter().filter(|r| r["ListUnitPrice"] == "2.0000").collect();
        assert_eq!(tier2.len(), 1);
        assert_eq!(tier2[0]["PricingQuantity"], "20.000000");
        assert_eq!(tier2[0]["SkuPriceId"], "nvidia-h100-sxm:usage:2:2.00");
    }

    #[test]
    fn late_lines_and_credit_notes_are_corrections_in_their_usage_period() {
        let (docs, csv) = focus();
        let (_, rows) = parse(&csv);
        let (invoice, credit) = (&docs[0], &docs[1]);
        assert_eq!(credit.type_code, TYPE_CREDIT_NOTE);
        let oct = p("2026-10");
        for r in rows.iter().filter(|r| r["InvoiceId"] == invoice.number && r["ChargeCategory"] != "Tax") {
            if r["x_LateUsage"] == "true" {
                assert_eq!(r["ChargeClass"], "Correction");
                assert_eq!(r["ChargePeriodStart"], instant(oct.start()));
                assert_eq!(r["ChargePeriodEnd"], instant(oct.end()));
                assert_eq!(r["x_UsagePeriod"], "2026-10");
                assert_eq!(r["BilledCost"], "12.50");
            } else {
                assert_eq!(r["ChargeClass"], "");
                assert_eq!(r["ChargePeriodStart"], "2026-10-31T23:00:00Z");
            }
            assert_eq!(r["x_DocumentType"], "380");
            assert_eq!(r["x_CorrectedInvoiceId"], "");
        }
        let credited: Vec<_> = rows.iter().filter(|r| r["InvoiceId"] == credit.number).collect();
        assert_eq!(credited.len(), 2);
        let sep_invoice = credit.corrects.as_ref().unwrap().number.clone();
        for r in &credited {
            assert_eq!(r["ChargeClass"], "Correction");
            assert_eq!(r["x_DocumentType"], "381");
            assert_eq!(r["x_CorrectedInvoiceId"], sep_invoice);
            assert_eq!(r["ChargePeriodStart"], "2026-08-31T22:00:00Z");
        }
        let line = credited.iter().find(|r| r["ChargeCategory"] == "Usage").unwrap();
        assert_eq!(line["BilledCost"], "-15.00");
        assert_eq!(line["PricingQuantity"], "-6.000000");
        assert_eq!(line["ConsumedQuantity"], "-6.000000");
        assert_eq!(line["x_GpuSeconds"], "-21600");
        let tax = credited.iter().find(|r| r["ChargeCategory"] == "Tax").unwrap();
        assert_eq!(tax["BilledCost"], "-2.85");
    }

    #[test]
    fn tax_rows_have_no_pricing() {
        let (docs, csv) = focus();
        let (_, rows) = parse(&csv);
        let taxes: Vec<_> = rows.iter().filter(|r| r["ChargeCategory"] == "Tax").collect();
        assert_eq!(taxes.len(), docs.len());
        for (t, doc) in taxes.iter().zip(&docs) {
            assert_eq!(t["InvoiceId"], doc.number);
            assert_eq!(t["BilledCost"], (doc.sign() * doc.vat_total).to_string());
            assert_eq!(t["ChargeFrequency"], "One-Time");
            assert_eq!(t["ServiceCategory"], "Other");
            assert_eq!(t["ServiceName"], TAX_SERVICE_NAME);
            assert_eq!(t["ChargeDescription"], "Value added tax, category S, rate 19.00 %");
            assert_eq!((t["x_TaxCategory"].as_str(), t["x_TaxRate"].as_str()), ("S", "19.00"));
            for c in [
                "PricingQuantity",
                "PricingUnit",
                "ConsumedQuantity",
                "ConsumedUnit",
                "ListUnitPrice",
                "ContractedUnitPrice",
                "PricingCategory",
                "SkuId",
                "SkuPriceId",
                "SubAccountId",
                "x_ChargeKind",
            ] {
                assert_eq!(t[c], "", "{c}");
            }
        }
    }

    #[test]
    fn exempt_documents_still_have_a_zero_tax_row() {
        let mut docs = november_documents();
        let doc = &mut docs[0];
        let (vat, net, tax, gross) = crate::billing::invoice::totals(VatTreatment::NotTaxable, &doc.lines);
        (doc.vat, doc.net_total, doc.vat_total, doc.gross_total) = (vat, net, tax, gross);
        let csv = focus_csv(&docs[..1], p("2026-11"));
        let (_, rows) = parse(&csv);
        let t = rows.iter().find(|r| r["ChargeCategory"] == "Tax").unwrap();
        assert_eq!(t["BilledCost"], "0.00");
        assert!(t["ChargeDescription"].starts_with("Value added tax, category O, no rate: Not subject to VAT"));
        assert_eq!((t["x_TaxCategory"].as_str(), t["x_TaxRate"].as_str()), ("O", ""));
        assert_eq!(billed_cost_by_invoice(&csv)[&docs[0].number], docs[0].gross_total.amount());
    }

    #[test]
    fn text_cannot_become_a_formula() {
        let (_, csv) = focus();
        let (_, rows) = parse(&csv);
        let mut hostile = 0;
        for r in &rows {
            for (column, cell) in r {
                match cell.chars().next() {
                    Some('=' | '+' | '@' | '\t' | '\r' | '|' | '%') => panic!("{column}: {cell:?} is not escaped"),
                    Some('-') => assert!(crate::billing::dec::parse(cell).is_ok(), "{column}: {cell:?}"),
                    _ => {}
                }
            }
            assert!(r["BillingAccountName"].starts_with("'=HYPERLINK("));
            if r["SubAccountId"] == format!("'{HOSTILE_PROJECT}") {
                assert_eq!(r["SubAccountName"], r["SubAccountId"]);
                hostile += 1;
            }
        }
        assert_eq!(hostile, 1);
    }
}
