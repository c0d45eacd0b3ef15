//! The collector's durable cursor (migration 0014): the meter's state, the events derived from
//! it that Kafka has not acknowledged yet (the outbox), and the coverage of every closed run —
//! all three written in one transaction, so a collector killed at any moment resumes from a
//! state whose events are either acknowledged or still in the outbox.

use domain::meter::event::{instant, Class, Metered};
use domain::meter::timeline::MeterState;
use postgres::Client;
use uuid::Uuid;

/// An event waiting for Kafka: its id, its key (the tenant) and its bytes.
pub struct Outgoing {
    pub event_id: Uuid,
    pub key: String,
    pub payload: Vec<u8>,
}

/// The state of `source`, or a fresh one.
pub fn load(db: &mut Client, source: &str) -> Result<MeterState, crate::CollectError> {
    let row = db.query_opt("SELECT state FROM collector_cursors WHERE source = $1", &[&source])?;
    match row {
        None => Ok(MeterState::default()),
        Some(r) => {
            let state: serde_json::Value = r.get(0);
            serde_json::from_value(state).map_err(|e| crate::CollectError::Cursor(e.to_string()))
        }
    }
}

/// Writes the new state, its events into the outbox and its runs into the coverage table, in
/// one transaction. Repeats (a replayed round) are no-ops by key.
pub fn commit(
    db: &mut Client,
    source: &str,
    state: &MeterState,
    outgoing: &[Outgoing],
    metered: &[Metered],
) -> Result<(), crate::CollectError> {
    let state = serde_json::to_value(state).map_err(|e| crate::CollectError::Cursor(e.to_string()))?;
    let mut tx = db.transaction()?;
    tx.execute(
        "INSERT INTO collector_cursors (source, state) VALUES ($1, $2)
         ON CONFLICT (source) DO UPDATE SET state = excluded.state, updated_at = now()",
        &[&source, &state],
    )?;
    let outbox = tx.prepare(
        "INSERT INTO collector_outbox (source, event_id, kafka_key, payload) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
    )?;
    for o in outgoing {
        tx.execute(&outbox, &[&source, &o.event_id, &o.key, &o.payload])?;
    }
    let coverage = tx.prepare(
        "INSERT INTO collector_coverage (source, device, interval_start, interval_end, class, gpu_sku,
                model_name, node, namespace, tenant_id, gpu_seconds, energy_wh, event_id, mig_profile)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING",
    )?;
    for m in metered {
        let tenant = match &m.class {
            Class::Billed { tenant_id } => Some(tenant_id.as_str()),
            _ => None,
        };
        let namespace = match &m.run.held {
            domain::meter::timeline::Held::By(w) => Some(w.namespace.as_str()),
            _ => None,
        };
        let event_id: Option<Uuid> = m.event.as_ref().and_then(|e| e["id"].as_str()).and_then(|s| s.parse().ok());
        tx.execute(
            &coverage,
            &[
                &source,
                &m.run.key.to_string(),
                &instant(m.run.start_ms),
                &instant(m.run.end_ms),
                &m.class.name(),
                &m.sku,
                &m.run.observation.model_name,
                &m.run.observation.node,
                &namespace,
                &tenant,
                &m.gpu_seconds,
                &m.run.energy_wh,
                &event_id,
                &m.run.observation.mig_profile,
            ],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// The events of `source` still waiting for Kafka.
pub fn outbox(db: &mut Client, source: &str) -> Result<Vec<Outgoing>, crate::CollectError> {
    let rows = db.query(
        "SELECT event_id, kafka_key, payload FROM collector_outbox WHERE source = $1 ORDER BY event_id",
        &[&source],
    )?;
    Ok(rows.iter().map(|r| Outgoing { event_id: r.get(0), key: r.get(1), payload: r.get(2) }).collect())
}

/// Forgets events Kafka acknowledged.
pub fn acknowledged(db: &mut Client, source: &str, ids: &[Uuid]) -> Result<(), crate::CollectError> {
    db.execute("DELETE FROM collector_outbox WHERE source = $1 AND event_id = ANY($2)", &[&source, &ids])?;
    Ok(())
}
