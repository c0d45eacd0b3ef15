//! Step 5 of an append: the commit. Holding [`COMMIT_LOCK`], the transaction takes its number on
//! the commit clock (migration 0007); an optimistic batch first checks what other writers
//! committed in its GPU time since it read the ledger — in this process's [`CommitLog`] when it
//! made every one of those commits, else by probing the GPU-time index on the writer's second
//! connection — and is rolled back if any of it overlaps.

use super::known::gpu_time;
use super::{CommitCheck, Mode};
use crate::StoreError;
use chrono::{DateTime, Utc};
use domain::decide::{slots_collide, windows, GpuTime, Slot};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

/// Serializes the last step of every writer's transaction (see [`super::append_batch`]): an
/// advisory lock key of its own ("gpLEDGER").
pub const COMMIT_LOCK: i64 = 0x6770_4c45_4447_4552;

/// Holding [`COMMIT_LOCK`] (serial mode took it at the start), numbers the commit and, when
/// optimistic, checks what other writers committed since the clock read `seen`: the commits
/// numbered after it. When this process made each of them, their GPU time is in the commit log;
/// otherwise it is read on the second connection (which sees every commit and none of this
/// batch's rows). Holding the lock until this transaction commits, every commit sees every
/// commit before it. A batch that raced is rolled back ([`StoreError::Raced`]).
pub(super) fn check_and_commit(
    check_db: &mut postgres::Client,
    commits: &CommitLog,
    mut tx: postgres::Transaction<'_>,
    mode: Mode,
    seen: i64,
    taken: &GpuTime,
) -> Result<CommitCheck, StoreError> {
    if mode == Mode::Optimistic {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&COMMIT_LOCK])?;
    }
    let (number, server) = number_commit(&mut tx)?;
    let check = match mode {
        Mode::Serial => CommitCheck::Serial,
        Mode::Optimistic => {
            let (check, raced) = match commits.between(&server, seen, number - 1) {
                Some(others) => (
                    CommitCheck::InMemory,
                    taken.intervals().any(|(g, slot, s, e)| others.iter().any(|o| o.overlaps(&g, slot, s, e))),
                ),
                None => {
                    // gpu_occupancy is read-only since 0005: step 2 saw all of it that matters.
                    let found = gpu_time(check_db, &windows(taken.intervals().map(|(g, _, s, e)| (g, s, e))), false)?;
                    (
                        CommitCheck::Probed,
                        found.into_iter().any(|(gpu, slot, (s, e), _)| taken.overlaps(&gpu, slot, s, e)),
                    )
                }
            };
            if raced {
                tx.rollback()?;
                return Err(StoreError::Raced);
            }
            check
        }
    };
    tracing::debug!(commits_since = number - 1 - seen, ?check, "commit checked");
    commits.commit(tx, &server, number, Written::of(taken))?;
    Ok(check)
}

/// Which clock a commit number was read from: the clock table (a database recreated or restored
/// by dump has a new one) on one run of the server (a restart, a failover or a restore from a
/// backup starts a new one). A number means the same commit only on the same clock. Read with
/// every number a commit takes, in the same statement, so that a connection kept open by a proxy
/// across a failover cannot pass off the old clock's numbers as the new one's. (The transaction's
/// earlier reading, `seen`, is on the same clock: a transaction never outlives its server run,
/// and that reading holds the clock table against a DROP until the commit.)
#[derive(Debug, Clone, PartialEq, Eq)]
struct Server {
    clock: u32,
    started: DateTime<Utc>,
}

/// Numbers the transaction's commit on the commit clock: the number, with the clock it is on (see
/// [`Server`]), read in the same statement.
fn number_commit(tx: &mut postgres::Transaction<'_>) -> Result<(i64, Server), StoreError> {
    let row = tx.query_one(
        "UPDATE ledger_commit_clock SET commits = commits + 1 RETURNING commits, tableoid, pg_postmaster_start_time()",
        &[],
    )?;
    Ok((row.get(0), Server { clock: row.get::<_, postgres::types::Oid>(1), started: row.get(2) }))
}

/// The GPU time one commit wrote: `(gpu, slot, start, end)` sorted, disjoint per GPU and slot.
/// The log keeps this rather than the batch's [`GpuTime`]: some 40 bytes an interval against a
/// B-tree node (some 280 bytes) for each GPU, with one interval a GPU the common case at 10,000
/// GPUs.
struct Written(Vec<(Uuid, Slot, DateTime<Utc>, DateTime<Utc>)>);

impl Written {
    fn of(t: &GpuTime) -> Written {
        let mut v: Vec<_> = t.intervals().collect();
        v.sort_unstable();
        Written(v)
    }

    /// Does `[s, e)` in `slot` of `gpu` overlap any interval of a slot it collides with? As in
    /// [`GpuTime::overlaps`], in each slot only the last interval starting before `e` can.
    fn overlaps(&self, gpu: &Uuid, slot: Slot, s: DateTime<Utc>, e: DateTime<Utc>) -> bool {
        let v = &self.0;
        let mut at = v.partition_point(|(g, ..)| g < gpu);
        while at < v.len() && v[at].0 == *gpu {
            let this = v[at].1;
            let slot_end = at + v[at..].partition_point(|(g, sl, ..)| g == gpu && *sl == this);
            if slots_collide(slot, this) {
                let before = at + v[at..slot_end].partition_point(|(_, _, start, _)| *start < e);
                if before > at && v[before - 1].3 > s {
                    return true;
                }
            }
            at = slot_end;
        }
        false
    }
}

/// How long a writer waits for another writer's commit to be recorded before it probes instead.
const LOG_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// How many of its latest commits a process remembers. A writer needs those made between its
/// look at the ledger's GPU time and its commit: with a few writers, the last one or two.
const COMMITS_KEPT: usize = 8;

/// The commits this process's writers made, by their number on the commit clock (migration 0007),
/// with the GPU time each wrote. At commit time a writer must know what was committed since it
/// read the ledger's GPU time: the commits numbered after its reading of the clock. When all of
/// them are here, it checks its batch against them in memory; otherwise (another process wrote,
/// or the log has forgotten) it probes the ledger's GPU-time index.
///
/// A commit is recorded only after PostgreSQL confirmed it, so a number here never stands for a
/// transaction that rolled back (whose number the next commit takes).
#[derive(Default)]
pub struct CommitLog(Mutex<Option<(Server, Commits)>>);

/// Commits by number, on one server run.
type Commits = BTreeMap<i64, Arc<Written>>;

impl CommitLog {
    /// Commits `tx`, numbered `n`, and records it. The log stays locked from before the commit
    /// until the record is in: a writer of this process that takes the commit lock after this
    /// commit finds it here, never a moment too early.
    fn commit(
        &self,
        tx: postgres::Transaction<'_>,
        server: &Server,
        n: i64,
        written: Written,
    ) -> Result<(), StoreError> {
        let mut log = self.0.lock();
        tx.commit()?;
        let (s, commits) = log.get_or_insert_with(|| (server.clone(), BTreeMap::new()));
        if s != server {
            *s = server.clone();
            commits.clear();
        }
        commits.insert(n, Arc::new(written));
        while commits.len() > COMMITS_KEPT {
            commits.pop_first();
        }
        Ok(())
    }

    /// What commits `after + 1 ..= upto` wrote, if this process made every one of them.
    fn between(&self, server: &Server, after: i64, upto: i64) -> Option<Vec<Arc<Written>>> {
        if upto <= after {
            return Some(Vec::new());
        }
        // The log is locked across a commit (see `commit`); a commit that hangs (its answer lost
        // in the network) must not stop this writer, which then probes the index instead.
        let log = self.0.try_lock_for(LOG_WAIT)?;
        let (s, commits) = log.as_ref()?;
        if s != server || upto - after > COMMITS_KEPT as i64 {
            return None;
        }
        (after + 1..=upto).map(|n| commits.get(&n).cloned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_790_000_000 + minute * 60, 0).expect("valid")
    }

    proptest! {
        /// A commit's GPU time kept as a sorted list answers every question as the map it came
        /// from: the in-memory check at commit time sees exactly what the commit wrote.
        #[test]
        fn written_answers_as_the_gpu_time_it_came_from(
            runs in proptest::collection::vec((0u8..4, 0usize..3, 0i64..3, 1i64..4), 0..40),
            asks in proptest::collection::vec((0u8..5, 0usize..4, 0i64..120, 1i64..6), 1..40),
        ) {
            // Disjoint intervals per GPU and slot (the whole GPU, MIG instances 0 and 1): each
            // slot's runs laid one after another, with gaps.
            let slots = [None, Some(0), Some(1), Some(2)];
            let mut t = GpuTime::default();
            let mut next = [[0i64; 3]; 4];
            for (g, k, gap, len) in runs {
                let s = next[g as usize][k] + gap;
                t.insert(Uuid::from_u128(g as u128), slots[k], at(s), at(s + len));
                next[g as usize][k] = s + len;
            }
            let w = Written::of(&t);
            for (g, k, s, len) in asks {
                let gpu = Uuid::from_u128(g as u128);
                let (slot, s, e) = (slots[k], at(s), at(s + len));
                prop_assert_eq!(w.overlaps(&gpu, slot, s, e), t.overlaps(&gpu, slot, s, e));
            }
        }
    }

    #[test]
    fn the_commit_log_answers_only_for_commits_it_holds_on_the_same_server() {
        let log = CommitLog::default();
        let one = Server { clock: 1, started: at(0) };
        let restarted = Server { clock: 1, started: at(1) };
        let mut t = GpuTime::default();
        t.insert(Uuid::from_u128(7), None, at(0), at(1));
        // Nothing committed since: nothing to check, whatever the log holds.
        assert_eq!(log.between(&one, 5, 5).map(|v| v.len()), Some(0));
        // A commit the log never saw: unknown.
        assert!(log.between(&one, 5, 6).is_none());
        log.0.lock().get_or_insert_with(|| (one.clone(), BTreeMap::new())).1.insert(6, Arc::new(Written::of(&t)));
        let known = log.between(&one, 5, 6).expect("commit 6 is known");
        assert!(known[0].overlaps(&Uuid::from_u128(7), None, at(0), at(2)));
        assert!(known[0].overlaps(&Uuid::from_u128(7), Some(3), at(0), at(2)));
        assert!(!known[0].overlaps(&Uuid::from_u128(8), None, at(0), at(2)));
        // 7 is not: the range is unknown as a whole.
        assert!(log.between(&one, 5, 7).is_none());
        // A log held by a commit that does not come back: unknown after a short wait, not stuck.
        {
            let _held = log.0.lock();
            assert!(log.between(&one, 5, 6).is_none());
        }
        // Another server run (or database) numbers its commits anew: nothing is known there.
        assert!(log.between(&restarted, 5, 6).is_none());
    }
}
