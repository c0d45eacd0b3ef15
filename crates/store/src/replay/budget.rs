//! The budget of a replay: the budget stream's events inside the cut, and the budget report as
//! of the cut's date from them and the replayed documents, hashed and (for a full replay)
//! compared with the report from the live documents.

use super::compare::{Difference, ProjectionOutput};
use super::cut::{local_stream, Cut};
use super::invariant;
use crate::billing::documents_where;
use crate::budget::{budget_events, close_periods, BUDGET_STREAM};
use crate::StoreError;
use chrono::{DateTime, NaiveDate, Utc};
use domain::billing::invoice::InvoiceDoc;
use domain::budget::report::report;
use domain::budget::{BudgetEvent, BudgetState};
use postgres::Transaction;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The budget events inside the cut, in stream order.
pub(super) fn events_in_cut(tx: &mut Transaction<'_>, cut: &Cut) -> Result<Vec<BudgetEvent>, StoreError> {
    let rows: Vec<(i64, DateTime<Utc>)> =
        local_stream(tx, BUDGET_STREAM)?.iter().map(|r| (r.get(4), r.get(5))).collect();
    Ok(budget_events(tx)?.into_iter().zip(&rows).filter(|(_, (s, t))| cut.includes(*s, *t)).map(|(e, _)| e).collect())
}

/// The budget report as of the cut's date, from the replayed documents, into
/// `{schema}.budget_report`; against the live documents (a full replay only: for a past cut the
/// issued documents are the replayed ones).
pub(super) fn replay_report(
    tx: &mut Transaction<'_>,
    schema: &str,
    cut: &Cut,
    budget_in: &[BudgetEvent],
    replayed_docs: &[InvoiceDoc],
    as_of_date: NaiveDate,
) -> Result<(ProjectionOutput, Vec<Difference>), StoreError> {
    let closes = close_periods(tx)?;
    let budget_json = report(&BudgetState::as_of(budget_in, as_of_date), replayed_docs, &closes, as_of_date).to_json();
    let budget_sha: [u8; 32] = Sha256::digest(&budget_json).into();
    tx.batch_execute(&format!(
        "CREATE TABLE {schema}.budget_report (as_of date NOT NULL, report text NOT NULL, report_sha256 bytea NOT NULL)"
    ))?;
    let budget_text = String::from_utf8(budget_json.clone()).map_err(|_| invariant("budget report is not UTF-8"))?;
    tx.execute(
        &format!("INSERT INTO {schema}.budget_report VALUES ($1, $2, $3)"),
        &[&as_of_date, &budget_text, &budget_sha.as_slice()],
    )?;
    let mut budget_differences = Vec::new();
    if cut.is_now() {
        let live_docs = documents_where(tx, "true", &[])?;
        let live =
            report(&BudgetState::as_of(&budget_events(tx)?, as_of_date), &live_docs, &closes, as_of_date).to_json();
        if live != budget_json {
            let (a, b): (Value, Value) = (
                serde_json::from_slice(&budget_json).unwrap_or(Value::Null),
                serde_json::from_slice(&live).unwrap_or(Value::Null),
            );
            budget_differences.push(Difference {
                projection: "budget",
                key: format!("report as of {as_of_date}"),
                replayed: format!("sha256 {}", hex::encode(budget_sha)),
                live: format!(
                    "sha256 {}, first difference at {}",
                    hex::encode(Sha256::digest(&live)),
                    crate::billing::first_difference(&a, &b)
                ),
            });
        }
    }
    let budget = ProjectionOutput {
        name: "budget_report",
        rows: 1,
        sha256: budget_sha,
        compared: cut.is_now(),
        differences: budget_differences.len() as u64,
    };
    Ok((budget, budget_differences))
}
