//! The cut of a replay: which rows of the log it reads, and where that leaves every stream (its
//! last row inside the cut), from which the report's sequence number, instant and date follow.

use crate::billing::stream_id;
use crate::StoreError;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use domain::billing::period::berlin_date;
use postgres::Transaction;

/// Which part of the log a replay reads: the rows it knew at that point (by `seq` or by
/// `recorded_at`, the knowledge time), whatever their `occurred_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Every row in the replay's snapshot.
    Now,
    /// Rows with `seq <= n`.
    UntilSeq(i64),
    /// Rows with `recorded_at <= t`.
    AsOf(DateTime<Utc>),
}

impl Cut {
    pub fn is_now(&self) -> bool {
        matches!(self, Cut::Now)
    }

    /// The SQL condition on `ledger_events e` (typed values formatted as literals: `CREATE TABLE
    /// ... AS` takes no parameters).
    pub(super) fn condition(&self) -> String {
        match self {
            Cut::Now => "true".to_string(),
            Cut::UntilSeq(n) => format!("e.seq <= {n}"),
            Cut::AsOf(t) => {
                format!("e.recorded_at <= '{}'::timestamptz", t.to_rfc3339_opts(SecondsFormat::Micros, true))
            }
        }
    }

    pub(super) fn includes(&self, seq: i64, recorded_at: DateTime<Utc>) -> bool {
        match self {
            Cut::Now => true,
            Cut::UntilSeq(n) => seq <= *n,
            Cut::AsOf(t) => recorded_at <= *t,
        }
    }
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cut::Now => write!(f, "the whole log"),
            Cut::UntilSeq(n) => write!(f, "seq <= {n}"),
            Cut::AsOf(t) => write!(f, "recorded_at <= {}", t.to_rfc3339_opts(SecondsFormat::Micros, true)),
        }
    }
}

/// Where the cut leaves the log: every stream (id, `topic/partition`, head position), and the
/// report's position of the cut.
pub(super) struct StreamCut {
    pub streams: Vec<(i32, String, i64)>,
    /// The last sequence number inside the cut (None for an empty cut).
    pub cut_seq: Option<i64>,
    /// The instant of `--as-of`, else the latest `recorded_at` of the streams' last rows inside
    /// the cut.
    pub cut_at: Option<DateTime<Utc>>,
    /// The Berlin date of `cut_at`: the budget report's date.
    pub as_of_date: NaiveDate,
}

impl StreamCut {
    /// The cut: each stream's last row inside it.
    pub fn read(tx: &mut Transaction<'_>, cut: &Cut) -> Result<StreamCut, StoreError> {
        let streams: Vec<(i32, String, i64)> = tx
            .query(
                "SELECT stream_id, topic || '/' || kafka_partition, head_pos FROM ledger_streams ORDER BY stream_id",
                &[],
            )?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let mut cut_seq: Option<i64> = None;
        let mut last_at: Option<DateTime<Utc>> = None;
        for (sid, _, head) in &streams {
            if let Some((seq, t)) = last_in_cut(tx, *sid, *head, cut)? {
                cut_seq = cut_seq.max(Some(seq));
                last_at = last_at.max(Some(t));
            }
        }
        let cut_at = match cut {
            Cut::AsOf(t) => Some(*t),
            _ => last_at,
        };
        let as_of_date = berlin_date(cut_at.unwrap_or(DateTime::<Utc>::UNIX_EPOCH));
        Ok(StreamCut { streams, cut_seq, cut_at, as_of_date })
    }

    /// The stream ids, in order.
    pub fn ids(&self) -> Vec<i32> {
        self.streams.iter().map(|(id, _, _)| *id).collect()
    }
}

/// The last row (seq, recorded_at) of a stream inside the cut: positions are searched by halves,
/// `seq` grows with the position (`audit verify` checks it); for `--as-of`, `recorded_at` is
/// taken to grow with it too (one writer per stream, batches committed in order).
fn last_in_cut(
    tx: &mut Transaction<'_>,
    stream_id: i32,
    head_pos: i64,
    cut: &Cut,
) -> Result<Option<(i64, DateTime<Utc>)>, StoreError> {
    let at = |tx: &mut Transaction<'_>, pos: i64| -> Result<Option<(i64, DateTime<Utc>)>, StoreError> {
        Ok(tx
            .query_opt(
                "SELECT seq, recorded_at FROM ledger_events WHERE stream_id = $1 AND stream_pos = $2 ORDER BY seq LIMIT 1",
                &[&stream_id, &pos],
            )?
            .map(|r| (r.get(0), r.get(1))))
    };
    let (mut lo, mut hi) = (0i64, head_pos); // invariant: lo is inside (or 0), everything past hi is outside
    if let Some((seq, t)) = at(tx, hi)? {
        if cut.includes(seq, t) {
            return Ok(Some((seq, t)));
        }
    }
    hi -= 1;
    while lo < hi {
        let mid = lo + (hi - lo + 1) / 2;
        match at(tx, mid)? {
            Some((seq, t)) if cut.includes(seq, t) => lo = mid,
            _ => hi = mid - 1,
        }
    }
    if lo == 0 {
        return Ok(None);
    }
    at(tx, lo)
}

/// Every row of a local stream (reference, billing, budget) in position order: (stream_pos,
/// event_id, kind, payload, seq, recorded_at); none when the stream does not exist yet.
pub(super) fn local_stream(tx: &mut Transaction<'_>, topic: &str) -> Result<Vec<postgres::Row>, StoreError> {
    match stream_id(tx, topic)? {
        None => Ok(Vec::new()),
        Some((sid, _)) => Ok(tx.query(
            "SELECT stream_pos, event_id, kind, payload, seq, recorded_at FROM ledger_events
              WHERE stream_id = $1 ORDER BY stream_pos",
            &[&sid],
        )?),
    }
}
