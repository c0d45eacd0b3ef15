//! The rules a new budget event must pass against the state: one check per kind of event, and
//! `admits` to run the business-key, period-lock and kind's checks in that order.

use super::super::events::*;
use super::super::keys::refuse_other_content;
use super::super::lock::{check_reexport, refuse_in_closed_period};
use super::BudgetState;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

impl BudgetState {
    /// Checks an event against this state. Nothing is changed.
    pub fn admits(&self, e: &BudgetEvent) -> Result<(), BudgetError> {
        if let BudgetEvent::JournalExported(j) = e {
            return match self.exported.get(&j.period) {
                Some(recorded) => check_reexport(recorded, &j.sha256),
                None => Ok(()),
            };
        }
        if let Some(old) = self.by_key.get(&e.business_key()) {
            refuse_other_content(old, e)?;
            return Err(err("business_key", format!("{} is already in the ledger", e.business_key())));
        }
        refuse_in_closed_period(e.kind(), e.date(), self.locked_through())?;
        match e {
            BudgetEvent::Programme(p) => self.admits_programme(p),
            BudgetEvent::CostCenter(c) => {
                if !c.open && self.cost_centers.get(&c.cost_center).is_some_and(|old| old.open) {
                    self.may_close(c)?;
                }
                Ok(())
            }
            BudgetEvent::GlAccount(_)
            | BudgetEvent::TaxCode(_)
            | BudgetEvent::Customer(_)
            | BudgetEvent::DepreciationPosting(_)
            | BudgetEvent::JournalExported(_) => Ok(()),
            BudgetEvent::Wbs(w) => self.admits_wbs(w),
            BudgetEvent::Allocated(a) => self.admits_allocation(a),
            BudgetEvent::Reallocated(r) => self.admits_reallocation(r),
            BudgetEvent::PurchaseOrder(p) => self.admits_purchase_order(p),
            BudgetEvent::Cost(c) => self.admits_cost(c),
            BudgetEvent::Asset(a) => self.admits_asset(a),
            BudgetEvent::AllocationKey(k) => self.admits_allocation_key(k),
            BudgetEvent::Forecast(f) => self.open_bucket("cost_center", &f.cost_center, &f.wbs),
        }
    }

    fn needs_programme(&self) -> Result<(), BudgetError> {
        self.programme.as_ref().map(|_| ()).ok_or_else(|| err("programme", "no programme.set yet"))
    }

    fn admits_programme(&self, p: &Programme) -> Result<(), BudgetError> {
        if let Some(old) = &self.programme {
            if old.programme_id != p.programme_id {
                return Err(err("programme_id", "one programme per ledger"));
            }
        }
        let allocated: Decimal = self.buckets.values().map(|f| f.budget).sum();
        if p.total_budget < allocated {
            return Err(err(
                "total_budget",
                format!("{} is less than the {allocated} already allocated", p.total_budget),
            ));
        }
        Ok(())
    }

    fn admits_wbs(&self, w: &WbsElement) -> Result<(), BudgetError> {
        if !self.cost_centers.contains_key(&w.cost_center) {
            return Err(err("cost_center", format!("unknown cost centre {:?}", w.cost_center)));
        }
        if let Some(old) = self.wbs.get(&w.wbs) {
            if old.cost_center != w.cost_center {
                return Err(err("cost_center", "a WBS element keeps its cost centre"));
            }
        }
        Ok(())
    }

    fn admits_allocation(&self, a: &Allocation) -> Result<(), BudgetError> {
        self.needs_programme()?;
        self.open_bucket("cost_center", &a.cost_center, &a.wbs)?;
        if a.amount > self.unallocated() {
            return Err(err(
                "amount",
                format!(
                    "{} EUR is more than the {} not yet allocated, by {} EUR",
                    a.amount,
                    self.unallocated(),
                    a.amount - self.unallocated()
                ),
            ));
        }
        Ok(())
    }

    fn admits_reallocation(&self, r: &Reallocation) -> Result<(), BudgetError> {
        self.needs_programme()?;
        if self.reallocations.contains_key(&r.reallocation_id) {
            return Err(err("reallocation_id", "already used"));
        }
        let mut after: BTreeMap<Bucket, Decimal> = BTreeMap::new();
        for (i, m) in r.moves.iter().enumerate() {
            self.open_bucket(&format!("moves[{i}].cost_center"), &m.cost_center, &m.wbs)?;
            *after.entry(m.bucket()).or_default() += m.amount;
        }
        for (b, delta) in after {
            let f = self.buckets.get(&b).copied().unwrap_or_default();
            if f.remaining() + delta < Decimal::ZERO {
                return Err(err(
                    "moves",
                    format!(
                        "{} / {} / {} would have less budget ({}) than it has committed and spent ({}), by {} EUR",
                        b.cost_center,
                        b.wbs,
                        b.category.as_str(),
                        f.budget + delta,
                        f.open_commitments + f.actual,
                        -(f.remaining() + delta)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn admits_purchase_order(&self, p: &PurchaseOrder) -> Result<(), BudgetError> {
        self.open_bucket("cost_center", &p.cost_center, &p.wbs)?;
        if self.orders.contains_key(&p.po_number) {
            return Err(err("po_number", format!("purchase order {} exists; a change is a new order", p.po_number)));
        }
        self.fits(&p.bucket(), p.amount, p.amount)
    }

    fn admits_cost(&self, c: &CostBooking) -> Result<(), BudgetError> {
        self.open_bucket("cost_center", &c.cost_center, &c.wbs)?;
        if self.documents.contains_key(&c.document) {
            return Err(err("document", format!("supplier invoice {} is already booked", c.document)));
        }
        let covered = match &c.po_number {
            Some(po) => {
                let o = self.orders.get(po).ok_or_else(|| err("po_number", format!("unknown purchase order {po}")))?;
                if o.order.bucket() != c.bucket() {
                    return Err(err(
                        "po_number",
                        format!("purchase order {po} is on another cost centre / WBS / category"),
                    ));
                }
                o.open().min(c.amount)
            }
            None => Decimal::ZERO,
        };
        self.fits(&c.bucket(), c.amount, c.amount - covered)
    }

    fn admits_asset(&self, a: &Asset) -> Result<(), BudgetError> {
        if self.assets.contains_key(&a.asset_id) {
            return Err(err("asset_id", "already commissioned"));
        }
        if !self.cost_centers.contains_key(&a.cost_center) {
            return Err(err("cost_center", format!("unknown cost centre {:?}", a.cost_center)));
        }
        self.asset_fits(a)
    }

    fn admits_allocation_key(&self, k: &AllocationKey) -> Result<(), BudgetError> {
        for (i, s) in k.shares.iter().enumerate() {
            let field = format!("shares[{i}].cost_center");
            let cc = self
                .cost_centers
                .get(&s.cost_center)
                .ok_or_else(|| err(&field, format!("unknown cost centre {:?}", s.cost_center)))?;
            if !cc.open {
                return Err(err(&field, format!("cost centre {} is closed", s.cost_center)));
            }
        }
        Ok(())
    }
}
