//! `WattHours`: an exact, non-negative decimal amount of energy a device used. Never a float.

use rust_decimal::Decimal;
use std::fmt;

/// Most fractional digits an energy amount may carry (a milliwatt-hour has three; the
/// exporter's counter is in millijoules, and a millijoule is 0.000000277… Wh, so producers round).
pub const ENERGY_SCALE_MAX: u32 = 6;
/// Most integer digits of the wire form.
const ENERGY_INT_DIGITS_MAX: usize = 20;

/// Exact energy in watt-hours: non-negative, at most [`ENERGY_SCALE_MAX`] fractional digits,
/// kept normalized so that `1.5` and `1.500` are the same amount with the same canonical text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WattHours(Decimal);

impl WattHours {
    pub const ZERO: WattHours = WattHours(Decimal::ZERO);

    /// Checks range and scale of a stored amount (a `numeric` read back from the ledger).
    pub fn new(value: Decimal) -> Option<WattHours> {
        let value = value.normalize();
        (!value.is_sign_negative() || value.is_zero())
            .then_some(value.abs())
            .filter(|v| v.scale() <= ENERGY_SCALE_MAX)
            .map(WattHours)
    }

    /// Parses the wire form, exactly the JSON Schema's pattern `^[0-9]{1,20}(\.[0-9]{1,6})?$`:
    /// no sign, no exponent, no blanks, no `NaN`.
    pub fn parse(text: &str) -> Option<WattHours> {
        let (int, frac) = match text.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (text, None),
        };
        let digits = |s: &str, max: usize| (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(int, ENERGY_INT_DIGITS_MAX) || !frac.is_none_or(|f| digits(f, ENERGY_SCALE_MAX as usize)) {
            return None;
        }
        // At most 26 digits: exact in a Decimal (28 significant digits).
        Decimal::from_str_exact(text).ok().and_then(WattHours::new)
    }

    pub fn value(self) -> Decimal {
        self.0
    }

    pub fn checked_add(self, other: WattHours) -> Option<WattHours> {
        self.0.checked_add(other.0).map(WattHours)
    }
}

impl fmt::Display for WattHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wire_forms() {
        let p = |t: &str| WattHours::parse(t).map(|w| w.to_string());
        assert_eq!(p("0").as_deref(), Some("0"));
        assert_eq!(p("12.500").as_deref(), Some("12.5"));
        assert_eq!(p("0.000001").as_deref(), Some("0.000001"));
        assert_eq!(p("99999999999999999999.999999").as_deref(), Some("99999999999999999999.999999"));
        for bad in ["", "-1", "-0", "+1", "1.", ".5", "1e3", "NaN", " 1", "1,5", "0.0000001", "1.0000000", "٣"] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
        assert_eq!(p(&"9".repeat(21)), None);
        assert_eq!(WattHours::new(Decimal::new(-1, 0)), None);
        assert_eq!(WattHours::new(Decimal::new(1, 7)), None);
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(units in 0u64..=u64::MAX / 2, scale in 0u32..=6) {
            let w = WattHours::new(Decimal::new(units as i64, scale)).unwrap();
            prop_assert_eq!(WattHours::parse(&w.to_string()), Some(w));
        }

        #[test]
        fn any_text_never_panics(text in "\\PC{0,40}") {
            let _ = WattHours::parse(&text);
        }
    }
}
