//! `gpuledger produce`: a seeded fleet's usage to Kafka (or to a file), with the generator's exact
//! totals for `gpuledger check`.

use anyhow::{Context, Result};
use gpuledger::fleet::FleetArgs;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

// The arguments of `gpuledger produce` (its help text is the variant's in main.rs).
#[derive(clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    fleet: FleetArgs,
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Where to write the generator's exact totals (JSON).
    #[arg(long)]
    totals: Option<PathBuf>,
    /// Write the messages as JSON lines to this file instead of producing them.
    #[arg(long)]
    to_file: Option<PathBuf>,
}

pub fn produce(args: ProduceArgs, brokers: &str, topic: &str) -> Result<()> {
    let ProduceArgs { fleet, partitions, totals, to_file } = args;
    let (mut sim, limit) = fleet.simulator()?;
    let t = Instant::now();
    let sent = if let Some(path) = to_file {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let mut n = 0u64;
        for m in sim.by_ref().take(limit) {
            out.write_all(&m.payload)?;
            out.write_all(b"\n")?;
            n += 1;
        }
        n
    } else {
        ingest::ensure_topic(brokers, topic, partitions).context("creating the topic")?;
        let messages = sim.by_ref().take(limit).map(|m| (m.key, m.payload));
        ingest::produce(brokers, topic, messages).context("producing")?.delivered
    };
    let secs = t.elapsed().as_secs_f64(); // float-ok: a duration for the log line
    eprintln!("produce: {sent} messages in {secs:.1}s");
    if let Some(path) = totals {
        std::fs::write(&path, serde_json::to_vec_pretty(&sim.totals.to_json())?)?;
    }
    println!(
        "produce: {} messages ({} good, {} duplicates, {} to quarantine)",
        sim.totals.messages,
        sim.totals.good,
        sim.totals.duplicates,
        sim.totals.quarantined()
    );
    Ok(())
}
