//! The benchmark harnesses of docs/benchmarks.md, outside the product crates: `ingest` (PostgreSQL's
//! COPY ceiling and a naive writer), `replay` (a large ledger written directly, and the floors of
//! the audit replay), `close` (a month of hourly usage written directly, the close beside its
//! floor), `api` (concurrent HTTP clients beside the same SQL through a pool), `http_ingest`
//! (`POST /v1/events` beside producing the same events straight to Kafka). The
//! `gpuledger-bench` binary (src/main.rs) runs them.

pub mod api;
pub mod close;
pub mod collect;
pub mod http_ingest;
pub mod ingest;
pub mod replay;

use chrono::{DateTime, Utc};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use postgres::Client;
use rust_decimal::Decimal;

/// The benchmarks that write (copy, naive, replay, close) write straight into the ledger and
/// its projection, with no Kafka stream, commit clock or claims behind them: they refuse any
/// database that already holds ledger rows or hourly usage, so that they are never pointed at a
/// real ledger by mistake.
pub fn require_empty(client: &mut Client) -> anyhow::Result<()> {
    let used: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM ledger_events) OR EXISTS (SELECT 1 FROM usage_hourly)", &[])?
        .get(0);
    if used {
        anyhow::bail!(
            "this benchmark writes straight into the ledger and needs an empty, migrated database of its own; \
             this one already holds ledger rows or hourly usage (point --database-url elsewhere)"
        );
    }
    Ok(())
}

/// Writes hourly usage `(tenant, sku, project, hour, gpu_seconds, events)` into `usage_hourly`,
/// in one transaction, through a scratch table: PostgreSQL refuses COPY into a table with
/// row-level security. Returns the rows written.
pub fn write_hourly<T: AsRef<str>, S: AsRef<str>, P: AsRef<str>>(
    client: &mut Client,
    rows: impl IntoIterator<Item = (T, S, P, DateTime<Utc>, Decimal, i64)>,
) -> anyhow::Result<u64> {
    let mut tx = client.transaction()?;
    tx.batch_execute("CREATE TEMP TABLE bench_hourly (LIKE usage_hourly) ON COMMIT DROP")?;
    let sink =
        tx.copy_in("COPY bench_hourly (tenant_id, gpu_sku, project, hour, gpu_seconds, events) FROM STDIN BINARY")?;
    let mut w = BinaryCopyInWriter::new(
        sink,
        &[Type::TEXT, Type::TEXT, Type::TEXT, Type::TIMESTAMPTZ, Type::NUMERIC, Type::INT8],
    );
    for (tenant, sku, project, hour, seconds, events) in rows {
        w.write(&[&tenant.as_ref(), &sku.as_ref(), &project.as_ref(), &hour, &seconds, &events])?;
    }
    let written = w.finish()?;
    tx.batch_execute("INSERT INTO usage_hourly SELECT * FROM bench_hourly")?;
    tx.commit()?;
    Ok(written)
}
