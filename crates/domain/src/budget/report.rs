//! The budget report as of a date: per WBS element and cost centre, rolled up per owner and for
//! the programme; the fleet (GPUs in service, available and billed GPU-hours, depreciation,
//! revenue, the share of the GPU investment recovered); revenue attributed to cost centres by the
//! allocation key. Rendered as a terminal table, CSV and JSON.

use super::events::Asset;
use super::state::{BudgetState, Figures};
use crate::billing::dec::{self, cents};
use crate::billing::invoice::InvoiceDoc;
use crate::billing::period::berlin_midnight;
use crate::billing::rating::{LineKind, SECONDS_PER_HOUR};
use crate::billing::Period;
use chrono::{Datelike, Days, NaiveDate};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetRow {
    /// `wbs`, `cost_center`, `owner` or `programme`.
    pub level: String,
    pub owner: String,
    pub cost_center: String,
    pub wbs: String,
    #[serde(with = "dec")]
    pub budget: Decimal,
    #[serde(with = "dec")]
    pub committed: Decimal,
    #[serde(with = "dec")]
    pub actual: Decimal,
    #[serde(with = "dec")]
    pub remaining: Decimal,
    #[serde(with = "dec")]
    pub forecast_at_completion: Decimal,
    /// The forecast at completion exceeds the budget.
    pub warning: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetRow {
    pub sku: String,
    pub gpus: u64,
    #[serde(with = "dec")]
    pub available_gpu_hours: Decimal,
    #[serde(with = "dec")]
    pub billed_gpu_hours: Decimal,
    #[serde(with = "dec")]
    pub utilisation_percent: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fleet {
    pub per_sku: Vec<FleetRow>,
    #[serde(with = "dec")]
    pub gpu_investment: Decimal,
    #[serde(with = "dec")]
    pub monthly_depreciation: Decimal,
    #[serde(with = "dec")]
    pub accumulated_depreciation: Decimal,
    #[serde(with = "dec")]
    pub revenue_invoiced_net: Decimal,
    #[serde(with = "dec")]
    pub recovered_percent: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attribution {
    pub owner: String,
    pub cost_center: String,
    #[serde(with = "dec")]
    pub revenue: Decimal,
}

/// The net revenue of the documents issued by one period's close: what the SAP journal of that
/// period posts (on its last day).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeriodRevenue {
    pub period: Period,
    pub documents: u32,
    #[serde(with = "dec")]
    pub revenue_net: Decimal,
}

/// What each figure of the report is based on, in words and dates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bases {
    /// `fleet.monthly_depreciation`: the month of `as_of` (which may not be over yet).
    pub monthly_depreciation_of: Period,
    /// `fleet.accumulated_depreciation` runs through this month: the last one ended on or before
    /// `as_of`.
    pub accumulated_depreciation_through: Period,
    /// `fleet.revenue_invoiced_net` and `revenue_attribution`.
    pub revenue: &'static str,
    /// `revenue_by_service_period`.
    pub revenue_by_service_period: &'static str,
}

pub const REVENUE_BASIS: &str =
    "issue date: documents issued up to as_of, each in full, whatever period they bill (credit notes negative)";
pub const SERVICE_PERIOD_BASIS: &str = "service period as the SAP journal posts it: the documents issued by the close of each period ended by as_of, posted on that period's last day (late usage and corrections of earlier periods in the close that issued them)";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetReport {
    pub as_of: NaiveDate,
    pub programme: String,
    #[serde(with = "dec")]
    pub programme_total: Decimal,
    #[serde(with = "dec")]
    pub unallocated: Decimal,
    pub rows: Vec<BudgetRow>,
    pub fleet: Fleet,
    /// Revenue per cost centre by the allocation key in force for each document's period
    /// (`unattributed` where no key was in force).
    pub revenue_attribution: Vec<Attribution>,
    /// Revenue per period as the SAP journal posts it (`bases.revenue_by_service_period`).
    pub revenue_by_service_period: Vec<PeriodRevenue>,
    pub bases: Bases,
}

/// The month of a date (any date: `Period::of` takes every instant, `Period::new` only 2020 to 2100).
pub fn month_of(d: NaiveDate) -> Period {
    Period::of(berlin_midnight(d) + chrono::Duration::hours(12))
}

/// The last month that ended on or before `as_of`.
pub fn last_completed_month(as_of: NaiveDate) -> Period {
    let p = month_of(as_of);
    if as_of == p.last_day() {
        p
    } else {
        p.prev()
    }
}

/// The net revenue per period of the closes of the periods ended by `as_of`: `posting_period`
/// maps a document's close (`close_event_id`) to the period closed; the SAP journal of a period
/// posts exactly these documents.
pub fn revenue_by_service_period(
    docs: &[InvoiceDoc],
    posting_period: &BTreeMap<uuid::Uuid, Period>,
    as_of: NaiveDate,
) -> Vec<PeriodRevenue> {
    let mut out: BTreeMap<Period, PeriodRevenue> = BTreeMap::new();
    for d in docs {
        let p = posting_period.get(&d.close_event_id).copied().unwrap_or(d.period);
        if p.last_day() > as_of {
            continue;
        }
        let r = out.entry(p).or_insert(PeriodRevenue { period: p, documents: 0, revenue_net: Decimal::ZERO });
        r.documents += 1;
        r.revenue_net += (d.sign() * d.net_total).amount();
    }
    out.into_values().collect()
}

fn months_between(from: NaiveDate, to: NaiveDate) -> i64 {
    i64::from(to.year() - from.year()) * 12 + i64::from(to.month()) - i64::from(from.month())
}

/// Straight-line depreciation, full months from the month of going into service: the amount of
/// the k-th month (1-based) is round(cost·k/n) − round(cost·(k−1)/n), so the months add up to the
/// cost exactly. Zero outside the n months.
pub fn depreciation_of_month(a: &Asset, month: Period) -> Decimal {
    let k = months_between(a.in_service, month.first_day()) + 1;
    let n = i64::from(a.depreciation_months);
    if k < 1 || k > n {
        return cents(Decimal::ZERO);
    }
    accumulated(a, k) - accumulated(a, k - 1)
}

fn accumulated(a: &Asset, months: i64) -> Decimal {
    let n = i64::from(a.depreciation_months);
    cents(a.cost * Decimal::from(months.clamp(0, n)) / Decimal::from(n))
}

/// Depreciation accumulated up to and including the month `through`.
pub fn accumulated_depreciation(a: &Asset, through: Period) -> Decimal {
    accumulated(a, months_between(a.in_service, through.first_day()) + 1)
}

/// Splits an amount (in cents) by percentage shares adding up to 100 %, by the largest-remainder
/// method: each share gets its exact part rounded towards zero to cents, and the cents left over
/// go one each to the shares with the largest cut-off remainders (the earlier share on a tie).
/// The parts add up to the amount exactly and each is within one cent of its exact part.
/// (Hand-written: a dozen lines over exact decimals; the apportionment crates round floats.)
pub fn split_by_shares(amount: Decimal, shares: &[(String, Decimal)]) -> Vec<(String, Decimal)> {
    let amount = cents(amount);
    let sign = if amount.is_sign_negative() { -Decimal::ONE } else { Decimal::ONE };
    let total = amount.abs() * Decimal::ONE_HUNDRED;
    let exact: Vec<Decimal> = shares.iter().map(|(_, pct)| total * pct / Decimal::ONE_HUNDRED).collect();
    let mut parts: Vec<Decimal> = exact.iter().map(|e| e.trunc()).collect();
    let mut left = total - parts.iter().sum::<Decimal>();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by(|&a, &b| (exact[b] - parts[b]).cmp(&(exact[a] - parts[a])).then(a.cmp(&b)));
    let mut next = order.iter().cycle();
    while left >= Decimal::ONE {
        let Some(&i) = next.next() else { break };
        parts[i] += Decimal::ONE;
        left -= Decimal::ONE;
    }
    shares.iter().zip(parts).map(|((cc, _), p)| (cc.clone(), cents(sign * p / Decimal::ONE_HUNDRED))).collect()
}

fn row(level: &str, owner: &str, cc: &str, wbs: &str, f: &Figures) -> BudgetRow {
    BudgetRow {
        level: level.into(),
        owner: owner.into(),
        cost_center: cc.into(),
        wbs: wbs.into(),
        budget: cents(f.budget),
        committed: cents(f.open_commitments),
        actual: cents(f.actual),
        remaining: cents(f.remaining()),
        forecast_at_completion: cents(f.forecast_at_completion()),
        warning: f.forecast_at_completion() > f.budget,
    }
}

/// The report as of `as_of`: `state` must be the fold of the budget events dated up to it
/// (`BudgetState::as_of`); documents issued after it are left out of the revenue by issue date;
/// `posting_period` maps each close (`close_event_id`) to the period it closed.
pub fn report(
    state: &BudgetState,
    all_docs: &[InvoiceDoc],
    posting_period: &BTreeMap<uuid::Uuid, Period>,
    as_of: NaiveDate,
) -> BudgetReport {
    let through = last_completed_month(as_of);
    let owner_of = |cc: &str| state.cost_centers.get(cc).map_or("unknown", |c| c.owner.as_str()).to_string();
    let rows = budget_rows(state, &owner_of);
    let docs: Vec<&InvoiceDoc> = all_docs.iter().filter(|d| d.issue_date <= as_of).collect();
    let (mut fleet, assets) = fleet_in_service(state, as_of, through);
    let (revenue, attribution) = revenue_by_issue_date(state, &docs, &mut fleet, &owner_of);
    let recovered = if assets.investment.is_zero() {
        Decimal::ZERO
    } else {
        dec::fixed(revenue * Decimal::ONE_HUNDRED / assets.investment, 4)
    };
    BudgetReport {
        as_of,
        programme: state.programme.as_ref().map_or(String::new(), |p| p.name.clone()),
        programme_total: cents(state.programme.as_ref().map_or(Decimal::ZERO, |p| p.total_budget)),
        unallocated: cents(state.unallocated()),
        rows,
        fleet: Fleet {
            per_sku: fleet.into_values().map(FleetRow::rounded).collect(),
            gpu_investment: cents(assets.investment),
            monthly_depreciation: cents(assets.monthly_depreciation),
            accumulated_depreciation: cents(assets.accumulated_depreciation),
            revenue_invoiced_net: cents(revenue),
            recovered_percent: recovered,
        },
        revenue_attribution: attribution
            .into_iter()
            .map(|((owner, cost_center), revenue)| Attribution { owner, cost_center, revenue: cents(revenue) })
            .collect(),
        revenue_by_service_period: revenue_by_service_period(all_docs, posting_period, as_of),
        bases: Bases {
            monthly_depreciation_of: month_of(as_of),
            accumulated_depreciation_through: through,
            revenue: REVENUE_BASIS,
            revenue_by_service_period: SERVICE_PERIOD_BASIS,
        },
    }
}

/// The budget rows: each WBS element, each cost centre, each owner, then the programme.
fn budget_rows(state: &BudgetState, owner_of: &dyn Fn(&str) -> String) -> Vec<BudgetRow> {
    let mut rows = Vec::new();
    let mut per_wbs: BTreeMap<(String, String), Figures> = BTreeMap::new();
    for (b, f) in &state.buckets {
        per_wbs.entry((b.cost_center.clone(), b.wbs.clone())).or_default().add(f);
    }
    let mut per_cc: BTreeMap<String, Figures> = BTreeMap::new();
    for ((cc, wbs), f) in &per_wbs {
        rows.push(row("wbs", &owner_of(cc), cc, wbs, f));
        per_cc.entry(cc.clone()).or_default().add(f);
    }
    let mut per_owner: BTreeMap<String, Figures> = BTreeMap::new();
    for (cc, f) in &per_cc {
        rows.push(row("cost_center", &owner_of(cc), cc, "", f));
        per_owner.entry(owner_of(cc)).or_default().add(f);
    }
    let mut programme = Figures::default();
    for (o, f) in &per_owner {
        rows.push(row("owner", o, "", "", f));
        programme.add(f);
    }
    rows.push(row("programme", "", "", "", &programme));
    rows
}

/// What the assets in service on `as_of` cost and have lost in value.
#[derive(Default)]
struct AssetTotals {
    investment: Decimal,
    monthly_depreciation: Decimal,
    accumulated_depreciation: Decimal,
}

/// The fleet per SKU in service on `as_of` (GPUs and available GPU-hours; billed hours come
/// later), and the assets' totals.
fn fleet_in_service(
    state: &BudgetState,
    as_of: NaiveDate,
    through: Period,
) -> (BTreeMap<String, FleetRow>, AssetTotals) {
    let end = berlin_midnight(as_of.checked_add_days(Days::new(1)).expect("date"));
    let mut fleet: BTreeMap<String, FleetRow> = BTreeMap::new();
    let mut totals = AssetTotals::default();
    for a in state.assets.values().filter(|a| a.in_service <= as_of) {
        let r = fleet.entry(a.sku.clone()).or_insert_with(|| FleetRow {
            sku: a.sku.clone(),
            gpus: 0,
            available_gpu_hours: Decimal::ZERO,
            billed_gpu_hours: Decimal::ZERO,
            utilisation_percent: Decimal::ZERO,
        });
        r.gpus += u64::from(a.gpus);
        let hours = (end - berlin_midnight(a.in_service)).num_hours();
        r.available_gpu_hours += Decimal::from(a.gpus) * Decimal::from(hours);
        totals.investment += a.cost;
        totals.monthly_depreciation += depreciation_of_month(a, Period::of(end - chrono::Duration::hours(1)));
        totals.accumulated_depreciation += accumulated_depreciation(a, through);
    }
    (fleet, totals)
}

/// The net revenue of the documents (by issue date), their GPU-hours added to the fleet's billed
/// hours, and the revenue attributed to (owner, cost centre) by the allocation key in force.
fn revenue_by_issue_date(
    state: &BudgetState,
    docs: &[&InvoiceDoc],
    fleet: &mut BTreeMap<String, FleetRow>,
    owner_of: &dyn Fn(&str) -> String,
) -> (Decimal, BTreeMap<(String, String), Decimal>) {
    let mut revenue = Decimal::ZERO;
    let mut attribution: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for d in docs {
        let net = (d.sign() * d.net_total).amount();
        revenue += net;
        for l in &d.lines {
            if matches!(l.charge.kind, LineKind::Usage | LineKind::Commitment | LineKind::Overage) {
                if let Some(r) = fleet.get_mut(&l.charge.sku) {
                    r.billed_gpu_hours += d.sign() * l.gpu_seconds / SECONDS_PER_HOUR;
                }
            }
        }
        match state.key_for(d.period) {
            Some(k) => {
                let shares: Vec<(String, Decimal)> =
                    k.shares.iter().map(|s| (s.cost_center.clone(), s.percent)).collect();
                for (cc, part) in split_by_shares(net, &shares) {
                    *attribution.entry((owner_of(&cc), cc)).or_default() += part;
                }
            }
            None => *attribution.entry(("unattributed".into(), "unattributed".into())).or_default() += net,
        }
    }
    (revenue, attribution)
}

impl FleetRow {
    /// The row as reported: utilisation from the exact hours, then the hours rounded.
    fn rounded(mut self) -> FleetRow {
        self.utilisation_percent = if self.available_gpu_hours.is_zero() {
            Decimal::ZERO
        } else {
            dec::fixed(self.billed_gpu_hours * Decimal::ONE_HUNDRED / self.available_gpu_hours, 2)
        };
        self.billed_gpu_hours = dec::fixed(self.billed_gpu_hours, 2);
        self.available_gpu_hours = dec::fixed(self.available_gpu_hours, 0);
        self
    }
}

impl BudgetReport {
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("json");
        v.push(b'\n');
        v
    }

    /// One CSV table; `section` says which part a row belongs to (budget, fleet, revenue).
    pub fn to_csv(&self) -> Vec<u8> {
        let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new());
        let header = [
            "section",
            "as_of",
            "level",
            "owner",
            "cost_center",
            "wbs",
            "budget",
            "committed",
            "actual",
            "remaining",
            "forecast_at_completion",
            "warning",
            "sku",
            "gpus",
            "available_gpu_hours",
            "billed_gpu_hours",
            "utilisation_percent",
            "revenue",
            "period",
            "basis",
        ];
        w.write_record(header).expect("memory");
        let d = self.as_of.to_string();
        let esc = crate::billing::export::escape_cell;
        for r in &self.rows {
            let rec = [
                "budget".to_string(),
                d.clone(),
                r.level.clone(),
                r.owner.clone(),
                esc(&r.cost_center),
                esc(&r.wbs),
                r.budget.to_string(),
                r.committed.to_string(),
                r.actual.to_string(),
                r.remaining.to_string(),
                r.forecast_at_completion.to_string(),
                r.warning.to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ];
            w.write_record(&rec).expect("memory");
        }
        for f in &self.fleet.per_sku {
            let mut rec = vec![String::new(); header.len()];
            rec[0] = "fleet".into();
            rec[1] = d.clone();
            rec[12] = f.sku.clone();
            rec[13] = f.gpus.to_string();
            rec[14] = f.available_gpu_hours.to_string();
            rec[15] = f.billed_gpu_hours.to_string();
            rec[16] = f.utilisation_percent.to_string();
            w.write_record(&rec).expect("memory");
        }
        for a in &self.revenue_attribution {
            let mut rec = vec![String::new(); header.len()];
            rec[0] = "revenue".into();
            rec[1] = d.clone();
            rec[3] = a.owner.clone();
            rec[4] = esc(&a.cost_center);
            rec[17] = a.revenue.to_string();
            rec[19] = self.bases.revenue.into();
            w.write_record(&rec).expect("memory");
        }
        for r in &self.revenue_by_service_period {
            let mut rec = vec![String::new(); header.len()];
            rec[0] = "revenue_by_service_period".into();
            rec[1] = d.clone();
            rec[17] = r.revenue_net.to_string();
            rec[18] = r.period.to_string();
            rec[19] = self.bases.revenue_by_service_period.into();
            w.write_record(&rec).expect("memory");
        }
        w.into_inner().expect("memory")
    }

    /// The terminal table.
    pub fn to_table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(s, "{} — budget as of {} (EUR)", self.programme, self.as_of);
        let _ = writeln!(
            s,
            "{:<12} {:<9} {:<14} {:<14} {:>16} {:>16} {:>16} {:>16} {:>16}",
            "level", "owner", "cost centre", "WBS", "budget", "committed", "actual", "remaining", "forecast"
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "{:<12} {:<9} {:<14} {:<14} {:>16} {:>16} {:>16} {:>16} {:>16}{}",
                r.level,
                r.owner,
                r.cost_center,
                r.wbs,
                r.budget,
                r.committed,
                r.actual,
                r.remaining,
                r.forecast_at_completion,
                if r.warning { "  WARNING: forecast exceeds budget" } else { "" }
            );
        }
        let _ = writeln!(s, "unallocated programme budget: {} of {}", self.unallocated, self.programme_total);
        let _ = writeln!(s, "\nfleet as of {}", self.as_of);
        let _ = writeln!(
            s,
            "{:<18} {:>7} {:>16} {:>16} {:>12}",
            "SKU", "GPUs", "available GPU-h", "billed GPU-h", "utilisation"
        );
        for f in &self.fleet.per_sku {
            let _ = writeln!(
                s,
                "{:<18} {:>7} {:>16} {:>16} {:>11}%",
                f.sku, f.gpus, f.available_gpu_hours, f.billed_gpu_hours, f.utilisation_percent
            );
        }
        let f = &self.fleet;
        let _ = writeln!(
            s,
            "GPU investment {} · depreciation of {} {} · accumulated through {} (last completed month) {} · revenue invoiced by issue date (net of credit notes) {} · recovered {}%",
            f.gpu_investment,
            self.bases.monthly_depreciation_of,
            f.monthly_depreciation,
            self.bases.accumulated_depreciation_through,
            f.accumulated_depreciation,
            f.revenue_invoiced_net,
            f.recovered_percent
        );
        let _ = writeln!(s, "\nrevenue by service period ({})", self.bases.revenue_by_service_period);
        for r in &self.revenue_by_service_period {
            let _ = writeln!(s, "{:<9} {:>5} documents {:>16}", r.period, r.documents, r.revenue_net);
        }
        let _ = writeln!(s, "\nrevenue attributed by allocation key (by issue date)");
        for a in &self.revenue_attribution {
            let _ = writeln!(s, "{:<9} {:<14} {:>16}", a.owner, a.cost_center, a.revenue);
        }
        s
    }
}
