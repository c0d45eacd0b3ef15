//! The pure core of gpuledger: what a usage event is, which ones are valid, how GPU-seconds are
//! counted, how ledger rows are chained by hash, and the projections as folds over the log.
//!
//! This crate knows nothing about PostgreSQL, Kafka or HTTP: it does no I/O, has no async runtime
//! and reads no clock (callers pass `now` in). Everything here is deterministic.

pub mod audit;
pub mod billing;
pub mod budget;
pub mod chain;
pub mod decide;
pub mod energy;
pub mod gdpdu;
pub mod gpu_hours;
pub mod gpu_seconds;
pub mod ijson;
pub mod meter;
pub mod money;
pub mod projection;
pub mod simulate;
pub mod sku;
pub mod usage;

pub use gpu_hours::GpuHours;
pub use gpu_seconds::GpuSeconds;
pub use money::{Money, UnitPrice};
pub use usage::{parse_usage_message, Rejection, RejectionCode, UsageRecorded};
