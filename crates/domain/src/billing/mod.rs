//! Billing: reference data (prices, profiles, contracts, the seller), rating of hourly usage,
//! invoices and credit notes as documents, the plan of a month's close, and the exports finance
//! needs (CSV, JSON, XRechnung UBL, FOCUS). Pure: every input is passed in, nothing is read.

pub mod catalogue;
pub mod close;
pub mod dec;
pub mod export;
pub mod focus;
pub mod index;
pub mod invoice;
pub mod leitweg;
pub mod mig_price;
pub mod namespace_map;
pub mod period;
pub mod rating;
pub mod reference;
pub mod reverse_charge;
pub mod ubl;

pub use period::Period;

#[cfg(test)]
pub(crate) mod tests;
