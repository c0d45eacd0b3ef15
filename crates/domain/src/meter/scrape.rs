//! One dcgm-exporter scrape turned into one observation per device: a whole GPU (`UUID`), or a
//! MIG instance (`UUID` + `GPU_I_ID`), with the workload the exporter's Kubernetes mapping
//! names on it and the GPU's energy counter.
//!
//! The exporter writes (internal/pkg/rendermetrics/render_metrics.go):
//! `NAME{gpu="0",UUID="GPU-…",pci_bus_id="…",device="nvidia0",modelName="…"[,GPU_I_PROFILE="1g.18gb",GPU_I_ID="3"][,hostname="…"][,labels…][,container="…",namespace="…",pod="…",pod_uid="…"]} value`.
//! Older versions write `Hostname`, and `container_name`/`pod_name`/`pod_namespace`; both are read.

use super::exposition::{Malformed, Sample};
use super::{DeviceKey, Workload};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::str::FromStr;
use uuid::Uuid;

pub const METRIC_ENERGY: &str = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION";
pub const METRIC_GPU_UTIL: &str = "DCGM_FI_DEV_GPU_UTIL";
pub const METRIC_GR_ENGINE_ACTIVE: &str = "DCGM_FI_PROF_GR_ENGINE_ACTIVE";
pub const METRIC_POWER: &str = "DCGM_FI_DEV_POWER_USAGE";

/// What one scrape says about one device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Observation {
    pub model_name: String,
    pub node: String,
    pub mig_profile: Option<String>,
    /// `None`: no pod holds the device (the exporter writes `namespace=""`).
    pub workload: Option<Workload>,
    /// The GPU's energy counter, mJ since boot; `None` for a MIG instance, whose device fields
    /// are the parent GPU's (the exporter repeats the whole GPU's value on every instance).
    #[serde(with = "crate::billing::dec::option")]
    pub energy_mj: Option<Decimal>,
}

/// A device or line the scrape could not use, and why (the collector logs each one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    Line(Malformed),
    Device { device: String, why: &'static str },
}

/// The devices of one scrape (DCGM_FI_* samples with a GPU `UUID`), keyed by device.
pub fn observations(samples: &[Sample<'_>]) -> (BTreeMap<DeviceKey, Observation>, Vec<Skipped>) {
    let mut seen: BTreeMap<DeviceKey, Result<Observation, &'static str>> = BTreeMap::new();
    let mut skipped = Vec::new();
    for s in samples.iter().filter(|s| s.name.starts_with("DCGM_FI_")) {
        let key = match device_key(s) {
            Ok(Some(k)) => k,
            Ok(None) => continue,
            Err(why) => {
                skipped.push(Skipped::Device { device: s.label("UUID").unwrap_or("").to_string(), why });
                continue;
            }
        };
        let entry = seen.entry(key).or_insert_with(|| observation(s));
        if let Ok(o) = entry {
            if let Err(why) = merge(o, s) {
                *entry = Err(why);
            }
        }
    }
    let mut devices = BTreeMap::new();
    for (key, o) in seen {
        match o {
            Ok(o) => {
                devices.insert(key, o);
            }
            Err(why) => skipped.push(Skipped::Device { device: key.to_string(), why }),
        }
    }
    (devices, skipped)
}

/// The device a sample is about; `None` for samples of no GPU (NVSwitch, CPU, link metrics).
fn device_key(s: &Sample<'_>) -> Result<Option<DeviceKey>, &'static str> {
    let Some(uuid) = s.label("UUID").or_else(|| s.label("uuid")) else { return Ok(None) };
    let gpu = uuid.strip_prefix("GPU-").filter(|u| u.len() == 36).ok_or("UUID is not GPU-<uuid>")?;
    let gpu = Uuid::try_parse(gpu).map_err(|_| "UUID is not GPU-<uuid>")?;
    let mig_instance = match (s.label("GPU_I_ID"), s.label("GPU_I_PROFILE")) {
        (None, None) => None,
        (Some(id), Some(_)) if (1..=2).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit()) => {
            Some(id.parse::<u8>().expect("two digits"))
        }
        _ => return Err("GPU_I_ID and GPU_I_PROFILE must come together, the id one or two digits"),
    };
    Ok(Some(DeviceKey { gpu, mig_instance }))
}

fn first<'s>(s: &'s Sample<'_>, keys: &[&str]) -> Option<&'s str> {
    keys.iter().find_map(|k| s.label(k))
}

fn observation(s: &Sample<'_>) -> Result<Observation, &'static str> {
    let namespace = first(s, &["namespace", "pod_namespace"]).unwrap_or("");
    let workload = if namespace.is_empty() {
        None
    } else {
        Some(Workload {
            namespace: namespace.to_string(),
            pod: first(s, &["pod", "pod_name"]).unwrap_or("").to_string(),
            container: first(s, &["container", "container_name"]).unwrap_or("").to_string(),
        })
    };
    Ok(Observation {
        model_name: s.label("modelName").unwrap_or("").to_string(),
        node: first(s, &["hostname", "Hostname"]).unwrap_or("").to_string(),
        mig_profile: s.label("GPU_I_PROFILE").map(str::to_string),
        workload,
        energy_mj: None,
    })
}

/// Adds one more sample of the same device: its labels must agree with the first sample's (a
/// device held by two workloads at once cannot be billed to either), and the energy counter is
/// taken from its own metric.
fn merge(o: &mut Observation, s: &Sample<'_>) -> Result<(), &'static str> {
    let again = observation(s)?;
    if again.workload != o.workload || again.model_name != o.model_name || again.node != o.node {
        return Err("samples of one device name different workloads, models or nodes");
    }
    if s.name == METRIC_ENERGY && o.mig_profile.is_none() {
        // Go's %d for an int64 field; the exponent form if a float formatter ever writes it.
        let mj = Decimal::from_str(s.value)
            .or_else(|_| Decimal::from_scientific(s.value))
            .map_err(|_| "energy counter is not a decimal")?;
        if mj.is_sign_negative() {
            return Err("energy counter is negative");
        }
        o.energy_mj = Some(mj);
    }
    Ok(())
}
