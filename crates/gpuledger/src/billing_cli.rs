//! `gpuledger reference ...` and `gpuledger invoices ...`: finance's commands.

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::{Subcommand, ValueEnum};
use domain::billing::invoice::InvoiceDoc;
use domain::billing::reference::ReferenceInput;
use domain::billing::{export, focus, reverse_charge, ubl, Period};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum ReferenceCmd {
    /// Append reference events from JSON files (an object or an array of objects
    /// `{"event_id"?: uuid, "kind": ..., "data": {...}}`). All or none; an event id already loaded
    /// with the same content is skipped, so loading a file twice changes nothing.
    Load { files: Vec<PathBuf> },
    /// The reference data in force now, as JSON.
    Show,
}

#[derive(Subcommand)]
pub enum InvoicesCmd {
    /// Close a calendar month (Europe/Berlin): issue every tenant's invoice and any credit notes.
    Close {
        #[arg(long)]
        period: String,
    },
    /// Issued documents, optionally of one close and one tenant.
    List {
        #[arg(long)]
        period: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Write the documents issued by a close to a folder.
    Export {
        #[arg(long)]
        period: String,
        #[arg(long, value_enum, default_value_t = ExportFormat::All)]
        format: ExportFormat,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value = "out/invoices")]
        out: PathBuf,
    },
    /// Replay every close from the log alone and compare each document byte for byte.
    Verify,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
    Xrechnung,
    Focus,
    All,
}

fn period(text: &str) -> Result<Period> {
    Period::parse(text).map_err(anyhow::Error::msg)
}

pub fn read_inputs(files: &[PathBuf]) -> Result<Vec<ReferenceInput>> {
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        // I-JSON: a member name that repeats is refused, never read as its last value.
        let v: serde_json::Value =
            domain::ijson::from_str(&text).with_context(|| format!("{} is not I-JSON", f.display()))?;
        let items = match v {
            serde_json::Value::Array(items) => items,
            other => vec![other],
        };
        for (i, item) in items.into_iter().enumerate() {
            let r: ReferenceInput = serde_json::from_value(item).with_context(|| {
                format!("{} item {}: expected {{\"kind\", \"data\", \"event_id\"?}}", f.display(), i + 1)
            })?;
            out.push(r);
        }
    }
    Ok(out)
}

pub fn reference(db: &mut postgres::Client, cmd: ReferenceCmd) -> Result<()> {
    match cmd {
        ReferenceCmd::Load { files } => {
            if files.is_empty() {
                bail!("name at least one file");
            }
            let inputs = read_inputs(&files)?;
            let loaded = store::billing::load_reference(db, &inputs, Utc::now())?;
            let new = loaded.iter().filter(|l| l.new).count();
            for l in &loaded {
                println!("{} {} {}", if l.new { "loaded   " } else { "unchanged" }, l.kind, l.event_id);
            }
            println!("{new} new reference events, {} already in the ledger", loaded.len() - new);
        }
        ReferenceCmd::Show => {
            let s = store::billing::reference_state(db)?;
            let prices: Vec<_> = s.prices.values().chain(s.slice_prices.values()).flat_map(|m| m.values()).collect();
            let profiles: Vec<_> = s.profiles.values().map(|(p, _)| p).collect();
            let contracts: Vec<_> = s.contracts.values().collect();
            let skus: Vec<_> = s.catalogue.entries().collect();
            let v = serde_json::json!({ "seller": s.seller, "price_lists": prices, "profiles": profiles, "contracts": contracts, "skus": skus });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}

fn summary(docs: &[InvoiceDoc]) {
    println!(
        "{:<22} {:<4} {:<22} {:<8} {:>5} {:>14} {:>12} {:>14}",
        "document", "type", "tenant", "period", "VAT", "net EUR", "VAT EUR", "gross EUR"
    );
    for d in docs {
        println!(
            "{:<22} {:<4} {:<22} {:<8} {:>5} {:>14} {:>12} {:>14}",
            d.number, d.type_code, d.tenant_id, d.period, d.vat.category, d.net_total, d.vat_total, d.gross_total
        );
    }
}

pub fn invoices(db: &mut postgres::Client, cmd: InvoicesCmd) -> Result<()> {
    match cmd {
        InvoicesCmd::Close { period: p } => {
            let p = period(&p)?;
            let outcome = store::billing::close_period(db, p, Utc::now())?;
            if outcome.already_closed {
                println!("{p} was closed before; nothing new issued ({} documents then)", outcome.documents.len());
            } else {
                println!("closed {p}: {} documents issued", outcome.documents.len());
            }
            summary(&outcome.documents);
            if !outcome.already_closed {
                for w in outcome.documents.iter().filter_map(reverse_charge::late_invoice_warning) {
                    println!("warning: {w}");
                }
            }
        }
        InvoicesCmd::List { period: p, tenant } => {
            let p = p.as_deref().map(period).transpose()?;
            summary(&store::billing::documents(db, p, tenant.as_deref())?);
        }
        InvoicesCmd::Export { period: p, format, tenant, out } => {
            let p = period(&p)?;
            let docs = store::billing::documents(db, Some(p), tenant.as_deref())?;
            if docs.is_empty() {
                bail!(
                    "no documents issued by the close of {p} (close it first: gpuledger invoices close --period {p})"
                );
            }
            let written = write_exports(&docs, p, format, &out.join(p.to_string()))?;
            println!("{} files written under {}", written, out.join(p.to_string()).display());
        }
        InvoicesCmd::Verify => {
            let checks = store::billing::verify_closes(db)?;
            let mut bad = 0;
            for c in &checks {
                if c.differences.is_empty() {
                    println!("{}: {} documents, byte-identical on replay", c.period, c.documents);
                } else {
                    bad += 1;
                    for d in &c.differences {
                        println!("{}: DIFFERENT: {d}", c.period);
                    }
                }
            }
            // The tables the API and the pages read, against the events they index.
            let index = store::billing_index::verify_index(db)?;
            if bad > 0 {
                bail!("{bad} of {} closes differ from their replay", checks.len());
            }
            if !index.is_empty() {
                bail!(
                    "{} differences between the billing tables the API reads and the ledger:\n{}",
                    index.len(),
                    index.join("\n")
                );
            }
            println!("{} closes replayed, every document byte-identical", checks.len());
            println!("tables invoices and billing_closes: every row matches its ledger event");
        }
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Writes the exports of one close's documents; returns how many files.
pub fn write_exports(docs: &[InvoiceDoc], p: Period, format: ExportFormat, dir: &Path) -> Result<usize> {
    let all = format == ExportFormat::All;
    let mut n = 0;
    if all || format == ExportFormat::Csv {
        write(&dir.join("invoices.csv"), &export::csv(docs))?;
        n += 1;
    }
    if all || format == ExportFormat::Json {
        write(&dir.join("invoices.json"), &export::json(docs))?;
        n += 1;
    }
    if all || format == ExportFormat::Xrechnung {
        for d in docs {
            write(&dir.join("xrechnung").join(format!("{}.xml", d.number)), ubl::xrechnung(d).as_bytes())?;
            n += 1;
        }
    }
    if all || format == ExportFormat::Focus {
        let mut by_tenant: BTreeMap<&str, Vec<InvoiceDoc>> = BTreeMap::new();
        for d in docs {
            by_tenant.entry(&d.tenant_id).or_default().push(d.clone());
        }
        for (tenant, docs) in by_tenant {
            write(&dir.join("focus").join(format!("{tenant}-{p}.csv")), &focus::focus_csv(&docs, p))?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::read_inputs;
    use std::path::PathBuf;

    fn fixture(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(path)
    }

    /// Reference and budget loads read their files as I-JSON: the fixtures load, and each one
    /// of `fixtures/duplicates` (a fixture with one member named twice) is refused, naming it.
    #[test]
    fn loads_refuse_a_member_named_twice() {
        for ok in ["billing/prices.json", "budget/bookings.json"] {
            assert!(!read_inputs(&[fixture(ok)]).unwrap().is_empty(), "{ok}");
        }
        for (file, member) in [
            ("duplicates/reference-currency-twice.json", "\"currency\" appears more than once in [0].data"),
            ("duplicates/budget-amount-twice.json", "\"amount\" appears more than once in [0].data"),
            ("duplicates/budget-kind-twice.json", "\"kind\" appears more than once in [0]"),
        ] {
            let e = read_inputs(&[fixture(file)]).unwrap_err();
            assert!(format!("{e:#}").contains(member), "{file}: {e:#}");
        }
    }
}
