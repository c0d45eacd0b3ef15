//! A synthetic dcgm-exporter scrape of a large fleet, for the benchmark (crates/bench) and the
//! 10,000-GPU test over HTTP (tests/collect_ledger.rs): one generator, so both measure and check
//! the same bytes. Its shape, which the test's expectation restates independently: GPU `g` has
//! UUID `GPU-<g as 8 hex digits>-0000-4000-8000-000000000000`, model `NVIDIA H200`, host
//! `node-<g / 8>`, is held by pod `job-<g>` (container `main`) of namespace `team-<g % 50>`, and
//! its energy counter reads `energy_mj + g`.

use std::fmt::Write as _;

/// Namespaces the fleet's GPUs are spread over (`team-0` … `team-49`).
pub const FLEET_NAMESPACES: u32 = 50;

/// A dcgm-exporter scrape of `gpus` GPUs (render_metrics.go's shape: HELP/TYPE, the renderer's
/// labels, the pod mapping), the four metrics the collector reads, every sample stamped `at_ms`.
pub fn fleet_exposition(gpus: u32, at_ms: i64, energy_mj: i64) -> String {
    let mut out = String::with_capacity(gpus as usize * 1300);
    let metrics = [
        ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
        ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge", "Ratio of time the graphics engine is active."),
        ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ)."),
    ];
    for (name, kind, help) in metrics {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for g in 0..gpus {
            let value = if kind == "counter" { (energy_mj + i64::from(g)).to_string() } else { "42".into() };
            let _ = writeln!(
                out,
                "{name}{{gpu=\"{}\",UUID=\"GPU-{g:08x}-0000-4000-8000-000000000000\",pci_bus_id=\"00000000:{:02X}:00.0\",device=\"nvidia{}\",modelName=\"NVIDIA H200\",hostname=\"node-{}\",DCGM_FI_DRIVER_VERSION=\"550.54.15\",container=\"main\",namespace=\"team-{}\",pod=\"job-{g}\",pod_uid=\"\"}} {value} {at_ms}",
                g % 8,
                g % 8,
                g % 8,
                g / 8,
                g % FLEET_NAMESPACES
            );
        }
    }
    out
}
