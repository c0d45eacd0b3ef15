//! Budget events: master data and bookings. Each carries its business `date`; the report as of a
//! date folds the events dated up to it.

use super::lock::JournalExported;
use super::sap_master::{Customer, DepreciationPosting, TaxCode};
use crate::billing::dec;
use crate::billing::Period;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub const KIND_PROGRAMME: &str = "programme.set";
pub const KIND_COST_CENTER: &str = "cost_center.set";
pub const KIND_WBS: &str = "wbs_element.set";
pub const KIND_GL_ACCOUNT: &str = "gl_account.set";
pub const KIND_ALLOCATED: &str = "budget.allocated";
pub const KIND_REALLOCATED: &str = "budget.reallocated";
pub const KIND_PURCHASE_ORDER: &str = "purchase_order.committed";
pub const KIND_COST: &str = "cost.booked";
pub const KIND_ASSET: &str = "asset.commissioned";
pub const KIND_ALLOCATION_KEY: &str = "allocation_key.set";
pub const KIND_FORECAST: &str = "forecast.set";
pub const KIND_TAX_CODE: &str = "tax_code.set";
pub const KIND_CUSTOMER: &str = "customer.set";
pub const KIND_JOURNAL_EXPORTED: &str = "journal.exported";
pub const KIND_DEPRECIATION_POSTING: &str = "depreciation_posting.set";
pub const BUDGET_KINDS: &[&str] = &[
    KIND_PROGRAMME,
    KIND_COST_CENTER,
    KIND_WBS,
    KIND_GL_ACCOUNT,
    KIND_ALLOCATED,
    KIND_REALLOCATED,
    KIND_PURCHASE_ORDER,
    KIND_COST,
    KIND_ASSET,
    KIND_ALLOCATION_KEY,
    KIND_FORECAST,
    KIND_TAX_CODE,
    KIND_CUSTOMER,
    KIND_JOURNAL_EXPORTED,
    KIND_DEPRECIATION_POSTING,
];
pub const BUDGET_VERSION: i16 = 1;

/// A refused budget event: which field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BudgetError {
    pub field: String,
    pub message: String,
}

pub(crate) fn err(field: &str, message: impl Into<String>) -> BudgetError {
    BudgetError { field: field.to_string(), message: message.into() }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    Telekom,
    Sap,
    Operator,
}

impl Owner {
    pub fn as_str(self) -> &'static str {
        match self {
            Owner::Telekom => "telekom",
            Owner::Sap => "sap",
            Owner::Operator => "operator",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    GpuProcurement,
    Premises,
    Installation,
    Operations,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::GpuProcurement => "gpu_procurement",
            Category::Premises => "premises",
            Category::Installation => "installation",
            Category::Operations => "operations",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GlRole {
    Receivable,
    Revenue,
    VatPayable,
    DepreciationExpense,
    AccumulatedDepreciation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Programme {
    pub programme_id: String,
    pub name: String,
    #[serde(with = "dec")]
    pub total_budget: Decimal,
    pub currency: String,
    /// SAP company code of the operator.
    pub company_code: String,
    pub date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostCenter {
    pub cost_center: String,
    pub name: String,
    pub owner: Owner,
    pub controlling_area: String,
    /// The cost centre number in SAP (up to 10 characters).
    pub sap_cost_center: String,
    pub profit_center: String,
    /// A closed cost centre takes no new bookings.
    pub open: bool,
    pub date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WbsElement {
    pub wbs: String,
    pub name: String,
    pub cost_center: String,
    pub open: bool,
    pub date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlAccount {
    pub account: String,
    pub name: String,
    pub role: GlRole,
    pub date: NaiveDate,
}

/// Where a booking lands: cost centre, WBS element, category.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bucket {
    pub cost_center: String,
    pub wbs: String,
    pub category: Category,
}

/// Approved budget from the programme's unallocated total into a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocation {
    pub cost_center: String,
    pub wbs: String,
    pub category: Category,
    #[serde(with = "dec")]
    pub amount: Decimal,
    pub approved_by: String,
    pub date: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Move {
    pub cost_center: String,
    pub wbs: String,
    pub category: Category,
    /// Signed: negative takes budget from the bucket, positive gives.
    #[serde(with = "dec")]
    pub amount: Decimal,
}

/// Budget moved between buckets; the moves net to zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reallocation {
    pub reallocation_id: String,
    pub moves: Vec<Move>,
    pub reason: String,
    pub approved_by: String,
    pub date: NaiveDate,
}

/// A purchase order: money committed to a supplier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurchaseOrder {
    pub po_number: String,
    pub supplier: String,
    pub cost_center: String,
    pub wbs: String,
    pub category: Category,
    #[serde(with = "dec")]
    pub amount: Decimal,
    pub currency: String,
    pub date: NaiveDate,
}

/// A supplier invoice booked as actual cost, against a purchase order (consuming its open
/// commitment) or directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostBooking {
    pub document: String,
    pub supplier: String,
    pub po_number: Option<String>,
    pub cost_center: String,
    pub wbs: String,
    pub category: Category,
    #[serde(with = "dec")]
    pub amount: Decimal,
    pub currency: String,
    pub date: NaiveDate,
}

/// GPU servers put in service: their cost is depreciated straight-line over `depreciation_months`
/// from the month of `in_service` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Asset {
    pub asset_id: String,
    pub description: String,
    pub sku: String,
    pub gpus: u32,
    #[serde(with = "dec")]
    pub cost: Decimal,
    pub cost_center: String,
    pub wbs: String,
    pub in_service: NaiveDate,
    pub depreciation_months: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Share {
    pub cost_center: String,
    #[serde(with = "dec")]
    pub percent: Decimal,
}

/// How invoiced revenue is attributed to cost centres, from a period on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocationKey {
    pub key_id: String,
    pub effective_from: Period,
    pub shares: Vec<Share>,
    pub rationale: String,
    pub date: NaiveDate,
}

/// The estimate of what a bucket will still cost beyond its actuals and open orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forecast {
    pub cost_center: String,
    pub wbs: String,
    pub category: Category,
    #[serde(with = "dec")]
    pub estimate_to_complete: Decimal,
    pub date: NaiveDate,
}

impl Allocation {
    pub fn bucket(&self) -> Bucket {
        Bucket { cost_center: self.cost_center.clone(), wbs: self.wbs.clone(), category: self.category }
    }
}

impl Move {
    pub fn bucket(&self) -> Bucket {
        Bucket { cost_center: self.cost_center.clone(), wbs: self.wbs.clone(), category: self.category }
    }
}

impl PurchaseOrder {
    pub fn bucket(&self) -> Bucket {
        Bucket { cost_center: self.cost_center.clone(), wbs: self.wbs.clone(), category: self.category }
    }
}

impl CostBooking {
    pub fn bucket(&self) -> Bucket {
        Bucket { cost_center: self.cost_center.clone(), wbs: self.wbs.clone(), category: self.category }
    }
}

impl Forecast {
    pub fn bucket(&self) -> Bucket {
        Bucket { cost_center: self.cost_center.clone(), wbs: self.wbs.clone(), category: self.category }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetEvent {
    Programme(Programme),
    CostCenter(CostCenter),
    Wbs(WbsElement),
    GlAccount(GlAccount),
    Allocated(Allocation),
    Reallocated(Reallocation),
    PurchaseOrder(PurchaseOrder),
    Cost(CostBooking),
    Asset(Asset),
    AllocationKey(AllocationKey),
    Forecast(Forecast),
    TaxCode(TaxCode),
    Customer(Customer),
    JournalExported(JournalExported),
    DepreciationPosting(DepreciationPosting),
}

impl Reallocation {
    fn validate(&self) -> Result<(), BudgetError> {
        let r = self;
        code("reallocation_id", &r.reallocation_id, 24)?;
        if r.moves.len() < 2 || r.moves.len() > 50 {
            return Err(err("moves", "2 to 50 moves"));
        }
        for (i, m) in r.moves.iter().enumerate() {
            money(&format!("moves[{i}].amount"), m.amount)?;
            if m.amount.is_zero() {
                return Err(err(&format!("moves[{i}].amount"), "must not be zero"));
            }
        }
        let net: Decimal = r.moves.iter().map(|m| m.amount).sum();
        if !net.is_zero() {
            return Err(err("moves", format!("a reallocation must net to zero; these net to {net}")));
        }
        text("reason", &r.reason, 500)?;
        text("approved_by", &r.approved_by, 100)?;
        Ok(())
    }
}

impl Asset {
    fn validate(&self) -> Result<(), BudgetError> {
        let a = self;
        code("asset_id", &a.asset_id, 24)?;
        text("description", &a.description, 200)?;
        if !crate::sku::is_known_sku(&a.sku) {
            return Err(err("sku", format!("{:?} is not in the SKU catalogue", a.sku)));
        }
        if a.gpus == 0 || a.gpus > 100_000 {
            return Err(err("gpus", "1 to 100000"));
        }
        positive_money("cost", a.cost)?;
        if !(1..=240).contains(&a.depreciation_months) {
            return Err(err("depreciation_months", "1 to 240"));
        }
        Ok(())
    }
}

impl AllocationKey {
    fn validate(&self) -> Result<(), BudgetError> {
        let k = self;
        code("key_id", &k.key_id, 24)?;
        if k.shares.is_empty() {
            return Err(err("shares", "at least one share"));
        }
        for (i, s) in k.shares.iter().enumerate() {
            if s.percent <= Decimal::ZERO || s.percent.normalize().scale() > 4 {
                return Err(err(&format!("shares[{i}].percent"), "greater than zero, at most 4 decimals"));
            }
        }
        let total: Decimal = k.shares.iter().map(|s| s.percent).sum();
        if total != Decimal::ONE_HUNDRED {
            return Err(err("shares", format!("the shares add up to {total} %, not 100 %")));
        }
        text("rationale", &k.rationale, 500)?;
        Ok(())
    }
}

fn text(field: &str, v: &str, max: usize) -> Result<(), BudgetError> {
    if v.trim().is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(err(field, format!("1 to {max} printable characters")));
    }
    Ok(())
}

fn code(field: &str, v: &str, max: usize) -> Result<(), BudgetError> {
    let ok = !v.is_empty()
        && v.len() <= max
        && v.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-._/".contains(&b));
    if !ok {
        return Err(err(field, format!("{v:?}: 1 to {max} capital letters, digits, - . _ /")));
    }
    Ok(())
}

fn money(field: &str, v: Decimal) -> Result<(), BudgetError> {
    if v.normalize().scale() > 2 {
        return Err(err(field, format!("{v}: at most two decimal places (cents)")));
    }
    Ok(())
}

fn positive_money(field: &str, v: Decimal) -> Result<(), BudgetError> {
    money(field, v)?;
    if v <= Decimal::ZERO {
        return Err(err(field, format!("{v}: must be greater than zero")));
    }
    Ok(())
}

fn eur(v: &str) -> Result<(), BudgetError> {
    if v != "EUR" {
        return Err(err("currency", format!("{v:?}: the programme is kept in EUR; convert before booking")));
    }
    Ok(())
}

impl BudgetEvent {
    pub fn parse(kind: &str, data: &serde_json::Value) -> Result<BudgetEvent, BudgetError> {
        fn de<T: serde::de::DeserializeOwned>(data: &serde_json::Value) -> Result<T, BudgetError> {
            serde_json::from_value(data.clone()).map_err(|e| err("data", e.to_string()))
        }
        let e = match kind {
            KIND_PROGRAMME => BudgetEvent::Programme(de(data)?),
            KIND_COST_CENTER => BudgetEvent::CostCenter(de(data)?),
            KIND_WBS => BudgetEvent::Wbs(de(data)?),
            KIND_GL_ACCOUNT => BudgetEvent::GlAccount(de(data)?),
            KIND_ALLOCATED => BudgetEvent::Allocated(de(data)?),
            KIND_REALLOCATED => BudgetEvent::Reallocated(de(data)?),
            KIND_PURCHASE_ORDER => BudgetEvent::PurchaseOrder(de(data)?),
            KIND_COST => BudgetEvent::Cost(de(data)?),
            KIND_ASSET => BudgetEvent::Asset(de(data)?),
            KIND_ALLOCATION_KEY => BudgetEvent::AllocationKey(de(data)?),
            KIND_FORECAST => BudgetEvent::Forecast(de(data)?),
            KIND_TAX_CODE => BudgetEvent::TaxCode(de(data)?),
            KIND_CUSTOMER => BudgetEvent::Customer(de(data)?),
            KIND_JOURNAL_EXPORTED => BudgetEvent::JournalExported(de(data)?),
            KIND_DEPRECIATION_POSTING => BudgetEvent::DepreciationPosting(de(data)?),
            other => return Err(err("kind", format!("{other:?} is not one of {BUDGET_KINDS:?}"))),
        };
        e.validate()?;
        Ok(e)
    }

    /// Rules the event must meet on its own.
    pub fn validate(&self) -> Result<(), BudgetError> {
        match self {
            BudgetEvent::Programme(p) => {
                code("programme_id", &p.programme_id, 24)?;
                text("name", &p.name, 200)?;
                positive_money("total_budget", p.total_budget)?;
                eur(&p.currency)?;
                code("company_code", &p.company_code, 4)?;
            }
            BudgetEvent::CostCenter(c) => {
                code("cost_center", &c.cost_center, 24)?;
                text("name", &c.name, 200)?;
                code("controlling_area", &c.controlling_area, 4)?;
                code("sap_cost_center", &c.sap_cost_center, 10)?;
                code("profit_center", &c.profit_center, 10)?;
            }
            BudgetEvent::Wbs(w) => {
                code("wbs", &w.wbs, 24)?;
                text("name", &w.name, 200)?;
                code("cost_center", &w.cost_center, 24)?;
            }
            BudgetEvent::GlAccount(g) => {
                if g.account.is_empty() || g.account.len() > 10 || !g.account.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err("account", "1 to 10 digits"));
                }
                text("name", &g.name, 200)?;
            }
            BudgetEvent::Allocated(a) => {
                positive_money("amount", a.amount)?;
                text("approved_by", &a.approved_by, 100)?;
            }
            BudgetEvent::Reallocated(r) => r.validate()?,
            BudgetEvent::PurchaseOrder(p) => {
                code("po_number", &p.po_number, 24)?;
                text("supplier", &p.supplier, 200)?;
                positive_money("amount", p.amount)?;
                eur(&p.currency)?;
            }
            BudgetEvent::Cost(c) => {
                code("document", &c.document, 24)?;
                text("supplier", &c.supplier, 200)?;
                if let Some(po) = &c.po_number {
                    code("po_number", po, 24)?;
                }
                positive_money("amount", c.amount)?;
                eur(&c.currency)?;
            }
            BudgetEvent::Asset(a) => a.validate()?,
            BudgetEvent::AllocationKey(k) => k.validate()?,
            BudgetEvent::TaxCode(t) => t.validate()?,
            BudgetEvent::Customer(c) => c.validate()?,
            BudgetEvent::JournalExported(j) => j.validate()?,
            BudgetEvent::DepreciationPosting(_) => {}
            BudgetEvent::Forecast(f) => {
                money("estimate_to_complete", f.estimate_to_complete)?;
                if f.estimate_to_complete < Decimal::ZERO {
                    return Err(err("estimate_to_complete", "must not be negative"));
                }
            }
        }
        Ok(())
    }

    pub fn kind(&self) -> &'static str {
        match self {
            BudgetEvent::Programme(_) => KIND_PROGRAMME,
            BudgetEvent::CostCenter(_) => KIND_COST_CENTER,
            BudgetEvent::Wbs(_) => KIND_WBS,
            BudgetEvent::GlAccount(_) => KIND_GL_ACCOUNT,
            BudgetEvent::Allocated(_) => KIND_ALLOCATED,
            BudgetEvent::Reallocated(_) => KIND_REALLOCATED,
            BudgetEvent::PurchaseOrder(_) => KIND_PURCHASE_ORDER,
            BudgetEvent::Cost(_) => KIND_COST,
            BudgetEvent::Asset(_) => KIND_ASSET,
            BudgetEvent::AllocationKey(_) => KIND_ALLOCATION_KEY,
            BudgetEvent::Forecast(_) => KIND_FORECAST,
            BudgetEvent::TaxCode(_) => KIND_TAX_CODE,
            BudgetEvent::Customer(_) => KIND_CUSTOMER,
            BudgetEvent::JournalExported(_) => KIND_JOURNAL_EXPORTED,
            BudgetEvent::DepreciationPosting(_) => KIND_DEPRECIATION_POSTING,
        }
    }

    /// The business date: the report as of a date includes the events dated up to it.
    pub fn date(&self) -> NaiveDate {
        match self {
            BudgetEvent::Programme(x) => x.date,
            BudgetEvent::CostCenter(x) => x.date,
            BudgetEvent::Wbs(x) => x.date,
            BudgetEvent::GlAccount(x) => x.date,
            BudgetEvent::Allocated(x) => x.date,
            BudgetEvent::Reallocated(x) => x.date,
            BudgetEvent::PurchaseOrder(x) => x.date,
            BudgetEvent::Cost(x) => x.date,
            BudgetEvent::Asset(x) => x.in_service,
            BudgetEvent::AllocationKey(x) => x.date,
            BudgetEvent::Forecast(x) => x.date,
            BudgetEvent::TaxCode(x) => x.date,
            BudgetEvent::Customer(x) => x.date,
            BudgetEvent::JournalExported(x) => x.date,
            BudgetEvent::DepreciationPosting(x) => x.date,
        }
    }

    pub fn data(&self) -> serde_json::Value {
        match self {
            BudgetEvent::Programme(x) => serde_json::to_value(x),
            BudgetEvent::CostCenter(x) => serde_json::to_value(x),
            BudgetEvent::Wbs(x) => serde_json::to_value(x),
            BudgetEvent::GlAccount(x) => serde_json::to_value(x),
            BudgetEvent::Allocated(x) => serde_json::to_value(x),
            BudgetEvent::Reallocated(x) => serde_json::to_value(x),
            BudgetEvent::PurchaseOrder(x) => serde_json::to_value(x),
            BudgetEvent::Cost(x) => serde_json::to_value(x),
            BudgetEvent::Asset(x) => serde_json::to_value(x),
            BudgetEvent::AllocationKey(x) => serde_json::to_value(x),
            BudgetEvent::Forecast(x) => serde_json::to_value(x),
            BudgetEvent::TaxCode(x) => serde_json::to_value(x),
            BudgetEvent::Customer(x) => serde_json::to_value(x),
            BudgetEvent::JournalExported(x) => serde_json::to_value(x),
            BudgetEvent::DepreciationPosting(x) => serde_json::to_value(x),
        }
        .expect("budget events serialize")
    }
}
