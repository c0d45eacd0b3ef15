//! The hash chain: every ledger row carries `hash = sha256(prev_hash || row)`, chained per stream
//! (one stream per Kafka topic-partition, or per other writer), so that any later change to a
//! stored row, a removed row or a reordered row breaks the chain from there on.
//!
//! Streams are independent, so several ingesters append at once without sharing a chain head.

use crate::usage::{UsageRecorded, LEDGER_KIND, LEDGER_VERSION};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The `prev_hash` of a stream's first row.
pub const GENESIS: [u8; 32] = [0u8; 32];

/// Everything in a ledger row that the hash covers (all columns but the global sequence, which is
/// assigned by the database).
#[derive(Debug, Clone, Copy)]
pub struct ChainRow<'a> {
    pub stream_id: i32,
    pub stream_pos: i64,
    pub event_id: Uuid,
    pub tenant_id: &'a str,
    pub kind: &'a str,
    pub version: i16,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub src_partition: Option<i32>,
    pub src_offset: Option<i64>,
    /// Canonical JSON bytes of the payload.
    pub payload: &'a [u8],
}

/// Where a usage event from Kafka stands in the ledger: its stream and position, when it was
/// recorded, and the message it came from.
#[derive(Debug, Clone, Copy)]
pub struct UsagePlace {
    pub stream_id: i32,
    pub stream_pos: i64,
    pub recorded_at: DateTime<Utc>,
    pub src_partition: i32,
    pub src_offset: i64,
}

impl<'a> ChainRow<'a> {
    /// The chain row of a usage event: its kind and version, occurred at the start of its
    /// interval, with `payload` its canonical bytes ([`UsageRecorded::write_payload`]). The one
    /// place a usage row's hashed fields are chosen; the ingester and the benchmarks use it.
    pub fn usage(e: &'a UsageRecorded, payload: &'a [u8], at: UsagePlace) -> ChainRow<'a> {
        ChainRow {
            stream_id: at.stream_id,
            stream_pos: at.stream_pos,
            event_id: e.event_id,
            tenant_id: &e.tenant_id,
            kind: LEDGER_KIND,
            version: LEDGER_VERSION,
            occurred_at: e.interval_start,
            recorded_at: at.recorded_at,
            src_partition: Some(at.src_partition),
            src_offset: Some(at.src_offset),
            payload,
        }
    }
}

fn put_bytes(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// The hash of `row` linked to its predecessor's hash.
pub fn link(prev: &[u8; 32], row: &ChainRow<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"gpuledger.chain.v1");
    h.update(prev);
    h.update(row.stream_id.to_be_bytes());
    h.update(row.stream_pos.to_be_bytes());
    h.update(row.event_id.as_bytes());
    put_bytes(&mut h, row.tenant_id.as_bytes());
    put_bytes(&mut h, row.kind.as_bytes());
    h.update(row.version.to_be_bytes());
    h.update(row.occurred_at.timestamp_micros().to_be_bytes());
    h.update(row.recorded_at.timestamp_micros().to_be_bytes());
    h.update(row.src_partition.unwrap_or(-1).to_be_bytes());
    h.update(row.src_offset.unwrap_or(-1).to_be_bytes());
    put_bytes(&mut h, row.payload);
    h.finalize().into()
}

/// Where a chain first disagrees with its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub stream_pos: i64,
    pub reason: String,
}

/// Checks one stream's rows one at a time, in `stream_pos` order, so a stream of any length can
/// be verified in constant memory.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    prev: [u8; 32],
    expected_pos: i64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier { prev: GENESIS, expected_pos: 1 }
    }
}

impl ChainVerifier {
    pub fn check(&mut self, row: &ChainRow<'_>, stored: &[u8; 32]) -> Result<(), ChainBreak> {
        if row.stream_pos != self.expected_pos {
            return Err(ChainBreak {
                stream_pos: row.stream_pos,
                reason: format!("expected position {}, found {}", self.expected_pos, row.stream_pos),
            });
        }
        if link(&self.prev, row) != *stored {
            return Err(ChainBreak { stream_pos: row.stream_pos, reason: "hash does not match the row".into() });
        }
        self.prev = *stored;
        self.expected_pos += 1;
        Ok(())
    }

    /// The head hash and the position of the last row checked.
    pub fn head(&self) -> ([u8; 32], i64) {
        (self.prev, self.expected_pos - 1)
    }
}

/// Walks one stream's rows in `stream_pos` order and checks every link; returns the head.
pub fn verify<'a>(rows: impl IntoIterator<Item = (ChainRow<'a>, [u8; 32])>) -> Result<([u8; 32], i64), ChainBreak> {
    let mut prev = GENESIS;
    let mut expected_pos = 1i64;
    for (row, stored) in rows {
        if row.stream_pos != expected_pos {
            return Err(ChainBreak {
                stream_pos: row.stream_pos,
                reason: format!("expected position {expected_pos}, found {}", row.stream_pos),
            });
        }
        let computed = link(&prev, &row);
        if computed != stored {
            return Err(ChainBreak { stream_pos: row.stream_pos, reason: "hash does not match the row".into() });
        }
        prev = stored;
        expected_pos += 1;
    }
    Ok((prev, expected_pos - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn row(pos: i64, payload: &[u8]) -> ChainRow<'_> {
        ChainRow {
            stream_id: 1,
            stream_pos: pos,
            event_id: Uuid::from_u128(pos as u128),
            tenant_id: "acme",
            kind: "usage.recorded",
            version: 1,
            occurred_at: Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap(),
            recorded_at: Utc.with_ymd_and_hms(2026, 10, 1, 0, 1, 0).unwrap(),
            src_partition: Some(0),
            src_offset: Some(pos - 1),
            payload,
        }
    }

    #[test]
    fn a_changed_row_breaks_the_chain_at_that_row() {
        let payloads: Vec<Vec<u8>> = (0..5).map(|i| format!("{{\"n\":{i}}}").into_bytes()).collect();
        let mut prev = GENESIS;
        let mut stored = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            prev = link(&prev, &row(i as i64 + 1, p));
            stored.push(prev);
        }
        let good: Vec<_> = payloads.iter().enumerate().map(|(i, p)| (row(i as i64 + 1, p), stored[i])).collect();
        assert_eq!(verify(good.clone()).unwrap(), (stored[4], 5));

        let tampered = b"{\"n\":99}".to_vec();
        let mut bad = good.clone();
        bad[2].0 = row(3, &tampered);
        assert_eq!(verify(bad).unwrap_err().stream_pos, 3);

        let mut missing = good.clone();
        missing.remove(1);
        assert_eq!(verify(missing).unwrap_err().stream_pos, 3);
    }
}
