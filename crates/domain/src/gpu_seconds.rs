//! `GpuSeconds`: an exact, non-negative decimal amount of GPU time. Never a float.

use rust_decimal::Decimal;
use std::fmt;
use std::str::FromStr;

/// Most fractional digits a GPU-seconds amount may carry (microsecond resolution).
pub const GPU_SECONDS_SCALE_MAX: u32 = 6;

/// An exact amount of GPU time in seconds: non-negative, at most six fractional digits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GpuSeconds(Decimal);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuSecondsError {
    #[error("not an exact decimal number: {0:?}")]
    NotDecimal(String),
    #[error("negative GPU-seconds: {0}")]
    Negative(Decimal),
    #[error("more than {GPU_SECONDS_SCALE_MAX} fractional digits: {0}")]
    TooPrecise(String),
}

impl GpuSeconds {
    pub const ZERO: GpuSeconds = GpuSeconds(Decimal::ZERO);

    /// Checks range and scale; the value is kept normalized so that `60`, `60.0` and `60.000`
    /// are the same amount with the same canonical text.
    pub fn new(value: Decimal) -> Result<Self, GpuSecondsError> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(GpuSecondsError::Negative(value));
        }
        let value = value.normalize();
        if value.scale() > GPU_SECONDS_SCALE_MAX {
            return Err(GpuSecondsError::TooPrecise(value.to_string()));
        }
        // Negative zero normalizes to zero.
        Ok(GpuSeconds(value.abs()))
    }

    /// Parses the wire form: a plain decimal string such as `"60"` or `"59.25"`, with at most 20
    /// integer and [`GPU_SECONDS_SCALE_MAX`] fractional digits (as the JSON Schema's pattern says:
    /// `"60.0000000"` has seven, and is refused like `"60.0000001"`).
    /// Exponents, `NaN`, `Infinity`, signs other than a leading `-`, and blanks are refused.
    pub fn parse(text: &str) -> Result<Self, GpuSecondsError> {
        let (int, frac) = match text.trim_start_matches('-').split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (text.trim_start_matches('-'), None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let plain = text.len() <= 40
            && text.len() - int.len() - frac.map_or(0, |f| f.len() + 1) <= 1
            && digits(int)
            && int.len() <= 20
            && frac.is_none_or(digits);
        if !plain {
            return Err(GpuSecondsError::NotDecimal(text.to_string()));
        }
        if text.starts_with('-') {
            // Refused textually so that "-0" is negative too, as the JSON Schema says.
            let value = Decimal::from_str(text).map_err(|_| GpuSecondsError::NotDecimal(text.to_string()))?;
            return Err(GpuSecondsError::Negative(value));
        }
        if frac.is_some_and(|f| f.len() > GPU_SECONDS_SCALE_MAX as usize) {
            return Err(GpuSecondsError::TooPrecise(text.to_string()));
        }
        // At most 26 digits: exact in a Decimal (28 significant digits).
        let value = Decimal::from_str_exact(text).map_err(|_| GpuSecondsError::NotDecimal(text.to_string()))?;
        Self::new(value)
    }

    pub fn value(self) -> Decimal {
        self.0
    }

    pub fn checked_add(self, other: GpuSeconds) -> Option<GpuSeconds> {
        self.0.checked_add(other.0).map(GpuSeconds)
    }
}

impl fmt::Display for GpuSeconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(text: &str, expect: Result<&str, ()>) {
        let got = GpuSeconds::parse(text).map(|g| g.to_string()).map_err(|_| ());
        assert_eq!(got.as_deref().map_err(|_| ()), expect, "input {text:?}");
    }

    #[test]
    fn wire_forms() {
        check("60", Ok("60"));
        check("60.000", Ok("60"));
        check("0.000001", Ok("0.000001"));
        check("0", Ok("0"));
        check("-0", Err(()));
        check("59.5", Ok("59.5"));
        check("0.0000001", Err(()));
        // Seven fractional digits are too many even when they are zeros (the schema's pattern).
        check("60.0000000", Err(()));
        check("60.000000", Ok("60"));
        check("-", Err(()));
        check("--1", Err(()));
        check("1-", Err(()));
        check("00000000000000000060", Ok("60"));
        check("000000000000000000060", Err(()));
        check("-1", Err(()));
        check("NaN", Err(()));
        check("Infinity", Err(()));
        check("1e3", Err(()));
        check("", Err(()));
        check(" 1", Err(()));
        check("+1", Err(()));
        check("1.", Err(()));
        check(".5", Err(()));
        check("1.2.3", Err(()));
        check("99999999999999999999999999999999", Err(()));
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(units in 0u64..=3_600_000_000u64, scale in 0u32..=6) {
            let d = Decimal::new(units as i64, scale);
            let g = GpuSeconds::new(d).unwrap();
            let back = GpuSeconds::parse(&g.to_string()).unwrap();
            prop_assert_eq!(g, back);
            prop_assert_eq!(back.value(), d);
        }

        #[test]
        fn any_text_never_panics(text in "\\PC{0,40}") {
            let _ = GpuSeconds::parse(&text);
        }

        #[test]
        fn trailing_zeros_do_not_change_value(units in 0u64..=3_600_000u64, zeros in 0usize..=3) {
            let base = Decimal::new(units as i64, 3).to_string();
            let padded = if base.contains('.') { format!("{base}{}", "0".repeat(zeros)) } else { base.clone() };
            prop_assert_eq!(GpuSeconds::parse(&base).unwrap(), GpuSeconds::parse(&padded).unwrap());
        }
    }
}
