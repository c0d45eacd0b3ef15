//! `gpuledger budget ...`: the investment budget, its report and the SAP journal.

use anyhow::{bail, Context, Result};
use chrono::{NaiveDate, Utc};
use clap::{Subcommand, ValueEnum};
use domain::billing::Period;
use domain::budget::sap::revenue_total;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum BudgetCmd {
    /// Append budget events from JSON files (`{"event_id"?: uuid, "kind": ..., "data": {...}}`,
    /// an object or an array). All or none; refused bookings name the item and the rule.
    Load { files: Vec<PathBuf> },
    /// Budget, committed, actual, remaining and forecast per cost centre / WBS element, per owner
    /// and for the programme; the fleet; revenue by allocation key. As of a date (default today).
    Report {
        #[arg(long)]
        as_of: Option<NaiveDate>,
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
    },
    /// The journal-entry CSV of a period for SAP S/4HANA (docs/sap-export.md). Hands the period
    /// over: from then on it and every month before it take no budget events, and a later export
    /// must be the same file.
    SapExport {
        #[arg(long)]
        period: String,
        /// File to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The EC Sales List (Zusammenfassende Meldung) of a period as CSV: per customer VAT id and
    /// country, the net amount of the intra-EU services invoiced under reverse charge by the
    /// period's close, as its SAP journal posts them (docs/sap-export.md).
    EcSalesList {
        #[arg(long)]
        period: String,
        /// File to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Table,
    Csv,
    Json,
}

pub fn budget(db: &mut postgres::Client, cmd: BudgetCmd) -> Result<()> {
    match cmd {
        BudgetCmd::Load { files } => {
            if files.is_empty() {
                bail!("name at least one file");
            }
            let inputs = crate::billing_cli::read_inputs(&files)?;
            let loaded = store::budget::load_budget(db, &inputs, Utc::now())?;
            let new = loaded.iter().filter(|l| l.new).count();
            println!("{new} new budget events, {} already in the ledger", loaded.len() - new);
        }
        BudgetCmd::Report { as_of, format } => {
            let as_of = as_of.unwrap_or_else(|| domain::billing::period::berlin_date(Utc::now()));
            let r = store::budget::budget_report(db, as_of)?;
            match format {
                ReportFormat::Table => print!("{}", r.to_table()),
                ReportFormat::Csv => print!("{}", String::from_utf8(r.to_csv())?),
                ReportFormat::Json => print!("{}", String::from_utf8(r.to_json())?),
            }
        }
        BudgetCmd::SapExport { period, out } => {
            let period = Period::parse(&period).map_err(anyhow::Error::msg)?;
            let (lines, csv) = store::budget::export_sap_journal(db, period, Utc::now())?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &csv).with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "{} journal lines for {period}, balanced; revenue EUR {} written to {}",
                        lines.len(),
                        revenue_total(&lines),
                        path.display()
                    );
                }
                None => print!("{}", String::from_utf8(csv)?),
            }
        }
        BudgetCmd::EcSalesList { period, out } => {
            let period = Period::parse(&period).map_err(anyhow::Error::msg)?;
            let lines = store::budget::ec_sales_list(db, period)?;
            let csv = domain::budget::ec_sales::ec_sales_csv(&lines);
            match out {
                Some(path) => {
                    std::fs::write(&path, &csv).with_context(|| format!("writing {}", path.display()))?;
                    let total: rust_decimal::Decimal = lines.iter().map(|l| l.amount).sum();
                    eprintln!(
                        "{} customers on the EC Sales List of {period}, EUR {total} written to {}",
                        lines.len(),
                        path.display()
                    );
                }
                None => print!("{}", String::from_utf8(csv)?),
            }
        }
    }
    Ok(())
}
