//! dcgm-exporter playback for the collector's tests (tests/collect.rs, tests/collect_ledger.rs,
//! tests/coverage.rs):
//! scrapes in the exporter's exact format, a playback HTTP server, the collector as a child
//! process, namespace maps loaded as reference data, and exact Wh from the mJ counter.

use crate::{bin, brokers, fresh_db, gpuledger, unique};
use rust_decimal::Decimal;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const T0_MS: i64 = 1_790_000_040_000; // a whole minute (divisible by 60,000)
pub const STEP_MS: i64 = 15_000;

/// A device in one scrape.
#[derive(Clone)]
pub struct Dev {
    pub uuid: &'static str,
    pub model: &'static str,
    pub mig: Option<(&'static str, &'static str)>,
    pub ns: &'static str,
    pub pod: &'static str,
    pub container: &'static str,
    pub energy_mj: Option<i64>,
}

/// One scrape in the exporter's shape (render_metrics.go's gpuMetricsFormat; labels, then the
/// pod attributes in key order), every sample stamped with `at_ms`, and one malformed line.
pub fn exposition(devs: &[Dev], at_ms: i64) -> String {
    let mut out = String::new();
    let metrics = [
        ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %)."),
        ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W)."),
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ)."),
    ];
    for (name, kind, help) in metrics {
        out += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
        for (i, d) in devs.iter().enumerate() {
            let value = match (name, d.energy_mj) {
                ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", Some(e)) => e.to_string(),
                ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", None) => continue,
                ("DCGM_FI_DEV_POWER_USAGE", _) => "302.206000".to_string(),
                _ => "44".to_string(),
            };
            let mig = d.mig.map_or(String::new(), |(id, p)| format!(",GPU_I_PROFILE=\"{p}\",GPU_I_ID=\"{id}\""));
            out += &format!(
                "{name}{{gpu=\"{i}\",UUID=\"{}\",pci_bus_id=\"00000000:{i:02X}:00.0\",device=\"nvidia{i}\",modelName=\"{}\"{mig},hostname=\"gpu-node-1\",DCGM_FI_DRIVER_VERSION=\"550.54.15 \\\"rc\\\" \\\\ x\",container=\"{}\",namespace=\"{}\",pod=\"{}\",pod_uid=\"\"}} {value} {at_ms}\n",
                d.uuid, d.model, d.container.replace('"', "\\\""), d.ns, d.pod
            );
        }
    }
    out += "DCGM_FI_DEV_GPU_UTIL{gpu=\"9\",UUID=\"GPU-broken\" 1\n";
    out
}

pub enum Reply {
    Body(String),
    /// Answers only after this long (the collector's timeout is shorter).
    Late(String, Duration),
    Refused,
}

/// A playback server: request n gets reply n; after the last, the last again.
pub struct Playback {
    pub port: u16,
    pub served: Arc<AtomicUsize>,
}

pub fn playback(replies: Vec<Reply>) -> Playback {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let replies = Arc::new(replies);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let n = counter.fetch_add(1, Ordering::SeqCst).min(replies.len() - 1);
            let replies = replies.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let (status, body, delay) = match &replies[n] {
                    Reply::Body(b) => ("200 OK", b.as_str(), Duration::ZERO),
                    Reply::Late(b, d) => ("200 OK", b.as_str(), *d),
                    Reply::Refused => ("503 Service Unavailable", "", Duration::ZERO),
                };
                std::thread::sleep(delay);
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(body.as_bytes());
            });
        }
    });
    Playback { port, served }
}

pub fn load_namespaces(db: &str, maps: &[(&str, Option<&str>)]) {
    let events: Vec<Value> = maps
        .iter()
        .map(|(ns, tenant)| {
            serde_json::json!({"kind": "namespace.map", "data": {
                "namespace": ns, "tenant_id": tenant, "effective_from": "2026-01-01T00:00:00Z"}})
        })
        .collect();
    let p = std::env::temp_dir().join(format!("{}.json", unique("nsmap")));
    std::fs::write(&p, serde_json::to_vec(&events).unwrap()).unwrap();
    gpuledger(db, &["reference", "load", &p.display().to_string()]).unwrap();
}

/// The collector, its stderr into a file (a pipe nobody reads would fill and block it).
pub fn spawn_collector(
    db: &str,
    topic: &str,
    port: u16,
    source: &str,
    rounds: Option<usize>,
) -> (Child, std::path::PathBuf) {
    spawn_collector_with(db, topic, port, source, rounds, &[])
}

/// [`spawn_collector`] with extra arguments; `--interval-ms`, `--timeout-ms` and `--bridge-ms`
/// among them replace the defaults (10, 400, 60000).
pub fn spawn_collector_with(
    db: &str,
    topic: &str,
    port: u16,
    source: &str,
    rounds: Option<usize>,
    extra: &[&str],
) -> (Child, std::path::PathBuf) {
    let log = std::env::temp_dir().join(format!("{}.log", unique("collector")));
    let url = format!("http://127.0.0.1:{port}/metrics");
    let mut cmd = Command::new(bin());
    cmd.args(["collect", "dcgm", "--endpoint", &url, "--source", source, "--topic", topic])
        .env("GPULEDGER_DATABASE_URL", db)
        .env("GPULEDGER_KAFKA_BROKERS", brokers())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    if let Some(r) = rounds {
        cmd.args(["--max-rounds", &r.to_string()]);
    }
    for (flag, value) in [("--interval-ms", "10"), ("--timeout-ms", "400"), ("--bridge-ms", "60000")] {
        if !extra.contains(&flag) {
            cmd.args([flag, value]);
        }
    }
    cmd.args(extra);
    (cmd.spawn().unwrap(), log)
}

pub fn dec(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().unwrap()).unwrap()
}

pub fn wh(mj: i64) -> Decimal {
    // Independent of the meter: µWh as an integer, rounded half up (mj ≥ 0), then scaled.
    let micro = (i128::from(mj) * 1_000_000 * 2 + 3_600_000) / (2 * 3_600_000);
    Decimal::from_i128_with_scale(micro, 6)
}

/// A fresh topic (two partitions) and a fresh migrated database.
pub fn topic_and_db(name: &str) -> (String, String) {
    let topic = unique(&format!("collect_{name}"));
    ingest::ensure_topic(&brokers(), &topic, 2).unwrap();
    (fresh_db(name).unwrap(), topic)
}
