//! `gpuledger migrate`, `status`, `check`, `verify` and `report`: the ledger's schema, what
//! happened to every consumed offset, the exact comparison with a generator's totals, the chains
//! and the live projection checked against the log, and GPU-hours per tenant and SKU.

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

pub fn migrate(database_url: &str) -> Result<()> {
    let mut db = store::connect(database_url).context("connecting to PostgreSQL")?;
    let applied = store::migrate(&mut db).context("migrating")?;
    if applied.is_empty() {
        println!("migrations: up to date");
    } else {
        println!("migrations applied: {}", applied.join(", "));
    }
    Ok(())
}

pub fn status(db: &mut postgres::Client, topic: &str) -> Result<()> {
    let stats = store::read::stream_stats(db, topic)?;
    println!(
        "{:>9} {:>12} {:>12} {:>10} {:>11} {:>6}",
        "partition", "next_offset", "ledgered", "duplicates", "quarantined", "epoch"
    );
    for s in stats {
        println!(
            "{:>9} {:>12} {:>12} {:>10} {:>11} {:>6}",
            s.partition,
            s.next_offset.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            s.ledgered,
            s.duplicates,
            s.quarantined,
            s.epoch
        );
    }
    Ok(())
}

pub fn check(db: &mut postgres::Client, totals: &[PathBuf]) -> Result<()> {
    let mut want: BTreeMap<String, BTreeMap<String, Decimal>> = BTreeMap::new();
    for file in totals {
        let expected: serde_json::Value = domain::ijson::from_slice(&std::fs::read(file)?)?;
        let part = domain::simulate::Totals::gpu_seconds_from_json(&expected)
            .with_context(|| format!("{} has no gpu_seconds by tenant and SKU", file.display()))?;
        for (tenant, by_sku) in part {
            for (sku, seconds) in by_sku {
                *want.entry(tenant.clone()).or_default().entry(sku).or_default() += seconds;
            }
        }
    }
    for seconds in want.values_mut().flat_map(|m| m.values_mut()) {
        *seconds = seconds.normalize();
    }
    let files = totals.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(" + ");
    let projected = store::read::totals_by_tenant_sku(db)?;
    let ledgered = store::read::ledger_totals_by_tenant_sku(db)?;
    if projected != want || ledgered != want {
        bail!("the ledger's GPU-seconds differ from the totals in {files}");
    }
    println!("check: GPU-seconds per tenant and SKU equal the totals of {files} exactly ({} tenants)", want.len());
    Ok(())
}

pub fn verify(db: &mut postgres::Client) -> Result<()> {
    let mut ok = true;
    for r in store::read::verify_chains(db)? {
        match &r.result {
            Ok(()) => println!("stream {}: {} rows, chain intact", r.stream_id, r.rows),
            Err(b) => {
                ok = false;
                println!("stream {}: chain BROKEN at position {}: {}", r.stream_id, b.stream_pos, b.reason)
            }
        }
    }
    let live = store::read::live_hourly(db)?;
    let rebuilt = store::read::rebuild_hourly(db)?;
    let differences = rebuilt.differences(&live);
    if differences.is_empty() {
        println!("hourly projection: rebuilt from the log, {} rows, equal to the live one", live.rows.len());
    } else {
        println!("hourly projection: rebuilt from the log DIFFERS from the live one at {} keys", differences.len());
        for line in differences.iter().take(DIFFERENCES_SHOWN).map(difference_line) {
            println!("  {line}");
        }
        bail!(
            "verification failed: the hourly projection differs from the log at {} keys, the first at {}",
            differences.len(),
            difference_line(&differences[0])
        );
    }
    if !ok {
        bail!("verification failed");
    }
    Ok(())
}

/// Differing keys `verify` lists (all are counted).
const DIFFERENCES_SHOWN: usize = 20;

/// One differing key of the hourly projection, with both sides' figures.
fn difference_line(d: &domain::projection::HourDifference<'_>) -> String {
    let side = |t: Option<domain::projection::HourTotals>| t.map_or("no row".to_string(), |t| t.to_string());
    format!("{}: rebuilt from the log {}, live {}", d.key, side(d.ours), side(d.theirs))
}

pub fn report(db: &mut postgres::Client, format: Format) -> Result<()> {
    let totals = store::read::totals_by_tenant_sku(db)?;
    print_report(&totals, format)
}

fn print_report(totals: &BTreeMap<String, BTreeMap<String, Decimal>>, format: Format) -> Result<()> {
    let hours = |s: &Decimal| domain::GpuHours::summary(*s);
    match format {
        Format::Json => {
            let v: BTreeMap<&String, BTreeMap<&String, serde_json::Value>> = totals
                .iter()
                .map(|(t, m)| {
                    (
                        t,
                        m.iter()
                            .map(|(s, d)| (s, serde_json::json!({"gpu_seconds": d.to_string(), "gpu_hours": hours(d).to_string()})))
                            .collect(),
                    )
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Format::Table => {
            println!("{:<24} {:<18} {:>18} {:>14}", "tenant", "sku", "gpu_seconds", "gpu_hours");
            for (t, m) in totals {
                let mut sum = Decimal::ZERO;
                for (s, d) in m {
                    println!("{:<24} {:<18} {:>18} {:>14}", t, s, d.to_string(), hours(d).to_string());
                    sum += d;
                }
                println!("{:<24} {:<18} {:>18} {:>14}", t, "(all SKUs)", sum.to_string(), hours(&sum).to_string());
            }
        }
    }
    Ok(())
}
