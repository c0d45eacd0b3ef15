//! Properties of rating and closing, over generated usage, price lists, contracts, late usage and
//! corrections.

use super::close::{plan_close, CloseInput};
use super::invoice::InvoiceDoc;
use super::period::Period;
use super::rating::{exact_total, rate_period, LineKind, UsageRow, SECONDS_PER_HOUR};
use super::reference::*;
use crate::money::Money;
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

const SKUS: &[&str] = &["nvidia-h100-sxm", "nvidia-b200"];
const TENANTS: &[&str] = &["de-bank", "fr-robot", "us-search"];

fn seller() -> Seller {
    Seller {
        legal_name: "Souveräne KI-Cloud Deutschland GmbH".into(),
        street: "Ridlerstraße 55".into(),
        city: "München".into(),
        postal_code: "80339".into(),
        country: "DE".into(),
        vat_id: "DE123456789".into(),
        tax_number: "143/123/45678".into(),
        contact_name: "Billing".into(),
        contact_phone: "+49 89 1".into(),
        contact_email: "billing@example.com".into(),
        electronic_address: "e-invoice@example.com".into(),
        iban: "DE02120300000000202051".into(),
        series_prefix: "GL".into(),
        registered_office: Some("München".into()),
        register_court: Some("Amtsgericht München".into()),
        register_number: Some("HRB 276543".into()),
        managing_directors: vec!["Dr. Johanna Reiter".into()],
    }
}

fn profile(tenant: &str, by_project: bool) -> BillingProfile {
    let (country, vat_id, treatment) = match tenant {
        "de-bank" => ("DE", Some("DE811111111"), VatTreatment::Domestic),
        "fr-robot" => ("FR", Some("FR32123456789"), VatTreatment::ReverseCharge),
        _ => ("US", None, VatTreatment::NotTaxable),
    };
    BillingProfile {
        tenant_id: tenant.into(),
        legal_name: format!("{tenant} Ltd"),
        street: "Street 1".into(),
        city: "City".into(),
        postal_code: "12345".into(),
        country: country.into(),
        vat_id: vat_id.map(str::to_string),
        vat_treatment: treatment,
        buyer_reference: "REF-1".into(),
        payment_terms_days: 30,
        invoice_email: "ap@example.com".into(),
        lines_by_project: by_project,
    }
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn price(sku: &str, from: DateTime<Utc>, tiers: &[(&str, &str)]) -> PriceList {
    PriceList {
        sku: sku.into(),
        mig_profile: None,
        effective_from: from,
        currency: "EUR".into(),
        tiers: tiers.iter().map(|(f, p)| PriceTier { from_gpu_hours: d(f), eur_per_gpu_hour: d(p) }).collect(),
    }
}

fn p(s: &str) -> Period {
    Period::parse(s).unwrap()
}

/// Reference data: two SKUs with tiers, a price change on 16 October, and optionally a contract.
pub(crate) fn refs(by_project: bool, contract: bool) -> ReferenceState {
    let mut s = ReferenceState::default();
    let id = Uuid::nil();
    s.apply(Reference::Seller(seller()), id);
    let jan = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    s.apply(Reference::PriceList(price("nvidia-h100-sxm", jan, &[("0", "2.90"), ("2", "2.65")])), id);
    s.apply(Reference::PriceList(price("nvidia-b200", jan, &[("0", "4.90"), ("3", "4.60"), ("6", "4.30")])), id);
    let mid = p("2026-10").start() + Duration::days(15);
    s.apply(Reference::PriceList(price("nvidia-h100-sxm", mid, &[("0", "2.70"), ("2", "2.45")])), id);
    for t in TENANTS {
        s.apply(Reference::Profile(profile(t, by_project)), Uuid::from_u128(t.len() as u128));
    }
    if contract {
        s.apply(
            Reference::Contract(Contract {
                contract_id: "C-1".into(),
                tenant_id: "de-bank".into(),
                sku: "nvidia-b200".into(),
                committed_gpu_hours_per_month: d("3"),
                committed_eur_per_gpu_hour: d("4.10"),
                overage_eur_per_gpu_hour: d("4.55"),
                discount_percent: d("7.5"),
                start_month: p("2026-09"),
                end_month: p("2026-12"),
            }),
            id,
        );
        // A second tenant's contract, reverse charge, with a commitment the usage often misses.
        s.apply(
            Reference::Contract(Contract {
                contract_id: "C-2".into(),
                tenant_id: "fr-robot".into(),
                sku: "nvidia-h100-sxm".into(),
                committed_gpu_hours_per_month: d("2.5"),
                committed_eur_per_gpu_hour: d("2.35"),
                overage_eur_per_gpu_hour: d("2.80"),
                discount_percent: d("12"),
                start_month: p("2026-09"),
                end_month: p("2026-11"),
            }),
            id,
        );
    }
    s
}

/// (tenant, sku, project, hour offset within the period, GPU-seconds with microseconds)
fn usage_strategy(max: usize) -> impl Strategy<Value = Vec<(usize, usize, usize, i64, i64)>> {
    prop::collection::vec((0..TENANTS.len(), 0..SKUS.len(), 0..2usize, 0..740i64, 0..3_600_000_000i64), 0..max)
}

fn rows_of(period: Period, raw: &[(usize, usize, usize, i64, i64)], tenant: usize) -> Vec<UsageRow> {
    raw.iter()
        .filter(|r| r.0 == tenant)
        .map(|&(_, s, pr, h, us)| UsageRow {
            sku: SKUS[s].into(),
            project: format!("proj-{pr}"),
            hour: period.start() + Duration::hours(h.min(period.hours() - 1)),
            gpu_seconds: Decimal::new(us, 6),
            mig_profile: None,
        })
        .collect()
}

/// Raw usage of the three closes: September's, late September's, October's, and corrections of
/// September rows (tenant, row, percent taken away; every other one moves it to the other SKU).
type Raw = Vec<(usize, usize, usize, i64, i64)>;
type Known = BTreeMap<(usize, Period), Vec<UsageRow>>;

/// Closes September, then (after late usage and corrections of September) October, then an idle
/// November, as the store would: returns every issued document and the usage known at the end.
fn close_three_months(
    refs: &ReferenceState,
    first: &Raw,
    late: &Raw,
    second: &Raw,
    corrections: &[(usize, usize, u32)],
) -> Result<(Vec<InvoiceDoc>, Known), TestCaseError> {
    let (sep, oct, nov) = (p("2026-09"), p("2026-10"), p("2026-11"));
    let mut known: Known = BTreeMap::new();
    for t in 0..TENANTS.len() {
        known.insert((t, sep), rows_of(sep, first, t));
    }
    let mut issued: Vec<InvoiceDoc> = Vec::new();
    let mut closed = BTreeSet::new();
    let input_of = |known: &Known, closed: &BTreeSet<Period>, issued: &Vec<InvoiceDoc>| {
        let mut usage: BTreeMap<String, BTreeMap<Period, Vec<UsageRow>>> = BTreeMap::new();
        for ((t, q), rows) in known {
            if !rows.is_empty() {
                usage.entry(TENANTS[*t].to_string()).or_default().insert(*q, rows.clone());
            }
        }
        // Re-rate what the store would: the closed periods whose usage per SKU changed.
        let mut seconds = BTreeMap::new();
        for ((t, q), rows) in known {
            for r in rows {
                *seconds.entry((TENANTS[*t].to_string(), *q, r.sku.clone())).or_insert(Decimal::ZERO) += r.gpu_seconds;
            }
        }
        let recheck = Some(super::close::recheck_set(&seconds, closed, issued));
        CloseInput { refs: refs.clone(), usage, closed: closed.clone(), issued: issued.clone(), recheck }
    };
    let at = |q: Period| q.end() + Duration::hours(30);
    // Close September.
    let docs = plan_close(sep, at(sep), Uuid::from_u128(1), &input_of(&known, &closed, &issued)).unwrap();
    let again = plan_close(sep, at(sep), Uuid::from_u128(1), &input_of(&known, &closed, &issued)).unwrap();
    prop_assert_eq!(
        docs.iter().map(InvoiceDoc::canonical_bytes).collect::<Vec<_>>(),
        again.iter().map(InvoiceDoc::canonical_bytes).collect::<Vec<_>>()
    );
    issued.extend(docs);
    closed.insert(sep);
    // Late September usage and corrections (taking GPU-seconds away), then October's usage.
    for t in 0..TENANTS.len() {
        known.get_mut(&(t, sep)).unwrap().extend(rows_of(sep, late, t));
        known.insert((t, oct), rows_of(oct, second, t));
    }
    for &(t, i, pct) in corrections {
        let rows = known.get_mut(&(t, sep)).unwrap();
        if let Some(r) = rows.get_mut(i) {
            let take = (r.gpu_seconds * Decimal::from(pct) / Decimal::ONE_HUNDRED).round_dp(6);
            r.gpu_seconds -= take;
            // Every other correction moves the GPU-seconds to the other SKU (same total).
            if pct % 2 == 0 {
                let moved =
                    UsageRow { sku: SKUS[usize::from(r.sku == SKUS[0])].to_string(), gpu_seconds: take, ..r.clone() };
                rows.push(moved);
            }
        }
    }
    let docs = plan_close(oct, at(oct), Uuid::from_u128(2), &input_of(&known, &closed, &issued)).unwrap();
    issued.extend(docs);
    closed.insert(oct);
    // And November with nothing new: no late lines, no credit notes.
    let docs = plan_close(nov, at(nov), Uuid::from_u128(3), &input_of(&known, &closed, &issued)).unwrap();
    prop_assert!(docs.iter().all(|d| d.period == nov && d.lines.iter().all(|l| !l.late)));
    issued.extend(docs);

    Ok((issued, known))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Each line is rounded once: the lines' nets differ from the exact rating by at most half a
    /// cent per line.
    #[test]
    fn line_nets_sum_to_the_rated_usage(raw in usage_strategy(60), by_project: bool, contract: bool) {
        let period = p("2026-10");
        let refs = refs(by_project, contract);
        for (t, tenant) in TENANTS.iter().enumerate() {
            let lines = rate_period(tenant, period, &rows_of(period, &raw, t), &refs, by_project).unwrap();
            let nets: Money = lines.values().map(|r| r.net()).sum();
            let bound = Decimal::new(5, 3) * Decimal::from(lines.len());
            prop_assert!((nets - exact_total(&lines)).abs().amount() <= bound);
            for r in lines.values() {
                prop_assert_eq!(r.net().amount().scale(), 2);
            }
        }
    }

    /// Rating depends only on GPU-seconds per SKU, project and hour: however the usage is split
    /// into records and in whatever order they come, the rated lines are identical.
    #[test]
    fn rating_is_invariant_under_any_split(raw in usage_strategy(40), cuts in prop::collection::vec(0u32..=100, 40), seed: u64) {
        let period = p("2026-10");
        let refs = refs(true, true);
        let rows = rows_of(period, &raw, 0);
        let mut split = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            let cut = cuts.get(i).copied().unwrap_or(50);
            let a = (r.gpu_seconds * Decimal::from(cut) / Decimal::ONE_HUNDRED).round_dp(6);
            split.push(UsageRow { gpu_seconds: a, ..r.clone() });
            split.push(UsageRow { gpu_seconds: r.gpu_seconds - a, ..r.clone() });
        }
        // A deterministic shuffle.
        let n = split.len();
        for i in 0..n {
            let j = ((seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64)) % n as u64) as usize;
            split.swap(i, j);
        }
        let whole = rate_period("de-bank", period, &rows, &refs, true).unwrap();
        let parts = rate_period("de-bank", period, &split, &refs, true).unwrap();
        prop_assert_eq!(whole, parts);
    }

    /// With a single flat price the exact rating is additive over any split of the usage.
    #[test]
    fn flat_rating_is_additive(raw in usage_strategy(40), mask in prop::collection::vec(any::<bool>(), 40)) {
        let period = p("2026-11");
        let mut refs = ReferenceState::default();
        let jan = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        for sku in SKUS {
            refs.apply(Reference::PriceList(price(sku, jan, &[("0", "3.1415")])), Uuid::nil());
        }
        let rows = rows_of(period, &raw, 1);
        let (a, b): (Vec<_>, Vec<_>) = rows.iter().cloned().enumerate().partition(|(i, _)| mask.get(*i).copied().unwrap_or(false));
        let a: Vec<UsageRow> = a.into_iter().map(|x| x.1).collect();
        let b: Vec<UsageRow> = b.into_iter().map(|x| x.1).collect();
        // Compared exactly: the numerators (GPU-seconds × EUR per GPU-hour) before the one division.
        let numerator = |rows: &[UsageRow]| -> Decimal {
            rate_period("fr-robot", period, rows, &refs, false).unwrap().values().map(|r| r.numerator).sum()
        };
        let all = numerator(&rows);
        let sum = numerator(&a) + numerator(&b);
        prop_assert_eq!(all, sum);
    }

    /// Late usage, corrections, minimum top-ups and discounts of several tenants are never
    /// netted: an invoice's late lines all bill (no negative GPU-seconds or net), a credit
    /// note's lines all credit, and what the invoices bill less what the credit notes credit is,
    /// per tenant, exactly the rating of all its usage (nothing lost, nothing twice).
    #[test]
    fn no_document_carries_a_line_of_the_wrong_sign(
        first in usage_strategy(30),
        late in usage_strategy(12),
        second in usage_strategy(20),
        corrections in prop::collection::vec((0..TENANTS.len(), 0..30usize, 1u32..=100), 0..6),
        by_project: bool,
    ) {
        let refs = refs(by_project, true);
        let (issued, known) = close_three_months(&refs, &first, &late, &second, &corrections)?;
        for doc in &issued {
            for l in &doc.lines {
                // The one negative line a document may carry: the discount of its own period's
                // charges, on that period's invoice.
                let own_discount = l.charge.kind == LineKind::Discount && !l.late && !doc.is_credit_note();
                let negative = l.net < Money::ZERO || l.gpu_seconds < Decimal::ZERO;
                prop_assert!(own_discount || !negative,
                    "{} {} line {}: {:?} {} s, {} EUR", doc.number, doc.tenant_id, l.line_no, l.charge.kind, l.gpu_seconds, l.net);
            }
        }
        for (t, tenant) in TENANTS.iter().enumerate() {
            let mut rated = Money::ZERO;
            for q in [p("2026-09"), p("2026-10"), p("2026-11")] {
                let rows = known.get(&(t, q)).cloned().unwrap_or_default();
                let first_doc = issued.iter().find(|d| d.tenant_id == *tenant && d.period == q && d.type_code == 380);
                let layout = first_doc.map_or(by_project, |d| d.buyer.lines_by_project);
                rated += rate_period(tenant, q, &rows, &refs, layout).unwrap().values().map(|r| r.net()).sum::<Money>();
            }
            let billed: Money = issued.iter().filter(|d| d.tenant_id == *tenant).map(|d| if d.is_credit_note() { -d.net_total } else { d.net_total }).sum();
            prop_assert_eq!(billed, rated, "tenant {}", tenant);
        }
    }

    /// Closes over months with late usage and corrections: after every close, the documents of
    /// every closed period bill exactly the rating of all usage known then (line by line, each
    /// rounded once), every usage GPU-second is billed once, and re-planning gives identical bytes.
    #[test]
    fn closes_bill_every_usage_second_exactly_once(
        first in usage_strategy(30),
        late in usage_strategy(10),
        second in usage_strategy(30),
        corrections in prop::collection::vec((0..TENANTS.len(), 0..30usize, 1u32..=100), 0..4),
        by_project: bool,
    ) {
        let (sep, oct) = (p("2026-09"), p("2026-10"));
        let refs = refs(by_project, true);
        let (issued, known) = close_three_months(&refs, &first, &late, &second, &corrections)?;
        for (t, tenant) in TENANTS.iter().enumerate() {
            for q in [sep, oct] {
                let first_doc = issued.iter().find(|d| d.tenant_id == *tenant && d.period == q && d.type_code == 380);
                let layout = first_doc.map_or(by_project, |d| d.buyer.lines_by_project);
                let rated = rate_period(tenant, q, &known[&(t, q)], &refs, layout).unwrap();
                let billed = super::invoice::billed_lines(issued.iter(), tenant, q);
                let rated_view: BTreeMap<_, _> = rated.iter().filter(|(_, r)| !r.gpu_seconds.is_zero() || !r.net().is_zero()).map(|(k, r)| (k.clone(), (r.gpu_seconds, r.net()))).collect();
                let billed_view: BTreeMap<_, _> = billed.into_iter().filter(|(_, (s, n))| !s.is_zero() || !n.is_zero()).collect();
                prop_assert_eq!(&rated_view, &billed_view, "tenant {} period {}", tenant, q);
                let used: Decimal = known[&(t, q)].iter().map(|r| r.gpu_seconds).sum();
                let billed_secs: Decimal = billed_view.iter().filter(|(k, _)| matches!(k.kind, LineKind::Usage | LineKind::Commitment | LineKind::Overage)).map(|(_, (s, _))| *s).sum();
                prop_assert_eq!(used, billed_secs);
            }
        }
        // Documents are numbered gapless per series.
        let mut series: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        for d in &issued {
            series.entry(&d.series).or_default().push(d.number.rsplit('-').next().unwrap().parse().unwrap());
        }
        for nums in series.values() {
            prop_assert_eq!(nums.clone(), (1..=nums.len() as u32).collect::<Vec<_>>());
        }
        // Every document's totals: VAT on the sum of line nets.
        for doc in &issued {
            let nets: Money = doc.lines.iter().map(|l| l.net).sum();
            prop_assert_eq!(doc.net_total, nets);
            prop_assert_eq!(doc.gross_total, doc.net_total + doc.vat_total);
        }
    }
}

#[test]
fn a_contract_bills_commitment_overage_minimum_and_discount() {
    let refs = refs(false, true);
    let oct = p("2026-10");
    let hour = oct.start() + Duration::hours(5);
    let row = |secs: i64| UsageRow {
        sku: "nvidia-b200".into(),
        project: "x".into(),
        hour,
        gpu_seconds: Decimal::from(secs),
        mig_profile: None,
    };
    // 1 GPU-hour of 3 committed: commitment 1 h, minimum top-up 2 h, discount 7.5 %.
    let lines = rate_period("de-bank", oct, &[row(3600)], &refs, false).unwrap();
    let by_kind: BTreeMap<LineKind, Decimal> = lines.iter().map(|(k, r)| (k.kind, r.net().amount())).collect();
    assert_eq!(by_kind[&LineKind::Commitment], d("4.10"));
    assert_eq!(by_kind[&LineKind::MinimumTopUp], d("8.20"));
    assert_eq!(by_kind[&LineKind::Discount], d("-0.92")); // 7.5 % of 12.30 = 0.9225
                                                          // 5 GPU-hours: 3 committed, 2 overage, no top-up.
    let lines = rate_period("de-bank", oct, &[row(5 * 3600)], &refs, false).unwrap();
    let by_kind: BTreeMap<LineKind, Decimal> = lines.iter().map(|(k, r)| (k.kind, r.net().amount())).collect();
    assert_eq!(by_kind[&LineKind::Commitment], d("12.30"));
    assert_eq!(by_kind[&LineKind::Overage], d("9.10"));
    assert!(!by_kind.contains_key(&LineKind::MinimumTopUp));
}

#[test]
fn tiers_and_a_mid_month_price_change() {
    let refs = refs(false, false);
    let oct = p("2026-10");
    let before = oct.start() + Duration::hours(1);
    let after = oct.start() + Duration::days(20);
    let row = |hour, secs: i64| UsageRow {
        sku: "nvidia-h100-sxm".into(),
        project: "x".into(),
        hour,
        gpu_seconds: Decimal::from(secs),
        mig_profile: None,
    };
    // 1.5 h at 2.90 (tier 1) before the change; after it 0.5 h more in tier 1 at 2.70, then 1 h in tier 2 at 2.45.
    let lines = rate_period("us-search", oct, &[row(before, 5400), row(after, 5400)], &refs, false).unwrap();
    let got: Vec<(u32, Decimal, Decimal)> = lines.iter().map(|(k, r)| (k.tier, k.unit_price, r.gpu_seconds)).collect();
    assert_eq!(got, vec![(1, d("2.70"), d("1800")), (1, d("2.90"), d("5400")), (2, d("2.45"), d("3600"))]);
    assert_eq!(exact_total(&lines).amount(), d("4.35") + d("1.35") + d("2.45"));
    assert_eq!(SECONDS_PER_HOUR, d("3600"));
}

#[test]
fn usage_without_a_price_is_refused() {
    let refs = ReferenceState::default();
    let oct = p("2026-10");
    let row = UsageRow {
        sku: "nvidia-l40s".into(),
        project: "x".into(),
        hour: oct.start(),
        gpu_seconds: d("60"),
        mig_profile: None,
    };
    let e = rate_period("us-search", oct, &[row], &refs, false).unwrap_err();
    assert!(e.to_string().contains("no price list for nvidia-l40s"), "{e}");
}

#[test]
fn a_new_seller_names_its_register_and_managing_directors_and_old_events_still_replay() {
    let full = Reference::Seller(seller());
    assert_eq!(Reference::parse_new(KIND_SELLER, &full.data()).map(|_| ()), Ok(()));
    for field in ["registered_office", "register_court", "register_number", "managing_directors"] {
        let mut data = full.data();
        data.as_object_mut().unwrap().remove(field);
        // An event as loaded before the fields existed: it still parses (replay) ...
        assert!(Reference::parse(KIND_SELLER, &data).is_ok(), "{field}");
        // ... but a new one without it is refused, naming the field and the law.
        let e = Reference::parse_new(KIND_SELLER, &data).unwrap_err();
        assert_eq!(e.field, field);
        assert!(e.message.contains("§ 35a GmbHG"), "{e}");
    }
    for (number, ok) in [
        ("HRB 276543", true),
        ("HRB 12345 B", true),
        ("HRA 1", true),
        ("276543", false),
        ("HRB", false),
        ("HRB 12a", false),
        ("XYZ 1", false),
    ] {
        let mut data = full.data();
        data["register_number"] = serde_json::json!(number);
        assert_eq!(Reference::parse(KIND_SELLER, &data).is_ok(), ok, "{number}");
    }
    assert_eq!(
        seller().legal_information().as_deref(),
        Some("Sitz der Gesellschaft: München; Registergericht: Amtsgericht München, HRB 276543; Geschäftsführer: Dr. Johanna Reiter")
    );
}

#[test]
fn a_leitweg_id_with_a_wrong_check_digit_is_refused_at_load_only() {
    let mut good = profile("de-bank", false);
    good.buyer_reference = "991-33333TEST-33".into();
    let data = Reference::Profile(good).data();
    assert!(Reference::parse_new(KIND_PROFILE, &data).is_ok());
    let mut bad = data.clone();
    bad["buyer_reference"] = serde_json::json!("991-33333TEST-34");
    let e = Reference::parse_new(KIND_PROFILE, &bad).unwrap_err();
    assert_eq!(e.field, "buyer_reference");
    assert!(e.message.contains("991-33333TEST-33 would be right"), "{e}");
    assert!(Reference::parse(KIND_PROFILE, &bad).is_ok(), "an event already in the ledger still replays");
}

#[test]
fn a_reverse_charge_invoice_after_the_14a_deadline_is_warned_about() {
    use super::reverse_charge::{late_invoice_warning, NOTE};
    let refs = refs(false, false);
    let oct = p("2026-10");
    let mut input = CloseInput { refs, ..CloseInput::default() };
    let row = || UsageRow {
        sku: "nvidia-h100-sxm".into(),
        project: "x".into(),
        hour: oct.start() + Duration::hours(3),
        gpu_seconds: d("3600"),
        mig_profile: None,
    };
    for t in TENANTS {
        input.usage.entry(t.to_string()).or_default().insert(oct, vec![row()]);
    }
    // In time: 15 November (Berlin) is the last day for October's service.
    let in_time = Utc.with_ymd_and_hms(2026, 11, 15, 22, 59, 0).unwrap();
    let docs = plan_close(oct, in_time, Uuid::nil(), &input).unwrap();
    let fr = docs.iter().find(|d| d.tenant_id == "fr-robot").unwrap();
    assert_eq!(fr.vat.exemption_reason.as_deref(), Some(NOTE));
    assert!(fr.notes.iter().any(|n| n == NOTE));
    assert!(docs.iter().all(|d| late_invoice_warning(d).is_none()), "{docs:#?}");
    // One minute later it is 16 November in Berlin: only the reverse-charge invoice is late.
    let late = Utc.with_ymd_and_hms(2026, 11, 15, 23, 0, 0).unwrap();
    let docs = plan_close(oct, late, Uuid::nil(), &input).unwrap();
    let warnings: Vec<String> = docs.iter().filter_map(late_invoice_warning).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("to fr-robot (reverse charge) is issued on 2026-11-16"), "{}", warnings[0]);
    assert!(warnings[0].contains("§ 14a Abs. 1 Satz 2 UStG deadline of 2026-11-15 for the service of 2026-10"));
}
