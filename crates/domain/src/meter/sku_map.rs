//! The SKU of a device from the exporter's `modelName`. One replaceable table: when the SKU
//! catalogue becomes reference data with model names, the collector builds this map from it.

use std::collections::BTreeMap;

/// Exact `modelName` → SKU. A model not in the map is not billed (its time is reported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkuMap(BTreeMap<String, String>);

/// The model names NVIDIA's driver reports (`nvidia-smi --query-gpu=name`) for the six SKUs of
/// `crate::sku::SKUS`.
pub const DEFAULT_MODELS: &[(&str, &str)] = &[
    ("NVIDIA B200", "nvidia-b200"),
    ("NVIDIA GB200", "nvidia-gb200"),
    ("NVIDIA H200", "nvidia-h200"),
    ("NVIDIA H100 80GB HBM3", "nvidia-h100-sxm"),
    ("NVIDIA H100 PCIe", "nvidia-h100-pcie"),
    ("NVIDIA L40S", "nvidia-l40s"),
];

impl Default for SkuMap {
    fn default() -> Self {
        SkuMap(DEFAULT_MODELS.iter().map(|(m, s)| (m.to_string(), s.to_string())).collect())
    }
}

impl SkuMap {
    /// The defaults with `extra` (model, SKU) pairs added or replacing a default.
    pub fn with(extra: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut map = SkuMap::default();
        map.0.extend(extra);
        map
    }

    pub fn sku_of(&self, model_name: &str) -> Option<&str> {
        self.0.get(model_name).map(String::as_str)
    }
}
