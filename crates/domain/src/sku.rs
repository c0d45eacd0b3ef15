//! The GPU SKUs the cloud rents. An event naming any other SKU is quarantined as `unknown_sku`.

/// The catalogue of SKUs accepted on the wire, in a stable order.
pub const SKUS: &[&str] =
    &["nvidia-b200", "nvidia-gb200", "nvidia-h200", "nvidia-h100-sxm", "nvidia-h100-pcie", "nvidia-l40s"];

pub fn is_known_sku(sku: &str) -> bool {
    SKUS.contains(&sku)
}
