//! What an append reports: the counts of a committed batch, how its commit was checked, or the
//! fences that refused it.

use domain::usage::RejectionCode;

/// How a batch was checked, at commit time, against what other writers committed meanwhile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CommitCheck {
    /// Decided holding the commit lock from the start: nothing to check.
    #[default]
    Serial,
    /// Every commit since its look at the ledger was this process's: checked in memory.
    InMemory,
    /// Some were not (another process's, or forgotten): the GPU-time index was probed.
    Probed,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchCounts {
    pub ledgered: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub by_reason: Vec<(RejectionCode, u64)>,
    /// Partition, offset and reason of every quarantined message of the batch.
    pub quarantined_at: Vec<(i32, i64, RejectionCode)>,
    pub commit_check: CommitCheck,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    Committed(BatchCounts),
    /// Nothing was written: these partitions are no longer ours, or our position in them is not
    /// where the ledger says it is. Each comes with the ledger's owner check and next offset.
    Fenced(Vec<Fence>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub partition: i32,
    /// Still ours (same owner and epoch) but at another offset: seek there and go on.
    pub still_owned: bool,
    pub next_offset: Option<i64>,
}
