//! From the raw Kafka message to a `UsageRecorded` or a `Rejection`: size, UTF-8, the fast path
//! or the general one, then the CloudEvents envelope and its `data`.

use super::*;
use crate::ijson::JsonError;

/// The key a message is checked against: a Kafka message's own (which must be the tenant id), or
/// none for an event that will be keyed by its own tenant ([`parse_usage_event`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum Key<'a> {
    Message(Option<&'a [u8]>),
    OwnTenant,
}

impl<'a> Key<'a> {
    /// The message key when it is not `tenant` (a `key_mismatch`).
    fn other_than(self, tenant: &str) -> Option<Option<&'a [u8]>> {
        match self {
            Key::Message(k) if k != Some(tenant.as_bytes()) => Some(k),
            _ => None,
        }
    }
}

/// Parses and validates one Kafka message. `key` is the message key, which must be the tenant id;
/// `now` is the ingester's clock, used only to refuse intervals in the future.
pub fn parse_usage_message(key: Option<&[u8]>, bytes: &[u8], now: DateTime<Utc>) -> Result<UsageRecorded, Rejection> {
    parse_keyed(Key::Message(key), bytes, now)
}

/// Parses and validates an event that its producer sends without a Kafka key and that will be
/// produced keyed by its own `data.tenant_id` (`POST /v1/events`): the same verdict as
/// [`parse_usage_message`] with that key, from one reading of the bytes (`key_mismatch` cannot
/// happen).
pub fn parse_usage_event(bytes: &[u8], now: DateTime<Utc>) -> Result<UsageRecorded, Rejection> {
    parse_keyed(Key::OwnTenant, bytes, now)
}

fn parse_keyed(key: Key<'_>, bytes: &[u8], now: DateTime<Utc>) -> Result<UsageRecorded, Rejection> {
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
    // read (escapes, numbers, arrays, nulls, repeated names) or that the rules refuse goes the
    // general way, which names the reason exactly as it always has.
    if !has_escape_or_control(bytes) {
        if let Some(env) = FastObject::parse(text) {
            if let Ok(e) = parse_envelope(key, &env, now, &mut (None, None)) {
                return Ok(e);
            }
        }
    }
    parse_general(key, text, now)
}

/// Whether the message holds a backslash or a control character (then the fast path cannot read
/// it). Every byte is looked at, without stopping early, so that the compiler can check many at
/// once: nearly every message holds neither.
fn has_escape_or_control(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |seen, &b| seen | (b == b'\\') | (b < 0x20))
}

/// The general path of [`parse_usage_message`]: any JSON, every reason named.
pub(super) fn parse_general(key: Key<'_>, text: &str, now: DateTime<Utc>) -> Result<UsageRecorded, Rejection> {
    // I-JSON (RFC 7493): a member name twice in one object is refused at any depth, never read
    // as its last value (another reader of the same bytes may take the first).
    let value: Value = crate::ijson::from_str(text).map_err(|e| match e {
        JsonError::Malformed(e) => reject(RejectionCode::MalformedJson, format!("message is not JSON: {e}")),
        JsonError::DuplicateMember(m) => reject(RejectionCode::DuplicateMember, format!("message is not I-JSON: {m}")),
    })?;
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

pub(super) fn parse_envelope<O: JsonObject>(
    key: Key<'_>,
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
    if let Some(key) = key.other_than(&usage.tenant_id) {
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
