//! The PostgreSQL adapter: applies the migrations, appends validated events to the ledger
//! exactly once (with their quarantined neighbours and the new Kafka offsets, in one transaction),
//! fences ingesters that lost a partition, and reads the ledger back for checks and rebuilds.

pub mod append;
pub mod audit;
pub mod billing;
pub mod billing_index;
pub mod budget;
mod copy;
pub mod coverage;
pub mod ledger_row;
pub mod migrate;
pub mod read;
pub mod refusal;
pub mod replay;
pub mod roles;
pub mod tokens;

pub use append::{append_batch, claim_partitions, AppendOutcome, BatchCounts, Claim, InMessage, PartitionBatch};
pub use migrate::{check_durability, check_migrated, connect, migrate};
pub use refusal::{ItemError, Refusal, RefusalKind};

/// Errors from the database. Whether to retry is a property of the error, not of the caller.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {}", db_message(.0))]
    Db(#[from] postgres::Error),
    #[error("migration {name} was changed after it was applied")]
    MigrationChanged { name: String },
    #[error("the database lacks migration {name}; run `gpuledger migrate` first")]
    NotMigrated { name: String },
    #[error("durability setting {name} is {value}; the ledger needs it on")]
    NotDurable { name: String, value: String },
    /// Refused input (a clear message for the person who sent it, and its kind: whose fault it
    /// is); nothing was written. Boxed: it is the largest variant, and errors are rare.
    #[error(transparent)]
    Refused(Box<Refusal>),
    /// A command that must not run with such rights was given a login that has them.
    #[error("the database login {role} {why}; this command runs as an unprivileged role (docs/operations.md, \"Database roles\")")]
    Privileged { role: String, why: &'static str },
    #[error("ledger invariant broken: {0}")]
    Invariant(String),
    /// Another writer committed GPU time the batch also claims, while the batch was written; it
    /// was rolled back and is decided again (see `append::append_batch`).
    #[error("another writer's commit overlapped the batch")]
    Raced,
}

/// The database's own words for an error, for logs and warnings: `postgres::Error` displays only
/// "db error" and keeps the server's message (and its SQLSTATE) underneath.
pub fn db_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut m = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(detail) = db.detail() {
                m.push_str(&format!(" (detail: {detail})"));
            }
            m
        }
        None => {
            let mut parts = vec![e.to_string()];
            let mut next = std::error::Error::source(e);
            while let Some(c) = next {
                parts.push(c.to_string());
                next = c.source();
            }
            parts.join(": ")
        }
    }
}

impl From<Refusal> for StoreError {
    fn from(r: Refusal) -> StoreError {
        StoreError::Refused(Box::new(r))
    }
}

impl StoreError {
    /// The database's message when it refused the data itself: a data exception (class 22), an
    /// integrity violation other than a duplicate key (class 23) or a program limit (class 54,
    /// e.g. a value too large for an index). Such an error follows the data, not the moment: it
    /// comes back on every retry of the same rows.
    pub fn refusal(&self) -> Option<String> {
        let StoreError::Db(e) = self else { return None };
        let db = e.as_db_error()?;
        let code = db.code().code();
        let refused = code.starts_with("22") || (code.starts_with("23") && code != "23505") || code.starts_with("54");
        refused.then(|| format!("{code}: {}", db.message()))
    }

    /// Transient: a lost connection, a restart, a deadlock or a serialization failure, or a race
    /// on an event id with another writer. Retrying the same batch is correct for all of them.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Db(e) => {
                if e.is_closed() {
                    return true;
                }
                match e.code() {
                    None => true, // i/o error, connection refused, ...
                    Some(code) => {
                        let c = code.code();
                        c.starts_with("08") // connection exception
                            || c.starts_with("57") // operator intervention (admin shutdown)
                            || c.starts_with("53") // insufficient resources: disk full, out of memory, too many connections
                            || c.starts_with("58") // system error: an I/O error of the server
                            || c == "25006" // read-only transaction: a standby during a failover
                            || c == "40001" // serialization failure
                            || c == "40P01" // deadlock detected
                            || c == "23505" // unique violation: another writer took an event id first
                            || c == "55P03" // lock not available
                    }
                }
            }
            StoreError::Raced => true,
            _ => false,
        }
    }
}
