//! Period locks (GoBD: what was handed over never changes). Exporting a period's SAP journal
//! records a `journal.exported` event with the file's SHA-256; from then on every month up to and
//! including the latest exported one is closed for the budget: an event dated in it (a booking,
//! master data, an asset whose in-service date lies in it) is refused, and is to be booked in the
//! open period instead. So the journal of a closed month, a fold of the events dated up to its
//! last day and of the documents its close issued, comes out byte for byte the same on every
//! later export, and the export checks that it does against the recorded hash.

use super::events::{err, BudgetError};
use crate::billing::Period;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// A period's journal handed over to SAP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalExported {
    pub period: Period,
    /// Hex SHA-256 of the CSV as written.
    pub sha256: String,
    pub lines: u32,
    /// The day of the (first) export.
    pub date: NaiveDate,
}

impl JournalExported {
    pub fn validate(&self) -> Result<(), BudgetError> {
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(err("sha256", "64 lower-case hex digits"));
        }
        if self.date < self.period.last_day() {
            return Err(err(
                "date",
                format!("{}: the journal of {} cannot be exported before it ends", self.date, self.period),
            ));
        }
        Ok(())
    }
}

/// Refuses an event dated in a closed month (`locked_through`: the latest exported period).
pub fn refuse_in_closed_period(kind: &str, date: NaiveDate, locked_through: Option<Period>) -> Result<(), BudgetError> {
    match locked_through {
        Some(p) if date <= p.last_day() => Err(err(
            "date",
            format!(
                "{kind} dated {date} falls in a closed period: the SAP journal up to {p} has been exported; \
                 book it in the open period (from {} on)",
                p.next().first_day()
            ),
        )),
        _ => Ok(()),
    }
}

/// A later export of an exported period must be the same file.
pub fn check_reexport(recorded: &JournalExported, sha256: &str) -> Result<(), BudgetError> {
    if recorded.sha256 != sha256 {
        return Err(err(
            "period",
            format!(
                "the journal of {} differs from the one exported on {} (sha256 {}, now {sha256}); a closed period's journal never changes",
                recorded.period, recorded.date, recorded.sha256
            ),
        ));
    }
    Ok(())
}
