//! Business keys: what makes two budget events the same business event, whatever their event
//! ids. An event whose key is in the ledger with the same content is a duplicate (counted, not
//! booked again); with other content it is refused. An item loaded without an event id gets one
//! derived from its key, so a retried load answers "exists".
//!
//! Master data are versions: their key is the record and the day it takes effect. An allocation
//! has no number of its own: its key is the bucket, the approval and the day, so one approval
//! allocates to a bucket once on a day (a change is a reallocation).

use super::events::{err, BudgetError, BudgetEvent};
use uuid::Uuid;

impl BudgetEvent {
    /// The business key, unique within the budget stream.
    pub fn business_key(&self) -> String {
        let kind = self.kind();
        let key = match self {
            BudgetEvent::Programme(x) => format!("{}@{}", x.programme_id, x.date),
            BudgetEvent::CostCenter(x) => format!("{}@{}", x.cost_center, x.date),
            BudgetEvent::Wbs(x) => format!("{}@{}", x.wbs, x.date),
            BudgetEvent::GlAccount(x) => format!("{:?}@{}", x.role, x.date),
            BudgetEvent::Allocated(x) => {
                format!("{}/{}/{}/{}@{}", x.cost_center, x.wbs, x.category.as_str(), x.approved_by, x.date)
            }
            BudgetEvent::Reallocated(x) => x.reallocation_id.clone(),
            BudgetEvent::PurchaseOrder(x) => x.po_number.clone(),
            BudgetEvent::Cost(x) => x.document.clone(),
            BudgetEvent::Asset(x) => x.asset_id.clone(),
            BudgetEvent::AllocationKey(x) => x.key_id.clone(),
            BudgetEvent::Forecast(x) => format!("{}/{}/{}@{}", x.cost_center, x.wbs, x.category.as_str(), x.date),
            BudgetEvent::TaxCode(x) => format!("{}@{}", x.category, x.date),
            BudgetEvent::Customer(x) => format!("{}@{}", x.tenant_id, x.date),
            BudgetEvent::JournalExported(x) => x.period.to_string(),
            BudgetEvent::DepreciationPosting(x) => x.date.to_string(),
        };
        format!("{kind}/{key}")
    }

    /// The event id of an item loaded without one: derived from the business key.
    pub fn derived_event_id(&self) -> Uuid {
        Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("gpuledger.budget/{}", self.business_key()).as_bytes())
    }
}

/// Refuses an event whose key is in the ledger with other content (`old`).
pub fn refuse_other_content(old: &BudgetEvent, new: &BudgetEvent) -> Result<(), BudgetError> {
    if old == new {
        return Ok(());
    }
    Err(err(
        "business_key",
        format!(
            "{} is already in the ledger with other content ({}); a change is a new event: a reallocation, a new order or document number, a version dated later",
            new.business_key(),
            summary(old)
        ),
    ))
}

fn summary(e: &BudgetEvent) -> String {
    let mut s = e.data().to_string();
    if s.chars().count() > 300 {
        s = s.chars().take(300).collect::<String>() + "…";
    }
    s
}
