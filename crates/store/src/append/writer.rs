//! A writer: its two connections, the monthly partitions it knows to exist, and the commit log
//! it shares with the other writers of its process.

use super::commit::CommitLog;
use super::months::PartitionCache;
use super::{append_batch, AppendOutcome, PartitionBatch};
use crate::StoreError;
use chrono::{DateTime, Utc};
use postgres::Client;
use std::sync::Arc;

/// A writer's two connections: `db` for its transactions, `check` to read, at commit time, what
/// other writers committed (a second session sees only committed rows, none of this batch's).
pub struct LedgerWriter {
    pub db: Client,
    pub(super) check: Client,
    pub(super) cache: PartitionCache,
    /// Whether gpu_occupancy holds intervals from before migration 0005 (read once: nothing
    /// writes it any more).
    pub(super) legacy: Option<bool>,
    /// What this process's writers committed (see [`CommitLog`]).
    pub(super) commits: Arc<CommitLog>,
    /// The SKU catalogue, read again when the reference stream grows.
    pub(super) catalogue: super::catalogue::CatalogueCache,
}

impl LedgerWriter {
    /// A writer with a commit log of its own; see [`LedgerWriter::with_commit_log`].
    pub fn new(db: Client, check: Client) -> LedgerWriter {
        LedgerWriter {
            db,
            check,
            cache: PartitionCache::default(),
            legacy: None,
            commits: Arc::default(),
            catalogue: Default::default(),
        }
    }

    /// Shares one commit log among the writers of a process (and a writer's reconnections), so
    /// that each checks the others' commits in memory.
    pub fn with_commit_log(mut self, commits: Arc<CommitLog>) -> LedgerWriter {
        self.commits = commits;
        self
    }

    /// Starts again on new connections (the old ones were lost), still sharing its commit log.
    pub fn reconnect(&mut self, db: Client, check: Client) {
        let commits = self.commits.clone();
        *self = LedgerWriter::new(db, check).with_commit_log(commits);
    }

    /// Either connection lost: open both again.
    pub fn is_closed(&self) -> bool {
        self.db.is_closed() || self.check.is_closed()
    }

    /// Forgets which monthly partitions are known to exist, so that the next append ensures them
    /// again (a month detached or dropped by an operator meanwhile is created anew).
    pub fn forget_partitions(&mut self) {
        self.cache = PartitionCache::default();
    }

    /// Whether gpu_occupancy holds intervals from before migration 0005; asked once.
    pub(super) fn legacy(&mut self) -> Result<bool, StoreError> {
        if let Some(l) = self.legacy {
            return Ok(l);
        }
        let l: bool = self.db.query_one("SELECT EXISTS (SELECT 1 FROM gpu_occupancy)", &[])?.get(0);
        Ok(*self.legacy.insert(l))
    }

    /// See [`append_batch`].
    pub fn append(
        &mut self,
        owner: &str,
        batch: &[PartitionBatch],
        recorded_at: DateTime<Utc>,
    ) -> Result<AppendOutcome, StoreError> {
        append_batch(self, owner, batch, recorded_at)
    }
}
