//! Why a message was not ledgered: a stable reason code and a message for people.

use std::fmt;
use uuid::Uuid;

/// Why a message was not ledgered. The code is stable (stored, counted, alerted on); the message
/// is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectionCode {
    OversizeMessage,
    InvalidUtf8,
    MalformedJson,
    /// A member name repeats in one object (I-JSON, RFC 7493): readers would disagree on it.
    DuplicateMember,
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
    /// `data.mig_instance` / `data.mig_profile` malformed, or one without the other.
    InvalidMig,
    /// `data.energy_wh` is not an exact non-negative decimal of at most 6 fractional digits.
    InvalidEnergy,
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
        Self::DuplicateMember,
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
        Self::InvalidMig,
        Self::InvalidEnergy,
        Self::Conflict,
        Self::Overlap,
        Self::RefusedByDatabase,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OversizeMessage => "oversize_message",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::MalformedJson => "malformed_json",
            Self::DuplicateMember => "duplicate_member",
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
            Self::InvalidMig => "invalid_mig",
            Self::InvalidEnergy => "invalid_energy",
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
