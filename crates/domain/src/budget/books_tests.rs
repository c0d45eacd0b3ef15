//! What a tax adviser and an SAP team check: business keys (a reload without event ids is a
//! duplicate, other content under a key is refused), the controls of assets and of closing a cost
//! centre with refusals naming the amount and the part beyond the limit, the bases of the report
//! and its service-period view against the journal, largest-remainder attribution, the EC Sales
//! List against the journal and the invoices, and the depreciation posting choices.

use super::ec_sales::ec_sales_list;
use super::events::*;
use super::report::{depreciation_of_month, report, split_by_shares};
use super::sap::{imbalances, journal, revenue_total};
use super::sap_master::{DepreciationAssignment, DepreciationPosting, DepreciationSource};
use super::state::BudgetState;
use super::tests::{journal_fixture, master};
use crate::billing::reference::VatTreatment;
use crate::billing::Period;
use chrono::NaiveDate;
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn eur(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn alloc(cc: &str, wbs: &str, amount: &str, day: &str) -> BudgetEvent {
    BudgetEvent::Allocated(Allocation {
        cost_center: cc.into(),
        wbs: wbs.into(),
        category: Category::GpuProcurement,
        amount: eur(amount),
        approved_by: "board".into(),
        date: date(day),
    })
}

fn po(number: &str, cc: &str, wbs: &str, amount: &str) -> BudgetEvent {
    BudgetEvent::PurchaseOrder(PurchaseOrder {
        po_number: number.into(),
        supplier: "s".into(),
        cost_center: cc.into(),
        wbs: wbs.into(),
        category: Category::GpuProcurement,
        amount: eur(amount),
        currency: "EUR".into(),
        date: date("2026-02-01"),
    })
}

fn cost(document: &str, po: Option<&str>, cc: &str, wbs: &str, amount: &str) -> BudgetEvent {
    BudgetEvent::Cost(CostBooking {
        document: document.into(),
        supplier: "s".into(),
        po_number: po.map(str::to_string),
        cost_center: cc.into(),
        wbs: wbs.into(),
        category: Category::GpuProcurement,
        amount: eur(amount),
        currency: "EUR".into(),
        date: date("2026-03-01"),
    })
}

fn asset(id: &str, cc: &str, wbs: &str, amount: &str, months: u32) -> BudgetEvent {
    BudgetEvent::Asset(Asset {
        asset_id: id.into(),
        description: "servers".into(),
        sku: "nvidia-b200".into(),
        gpus: 8,
        cost: eur(amount),
        cost_center: cc.into(),
        wbs: wbs.into(),
        in_service: date("2026-03-15"),
        depreciation_months: months,
    })
}

fn admitted(s: &mut BudgetState, e: BudgetEvent) {
    s.admits(&e).unwrap_or_else(|err| panic!("{e:?}: {err}"));
    s.apply(&e);
}

fn refusal(s: &BudgetState, e: &BudgetEvent) -> String {
    s.admits(e).expect_err("refused").to_string()
}

#[test]
fn the_same_allocation_again_is_a_duplicate_and_other_content_under_its_key_is_refused() {
    let mut s = BudgetState::fold(&master());
    let a = alloc("OP-GPU", "P-2", "1000.00", "2026-01-15");
    admitted(&mut s, a.clone());
    assert!(s.is_duplicate(&a), "same key, same content: counted, not booked again");
    assert_eq!(a.derived_event_id(), a.clone().derived_event_id(), "a retried load gets the same id");
    assert!(refusal(&s, &a).contains("already in the ledger"));
    let other = alloc("OP-GPU", "P-2", "2000.00", "2026-01-15");
    assert!(!s.is_duplicate(&other));
    let e = refusal(&s, &other);
    assert!(
        e.contains("budget.allocated/OP-GPU/P-2/gpu_procurement/board@2026-01-15") && e.contains("other content"),
        "{e}"
    );
    // Another day is another approval.
    admitted(&mut s, alloc("OP-GPU", "P-2", "2000.00", "2026-01-16"));
    assert_eq!(s.buckets.values().map(|f| f.budget).sum::<Decimal>(), eur("3000.00"));
}

#[test]
fn an_asset_is_capitalised_from_the_actual_cost_of_its_wbs_element_of_its_own_cost_centre() {
    let mut s = BudgetState::fold(&master());
    admitted(&mut s, alloc("OP-GPU", "P-2", "10000000.00", "2026-01-15"));
    admitted(&mut s, po("PO-1", "OP-GPU", "P-2", "1000000.00"));
    admitted(&mut s, cost("INV-1", Some("PO-1"), "OP-GPU", "P-2", "600000.00"));
    let e = refusal(&s, &asset("AS-HUGE", "OP-GPU", "P-2", "5000000000.00", 1));
    assert!(
        e.contains(
            "5000000000.00 EUR exceeds the actual cost of WBS element P-2 not yet capitalised by 4999400000.00 EUR"
        ),
        "{e}"
    );
    let e = refusal(&s, &asset("AS-1", "TEL-PREM", "P-2", "100.00", 36));
    assert!(e.contains("WBS element P-2 belongs to cost centre OP-GPU, not TEL-PREM"), "{e}");
    admitted(&mut s, asset("AS-1", "OP-GPU", "P-2", "450000.00", 36));
    let e = refusal(&s, &asset("AS-2", "OP-GPU", "P-2", "150000.01", 36));
    assert!(e.contains("by 0.01 EUR") && e.contains("in assets already 450000.00, left 150000.00"), "{e}");
    admitted(&mut s, asset("AS-2", "OP-GPU", "P-2", "150000.00", 36));
}

#[test]
fn a_cost_centre_with_open_commitments_or_in_the_allocation_key_cannot_be_closed() {
    let mut s = BudgetState::fold(&master());
    admitted(&mut s, alloc("OP-GPU", "P-2", "10000000.00", "2026-01-15"));
    admitted(&mut s, po("PO-1", "OP-GPU", "P-2", "1000000.00"));
    admitted(&mut s, cost("INV-1", Some("PO-1"), "OP-GPU", "P-2", "600000.00"));
    let key = |id: &str, from: &str, shares: &[(&str, i64)]| {
        BudgetEvent::AllocationKey(AllocationKey {
            key_id: id.into(),
            effective_from: Period::parse(from).unwrap(),
            shares: shares
                .iter()
                .map(|(cc, p)| Share { cost_center: cc.to_string(), percent: Decimal::from(*p) })
                .collect(),
            rationale: "r".into(),
            date: date("2026-01-02"),
        })
    };
    admitted(&mut s, key("K-1", "2026-01", &[("OP-GPU", 80), ("TEL-PREM", 20)]));
    let close = |s: &BudgetState, day: &str| {
        let mut c = s.cost_centers["OP-GPU"].clone();
        c.open = false;
        c.date = date(day);
        BudgetEvent::CostCenter(c)
    };
    let e = refusal(&s, &close(&s, "2026-04-01"));
    assert!(e.contains("open commitments of 400000.00 EUR (purchase orders PO-1)"), "{e}");
    admitted(&mut s, cost("INV-2", Some("PO-1"), "OP-GPU", "P-2", "400000.00"));
    let e = refusal(&s, &close(&s, "2026-04-01"));
    assert!(e.contains("still takes 80 % of revenue in allocation key K-1"), "{e}");
    // A key from May without it: closing in April still leaves April's revenue to it.
    admitted(&mut s, key("K-2", "2026-05", &[("TEL-PREM", 100)]));
    assert!(refusal(&s, &close(&s, "2026-04-01")).contains("allocation key K-1"));
    let c = close(&s, "2026-05-01");
    admitted(&mut s, c);
    // A closed cost centre saved again (closed) is not checked again.
    let c = close(&s, "2026-05-02");
    admitted(&mut s, c);
}

#[test]
fn refusals_name_the_amount_booked_and_the_part_beyond_the_limit() {
    let mut s = BudgetState::fold(&master());
    admitted(&mut s, alloc("OP-GPU", "P-2", "1000.00", "2026-01-15"));
    let e = refusal(&s, &po("PO-1", "OP-GPU", "P-2", "1200.50"));
    assert!(e.contains("1200.50 EUR would exceed the budget of OP-GPU / P-2 / gpu_procurement by 200.50 EUR"), "{e}");
    admitted(&mut s, po("PO-1", "OP-GPU", "P-2", "800.00"));
    let e = refusal(&s, &cost("INV-1", Some("PO-1"), "OP-GPU", "P-2", "1300.00"));
    assert!(
        e.contains("1300.00 EUR (800.00 EUR of it covered by its purchase order)") && e.contains("by 300.00 EUR"),
        "{e}"
    );
    let e = refusal(&s, &alloc("OP-GPU", "P-2", "999999000.01", "2026-01-16"));
    assert!(e.contains("999999000.01 EUR is more than the 999999000.00 not yet allocated, by 0.01 EUR"), "{e}");
}

#[test]
fn accumulated_depreciation_runs_through_the_last_completed_month_and_says_so() {
    let (state, _) = journal_fixture();
    let a = &state.assets["A-0"];
    let mid_october = date("2026-10-15");
    let r = report(&state, &[], &BTreeMap::new(), mid_october);
    assert_eq!(r.bases.accumulated_depreciation_through, Period::parse("2026-09").unwrap());
    assert_eq!(r.bases.monthly_depreciation_of, Period::parse("2026-10").unwrap());
    let mut expected = Decimal::ZERO;
    for m in ["2026-03", "2026-04", "2026-05", "2026-06", "2026-07", "2026-08", "2026-09"] {
        for x in state.assets.values() {
            expected += depreciation_of_month(x, Period::parse(m).unwrap());
        }
    }
    assert!(depreciation_of_month(a, Period::parse("2026-10").unwrap()) > Decimal::ZERO);
    assert_eq!(r.fleet.accumulated_depreciation, expected, "October is not over on the 15th");
    let end = report(&state, &[], &BTreeMap::new(), date("2026-10-31"));
    assert_eq!(end.bases.accumulated_depreciation_through, Period::parse("2026-10").unwrap());
    // Any date, also outside the periods a close takes (the replay reports as of 2000-01-01).
    let early = report(&state, &[], &BTreeMap::new(), date("2000-01-01"));
    assert_eq!(early.bases.accumulated_depreciation_through.to_string(), "1999-12");
}

#[test]
fn the_service_period_view_agrees_with_the_journal_and_the_issue_date_view_is_labelled() {
    let (state, docs) = journal_fixture();
    let oct = Period::parse("2026-10").unwrap();
    let closes: BTreeMap<uuid::Uuid, Period> = docs.iter().map(|d| (d.close_event_id, oct)).collect();
    let posted = revenue_total(&journal(&state, &docs, oct).unwrap());
    // On October's last day nothing is issued yet: by issue date no revenue; by service period,
    // October's close as the journal posts it.
    let r = report(&state, &docs, &closes, oct.last_day());
    assert_eq!(r.fleet.revenue_invoiced_net, Decimal::ZERO);
    assert_eq!(r.revenue_by_service_period.len(), 1);
    assert_eq!((r.revenue_by_service_period[0].period, r.revenue_by_service_period[0].revenue_net), (oct, posted));
    assert!(r.bases.revenue.starts_with("issue date"));
    let later = report(&state, &docs, &closes, date("2026-11-30"));
    assert_eq!(later.fleet.revenue_invoiced_net, posted);
    assert_eq!(later.revenue_by_service_period, r.revenue_by_service_period);
    let csv = String::from_utf8(later.to_csv()).unwrap();
    assert!(csv.contains(&format!("revenue_by_service_period,2026-11-30,,,,,,,,,,,,,,,,{posted},2026-10,")), "{csv}");
    // A month not yet ended is not in the view.
    assert!(report(&state, &docs, &closes, date("2026-10-30")).revenue_by_service_period.is_empty());
}

#[test]
fn the_ec_sales_list_reconciles_with_the_journal_and_the_invoices() {
    let (state, docs) = journal_fixture();
    let oct = Period::parse("2026-10").unwrap();
    let list = ec_sales_list(&docs, oct).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!((list[0].country.as_str(), list[0].vat_id.as_str(), list[0].kind), ("FR", "FR32123456789", "S"));
    let invoiced: Decimal = docs
        .iter()
        .filter(|d| d.vat_treatment == VatTreatment::ReverseCharge)
        .map(|d| (d.sign() * d.net_total).amount())
        .sum();
    let ae_account = &state.tax_codes["AE"].revenue_account;
    let posted: Decimal = journal(&state, &docs, oct)
        .unwrap()
        .iter()
        .filter(|l| &l.gl_account == ae_account)
        .map(|l| if l.debit_credit == 'H' { l.amount } else { -l.amount })
        .sum();
    let listed: Decimal = list.iter().map(|l| l.amount).sum();
    assert!(listed > Decimal::ZERO);
    assert_eq!(listed, invoiced);
    assert_eq!(listed, posted);
    // Domestic and third-country customers are not on it.
    assert!(docs.iter().any(|d| d.vat_treatment != VatTreatment::ReverseCharge));
}

#[test]
fn depreciation_posts_on_the_cost_centre_or_the_wbs_element_or_is_left_to_sap_asset_accounting() {
    let (mut state, docs) = journal_fixture();
    let oct = Period::parse("2026-10").unwrap();
    let expense = state.gl[&GlRole::DepreciationExpense].account.clone();
    let af = |s: &BudgetState| -> Vec<super::sap::JournalLine> {
        let lines = journal(s, &docs, oct).unwrap();
        assert!(imbalances(&lines).is_empty());
        lines.into_iter().filter(|l| l.document_type == "AF" && l.gl_account == expense).collect()
    };
    let default = af(&state);
    assert_eq!(default.len(), 2);
    assert!(default.iter().all(|l| !l.cost_center.is_empty() && l.wbs_element.is_empty()), "{default:?}");
    let mut set = |assignment, computed_by| {
        let e =
            BudgetEvent::DepreciationPosting(DepreciationPosting { assignment, computed_by, date: date("2026-10-01") });
        e.validate().unwrap();
        state.apply(&BudgetEvent::parse(e.kind(), &e.data()).unwrap());
        state.clone()
    };
    let by_wbs = af(&set(DepreciationAssignment::WbsElement, DepreciationSource::Journal));
    assert!(by_wbs.iter().all(|l| l.cost_center.is_empty() && l.profit_center.is_empty() && l.wbs_element == "P-2"));
    let sap_aa = set(DepreciationAssignment::CostCenter, DepreciationSource::SapAssetAccounting);
    assert!(journal(&sap_aa, &docs, oct).unwrap().iter().all(|l| l.document_type != "AF"));
}

/// Shares in basis points (1/100 %) adding up to 100 %.
fn shares() -> impl Strategy<Value = Vec<(String, Decimal)>> {
    prop::collection::vec(1u32..2000, 1..40).prop_map(|w| {
        let total: u32 = w.iter().sum();
        let mut bp: Vec<u32> = w.iter().map(|x| x * 10_000 / total).collect();
        let rest = 10_000 - bp.iter().sum::<u32>();
        bp[0] += rest;
        bp.iter().enumerate().map(|(i, b)| (format!("CC-{i}"), Decimal::new(i64::from(*b), 2))).collect()
    })
}

proptest! {
    /// Largest remainder: the parts add up to the amount exactly and each is within one cent of
    /// its exact share (the remainder-to-the-last method broke the second with many shares).
    #[test]
    fn attribution_adds_up_and_every_share_is_within_a_cent(cents in -10_000_000i64..10_000_000, shares in shares()) {
        let amount = Decimal::new(cents, 2);
        let parts = split_by_shares(amount, &shares);
        prop_assert_eq!(parts.iter().map(|p| p.1).sum::<Decimal>(), amount);
        for ((cc, part), (_, pct)) in parts.iter().zip(&shares) {
            let exact = amount * pct / Decimal::ONE_HUNDRED;
            prop_assert!((part - exact).abs() < Decimal::new(1, 2), "{} {} vs {}", cc, part, exact);
            prop_assert_eq!(part.scale(), 2);
        }
    }
}

#[test]
fn many_small_shares_no_longer_leave_the_last_one_negative() {
    let shares: Vec<(String, Decimal)> =
        (0..31).map(|i| (format!("CC-{i}"), if i < 30 { Decimal::new(33, 1) } else { Decimal::ONE })).collect();
    let parts = split_by_shares(eur("0.50"), &shares);
    assert!(parts.iter().all(|p| p.1 >= Decimal::ZERO), "{parts:?}");
    assert_eq!(parts.iter().map(|p| p.1).sum::<Decimal>(), eur("0.50"));
}

#[test]
fn the_typed_journal_table_keeps_every_cell_under_its_declared_column() {
    use crate::audit::ColumnType;
    use crate::gdpdu::{journal_records, number, JOURNAL_LINE_COLUMNS};
    let (state, docs) = journal_fixture();
    let oct = Period::parse("2026-10").unwrap();
    let lines = journal(&state, &docs, oct).unwrap();
    let records = journal_records(oct, &lines);
    let at = |name: &str| JOURNAL_LINE_COLUMNS.iter().position(|c| c.0 == name).unwrap();
    let cells = super::sap::cells(&lines[0]);
    for (l, r) in lines.iter().zip(&records) {
        assert_eq!(r.len(), JOURNAL_LINE_COLUMNS.len());
        assert_eq!((r[at("period")].as_str(), r[at("reference")].as_str()), ("2026-10", l.reference.as_str()));
        assert_eq!(r[at("line_item")], l.line_item.to_string());
        assert_eq!(r[at("amount")], number(l.amount, 2));
        assert_eq!(r[at("posting_date")], "31.10.2026");
        assert_eq!(r[at("gl_account")], l.gl_account);
        assert_eq!(r[at("text")], super::sap::cells(l)[16]);
    }
    // Every SAP column is there once, in the journal's order after the key.
    let names: Vec<&str> = JOURNAL_LINE_COLUMNS.iter().map(|c| c.0).collect();
    for c in super::sap::COLUMNS {
        assert_eq!(names.iter().filter(|n| **n == c).count(), 1, "{c}");
    }
    assert_eq!(cells.len() + 1, names.len());
    assert!(matches!(JOURNAL_LINE_COLUMNS[at("amount")].1, ColumnType::Decimal(2)));
    assert!(matches!(JOURNAL_LINE_COLUMNS[at("posting_date")].1, ColumnType::Date));
}
