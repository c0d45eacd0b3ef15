//! The rules of a usage event's fields: each read from either path's JSON objects and checked,
//! with the reason code of the first rule broken.

use super::*;

pub(super) fn reject(code: RejectionCode, message: impl Into<String>) -> Rejection {
    Rejection::new(code, message)
}

pub(super) fn contains_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(contains_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

pub(super) fn req_str<'a, O: JsonObject>(obj: &'a O, name: &str, path: &str) -> Result<&'a str, Rejection> {
    match obj.field(name) {
        Field::Absent | Field::Null => Err(reject(RejectionCode::MissingField, format!("{path}.{name} is missing"))),
        Field::Str(s) => Ok(s),
        _ => Err(reject(RejectionCode::WrongShape, format!("{path}.{name} must be a string"))),
    }
}

pub(super) fn opt_str<'a, O: JsonObject>(obj: &'a O, name: &str, path: &str) -> Result<Option<&'a str>, Rejection> {
    match obj.field(name) {
        // Absent is fine; `null` is not a string (the JSON Schema agrees).
        Field::Absent => Ok(None),
        Field::Str(s) => Ok(Some(s)),
        _ => Err(reject(RejectionCode::WrongShape, format!("{path}.{name} must be a string"))),
    }
}

/// A length bound in characters (Unicode scalar values), as JSON Schema's `maxLength` counts: the
/// schema and the ingester refuse the same strings. (The whole message is bounded in bytes.)
pub(super) fn bounded(value: &str, name: &str, len_max: usize) -> Result<(), Rejection> {
    // Fewer bytes than the bound means fewer characters: most values are not counted.
    if value.len() > len_max {
        let chars = value.chars().count();
        if chars > len_max {
            return Err(reject(
                RejectionCode::OversizeField,
                format!("{name} is {chars} characters long, at most {len_max} allowed"),
            ));
        }
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
pub(super) fn is_valid_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && b[0].is_ascii_alphanumeric() && b.iter().all(|c| c.is_ascii_alphanumeric() || b"._:/-".contains(c))
}

pub(super) fn is_valid_label_key(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_.-".contains(c))
}

pub(super) fn parse_instant(text: &str, name: &str) -> Result<DateTime<Utc>, Rejection> {
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

pub(super) fn parse_gpu_id(text: &str) -> Result<Uuid, Rejection> {
    let bad = || reject(RejectionCode::InvalidField, format!("data.gpu_id must be GPU-<uuid>: {text:?}"));
    let rest = text.strip_prefix("GPU-").ok_or_else(bad)?;
    if rest.len() != 36 {
        return Err(bad());
    }
    Uuid::try_parse(rest).map_err(|_| bad())
}

pub(super) const DATA_FIELDS: &[&str] = &[
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
    "mig_instance",
    "mig_profile",
    "energy_wh",
];

pub(super) fn parse_data<O: JsonObject>(event_id: Uuid, source: String, data: &O) -> Result<UsageRecorded, Rejection> {
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
    let node = required_name(data, "node", NODE_LEN_MAX)?;
    let project = required_name(data, "project", PROJECT_LEN_MAX)?;
    let job = opt_str(data, "job", "data")?.map(|v| valid_name(v, "job", PROJECT_LEN_MAX)).transpose()?;
    let labels = labels_field(data)?;
    let start_text = req_str(data, "interval_start", "data")?;
    let end_text = req_str(data, "interval_end", "data")?;
    let seconds_text = seconds_text(data)?;
    let mig = mig_field(data)?;
    let energy_wh = energy_field(data)?;
    // A SKU the catalogue does not list is refused by the ingester's decision (the catalogue is
    // reference data in the ledger); one that cannot be a SKU id at all, here, with the same code.
    if !is_valid_sku_id(gpu_sku) {
        return Err(reject(RejectionCode::UnknownSku, format!("data.gpu_sku {gpu_sku:?} is not a SKU id")));
    }
    let (interval_start, interval_end) = interval(start_text, end_text)?;
    let gpu_seconds = gpu_seconds_within(seconds_text, interval_start, interval_end)?;
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
        mig,
        energy_wh,
    })
}

/// A required name field (`node`, `project`): bounded, and a valid name.
fn required_name<'a, O: JsonObject>(data: &'a O, name: &str, len_max: usize) -> Result<&'a str, Rejection> {
    valid_name(req_str(data, name, "data")?, name, len_max)
}

/// `v`, the value of the name field `data.{name}`, if it is bounded and a valid name.
fn valid_name<'a>(v: &'a str, name: &str, len_max: usize) -> Result<&'a str, Rejection> {
    bounded(v, &format!("data.{name}"), len_max)?;
    if !is_valid_name(v) {
        return Err(reject(RejectionCode::InvalidField, format!("data.{name} {v:?} is not a valid name")));
    }
    Ok(v)
}

/// `data.labels`: absent, or an object of at most [`LABELS_COUNT_MAX`] valid keys with string
/// values free of control characters.
fn labels_field<O: JsonObject>(data: &O) -> Result<BTreeMap<String, String>, Rejection> {
    let mut labels = BTreeMap::new();
    let map = match data.field("labels") {
        Field::Absent => return Ok(labels),
        Field::Object(map) => map,
        _ => return Err(reject(RejectionCode::WrongShape, "data.labels must be an object")),
    };
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
    Ok(labels)
}

/// The text of `data.gpu_seconds`, which must be a decimal string.
fn seconds_text<O: JsonObject>(data: &O) -> Result<&str, Rejection> {
    match data.field("gpu_seconds") {
        Field::Absent | Field::Null => Err(reject(RejectionCode::MissingField, "data.gpu_seconds is missing")),
        Field::Str(s) => Ok(s),
        // A JSON number would pass through a float in most parsers: the wire form is a string.
        Field::Number(n) => Err(reject(
            RejectionCode::WrongShape,
            format!("data.gpu_seconds must be a decimal string, not the number {n}"),
        )),
        _ => Err(reject(RejectionCode::WrongShape, "data.gpu_seconds must be a decimal string")),
    }
}

/// The interval `[start, end)`: two instants, the end after the start, at most
/// [`INTERVAL_SECONDS_MAX`] long.
fn interval(start_text: &str, end_text: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), Rejection> {
    let interval_start = parse_instant(start_text, "interval_start")?;
    let interval_end = parse_instant(end_text, "interval_end")?;
    if interval_end <= interval_start {
        return Err(reject(
            RejectionCode::EndBeforeStart,
            format!("interval ends at {end_text}, not after its start {start_text}"),
        ));
    }
    if interval_end - interval_start > Duration::seconds(INTERVAL_SECONDS_MAX) {
        // The exact length, with its fraction: "3600.5s", not a truncated "3600s".
        let length = interval_seconds(interval_start, interval_end).normalize();
        return Err(reject(
            RejectionCode::IntervalTooLong,
            format!("interval of {length}s is longer than {INTERVAL_SECONDS_MAX}s"),
        ));
    }
    Ok((interval_start, interval_end))
}

/// `data.gpu_seconds` as exact GPU-seconds, no more than the interval holds.
fn gpu_seconds_within(text: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<GpuSeconds, Rejection> {
    let gpu_seconds = GpuSeconds::parse(text).map_err(|e| match e {
        GpuSecondsError::NotDecimal(_) => {
            reject(RejectionCode::GpuSecondsNotDecimal, format!("data.gpu_seconds {text:?} is not a decimal number"))
        }
        GpuSecondsError::Negative(_) => {
            reject(RejectionCode::GpuSecondsNegative, format!("data.gpu_seconds {text} is negative"))
        }
        GpuSecondsError::TooPrecise(_) => reject(
            RejectionCode::GpuSecondsOutOfRange,
            format!("data.gpu_seconds {text} has more than 6 fractional digits"),
        ),
    })?;
    let interval_seconds = interval_seconds(start, end);
    if gpu_seconds.value() > interval_seconds {
        // Both exact, in their shortest form ("60.25s", not "60.250000s").
        let length = interval_seconds.normalize();
        return Err(reject(
            RejectionCode::GpuSecondsExceedInterval,
            format!("{gpu_seconds} GPU-seconds on one GPU in an interval of {length}s"),
        ));
    }
    Ok(gpu_seconds)
}

/// Exact length of an interval in seconds, as a decimal with microsecond resolution.
pub fn interval_seconds(start: DateTime<Utc>, end: DateTime<Utc>) -> rust_decimal::Decimal {
    let micros = (end - start).num_microseconds().unwrap_or(i64::MAX);
    rust_decimal::Decimal::new(micros, 6)
}
