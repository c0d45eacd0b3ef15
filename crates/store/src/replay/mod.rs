//! The auditors' full replay: every projection rebuilt from `ledger_events` alone, as of a cut
//! of the log (everything, the rows up to a sequence number, or the rows recorded up to an
//! instant), into a scratch schema: the hourly usage, the invoices index with each document
//! re-derived by replaying its close, and the budget report as of the cut's date. Then compared
//! with the live projections and hashed in a canonical order, so that two replays of the same
//! log can be compared by one hash.
//!
//! Where the time goes: the hourly fold reads every usage event, so it runs inside PostgreSQL
//! (one `CREATE TABLE ... AS SELECT ... GROUP BY` per monthly partition, which parallel query
//! may spread over workers); streaming the rows out costs more than the fold, because turning a
//! `jsonb` back into text alone takes longer than extracting the four fields the fold needs
//! (docs/benchmarks.md, "Audit replay"). Everything else (closes, reference data, budget) is a
//! few hundred rows folded in Rust by the same domain functions the live system uses.
//!
//! The parts, in the order a replay runs them: `cut` (where the cut leaves every stream),
//! `closes` (the billing and reference streams inside the cut; each close planned again),
//! `hourly` (the usage fold into the scratch schema), `invoices` (the replayed index against the
//! live one), `budget` (the report as of the cut's date), `compare` (hashing and the differences).

mod budget;
mod closes;
mod compare;
mod cut;
mod hourly;
mod invoices;

pub use compare::{Difference, ProjectionOutput};
pub use cut::Cut;

use crate::{Refusal, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use domain::billing::invoice::InvoiceDoc;
use postgres::{Client, IsolationLevel};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub cut: Cut,
    /// The scratch schema (default `replay_<pid>`, then `replay_<pid>_<n>` for later replays of
    /// the same process); it must not exist yet.
    pub schema: Option<String>,
    /// Keep the scratch schema (committed) instead of dropping it (rolled back).
    pub keep: bool,
    /// How many differences to list (all are counted).
    pub differences_max: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions { cut: Cut::Now, schema: None, keep: false, differences_max: 20 }
    }
}

/// One step of a replay, for progress reporting: `done` of `total` units (events, estimated
/// from the partitions' statistics) after finishing `stage`.
#[derive(Debug, Clone)]
pub struct Progress {
    pub stage: String,
    pub done: u64,
    pub total: u64,
}

#[derive(Debug, Clone)]
pub struct ReplayReport {
    pub cut: Cut,
    /// The last sequence number inside the cut (None for an empty cut).
    pub cut_seq: Option<i64>,
    /// The knowledge time of the cut: the instant of `--as-of`, else the latest `recorded_at`
    /// of the streams' last rows inside the cut.
    pub cut_at: Option<DateTime<Utc>>,
    /// The budget report's date: the Berlin date of `cut_at`.
    pub as_of_date: NaiveDate,
    pub schema: String,
    pub kept: bool,
    /// Usage events folded, and rows of the local streams (reference, billing, budget) read.
    pub usage_events: u64,
    pub local_rows: u64,
    /// Closes (`period.closed` events) inside the cut, each replayed.
    pub closes: usize,
    pub hourly: ProjectionOutput,
    pub invoices: ProjectionOutput,
    pub budget: ProjectionOutput,
    /// SHA-256 over the cut and the three outputs' hashes.
    pub combined_sha256: [u8; 32],
    /// The first `differences_max` differences, hourly usage first, each in key order.
    pub differences: Vec<Difference>,
    /// For a past cut: GPU-seconds per tenant and SKU of the replayed hourly projection (the live
    /// one cannot be compared; these are what the ledger knew then).
    pub replayed_totals: BTreeMap<(String, String), Decimal>,
}

impl ReplayReport {
    pub fn differences_total(&self) -> u64 {
        self.hourly.differences + self.invoices.differences + self.budget.differences
    }
}

fn invariant(msg: impl Into<String>) -> StoreError {
    StoreError::Invariant(msg.into())
}

/// `[a-z_][a-z0-9_]*`, at most 63 bytes, not a system or the public schema: the only
/// identifiers a replay writes into SQL.
pub fn valid_schema_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
        && !s.starts_with("pg_")
        && !matches!(s, "public" | "information_schema")
}

/// The scratch schema's name: the one asked for, else `replay_<pid>[_<n>]`; refused when it is
/// not an allowed identifier or exists already.
fn scratch_schema(client: &mut Client, opts: &ReplayOptions) -> Result<String, StoreError> {
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let schema = opts.schema.clone().unwrap_or_else(|| {
        let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n == 0 {
            format!("replay_{}", std::process::id())
        } else {
            format!("replay_{}_{n}", std::process::id())
        }
    });
    if !valid_schema_name(&schema) {
        return Err(Refusal::SchemaName(schema).into());
    }
    let exists = client.query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])?.is_some();
    if exists {
        return Err(Refusal::SchemaExists(schema).into());
    }
    Ok(schema)
}

/// Replays every projection from the log inside `opts.cut` into a scratch schema, in one
/// REPEATABLE READ snapshot, and compares them with the live ones (see the module docs).
/// Differences are returned in the report, never as an error; an error means the replay itself
/// could not run (or the log holds something no projection can fold).
pub fn replay(
    client: &mut Client,
    opts: &ReplayOptions,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<ReplayReport, StoreError> {
    let schema = scratch_schema(client, opts)?;
    let mut tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).start()?;
    tx.batch_execute("SET LOCAL TimeZone = 'UTC'; SET LOCAL work_mem = '64MB'")?;
    tx.batch_execute(&format!("CREATE SCHEMA {schema}"))?;
    let cut = opts.cut;

    // What the cut holds: every stream's position, then the local streams inside it.
    let at = cut::StreamCut::read(&mut tx, &cut)?;
    let billing = closes::Billing::read(&mut tx, &cut, &at.streams)?;
    let reference = closes::ReferenceInCut::read(&mut tx, &cut, &billing.last_cut())?;
    let budget_in = budget::events_in_cut(&mut tx, &cut)?;
    let local_rows = (billing.rows + reference.events.len() + budget_in.len()) as u64;

    // The projections, rebuilt in the scratch schema and compared.
    let usage_events = hourly::build(&mut tx, &schema, &cut, &at.ids(), &billing.cuts, &reference, on_progress)?;
    let (replayed, close_differences) = closes::replay_closes(&mut tx, &schema, &billing, &reference.events)?;
    let (invoices, invoice_differences) =
        invoices::replay_index(&mut tx, &schema, &cut, &billing, &replayed, close_differences)?;
    let replayed_docs: Vec<InvoiceDoc> = replayed.iter().map(|(_, d)| d.clone()).collect();
    let (budget, budget_differences) =
        budget::replay_report(&mut tx, &schema, &cut, &budget_in, &replayed_docs, at.as_of_date)?;
    let (hourly, hourly_differences, replayed_totals) = hourly::hash_and_compare(&mut tx, &schema, &cut)?;

    let combined_sha256 = compare::combined(&cut, at.cut_seq, at.as_of_date, [&hourly, &invoices, &budget]);
    let differences: Vec<Difference> = hourly_differences
        .into_iter()
        .chain(invoice_differences)
        .chain(budget_differences)
        .take(opts.differences_max)
        .collect();
    if opts.keep {
        tx.commit()?;
    } else {
        tx.rollback()?; // drops the scratch schema with everything in it
    }
    Ok(ReplayReport {
        cut,
        cut_seq: at.cut_seq,
        cut_at: at.cut_at,
        as_of_date: at.as_of_date,
        schema,
        kept: opts.keep,
        usage_events: u64::try_from(usage_events).unwrap_or(0),
        local_rows,
        closes: billing.closes.len(),
        hourly,
        invoices,
        budget,
        combined_sha256,
        differences,
        replayed_totals: if cut.is_now() { BTreeMap::new() } else { replayed_totals },
    })
}

#[cfg(test)]
mod tests {
    use super::hourly::{buckets, valid_partition_name, STREAM_SHIFT};
    use super::*;

    #[test]
    fn schema_names_come_from_an_allow_list() {
        for ok in ["replay_123", "_x", "audit2026"] {
            assert!(valid_schema_name(ok), "{ok}");
        }
        for bad in ["", "public", "pg_temp", "Replay", "a-b", "a;drop", "x y", &"a".repeat(64)] {
            assert!(!valid_schema_name(bad), "{bad}");
        }
        assert!(valid_partition_name("ledger_events_y2026m10"));
        assert!(!valid_partition_name("ledger_events_y2026m1x"));
        assert!(!valid_partition_name("ledger_events_default"));
    }

    #[test]
    fn buckets_follow_the_closes_cuts() {
        // Stream 1 cut at 5 then 9; stream 2 unknown to the first close.
        let cuts = vec![BTreeMap::from([(1, 5)]), BTreeMap::from([(1, 9), (2, 3)])];
        let b = buckets(&[1, 2], &cuts).unwrap();
        let s = STREAM_SHIFT;
        assert_eq!(b.thresholds, vec![s, s + 6, s + 10, 2 * s - 1, 2 * s, 2 * s + 1, 2 * s + 4, 3 * s - 1]);
        assert_eq!(b.buckets, vec![0, 1, 2, -1, 0, 1, 2, -1]);
        let none = buckets(&[1], &[]).unwrap();
        assert_eq!(none.buckets, vec![0, -1]);
        assert!(buckets(&[1], &[BTreeMap::from([(1, 9)]), BTreeMap::from([(1, 5)])]).is_err());
    }
}
