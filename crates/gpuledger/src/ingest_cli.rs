//! `gpuledger ingest`: the exactly-once consumer from Kafka into the ledger, until SIGTERM (or
//! idle), with its counts and peak memory at the end.

use anyhow::{bail, Context, Result};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

// The arguments of `gpuledger ingest` (its help text is the variant's in main.rs).
#[derive(clap::Args)]
pub struct IngestArgs {
    #[arg(long, default_value = "gpuledger-ingest")]
    group: String,
    /// Static group membership id: a restarted ingester with the same id takes over at once.
    #[arg(long)]
    instance_id: Option<String>,
    #[arg(long, default_value_t = 10_000)]
    batch_max: usize,
    #[arg(long, default_value_t = 200)]
    linger_ms: u64,
    /// Writer threads, each with its own PostgreSQL connection (1 to 8).
    #[arg(long, default_value_t = 2)]
    writers: usize,
    /// Exit after this many seconds without a message (default: run until SIGTERM).
    #[arg(long)]
    idle_exit_secs: Option<u64>,
    /// Also send every quarantined message to this topic (the quarantine table stays the record).
    #[arg(long)]
    dead_letter_topic: Option<String>,
}

pub fn ingest(args: IngestArgs, database_url: String, brokers: String, topic: String) -> Result<()> {
    let IngestArgs { group, instance_id, batch_max, linger_ms, writers, idle_exit_secs, dead_letter_topic } = args;
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    if batch_max == 0 || batch_max > 100_000 {
        bail!("--batch-max must be between 1 and 100000");
    }
    if !(1..=ingest::WRITERS_MAX).contains(&writers) {
        bail!("--writers must be between 1 and {}", ingest::WRITERS_MAX);
    }
    // Not as a superuser or the owner: the writer role it sets could be reset to those.
    // (A database that is down is waited for by the ingester itself.)
    if let Ok(mut db) = store::connect(&database_url) {
        store::roles::refuse_privileged(&mut db).context("checking the ingester's login")?;
    }
    let cfg = ingest::IngestConfig {
        brokers,
        group,
        topic,
        database_url,
        owner: format!("{}:{}", hostname(), uuid::Uuid::new_v4()),
        instance_id,
        batch_max,
        linger: Duration::from_millis(linger_ms),
        writers,
        idle_exit: idle_exit_secs.map(Duration::from_secs),
        dead_letter_topic,
        stop,
    };
    let stats = ingest::consume(&cfg).context("ingesting")?;
    let events = stats.ledgered + stats.duplicates + stats.quarantined;
    println!(
        "ingest: {} ledgered, {} duplicates, {} quarantined in {} batches; {} messages in {} ms from first message to last commit = {} messages/s; peak RSS {} MiB",
        stats.ledgered,
        stats.duplicates,
        stats.quarantined,
        stats.batches,
        events,
        stats.active_ms,
        (events as u128 * 1000) / (stats.active_ms.max(1) as u128),
        peak_rss_kib() / 1024
    );
    Ok(())
}

/// Peak resident set size of this process (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "host".into())
}
