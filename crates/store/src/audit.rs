//! The auditors' replay: one snapshot walk of every stream and every sealed checkpoint (with
//! receipts kept outside the database), sealing a checkpoint into the stream `gpuledger.audit`,
//! and the row stream of the raw log for an export.

use crate::append::ensure_months_for;
use crate::billing::{append_local, lock_stream, LocalEvent};
use crate::ledger_row::{content, content_columns, Identity};
use crate::read::{streams, walk_stream, StreamCheck, StreamInfo};
use crate::StoreError;
use chrono::{DateTime, SubsecRound, Utc};
use domain::audit::{Checkpoint, Receipt, StreamHead, AUDIT_STREAM, CHECKPOINT_VERSION, KIND_CHECKPOINT};
use domain::billing::reference::NO_TENANT;
use domain::chain::GENESIS;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, IsolationLevel, Transaction};
use uuid::Uuid;

// The full replay of every projection lives in its own module; auditors reach it from here too.
pub use crate::replay::{replay, Cut, Difference, ProjectionOutput, ReplayOptions, ReplayReport};

/// Where the log stops agreeing with itself: the row (global sequence number, when a row can be
/// named), the stream and the position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBreak {
    pub seq: Option<i64>,
    pub stream_id: i32,
    /// `topic/partition`.
    pub stream: String,
    pub stream_pos: i64,
    pub reason: String,
}

/// One sealed checkpoint re-checked against the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointCheck {
    /// The checkpoint's row in the audit stream.
    pub seq: i64,
    pub stream_pos: i64,
    /// None when its payload does not parse.
    pub checkpoint: Option<Checkpoint>,
    pub broken: Option<LogBreak>,
}

/// A receipt (a fingerprint kept outside the database) looked up in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptCheck {
    pub receipt: String,
    /// The checkpoint it names (number, row seq), if it is still in the log.
    pub found: Option<(i64, i64)>,
    pub broken: Option<LogBreak>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    pub streams: Vec<StreamCheck>,
    pub checkpoints: Vec<CheckpointCheck>,
    pub receipts: Vec<ReceiptCheck>,
    /// Sequence numbers that more than one row carries.
    pub seq_duplicates: Option<LogBreak>,
}

impl AuditReport {
    /// Every break, the ones that name a row first, in `seq` order.
    pub fn breaks(&self) -> Vec<LogBreak> {
        let mut all: Vec<LogBreak> = self
            .streams
            .iter()
            .filter_map(|c| {
                c.broken.as_ref().map(|b| LogBreak {
                    seq: b.seq,
                    stream_id: c.stream.stream_id,
                    stream: c.stream.name(),
                    stream_pos: b.stream_pos,
                    reason: b.reason.clone(),
                })
            })
            .chain(self.seq_duplicates.iter().cloned())
            .chain(self.checkpoints.iter().filter_map(|c| c.broken.clone()))
            .chain(self.receipts.iter().filter_map(|r| r.broken.clone()))
            .collect();
        all.sort_by_key(|b| (b.seq.is_none(), b.seq, b.stream_id));
        all
    }

    pub fn first_break(&self) -> Option<LogBreak> {
        self.breaks().into_iter().next()
    }

    pub fn rows(&self) -> i64 {
        self.streams.iter().map(|s| s.rows).sum()
    }
}

/// Verifies the whole log in one REPEATABLE READ snapshot: every stream from its first row to
/// its head (`read::walk_stream`), sequence numbers used once, every sealed checkpoint against
/// the rows it names, and each receipt against the checkpoints.
pub fn verify_log(client: &mut Client, receipts: &[Receipt]) -> Result<AuditReport, StoreError> {
    let mut tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start()?;
    let all = streams(&mut tx)?;
    let mut checks = Vec::with_capacity(all.len());
    for s in &all {
        checks.push(walk_stream(&mut tx, s)?);
    }
    let seq_duplicates = seq_duplicates(&mut tx, &all)?;
    let audit = all.iter().find(|s| s.topic == AUDIT_STREAM && s.partition == 0);
    let checkpoints = match audit {
        Some(a) => verify_checkpoints(&mut tx, a, &all)?,
        None => Vec::new(),
    };
    let receipt_checks = receipts
        .iter()
        .map(|r| {
            let hit = checkpoints
                .iter()
                .find_map(|c| c.checkpoint.as_ref().filter(|cp| r.matches(&cp.fingerprint)).map(|cp| (cp.number, c.seq)));
            ReceiptCheck {
                receipt: r.to_string(),
                found: hit,
                broken: hit.is_none().then(|| LogBreak {
                    seq: None,
                    stream_id: audit.map_or(0, |a| a.stream_id),
                    stream: format!("{AUDIT_STREAM}/0"),
                    stream_pos: audit.map_or(0, |a| a.head_pos),
                    reason: format!(
                        "receipt {r} names no checkpoint in the log: checkpoints or whole stream tails were removed or rewritten"
                    ),
                }),
            }
        })
        .collect();
    tx.commit()?;
    Ok(AuditReport { streams: checks, checkpoints, receipts: receipt_checks, seq_duplicates })
}

fn seq_duplicates(tx: &mut Transaction<'_>, all: &[StreamInfo]) -> Result<Option<LogBreak>, StoreError> {
    let Some(row) = tx.query_opt(
        "SELECT seq, array_agg(stream_id ORDER BY stream_id, stream_pos), array_agg(stream_pos ORDER BY stream_id, stream_pos)
           FROM ledger_events GROUP BY seq HAVING count(*) > 1 ORDER BY seq LIMIT 1",
        &[],
    )?
    else {
        return Ok(None);
    };
    let (seq, ids, positions): (i64, Vec<i32>, Vec<i64>) = (row.get(0), row.get(1), row.get(2));
    let name = |id: i32| all.iter().find(|s| s.stream_id == id).map_or_else(|| format!("stream {id}"), |s| s.name());
    let rows: Vec<String> = ids.iter().zip(&positions).map(|(i, p)| format!("{} position {p}", name(*i))).collect();
    let (id, pos) = (ids.last().copied().unwrap_or(0), positions.last().copied().unwrap_or(0));
    Ok(Some(LogBreak {
        seq: Some(seq),
        stream_id: id,
        stream: name(id),
        stream_pos: pos,
        reason: format!("seq {seq} is carried by {} rows: {}", ids.len(), rows.join(", ")),
    }))
}

/// Re-checks every checkpoint: its fingerprint, its link to the one before, and for every stream
/// head it records that the row at that position is still there with that hash and sequence number.
fn verify_checkpoints(
    tx: &mut Transaction<'_>,
    audit: &StreamInfo,
    all: &[StreamInfo],
) -> Result<Vec<CheckpointCheck>, StoreError> {
    let rows = tx.query(
        "SELECT seq, stream_pos, payload FROM ledger_events WHERE stream_id = $1 AND kind = $2 ORDER BY stream_pos, seq",
        &[&audit.stream_id, &KIND_CHECKPOINT],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    let mut prev: Option<Checkpoint> = None;
    for r in rows {
        let (seq, stream_pos, payload): (i64, i64, serde_json::Value) = (r.get(0), r.get(1), r.get(2));
        let cp: Checkpoint = match serde_json::from_value(payload["data"].clone()) {
            Ok(cp) => cp,
            Err(e) => {
                let broken = break_at(audit, Some(seq), stream_pos, format!("checkpoint payload does not parse: {e}"));
                out.push(CheckpointCheck { seq, stream_pos, checkpoint: None, broken });
                continue;
            }
        };
        let label = format!("checkpoint #{} (seq {seq})", cp.number);
        let (want_number, want_prev) = prev.as_ref().map_or((1, GENESIS), |p| (p.number + 1, p.fingerprint));
        let broken = if !cp.is_self_consistent() {
            break_at(audit, Some(seq), stream_pos, format!("{label}: its fingerprint is not the hash of its heads"))
        } else if cp.number != want_number || cp.prev != want_prev {
            break_at(
                audit,
                Some(seq),
                stream_pos,
                format!("{label}: expected checkpoint #{want_number} after prev {}", hex::encode(want_prev)),
            )
        } else {
            check_heads(tx, &cp, &label, all)?
        };
        out.push(CheckpointCheck { seq, stream_pos, checkpoint: Some(cp.clone()), broken });
        prev = Some(cp);
    }
    Ok(out)
}

/// A break at a row of a stream (for checkpoints and the heads they record).
fn break_at(stream: &StreamInfo, seq: Option<i64>, stream_pos: i64, reason: String) -> Option<LogBreak> {
    Some(LogBreak { seq, stream_id: stream.stream_id, stream: stream.name(), stream_pos, reason })
}

/// The first stream head recorded by a checkpoint (`label` names it) whose stream is gone or
/// renamed, or whose row is no longer there with that hash and sequence number.
fn check_heads(
    tx: &mut Transaction<'_>,
    cp: &Checkpoint,
    label: &str,
    all: &[StreamInfo],
) -> Result<Option<LogBreak>, StoreError> {
    for h in &cp.heads {
        let Some(stream) = all.iter().find(|s| s.stream_id == h.stream_id) else {
            return Ok(Some(LogBreak {
                seq: h.head_seq,
                stream_id: h.stream_id,
                stream: format!("{}/{}", h.topic, h.partition),
                stream_pos: h.head_pos,
                reason: format!("{label} records stream {} which no longer exists", h.stream_id),
            }));
        };
        if stream.topic != h.topic || stream.partition != h.partition {
            return Ok(break_at(
                stream,
                h.head_seq,
                h.head_pos,
                format!("{label} records this stream as {}/{}", h.topic, h.partition),
            ));
        }
        if h.head_pos == 0 {
            continue;
        }
        let found = tx.query(
            "SELECT seq, hash FROM ledger_events WHERE stream_id = $1 AND stream_pos = $2 ORDER BY seq",
            &[&h.stream_id, &h.head_pos],
        )?;
        let recorded = format!(
            "{label} records position {} (seq {}) with hash {}",
            h.head_pos,
            h.head_seq.map_or_else(|| "-".into(), |s| s.to_string()),
            hex::encode(h.head_hash)
        );
        let broken = match found.first() {
            None => break_at(stream, h.head_seq, h.head_pos, format!("{recorded}; that row is missing")),
            Some(row) => {
                let (now_seq, now_hash): (i64, Vec<u8>) = (row.get(0), row.get(1));
                if now_hash.as_slice() != h.head_hash || Some(now_seq) != h.head_seq || found.len() > 1 {
                    break_at(
                        stream,
                        h.head_seq,
                        h.head_pos,
                        format!(
                            "{recorded}; the log has seq {now_seq} hash {} there ({} rows)",
                            hex::encode(&now_hash),
                            found.len()
                        ),
                    )
                } else {
                    None
                }
            }
        };
        if broken.is_some() {
            return Ok(broken);
        }
    }
    Ok(None)
}

/// A checkpoint sealed now, or today's that was sealed already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub checkpoint: Checkpoint,
    /// The checkpoint's row in the audit stream.
    pub seq: i64,
    pub new: bool,
}

/// Seals a checkpoint of every stream's head into the audit stream, unless one was sealed on the
/// same UTC day already (then that one is returned) or `force`. Refuses to seal a head whose row
/// does not carry the head's hash (the log is broken there: run `audit verify`).
pub fn seal_checkpoint(client: &mut Client, now: DateTime<Utc>, force: bool) -> Result<Sealed, StoreError> {
    ensure_months_for(client, std::iter::once(now))?;
    let mut tx = client.transaction()?;
    // Locks the audit stream: one sealer at a time; made on first use, so it is among the heads.
    let (audit_id, _, _) = lock_stream(&mut tx, AUDIT_STREAM)?;
    let last = tx.query_opt(
        "SELECT seq, payload FROM ledger_events WHERE stream_id = $1 AND kind = $2 ORDER BY stream_pos DESC LIMIT 1",
        &[&audit_id, &KIND_CHECKPOINT],
    )?;
    let last: Option<(i64, Checkpoint)> = match last {
        None => None,
        Some(r) => {
            let payload: serde_json::Value = r.get(1);
            let cp = serde_json::from_value(payload["data"].clone())
                .map_err(|e| StoreError::Invariant(format!("the last checkpoint does not parse: {e}")))?;
            Some((r.get(0), cp))
        }
    };
    if let Some((seq, cp)) = &last {
        if !force && cp.sealed_on == now.date_naive() {
            tx.commit()?;
            return Ok(Sealed { checkpoint: cp.clone(), seq: *seq, new: false });
        }
    }
    let rows = tx.query(
        "SELECT s.stream_id, s.topic, s.kafka_partition, s.head_pos, s.head_hash, e.seq, e.hash
           FROM ledger_streams s
           LEFT JOIN LATERAL (SELECT seq, hash FROM ledger_events
                               WHERE stream_id = s.stream_id AND stream_pos = s.head_pos ORDER BY seq LIMIT 1) e ON true
          ORDER BY s.stream_id",
        &[],
    )?;
    let mut heads = Vec::with_capacity(rows.len());
    for r in rows {
        let (stream_id, head_pos, head_hash): (i32, i64, Vec<u8>) = (r.get(0), r.get(3), r.get(4));
        let (row_seq, row_hash): (Option<i64>, Option<Vec<u8>>) = (r.get(5), r.get(6));
        let agrees = match (head_pos, &row_hash) {
            (0, None) => head_hash.as_slice() == GENESIS,
            (_, Some(h)) => *h == head_hash,
            _ => false,
        };
        if !agrees {
            return Err(StoreError::Invariant(format!(
                "stream {stream_id}: its head (position {head_pos}) is not the hash of its row there; run `gpuledger audit verify`"
            )));
        }
        heads.push(StreamHead {
            stream_id,
            topic: r.get(1),
            partition: r.get(2),
            head_pos,
            head_seq: row_seq,
            head_hash: head_hash
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Invariant(format!("stream {stream_id} head is not 32 bytes")))?,
        });
    }
    let now = now.trunc_subsecs(6);
    let cp = Checkpoint::seal(last.as_ref().map(|(_, c)| c), heads, now)
        .map_err(|e| StoreError::Invariant(format!("sealing a checkpoint: {e}")))?;
    let data =
        serde_json::to_value(&cp).map_err(|e| StoreError::Invariant(format!("checkpoint does not serialize: {e}")))?;
    let event = LocalEvent {
        event_id: cp.event_id(),
        tenant_id: NO_TENANT.to_string(),
        kind: KIND_CHECKPOINT.to_string(),
        version: CHECKPOINT_VERSION,
        occurred_at: now,
        data,
    };
    let appended = append_local(&mut tx, AUDIT_STREAM, &[event], now)?;
    let at = appended
        .first()
        .filter(|a| a.new)
        .ok_or_else(|| StoreError::Invariant("the checkpoint was not appended".into()))?;
    let seq: i64 = tx
        .query_one(
            "SELECT seq FROM ledger_events WHERE stream_id = $1 AND stream_pos = $2",
            &[&at.stream_id, &at.stream_pos],
        )?
        .get(0);
    tx.commit()?;
    Ok(Sealed { checkpoint: cp, seq, new: true })
}

/// Which part of the log to export: sequence numbers and `occurred_at`, each bound optional
/// (`from`/`since` inclusive, `to` inclusive, `until` exclusive).
#[derive(Debug, Clone, Default)]
pub struct ExportRange {
    pub from_seq: Option<i64>,
    pub to_seq: Option<i64>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// One ledger row as exported.
#[derive(Debug, Clone)]
pub struct ExportRow {
    pub seq: i64,
    pub stream_id: i32,
    pub topic: String,
    pub partition: i32,
    pub stream_pos: i64,
    pub src_offset: Option<i64>,
    pub event_id: Uuid,
    pub tenant_id: String,
    pub kind: String,
    pub version: i16,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// The hash of the row at `stream_pos - 1` of the stream (zeros before the first).
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    /// Canonical JSON: the bytes the chain hash covers.
    pub payload: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the export")]
    Write(#[from] std::io::Error),
}

impl From<postgres::Error> for ExportError {
    fn from(e: postgres::Error) -> Self {
        ExportError::Store(StoreError::Db(e))
    }
}

/// Streams the rows of `range` in `seq` order to `on_row` (constant memory: the server sorts,
/// the client holds one row), in one REPEATABLE READ snapshot, and returns the streams table of
/// the same snapshot and the number of rows.
pub fn export_rows(
    client: &mut Client,
    range: &ExportRange,
    mut on_row: impl FnMut(&ExportRow) -> std::io::Result<()>,
) -> Result<(Vec<StreamInfo>, u64), ExportError> {
    let mut tx = client.build_transaction().isolation_level(IsolationLevel::RepeatableRead).read_only(true).start()?;
    let all = streams(&mut tx)?;
    let params: [&(dyn ToSql + Sync); 4] = [&range.from_seq, &range.to_seq, &range.since, &range.until];
    // The predecessor's hash comes from the previous exported row of the stream when that is the
    // position before, and else from an index lookup (first row of a stream in the range).
    let mut rows = tx.query_raw(
        &format!(
            "SELECT e.seq, e.stream_id, s.topic, s.kafka_partition, e.stream_pos, e.src_offset, e.event_id, e.tenant_id,
                    e.kind, e.version, e.occurred_at, e.recorded_at, e.hash,
                    CASE WHEN lag(e.stream_pos) OVER w = e.stream_pos - 1 THEN lag(e.hash) OVER w
                         ELSE (SELECT p.hash FROM ledger_events p
                                WHERE p.stream_id = e.stream_id AND p.stream_pos = e.stream_pos - 1 ORDER BY p.seq LIMIT 1)
                    END, {}
               FROM ledger_events e JOIN ledger_streams s ON s.stream_id = e.stream_id
              WHERE ($1::bigint IS NULL OR e.seq >= $1) AND ($2::bigint IS NULL OR e.seq <= $2)
                AND ($3::timestamptz IS NULL OR e.occurred_at >= $3) AND ($4::timestamptz IS NULL OR e.occurred_at < $4)
             WINDOW w AS (PARTITION BY e.stream_id ORDER BY e.stream_pos, e.seq)
              ORDER BY e.seq",
            content_columns("e")
        ),
        params,
    )?;
    let mut n = 0u64;
    while let Some(r) = rows.next()? {
        let tenant: String = r.get(7);
        let id = Identity { event_id: r.get(6), tenant_id: &tenant, occurred_at: r.get(10) };
        let payload = content(&r, 14, id)?.payload_bytes()?;
        let prev: Option<Vec<u8>> = r.get(13);
        let row = ExportRow {
            seq: r.get(0),
            stream_id: r.get(1),
            topic: r.get(2),
            partition: r.get(3),
            stream_pos: r.get(4),
            src_offset: r.get(5),
            event_id: r.get(6),
            tenant_id: r.get(7),
            kind: r.get(8),
            version: r.get(9),
            occurred_at: r.get(10),
            recorded_at: r.get(11),
            hash: r.get(12),
            payload,
            prev_hash: prev.unwrap_or_else(|| GENESIS.to_vec()),
        };
        on_row(&row)?;
        n += 1;
    }
    drop(rows);
    tx.commit()?;
    Ok((all, n))
}
