//! The API's routes, one module per kind of reader: health, a tenant's usage, invoices, finance
//! and auditors. Each module holds its handlers and the response types the OpenAPI document names.

pub(crate) mod audit;
mod batch;
pub(crate) mod coverage;
pub(crate) mod events;
pub(crate) mod finance;
pub(crate) mod health;
pub(crate) mod invoices;
pub(crate) mod usage;

/// Longest page of invoices or events one request may ask for.
pub const PAGE_MAX: i64 = 500;
