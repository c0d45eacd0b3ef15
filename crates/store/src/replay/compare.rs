//! How a replay's outputs are compared and hashed: one line per row (tab-separated fields) into
//! SHA-256 in a canonical order, timestamps in one form, the differences from the live
//! projections, and the combined hash of a replay, by which two replays of a log are compared.

use super::cut::Cut;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

/// One rebuilt projection: its rows, the SHA-256 of its canonical form, and how it compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionOutput {
    pub name: &'static str,
    pub rows: u64,
    pub sha256: [u8; 32],
    /// Whether it was compared with the live projection (not for the hourly usage of a past cut).
    pub compared: bool,
    pub differences: u64,
}

/// One difference between the replay and the live projection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub projection: &'static str,
    pub key: String,
    pub replayed: String,
    pub live: String,
}

pub(super) struct Sha(Sha256);

impl Sha {
    pub fn line(&mut self, fields: &[&str]) {
        self.0.update(fields.join("\t").as_bytes());
        self.0.update(b"\n");
    }
    pub fn done(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

pub(super) fn sha() -> Sha {
    Sha(Sha256::new())
}

pub(super) fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// SHA-256 over the cut and the outputs' hashes (`gpuledger.replay.v1`).
pub(super) fn combined(
    cut: &Cut,
    cut_seq: Option<i64>,
    as_of_date: NaiveDate,
    outputs: [&ProjectionOutput; 3],
) -> [u8; 32] {
    let mut combined = sha();
    combined.line(&["gpuledger.replay.v1"]);
    combined.line(&["cut", &cut.to_string(), &cut_seq.map_or("-".into(), |s| s.to_string()), &as_of_date.to_string()]);
    for p in outputs {
        combined.line(&[p.name, &p.rows.to_string(), &hex::encode(p.sha256)]);
    }
    combined.done()
}
