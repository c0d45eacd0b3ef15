//! Runs become usage events (billed time) or coverage rows (every run, billed or not), with
//! deterministic event ids: UUIDv5 of source, device and interval start, so a restarted,
//! replayed or doubled collector names the same minute the same way and the ledger counts the
//! repeat as a duplicate.

use super::sku_map::SkuMap;
use super::timeline::{Held, Run};
use super::{Tenants, Workload};
use crate::energy::WattHours;
use crate::gpu_seconds::GpuSeconds;
use crate::usage::{is_valid_tenant_id, MigSlice, UsageRecorded, LABEL_VALUE_LEN_MAX, NODE_LEN_MAX, PROJECT_LEN_MAX};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

/// The UUIDv5 namespace of collector event ids (itself UUIDv5 of the URL namespace and
/// "https://gpuledger.de/collect/dcgm").
pub fn id_namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"https://gpuledger.de/collect/dcgm")
}

pub fn event_id(source: &str, device: &str, start_ms: i64) -> Uuid {
    Uuid::new_v5(&id_namespace(), format!("{source}\n{device}\n{start_ms}").as_bytes())
}

/// Why a run's time is or is not billed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Billed {
        tenant_id: String,
    },
    /// Observed, held by no workload.
    Idle,
    /// A gap between scrapes longer than the bridge limit.
    Unmetered,
    /// Held by a namespace the ledger maps to no tenant (at the run's start).
    Unmapped,
    /// Held, but the device's model has no SKU, or a name the event cannot carry.
    Unbillable(&'static str),
}

impl Class {
    pub fn name(&self) -> &'static str {
        match self {
            Class::Billed { .. } => "billed",
            Class::Idle => "idle",
            Class::Unmetered => "unmetered",
            Class::Unmapped => "unmapped",
            Class::Unbillable(_) => "unbillable",
        }
    }
}

/// A closed run with its class: one row of the coverage table, and an event when billed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metered {
    pub run: Run,
    pub class: Class,
    pub sku: Option<String>,
    pub gpu_seconds: Decimal,
    pub event: Option<Value>,
}

pub fn instant(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).expect("scrape times are within chrono's range")
}

fn fits(name: &str, len_max: usize) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= len_max
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._:/-".contains(c))
}

/// Classifies a run and, when it is billed, builds its event (a CloudEvent with the optional
/// `mig_instance`, `mig_profile` and `energy_wh` members of the usage event).
pub fn meter(run: Run, source: &str, skus: &SkuMap, tenants: &dyn Tenants) -> Metered {
    let gpu_seconds = Decimal::new(run.end_ms - run.start_ms, 3).normalize();
    let sku = skus.sku_of(&run.observation.model_name, instant(run.start_ms)).map(str::to_string);
    let class = classify(&run, sku.is_some(), tenants);
    let event = match (&class, &run.held, &sku) {
        (Class::Billed { tenant_id }, Held::By(w), Some(sku)) => {
            Some(event(&run, w, tenant_id, sku, gpu_seconds, source))
        }
        _ => None,
    };
    Metered { run, class, sku, gpu_seconds, event }
}

fn classify(run: &Run, has_sku: bool, tenants: &dyn Tenants) -> Class {
    let w = match &run.held {
        Held::Unmetered => return Class::Unmetered,
        Held::Idle => return Class::Idle,
        Held::By(w) => w,
    };
    let Some(tenant_id) = tenants.tenant_of(&w.namespace, instant(run.start_ms)) else {
        return Class::Unmapped;
    };
    if !has_sku {
        return Class::Unbillable("model has no SKU");
    }
    if !is_valid_tenant_id(&tenant_id) {
        return Class::Unbillable("tenant id is not valid");
    }
    if !fits(&run.observation.node, NODE_LEN_MAX) {
        return Class::Unbillable("hostname is not a valid node name");
    }
    if !fits(&w.namespace, PROJECT_LEN_MAX) {
        return Class::Unbillable("namespace is not a valid project name");
    }
    if run.observation.mig_profile.as_deref().is_some_and(|p| !crate::usage::is_valid_mig_profile(p)) {
        return Class::Unbillable("GPU_I_PROFILE is not a MIG profile the event can carry");
    }
    Class::Billed { tenant_id }
}

fn event(run: &Run, w: &Workload, tenant_id: &str, sku: &str, gpu_seconds: Decimal, source: &str) -> Value {
    let device = run.key.to_string();
    let mut labels = BTreeMap::new();
    if !w.container.is_empty() && w.container.len() <= LABEL_VALUE_LEN_MAX {
        labels.insert("container".to_string(), w.container.clone());
    }
    let usage = UsageRecorded {
        event_id: event_id(source, &device, run.start_ms),
        source: source.to_string(),
        tenant_id: tenant_id.to_string(),
        gpu_sku: sku.to_string(),
        gpu_id: run.key.gpu,
        node: run.observation.node.clone(),
        project: w.namespace.clone(),
        // A pod name longer than the event's job allows is kept out rather than cut.
        job: fits(&w.pod, PROJECT_LEN_MAX).then(|| w.pod.clone()),
        labels,
        interval_start: instant(run.start_ms),
        interval_end: instant(run.end_ms),
        gpu_seconds: GpuSeconds::new(gpu_seconds).expect("a run's seconds are non-negative with 3 digits"),
        mig: match (run.key.mig_instance, &run.observation.mig_profile) {
            (Some(instance), Some(profile)) => Some(MigSlice { instance, profile: profile.clone() }),
            _ => None,
        },
        energy_wh: run.energy_wh.map(|wh| WattHours::new(wh).expect("a run's energy is non-negative")),
    };
    usage.to_cloudevent()
}
