//! The meter: dcgm-exporter scrapes turned into usage events, without I/O. `exposition` reads
//! the Prometheus text format, `scrape` finds the devices of one scrape, `timeline` keeps each
//! device's held time between scrapes and closes whole minutes into runs, `energy` turns the
//! millijoule counter into exact watt-hours, `event` builds the usage events and their ids,
//! `sku_map` finds a model's SKU in the catalogue, `fleet` writes a large synthetic scrape,
//! `coverage` folds the coverage rows of closed runs into the report per SKU and day.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

pub mod coverage;
pub mod energy;
pub mod event;
pub mod exposition;
pub mod fleet;
pub mod scrape;
pub mod sku_map;
pub mod timeline;

#[cfg(test)]
mod tests;

/// A device the meter bills: a whole GPU, or one MIG instance (GPU instance id) of a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DeviceKey {
    pub gpu: Uuid,
    pub mig_instance: Option<u8>,
}

impl fmt::Display for DeviceKey {
    /// `GPU-<uuid>` or `GPU-<uuid>/mig-<id>`: the device's part of an event id's name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GPU-{}", self.gpu.hyphenated())?;
        match self.mig_instance {
            Some(i) => write!(f, "/mig-{i}"),
            None => Ok(()),
        }
    }
}

/// The Kubernetes workload the exporter's pod mapping names on a device.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Workload {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

/// Who a namespace's usage is billed to at an instant (the ledger's effective-dated map).
pub trait Tenants {
    fn tenant_of(&self, namespace: &str, at: chrono::DateTime<chrono::Utc>) -> Option<String>;
}
