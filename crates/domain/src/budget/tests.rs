//! Properties of the budget over generated sequences of bookings: budgets always net to the
//! programme total, remaining = budget − open commitments − actual in every reachable state (and
//! is never negative), the report as of a date equals the fold of the events up to that date, and
//! the SAP journal balances with revenue equal to the invoices.

use super::events::*;
use super::report::report;
use super::state::BudgetState;
use chrono::{Days, NaiveDate};
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

fn day(n: u64) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).unwrap().checked_add_days(Days::new(n)).unwrap()
}

const CCS: &[(&str, Owner)] = &[("TEL-PREM", Owner::Telekom), ("SAP-INST", Owner::Sap), ("OP-GPU", Owner::Operator)];
const CATS: &[Category] = &[Category::Premises, Category::Installation, Category::GpuProcurement, Category::Operations];

pub(super) fn master() -> Vec<BudgetEvent> {
    let mut v = vec![BudgetEvent::Programme(Programme {
        programme_id: "KI-CLOUD".into(),
        name: "Sovereign AI Cloud".into(),
        total_budget: Decimal::from(1_000_000_000u64),
        currency: "EUR".into(),
        company_code: "1000".into(),
        date: day(0),
    })];
    for (i, (cc, owner)) in CCS.iter().enumerate() {
        v.push(BudgetEvent::CostCenter(CostCenter {
            cost_center: cc.to_string(),
            name: cc.to_string(),
            owner: *owner,
            controlling_area: "1000".into(),
            sap_cost_center: format!("47110{i}"),
            profit_center: format!("PC{i}"),
            open: true,
            date: day(0),
        }));
        v.push(BudgetEvent::Wbs(WbsElement {
            wbs: format!("P-{i}"),
            name: "w".into(),
            cost_center: cc.to_string(),
            open: true,
            date: day(0),
        }));
    }
    v
}

/// Generated bookings: (kind, cost centre, category, amount in EUR thousands, day offset, pick).
fn ops() -> impl Strategy<Value = Vec<(u8, usize, usize, u64, u64, usize)>> {
    prop::collection::vec((0u8..5, 0..CCS.len(), 0..CATS.len(), 1u64..400_000, 0u64..3, 0usize..1000), 1..80)
}

fn event_of(op: &(u8, usize, usize, u64, u64, usize), i: usize, date: NaiveDate, s: &BudgetState) -> BudgetEvent {
    let &(kind, cc, cat, amount, _, pick) = op;
    let amount = Decimal::from(amount) * Decimal::from(1000) + Decimal::new((pick % 100) as i64, 2);
    let (cost_center, wbs, category) = (CCS[cc].0.to_string(), format!("P-{cc}"), CATS[cat]);
    match kind {
        0 => {
            BudgetEvent::Allocated(Allocation { cost_center, wbs, category, amount, approved_by: "board".into(), date })
        }
        1 => {
            let (cc2, cat2) = ((cc + 1 + pick) % CCS.len(), (cat + pick) % CATS.len());
            BudgetEvent::Reallocated(Reallocation {
                reallocation_id: format!("R-{i}"),
                moves: vec![
                    Move { cost_center, wbs, category, amount: -amount },
                    Move { cost_center: CCS[cc2].0.into(), wbs: format!("P-{cc2}"), category: CATS[cat2], amount },
                ],
                reason: "r".into(),
                approved_by: "board".into(),
                date,
            })
        }
        2 => BudgetEvent::PurchaseOrder(PurchaseOrder {
            po_number: format!("PO-{i}"),
            supplier: "s".into(),
            cost_center,
            wbs,
            category,
            amount,
            currency: "EUR".into(),
            date,
        }),
        3 => {
            // Against an existing order when there is one (possibly more than its open amount).
            let po = s.orders.values().nth(pick % s.orders.len().max(1)).map(|o| o.order.clone());
            match po {
                Some(o) => BudgetEvent::Cost(CostBooking {
                    document: format!("INV-{i}"),
                    supplier: "s".into(),
                    po_number: Some(o.po_number.clone()),
                    cost_center: o.cost_center,
                    wbs: o.wbs,
                    category: o.category,
                    amount: (o.amount * Decimal::from(pick % 130) / Decimal::ONE_HUNDRED).round_dp(2).max(Decimal::ONE),
                    currency: "EUR".into(),
                    date,
                }),
                None => BudgetEvent::Cost(CostBooking {
                    document: format!("INV-{i}"),
                    supplier: "s".into(),
                    po_number: None,
                    cost_center,
                    wbs,
                    category,
                    amount,
                    currency: "EUR".into(),
                    date,
                }),
            }
        }
        _ => BudgetEvent::Forecast(Forecast { cost_center, wbs, category, estimate_to_complete: amount, date }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn every_reachable_state_keeps_the_books(ops in ops()) {
        let mut log = master();
        let mut s = BudgetState::fold(&log);
        let mut date = day(1);
        for (i, op) in ops.iter().enumerate() {
            date = date.checked_add_days(Days::new(op.4)).unwrap();
            let e = event_of(op, i, date, &s);
            if s.admits(&e).is_ok() {
                s.apply(&e);
                log.push(e);
            }
            // Budgets and the unallocated rest always net to the programme total.
            let budgets: Decimal = s.buckets.values().map(|f| f.budget).sum();
            prop_assert_eq!(budgets + s.unallocated(), Decimal::from(1_000_000_000u64));
            prop_assert!(s.unallocated() >= Decimal::ZERO);
            // Remaining = budget − open commitments − actual, recomputed independently from the
            // orders and invoices, and never negative.
            let mut open: BTreeMap<Bucket, Decimal> = BTreeMap::new();
            let mut actual: BTreeMap<Bucket, Decimal> = BTreeMap::new();
            for o in s.orders.values() {
                *open.entry(o.order.bucket()).or_default() += o.open();
            }
            for c in s.documents.values() {
                *actual.entry(c.bucket()).or_default() += c.amount;
            }
            for (b, f) in &s.buckets {
                let (o, a) = (open.get(b).copied().unwrap_or_default(), actual.get(b).copied().unwrap_or_default());
                prop_assert_eq!(f.open_commitments, o);
                prop_assert_eq!(f.actual, a);
                prop_assert_eq!(f.remaining(), f.budget - o - a);
                prop_assert!(f.remaining() >= Decimal::ZERO, "{:?} {:?}", b, f);
            }
        }
        // The report as of any date equals the fold of the events up to that date.
        for cut in [day(0), day(10), day(40), date] {
            let prefix: Vec<BudgetEvent> = log.iter().filter(|e| e.date() <= cut).cloned().collect();
            prop_assert_eq!(
                report(&BudgetState::as_of(&log, cut), &[], &BTreeMap::new(), cut),
                report(&BudgetState::fold(&prefix), &[], &BTreeMap::new(), cut)
            );
        }
    }
}

#[test]
fn bookings_are_refused_clearly() {
    let mut s = BudgetState::fold(&master());
    let alloc = |amount: i64| {
        BudgetEvent::Allocated(Allocation {
            cost_center: "TEL-PREM".into(),
            wbs: "P-0".into(),
            category: Category::Premises,
            amount: Decimal::from(amount),
            approved_by: "board".into(),
            date: day(1),
        })
    };
    s.apply(&alloc(100));
    let po = |cc: &str, amount: i64, currency: &str| {
        BudgetEvent::PurchaseOrder(PurchaseOrder {
            po_number: "PO-1".into(),
            supplier: "s".into(),
            cost_center: cc.into(),
            wbs: "P-0".into(),
            category: Category::Premises,
            amount: Decimal::from(amount),
            currency: currency.into(),
            date: day(2),
        })
    };
    assert!(s.admits(&po("NOPE", 10, "EUR")).unwrap_err().to_string().contains("unknown cost centre"));
    assert!(s.admits(&po("TEL-PREM", 101, "EUR")).unwrap_err().to_string().contains("would exceed the budget"));
    assert!(po("TEL-PREM", 10, "USD").validate().unwrap_err().to_string().contains("EUR"));
    s.admits(&po("TEL-PREM", 100, "EUR")).unwrap();
    let mut closed = s.cost_centers["TEL-PREM"].clone();
    closed.open = false;
    s.apply(&BudgetEvent::CostCenter(closed));
    assert!(s.admits(&po("TEL-PREM", 10, "EUR")).unwrap_err().to_string().contains("is closed"));
    assert!(s.admits(&alloc(1_000_000_000)).is_err());
}

/// Master data with G/L accounts, an allocation key and two assets, plus the documents of a close.
pub(super) fn journal_fixture() -> (BudgetState, Vec<crate::billing::invoice::InvoiceDoc>) {
    use crate::billing::close::{plan_close, CloseInput};
    use crate::billing::rating::UsageRow;
    use crate::billing::Period;
    let mut log = master();
    for (role, account) in [
        (GlRole::Receivable, "140000"),
        (GlRole::Revenue, "800000"),
        (GlRole::VatPayable, "176000"),
        (GlRole::DepreciationExpense, "652000"),
        (GlRole::AccumulatedDepreciation, "039000"),
    ] {
        log.push(BudgetEvent::GlAccount(GlAccount { account: account.into(), name: "x".into(), role, date: day(0) }));
    }
    log.push(BudgetEvent::AllocationKey(AllocationKey {
        key_id: "K-2026".into(),
        effective_from: Period::parse("2026-01").unwrap(),
        shares: vec![
            Share { cost_center: "TEL-PREM".into(), percent: Decimal::new(3333, 2) },
            Share { cost_center: "SAP-INST".into(), percent: Decimal::new(1667, 2) },
            Share { cost_center: "OP-GPU".into(), percent: Decimal::from(50) },
        ],
        rationale: "capital employed".into(),
        date: day(0),
    }));
    log.extend(sap_master_data(&["de-bank", "fr-robot", "us-search"]));
    for (i, cost) in [Decimal::new(1_234_567_891, 2), Decimal::new(99_999_999, 2)].into_iter().enumerate() {
        log.push(BudgetEvent::Asset(Asset {
            // The second id takes all 24 characters an asset id may have.
            asset_id: if i == 0 { "A-0".into() } else { "AS-B200-STAGE-2-RACK-017".into() },
            description: "GPU servers".into(),
            sku: "nvidia-b200".into(),
            gpus: 512,
            cost,
            cost_center: "OP-GPU".into(),
            wbs: "P-2".into(),
            in_service: NaiveDate::from_ymd_opt(2026, 3 + i as u32, 15).unwrap(),
            depreciation_months: 36 + i as u32,
        }));
    }
    let state = BudgetState::fold(&log);
    let oct = Period::parse("2026-10").unwrap();
    let refs = crate::billing::tests::refs(false, true);
    let mut input = CloseInput { refs, ..CloseInput::default() };
    for (t, secs) in [("de-bank", 98_765), ("fr-robot", 12_345_678), ("us-search", 5_555)] {
        let rows = vec![UsageRow {
            sku: "nvidia-b200".into(),
            project: "p".into(),
            hour: oct.start() + chrono::Duration::hours(7),
            gpu_seconds: Decimal::new(secs, 1),
            mig_profile: None,
        }];
        input.usage.entry(t.to_string()).or_default().insert(oct, rows);
    }
    let docs = plan_close(oct, oct.end() + chrono::Duration::days(1), uuid::Uuid::nil(), &input).unwrap();
    (state, docs)
}

/// Tax codes and revenue accounts per VAT category, and a customer account per tenant.
pub(super) fn sap_master_data(tenants: &[&str]) -> Vec<BudgetEvent> {
    use super::sap_master::{Customer, TaxCode};
    let mut v: Vec<BudgetEvent> = [("S", "A1", "8400"), ("AE", "AR", "8336"), ("O", "A0", "8338")]
        .into_iter()
        .map(|(category, tax_code, revenue_account)| {
            BudgetEvent::TaxCode(TaxCode {
                category: category.into(),
                tax_code: tax_code.into(),
                revenue_account: revenue_account.into(),
                name: format!("revenue {category}"),
                date: day(0),
            })
        })
        .collect();
    for (i, t) in tenants.iter().enumerate() {
        v.push(BudgetEvent::Customer(Customer {
            tenant_id: t.to_string(),
            customer: format!("{}", 10_000_001 + i),
            date: day(0),
        }));
    }
    v
}

#[test]
fn the_sap_journal_balances_and_books_the_invoiced_revenue() {
    use super::sap::{imbalances, journal, journal_csv, revenue_total};
    let (state, docs) = journal_fixture();
    let oct = crate::billing::Period::parse("2026-10").unwrap();
    let lines = journal(&state, &docs, oct).unwrap();
    assert!(imbalances(&lines).is_empty(), "{:?}", imbalances(&lines));
    let invoiced: Decimal = docs.iter().map(|d| (d.sign() * d.net_total).amount()).sum();
    assert_eq!(revenue_total(&lines), invoiced);
    assert!(lines.iter().any(|l| l.document_type == "AF"), "depreciation of the assets in service");
    let csv = String::from_utf8(journal_csv(&lines)).unwrap();
    assert!(csv.starts_with("company_code;document_type;"));
    // Depreciation adds up to the cost over the asset's life.
    let a = &state.assets["A-0"];
    let mut total = Decimal::ZERO;
    let mut p = crate::billing::Period::parse("2026-01").unwrap();
    for _ in 0..60 {
        total += super::report::depreciation_of_month(a, p);
        p = p.next();
    }
    assert_eq!(total, a.cost);
}
