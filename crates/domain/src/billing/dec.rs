//! Decimals on the wire: always JSON strings (`"2.50"`), never JSON numbers, so that no float
//! ever parses a price or an amount. Used with `#[serde(with = "crate::billing::dec")]`.

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serializer};
use std::str::FromStr;

pub fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&d.to_string())
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(text) => parse(&text).map_err(serde::de::Error::custom),
        other => Err(serde::de::Error::custom(format!(
            "{other} must be a string holding a plain decimal number such as \"2.50\" (JSON numbers may pass through floats)"
        ))),
    }
}

/// A plain decimal: optional leading `-`, digits, optional fraction. No exponent, no blanks.
pub fn parse(text: &str) -> Result<Decimal, String> {
    let body = text.strip_prefix('-').unwrap_or(text);
    let mut parts = body.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    let ok = !int.is_empty()
        && int.len() <= 20
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.len() <= 12 && f.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        return Err(format!("{text:?} is not a plain decimal number such as \"2.50\""));
    }
    Decimal::from_str(text).map_err(|e| format!("{text:?}: {e}"))
}

/// Optional decimals, same rules.
pub mod option {
    use super::*;
    pub fn serialize<S: Serializer>(d: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&d.to_string()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::String(text) => parse(&text).map(Some).map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!("{other} must be a string holding a plain decimal number"))),
        }
    }
}

/// Money as it appears on documents: exactly two fractional digits (`Money::round_cents`, for the
/// callers that still hold amounts as bare decimals).
pub fn cents(d: Decimal) -> Decimal {
    crate::money::Money::new(d).round_cents().amount()
}

/// A fixed number of fractional digits (rounded half away from zero), for quantities and prices.
pub fn fixed(d: Decimal, dp: u32) -> Decimal {
    let mut r = d.round_dp_with_strategy(dp, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    r.rescale(dp);
    if r.is_zero() {
        r.set_sign_positive(true);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_decimals_only() {
        assert_eq!(parse("2.50").unwrap().to_string(), "2.50");
        assert_eq!(parse("-0.5").unwrap().to_string(), "-0.5");
        for bad in ["", "1e3", " 1", "1.", ".5", "NaN", "+1", "1,5", "0x10"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cents_round_half_away_from_zero() {
        assert_eq!(cents(Decimal::new(1005, 3)).to_string(), "1.01");
        assert_eq!(cents(Decimal::new(-1005, 3)).to_string(), "-1.01");
        assert_eq!(cents(Decimal::new(1004, 3)).to_string(), "1.00");
        assert_eq!(cents(Decimal::new(-1, 3)).to_string(), "0.00");
    }
}
