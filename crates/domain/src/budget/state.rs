//! The budget state: a fold of budget events, and the rules a new event must pass against it.

use super::events::*;
use super::lock::JournalExported;
use super::sap_master::{Customer, DepreciationPosting, TaxCode};
use crate::billing::Period;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

mod admit;

/// The figures of one bucket (cost centre, WBS element, category).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub budget: Decimal,
    /// Purchase orders not yet invoiced.
    pub open_commitments: Decimal,
    pub actual: Decimal,
    pub estimate_to_complete: Decimal,
}

impl Figures {
    /// Budget − open commitments − actual costs.
    pub fn remaining(&self) -> Decimal {
        self.budget - self.open_commitments - self.actual
    }

    /// Actual + open commitments + the latest estimate to complete.
    pub fn forecast_at_completion(&self) -> Decimal {
        self.actual + self.open_commitments + self.estimate_to_complete
    }

    pub fn add(&mut self, o: &Figures) {
        self.budget += o.budget;
        self.open_commitments += o.open_commitments;
        self.actual += o.actual;
        self.estimate_to_complete += o.estimate_to_complete;
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoState {
    pub order: PurchaseOrder,
    /// Invoiced against it so far.
    pub invoiced: Decimal,
}

impl PoState {
    pub fn open(&self) -> Decimal {
        (self.order.amount - self.invoiced).max(Decimal::ZERO)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BudgetState {
    pub programme: Option<Programme>,
    pub cost_centers: BTreeMap<String, CostCenter>,
    pub wbs: BTreeMap<String, WbsElement>,
    pub gl: BTreeMap<GlRole, GlAccount>,
    pub buckets: BTreeMap<Bucket, Figures>,
    pub orders: BTreeMap<String, PoState>,
    pub documents: BTreeMap<String, CostBooking>,
    pub assets: BTreeMap<String, Asset>,
    pub keys: BTreeMap<Period, AllocationKey>,
    pub reallocations: BTreeMap<String, Reallocation>,
    /// Per VAT category (S, AE, O).
    pub tax_codes: BTreeMap<String, TaxCode>,
    /// Per tenant.
    pub customers: BTreeMap<String, Customer>,
    /// Periods whose SAP journal was handed over.
    pub exported: BTreeMap<Period, JournalExported>,
    /// How the journal posts depreciation (default: cost centre, by the journal).
    pub depreciation: DepreciationPosting,
    /// Every event by its business key (`keys`).
    pub by_key: BTreeMap<String, BudgetEvent>,
}

impl BudgetState {
    /// The fold of events in ledger order (each assumed admitted when it was appended).
    pub fn fold<'a>(events: impl IntoIterator<Item = &'a BudgetEvent>) -> BudgetState {
        let mut s = BudgetState::default();
        for e in events {
            s.apply(e);
        }
        s
    }

    /// The fold of the events dated up to `as_of`.
    pub fn as_of<'a>(events: impl IntoIterator<Item = &'a BudgetEvent>, as_of: NaiveDate) -> BudgetState {
        BudgetState::fold(events.into_iter().filter(|e| e.date() <= as_of))
    }

    /// Programme total minus everything allocated.
    pub fn unallocated(&self) -> Decimal {
        let total = self.programme.as_ref().map_or(Decimal::ZERO, |p| p.total_budget);
        total - self.buckets.values().map(|f| f.budget).sum::<Decimal>()
    }

    fn open_bucket(&self, field: &str, cost_center: &str, wbs: &str) -> Result<(), BudgetError> {
        let cc = self
            .cost_centers
            .get(cost_center)
            .ok_or_else(|| err(field, format!("unknown cost centre {cost_center:?}")))?;
        if !cc.open {
            return Err(err(field, format!("cost centre {cost_center} is closed")));
        }
        let w = self.wbs.get(wbs).ok_or_else(|| err("wbs", format!("unknown WBS element {wbs:?}")))?;
        if !w.open {
            return Err(err("wbs", format!("WBS element {wbs} is closed")));
        }
        if w.cost_center != cost_center {
            return Err(err(
                "wbs",
                format!("WBS element {wbs} belongs to cost centre {}, not {cost_center}", w.cost_center),
            ));
        }
        Ok(())
    }

    /// Whether `more` (of `booked` EUR, the rest covered by an order) fits the bucket's remaining
    /// budget; the refusal names the amount booked and the part beyond the budget.
    fn fits(&self, b: &Bucket, booked: Decimal, more: Decimal) -> Result<(), BudgetError> {
        let f = self.buckets.get(b).copied().unwrap_or_default();
        if more > f.remaining() {
            let covered = match booked - more {
                c if c.is_zero() => String::new(),
                c => format!(" ({c} EUR of it covered by its purchase order)"),
            };
            return Err(err(
                "amount",
                format!(
                    "{booked} EUR{covered} would exceed the budget of {} / {} / {} by {} EUR: budget {}, committed {}, actual {}, remaining {}; an approved reallocation is needed first",
                    b.cost_center,
                    b.wbs,
                    b.category.as_str(),
                    more - f.remaining(),
                    f.budget,
                    f.open_commitments,
                    f.actual,
                    f.remaining()
                ),
            ));
        }
        Ok(())
    }

    /// Actual cost booked on a WBS element (all categories) and the cost of the assets already
    /// capitalised from it.
    pub fn wbs_actual_and_capitalised(&self, wbs: &str) -> (Decimal, Decimal) {
        let actual = self.buckets.iter().filter(|(b, _)| b.wbs == wbs).map(|(_, f)| f.actual).sum();
        let capitalised = self.assets.values().filter(|a| a.wbs == wbs).map(|a| a.cost).sum();
        (actual, capitalised)
    }

    /// An asset is capitalised from the actual cost of its WBS element, which must belong to the
    /// asset's cost centre; its cost may not exceed what the element's actual cost leaves after
    /// the assets already capitalised from it.
    fn asset_fits(&self, a: &Asset) -> Result<(), BudgetError> {
        let w = self.wbs.get(&a.wbs).ok_or_else(|| err("wbs", format!("unknown WBS element {:?}", a.wbs)))?;
        if w.cost_center != a.cost_center {
            return Err(err(
                "wbs",
                format!("WBS element {} belongs to cost centre {}, not {}", a.wbs, w.cost_center, a.cost_center),
            ));
        }
        let (actual, capitalised) = self.wbs_actual_and_capitalised(&a.wbs);
        let left = actual - capitalised;
        if a.cost > left {
            return Err(err(
                "cost",
                format!(
                    "{} EUR exceeds the actual cost of WBS element {} not yet capitalised by {} EUR: actual {}, in assets already {}, left {}; book the supplier invoices first",
                    a.cost,
                    a.wbs,
                    a.cost - left,
                    actual,
                    capitalised,
                    left
                ),
            ));
        }
        Ok(())
    }

    /// A cost centre is closed only when no purchase order on it is still open and no allocation
    /// key in force on the day or later gives it revenue.
    fn may_close(&self, c: &CostCenter) -> Result<(), BudgetError> {
        let open: Vec<&PoState> =
            self.orders.values().filter(|o| o.order.cost_center == c.cost_center && o.open() > Decimal::ZERO).collect();
        if !open.is_empty() {
            let total: Decimal = open.iter().map(|o| o.open()).sum();
            let numbers: Vec<&str> = open.iter().map(|o| o.order.po_number.as_str()).collect();
            return Err(err(
                "open",
                format!(
                    "cost centre {} has open commitments of {total} EUR (purchase orders {}); invoice them before closing it",
                    c.cost_center,
                    numbers.join(", ")
                ),
            ));
        }
        let from = super::report::month_of(c.date);
        let in_force = self.key_for(from).into_iter().chain(self.keys.range(from.next()..).map(|(_, k)| k));
        for k in in_force {
            if let Some(s) = k.shares.iter().find(|s| s.cost_center == c.cost_center) {
                return Err(err(
                    "open",
                    format!(
                        "cost centre {} still takes {} % of revenue in allocation key {} (from {}); set a key without it first",
                        c.cost_center, s.percent, k.key_id, k.effective_from
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Whether the event is in the ledger already, same key and same content.
    pub fn is_duplicate(&self, e: &BudgetEvent) -> bool {
        self.by_key.get(&e.business_key()) == Some(e)
    }

    pub fn apply(&mut self, e: &BudgetEvent) {
        self.by_key.entry(e.business_key()).or_insert_with(|| e.clone());
        match e {
            BudgetEvent::Programme(p) => self.programme = Some(p.clone()),
            BudgetEvent::CostCenter(c) => {
                self.cost_centers.insert(c.cost_center.clone(), c.clone());
            }
            BudgetEvent::Wbs(w) => {
                self.wbs.insert(w.wbs.clone(), w.clone());
            }
            BudgetEvent::GlAccount(g) => {
                self.gl.insert(g.role, g.clone());
            }
            BudgetEvent::Allocated(a) => self.buckets.entry(a.bucket()).or_default().budget += a.amount,
            BudgetEvent::Reallocated(r) => {
                for m in &r.moves {
                    self.buckets.entry(m.bucket()).or_default().budget += m.amount;
                }
                self.reallocations.insert(r.reallocation_id.clone(), r.clone());
            }
            BudgetEvent::PurchaseOrder(p) => {
                self.buckets.entry(p.bucket()).or_default().open_commitments += p.amount;
                self.orders.insert(p.po_number.clone(), PoState { order: p.clone(), invoiced: Decimal::ZERO });
            }
            BudgetEvent::Cost(c) => {
                let covered = match c.po_number.as_ref().and_then(|po| self.orders.get_mut(po)) {
                    Some(o) => {
                        let covered = o.open().min(c.amount);
                        o.invoiced += c.amount;
                        covered
                    }
                    None => Decimal::ZERO,
                };
                let f = self.buckets.entry(c.bucket()).or_default();
                f.open_commitments -= covered;
                f.actual += c.amount;
                self.documents.insert(c.document.clone(), c.clone());
            }
            BudgetEvent::Asset(a) => {
                self.assets.insert(a.asset_id.clone(), a.clone());
            }
            BudgetEvent::AllocationKey(k) => {
                self.keys.insert(k.effective_from, k.clone());
            }
            BudgetEvent::Forecast(f) => {
                self.buckets.entry(f.bucket()).or_default().estimate_to_complete = f.estimate_to_complete
            }
            BudgetEvent::TaxCode(t) => {
                self.tax_codes.insert(t.category.clone(), t.clone());
            }
            BudgetEvent::Customer(c) => {
                self.customers.insert(c.tenant_id.clone(), c.clone());
            }
            BudgetEvent::DepreciationPosting(d) => self.depreciation = *d,
            BudgetEvent::JournalExported(j) => {
                self.exported.entry(j.period).or_insert_with(|| j.clone());
            }
        }
    }

    /// The latest period whose journal was exported: it and every month before it are closed.
    pub fn locked_through(&self) -> Option<Period> {
        self.exported.keys().next_back().copied()
    }

    /// The allocation key in force for a period.
    pub fn key_for(&self, p: Period) -> Option<&AllocationKey> {
        self.keys.range(..=p).next_back().map(|(_, k)| k)
    }
}
