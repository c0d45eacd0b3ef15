//! The monthly partitions of `ledger_events`: their names, and creating the ones a batch needs
//! before its transaction starts.

use super::PartitionBatch;
use crate::StoreError;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use postgres::Client;
use std::collections::{BTreeSet, HashSet};

pub(super) fn month_of(t: DateTime<Utc>) -> NaiveDate {
    NaiveDate::from_ymd_opt(t.year(), t.month(), 1).expect("first of a month")
}

/// Months whose ledger partitions exist, known to this process.
#[derive(Debug, Default)]
pub struct PartitionCache(HashSet<NaiveDate>);

/// Ensures the monthly partitions for these events exist, each in its own short transaction.
pub fn ensure_months(
    client: &mut Client,
    cache: &mut PartitionCache,
    batch: &[PartitionBatch],
) -> Result<(), StoreError> {
    let months: BTreeSet<NaiveDate> = batch
        .iter()
        .flat_map(|b| b.messages.iter())
        .filter_map(|m| m.verdict.as_ref().ok())
        .map(|e| month_of(e.interval_start))
        .filter(|m| !cache.0.contains(m))
        .collect();
    ensure_month_set(client, cache, months)
}

/// Ensures the monthly partitions for these instants exist.
pub fn ensure_months_for(client: &mut Client, instants: impl Iterator<Item = DateTime<Utc>>) -> Result<(), StoreError> {
    ensure_month_set(client, &mut PartitionCache::default(), instants.map(month_of).collect())
}

fn ensure_month_set(
    client: &mut Client,
    cache: &mut PartitionCache,
    months: BTreeSet<NaiveDate>,
) -> Result<(), StoreError> {
    for m in months {
        // Concurrent creators are serialized in the database (ledger_ensure_month, 0012). DDL on a
        // fresh month can still meet other catalog updates (GRANTs in other databases of the
        // cluster); it is idempotent, so a few quick retries are safe, each one logged with the
        // database's own message.
        let mut attempt = 0;
        loop {
            match client.execute("SELECT ledger_ensure_month($1)", &[&m]) {
                Ok(_) => break,
                Err(e) if attempt < 5 && !e.is_closed() => {
                    attempt += 1;
                    let error = crate::db_message(&e);
                    tracing::warn!(%error, month = %m, "creating the month's partition failed, retrying");
                    std::thread::sleep(std::time::Duration::from_millis(50 * attempt));
                }
                Err(e) => return Err(e.into()),
            }
        }
        cache.0.insert(m);
    }
    Ok(())
}

/// The name of the monthly partition of `ledger_events` holding `month` (as
/// `ledger_ensure_month` names it).
pub(super) fn partition_name(month: NaiveDate) -> String {
    format!("ledger_events_y{:04}m{:02}", month.year(), month.month())
}
