//! Reference events: finance's loads appended to `gpuledger.reference`, and the reference state
//! folded from them.

use super::*;
use crate::append::ensure_months_for;
use crate::{ItemError, Refusal, StoreError};
use chrono::{DateTime, Utc};
use domain::billing::reference::{Reference, ReferenceInput, ReferenceState, REFERENCE_VERSION};
use domain::billing::Period;
use postgres::{Client, Transaction};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeSet;
use uuid::Uuid;

/// The reference events of the ledger in order, up to a stream position (all when `None`).
pub(crate) fn reference_events(
    tx: &mut Transaction<'_>,
    upto: Option<i64>,
) -> Result<Vec<(i64, Uuid, Reference)>, StoreError> {
    let Some((sid, head)) = stream_id(tx, REFERENCE_STREAM)? else {
        return Ok(Vec::new());
    };
    let upto = upto.unwrap_or(head);
    let rows = tx.query(
        "SELECT stream_pos, event_id, kind, payload FROM ledger_events
          WHERE stream_id = $1 AND stream_pos <= $2 ORDER BY stream_pos",
        &[&sid, &upto],
    )?;
    rows.iter()
        .map(|r| {
            let kind: String = r.get(2);
            let payload: Value = r.get(3);
            let parsed = Reference::parse(&kind, &payload["data"]).map_err(|e| {
                StoreError::Invariant(format!(
                    "reference event at position {} no longer parses: {e}",
                    r.get::<_, i64>(0)
                ))
            })?;
            Ok((r.get(0), r.get(1), parsed))
        })
        .collect()
}

pub(crate) fn fold_reference(events: &[(i64, Uuid, Reference)]) -> ReferenceState {
    let mut state = ReferenceState::default();
    for (_, id, r) in events {
        state.apply(r.clone(), *id);
    }
    state
}

pub(super) fn closed_periods(tx: &mut Transaction<'_>) -> Result<BTreeSet<Period>, StoreError> {
    tx.query("SELECT period FROM billing_closes", &[])?
        .iter()
        .map(|r| Period::parse(r.get(0)).map_err(StoreError::Invariant))
        .collect()
}

/// The reference data as the ledger knows it now.
pub fn reference_state(client: &mut Client) -> Result<ReferenceState, StoreError> {
    let mut tx = client.build_transaction().read_only(true).start()?;
    let events = reference_events(&mut tx, None)?;
    tx.commit()?;
    Ok(fold_reference(&events))
}

/// What happened to one submitted reference event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedRef {
    pub event_id: Uuid,
    pub kind: &'static str,
    pub new: bool,
}

/// Parses finance's submitted items (each on its own rules), giving each its event id; the first
/// refusal names the item. Shared by reference and budget loads.
pub(crate) fn parse_items<T, E: Into<ItemError>>(
    items: &[ReferenceInput],
    parse: impl Fn(&str, &serde_json::Value) -> Result<T, E>,
) -> Result<Vec<(Uuid, T)>, StoreError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let t = parse(&item.kind, &item.data).map_err(|e| Refusal::InvalidItem {
                item: i + 1,
                event_kind: item.kind.clone(),
                source: e.into(),
            })?;
            Ok((item.event_id.unwrap_or_else(Uuid::new_v4), t))
        })
        .collect()
}

/// Whether an event id is already in the ledger (a reload of the same item).
pub(crate) fn is_known(tx: &mut Transaction<'_>, tenant: &str, id: &Uuid) -> Result<bool, StoreError> {
    Ok(tx.query_opt("SELECT 1 FROM ledger_event_ids WHERE tenant_id = $1 AND event_id = $2", &[&tenant, id])?.is_some())
}

/// Validates and appends reference events, all or none. Each is checked on its own, then against
/// the state it joins (overlapping contracts, closed periods); usage adjustments also change the
/// hourly projection in the same transaction and may not make any hour negative.
pub fn load_reference(
    client: &mut Client,
    items: &[ReferenceInput],
    now: DateTime<Utc>,
) -> Result<Vec<LoadedRef>, StoreError> {
    let parsed = parse_items(items, Reference::parse_new)?;
    ensure_months_for(client, std::iter::once(now))?;
    let mut tx = client.transaction()?;
    lock_stream(&mut tx, REFERENCE_STREAM)?;
    let mut state = fold_reference(&reference_events(&mut tx, None)?);
    let closed = closed_periods(&mut tx)?;
    let mut events = Vec::with_capacity(parsed.len());
    for (i, (id, r)) in parsed.iter().enumerate() {
        if !is_known(&mut tx, r.tenant(), id)? {
            state.admits(r, &closed).map_err(|e| Refusal::ItemConflict {
                item: i + 1,
                event_kind: r.kind(),
                source: e.into(),
            })?;
            state.apply(r.clone(), *id);
        }
        events.push(LocalEvent {
            event_id: *id,
            tenant_id: r.tenant().to_string(),
            kind: r.kind().to_string(),
            version: REFERENCE_VERSION,
            occurred_at: now,
            data: r.data(),
        });
    }
    let appended = append_local(&mut tx, REFERENCE_STREAM, &events, now)?;
    for ((_, r), a) in parsed.iter().zip(&appended) {
        if let (Reference::Adjustment(adj), true) = (r, a.new) {
            let current: Option<Decimal> = tx
                .query_opt(
                    "SELECT gpu_seconds FROM usage_hourly
                      WHERE tenant_id = $1 AND gpu_sku = $2 AND project = $3 AND hour = $4 AND mig_profile IS NULL
                        FOR UPDATE",
                    &[&adj.tenant_id, &adj.gpu_sku, &adj.project, &adj.hour],
                )?
                .map(|row| row.get(0));
            let after = current.unwrap_or_default() + adj.gpu_seconds_delta;
            if after < Decimal::ZERO {
                return Err(Refusal::NegativeHour {
                    event_id: a.event_id,
                    tenant_id: adj.tenant_id.clone(),
                    gpu_sku: adj.gpu_sku.clone(),
                    project: adj.project.clone(),
                    hour: adj.hour,
                    gpu_seconds: current.unwrap_or_default(),
                    taken: -adj.gpu_seconds_delta,
                }
                .into());
            }
            // An UPDATE when the row exists: INSERT ... ON CONFLICT would check the negative
            // delta against the CHECK constraint before finding the conflict.
            let sql = if current.is_some() {
                "UPDATE usage_hourly SET gpu_seconds = gpu_seconds + $5
                  WHERE tenant_id = $1 AND gpu_sku = $2 AND project = $3 AND hour = $4 AND mig_profile IS NULL"
            } else {
                "INSERT INTO usage_hourly (tenant_id, gpu_sku, project, hour, gpu_seconds, events) VALUES ($1, $2, $3, $4, $5, 0)"
            };
            tx.execute(sql, &[&adj.tenant_id, &adj.gpu_sku, &adj.project, &adj.hour, &adj.gpu_seconds_delta])?;
        }
    }
    tx.commit()?;
    Ok(parsed
        .iter()
        .zip(appended)
        .map(|((_, r), a)| LoadedRef { event_id: a.event_id, kind: r.kind(), new: a.new })
        .collect())
}
