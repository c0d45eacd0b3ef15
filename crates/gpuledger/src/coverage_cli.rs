//! `gpuledger coverage`: the collector's coverage per SKU (or MIG slice) and Berlin day before a
//! close (docs/collect.md): a table, CSV, or the JSON of `GET /v1/finance/coverage`.

use anyhow::Result;
use chrono::NaiveDate;
use clap::{Args, ValueEnum};
use domain::meter::coverage::{range, CoverageKey, CoverageReport, Figures};
use std::io::Write;

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CoverageFormat {
    Table,
    Csv,
    Json,
}

#[derive(Args)]
pub struct CoverageArgs {
    /// A month (YYYY-MM, Europe/Berlin, as `invoices close --period`).
    #[arg(long, conflicts_with_all = ["from", "to"])]
    month: Option<String>,
    /// First day (YYYY-MM-DD, Europe/Berlin), with --to.
    #[arg(long, requires = "to")]
    from: Option<NaiveDate>,
    /// Last day, inclusive (at most 366 days).
    #[arg(long, requires = "from")]
    to: Option<NaiveDate>,
    #[arg(long, value_enum, default_value_t = CoverageFormat::Table)]
    format: CoverageFormat,
}

pub fn coverage(db: &mut postgres::Client, args: CoverageArgs) -> Result<()> {
    let (from, to) = range(args.month.as_deref(), args.from, args.to).map_err(anyhow::Error::msg)?;
    let report = store::coverage::coverage_report(db, from, to)?;
    let mut out = std::io::stdout().lock();
    match args.format {
        CoverageFormat::Json => out.write_all(api::coverage_json(&report).as_bytes())?,
        CoverageFormat::Csv => out.write_all(&domain::meter::coverage::csv(&report))?,
        CoverageFormat::Table => out.write_all(table(&report).as_bytes())?,
    }
    Ok(())
}

fn device(k: &CoverageKey) -> String {
    let sku = match (&k.sku, &k.model_name) {
        (Some(s), _) => s.clone(),
        (None, Some(m)) => format!("(no SKU) {m}"),
        (None, None) => "(no SKU)".into(),
    };
    match &k.mig_profile {
        Some(p) => format!("{sku} MIG {p}"),
        None => sku,
    }
}

fn line(first: &str, k: &CoverageKey, f: &Figures) -> String {
    format!(
        "{first:<10} {:<28} {:>14} {:>14} {:>14} {:>14} {:>14} {:>14} {:>14}\n",
        device(k),
        f.capacity,
        f.metered,
        f.in_ledger,
        f.idle,
        f.unmetered,
        f.unmapped,
        f.unbillable
    )
}

/// Exact GPU-seconds: the days with anything observed, then each key's totals.
fn table(r: &CoverageReport) -> String {
    let mut s = format!(
        "coverage {} to {} (Europe/Berlin days), GPU-seconds; capacity = metered + idle + unmetered + unmapped + unbillable\n",
        r.from, r.to
    );
    s += &format!(
        "{:<10} {:<28} {:>14} {:>14} {:>14} {:>14} {:>14} {:>14} {:>14}\n",
        "day", "sku", "capacity", "metered", "in ledger", "idle", "unmetered", "unmapped", "unbillable"
    );
    for d in r.days.iter().filter(|d| !d.figures.capacity.is_zero()) {
        s += &line(&d.day.to_string(), &d.key, &d.figures);
    }
    for t in &r.totals {
        s += &line("total", &t.key, &t.figures);
    }
    if r.totals.is_empty() {
        s += "the collector recorded nothing in this range\n";
    }
    s
}
