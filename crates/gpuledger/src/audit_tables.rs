//! The typed tables of `gpuledger audit export` (`domain::gdpdu`): usage, invoices, invoice
//! lines, budget bookings and the SAP journal lines of every period handed over, written while
//! the raw log streams by, each row read from the ledger row it names.

use anyhow::{Context, Result};
use domain::audit::{csv_header, Column, TableSpec};
use domain::billing::invoice::{InvoiceDoc, KIND_INVOICE};
use domain::billing::reference::{UsageAdjustment, KIND_ADJUSTMENT};
use domain::billing::Period;
use domain::budget::events::BUDGET_KINDS;
use domain::budget::BudgetEvent;
use domain::gdpdu::*;
use std::io::BufWriter;
use std::path::Path;
use store::audit::ExportRow;

type Writer = csv::Writer<BufWriter<std::fs::File>>;

/// The files, their names in `index.xml`, descriptions and columns.
/// And how many leading columns make the primary key.
pub const TABLES: [(&str, &str, &str, &[Column], usize); 5] = [
    ("usage.csv", "usage", "metered usage and finance's adjustments, GPU-seconds typed", USAGE_COLUMNS, 1),
    ("invoices.csv", "invoices", "every invoice and credit note issued, amounts typed", INVOICE_COLUMNS, 1),
    ("invoice_lines.csv", "invoice_lines", "the lines of every document", INVOICE_LINE_COLUMNS, 2),
    (
        "budget_bookings.csv",
        "budget_bookings",
        "allocations, reallocation moves, purchase orders, supplier invoices and assets",
        BUDGET_BOOKING_COLUMNS,
        2,
    ),
    (
        "journal_lines.csv",
        "journal_lines",
        "the SAP journal of every period handed over (journal.exported) in the range, as handed over",
        JOURNAL_LINE_COLUMNS,
        3,
    ),
];

pub struct TypedTables {
    writers: Vec<Writer>,
    /// Periods whose journal was handed over, by rows in the range.
    handed_over: Vec<Period>,
}

impl TypedTables {
    pub fn create(out: &Path, open: impl Fn(&Path) -> Result<Writer>) -> Result<TypedTables> {
        let mut writers = Vec::new();
        for (file, _, _, columns, _) in TABLES {
            let mut w = open(&out.join(file))?;
            w.write_record(columns.iter().map(|c| c.0))?;
            writers.push(w);
        }
        Ok(TypedTables { writers, handed_over: Vec::new() })
    }

    /// The typed records of one ledger row (none for other kinds).
    pub fn row(&mut self, r: &ExportRow) -> Result<()> {
        let kind = r.kind.as_str();
        if kind != domain::usage::LEDGER_KIND
            && kind != KIND_ADJUSTMENT
            && kind != KIND_INVOICE
            && !BUDGET_KINDS.contains(&kind)
        {
            return Ok(());
        }
        let payload: serde_json::Value = serde_json::from_slice(&r.payload)?;
        let data = &payload["data"];
        let context = || format!("ledger row {} ({kind})", r.seq);
        match kind {
            domain::usage::LEDGER_KIND => {
                self.writers[0].write_record(usage_record(r.seq, data).map_err(anyhow::Error::msg)?)?
            }
            KIND_ADJUSTMENT => {
                let a: UsageAdjustment = serde_json::from_value(data.clone()).with_context(context)?;
                self.writers[0].write_record(adjustment_record(r.seq, &a))?;
            }
            KIND_INVOICE => {
                let d = InvoiceDoc::from_json(data).map_err(anyhow::Error::msg).with_context(context)?;
                let (head, lines) = invoice_records(r.seq, &d);
                self.writers[1].write_record(head)?;
                for l in lines {
                    self.writers[2].write_record(l)?;
                }
            }
            _ => {
                let e = BudgetEvent::parse(kind, data).map_err(anyhow::Error::msg).with_context(context)?;
                for rec in budget_booking_records(r.seq, &e) {
                    self.writers[3].write_record(rec)?;
                }
                if let BudgetEvent::JournalExported(j) = e {
                    self.handed_over.push(j.period);
                }
            }
        }
        Ok(())
    }

    /// Writes the journals handed over (built again: a closed period's journal is the file
    /// handed over, which `sap_journal`'s fold guarantees and the export checked by its SHA-256),
    /// flushes every file and returns their descriptions.
    pub fn finish(mut self, db: &mut postgres::Client) -> Result<Vec<TableSpec<'static>>> {
        for p in std::mem::take(&mut self.handed_over) {
            let lines = store::budget::sap_journal(db, p)?;
            for rec in journal_records(p, &lines) {
                self.writers[4].write_record(rec)?;
            }
        }
        for w in &mut self.writers {
            w.flush()?;
        }
        Ok(TABLES
            .into_iter()
            .map(|(url, name, description, columns, key_columns)| TableSpec {
                url,
                name,
                description,
                columns,
                key_columns,
                header_bytes: csv_header(columns).len(),
                validity: None,
            })
            .collect())
    }
}
