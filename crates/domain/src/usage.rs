//! The usage event, v1: a CloudEvents 1.0 JSON envelope whose `data` says that one GPU was used by
//! one tenant for an interval. Parsing and validation are one pure function from the raw Kafka
//! message to either a `UsageRecorded` or a `Rejection` with a precise, stable reason code.

use crate::gpu_seconds::{GpuSeconds, GpuSecondsError};
use crate::sku::is_known_sku;
use chrono::{DateTime, Datelike, Duration, SecondsFormat, Timelike, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use uuid::Uuid;

/// The CloudEvents `type` of a usage event, version 1.
pub const EVENT_TYPE: &str = "de.gpuledger.usage.recorded.v1";
/// The ledger kind and version under which usage events are stored.
pub const LEDGER_KIND: &str = "usage.recorded";
pub const LEDGER_VERSION: i16 = 1;
/// Kafka topic carrying usage events.
pub const TOPIC: &str = "gpu.usage.v1";

/// Limits. Everything that comes from outside is bounded.
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024;
pub const TENANT_ID_LEN_MAX: usize = 63;
pub const NODE_LEN_MAX: usize = 63;
pub const LABEL_VALUE_LEN_MAX: usize = 128;
pub const LABEL_KEY_LEN_MAX: usize = 32;
pub const LABELS_COUNT_MAX: usize = 8;
pub const PROJECT_LEN_MAX: usize = 64;
pub const SOURCE_LEN_MAX: usize = 256;
pub const INTERVAL_SECONDS_MAX: i64 = 3600;
/// How far in the future (by the ingester's clock) an interval may end: clock skew allowance.
pub const FUTURE_SKEW_SECONDS: i64 = 300;
pub const YEAR_MIN: i32 = 2020;
pub const YEAR_MAX: i32 = 2100;

/// Why a message was not ledgered. The code is stable (stored, counted, alerted on); the message
/// is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectionCode {
    OversizeMessage,
    InvalidUtf8,
    MalformedJson,
    NulCharacter,
    WrongShape,
    MissingField,
    UnknownField,
    UnsupportedSpecversion,
    UnknownEventType,
    InvalidEventId,
    InvalidField,
    OversizeField,
    KeyMismatch,
    InvalidTimestamp,
    EndBeforeStart,
    IntervalTooLong,
    FutureTimestamp,
    GpuSecondsNotDecimal,
    GpuSecondsNegative,
    GpuSecondsOutOfRange,
    GpuSecondsExceedInterval,
    UnknownSku,
    /// Same event id as a ledgered event, different content.
    Conflict,
    /// The GPU was already billed for part of this interval.
    Overlap,
    /// Valid to the validator, refused by the database (a constraint or a data limit the
    /// validator does not know); found by the ingester among its batch and set aside alone.
    RefusedByDatabase,
}

impl RejectionCode {
    pub const ALL: &'static [RejectionCode] = &[
        Self::OversizeMessage,
        Self::InvalidUtf8,
        Self::MalformedJson,
        Self::NulCharacter,
        Self::WrongShape,
        Self::MissingField,
        Self::UnknownField,
        Self::UnsupportedSpecversion,
        Self::UnknownEventType,
        Self::InvalidEventId,
        Self::InvalidField,
        Self::OversizeField,
        Self::KeyMismatch,
        Self::InvalidTimestamp,
        Self::EndBeforeStart,
        Self::IntervalTooLong,
        Self::FutureTimestamp,
        Self::GpuSecondsNotDecimal,
        Self::GpuSecondsNegative,
        Self::GpuSecondsOutOfRange,
        Self::GpuSecondsExceedInterval,
        Self::UnknownSku,
        Self::Conflict,
        Self::Overlap,
        Self::RefusedByDatabase,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OversizeMessage => "oversize_message",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::MalformedJson => "malformed_json",
            Self::NulCharacter => "nul_character",
            Self::WrongShape => "wrong_shape",
            Self::MissingField => "missing_field",
            Self::UnknownField => "unknown_field",
            Self::UnsupportedSpecversion => "unsupported_specversion",
            Self::UnknownEventType => "unknown_event_type",
            Self::InvalidEventId => "invalid_event_id",
            Self::InvalidField => "invalid_field",
            Self::OversizeField => "oversize_field",
            Self::KeyMismatch => "key_mismatch",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::EndBeforeStart => "end_before_start",
            Self::IntervalTooLong => "interval_too_long",
            Self::FutureTimestamp => "future_timestamp",
            Self::GpuSecondsNotDecimal => "gpu_seconds_not_decimal",
            Self::GpuSecondsNegative => "gpu_seconds_negative",
            Self::GpuSecondsOutOfRange => "gpu_seconds_out_of_range",
            Self::GpuSecondsExceedInterval => "gpu_seconds_exceed_interval",
            Self::UnknownSku => "unknown_sku",
            Self::Conflict => "conflict",
            Self::Overlap => "overlap",
            Self::RefusedByDatabase => "refused_by_database",
        }
    }

    pub fn parse(text: &str) -> Option<RejectionCode> {
        Self::ALL.iter().copied().find(|c| c.as_str() == text)
    }
}

impl fmt::Display for RejectionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused message: a code and a sentence, plus whatever identity could be read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: RejectionCode,
    pub message: String,
    pub event_id: Option<Uuid>,
    pub tenant_id: Option<String>,
}

impl Rejection {
    pub fn new(code: RejectionCode, message: impl Into<String>) -> Self {
        Rejection { code, message: message.into(), event_id: None, tenant_id: None }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// A validated usage event: this GPU was used by this tenant for `gpu_seconds` within
/// `[interval_start, interval_end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecorded {
    pub event_id: Uuid,
    pub source: String,
    pub tenant_id: String,
    pub gpu_sku: String,
    pub gpu_id: Uuid,
    pub node: String,
    pub project: String,
    pub job: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub interval_start: DateTime<Utc>,
    pub interval_end: DateTime<Utc>,
    pub gpu_seconds: GpuSeconds,
}

/// Canonical text of an instant: RFC 3339, UTC, `Z`, only as many fractional digits as needed
/// (0, 3 or 6).
pub fn format_instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Canonical text of a GPU id: NVIDIA's `GPU-<uuid>` form, lowercase.
pub fn format_gpu_id(id: Uuid) -> String {
    format!("GPU-{}", id.hyphenated())
}

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
    pub fn write_payload(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"data\":{\"gpu_id\":\"GPU-");
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
fn write_instant(out: &mut Vec<u8>, t: DateTime<Utc>) {
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
fn json_str(out: &mut Vec<u8>, s: &str) {
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

fn reject(code: RejectionCode, message: impl Into<String>) -> Rejection {
    Rejection::new(code, message)
}

fn contains_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(contains_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

fn req_str<'a, O: JsonObject>(obj: &'a O, name: &str, path: &str) -> Result<&'a str, Rejection> {
    match obj.field(name) {
        Field::Absent | Field::Null => Err(reject(RejectionCode::MissingField, format!("{path}.{name} is missing"))),
        Field::Str(s) => Ok(s),
        _ => Err(reject(RejectionCode::WrongShape, format!("{path}.{name} must be a string"))),
    }
}

fn opt_str<'a, O: JsonObject>(obj: &'a O, name: &str, path: &str) -> Result<Option<&'a str>, Rejection> {
    match obj.field(name) {
        // Absent is fine; `null` is not a string (the JSON Schema agrees).
        Field::Absent => Ok(None),
        Field::Str(s) => Ok(Some(s)),
        _ => Err(reject(RejectionCode::WrongShape, format!("{path}.{name} must be a string"))),
    }
}

fn bounded(value: &str, name: &str, len_max: usize) -> Result<(), Rejection> {
    if value.len() > len_max {
        return Err(reject(
            RejectionCode::OversizeField,
            format!("{name} is {} bytes long, at most {len_max} allowed", value.len()),
        ));
    }
    Ok(())
}

/// `[a-z0-9][a-z0-9-]*`, 2 to 63 characters: tenant ids are also Kafka keys and SAP references.
pub fn is_valid_tenant_id(s: &str) -> bool {
    let b = s.as_bytes();
    (2..=TENANT_ID_LEN_MAX).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Names of nodes, projects, jobs: `[A-Za-z0-9]` first, then `[A-Za-z0-9._:/-]`.
fn is_valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && b[0].is_ascii_alphanumeric() && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._:/-".contains(c))
}

fn is_valid_label_key(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_.-".contains(c))
}

fn parse_instant(text: &str, name: &str) -> Result<DateTime<Utc>, Rejection> {
    let bad = |why: &str| reject(RejectionCode::InvalidTimestamp, format!("data.{name} {why}: {text:?}"));
    if !text.ends_with('Z') || text.len() > 40 || text.as_bytes().get(10) != Some(&b'T') {
        return Err(bad("must be RFC 3339 in UTC, YYYY-MM-DDTHH:MM:SS[.ffffff]Z"));
    }
    if let Some((_, frac)) = text.trim_end_matches('Z').split_once('.') {
        if frac.is_empty() || frac.len() > 6 {
            return Err(bad("has more than microsecond precision"));
        }
    }
    let t = DateTime::parse_from_rfc3339(text).map_err(|_| bad("is not RFC 3339"))?;
    let t = t.with_timezone(&Utc);
    // chrono reads a leap second (second 60) as second 59 plus a nanosecond count of one second or
    // more; PostgreSQL would store it as the next minute, so the interval on record would differ
    // from the one validated. UTC instants on the wire have seconds 00..59.
    if t.timestamp_subsec_nanos() >= 1_000_000_000 {
        return Err(bad("is a leap second (second 60), which the ledger cannot store"));
    }
    if t.timestamp_subsec_nanos() % 1000 != 0 {
        return Err(bad("has more than microsecond precision"));
    }
    if !(YEAR_MIN..=YEAR_MAX).contains(&t.year()) {
        return Err(bad("is out of range"));
    }
    Ok(t)
}

fn parse_gpu_id(text: &str) -> Result<Uuid, Rejection> {
    let bad = || reject(RejectionCode::InvalidField, format!("data.gpu_id must be GPU-<uuid>: {text:?}"));
    let rest = text.strip_prefix("GPU-").ok_or_else(bad)?;
    if rest.len() != 36 {
        return Err(bad());
    }
    Uuid::try_parse(rest).map_err(|_| bad())
}

const DATA_FIELDS: &[&str] = &[
    "tenant_id",
    "gpu_sku",
    "gpu_id",
    "node",
    "project",
    "job",
    "labels",
    "interval_start",
    "interval_end",
    "gpu_seconds",
];

fn parse_data<O: JsonObject>(event_id: Uuid, source: String, data: &O) -> Result<UsageRecorded, Rejection> {
    if let Some(unknown) = data.keys().into_iter().find(|k| !DATA_FIELDS.contains(k)) {
        return Err(reject(RejectionCode::UnknownField, format!("data.{unknown} is not a field of usage v1")));
    }
    let tenant_id = req_str(data, "tenant_id", "data")?;
    bounded(tenant_id, "data.tenant_id", TENANT_ID_LEN_MAX)?;
    if !is_valid_tenant_id(tenant_id) {
        return Err(reject(RejectionCode::InvalidField, format!("data.tenant_id {tenant_id:?} is not a tenant id")));
    }
    let gpu_sku = req_str(data, "gpu_sku", "data")?;
    bounded(gpu_sku, "data.gpu_sku", 64)?;
    let gpu_id = req_str(data, "gpu_id", "data")?;
    bounded(gpu_id, "data.gpu_id", 64)?;
    let gpu_id = parse_gpu_id(gpu_id)?;
    let node = req_str(data, "node", "data")?;
    bounded(node, "data.node", NODE_LEN_MAX)?;
    if !is_valid_name(node) {
        return Err(reject(RejectionCode::InvalidField, format!("data.node {node:?} is not a valid name")));
    }
    let project = req_str(data, "project", "data")?;
    bounded(project, "data.project", PROJECT_LEN_MAX)?;
    if !is_valid_name(project) {
        return Err(reject(RejectionCode::InvalidField, format!("data.project {project:?} is not a valid name")));
    }
    let job = opt_str(data, "job", "data")?;
    if let Some(job) = job {
        bounded(job, "data.job", PROJECT_LEN_MAX)?;
        if !is_valid_name(job) {
            return Err(reject(RejectionCode::InvalidField, format!("data.job {job:?} is not a valid name")));
        }
    }
    let mut labels = BTreeMap::new();
    match data.field("labels") {
        Field::Absent => {}
        Field::Object(map) => {
            if map.len() > LABELS_COUNT_MAX {
                return Err(reject(
                    RejectionCode::OversizeField,
                    format!("data.labels has {} entries, at most {LABELS_COUNT_MAX} allowed", map.len()),
                ));
            }
            for k in map.keys() {
                bounded(k, "a label key", LABEL_KEY_LEN_MAX)?;
                if !is_valid_label_key(k) {
                    return Err(reject(RejectionCode::InvalidField, format!("label key {k:?} is not valid")));
                }
                let Field::Str(v) = map.field(k) else {
                    return Err(reject(RejectionCode::WrongShape, format!("data.labels.{k} must be a string")));
                };
                bounded(v, &format!("data.labels.{k}"), LABEL_VALUE_LEN_MAX)?;
                if v.chars().any(char::is_control) {
                    return Err(reject(RejectionCode::InvalidField, format!("data.labels.{k} has control characters")));
                }
                labels.insert(k.to_string(), v.to_string());
            }
        }
        _ => return Err(reject(RejectionCode::WrongShape, "data.labels must be an object")),
    }
    let start_text = req_str(data, "interval_start", "data")?;
    let end_text = req_str(data, "interval_end", "data")?;
    let seconds_text = match data.field("gpu_seconds") {
        Field::Absent | Field::Null => return Err(reject(RejectionCode::MissingField, "data.gpu_seconds is missing")),
        Field::Str(s) => s,
        // A JSON number would pass through a float in most parsers: the wire form is a string.
        Field::Number(n) => {
            return Err(reject(
                RejectionCode::WrongShape,
                format!("data.gpu_seconds must be a decimal string, not the number {n}"),
            ))
        }
        _ => return Err(reject(RejectionCode::WrongShape, "data.gpu_seconds must be a decimal string")),
    };
    if !is_known_sku(gpu_sku) {
        return Err(reject(RejectionCode::UnknownSku, format!("data.gpu_sku {gpu_sku:?} is not in the catalogue")));
    }
    let interval_start = parse_instant(start_text, "interval_start")?;
    let interval_end = parse_instant(end_text, "interval_end")?;
    if interval_end <= interval_start {
        return Err(reject(
            RejectionCode::EndBeforeStart,
            format!("interval ends at {end_text}, not after its start {start_text}"),
        ));
    }
    let duration = interval_end - interval_start;
    if duration > Duration::seconds(INTERVAL_SECONDS_MAX) {
        return Err(reject(
            RejectionCode::IntervalTooLong,
            format!("interval of {}s is longer than {INTERVAL_SECONDS_MAX}s", duration.num_seconds()),
        ));
    }
    let gpu_seconds = GpuSeconds::parse(seconds_text).map_err(|e| match e {
        GpuSecondsError::NotDecimal(_) => reject(
            RejectionCode::GpuSecondsNotDecimal,
            format!("data.gpu_seconds {seconds_text:?} is not a decimal number"),
        ),
        GpuSecondsError::Negative(_) => {
            reject(RejectionCode::GpuSecondsNegative, format!("data.gpu_seconds {seconds_text} is negative"))
        }
        GpuSecondsError::TooPrecise(_) => reject(
            RejectionCode::GpuSecondsOutOfRange,
            format!("data.gpu_seconds {seconds_text} has more than 6 fractional digits"),
        ),
    })?;
    let interval_seconds = interval_seconds(interval_start, interval_end);
    if gpu_seconds.value() > interval_seconds {
        return Err(reject(
            RejectionCode::GpuSecondsExceedInterval,
            format!("{gpu_seconds} GPU-seconds on one GPU in an interval of {interval_seconds}s"),
        ));
    }
    Ok(UsageRecorded {
        event_id,
        source,
        tenant_id: tenant_id.to_string(),
        gpu_sku: gpu_sku.to_string(),
        gpu_id,
        node: node.to_string(),
        project: project.to_string(),
        job: job.map(str::to_string),
        labels,
        interval_start,
        interval_end,
        gpu_seconds,
    })
}

/// Exact length of an interval in seconds, as a decimal with microsecond resolution.
pub fn interval_seconds(start: DateTime<Utc>, end: DateTime<Utc>) -> rust_decimal::Decimal {
    let micros = (end - start).num_microseconds().unwrap_or(i64::MAX);
    rust_decimal::Decimal::new(micros, 6)
}

/// Parses and validates one Kafka message. `key` is the message key, which must be the tenant id;
/// `now` is the ingester's clock, used only to refuse intervals in the future.
pub fn parse_usage_message(key: Option<&[u8]>, bytes: &[u8], now: DateTime<Utc>) -> Result<UsageRecorded, Rejection> {
    if bytes.len() > MESSAGE_BYTES_MAX {
        return Err(reject(
            RejectionCode::OversizeMessage,
            format!("message of {} bytes is larger than {MESSAGE_BYTES_MAX}", bytes.len()),
        ));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| reject(RejectionCode::InvalidUtf8, format!("message is not UTF-8: {e}")))?;
    // The fast path: a borrowed view of the message's strings and objects, validated by the same
    // code as the general path. It is taken only when it accepts the event; a message it cannot
    // read (escapes, numbers, arrays, nulls, repeated keys) or that the rules refuse goes the
    // general way, which names the reason exactly as it always has.
    if !bytes.iter().any(|&b| b == b'\\' || b < 0x20) {
        if let Some(env) = FastObject::parse(text) {
            if let Ok(e) = parse_envelope(key, &env, now, &mut (None, None)) {
                return Ok(e);
            }
        }
    }
    parse_general(key, text, now)
}

/// The general path of [`parse_usage_message`]: any JSON, every reason named.
fn parse_general(key: Option<&[u8]>, text: &str, now: DateTime<Utc>) -> Result<UsageRecorded, Rejection> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| reject(RejectionCode::MalformedJson, format!("message is not JSON: {e}")))?;
    if contains_nul(&value) {
        return Err(reject(RejectionCode::NulCharacter, "message contains a NUL character"));
    }
    let env = value.as_object().ok_or_else(|| reject(RejectionCode::WrongShape, "message is not a JSON object"))?;
    let mut identity = (None, None);
    let result = parse_envelope(key, env, now, &mut identity);
    result.map_err(|mut r| {
        r.event_id = identity.0;
        r.tenant_id = identity.1;
        r
    })
}

/// A JSON value as the validator reads it, from either path's objects.
enum Field<'a, O> {
    Absent,
    Null,
    Str(&'a str),
    Number(&'a serde_json::Number),
    Object(&'a O),
    Other,
}

/// A JSON object as the validator reads it: the general path's `serde_json::Map`, or the fast
/// path's [`FastObject`].
trait JsonObject: Sized {
    fn field(&self, name: &str) -> Field<'_, Self>;
    /// The keys, each once.
    fn keys(&self) -> Vec<&str>;
    fn len(&self) -> usize;
}

impl JsonObject for Map<String, Value> {
    fn field(&self, name: &str) -> Field<'_, Self> {
        match self.get(name) {
            None => Field::Absent,
            Some(Value::Null) => Field::Null,
            Some(Value::String(s)) => Field::Str(s),
            Some(Value::Number(n)) => Field::Number(n),
            Some(Value::Object(o)) => Field::Object(o),
            Some(_) => Field::Other,
        }
    }
    fn keys(&self) -> Vec<&str> {
        Map::keys(self).map(String::as_str).collect()
    }
    fn len(&self) -> usize {
        Map::len(self)
    }
}

/// The fast path's object: members in document order, strings borrowed from the message. It
/// reads only what usage events are made of — objects (at most three deep) whose values are
/// strings or such objects, in text without escapes or control characters — and nothing else;
/// anything else is for the general path. A key that comes twice means its last value, as in
/// serde_json's map (the innermost objects, labels, are counted and listed: there a repeated key
/// is left to the general path).
struct FastObject<'a>(Vec<(&'a str, FastValue<'a>)>);

enum FastValue<'a> {
    Str(&'a str),
    Object(FastObject<'a>),
}

impl JsonObject for FastObject<'_> {
    fn field(&self, name: &str) -> Field<'_, Self> {
        match self.0.iter().rev().find(|(k, _)| *k == name) {
            None => Field::Absent,
            Some((_, FastValue::Str(s))) => Field::Str(s),
            Some((_, FastValue::Object(o))) => Field::Object(o),
        }
    }
    fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.0.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<'a> FastObject<'a> {
    /// The object `text` holds, if it is one the fast path reads (the caller has made sure the
    /// text has no backslash, so no escapes).
    fn parse(text: &'a str) -> Option<FastObject<'a>> {
        let mut r = Reader { b: text.as_bytes(), text, at: 0 };
        let object = r.object(0)?;
        r.blanks();
        (r.at == r.b.len()).then_some(object)
    }
}

/// A cursor over JSON text without escapes.
struct Reader<'a> {
    b: &'a [u8],
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn blanks(&mut self) {
        while matches!(self.b.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.blanks();
        (self.b.get(self.at) == Some(&byte)).then(|| self.at += 1)
    }

    /// A string: everything up to the next quote (the text has no escapes).
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let end = start + memchr::memchr(b'"', &self.b[start..])?;
        self.at = end + 1;
        // Quotes are ASCII: both ends are character boundaries.
        Some(&self.text[start..end])
    }

    fn object(&mut self, depth: usize) -> Option<FastObject<'a>> {
        if depth > 2 {
            return None;
        }
        self.eat(b'{')?;
        let mut members: Vec<(&'a str, FastValue<'a>)> = Vec::with_capacity(12);
        if self.eat(b'}').is_some() {
            return Some(FastObject(members));
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            self.blanks();
            let value = match self.b.get(self.at)? {
                b'"' => FastValue::Str(self.string()?),
                b'{' => FastValue::Object(self.object(depth + 1)?),
                _ => return None,
            };
            if depth == 2 && members.iter().any(|(k, _)| *k == key) {
                return None;
            }
            members.push((key, value));
            self.blanks();
            match self.b.get(self.at)? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(FastObject(members));
                }
                _ => return None,
            }
        }
    }
}

fn parse_envelope<O: JsonObject>(
    key: Option<&[u8]>,
    env: &O,
    now: DateTime<Utc>,
    identity: &mut (Option<Uuid>, Option<String>),
) -> Result<UsageRecorded, Rejection> {
    let spec = req_str(env, "specversion", "envelope")?;
    if spec != "1.0" {
        return Err(reject(RejectionCode::UnsupportedSpecversion, format!("specversion {spec:?} is not 1.0")));
    }
    let ty = req_str(env, "type", "envelope")?;
    if ty != EVENT_TYPE {
        let shown: String = ty.chars().take(80).collect();
        return Err(reject(RejectionCode::UnknownEventType, format!("event type {shown:?} is not {EVENT_TYPE}")));
    }
    let id = req_str(env, "id", "envelope")?;
    let event_id = if id.len() == 36 { Uuid::try_parse(id).ok() } else { None }
        .ok_or_else(|| reject(RejectionCode::InvalidEventId, "id must be a UUID in its hyphenated form"))?;
    identity.0 = Some(event_id);
    let source = req_str(env, "source", "envelope")?;
    bounded(source, "source", SOURCE_LEN_MAX)?;
    if source.is_empty() || source.chars().any(char::is_control) {
        return Err(reject(RejectionCode::InvalidField, "source must be a non-empty URI-reference"));
    }
    for name in ["subject", "time", "datacontenttype", "dataschema"] {
        if let Some(v) = opt_str(env, name, "envelope")? {
            bounded(v, name, SOURCE_LEN_MAX)?;
        }
    }
    if let Some(ct) = opt_str(env, "datacontenttype", "envelope")? {
        if ct != "application/json" {
            return Err(reject(RejectionCode::InvalidField, format!("datacontenttype {ct:?} is not application/json")));
        }
    }
    let data = match env.field("data") {
        Field::Absent | Field::Null => return Err(reject(RejectionCode::MissingField, "envelope.data is missing")),
        Field::Object(o) => o,
        _ => return Err(reject(RejectionCode::WrongShape, "envelope.data must be an object")),
    };
    if let Field::Str(t) = data.field("tenant_id") {
        if t.len() <= TENANT_ID_LEN_MAX {
            identity.1 = Some(t.to_string());
        }
    }
    let usage = parse_data(event_id, source.to_string(), data)?;
    if key != Some(usage.tenant_id.as_bytes()) {
        let shown = key.map(|k| String::from_utf8_lossy(&k[..k.len().min(64)]).into_owned());
        return Err(reject(
            RejectionCode::KeyMismatch,
            format!("message key {shown:?} is not the tenant id {:?}", usage.tenant_id),
        ));
    }
    if usage.interval_end > now + Duration::seconds(FUTURE_SKEW_SECONDS) {
        return Err(reject(
            RejectionCode::FutureTimestamp,
            format!("interval ends at {} which is in the future", format_instant(usage.interval_end)),
        ));
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    fn good() -> Value {
        json!({
            "specversion": "1.0",
            "id": "7d8f2a4c-1b3e-4f5a-9c6d-0e1f2a3b4c5d",
            "source": "//fra1/dcgm-exporter/fra1-r01-n001",
            "type": EVENT_TYPE,
            "time": "2026-10-01T00:01:00Z",
            "datacontenttype": "application/json",
            "data": {
                "tenant_id": "rheinbank",
                "gpu_sku": "nvidia-h100-sxm",
                "gpu_id": "GPU-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                "node": "fra1-r01-n001",
                "project": "risk-models",
                "job": "train-42",
                "interval_start": "2026-10-01T00:00:00Z",
                "interval_end": "2026-10-01T00:01:00Z",
                "gpu_seconds": "60"
            }
        })
    }

    /// One helper for every case: mutate the good event, expect a code (or acceptance).
    fn check(mutate: impl FnOnce(&mut Value), expect: Option<RejectionCode>) {
        let mut v = good();
        mutate(&mut v);
        let bytes = serde_json::to_vec(&v).unwrap();
        let got = parse_usage_message(Some(b"rheinbank"), &bytes, now());
        match (got, expect) {
            (Ok(_), None) => {}
            (Err(r), Some(code)) => assert_eq!(r.code, code, "{}", r.message),
            (got, expect) => panic!("expected {expect:?}, got {got:?}"),
        }
    }

    #[test]
    fn the_good_event_is_accepted_and_canonical() {
        let bytes = serde_json::to_vec(&good()).unwrap();
        let e = parse_usage_message(Some(b"rheinbank"), &bytes, now()).unwrap();
        assert_eq!(e.gpu_seconds.to_string(), "60");
        let again = serde_json::to_vec(&e.to_cloudevent()).unwrap();
        let e2 = parse_usage_message(Some(b"rheinbank"), &again, now()).unwrap();
        assert_eq!(e, e2);
        assert_eq!(e.fingerprint(), e2.fingerprint());
        assert_eq!(UsageRecorded::from_payload(e.event_id, &e.payload_json()).unwrap(), e);
    }

    #[test]
    fn rules() {
        use RejectionCode::*;
        check(|v| v["data"]["gpu_seconds"] = json!("59.999999"), None);
        check(|v| v["data"]["gpu_seconds"] = json!("0"), None);
        check(|v| v["data"]["labels"] = json!({"team": "quant"}), None);
        check(|v| v["data"]["labels"] = json!(null), Some(WrongShape));
        check(|v| v["data"]["job"] = json!(null), Some(WrongShape));
        check(|v| v["time"] = json!(null), Some(WrongShape));
        check(|v| v["data"]["gpu_seconds"] = json!("0000000000000000000060"), Some(GpuSecondsNotDecimal));
        check(|v| v["data"]["gpu_seconds"] = json!(60), Some(WrongShape));
        check(|v| v["data"]["gpu_seconds"] = json!("NaN"), Some(GpuSecondsNotDecimal));
        check(|v| v["data"]["gpu_seconds"] = json!("1e2"), Some(GpuSecondsNotDecimal));
        check(|v| v["data"]["gpu_seconds"] = json!("-1"), Some(GpuSecondsNegative));
        check(|v| v["data"]["gpu_seconds"] = json!("1.0000001"), Some(GpuSecondsOutOfRange));
        check(|v| v["data"]["gpu_seconds"] = json!("60.000001"), Some(GpuSecondsExceedInterval));
        check(|v| v["data"]["interval_end"] = json!("2026-10-01T00:00:00Z"), Some(EndBeforeStart));
        check(|v| v["data"]["interval_end"] = json!("2026-09-30T23:59:00Z"), Some(EndBeforeStart));
        check(|v| v["data"]["interval_end"] = json!("2026-10-01T01:00:01Z"), Some(IntervalTooLong));
        check(|v| v["data"]["interval_end"] = json!("2026-10-01T00:01:00+01:00"), Some(InvalidTimestamp));
        check(|v| v["data"]["interval_end"] = json!("2026-10-01T00:01:00.0000001Z"), Some(InvalidTimestamp));
        // Leap seconds: chrono accepts second 60, PostgreSQL would store the next minute.
        check(|v| v["data"]["interval_end"] = json!("2026-10-01T00:00:60.5Z"), Some(InvalidTimestamp));
        check(|v| v["data"]["interval_start"] = json!("2026-09-30T23:59:60Z"), Some(InvalidTimestamp));
        check(
            |v| {
                v["data"]["interval_start"] = json!("2026-11-25T12:10:00Z");
                v["data"]["interval_end"] = json!("2026-11-25T12:11:00Z");
            },
            Some(FutureTimestamp),
        );
        check(|v| v["data"]["gpu_sku"] = json!("nvidia-rtx-9090"), Some(UnknownSku));
        check(|v| v["data"]["gpu_id"] = json!("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"), Some(InvalidField));
        check(|v| v["data"]["node"] = json!("n".repeat(64)), Some(OversizeField));
        check(|v| v["data"]["node"] = json!("a\u{0}b"), Some(NulCharacter));
        check(|v| v["data"]["tenant_id"] = json!("someone"), Some(KeyMismatch));
        check(|v| v["data"]["tenant_id"] = json!("Rhein Bank"), Some(InvalidField));
        check(|v| v["data"]["extra"] = json!(1), Some(UnknownField));
        check(|v| v["data"].as_object_mut().unwrap().clear(), Some(MissingField));
        check(|v| v["id"] = json!("nope"), Some(InvalidEventId));
        check(|v| v["specversion"] = json!("0.3"), Some(UnsupportedSpecversion));
        check(|v| v["type"] = json!("other"), Some(UnknownEventType));
        check(|v| v["data"] = json!([]), Some(WrongShape));
        check(|v| *v = json!("just a string"), Some(WrongShape));
        check(
            |v| v["data"]["labels"] = json!((0..9).map(|i| (format!("k{i}"), json!("v"))).collect::<Map<_, _>>()),
            Some(OversizeField),
        );
    }

    #[test]
    fn the_fast_path_reads_a_plain_event_and_steps_aside_for_odd_ones() {
        let fast = |text: &str| {
            FastObject::parse(text).map(|env| parse_envelope(Some(b"rheinbank"), &env, now(), &mut (None, None)))
        };
        let text = serde_json::to_string(&good()).unwrap();
        assert!(matches!(fast(&text), Some(Ok(_))), "a plain event takes the fast path");
        let spaced = serde_json::to_string_pretty(&good()).unwrap();
        assert_eq!(fast(&spaced).unwrap().unwrap(), fast(&text).unwrap().unwrap(), "blanks are read");
        let number = text.replace("\"60\"", "60");
        assert!(fast(&number).is_none(), "a number is not read by the fast path");
        let twice = text.replacen('{', "{\"type\":\"x\",", 1);
        assert!(matches!(fast(&twice), Some(Ok(_))), "a key that comes twice means its last value");
        let labels = text.replacen("\"data\":{", "\"data\":{\"labels\":{\"a\":\"1\",\"a\":\"2\"},", 1);
        assert!(fast(&labels).is_none(), "but not among the labels");
        assert!(fast(&format!("{text} x")).is_none(), "nor anything after the object");
        assert!(fast(&text.replacen('}', ",}", 1)).is_none(), "nor a trailing comma");
    }

    #[test]
    fn bytes_that_are_not_json() {
        let r = |b: &[u8]| parse_usage_message(Some(b"rheinbank"), b, now()).unwrap_err().code;
        assert_eq!(r(b"\xff\xfe{}"), RejectionCode::InvalidUtf8);
        assert_eq!(r(b"{\"specversion\":"), RejectionCode::MalformedJson);
        assert_eq!(r(b""), RejectionCode::MalformedJson);
        assert_eq!(r(&vec![b' '; MESSAGE_BYTES_MAX + 1]), RejectionCode::OversizeMessage);
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9./:-]{1,20}",
            any::<String>(),
            proptest::collection::vec(
                prop_oneof![
                    Just('"'),
                    Just('\\'),
                    Just('/'),
                    Just('\u{7f}'),
                    Just('é'),
                    (0u8..0x20).prop_map(char::from)
                ],
                0..12
            )
            .prop_map(|c| c.into_iter().collect()),
        ]
    }

    prop_compose! {
        fn any_event()(
            id in any::<u128>(), gpu in any::<u128>(), start in 0i64..4_000_000_000, micros in 0i64..3_600_000_000,
            seconds in 0i64..3_600_000_000, scale in 0u32..=6,
            source in any_text(), tenant in any_text(), sku in any_text(), node in any_text(), project in any_text(),
            job in proptest::option::of(any_text()),
            labels in proptest::collection::btree_map(any_text(), any_text(), 0..4),
        ) -> UsageRecorded {
            let start = DateTime::<Utc>::from_timestamp(start, 0).unwrap() + Duration::microseconds(micros % 1_000_000);
            UsageRecorded {
                event_id: Uuid::from_u128(id),
                source,
                tenant_id: tenant,
                gpu_sku: sku,
                gpu_id: Uuid::from_u128(gpu),
                node,
                project,
                job,
                labels,
                interval_start: start,
                interval_end: start + Duration::microseconds(micros.max(1)),
                gpu_seconds: GpuSeconds::new(Decimal::new(seconds, scale)).unwrap(),
            }
        }
    }

    /// Mutations a producer might make of a good event: each field replaced by an odd value of
    /// any JSON type, extension attributes, escapes, repeated keys.
    fn mutated_message() -> impl Strategy<Value = String> {
        let field = prop_oneof![
            Just("specversion"),
            Just("id"),
            Just("source"),
            Just("type"),
            Just("time"),
            Just("subject"),
            Just("datacontenttype"),
            Just("data"),
            Just("data.tenant_id"),
            Just("data.gpu_sku"),
            Just("data.gpu_id"),
            Just("data.node"),
            Just("data.project"),
            Just("data.job"),
            Just("data.labels"),
            Just("data.interval_start"),
            Just("data.interval_end"),
            Just("data.gpu_seconds"),
            Just("data.extra"),
            Just("ext"),
        ];
        let value = prop_oneof![
            Just(json!(null)),
            Just(json!(1)),
            Just(json!(1.5)),
            Just(json!(true)),
            Just(json!([])),
            Just(json!({})),
            Just(json!({"team": "quant"})),
            Just(json!({"team": 1})),
            Just(json!("60")),
            Just(json!("59.5")),
            Just(json!("2026-10-01T00:00:30Z")),
            Just(json!("GPU-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")),
            Just(json!("rheinbank")),
            Just(json!("nvidia-h100-sxm")),
            Just(json!("a\"b\\c")),
            Just(json!("é/ü")),
            any_text().prop_map(Value::String),
        ];
        (proptest::collection::vec((field, value), 0..4), any::<bool>()).prop_map(|(changes, repeat)| {
            let mut v = good();
            for (f, val) in changes {
                match f.split_once('.') {
                    Some((_, inner)) => {
                        if let Some(o) = v["data"].as_object_mut() {
                            o.insert(inner.to_string(), val);
                        }
                    }
                    None => {
                        v[f] = val;
                    }
                }
            }
            let mut text = serde_json::to_string(&v).unwrap();
            if repeat {
                // The same key twice: serde_json's map keeps the last one.
                text = text.replacen("{\"data\":", "{\"specversion\":\"0.9\",\"data\":", 1);
            }
            text
        })
    }

    proptest! {
        /// The canonical bytes' instants, written in place, are exactly `format_instant`'s.
        #[test]
        fn instants_are_written_as_format_instant_writes_them(
            secs in -62_135_596_800i64..400_000_000_000,
            nanos in prop_oneof![
                Just(0u32),
                (0u32..1000).prop_map(|m| m * 1_000_000),
                (0u32..1_000_000).prop_map(|u| u * 1000),
                0u32..2_000_000_000,
            ],
        ) {
            // Second 60 (nanos of a billion or more) exists only where a minute ends.
            let Some(t) = DateTime::<Utc>::from_timestamp(secs, nanos) else { return Ok(()) };
            let mut out = Vec::new();
            write_instant(&mut out, t);
            let mut expected = Vec::new();
            json_str(&mut expected, &format_instant(t));
            prop_assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8(expected).unwrap());
        }

        #[test]
        fn canonical_bytes_are_serde_jsons(e in any_event()) {
            prop_assert_eq!(e.payload_bytes(), serde_json::to_vec(&e.payload_json()).unwrap());
        }

        /// The fast path and the general path agree on every message: same event, or (the fast
        /// path stepping aside) the same rejection.
        #[test]
        fn the_fast_path_agrees_with_the_general_path(text in mutated_message()) {
            let fast = parse_usage_message(Some(b"rheinbank"), text.as_bytes(), now());
            let general = parse_general(Some(b"rheinbank"), &text, now());
            prop_assert_eq!(fast, general);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_usage_message(Some(b"rheinbank"), &bytes, now());
        }

        #[test]
        fn gpu_seconds_within_the_interval_are_accepted_exactly(
            len_s in 1i64..=3600, units in 0u64..=1_000_000u64, start_min in 0i64..40_000,
        ) {
            let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap() + Duration::minutes(start_min);
            let end = start + Duration::seconds(len_s);
            let seconds = (Decimal::from(len_s) * Decimal::new(units as i64, 6)).round_dp(6);
            let mut v = good();
            v["data"]["interval_start"] = json!(format_instant(start));
            v["data"]["interval_end"] = json!(format_instant(end));
            v["data"]["gpu_seconds"] = json!(seconds.to_string());
            let e = parse_usage_message(Some(b"rheinbank"), &serde_json::to_vec(&v).unwrap(), now()).unwrap();
            prop_assert_eq!(e.gpu_seconds.value(), seconds);
            let over = Decimal::from(len_s) + Decimal::new(1, 6);
            v["data"]["gpu_seconds"] = json!(over.to_string());
            let r = parse_usage_message(Some(b"rheinbank"), &serde_json::to_vec(&v).unwrap(), now()).unwrap_err();
            prop_assert_eq!(r.code, RejectionCode::GpuSecondsExceedInterval);
        }
    }
}
