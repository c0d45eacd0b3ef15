//! XRechnung 3.0 export against the official rules, without a database: documents planned by the
//! pure close (`domain::billing::close::plan_close`) from hand-made reference data and usage, two
//! closes in a row (the second with late usage and a usage decrease for the first period), every
//! document written as UBL and checked in one run of the offline validator (UBL 2.1 schema, CEN
//! EN 16931 Schematron, KoSIT XRechnung Schematron).
//!
//! The validator is run by `integration::validate_xrechnung`: `$GPULEDGER_PYTHON` (default
//! `<repo>/.services/venv/bin/python`, made by `scripts/python.sh`) runs `$GPULEDGER_EINVOICE_RULES/validate.py` (default
//! `<repo>/../shared/einvoice-rules`). Missing either is a failure, not a skip. The documents are
//! written to a fresh temporary directory, kept when the validator refuses one of them or when
//! `GPULEDGER_EINVOICE_KEEP` is set.

use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::billing::close::{plan_close, CloseInput};
use domain::billing::invoice::{InvoiceDoc, TYPE_CREDIT_NOTE, TYPE_INVOICE};
use domain::billing::period::Period;
use domain::billing::rating::{LineKind, UsageRow};
use domain::billing::reference::{
    BillingProfile, Contract, PriceList, PriceTier, ReferenceState, Seller, VatTreatment,
};
use domain::billing::ubl::xrechnung;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use uuid::Uuid;

const H100: &str = "nvidia-h100-sxm";
const L40S: &str = "nvidia-l40s";

fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn nov() -> Period {
    Period::parse("2026-11").unwrap()
}

fn dec() -> Period {
    Period::parse("2026-12").unwrap()
}

fn seller() -> Seller {
    Seller {
        legal_name: "Souveräne KI-Cloud GmbH & Co. KG".into(),
        street: "Leopoldstraße 42".into(),
        city: "München".into(),
        postal_code: "80802".into(),
        country: "DE".into(),
        vat_id: "DE123456789".into(),
        tax_number: "143/123/45678".into(),
        contact_name: "Erika Musterfrau".into(),
        contact_phone: "+49 89 12345678".into(),
        contact_email: "billing@souveraene-ki-cloud.de".into(),
        electronic_address: "rechnung@souveraene-ki-cloud.de".into(),
        iban: "DE02120300000000202051".into(),
        series_prefix: "GL".into(),
        registered_office: Some("München".into()),
        register_court: Some("Amtsgericht München".into()),
        register_number: Some("HRA 98765".into()),
        managing_directors: vec!["Erika Musterfrau".into(), "Max Mustermann".into()],
    }
}

fn price_list(sku: &str, from: DateTime<Utc>, tiers: &[(&str, &str)]) -> PriceList {
    PriceList {
        sku: sku.into(),
        mig_profile: None,
        effective_from: from,
        currency: "EUR".into(),
        tiers: tiers.iter().map(|(f, p)| PriceTier { from_gpu_hours: d(f), eur_per_gpu_hour: d(p) }).collect(),
    }
}

#[allow(clippy::too_many_arguments)]
fn profile(
    tenant: &str,
    name: &str,
    street: &str,
    city: &str,
    zip: &str,
    country: &str,
    vat_id: Option<&str>,
    treatment: VatTreatment,
    by_project: bool,
) -> BillingProfile {
    BillingProfile {
        tenant_id: tenant.into(),
        legal_name: name.into(),
        street: street.into(),
        city: city.into(),
        postal_code: zip.into(),
        country: country.into(),
        vat_id: vat_id.map(Into::into),
        vat_treatment: treatment,
        buyer_reference: format!("PO-{tenant}-2026"),
        payment_terms_days: 14,
        invoice_email: format!("invoices@{tenant}.example.com"),
        lines_by_project: by_project,
    }
}

fn refs() -> ReferenceState {
    let mut r = ReferenceState { seller: Some(seller()), ..Default::default() };
    let lists = [
        price_list(H100, at(2026, 1, 1, 0), &[("0", "2.10"), ("100", "1.90")]),
        // A mid-month price change: from 15 November on.
        price_list(H100, at(2026, 11, 15, 0), &[("0", "2.2500"), ("100", "1.9875")]),
        price_list(L40S, at(2026, 1, 1, 0), &[("0", "0.95"), ("50", "0.8125")]),
    ];
    for p in lists {
        p.validate().unwrap();
        r.prices.entry(p.sku.clone()).or_default().insert(p.effective_from, p);
    }
    let profiles = [
        profile(
            "de-lab",
            "Müller & Töchter <Forschung> GmbH",
            "Friedrichstraße 100",
            "Berlin",
            "10117",
            "DE",
            Some("DE987654321"),
            VatTreatment::Domestic,
            true,
        ),
        profile(
            "fr-ia",
            "Exemple IA SAS",
            "12 Rue de Rivoli",
            "Paris",
            "75004",
            "FR",
            Some("FR32123456789"),
            VatTreatment::ReverseCharge,
            false,
        ),
        profile(
            "us-ai",
            "Example \"AI\" Inc.",
            "500 Market Street",
            "San Francisco",
            "94105",
            "US",
            None,
            VatTreatment::NotTaxable,
            false,
        ),
        profile(
            "contract-co",
            "Kontrakt Rechenzentrum AG",
            "Königsallee 1",
            "Düsseldorf",
            "40212",
            "DE",
            Some("DE111222333"),
            VatTreatment::Domestic,
            false,
        ),
    ];
    for (i, p) in profiles.into_iter().enumerate() {
        p.validate().unwrap();
        r.profiles.insert(p.tenant_id.clone(), (p, Uuid::from_u128(100 + i as u128)));
    }
    let contract = Contract {
        contract_id: "C-2026-007".into(),
        tenant_id: "contract-co".into(),
        sku: H100.into(),
        committed_gpu_hours_per_month: d("200"),
        committed_eur_per_gpu_hour: d("1.80"),
        overage_eur_per_gpu_hour: d("2.05"),
        discount_percent: d("5"),
        start_month: nov(),
        end_month: dec(),
    };
    contract.validate().unwrap();
    r.contracts.insert(contract.contract_id.clone(), contract);
    r
}

/// `count` rows of one SKU and project, every `step` hours from `start`.
fn rows(sku: &str, project: &str, start: DateTime<Utc>, count: i64, step: i64, secs: &str) -> Vec<UsageRow> {
    (0..count)
        .map(|i| UsageRow {
            sku: sku.into(),
            project: project.into(),
            hour: start + Duration::hours(i * step),
            gpu_seconds: d(secs),
            mig_profile: None,
        })
        .collect()
}

type Usage = BTreeMap<String, BTreeMap<Period, Vec<UsageRow>>>;

fn november_usage() -> Usage {
    let mut u = Usage::new();
    let mut put = |tenant: &str, r: Vec<UsageRow>| {
        u.entry(tenant.to_string()).or_default().entry(nov()).or_default().extend(r);
    };
    // 200 GPU-hours of training across the price change and the tier boundary, plus evaluation.
    put("de-lab", rows(H100, "train", at(2026, 11, 2, 0), 50, 6, "14400"));
    put("de-lab", rows(H100, "eval&test", at(2026, 11, 2, 3), 40, 12, "1234.5"));
    put("fr-ia", rows(H100, "default", at(2026, 11, 3, 1), 80, 5, "7200.25"));
    put("fr-ia", rows(L40S, "default", at(2026, 11, 3, 2), 30, 7, "10800"));
    put("us-ai", rows(H100, "inference", at(2026, 11, 1, 0), 120, 3, "3600"));
    // 240 GPU-hours against a commitment of 200: commitment, overage, discount.
    put("contract-co", rows(H100, "llm", at(2026, 11, 1, 5), 80, 4, "10800"));
    u
}

fn november<'a>(u: &'a mut Usage, tenant: &str) -> &'a mut Vec<UsageRow> {
    u.get_mut(tenant).unwrap().get_mut(&nov()).unwrap()
}

fn write_all(dir: &Path, docs: &[InvoiceDoc]) -> Vec<PathBuf> {
    docs.iter()
        .map(|doc| {
            let xml = xrechnung(doc);
            assert_eq!(xml, xrechnung(doc), "{}: the XML is deterministic", doc.number);
            let path = dir.join(format!("{}.xml", doc.number));
            std::fs::write(&path, xml.as_bytes()).unwrap();
            path
        })
        .collect()
}

#[test]
fn xrechnung_documents_pass_the_official_rules() {
    let refs = refs();

    // Close November.
    let first_input = CloseInput { refs: refs.clone(), usage: november_usage(), ..Default::default() };
    let first = plan_close(nov(), at(2026, 12, 1, 8), Uuid::from_u128(1), &first_input).unwrap();
    assert_eq!(first.len(), 4, "one invoice per tenant");
    assert!(first.iter().all(|d| d.type_code == TYPE_INVOICE));

    // Close December: late November usage for fr-ia and contract-co, less November usage for
    // us-ai (rows withdrawn) and de-lab (a row corrected down), and December's own usage.
    let mut usage = november_usage();
    november(&mut usage, "fr-ia").extend(rows(H100, "default", at(2026, 11, 28, 0), 10, 1, "3599.5"));
    november(&mut usage, "contract-co").extend(rows(H100, "llm", at(2026, 11, 29, 2), 12, 2, "3600"));
    november(&mut usage, "us-ai").truncate(115);
    november(&mut usage, "de-lab").iter_mut().find(|r| r.project == "eval&test").unwrap().gpu_seconds = d("34.5");
    let mut put_dec = |t: &str, r: Vec<UsageRow>| usage.get_mut(t).unwrap().entry(dec()).or_default().extend(r);
    put_dec("de-lab", rows(H100, "train", at(2026, 12, 1, 0), 30, 8, "7200"));
    put_dec("us-ai", rows(L40S, "inference", at(2026, 12, 2, 0), 60, 4, "3600"));
    // 50 of the 200 committed GPU-hours: a minimum-charge top-up.
    put_dec("contract-co", rows(H100, "llm", at(2026, 12, 3, 0), 25, 6, "7200"));
    let second_input =
        CloseInput { refs, usage, closed: BTreeSet::from([nov()]), issued: first.clone(), recheck: None };
    let second = plan_close(dec(), at(2027, 1, 2, 9), Uuid::from_u128(2), &second_input).unwrap();

    let docs: Vec<InvoiceDoc> = first.iter().chain(&second).cloned().collect();
    let invoices = || docs.iter().filter(|d| d.type_code == TYPE_INVOICE);
    for category in ["S", "AE", "O"] {
        assert!(invoices().any(|d| d.vat.category == category), "an invoice of VAT category {category}");
    }
    let credits: Vec<&InvoiceDoc> = docs.iter().filter(|d| d.type_code == TYPE_CREDIT_NOTE).collect();
    assert!(credits.len() >= 2, "credit notes for us-ai and de-lab: {credits:#?}");
    for c in &credits {
        let original = c.corrects.as_ref().expect("a credit note names the invoice it corrects");
        assert!(first.iter().any(|d| d.number == original.number && d.tenant_id == c.tenant_id));
        assert_eq!(c.period, nov());
    }
    assert!(credits.iter().any(|c| c.vat.category == "O"), "a credit note of category O");
    let late: Vec<&InvoiceDoc> = invoices().filter(|d| d.lines.iter().any(|l| l.late)).collect();
    assert!(late.iter().any(|d| d.tenant_id == "fr-ia"), "fr-ia's late usage on its December invoice");
    // contract-co's late overage is billed; the discount it earns is credited, never netted.
    assert!(late.iter().any(|d| d.tenant_id == "contract-co"), "contract-co's late overage on its December invoice");
    assert!(
        credits.iter().any(|c| c.tenant_id == "contract-co"
            && c.lines.iter().all(|l| l.charge.kind == LineKind::Discount || l.charge.kind == LineKind::MinimumTopUp)),
        "contract-co's larger discount of November on a credit note"
    );
    for d in &docs {
        for l in d.lines.iter().filter(|l| l.late || d.is_credit_note()) {
            assert!(!l.net.is_negative() && l.gpu_seconds >= Decimal::ZERO, "{} line {}: {l:?}", d.number, l.line_no);
        }
    }
    assert!(
        invoices().any(|d| d.lines.iter().any(|l| l.charge.kind == LineKind::MinimumTopUp)),
        "contract-co's minimum charge in December"
    );

    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("gpuledger-einvoice-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = write_all(&dir, &docs);
    for (doc, file) in docs.iter().zip(&files) {
        let xml = std::fs::read_to_string(file).unwrap();
        assert_eq!(xml.contains("<cbc:DueDate>"), !doc.is_credit_note(), "{}", file.display());
        // BG-14 in the header and BG-26 on every line.
        assert_eq!(xml.matches("<cac:InvoicePeriod>").count(), doc.lines.len() + 1, "{}", file.display());
        assert!(xml.contains("&amp;") || !doc.seller.legal_name.contains('&'), "escaped seller name");
    }

    let report = integration::validate_xrechnung(&files)
        .unwrap_or_else(|e| panic!("{e}\n(the files are kept in {})", dir.display()));
    println!("{report}");
    assert_eq!(report.matches(": valid (").count(), files.len(), "{report}");
    if std::env::var_os("GPULEDGER_EINVOICE_KEEP").is_some() {
        println!("documents kept in {}", dir.display());
    } else {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
