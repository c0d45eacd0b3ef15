use super::rows::instant;
use super::*;
use crate::billing::close::{plan_close, CloseInput};
use crate::billing::invoice::TYPE_CREDIT_NOTE;
use crate::billing::rating::LineKind;
use crate::billing::rating::UsageRow;
use crate::billing::reference::{
    BillingProfile, Contract, PriceList, PriceTier, Reference, ReferenceState, Seller, VatTreatment,
};
use chrono::TimeZone;
use chrono::Utc;
use std::collections::BTreeMap;
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
    let list = |sku: &str, tiers: &[(&str, &str)]| PriceList {
        sku: sku.into(),
        mig_profile: None,
        effective_from: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        currency: "EUR".into(),
        tiers: tiers
            .iter()
            .map(|(from, price)| PriceTier { from_gpu_hours: d(from), eur_per_gpu_hour: d(price) })
            .collect(),
    };
    let prices = list("nvidia-h100-sxm", &[("0", "2.50"), ("100", "2.00")]);
    // The published prices of the contracted SKUs: B200's second tier starts within the
    // commitment of 50 GPU-hours.
    let b200 = list("nvidia-b200", &[("0", "4.90"), ("40", "4.60")]);
    let gb200 = list("nvidia-gb200", &[("0", "6.50")]);
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
        Reference::PriceList(b200),
        Reference::PriceList(gb200),
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
        mig_profile: None,
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
    let rows =
        r.records().map(|rec| header.iter().cloned().zip(rec.unwrap().iter().map(String::from)).collect()).collect();
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
    // One row per line and a tax row per document, less the one discount folded into its rows.
    let lines: usize = docs.iter().map(|d| d.lines.len() + 1).sum();
    assert_eq!(rows.len(), lines - 1);
    for r in &rows {
        for c in ["EffectiveCost", "ContractedCost"] {
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
    for kind in ["usage", "commitment", "overage", "minimum_top_up"] {
        for r in of_kind(kind) {
            assert_eq!(r["ChargeCategory"], "Usage", "{kind}");
            assert_eq!(r["ChargeFrequency"], "Usage-Based");
            assert_eq!(r["PricingUnit"], GPU_HOURS);
            assert!(r["SkuPriceId"].starts_with(&format!("{}:{kind}:", r["SkuId"])), "{}", r["SkuPriceId"]);
            if kind != "minimum_top_up" {
                assert_eq!(r["ConsumedQuantity"], r["PricingQuantity"]);
                assert_eq!(r["ConsumedUnit"], GPU_HOURS);
                assert!(!r["SubAccountId"].is_empty());
            }
        }
    }
    // List price: a list-price line's is its tier's, and nothing is taken off it.
    for r in of_kind("usage").into_iter().filter(|r| r["x_LateUsage"] == "false") {
        assert_eq!(r["PricingCategory"], "Standard");
        assert_eq!(d(&r["ListUnitPrice"]), d(&r["ContractedUnitPrice"]));
        assert_eq!(r["ListCost"], r["BilledCost"]);
        assert_eq!(r["CommitmentDiscountId"], "");
    }
    // 60 of 50 committed GPU-hours of B200 at 4.00 and 5.00, 10 % discount: the published
    // list prices are 4.90 up to 40 GPU-hours, 4.60 beyond.
    let commitment = of_kind("commitment");
    assert_eq!(commitment.len(), 2);
    let b200 = commitment.iter().find(|r| r["x_ContractId"] == "C-B200").unwrap();
    assert_eq!(b200["PricingCategory"], "Committed");
    assert_eq!(b200["PricingQuantity"], "50.000000");
    assert_eq!(b200["ListCost"], "242.00", "40 h × 4.90 + 10 h × 4.60");
    assert_eq!(b200["ListUnitPrice"], "4.84");
    // Its net of 200.00 less its share of the discount (200 / 250 of 25.00).
    assert_eq!(b200["BilledCost"], "180.00");
    assert_eq!(b200["ContractedUnitPrice"], "3.6", "4.00 less 10 %");
    assert!(
        b200["ChargeDescription"].ends_with("less the contract's 10 % discount (-20.00 EUR)"),
        "{}",
        b200["ChargeDescription"]
    );
    let expected = [
        ("CommitmentDiscountId", "C-B200"),
        ("CommitmentDiscountName", "Contract C-B200: committed GPU-hours of nvidia-b200"),
        ("CommitmentDiscountCategory", "Usage"),
        ("CommitmentDiscountType", COMMITMENT_TYPE),
        ("CommitmentDiscountStatus", "Used"),
        ("CommitmentDiscountQuantity", "50.000000"),
        ("CommitmentDiscountUnit", GPU_HOURS),
    ];
    for (c, v) in expected {
        assert_eq!(b200[c], v, "{c}");
    }
    let gb200 = commitment.iter().find(|r| r["x_ContractId"] == "C-GB200").unwrap();
    assert_eq!((gb200["ListUnitPrice"].as_str(), gb200["ListCost"].as_str()), ("6.50", "65.00"));
    assert_eq!((gb200["ContractedUnitPrice"].as_str(), gb200["BilledCost"].as_str()), ("6.0000", "60.00"));
    // The overage is outside the commitment: standard pricing at the contract's rate.
    let overage = of_kind("overage");
    assert_eq!(overage.len(), 1);
    let o = overage[0];
    assert_eq!((o["PricingQuantity"].as_str(), o["BilledCost"].as_str()), ("10.000000", "45.00"));
    assert_eq!((o["ListUnitPrice"].as_str(), o["ListCost"].as_str()), ("4.60", "46.00"));
    assert_eq!((o["PricingCategory"].as_str(), o["CommitmentDiscountId"].as_str()), ("Standard", ""));
    assert_eq!(o["ContractedUnitPrice"], "4.5");
    // The unused commitment: FOCUS's "Unused" usage row, nothing consumed.
    let top_up = of_kind("minimum_top_up");
    assert_eq!(top_up.len(), 1);
    let t = top_up[0];
    assert_eq!((t["ConsumedQuantity"].as_str(), t["ConsumedUnit"].as_str()), ("", ""));
    assert_eq!((t["PricingQuantity"].as_str(), t["PricingCategory"].as_str()), ("90.000000", "Committed"));
    assert_eq!(
        (t["CommitmentDiscountStatus"].as_str(), t["CommitmentDiscountQuantity"].as_str()),
        ("Unused", "90.000000")
    );
    assert_eq!(t["CommitmentDiscountId"], "C-GB200");
    assert_eq!((t["ListUnitPrice"].as_str(), t["ContractedUnitPrice"].as_str()), ("6.00", "6.0000"));
    assert_eq!((t["BilledCost"].as_str(), t["ListCost"].as_str()), ("540.00", "540.00"));
    // The discount is folded into the rows it reduces: no row of its own, and the invoice's
    // rows still add up to it.
    assert!(of_kind("discount").is_empty());
    let contract: Decimal = rows
        .iter()
        .filter(|r| r["x_ContractId"] == "C-B200" && r["InvoiceId"] == invoice.number)
        .map(|r| d(&r["BilledCost"]))
        .sum();
    assert_eq!(contract, d("225.00"), "200.00 + 50.00 - 25.00");
    // Tiers: 100 GPU-hours at 2.50 (60 + 40 over two projects), 20 at 2.00.
    let tier2: Vec<_> = of_kind("usage").into_iter().filter(|r| r["ListUnitPrice"] == "2.00").collect();
    assert_eq!(tier2.len(), 1);
    assert_eq!(tier2[0]["PricingQuantity"], "20.000000");
    assert_eq!(tier2[0]["SkuPriceId"], "nvidia-h100-sxm:usage:2:2.00");
}

/// FOCUS 1.2's rules that one row can break, on every row.
#[test]
fn every_row_keeps_the_focus_rules() {
    let (_, csv) = focus();
    let (_, rows) = parse(&csv);
    let allowed = |c: &str, v: &str, values: &[&str]| assert!(v.is_empty() || values.contains(&v), "{c}: {v}");
    for r in &rows {
        let correction = r["ChargeClass"] == "Correction";
        let usage = r["ChargeCategory"] == "Usage";
        allowed("ChargeCategory", &r["ChargeCategory"], &["Usage", "Purchase", "Tax", "Credit", "Adjustment"]);
        allowed("PricingCategory", &r["PricingCategory"], &["Standard", "Dynamic", "Committed", "Other"]);
        allowed("CommitmentDiscountStatus", &r["CommitmentDiscountStatus"], &["Used", "Unused"]);
        allowed("CommitmentDiscountCategory", &r["CommitmentDiscountCategory"], &["Spend", "Usage"]);
        assert!(!r["ListCost"].is_empty(), "ListCost is never null");
        let id = !r["CommitmentDiscountId"].is_empty();
        for c in ["CommitmentDiscountCategory", "CommitmentDiscountType", "CommitmentDiscountName"] {
            assert_eq!(id, !r[c].is_empty(), "{c} null exactly when CommitmentDiscountId is: {r:?}");
        }
        if usage && !correction {
            for c in ["ListUnitPrice", "ContractedUnitPrice", "PricingCategory"] {
                assert!(!r[c].is_empty(), "{c} not null on a usage row: {r:?}");
            }
            // List unit price × pricing quantity is the list cost (to the cent).
            let list = d(&r["ListUnitPrice"]) * d(&r["PricingQuantity"]);
            assert!((list - d(&r["ListCost"])).abs() < d("0.01"), "{r:?}");
            assert!(d(&r["ListCost"]) >= d(&r["BilledCost"]) || r["PricingCategory"] == "Committed", "{r:?}");
        }
        if usage && id {
            assert!(!r["CommitmentDiscountStatus"].is_empty());
            assert_eq!(r["PricingCategory"], "Committed");
            if !correction {
                assert!(!r["CommitmentDiscountQuantity"].is_empty() && !r["CommitmentDiscountUnit"].is_empty());
            }
        }
        if r["ChargeCategory"] == "Tax" {
            for c in ["ListUnitPrice", "ContractedUnitPrice", "PricingCategory", "CommitmentDiscountId"] {
                assert_eq!(r[c], "", "{c}");
            }
        }
    }
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
            "CommitmentDiscountId",
            "CommitmentDiscountStatus",
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

#[test]
fn a_mig_slice_row_names_its_profile() {
    let nov = p("2026-11");
    let mut input = CloseInput { refs: refs(), ..CloseInput::default() };
    let slice_list = PriceList {
        sku: "nvidia-h100-sxm".into(),
        mig_profile: Some("1g.10gb".into()),
        effective_from: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        currency: "EUR".into(),
        tiers: vec![PriceTier { from_gpu_hours: d("0"), eur_per_gpu_hour: d("0.40") }],
    };
    input.refs.apply(Reference::PriceList(slice_list), Uuid::nil());
    let slice = UsageRow { mig_profile: Some("1g.10gb".into()), ..row("nvidia-h100-sxm", "train", nov, 5, 3) };
    let usage = vec![row("nvidia-h100-sxm", "train", nov, 5, 2), slice];
    input.usage.entry(TENANT.into()).or_default().insert(nov, usage);
    input.recheck = Some(BTreeSet::new());
    let docs = plan_close(nov, nov.end() + chrono::Duration::days(1), Uuid::nil(), &input).unwrap();
    let (_, rows) = parse(&focus_csv(&docs, nov));
    let usage: Vec<_> = rows.iter().filter(|r| r["x_ChargeKind"] == "usage").collect();
    assert_eq!(usage.len(), 2, "{usage:#?}");
    let slice = usage.iter().find(|r| r["x_MigProfile"] == "1g.10gb").expect("the slice's row");
    assert_eq!(slice["SkuPriceId"], "nvidia-h100-sxm/1g.10gb:usage:1:0.40");
    assert_eq!(d(&slice["BilledCost"]), d("1.20"));
    let whole = usage.iter().find(|r| r["x_MigProfile"].is_empty()).expect("the whole GPU's row");
    assert_eq!(whole["SkuPriceId"], "nvidia-h100-sxm:usage:1:2.50");
}
