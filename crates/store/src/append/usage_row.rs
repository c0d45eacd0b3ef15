//! A usage row as it goes into `ledger_events`: its typed columns, its place in its stream and
//! its chained hash, written by binary COPY. The ingester and the benchmarks' ceiling write rows
//! through it, so both write the same rows.

use crate::copy::BinaryCopy;
use crate::StoreError;
use chrono::{DateTime, Utc};
use domain::usage::{UsageRecorded, LEDGER_KIND, LEDGER_VERSION};
use postgres::types::{ToSql, Type};

/// Canonical JSON bytes sent as `jsonb` in binary COPY: a version byte, then the text.
#[derive(Debug)]
pub(crate) struct RawJsonb<'a>(pub(crate) &'a [u8]);

impl ToSql for RawJsonb<'_> {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&[1]);
        out.extend_from_slice(self.0);
        Ok(postgres::types::IsNull::No)
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }
    postgres::types::to_sql_checked!();
}

/// One usage row as it goes into `ledger_events`: the event in typed columns (no payload), its
/// place in its stream and its chained hash.
pub struct UsageRow<'a> {
    pub event: &'a UsageRecorded,
    pub recorded_at: DateTime<Utc>,
    pub stream_id: i32,
    pub stream_pos: i64,
    pub src_offset: i64,
    pub hash: &'a [u8; 32],
}

/// The columns of a usage row, in the order of [`UsageRow::with_values`] and [`USAGE_TYPES`].
pub const USAGE_COLUMNS: &str = "occurred_at, recorded_at, stream_id, stream_pos, src_offset, version, kind, \
    tenant_id, event_id, hash, gpu_id, interval_end, gpu_seconds, gpu_sku, node, project, job, labels, source, \
    mig_instance, mig_profile, energy_wh";

pub const USAGE_TYPES: [Type; 22] = [
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::INT4,
    Type::INT8,
    Type::INT8,
    Type::INT2,
    Type::TEXT,
    Type::TEXT,
    Type::UUID,
    Type::BYTEA,
    Type::UUID,
    Type::TIMESTAMPTZ,
    Type::NUMERIC,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::JSONB,
    Type::TEXT,
    Type::INT2,
    Type::TEXT,
    Type::NUMERIC,
];

impl UsageRow<'_> {
    /// Calls `f` with the row's values in [`USAGE_COLUMNS`] order.
    pub fn with_values<R>(&self, f: impl FnOnce(&[&(dyn ToSql + Sync)]) -> R) -> R {
        let e = self.event;
        let labels =
            (!e.labels.is_empty()).then(|| serde_json::to_vec(&e.labels).expect("a map of strings always serializes"));
        let labels = labels.as_deref().map(RawJsonb);
        let seconds = e.gpu_seconds.value();
        let mig_instance = e.mig.as_ref().map(|m| i16::from(m.instance));
        let mig_profile = e.mig.as_ref().map(|m| m.profile.as_str());
        let energy_wh = e.energy_wh.map(|w| w.value());
        f(&[
            &e.interval_start,
            &self.recorded_at,
            &self.stream_id,
            &self.stream_pos,
            &self.src_offset,
            &LEDGER_VERSION,
            &LEDGER_KIND,
            &e.tenant_id,
            &e.event_id,
            &self.hash.as_slice(),
            &e.gpu_id,
            &e.interval_end,
            &seconds,
            &e.gpu_sku,
            &e.node,
            &e.project,
            &e.job,
            &labels,
            &e.source,
            &mig_instance,
            &mig_profile,
            &energy_wh,
        ])
    }
}

/// The binary COPY of usage rows into `ledger_events`; the ingester and the benchmarks' ceiling
/// (crates/bench) write rows through it, so both write the same rows. It writes what it is given:
/// the checks of [`append_batch`](super::append_batch) are the caller's.
pub struct UsageCopy<'a>(BinaryCopy<'a>);

impl<'a> UsageCopy<'a> {
    pub fn start(tx: &'a mut postgres::Transaction<'_>) -> Result<UsageCopy<'a>, StoreError> {
        Ok(UsageCopy(BinaryCopy::start(
            tx,
            &format!("COPY ledger_events ({USAGE_COLUMNS}) FROM STDIN BINARY"),
            &USAGE_TYPES,
        )?))
    }

    pub fn write(&mut self, r: &UsageRow<'_>) -> Result<(), StoreError> {
        r.with_values(|v| self.0.write(v))
    }

    pub fn finish(self) -> Result<u64, StoreError> {
        self.0.finish()
    }
}
