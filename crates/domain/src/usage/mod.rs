//! The usage event, v1: a CloudEvents 1.0 JSON envelope whose `data` says that one GPU was used by
//! one tenant for an interval. Parsing and validation are one pure function from the raw Kafka
//! message to either a `UsageRecorded` or a `Rejection` with a precise, stable reason code.

use crate::billing::catalogue::is_valid_sku_id;
use crate::gpu_seconds::{GpuSeconds, GpuSecondsError};
use chrono::{DateTime, Datelike, Duration, SecondsFormat, Timelike, Utc};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use uuid::Uuid;

mod canonical;
mod device;
mod json;
mod parse;
mod rejection;
mod validate;

pub use canonical::fingerprint_of;
pub use device::{is_valid_mig_profile, parse_mig_instance, MigSlice};
pub use parse::{parse_usage_event, parse_usage_message};
pub use rejection::{Rejection, RejectionCode};
pub use validate::{interval_seconds, is_valid_tenant_id};
// What the submodules share with each other (each reads its siblings through `super::*`).
use device::*;
use json::*;
use validate::*;

/// The CloudEvents `type` of a usage event, version 1.
pub const EVENT_TYPE: &str = "de.gpuledger.usage.recorded.v1";
/// The ledger kind and version under which usage events are stored.
pub const LEDGER_KIND: &str = "usage.recorded";
pub const LEDGER_VERSION: i16 = 1;
/// Kafka topic carrying usage events.
pub const TOPIC: &str = "gpu.usage.v1";

/// Limits. Everything that comes from outside is bounded.
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024;
pub const TENANT_ID_LEN_MAX: usize = 63;
pub const NODE_LEN_MAX: usize = 63;
pub const LABEL_VALUE_LEN_MAX: usize = 128;
pub const LABEL_KEY_LEN_MAX: usize = 32;
pub const LABELS_COUNT_MAX: usize = 8;
pub const PROJECT_LEN_MAX: usize = 64;
pub const SOURCE_LEN_MAX: usize = 256;
pub const INTERVAL_SECONDS_MAX: i64 = 3600;
/// How far in the future (by the ingester's clock) an interval may end: clock skew allowance.
pub const FUTURE_SKEW_SECONDS: i64 = 300;
pub const YEAR_MIN: i32 = 2020;
pub const YEAR_MAX: i32 = 2100;

/// A validated usage event: this GPU (or this MIG instance of it) was used by this tenant for
/// `gpu_seconds` within `[interval_start, interval_end)`, taking `energy_wh` where measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecorded {
    pub event_id: Uuid,
    pub source: String,
    pub tenant_id: String,
    pub gpu_sku: String,
    pub gpu_id: Uuid,
    pub node: String,
    pub project: String,
    pub job: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub interval_start: DateTime<Utc>,
    pub interval_end: DateTime<Utc>,
    pub gpu_seconds: GpuSeconds,
    /// The MIG instance of `gpu_id` the event is about; `None` for the whole GPU.
    pub mig: Option<MigSlice>,
    /// The energy the device used in the interval, where the producer measured it.
    pub energy_wh: Option<crate::energy::WattHours>,
}

/// Canonical text of an instant: RFC 3339, UTC, `Z`, only as many fractional digits as needed
/// (0, 3 or 6).
pub fn format_instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Canonical text of a GPU id: NVIDIA's `GPU-<uuid>` form, lowercase.
pub fn format_gpu_id(id: Uuid) -> String {
    format!("GPU-{}", id.hyphenated())
}

#[cfg(test)]
mod tests;
