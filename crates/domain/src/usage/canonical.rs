//! The canonical form of a usage event: its ledger payload (written byte by byte, the same as
//! serde_json's), its fingerprint, and the CloudEvent a producer sends.

use super::*;
use sha2::{Digest, Sha256};
use std::io::Write as _;

impl UsageRecorded {
    /// The `data` object of the event in canonical form (keys sorted, normalized values).
    pub fn data_json(&self) -> Value {
        let mut data = Map::new();
        data.insert("tenant_id".into(), Value::String(self.tenant_id.clone()));
        data.insert("gpu_sku".into(), Value::String(self.gpu_sku.clone()));
        data.insert("gpu_id".into(), Value::String(format_gpu_id(self.gpu_id)));
        data.insert("node".into(), Value::String(self.node.clone()));
        data.insert("project".into(), Value::String(self.project.clone()));
        if let Some(job) = &self.job {
            data.insert("job".into(), Value::String(job.clone()));
        }
        if !self.labels.is_empty() {
            let labels: Map<String, Value> =
                self.labels.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            data.insert("labels".into(), Value::Object(labels));
        }
        data.insert("interval_start".into(), Value::String(format_instant(self.interval_start)));
        data.insert("interval_end".into(), Value::String(format_instant(self.interval_end)));
        data.insert("gpu_seconds".into(), Value::String(self.gpu_seconds.to_string()));
        if let Some(mig) = &self.mig {
            data.insert("mig_instance".into(), Value::String(mig.instance.to_string()));
            data.insert("mig_profile".into(), Value::String(mig.profile.clone()));
        }
        if let Some(energy) = self.energy_wh {
            data.insert("energy_wh".into(), Value::String(energy.to_string()));
        }
        Value::Object(data)
    }

    /// The ledger payload: `{"data": <canonical data>, "source": <CloudEvents source>}`.
    pub fn payload_json(&self) -> Value {
        let mut payload = Map::new();
        payload.insert("data".into(), self.data_json());
        payload.insert("source".into(), Value::String(self.source.clone()));
        Value::Object(payload)
    }

    /// Canonical bytes of the payload: exactly `serde_json::to_vec(&self.payload_json())` (keys
    /// in byte order, no blanks, serde_json's escapes), written directly because the ingester
    /// computes it for every event. Equal payloads give equal bytes; a jsonb payload read back and
    /// re-serialized by serde_json gives them again.
    pub fn payload_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(384);
        self.write_payload(&mut out);
        out
    }

    /// [`UsageRecorded::payload_bytes`], appended to `out` (a buffer kept across events).
    /// An event without the optional members `energy_wh`, `mig_instance` and `mig_profile` has
    /// exactly the bytes it had before they existed (the hash chain of older ledgers holds).
    pub fn write_payload(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"data\":{");
        if let Some(energy) = self.energy_wh {
            // Digits and a point: nothing to escape.
            write!(out, "\"energy_wh\":\"{energy}\",").expect("writing to a Vec");
        }
        out.extend_from_slice(b"\"gpu_id\":\"GPU-");
        let mut id = [0u8; 36];
        out.extend_from_slice(self.gpu_id.hyphenated().encode_lower(&mut id).as_bytes());
        out.extend_from_slice(b"\",\"gpu_seconds\":");
        // A decimal's digits and point need no escaping: written in place, not through a String.
        write!(out, "\"{}\"", self.gpu_seconds).expect("writing to a Vec");
        out.extend_from_slice(b",\"gpu_sku\":");
        json_str(out, &self.gpu_sku);
        out.extend_from_slice(b",\"interval_end\":");
        write_instant(out, self.interval_end);
        out.extend_from_slice(b",\"interval_start\":");
        write_instant(out, self.interval_start);
        if let Some(job) = &self.job {
            out.extend_from_slice(b",\"job\":");
            json_str(out, job);
        }
        if !self.labels.is_empty() {
            out.extend_from_slice(b",\"labels\":{");
            for (i, (k, v)) in self.labels.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_str(out, k);
                out.push(b':');
                json_str(out, v);
            }
            out.push(b'}');
        }
        if let Some(mig) = &self.mig {
            write!(out, ",\"mig_instance\":\"{}\",\"mig_profile\":", mig.instance).expect("writing to a Vec");
            json_str(out, &mig.profile);
        }
        out.extend_from_slice(b",\"node\":");
        json_str(out, &self.node);
        out.extend_from_slice(b",\"project\":");
        json_str(out, &self.project);
        out.extend_from_slice(b",\"tenant_id\":");
        json_str(out, &self.tenant_id);
        out.extend_from_slice(b"},\"source\":");
        json_str(out, &self.source);
        out.push(b'}');
    }

    /// Identity of the content: two messages with the same event id are duplicates when their
    /// fingerprints are equal and a conflict otherwise.
    pub fn fingerprint(&self) -> [u8; 32] {
        fingerprint_of(&self.payload_bytes())
    }

    /// The whole CloudEvent as a producer would send it.
    pub fn to_cloudevent(&self) -> Value {
        let mut env = Map::new();
        env.insert("specversion".into(), Value::String("1.0".into()));
        env.insert("id".into(), Value::String(self.event_id.hyphenated().to_string()));
        env.insert("source".into(), Value::String(self.source.clone()));
        env.insert("type".into(), Value::String(EVENT_TYPE.into()));
        env.insert("subject".into(), Value::String(self.tenant_id.clone()));
        env.insert("time".into(), Value::String(format_instant(self.interval_end)));
        env.insert("datacontenttype".into(), Value::String("application/json".into()));
        env.insert("data".into(), self.data_json());
        Value::Object(env)
    }

    /// Rebuilds the event from its ledger payload (as stored by `payload_json`).
    pub fn from_payload(event_id: Uuid, payload: &Value) -> Result<UsageRecorded, Rejection> {
        let obj =
            payload.as_object().ok_or_else(|| Rejection::new(RejectionCode::WrongShape, "payload is not an object"))?;
        let source = req_str(obj, "source", "payload")?.to_string();
        let data = obj
            .get("data")
            .and_then(Value::as_object)
            .ok_or_else(|| Rejection::new(RejectionCode::WrongShape, "payload.data is not an object"))?;
        parse_data(event_id, source, data)
    }
}

/// `format_instant(t)` as a JSON string, appended without allocating (the canonical bytes of every
/// ledgered event hold two). Years outside 0–9999 and leap seconds take the general way.
pub(super) fn write_instant(out: &mut Vec<u8>, t: DateTime<Utc>) {
    let (date, time) = (t.date_naive(), t.time());
    let nanos = time.nanosecond();
    if !(0..=9999).contains(&date.year()) || nanos >= 1_000_000_000 {
        json_str(out, &format_instant(t));
        return;
    }
    fn digits(out: &mut Vec<u8>, v: u32, n: u32) {
        for i in (0..n).rev() {
            out.push(b'0' + (v / 10u32.pow(i) % 10) as u8);
        }
    }
    out.push(b'"');
    digits(out, date.year() as u32, 4);
    out.push(b'-');
    digits(out, date.month(), 2);
    out.push(b'-');
    digits(out, date.day(), 2);
    out.push(b'T');
    digits(out, time.hour(), 2);
    out.push(b':');
    digits(out, time.minute(), 2);
    out.push(b':');
    digits(out, time.second(), 2);
    // As chrono's SecondsFormat::AutoSi: no fraction, or the fewest of 3, 6 or 9 digits.
    if nanos != 0 {
        out.push(b'.');
        if nanos % 1_000_000 == 0 {
            digits(out, nanos / 1_000_000, 3);
        } else if nanos % 1_000 == 0 {
            digits(out, nanos / 1_000, 6);
        } else {
            digits(out, nanos, 9);
        }
    }
    out.extend_from_slice(b"Z\"");
}

/// A JSON string as serde_json writes it: `"` and `\\` escaped, control characters as `\\b`,
/// `\\t`, `\\n`, `\\f`, `\\r` or `\\u00xx` (lowercase), everything else as it is.
pub(super) fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Nearly every string has nothing to escape: one pass to tell, one copy.
    if !bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\') {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0a => b"\\n",
            0x0c => b"\\f",
            0x0d => b"\\r",
            0x00..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The fingerprint of a usage event from its canonical payload bytes.
pub fn fingerprint_of(payload_bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(EVENT_TYPE.as_bytes());
    h.update([0]);
    h.update(payload_bytes);
    h.finalize().into()
}
