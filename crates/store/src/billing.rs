//! Billing in the ledger: reference events (finance's price lists, profiles, contracts, usage
//! adjustments) appended to the stream `gpuledger.reference`; period closes and their invoices and
//! credit notes appended to `gpuledger.billing`; and the replay that re-derives every issued
//! document from the log alone and compares it byte for byte.

use crate::append::ensure_months_for;
use crate::ledger_row::{content, content_columns, Identity};
use crate::{ItemError, Refusal, StoreError};
use chrono::{DateTime, SubsecRound, Utc};
use domain::billing::close::{plan_close, recheck_set, CloseInput, CloseRecord, CLOSE_VERSION, KIND_CLOSE};
use domain::billing::invoice::{InvoiceDoc, INVOICE_VERSION, KIND_INVOICE};
use domain::billing::rating::UsageRow;
use domain::billing::reference::{Reference, ReferenceInput, ReferenceState, REFERENCE_VERSION};
use domain::billing::Period;
use domain::chain::{link, ChainRow};
use domain::projection::HourlyUsage;
use domain::usage::{UsageRecorded, LEDGER_KIND};
use postgres::{Client, IsolationLevel, Transaction};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use uuid::Uuid;

pub const REFERENCE_STREAM: &str = "gpuledger.reference";
pub const BILLING_STREAM: &str = "gpuledger.billing";
/// Closes are serialized cluster-wide by this advisory lock key.
const CLOSE_LOCK: &str = "gpuledger.billing.close";

/// An event written by gpuledger itself (not consumed from Kafka).
#[derive(Debug, Clone)]
pub struct LocalEvent {
    pub event_id: Uuid,
    pub tenant_id: String,
    pub kind: String,
    pub version: i16,
    pub occurred_at: DateTime<Utc>,
    pub data: Value,
}

impl LocalEvent {
    fn payload(&self) -> Value {
        json!({ "data": self.data })
    }
}

/// Where a local event landed, or that it was there already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub event_id: Uuid,
    pub new: bool,
    pub stream_id: i32,
    pub stream_pos: i64,
}

fn fingerprint(kind: &str, payload: &[u8]) -> Vec<u8> {
    domain::usage::fingerprint_of(&[kind.as_bytes(), b"\n", payload].concat()).to_vec()
}

/// The stream row of a local stream (made on first use), locked for this transaction.
pub(crate) fn lock_stream(tx: &mut Transaction<'_>, topic: &str) -> Result<(i32, i64, [u8; 32]), StoreError> {
    tx.execute(
        "INSERT INTO ledger_streams (topic, kafka_partition) VALUES ($1, 0) ON CONFLICT (topic, kafka_partition) DO NOTHING",
        &[&topic],
    )?;
    let row = tx.query_one(
        "SELECT stream_id, head_pos, head_hash FROM ledger_streams WHERE topic = $1 AND kafka_partition = 0 FOR UPDATE",
        &[&topic],
    )?;
    let hash: Vec<u8> = row.get(2);
    let mut head = [0u8; 32];
    head.copy_from_slice(&hash);
    Ok((row.get(0), row.get(1), head))
}

/// Appends local events to a stream, chained, in this transaction. An event id already in the
/// ledger with the same content is a duplicate (skipped); with other content it is refused.
/// The ledger partitions for the events' months must exist (`ensure_months_for`).
pub fn append_local(
    tx: &mut Transaction<'_>,
    topic: &str,
    events: &[LocalEvent],
    recorded_at: DateTime<Utc>,
) -> Result<Vec<Appended>, StoreError> {
    let (stream_id, mut pos, mut head) = lock_stream(tx, topic)?;
    let recorded_at = recorded_at.trunc_subsecs(6);
    let mut out = Vec::with_capacity(events.len());
    let mut new = 0i64;
    for e in events {
        let payload = e.payload();
        let bytes = serde_json::to_vec(&payload).expect("json");
        let print = fingerprint(&e.kind, &bytes);
        let inserted = tx.execute(
            "INSERT INTO ledger_event_ids (tenant_id, event_id, fingerprint) VALUES ($1, $2, $3)
             ON CONFLICT (tenant_id, event_id) DO NOTHING",
            &[&e.tenant_id, &e.event_id, &print],
        )?;
        if inserted == 0 {
            // A usage event's id has no fingerprint: the same id here is other content.
            let old: Option<Vec<u8>> = tx
                .query_one(
                    "SELECT fingerprint FROM ledger_event_ids WHERE tenant_id = $1 AND event_id = $2",
                    &[&e.tenant_id, &e.event_id],
                )?
                .get(0);
            if old.as_deref() != Some(print.as_slice()) {
                return Err(Refusal::EventIdReused { event_id: e.event_id, tenant_id: e.tenant_id.clone() }.into());
            }
            out.push(Appended { event_id: e.event_id, new: false, stream_id, stream_pos: 0 });
            continue;
        }
        pos += 1;
        let occurred_at = e.occurred_at.trunc_subsecs(6);
        let row = ChainRow {
            stream_id,
            stream_pos: pos,
            event_id: e.event_id,
            tenant_id: &e.tenant_id,
            kind: &e.kind,
            version: e.version,
            occurred_at,
            recorded_at,
            src_partition: Some(0),
            src_offset: None,
            payload: &bytes,
        };
        head = link(&head, &row);
        tx.execute(
            "INSERT INTO ledger_events (occurred_at, recorded_at, stream_id, stream_pos, src_offset, version, kind, tenant_id, event_id, hash, payload)
             VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8, $9, $10)",
            &[&occurred_at, &recorded_at, &stream_id, &pos, &e.version, &e.kind, &e.tenant_id, &e.event_id, &head.as_slice(), &payload],
        )?;
        new += 1;
        out.push(Appended { event_id: e.event_id, new: true, stream_id, stream_pos: pos });
    }
    tx.execute(
        "UPDATE ledger_streams SET head_pos = $2, head_hash = $3, ledgered = ledgered + $4 WHERE stream_id = $1",
        &[&stream_id, &pos, &head.as_slice(), &new],
    )?;
    Ok(out)
}

pub(crate) fn stream_id(tx: &mut Transaction<'_>, topic: &str) -> Result<Option<(i32, i64)>, StoreError> {
    Ok(tx
        .query_opt(
            "SELECT stream_id, head_pos FROM ledger_streams WHERE topic = $1 AND kafka_partition = 0",
            &[&topic],
        )?
        .map(|r| (r.get(0), r.get(1))))
}

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

fn closed_periods(tx: &mut Transaction<'_>) -> Result<BTreeSet<Period>, StoreError> {
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

/// What a close did.
#[derive(Debug, Clone)]
pub struct CloseOutcome {
    pub period: Period,
    /// The period was closed before: nothing was issued now.
    pub already_closed: bool,
    /// The documents issued by this close (or, when already closed, by the earlier close).
    pub documents: Vec<InvoiceDoc>,
}

/// Documents issued for a closing: the `period.closed` event's record and its documents' events.
fn close_events(record: &CloseRecord, close_id: Uuid, docs: &[InvoiceDoc]) -> Vec<LocalEvent> {
    let mut events: Vec<LocalEvent> = docs
        .iter()
        .map(|d| LocalEvent {
            event_id: Uuid::new_v5(&close_id, d.number.as_bytes()),
            tenant_id: d.tenant_id.clone(),
            kind: KIND_INVOICE.to_string(),
            version: INVOICE_VERSION,
            occurred_at: d.issued_at,
            data: d.to_json(),
        })
        .collect();
    events.push(LocalEvent {
        event_id: close_id,
        tenant_id: domain::billing::reference::NO_TENANT.to_string(),
        kind: KIND_CLOSE.to_string(),
        version: CLOSE_VERSION,
        occurred_at: record.issued_at,
        data: serde_json::to_value(record).expect("json"),
    });
    events
}

fn stream_names(tx: &mut Transaction<'_>) -> Result<HashMap<i32, String>, StoreError> {
    Ok(tx
        .query("SELECT stream_id, topic, kafka_partition FROM ledger_streams", &[])?
        .iter()
        .map(|r| (r.get(0), format!("{}/{}", r.get::<_, String>(1), r.get::<_, i32>(2))))
        .collect())
}

fn usage_rows(rows: Vec<postgres::Row>) -> BTreeMap<String, Vec<UsageRow>> {
    let mut out: BTreeMap<String, Vec<UsageRow>> = BTreeMap::new();
    for r in rows {
        out.entry(r.get(0)).or_default().push(UsageRow {
            sku: r.get(1),
            project: r.get(2),
            hour: r.get(3),
            gpu_seconds: r.get(4),
            mig_profile: r.get(5),
        });
    }
    out
}

/// Closes a Berlin calendar month: issues every tenant's invoice (and the credit notes and late
/// lines of earlier periods) in one transaction with the `period.closed` event. Closing a closed
/// period issues nothing. Closes are serialized; ingest goes on meanwhile: the close reads one
/// snapshot, and records each stream's head in it (the cut) so that a replay reads the same log.
pub fn close_period(client: &mut Client, period: Period, now: DateTime<Utc>) -> Result<CloseOutcome, StoreError> {
    if now < period.end() {
        return Err(Refusal::PeriodNotOver { period, ends_at: period.end() }.into());
    }
    let issued_at = now.trunc_subsecs(0);
    ensure_months_for(client, std::iter::once(issued_at))?;
    client.execute("SELECT pg_advisory_lock(hashtext($1))", &[&CLOSE_LOCK])?;
    let result = close_locked(client, period, issued_at);
    let unlock = client.execute("SELECT pg_advisory_unlock(hashtext($1))", &[&CLOSE_LOCK]);
    let outcome = result?;
    unlock?;
    Ok(outcome)
}

fn close_locked(client: &mut Client, period: Period, issued_at: DateTime<Utc>) -> Result<CloseOutcome, StoreError> {
    let mut tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).start()?;
    if tx.query_opt("SELECT 1 FROM billing_closes WHERE period = $1", &[&period.to_string()])?.is_some() {
        let documents = documents_where(&mut tx, "close_period = $1", &[&period.to_string()])?;
        tx.commit()?;
        return Ok(CloseOutcome { period, already_closed: true, documents });
    }
    // The cut: every stream's head in this snapshot.
    let cut: BTreeMap<String, i64> = tx
        .query("SELECT topic, kafka_partition, head_pos FROM ledger_streams", &[])?
        .iter()
        .map(|r| (format!("{}/{}", r.get::<_, String>(0), r.get::<_, i32>(1)), r.get(2)))
        .collect();
    let refs = fold_reference(&reference_events(&mut tx, None)?);
    let closed = closed_periods(&mut tx)?;
    let issued = documents_where(&mut tx, "true", &[])?;
    let mut input = CloseInput { refs, closed, issued, ..CloseInput::default() };
    let current = tx.query(
        "SELECT tenant_id, gpu_sku, project, hour, gpu_seconds, mig_profile FROM usage_hourly WHERE hour >= $1 AND hour < $2",
        &[&period.start(), &period.end()],
    )?;
    for (tenant, rows) in usage_rows(current) {
        input.usage.entry(tenant).or_default().insert(period, rows);
    }
    // Earlier closed periods: re-rate those whose usage changed since they were billed.
    if let Some(first) = input.closed.iter().next().copied().filter(|f| *f < period) {
        let totals = tx.query(
            "SELECT tenant_id, to_char(hour AT TIME ZONE 'Europe/Berlin', 'YYYY-MM'), gpu_sku, sum(gpu_seconds)
               FROM usage_hourly WHERE hour >= $1 AND hour < $2 GROUP BY 1, 2, 3",
            &[&first.start(), &period.start()],
        )?;
        let mut seconds = BTreeMap::new();
        for r in totals {
            let p = Period::parse(r.get(1)).map_err(StoreError::Invariant)?;
            seconds.insert((r.get::<_, String>(0), p, r.get::<_, String>(2)), r.get::<_, Decimal>(3));
        }
        let recheck = recheck_set(&seconds, &input.closed, &input.issued);
        for (tenant, q) in &recheck {
            let rows = tx.query(
                "SELECT tenant_id, gpu_sku, project, hour, gpu_seconds, mig_profile FROM usage_hourly
                  WHERE tenant_id = $1 AND hour >= $2 AND hour < $3",
                &[tenant, &q.start(), &q.end()],
            )?;
            for (t, rows) in usage_rows(rows) {
                input.usage.entry(t).or_default().insert(*q, rows);
            }
        }
        input.recheck = Some(recheck);
    } else {
        input.recheck = Some(BTreeSet::new());
    }
    let close_id = Uuid::new_v4();
    let docs = plan_close(period, issued_at, close_id, &input).map_err(Refusal::Close)?;
    let record = CloseRecord { period, issued_at, cut, documents: docs.iter().map(|d| d.number.clone()).collect() };
    let appended = append_local(&mut tx, BILLING_STREAM, &close_events(&record, close_id, &docs), issued_at)?;
    let close_at = appended.last().expect("the close event");
    tx.execute(
        "INSERT INTO billing_closes (period, event_id, closed_at, stream_id, stream_pos) VALUES ($1, $2, $3, $4, $5)",
        &[&period.to_string(), &close_id, &issued_at, &close_at.stream_id, &close_at.stream_pos],
    )?;
    for (d, a) in docs.iter().zip(&appended) {
        let series_no: i32 = d.number.rsplit('-').next().and_then(|n| n.parse().ok()).expect("numbered");
        tx.execute(
            "INSERT INTO invoices (number, series, series_no, type_code, tenant_id, period, close_period, issued_at,
                                   net_total, vat_total, gross_total, event_id, stream_id, stream_pos)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            &[
                &d.number,
                &d.series,
                &series_no,
                &(d.type_code as i16),
                &d.tenant_id,
                &d.period.to_string(),
                &period.to_string(),
                &issued_at,
                &d.net_total.amount(),
                &d.vat_total.amount(),
                &d.gross_total.amount(),
                &a.event_id,
                &a.stream_id,
                &a.stream_pos,
            ],
        )?;
    }
    tx.commit()?;
    Ok(CloseOutcome { period, already_closed: false, documents: docs })
}

/// Issued documents (from their ledger rows) whose index row matches `filter`, in issue order.
pub(crate) fn documents_where(
    tx: &mut Transaction<'_>,
    filter: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Vec<InvoiceDoc>, StoreError> {
    let sql = format!(
        "SELECT e.payload FROM invoices i JOIN ledger_events e ON e.stream_id = i.stream_id AND e.stream_pos = i.stream_pos
          WHERE e.kind = '{KIND_INVOICE}' AND {filter} ORDER BY i.stream_pos"
    );
    tx.query(&sql, params)?
        .iter()
        .map(|r| {
            let payload: Value = r.get(0);
            InvoiceDoc::from_json(&payload["data"]).map_err(StoreError::Invariant)
        })
        .collect()
}

/// Issued documents, optionally of one close period and/or one tenant, in issue order.
pub fn documents(
    client: &mut Client,
    close_period: Option<Period>,
    tenant: Option<&str>,
) -> Result<Vec<InvoiceDoc>, StoreError> {
    let mut tx = client.build_transaction().read_only(true).start()?;
    let p = close_period.map(|p| p.to_string());
    let docs = documents_where(
        &mut tx,
        "($1::text IS NULL OR i.close_period = $1) AND ($2::text IS NULL OR i.tenant_id = $2)",
        &[&p, &tenant],
    )?;
    tx.commit()?;
    Ok(docs)
}

/// One close, re-derived from the log.
#[derive(Debug, Clone)]
pub struct CloseCheck {
    pub period: Period,
    pub documents: usize,
    /// Differences found (empty: every document is byte-identical).
    pub differences: Vec<String>,
}

/// Replays every period close from the log alone: the usage events and adjustments, reference
/// events and earlier documents inside its recorded cut, folded and rated again; each document
/// must come out byte-identical to the one issued.
pub fn verify_closes(client: &mut Client) -> Result<Vec<CloseCheck>, StoreError> {
    let mut tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start()?;
    let names = stream_names(&mut tx)?;
    let Some((billing_sid, _)) = stream_id(&mut tx, BILLING_STREAM)? else {
        tx.commit()?;
        return Ok(Vec::new());
    };
    let reference = reference_events(&mut tx, None)?;
    let billing = tx.query(
        "SELECT stream_pos, event_id, kind, payload FROM ledger_events WHERE stream_id = $1 ORDER BY stream_pos",
        &[&billing_sid],
    )?;
    let params: [&(dyn postgres::types::ToSql + Sync); 1] = [&LEDGER_KIND];
    let mut usage: Vec<(String, i64, UsageRecorded)> = Vec::new();
    {
        use postgres::fallible_iterator::FallibleIterator;
        let mut rows = tx.query_raw(
            &format!(
                "SELECT stream_id, stream_pos, event_id, tenant_id, occurred_at, {} FROM ledger_events WHERE kind = $1",
                content_columns("")
            ),
            params,
        )?;
        while let Some(r) = rows.next()? {
            let (event_id, tenant): (Uuid, String) = (r.get(2), r.get(3));
            let e = content(&r, 5, Identity { event_id, tenant_id: &tenant, occurred_at: r.get(4) })?
                .into_usage(event_id)?;
            usage.push((names[&r.get::<_, i32>(0)].clone(), r.get(1), e));
        }
    }
    tx.commit()?;
    let ref_name = format!("{REFERENCE_STREAM}/0");
    let billing_name = format!("{BILLING_STREAM}/0");

    let (docs_by_pos, stored_json, closes) = parse_billing_rows(billing.iter())?;

    let mut checks = Vec::new();
    for (_, close_id, rec) in &closes {
        let upto = |name: &str| rec.cut.get(name).copied().unwrap_or(0);
        let refs_in: Vec<(i64, Uuid, Reference)> =
            reference.iter().filter(|(pos, _, _)| *pos <= upto(&ref_name)).cloned().collect();
        let mut hourly = HourlyUsage::default();
        for (stream, pos, e) in &usage {
            if *pos <= upto(stream) {
                hourly.apply(e);
            }
        }
        for (_, _, r) in &refs_in {
            if let Reference::Adjustment(a) = r {
                hourly.adjust(a);
            }
        }
        let issued: Vec<InvoiceDoc> =
            docs_by_pos.iter().filter(|(pos, _)| *pos <= upto(&billing_name)).map(|(_, d)| d.clone()).collect();
        let closed: BTreeSet<Period> =
            closes.iter().filter(|(pos, _, _)| *pos <= upto(&billing_name)).map(|(_, _, r)| r.period).collect();
        let differences = match replan_close(rec, *close_id, &hourly, fold_reference(&refs_in), closed, issued) {
            Err(e) => vec![format!("the replay cannot close {}: {e}", rec.period)],
            Ok(replayed) => compare_replayed(rec, &replayed, &stored_json),
        };
        checks.push(CloseCheck { period: rec.period, documents: rec.documents.len(), differences });
    }
    Ok(checks)
}

/// Plans a recorded close again from what the log held at its cut: `hourly` is the usage (events
/// and adjustments) inside the cut, `refs` the reference state, `closed` and `issued` the closes and
/// documents before it. The same rating inputs as the close itself (`close_locked`) read.
pub(crate) fn replan_close(
    rec: &CloseRecord,
    close_id: Uuid,
    hourly: &HourlyUsage,
    refs: ReferenceState,
    closed: BTreeSet<Period>,
    issued: Vec<InvoiceDoc>,
) -> Result<Vec<InvoiceDoc>, String> {
    let mut input = CloseInput { refs, closed, issued, ..CloseInput::default() };
    let mut seconds: BTreeMap<(String, Period, String), Decimal> = BTreeMap::new();
    let mut by_period: BTreeMap<(String, Period), Vec<UsageRow>> = BTreeMap::new();
    for (k, v) in &hourly.rows {
        let p = Period::of(k.hour);
        if p > rec.period {
            continue;
        }
        if p < rec.period {
            *seconds.entry((k.tenant_id.clone(), p, k.gpu_sku.clone())).or_default() += v.gpu_seconds;
        }
        by_period.entry((k.tenant_id.clone(), p)).or_default().push(UsageRow {
            sku: k.gpu_sku.clone(),
            project: k.project.clone(),
            hour: k.hour,
            gpu_seconds: v.gpu_seconds,
            mig_profile: k.mig_profile.clone(),
        });
    }
    let recheck = recheck_set(&seconds, &input.closed, &input.issued);
    for ((t, p), rows) in by_period {
        if p == rec.period || recheck.contains(&(t.clone(), p)) {
            input.usage.entry(t).or_default().insert(p, rows);
        }
    }
    input.recheck = Some(recheck);
    plan_close(rec.period, rec.issued_at, close_id, &input).map_err(|e| e.to_string())
}

/// The replayed documents of a close against the record (numbers) and the ledger's bytes of each
/// document (`stored`: the `data` of its `invoice.issued` event, by number).
pub(crate) fn compare_replayed(
    rec: &CloseRecord,
    replayed: &[InvoiceDoc],
    stored: &BTreeMap<String, Value>,
) -> Vec<String> {
    let mut differences = Vec::new();
    let numbers: Vec<&str> = replayed.iter().map(|d| d.number.as_str()).collect();
    if numbers != rec.documents.iter().map(String::as_str).collect::<Vec<_>>() {
        differences.push(format!("issued {:?}, the replay issues {:?}", rec.documents, numbers));
    }
    for d in replayed {
        // The ledger's bytes of the document against the replay's.
        match stored.get(&d.number) {
            None => differences.push(format!("{} is not in the ledger", d.number)),
            Some(s) if serde_json::to_vec(s).expect("json") != d.canonical_bytes() => differences.push(format!(
                "{} differs from its replay at {}",
                d.number,
                first_difference(s, &d.to_json())
            )),
            Some(_) => {}
        }
    }
    differences
}

/// The billing stream's documents (by stream position), their stored JSON (by number) and its
/// closes (position, event id, record), from rows of (stream_pos, event_id, kind, payload).
pub(crate) type BillingRows = (Vec<(i64, InvoiceDoc)>, BTreeMap<String, Value>, Vec<(i64, Uuid, CloseRecord)>);

pub(crate) fn parse_billing_rows<'a>(rows: impl Iterator<Item = &'a postgres::Row>) -> Result<BillingRows, StoreError> {
    let mut docs_by_pos: Vec<(i64, InvoiceDoc)> = Vec::new();
    let mut stored_json: BTreeMap<String, Value> = BTreeMap::new();
    let mut closes: Vec<(i64, Uuid, CloseRecord)> = Vec::new();
    for r in rows {
        let kind: String = r.get(2);
        let payload: Value = r.get(3);
        if kind == KIND_INVOICE {
            let doc = InvoiceDoc::from_json(&payload["data"]).map_err(StoreError::Invariant)?;
            stored_json.insert(doc.number.clone(), payload["data"].clone());
            docs_by_pos.push((r.get(0), doc));
        } else if kind == KIND_CLOSE {
            let rec: CloseRecord = serde_json::from_value(payload["data"].clone())
                .map_err(|e| StoreError::Invariant(format!("period.closed event does not parse: {e}")))?;
            closes.push((r.get(0), r.get(1), rec));
        }
    }
    Ok((docs_by_pos, stored_json, closes))
}

/// The JSON path of the first difference between two values (for reports).
pub(crate) fn first_difference(a: &Value, b: &Value) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) if p == q => {}
                    (Some(p), Some(q)) => return format!(".{k}{}", first_difference(p, q)),
                    _ => return format!(".{k} (present on one side only)"),
                }
            }
            String::new()
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                if p != q {
                    return format!("[{i}]{}", first_difference(p, q));
                }
            }
            String::new()
        }
        _ => format!(": {a} vs {b}"),
    }
}
