//! Appending a batch: the events, the quarantined messages and the new offsets of every
//! partition in the batch are committed in ONE transaction, or not at all. One module per step:
//! 1. [`fence`]: the partitions' stream rows are locked and the fences checked (owner, epoch,
//!    next offset);
//! 2. [`known`]: what the ledger holds for the batch is read (the GPU time its events touch, the
//!    ids it reuses);
//! 3. [`domain::decide`]: each message is decided in offset order, exactly as if messages came
//!    one at a time (so the outcome never depends on where batches are cut) — pure, no database:
//!    an event id seen before is a duplicate (same content) or a conflict; else usage overlapping
//!    GPU time already taken is an overlap; else it is ledgered;
//! 4. [`write`]: the ids, the hash-chained rows (typed columns, one binary COPY), the hourly
//!    projection, the quarantine and the streams' heads and offsets are written;
//! 5. [`commit`]: holding the commit lock, what other writers committed meanwhile is checked (see
//!    [`append_batch`]), and the transaction commits.
//!
//! Around them: [`claim`] (partitions claimed by epoch), [`message`] (what a writer is handed),
//! [`outcome`] (what it reports), [`months`] (the monthly partitions), [`usage_row`] (a usage
//! row's columns and COPY), [`writer`] (a writer's connections and commit log).

mod catalogue;
pub use catalogue::{read_catalogue, reference_head};
mod claim;
mod commit;
mod fence;
mod known;
#[cfg(feature = "measure-without-guards")]
mod measure;
mod message;
mod months;
mod outcome;
pub(crate) mod usage_row;
mod write;
mod writer;

pub use claim::{claim_partitions, Claim};
pub use commit::{CommitLog, COMMIT_LOCK};
pub use message::{InMessage, PartitionBatch};
pub use months::{ensure_months, ensure_months_for, PartitionCache};
pub use outcome::{AppendOutcome, BatchCounts, CommitCheck, Fence};
pub use usage_row::{UsageCopy, UsageRow, USAGE_COLUMNS, USAGE_TYPES};
pub use writer::LedgerWriter;

use crate::StoreError;
use chrono::{DateTime, Utc};
use fence::Locked;

/// How a batch is appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Writers work side by side: the batch is decided against its own streams' rows (no one
    /// else writes them), written, and only then, holding [`COMMIT_LOCK`], checked against what
    /// other writers committed meanwhile, and committed.
    Optimistic,
    /// Holding [`COMMIT_LOCK`] from the start, decided against every stream's rows and every event
    /// id of the batch: after an event id turned out to be in the ledger already (the unique key
    /// refused it), or another writer's commit overlapped the batch.
    Serial,
}

/// Appends one batch in one transaction. See the module doc for the order of decisions.
///
/// Several writers (threads of one ingester, or other ingesters) append at once; a GPU-second
/// may be claimed by any of them (GPUs move between tenants, tenants between partitions). The
/// expensive part runs in parallel: each batch is decided against its own streams, then written.
/// The last step is serialized by one advisory lock, [`COMMIT_LOCK`]: holding it, a writer reads
/// what other streams committed in the batch's GPU time (a few index probes per GPU), and commits
/// only if none of it overlaps; a commit therefore always sees every commit before it. When it
/// does overlap (two partitions billing one GPU-second at once, rare), the transaction is rolled
/// back and the batch decided again serially. An event id already in the ledger fails the unique
/// key of `ledger_event_ids` (written first, so little is lost) and sends the batch the serial way
/// too, which looks every id up and tells duplicates from conflicts by content.
pub fn append_batch(
    w: &mut LedgerWriter,
    owner: &str,
    batch: &[PartitionBatch],
    recorded_at: DateTime<Utc>,
) -> Result<AppendOutcome, StoreError> {
    match append_once(w, owner, batch, recorded_at, Mode::Optimistic) {
        Err(StoreError::Db(e)) if e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION) => {
            tracing::debug!("an event id of the batch is in the ledger already; deciding the batch serially");
            append_once(w, owner, batch, recorded_at, Mode::Serial)
        }
        Err(StoreError::Raced) => {
            tracing::debug!("another writer's commit overlapped the batch; deciding it serially");
            append_once(w, owner, batch, recorded_at, Mode::Serial)
        }
        other => other,
    }
}

fn append_once(
    w: &mut LedgerWriter,
    owner: &str,
    batch: &[PartitionBatch],
    recorded_at: DateTime<Utc>,
    mode: Mode,
) -> Result<AppendOutcome, StoreError> {
    // Microseconds, as PostgreSQL stores them, so the hash of a row read back is the same.
    let recorded_at = DateTime::<Utc>::from_timestamp_micros(recorded_at.timestamp_micros()).expect("valid instant");
    let t0 = std::time::Instant::now();
    ensure_months(&mut w.db, &mut w.cache, batch)?;
    let legacy = w.legacy()?;
    let mut ordered: Vec<&PartitionBatch> = batch.iter().filter(|b| !b.messages.is_empty()).collect();
    // Partition order, as in claim_partitions: stream rows are always locked in the same order.
    ordered.sort_by_key(|b| b.claim.partition);
    // Read committed, whatever the server's default: every statement sees every commit before
    // it (the commit clock's reasoning in step 5 rests on it).
    let mut tx = w.db.build_transaction().isolation_level(postgres::IsolationLevel::ReadCommitted).start()?;

    let heads = match fence::lock_streams(&mut tx, owner, &ordered)? {
        Locked::Heads(heads) => heads,
        Locked::Fenced(fences) => {
            tx.rollback()?;
            return Ok(AppendOutcome::Fenced(fences));
        }
    };
    fence::check_contiguous(&ordered)?;
    if mode == Mode::Serial {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&COMMIT_LOCK])?;
    }
    let t_fence = t0.elapsed();

    // Every commit up to this number is seen by the reads below (step 5 checks those after it).
    let seen: i64 = tx.query_one("SELECT commits FROM ledger_commit_clock", &[])?.get(0);
    let mut known = known::read_known(&mut tx, &ordered, legacy, mode)?;
    known.catalogue = w.catalogue.current(&mut tx)?;
    let t_ids = t0.elapsed();

    let decision = domain::decide::decide(ordered.iter().map(|b| b.messages.iter().map(|m| &m.verdict)), &known);
    let t_decide = t0.elapsed();

    write::write_ids(&mut tx, &ordered, &decision.fates)?;
    let t_keys = t0.elapsed();
    let chained = write::write_rows(&mut tx, &ordered, &decision.fates, heads, recorded_at)?;
    let t_copy = t0.elapsed();
    write::write_projection(&mut tx, &chained.projection)?;
    write::write_quarantine(&mut tx, &chained.quarantine, recorded_at)?;
    write::update_streams(&mut tx, owner, &chained.streams)?;
    let t_rest = t0.elapsed();

    let check = commit::check_and_commit(&mut w.check, &w.commits, tx, mode, seen, &decision.taken)?;
    tracing::debug!(
        ?mode, ?t_fence, ?t_ids, ?t_decide, ?t_keys, ?t_copy, ?t_rest, total = ?t0.elapsed(), ?check,
        "batch timings"
    );
    let mut counts = chained.counts;
    counts.commit_check = check;
    let mut by_reason: Vec<_> = chained.by_reason.into_iter().collect();
    by_reason.sort();
    counts.by_reason = by_reason;
    Ok(AppendOutcome::Committed(counts))
}
