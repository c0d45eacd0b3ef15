//! The demo's recording (fixtures/dcgm/demo/): two hours of one H200 node's dcgm-exporter
//! endpoint, scraped every 60 s on 14 October 2026 — two whole GPUs and a third cut into two
//! MIG instances, pods of five tenants' namespaces and one unmapped namespace starting and
//! ending between scrapes. Synthesized in the exporter's format (render_metrics.go's
//! gpuMetricsFormat: HELP/TYPE, `gpu,UUID,pci_bus_id,device,modelName[,GPU_I_PROFILE,GPU_I_ID],
//! hostname`, then the Kubernetes pod mapping `container,namespace,pod`; MIG instances repeat
//! the parent GPU's power and energy), each sample stamped with its scrape's time.
//!
//! `expected` is what a correct meter bills from these scrapes, computed from the scrapes alone
//! with none of the meter's code: each scrape's holder holds a device until the next scrape
//! (60 s, within the collector's default bridge), and only minutes that end by the last scrape
//! are closed. Written next to the recording as `expected.json`, in the shape of the
//! simulator's totals (`gpu_seconds` by tenant and SKU), so `gpuledger check` can add it.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

pub const NODE: &str = "fra1-h200-07";
pub const MODEL: &str = "NVIDIA H200";
/// The SKU the ledger knows `MODEL` as (the initial SKU catalogue).
pub const SKU: &str = "nvidia-h200";
pub const STEP_MS: i64 = 60_000;
pub const SCRAPES: usize = 121;
const MINUTE_MS: i64 = 60_000;
/// The longest gap the collector bridges by default (`--bridge-ms`).
const BRIDGE_MS: i64 = 60_000;

/// The recording's day (UTC).
fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 14).expect("a date")
}

/// `HH:MM:SS.mmm` on the recording's day, in ms since the epoch.
fn at(time: &str) -> i64 {
    let t = NaiveTime::parse_from_str(time, "%H:%M:%S%.f").expect("a time of day");
    day().and_time(t).and_utc().timestamp_millis()
}

/// The first scrape: 10:00:17.250 in Frankfurt (CEST).
fn first_scrape_ms() -> i64 {
    at("08:00:17.250")
}

pub fn scrape_ms(k: usize) -> i64 {
    first_scrape_ms() + k as i64 * STEP_MS
}

/// A device the exporter reports: a whole GPU, or a MIG instance (profile, GPU instance id).
struct Device {
    gpu: u8,
    uuid: &'static str,
    pci_bus_id: &'static str,
    mig: Option<(&'static str, u8)>,
}

static DEVICES: [Device; 4] = [
    Device { gpu: 0, uuid: "GPU-3f6c1a2e-8b47-4d19-a5e2-0c7d9e14b6a1", pci_bus_id: "00000000:18:00.0", mig: None },
    Device { gpu: 1, uuid: "GPU-9a2d4e7b-1c35-4f80-b6d1-5e3a8c27f902", pci_bus_id: "00000000:2A:00.0", mig: None },
    Device {
        gpu: 2,
        uuid: "GPU-c41b7e95-6d28-4a3f-9e07-b2f58a6d13c4",
        pci_bus_id: "00000000:3A:00.0",
        mig: Some(("4g.71gb", 1)),
    },
    Device {
        gpu: 2,
        uuid: "GPU-c41b7e95-6d28-4a3f-9e07-b2f58a6d13c4",
        pci_bus_id: "00000000:3A:00.0",
        mig: Some(("3g.71gb", 2)),
    },
];

/// A pod holding a device over `[from, to)` (times of day, UTC).
struct Pod {
    device: usize,
    namespace: &'static str,
    pod: &'static str,
    container: &'static str,
    from: &'static str,
    to: &'static str,
}

static PODS: &[Pod] = &[
    Pod {
        device: 0,
        namespace: "risk-models",
        pod: "credit-risk-train-5d8f7-q2x9k",
        container: "trainer",
        from: "07:12:40",
        to: "09:14:43",
    },
    Pod {
        device: 0,
        namespace: "drone-vision",
        pod: "detector-finetune-0",
        container: "finetune",
        from: "09:31:05",
        to: "11:00:00",
    },
    Pod {
        device: 1,
        namespace: "ml-sandbox",
        pod: "jupyter-anna-0",
        container: "notebook",
        from: "07:55:00",
        to: "08:47:31",
    },
    Pod {
        device: 1,
        namespace: "search-rank",
        pod: "ranker-eval-b7c2d-7hpl4",
        container: "eval",
        from: "08:52:09",
        to: "09:40:52",
    },
    Pod {
        device: 1,
        namespace: "risk-models",
        pod: "credit-risk-score-6c9d8-m4w2z",
        container: "scorer",
        from: "09:41:26",
        to: "09:58:02",
    },
    Pod {
        device: 1,
        namespace: "ml-sandbox",
        pod: "jupyter-jonas-0",
        container: "notebook",
        from: "09:58:40",
        to: "11:00:00",
    },
    Pod {
        device: 2,
        namespace: "robot-sim",
        pod: "isaac-sim-worker-0",
        container: "isaac",
        from: "06:30:00",
        to: "09:05:45",
    },
    Pod {
        device: 2,
        namespace: "claims-ml",
        pod: "claims-vision-train-2-h7k2p",
        container: "train",
        from: "09:20:30",
        to: "11:00:00",
    },
    Pod {
        device: 3,
        namespace: "drone-vision",
        pod: "tracker-infer-7d4f9-qx8sl",
        container: "triton",
        from: "05:00:00",
        to: "11:00:00",
    },
];

/// The demo's namespace map (fixtures/billing/namespaces.json; a test checks they agree).
/// `ml-sandbox` is mapped to no tenant: its time is reported as unmapped, never billed.
pub const NAMESPACES: &[(&str, &str)] = &[
    ("claims-ml", "allgaeu-versicherung"),
    ("drone-vision", "falke-drones"),
    ("risk-models", "rheinbank"),
    ("robot-sim", "robotik-nord"),
    ("search-rank", "seekr-ai-us"),
];

/// The pod holding device `d` at `t_ms`, if any.
fn holder(d: usize, t_ms: i64) -> Option<&'static Pod> {
    PODS.iter().find(|p| p.device == d && at(p.from) <= t_ms && t_ms < at(p.to))
}

/// Whether any device of GPU `gpu` is held at `t_ms` (the GPU draws a busy GPU's power).
fn gpu_busy(gpu: u8, t_ms: i64) -> bool {
    DEVICES.iter().enumerate().any(|(d, dev)| dev.gpu == gpu && holder(d, t_ms).is_some())
}

/// GPU `gpu`'s power draw at scrape `k`, in mW (deterministic, busy 560–690 W, idle 71–80 W).
fn power_mw(gpu: u8, k: usize) -> i64 {
    let busy = gpu_busy(gpu, scrape_ms(k));
    let (k, g) = (k as i64, i64::from(gpu));
    if busy {
        560_000 + (k * 7_919 + g * 104_729) % 130_000
    } else {
        71_000 + (k * 313 + g * 977) % 9_000
    }
}

/// GPU `gpu`'s energy counter at scrape `k`, mJ since boot: the power shown at each earlier
/// scrape held for the 60 s after it (mW × s = mJ).
fn energy_mj(gpu: u8, k: usize) -> i64 {
    let boot = [1_296_503_118_402, 1_187_220_904_117, 1_342_876_560_233][gpu as usize];
    boot + (0..k).map(|j| power_mw(gpu, j) * (STEP_MS / 1000)).sum::<i64>()
}

fn gpu_util(gpu: u8, k: usize) -> i64 {
    if gpu_busy(gpu, scrape_ms(k)) {
        61 + (k as i64 * 13 + i64::from(gpu) * 7) % 39
    } else {
        0
    }
}

/// Go's `%f` of a power in mW: watts with six decimals.
fn watts(mw: i64) -> String {
    format!("{}.{:06}", mw / 1000, (mw % 1000) * 1000)
}

/// Scrape `k` as the exporter writes it, every sample stamped with the scrape's time.
pub fn scrape(k: usize) -> String {
    let t = scrape_ms(k);
    let mut out = String::new();
    let families: [(&str, &str, &str); 3] = [
        ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
        ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ)."),
    ];
    for (name, kind, help) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (d, dev) in DEVICES.iter().enumerate() {
            let value = match name {
                // DCGM has no utilization of a MIG instance; the exporter leaves it out.
                "DCGM_FI_DEV_GPU_UTIL" if dev.mig.is_some() => continue,
                "DCGM_FI_DEV_GPU_UTIL" => gpu_util(dev.gpu, k).to_string(),
                "DCGM_FI_DEV_POWER_USAGE" => watts(power_mw(dev.gpu, k)),
                _ => energy_mj(dev.gpu, k).to_string(),
            };
            let _ = writeln!(out, "{name}{{{}}} {value} {t}", labels(d, dev, t));
        }
    }
    out
}

fn labels(d: usize, dev: &Device, t_ms: i64) -> String {
    let mig = dev.mig.map_or(String::new(), |(p, id)| format!(",GPU_I_PROFILE=\"{p}\",GPU_I_ID=\"{id}\""));
    let (container, namespace, pod) = holder(d, t_ms).map_or(("", "", ""), |p| (p.container, p.namespace, p.pod));
    format!(
        "gpu=\"{g}\",UUID=\"{}\",pci_bus_id=\"{}\",device=\"nvidia{g}\",modelName=\"{MODEL}\"{mig},hostname=\"{NODE}\",container=\"{container}\",namespace=\"{namespace}\",pod=\"{pod}\"",
        dev.uuid,
        dev.pci_bus_id,
        g = dev.gpu
    )
}

fn iso(ms: i64) -> String {
    let t: DateTime<Utc> = DateTime::from_timestamp_millis(ms).expect("in range");
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What a correct meter bills from the recording: GPU-seconds per tenant and SKU (the shape of
/// the simulator's totals), unmapped seconds per namespace, idle seconds, and the window.
pub fn expected() -> Value {
    let closed_until = scrape_ms(SCRAPES - 1).div_euclid(MINUTE_MS) * MINUTE_MS;
    let tenants: BTreeMap<&str, &str> = NAMESPACES.iter().copied().collect();
    let mut billed: BTreeMap<&str, Decimal> = BTreeMap::new();
    let mut unmapped: BTreeMap<&str, Decimal> = BTreeMap::new();
    let mut idle = Decimal::ZERO;
    for d in 0..DEVICES.len() {
        for k in 0..SCRAPES - 1 {
            let (from, to) = (scrape_ms(k), scrape_ms(k + 1).min(closed_until));
            assert!(scrape_ms(k + 1) - from <= BRIDGE_MS, "every gap is bridged");
            if to <= from {
                continue;
            }
            let seconds = Decimal::new(to - from, 3);
            match holder(d, from) {
                None => idle += seconds,
                Some(p) => match tenants.get(p.namespace) {
                    Some(t) => *billed.entry(*t).or_default() += seconds,
                    None => *unmapped.entry(p.namespace).or_default() += seconds,
                },
            }
        }
    }
    let total: Decimal = billed.values().sum();
    let text = |m: &BTreeMap<&str, Decimal>| -> BTreeMap<String, String> {
        m.iter().map(|(k, v)| (k.to_string(), v.normalize().to_string())).collect()
    };
    let by_sku: BTreeMap<String, Value> =
        billed.iter().map(|(t, s)| (t.to_string(), json!({ SKU: s.normalize().to_string() }))).collect();
    json!({
        "recording": format!("{SCRAPES} scrapes of {NODE}, every {} s", STEP_MS / 1000),
        "first_scrape": iso(scrape_ms(0)),
        "last_scrape": iso(scrape_ms(SCRAPES - 1)),
        "closed_until": iso(closed_until),
        "gpu_seconds": by_sku,
        "billed_gpu_seconds": total.normalize().to_string(),
        "unmapped_gpu_seconds": text(&unmapped),
        "idle_gpu_seconds": idle.normalize().to_string(),
    })
}

/// The files of the recording: `scrapes/NNN.prom` and `expected.json`, path → bytes.
pub fn files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = (0..SCRAPES).map(|k| (format!("scrapes/{k:03}.prom"), scrape(k))).collect();
    let expected = serde_json::to_string_pretty(&expected()).expect("json") + "\n";
    files.push(("expected.json".to_string(), expected));
    files
}

/// Writes the recording under `dir` (replacing earlier scrapes).
pub fn write(dir: &Path) -> std::io::Result<()> {
    let scrapes = dir.join("scrapes");
    if scrapes.exists() {
        std::fs::remove_dir_all(&scrapes)?;
    }
    std::fs::create_dir_all(&scrapes)?;
    for (path, text) in files() {
        std::fs::write(dir.join(path), text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn the_committed_recording_is_what_the_generator_writes() {
        let dir = repo().join("fixtures/dcgm/demo");
        for (path, text) in files() {
            let committed = std::fs::read_to_string(dir.join(&path)).unwrap_or_default();
            assert!(committed == text, "fixtures/dcgm/demo/{path} differs: run dcgm-playback record");
        }
        let scrapes = std::fs::read_dir(dir.join("scrapes")).unwrap().count();
        assert_eq!(scrapes, SCRAPES, "no stale scrapes in fixtures/dcgm/demo/scrapes");
    }

    #[test]
    fn the_namespace_map_fixture_maps_what_the_expectation_assumes() {
        let text = std::fs::read_to_string(repo().join("fixtures/billing/namespaces.json")).unwrap();
        let items: Vec<Value> = serde_json::from_str(&text).unwrap();
        let mut loaded: Vec<(String, String)> = items
            .iter()
            .map(|i| {
                assert_eq!(i["kind"], "namespace.map");
                assert!(i["data"]["effective_from"].as_str().unwrap() <= "2026-10-01T00:00:00Z");
                (i["data"]["namespace"].as_str().unwrap().into(), i["data"]["tenant_id"].as_str().unwrap().into())
            })
            .collect();
        loaded.sort();
        let want: Vec<(String, String)> = NAMESPACES.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
        assert_eq!(loaded, want);
        assert!(PODS.iter().any(|p| !NAMESPACES.iter().any(|(n, _)| *n == p.namespace)), "one namespace unmapped");
    }

    #[test]
    fn pods_never_share_a_device_and_change_between_scrapes() {
        for (i, p) in PODS.iter().enumerate() {
            assert!(at(p.from) < at(p.to), "{}", p.pod);
            for q in &PODS[i + 1..] {
                let apart = at(p.to) <= at(q.from) || at(q.to) <= at(p.from);
                assert!(p.device != q.device || apart, "{} and {} overlap", p.pod, q.pod);
            }
        }
        // Holders change at scrapes that fall mid-minute, so minutes are split between holders.
        assert_ne!(scrape_ms(0) % MINUTE_MS, 0);
    }

    #[test]
    fn the_energy_counter_grows_by_the_power_shown() {
        for gpu in 0..3u8 {
            for k in 0..SCRAPES - 1 {
                assert_eq!(energy_mj(gpu, k + 1) - energy_mj(gpu, k), power_mw(gpu, k) * 60);
            }
        }
    }

    #[test]
    fn a_scrape_has_the_exporters_shape() {
        let s = scrape(0);
        let line = s.lines().find(|l| l.contains("GPU_I_ID=\"2\"")).unwrap();
        assert!(line.starts_with(
            "DCGM_FI_DEV_POWER_USAGE{gpu=\"2\",UUID=\"GPU-c41b7e95-6d28-4a3f-9e07-b2f58a6d13c4\",pci_bus_id=\"00000000:3A:00.0\",device=\"nvidia2\",modelName=\"NVIDIA H200\",GPU_I_PROFILE=\"3g.71gb\",GPU_I_ID=\"2\",hostname=\"fra1-h200-07\",container=\"triton\",namespace=\"drone-vision\",pod=\"tracker-infer-7d4f9-qx8sl\"} "
        ), "{line}");
        assert!(line.ends_with(&format!(" {}", scrape_ms(0))));
        assert_eq!(s.lines().filter(|l| l.starts_with("# HELP")).count(), 3);
        assert_eq!(s.lines().filter(|l| !l.starts_with('#')).count(), 2 + 4 + 4);
    }
}
