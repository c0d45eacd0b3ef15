//! The collector's core on a 10,000-GPU exposition: one scrape parsed bare, beside the same
//! bytes turned into a minute's events (parse, devices, the meter's runs, the events' JSON).
//! CPU time of the measuring thread (`/proc/thread-self/schedstat`), not wall time, since the
//! benchmark machine is shared.

use anyhow::{Context, Result};
use domain::billing::namespace_map::{ClusterTenants, NamespaceMap, NamespaceMapping};
use domain::meter::event::meter;
use domain::meter::sku_map::SkuMap;
use domain::meter::timeline::MeterState;
use std::fmt::Write as _;

/// Nanoseconds this thread has run on a CPU.
fn thread_cpu_ns() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").context("reading schedstat")?;
    text.split_whitespace().next().and_then(|v| v.parse().ok()).context("schedstat's first field")
}

/// A dcgm-exporter scrape of `gpus` GPUs (render_metrics.go's shape: HELP/TYPE, the renderer's
/// labels, the pod mapping), the four metrics the collector reads, stamped `at_ms`.
pub fn exposition(gpus: u32, at_ms: i64, energy_mj: i64) -> String {
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
                g % 8, g % 8, g % 8, g / 8, g % 50
            );
        }
    }
    out
}

pub fn bench_collect(gpus: u32) -> Result<()> {
    let t0 = 1_790_000_040_000i64; // a whole minute
    let scrapes: Vec<String> = (0..=4).map(|k| exposition(gpus, t0 + k * 15_000, 1_000_000 + k * 9_000_000)).collect();
    let mut map = NamespaceMap::default();
    for team in 0..50 {
        map.apply(&NamespaceMapping {
            namespace: format!("team-{team}"),
            cluster: None,
            tenant_id: Some(format!("tenant-{team}")),
            effective_from: chrono::DateTime::from_timestamp(0, 0).expect("epoch"),
        });
    }
    let tenants = ClusterTenants { map: &map, cluster: None };
    let skus = SkuMap::default();
    let bytes = scrapes[0].len();
    let before = thread_cpu_ns()?;
    for s in &scrapes {
        let (samples, _) = domain::meter::exposition::parse(s);
        std::hint::black_box(samples.len());
    }
    let parse_ns = (thread_cpu_ns()? - before) / scrapes.len() as u64;
    let mut state = MeterState::default();
    let mut events = 0usize;
    let before = thread_cpu_ns()?;
    for s in &scrapes {
        let (seen, _, at_ms) = collect::observe_text(s, 0);
        for run in state.observe(seen, at_ms, 60_000) {
            if let Some(e) = meter(run, "//bench/collect", &skus, &tenants).event {
                events += serde_json::to_vec(&e).map(|b| usize::from(!b.is_empty()))?;
            }
        }
    }
    let full_ns = (thread_cpu_ns()? - before) / scrapes.len() as u64;
    println!("collect: {gpus} GPUs, {bytes} bytes a scrape, {} scrapes, {events} events (one minute)", scrapes.len());
    println!("  parse + meter + events:   {:>8} µs CPU a scrape", full_ns / 1000);
    println!("  bare parse:               {:>8} µs CPU a scrape", parse_ns / 1000);
    Ok(())
}
