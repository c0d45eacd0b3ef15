//! What a ledger row says, whichever way it is stored: usage events as typed columns (migration
//! 0005), every other kind, and usage rows written before 0005, as a jsonb `payload`. Readers
//! select [`content_columns`] and get the same [`Content`] either way; the canonical payload bytes
//! under the hash chain are the same either way too.

use crate::StoreError;
use chrono::{DateTime, Utc};
use domain::energy::WattHours;
use domain::gpu_seconds::GpuSeconds;
use domain::usage::{MigSlice, UsageRecorded};
use postgres::Row;
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

/// The columns that hold a row's content, in the order [`content`] reads them.
const COLUMNS: [&str; 13] = [
    "payload",
    "gpu_id",
    "interval_end",
    "gpu_seconds",
    "gpu_sku",
    "node",
    "project",
    "job",
    "labels",
    "source",
    "mig_instance",
    "mig_profile",
    "energy_wh",
];

/// `payload, gpu_id, ...` for a SELECT list, each prefixed with `alias.` when one is given.
pub fn content_columns(alias: &str) -> String {
    COLUMNS
        .iter()
        .map(|c| if alias.is_empty() { (*c).to_string() } else { format!("{alias}.{c}") })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A ledger row's content.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Json(Value),
    Usage(Box<UsageRecorded>),
}

/// The row's identity that a typed usage row does not repeat in its content columns.
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub event_id: Uuid,
    pub tenant_id: &'a str,
    /// `occurred_at`: a usage event's `interval_start`.
    pub occurred_at: DateTime<Utc>,
}

/// Reads the content of `row` from the [`content_columns`] that start at column `at`.
pub fn content(row: &Row, at: usize, id: Identity<'_>) -> Result<Content, StoreError> {
    if let Some(payload) = row.get::<_, Option<Value>>(at) {
        return Ok(Content::Json(payload));
    }
    let broken = |what: &str| StoreError::Invariant(format!("ledger row of event {} has {what}", id.event_id));
    let gpu_id: Uuid = row.get::<_, Option<Uuid>>(at + 1).ok_or_else(|| broken("neither payload nor gpu_id"))?;
    let text = |i: usize, name: &str| row.get::<_, Option<String>>(at + i).ok_or_else(|| broken(&format!("no {name}")));
    let seconds: Decimal = row.get::<_, Option<Decimal>>(at + 3).ok_or_else(|| broken("no gpu_seconds"))?;
    let labels: BTreeMap<String, String> = match row.get::<_, Option<Value>>(at + 8) {
        None => BTreeMap::new(),
        Some(v) => serde_json::from_value(v).map_err(|_| broken("labels that are not a map of strings"))?,
    };
    Ok(Content::Usage(Box::new(UsageRecorded {
        event_id: id.event_id,
        source: text(9, "source")?,
        tenant_id: id.tenant_id.to_string(),
        gpu_sku: text(4, "gpu_sku")?,
        gpu_id,
        node: text(5, "node")?,
        project: text(6, "project")?,
        job: row.get(at + 7),
        labels,
        interval_start: id.occurred_at,
        interval_end: row.get::<_, Option<DateTime<Utc>>>(at + 2).ok_or_else(|| broken("no interval_end"))?,
        gpu_seconds: GpuSeconds::new(seconds).map_err(|e| broken(&format!("gpu_seconds out of range: {e}")))?,
        mig: mig_of(row, at + 10).map_err(|what| broken(&what))?,
        energy_wh: match row.get::<_, Option<Decimal>>(at + 12) {
            None => None,
            Some(wh) => Some(WattHours::new(wh).ok_or_else(|| broken(&format!("energy_wh out of range: {wh}")))?),
        },
    })))
}

/// The MIG slice of a typed usage row from its `mig_instance` and `mig_profile` columns at `at`.
fn mig_of(row: &Row, at: usize) -> Result<Option<MigSlice>, String> {
    match (row.get::<_, Option<i16>>(at), row.get::<_, Option<String>>(at + 1)) {
        (None, None) => Ok(None),
        (Some(i), Some(profile)) => {
            let instance = u8::try_from(i).map_err(|_| format!("MIG instance {i}"))?;
            Ok(Some(MigSlice { instance, profile }))
        }
        _ => Err("a MIG instance without its profile, or a profile without its instance".into()),
    }
}

impl Content {
    /// The canonical payload bytes the hash chain covers.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, StoreError> {
        match self {
            Content::Json(v) => serde_json::to_vec(v)
                .map_err(|e| StoreError::Invariant(format!("jsonb payload does not serialize: {e}"))),
            Content::Usage(e) => Ok(e.payload_bytes()),
        }
    }

    /// The payload as JSON (for exports and the API), the same for both kinds of storage.
    pub fn payload_json(&self) -> Value {
        match self {
            Content::Json(v) => v.clone(),
            Content::Usage(e) => e.payload_json(),
        }
    }

    /// The usage event of a `usage.recorded` row.
    pub fn into_usage(self, event_id: Uuid) -> Result<UsageRecorded, StoreError> {
        match self {
            Content::Usage(e) => Ok(*e),
            Content::Json(v) => UsageRecorded::from_payload(event_id, &v)
                .map_err(|rej| StoreError::Invariant(format!("ledgered event {event_id} does not parse: {rej}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_listed_with_and_without_an_alias() {
        assert!(content_columns("").starts_with("payload, gpu_id, interval_end"));
        assert!(content_columns("e").starts_with("e.payload, e.gpu_id"));
        assert_eq!(content_columns("e").matches(", ").count() + 1, COLUMNS.len());
    }
}
