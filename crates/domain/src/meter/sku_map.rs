//! The SKU of a device from the exporter's `modelName`: the ledger's SKU catalogue
//! (`billing::catalogue`, the model names of its `sku.set` events, and the initial catalogue's)
//! as of the run's start, with the collector's own `--sku-model` overrides first.
//!
//! dcgm-exporter's `modelName` is DCGM's `DCGM_FI_DEV_NAME`, the driver's product name (what
//! `nvidia-smi --query-gpu=name` prints); a MIG instance carries its parent GPU's. The initial
//! catalogue's names were checked against real scrapes and driver output (docs/collect.md,
//! "Model names"); a variant it does not list (`NVIDIA H100 NVL`, `NVIDIA H200 NVL`, ...) is a
//! product of its own and needs a `sku.set` (or an override), never a guess.

use crate::billing::catalogue::Catalogue;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Exact `modelName` → SKU. A model the map does not resolve is not billed (its time is reported
/// as unbillable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkuMap {
    catalogue: Catalogue,
    overrides: BTreeMap<String, String>,
}

impl SkuMap {
    /// The catalogue's model names, with `overrides` (model, SKU) taking precedence.
    pub fn new(catalogue: Catalogue, overrides: BTreeMap<String, String>) -> Self {
        SkuMap { catalogue, overrides }
    }

    /// The SKU of `model_name` at `at`. An override names its SKU only while the catalogue lists
    /// that SKU (anything else the ingester would quarantine as `unknown_sku`).
    pub fn sku_of(&self, model_name: &str, at: DateTime<Utc>) -> Option<&str> {
        match self.overrides.get(model_name) {
            Some(sku) => self.catalogue.knows(sku, at).then_some(sku.as_str()),
            None => self.catalogue.sku_of_model(model_name, at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::catalogue::SkuSet;

    #[test]
    fn catalogue_names_overrides_and_new_models() {
        let at: DateTime<Utc> = "2026-10-01T00:00:00Z".parse().unwrap();
        let overrides = BTreeMap::from([
            ("NVIDIA H100 NVL".to_string(), "nvidia-h100-pcie".to_string()),
            ("NVIDIA H200".to_string(), "nvidia-b200".to_string()),
            ("Lab GPU".to_string(), "nvidia-rtx-9090".to_string()),
        ]);
        let mut map = SkuMap::new(Catalogue::initial(), overrides.clone());
        assert_eq!(map.sku_of("NVIDIA H100 80GB HBM3", at), Some("nvidia-h100-sxm"));
        assert_eq!(map.sku_of("NVIDIA H100 NVL", at), Some("nvidia-h100-pcie"));
        assert_eq!(map.sku_of("NVIDIA H200", at), Some("nvidia-b200"), "an override wins");
        assert_eq!(map.sku_of("Lab GPU", at), None, "a SKU the catalogue does not list is not billed");
        assert_eq!(map.sku_of("NVIDIA H200 NVL", at), None);

        let mut catalogue = Catalogue::initial();
        catalogue.apply(SkuSet {
            sku: "nvidia-h200-nvl".into(),
            effective_from: "2026-09-01T00:00:00Z".parse().unwrap(),
            display_name: "NVIDIA H200 NVL".into(),
            model_names: vec!["NVIDIA H200 NVL".into()],
            mig_profiles: Vec::new(),
        });
        map = SkuMap::new(catalogue, overrides);
        assert_eq!(map.sku_of("NVIDIA H200 NVL", at), Some("nvidia-h200-nvl"));
        assert_eq!(map.sku_of("NVIDIA H200 NVL", "2026-08-31T23:00:00Z".parse().unwrap()), None, "effective-dated");
    }
}
