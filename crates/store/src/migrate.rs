//! Migrations are plain SQL files in `migrations/`, compiled into the binary, applied in order,
//! each once, each in its own transaction, recorded with a checksum in `schema_migrations`.

use crate::StoreError;
use postgres::{Client, NoTls};
use sha2_free::checksum;

/// The migrations, in order. Adding a file means adding a line here.
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_ledger", include_str!("../../../migrations/0001_ledger.sql")),
    ("0002_billing", include_str!("../../../migrations/0002_billing.sql")),
    ("0003_api", include_str!("../../../migrations/0003_api.sql")),
    ("0004_usage_notify", include_str!("../../../migrations/0004_usage_notify.sql")),
    ("0005_compact_usage", include_str!("../../../migrations/0005_compact_usage.sql")),
    ("0006_writer_reads_migrations", include_str!("../../../migrations/0006_writer_reads_migrations.sql")),
    ("0007_commit_clock", include_str!("../../../migrations/0007_commit_clock.sql")),
    ("0008_sessions", include_str!("../../../migrations/0008_sessions.sql")),
    ("0009_invoice_guard", include_str!("../../../migrations/0009_invoice_guard.sql")),
    ("0011_runtime_roles", include_str!("../../../migrations/0011_runtime_roles.sql")),
    ("0012_ingest", include_str!("../../../migrations/0012_ingest.sql")),
    ("0013_meter_event", include_str!("../../../migrations/0013_meter_event.sql")),
    ("0014_collect", include_str!("../../../migrations/0014_collect.sql")),
    ("0015_http_ingest", include_str!("../../../migrations/0015_http_ingest.sql")),
    ("0016_trust", include_str!("../../../migrations/0016_trust.sql")),
    ("0017_mig_hourly", include_str!("../../../migrations/0017_mig_hourly.sql")),
    ("0018_coverage_report", include_str!("../../../migrations/0018_coverage_report.sql")),
];

/// The migration that lets `gpuledger_writer` read `schema_migrations` (see `check_migrated`).
const WRITER_READS_MIGRATIONS: &str = "0006_writer_reads_migrations";

mod sha2_free {
    /// FNV-1a 64: a change detector for migration text, not a security boundary.
    pub fn checksum(text: &str) -> i64 {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in text.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h as i64
    }
}

/// An applied migration must still be the text that was applied.
fn unchanged(name: &str, sql: &str, stored: i64) -> Result<(), StoreError> {
    if stored == checksum(sql) {
        Ok(())
    } else {
        Err(StoreError::MigrationChanged { name: name.to_string() })
    }
}

pub fn connect(url: &str) -> Result<Client, StoreError> {
    Ok(Client::connect(url, NoTls)?)
}

/// Applies every migration not applied yet. Safe to run again and concurrently (advisory lock).
/// Returns the names applied by this call.
pub fn migrate(client: &mut Client) -> Result<Vec<String>, StoreError> {
    client.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             name text PRIMARY KEY,
             checksum bigint NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )?;
    let mut applied = Vec::new();
    for (name, sql) in MIGRATIONS {
        let mut tx = client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock(hashtext('gpuledger.migrate'))", &[])?;
        let row = tx.query_opt("SELECT checksum FROM schema_migrations WHERE name = $1", &[name])?;
        match row {
            Some(row) => unchanged(name, sql, row.get(0))?,
            None => {
                tx.batch_execute(sql)?;
                tx.execute("INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)", &[name, &checksum(sql)])?;
                applied.push(name.to_string());
            }
        }
        tx.commit()?;
    }
    Ok(applied)
}

/// Refuses to run on a database this binary's migrations were not (all) applied to, naming the
/// first one missing, instead of failing later on a missing table or column. Works as the login
/// role that migrated and as `gpuledger_writer` (after migration 0006).
pub fn check_migrated(client: &mut Client) -> Result<(), StoreError> {
    let applied: Vec<(String, i64)> = match client.query("SELECT name, checksum FROM schema_migrations", &[]) {
        Ok(rows) => rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
        Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_TABLE) => Vec::new(),
        // The writer role reads the table only once the migration granting it was applied.
        Err(e) if e.code() == Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            return Err(StoreError::NotMigrated { name: WRITER_READS_MIGRATIONS.to_string() })
        }
        Err(e) => return Err(e.into()),
    };
    for (name, sql) in MIGRATIONS {
        match applied.iter().find(|(n, _)| n == name) {
            None => return Err(StoreError::NotMigrated { name: name.to_string() }),
            Some((_, sum)) => unchanged(name, sql, *sum)?,
        }
    }
    Ok(())
}

/// Refuses to run on a cluster that could lose committed ledger rows.
pub fn check_durability(client: &mut Client) -> Result<(), StoreError> {
    for name in ["fsync", "synchronous_commit", "full_page_writes"] {
        let value: String = client.query_one(&format!("SHOW {name}"), &[])?.get(0);
        // synchronous_commit = local / remote_write / remote_apply still flush locally.
        let durable = if name == "synchronous_commit" { value != "off" } else { value == "on" };
        if !durable {
            return Err(StoreError::NotDurable { name: name.to_string(), value });
        }
    }
    Ok(())
}
