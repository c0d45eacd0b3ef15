//! `gpuledger collect dcgm`: the collector (crate `collect`), until SIGTERM or `--max-rounds`.

use anyhow::{bail, Context, Result};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum CollectCmd {
    /// Scrape dcgm-exporter endpoints and produce usage events (per device and minute).
    Dcgm(DcgmArgs),
}

#[derive(clap::Args)]
pub struct DcgmArgs {
    /// A dcgm-exporter metrics URL (repeat for several), e.g. http://node-1:9400/metrics.
    #[arg(long = "endpoint", required = true)]
    endpoints: Vec<String>,
    /// Time between scrape rounds.
    #[arg(long, default_value_t = 15_000)]
    interval_ms: u64,
    /// Timeout of one scrape (connect to last byte).
    #[arg(long, default_value_t = 5_000)]
    timeout_ms: u64,
    /// The longest gap between two observations of a device that is bridged (held by the
    /// earlier observation's workload); a longer gap is unmetered.
    #[arg(long, default_value_t = 60_000)]
    bridge_ms: u64,
    /// The CloudEvents source of the events and the key of the collector's cursor.
    #[arg(long)]
    source: String,
    /// The cluster whose namespace mappings apply (mappings without a cluster apply everywhere).
    #[arg(long)]
    cluster: Option<String>,
    /// A `modelName=sku` mapping (repeatable) that takes precedence over the model names of the
    /// ledger's SKU catalogue (`sku.set` reference data, read again whenever it changes).
    #[arg(long = "sku-model")]
    sku_models: Vec<String>,
    /// Stop after this many rounds (default: run until SIGTERM).
    #[arg(long)]
    max_rounds: Option<u64>,
}

pub fn collect(cmd: CollectCmd, database_url: &str, brokers: String, topic: String) -> Result<()> {
    let CollectCmd::Dcgm(args) = cmd;
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    if args.interval_ms == 0 || args.timeout_ms == 0 {
        bail!("--interval-ms and --timeout-ms must be positive");
    }
    if args.source.is_empty() || args.source.len() > domain::usage::SOURCE_LEN_MAX {
        bail!("--source must have 1 to {} characters", domain::usage::SOURCE_LEN_MAX);
    }
    let mut sku_overrides = std::collections::BTreeMap::new();
    for m in &args.sku_models {
        let Some((model, sku)) = m.rsplit_once('=') else { bail!("--sku-model {m:?} is not modelName=sku") };
        if !domain::billing::catalogue::is_valid_sku_id(sku) {
            bail!("--sku-model {m:?}: {sku:?} is not a SKU id ([a-z0-9][a-z0-9-]*, 2 to 64 characters)");
        }
        sku_overrides.insert(model.to_string(), sku.to_string());
    }
    let mut db = store::connect(database_url).context("connecting to PostgreSQL as gpuledger_ingest")?;
    store::roles::refuse_privileged(&mut db).context("checking the collector's login")?;
    let cfg = collect::Config {
        endpoints: args.endpoints,
        interval: Duration::from_millis(args.interval_ms),
        timeout: Duration::from_millis(args.timeout_ms),
        bridge: Duration::from_millis(args.bridge_ms),
        source: args.source,
        cluster: args.cluster,
        brokers,
        topic,
        sku_overrides,
        max_rounds: args.max_rounds,
        stop,
    };
    let totals = collect::run(&cfg, &mut db).context("collecting")?;
    println!(
        "rounds: {}  events: {}  failed scrapes: {}  skipped lines/devices: {}  unmapped runs: {}  billed GPU-seconds: {}",
        totals.rounds,
        totals.events,
        totals.failed_scrapes,
        totals.skipped,
        totals.unmapped_runs,
        totals.billed_gpu_seconds.normalize()
    );
    Ok(())
}
