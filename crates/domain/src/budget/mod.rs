//! The investment budget: the programme and its cost centres, WBS elements and G/L accounts;
//! budget allocations and reallocations; purchase orders, supplier invoices and commissioned
//! assets, each an event; the budget state as a fold with the rules a booking must pass; the
//! report (budget, committed, actual, remaining, forecast, the fleet and the revenue recovered)
//! as of any date; and the journal for SAP. Pure: every input is passed in.

pub mod ec_sales;
pub mod events;
pub mod keys;
pub mod lock;
pub mod report;
pub mod sap;
pub mod sap_master;
pub mod state;

pub use events::BudgetEvent;
pub use state::BudgetState;

#[cfg(test)]
mod books_tests;
#[cfg(test)]
mod sap_tests;
#[cfg(test)]
mod tests;
