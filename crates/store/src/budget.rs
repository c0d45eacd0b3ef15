//! The investment budget in the ledger: budget events (master data and bookings) appended to the
//! stream `gpuledger.budget` after the checks of `domain::budget::BudgetState::admits`, all or
//! none; the report as of a date and the SAP journal of a period.

use crate::append::ensure_months_for;
use crate::billing::{
    append_local, documents, documents_where, is_known, lock_stream, parse_items, LoadedRef, LocalEvent,
};
use crate::{Refusal, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use domain::billing::reference::{ReferenceInput, NO_TENANT};
use domain::billing::Period;
use domain::budget::ec_sales::EcSalesLine;
use domain::budget::events::BUDGET_VERSION;
use domain::budget::lock::JournalExported;
use domain::budget::report::{report, BudgetReport};
use domain::budget::sap::{imbalances, journal, journal_csv, JournalLine};
use domain::budget::{BudgetEvent, BudgetState};
use postgres::{Client, IsolationLevel, Transaction};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use uuid::Uuid;

pub const BUDGET_STREAM: &str = "gpuledger.budget";

pub(crate) fn budget_events(tx: &mut Transaction<'_>) -> Result<Vec<BudgetEvent>, StoreError> {
    let rows = tx.query(
        "SELECT e.stream_pos, e.kind, e.payload FROM ledger_events e JOIN ledger_streams s USING (stream_id)
          WHERE s.topic = $1 AND s.kafka_partition = 0 ORDER BY e.stream_pos",
        &[&BUDGET_STREAM],
    )?;
    rows.iter()
        .map(|r| {
            let kind: String = r.get(1);
            let payload: serde_json::Value = r.get(2);
            BudgetEvent::parse(&kind, &payload["data"]).map_err(|e| {
                StoreError::Invariant(format!("budget event at position {} no longer parses: {e}", r.get::<_, i64>(0)))
            })
        })
        .collect()
}

/// Validates and appends budget events, all or none: each on its own, then against the state it
/// joins (unknown or closed cost centres, budget exceeded without a reallocation, a closed
/// period, ...). An item without an event id gets one from its business key; an event whose
/// business key is in the ledger with the same content is counted as already there, with other
/// content refused (`domain::budget::keys`).
pub fn load_budget(
    client: &mut Client,
    items: &[ReferenceInput],
    now: DateTime<Utc>,
) -> Result<Vec<LoadedRef>, StoreError> {
    let mut parsed = parse_items(items, BudgetEvent::parse)?;
    for ((id, e), item) in parsed.iter_mut().zip(items) {
        if item.event_id.is_none() {
            *id = e.derived_event_id();
        }
    }
    ensure_months_for(client, std::iter::once(now))?;
    let mut tx = client.transaction()?;
    lock_stream(&mut tx, BUDGET_STREAM)?;
    let mut state = BudgetState::fold(&budget_events(&mut tx)?);
    let mut events = Vec::with_capacity(parsed.len());
    let mut duplicates = Vec::new();
    for (i, (id, e)) in parsed.iter().enumerate() {
        if is_known(&mut tx, NO_TENANT, id)? {
            // The same id again: append_local counts it, or refuses other content.
        } else if state.is_duplicate(e) {
            // The same business event under another id (or none): counted, not booked again.
            duplicates.push(i);
            continue;
        } else {
            state.admits(e).map_err(|err| Refusal::ItemConflict {
                item: i + 1,
                event_kind: e.kind(),
                source: err.into(),
            })?;
            state.apply(e);
        }
        events.push(LocalEvent {
            event_id: *id,
            tenant_id: NO_TENANT.to_string(),
            kind: e.kind().to_string(),
            version: BUDGET_VERSION,
            occurred_at: now,
            data: e.data(),
        });
    }
    let mut appended = append_local(&mut tx, BUDGET_STREAM, &events, now)?.into_iter();
    tx.commit()?;
    Ok(parsed
        .iter()
        .enumerate()
        .map(|(i, (id, e))| match duplicates.contains(&i) {
            true => LoadedRef { event_id: *id, kind: e.kind(), new: false },
            false => {
                let a = appended.next().expect("one appended per event passed");
                LoadedRef { event_id: a.event_id, kind: e.kind(), new: a.new }
            }
        })
        .collect())
}

/// Each close (its `period.closed` event id) with the period it closed: the journal's period of
/// the documents it issued.
pub(crate) fn close_periods(tx: &mut Transaction<'_>) -> Result<BTreeMap<Uuid, Period>, StoreError> {
    tx.query("SELECT event_id, period FROM billing_closes", &[])?
        .iter()
        .map(|r| {
            let p: String = r.get(1);
            Ok((r.get(0), Period::parse(&p).map_err(StoreError::Invariant)?))
        })
        .collect()
}

/// The budget report as of a date (business dates of the budget events, issue dates of invoices,
/// and the journal's periods for the revenue by service period).
pub fn budget_report(client: &mut Client, as_of: NaiveDate) -> Result<BudgetReport, StoreError> {
    let mut tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start()?;
    let events = budget_events(&mut tx)?;
    let docs = documents_where(&mut tx, "true", &[])?;
    let closes = close_periods(&mut tx)?;
    tx.commit()?;
    Ok(report(&BudgetState::as_of(&events, as_of), &docs, &closes, as_of))
}

/// The SAP journal of a period: revenue of the documents issued by its close, depreciation of
/// the month; master data as of the period's last day.
pub fn sap_journal(client: &mut Client, period: Period) -> Result<Vec<JournalLine>, StoreError> {
    let mut tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start()?;
    let events = budget_events(&mut tx)?;
    tx.commit()?;
    let docs = documents(client, Some(period), None)?;
    let state = BudgetState::as_of(&events, period.last_day());
    Ok(journal(&state, &docs, period).map_err(Refusal::Journal)?)
}

/// The EC Sales List of a period: the reverse-charge documents issued by its close, the same
/// documents its SAP journal posts. Refused before the period's billing close.
pub fn ec_sales_list(client: &mut Client, period: Period) -> Result<Vec<EcSalesLine>, StoreError> {
    let mut tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start()?;
    let p = period.to_string();
    if tx.query_opt("SELECT 1 FROM billing_closes WHERE period = $1", &[&p])?.is_none() {
        return Err(Refusal::Journal(domain::budget::events::BudgetError {
            field: "period".into(),
            message: format!("{period} has no billing close yet; close it (gpuledger invoices close) first"),
        })
        .into());
    }
    let docs = documents_where(&mut tx, "i.close_period = $1", &[&p])?;
    tx.commit()?;
    Ok(domain::budget::ec_sales::ec_sales_list(&docs, period).map_err(Refusal::Journal)?)
}

/// Hands a period's SAP journal over: builds it as `sap_journal` does, and in the same
/// transaction (the budget stream locked) records `journal.exported` with the file's SHA-256 the
/// first time, which closes the period and every month before it for budget events
/// (`domain::budget::lock`). A later export must produce the same bytes, or it is refused. Only a
/// period whose billing close has run can be handed over: its documents are then final.
pub fn export_sap_journal(
    client: &mut Client,
    period: Period,
    now: DateTime<Utc>,
) -> Result<(Vec<JournalLine>, Vec<u8>), StoreError> {
    ensure_months_for(client, std::iter::once(now))?;
    let mut tx = client.transaction()?;
    lock_stream(&mut tx, BUDGET_STREAM)?;
    let p = period.to_string();
    if tx.query_opt("SELECT 1 FROM billing_closes WHERE period = $1", &[&p])?.is_none() {
        return Err(Refusal::Journal(domain::budget::events::BudgetError {
            field: "period".into(),
            message: format!("{period} has no billing close yet; close it (gpuledger invoices close) before handing its journal over"),
        })
        .into());
    }
    let events = budget_events(&mut tx)?;
    let docs = documents_where(&mut tx, "i.close_period = $1", &[&p])?;
    let lines = journal(&BudgetState::as_of(&events, period.last_day()), &docs, period).map_err(Refusal::Journal)?;
    let bad = imbalances(&lines);
    if !bad.is_empty() {
        return Err(StoreError::Invariant(format!("the journal of {period} does not balance: {bad:?}")));
    }
    let csv = journal_csv(&lines);
    let record = BudgetEvent::JournalExported(JournalExported {
        period,
        sha256: hex::encode(Sha256::digest(&csv)),
        lines: u32::try_from(lines.len()).expect("fewer than 4 billion journal lines"),
        date: domain::billing::period::berlin_date(now),
    });
    record.validate().map_err(Refusal::Journal)?;
    let state = BudgetState::fold(&events);
    state.admits(&record).map_err(Refusal::Journal)?;
    if !state.exported.contains_key(&period) {
        let id = Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("gpuledger.budget/journal.exported/{period}").as_bytes());
        let event = LocalEvent {
            event_id: id,
            tenant_id: NO_TENANT.to_string(),
            kind: record.kind().to_string(),
            version: BUDGET_VERSION,
            occurred_at: now,
            data: record.data(),
        };
        append_local(&mut tx, BUDGET_STREAM, &[event], now)?;
    }
    tx.commit()?;
    Ok((lines, csv))
}
