//! The benchmark harnesses of docs/benchmarks.md, outside the product crates: `ingest` (PostgreSQL's
//! COPY ceiling and a naive writer), `replay` (a large ledger written directly, and the floors of
//! the audit replay), `close` (a month of hourly usage written directly, the close beside its
//! floor), `api` (concurrent HTTP clients beside the same SQL through a pool). The
//! `gpuledger-bench` binary (src/main.rs) runs them.

pub mod api;
pub mod close;
pub mod ingest;
pub mod replay;

use postgres::Client;

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
