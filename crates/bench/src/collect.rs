//! The collector's core on a 10,000-GPU exposition: one scrape parsed bare, beside the same
//! bytes turned into a minute's events (parse, devices, the meter's runs, the events' JSON).
//! CPU time of the measuring thread (`/proc/thread-self/schedstat`), not wall time, since the
//! benchmark machine is shared.

use anyhow::{Context, Result};
use domain::billing::namespace_map::{ClusterTenants, NamespaceMap, NamespaceMapping};
use domain::meter::event::meter;
use domain::meter::fleet::{fleet_exposition, FLEET_NAMESPACES};
use domain::meter::sku_map::SkuMap;
use domain::meter::timeline::MeterState;

/// Nanoseconds this thread has run on a CPU.
fn thread_cpu_ns() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").context("reading schedstat")?;
    text.split_whitespace().next().and_then(|v| v.parse().ok()).context("schedstat's first field")
}

pub fn bench_collect(gpus: u32) -> Result<()> {
    let t0 = 1_790_000_040_000i64; // a whole minute
    let scrapes: Vec<String> =
        (0..=4).map(|k| fleet_exposition(gpus, t0 + k * 15_000, 1_000_000 + k * 9_000_000)).collect();
    let mut map = NamespaceMap::default();
    for team in 0..FLEET_NAMESPACES {
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
