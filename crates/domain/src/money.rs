//! `Money` (an amount in EUR) and `UnitPrice` (EUR per unit of a line, a GPU-hour as a rule):
//! exact decimals, never floats, with the one rounding of an amount to cents.

use crate::billing::dec;
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Mul, Neg, Sub, SubAssign};

/// Fractional digits of an amount on a document: cents.
pub const CENTS_SCALE: u32 = 2;

/// Fractional digits of a unit price on a document (price lists allow four).
pub const UNIT_PRICE_SCALE: u32 = 4;

/// An amount in EUR: signed (credit notes and discounts are negative), exact until rounded to
/// cents by `round_cents`. On the wire a JSON string such as `"12.50"`, as `dec` writes decimals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(#[serde(with = "crate::billing::dec")] Decimal);

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// An exact amount; its scale is kept, so that `12.50` prints as `12.50`.
    pub const fn new(amount: Decimal) -> Money {
        Money(amount)
    }

    pub const fn amount(self) -> Decimal {
        self.0
    }

    /// The one rounding of money: half away from zero to cents, always two fractional digits,
    /// and never a negative zero (`-0.001` is `0.00`).
    pub fn round_cents(self) -> Money {
        Money(dec::fixed(self.0, CENTS_SCALE))
    }

    /// `percent` % of this amount, exact (not rounded).
    pub fn percent(self, percent: Decimal) -> Money {
        Money(self.0 * percent / Decimal::ONE_HUNDRED)
    }

    pub fn abs(self) -> Money {
        Money(self.0.abs())
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// Below zero (a negative zero is not).
    pub fn is_negative(self) -> bool {
        self.0.is_sign_negative() && !self.0.is_zero()
    }

    /// Parses the wire form, a plain decimal such as `"12.50"` (the rules of `dec::parse`).
    pub fn parse(text: &str) -> Result<Money, String> {
        dec::parse(text).map(Money)
    }
}

impl From<Money> for Decimal {
    fn from(m: Money) -> Decimal {
        m.0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Add for Money {
    type Output = Money;
    fn add(self, other: Money) -> Money {
        Money(self.0 + other.0)
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, other: Money) -> Money {
        Money(self.0 - other.0)
    }
}

impl Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(-self.0)
    }
}

/// A sign or a count times an amount (`doc.sign() * doc.net_total`), exact.
impl Mul<Money> for Decimal {
    type Output = Money;
    fn mul(self, m: Money) -> Money {
        Money(self * m.0)
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, other: Money) {
        self.0 += other.0;
    }
}

impl SubAssign for Money {
    fn sub_assign(&mut self, other: Money) {
        self.0 -= other.0;
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        Money(iter.map(|m| m.0).sum())
    }
}

impl<'a> Sum<&'a Money> for Money {
    fn sum<I: Iterator<Item = &'a Money>>(iter: I) -> Money {
        Money(iter.map(|m| m.0).sum())
    }
}

/// A price per unit of a line in EUR: per GPU-hour for time lines, per one for a discount line.
/// Exact; on a document it carries `UNIT_PRICE_SCALE` fractional digits (`on_document`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnitPrice(Decimal);

impl UnitPrice {
    pub const fn new(eur_per_unit: Decimal) -> UnitPrice {
        UnitPrice(eur_per_unit)
    }

    pub const fn value(self) -> Decimal {
        self.0
    }

    /// The price as a document shows it: half away from zero to exactly four fractional digits.
    pub fn on_document(self) -> UnitPrice {
        UnitPrice(dec::fixed(self.0, UNIT_PRICE_SCALE))
    }

    /// Parses the wire form, a plain decimal such as `"2.5000"`.
    pub fn parse(text: &str) -> Result<UnitPrice, String> {
        dec::parse(text).map(UnitPrice)
    }
}

impl From<UnitPrice> for Decimal {
    fn from(p: UnitPrice) -> Decimal {
        p.0
    }
}

impl fmt::Display for UnitPrice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for UnitPrice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        dec::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for UnitPrice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<UnitPrice, D::Error> {
        dec::deserialize(d).map(UnitPrice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(amount: &str, cents: &str) {
        let got = Money::parse(amount).unwrap().round_cents().to_string();
        assert_eq!(got, cents, "{amount}");
    }

    #[test]
    fn round_cents_half_away_from_zero() {
        check("1.005", "1.01");
        check("-1.005", "-1.01");
        check("1.004", "1.00");
        check("-0.001", "0.00");
        check("-0.005", "-0.01");
        check("2", "2.00");
        check("2.5", "2.50");
    }

    #[test]
    fn wire_form_is_the_decimal_string() {
        let m = Money::new(Decimal::new(1250, 2));
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"12.50\"");
        assert_eq!(serde_json::from_str::<Money>("\"12.50\"").unwrap(), m);
        assert!(serde_json::from_str::<Money>("12.5").is_err(), "a JSON number may have passed a float");
        let p = UnitPrice::new(Decimal::new(25, 1)).on_document();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"2.5000\"");
    }

    proptest! {
        /// Rounding moves an amount by at most half a cent, and exactly half a cent only away from zero.
        #[test]
        fn round_cents_is_nearest_half_away_from_zero(units in -10_000_000i64..10_000_000, scale in 0u32..6) {
            let exact = Decimal::new(units, scale);
            let r = Money::new(exact).round_cents().amount();
            prop_assert_eq!(r.scale(), 2);
            let diff = (r - exact).abs();
            let half = Decimal::new(5, 3);
            prop_assert!(diff <= half);
            if diff == half {
                prop_assert!(r.abs() > exact.abs());
            }
            prop_assert!(!(r.is_zero() && r.is_sign_negative()));
        }

        /// Rounding is odd-symmetric: −x rounds to −(x rounded).
        #[test]
        fn round_cents_is_symmetric(units in 1i64..10_000_000, scale in 0u32..6) {
            let m = Money::new(Decimal::new(units, scale));
            prop_assert_eq!((-m).round_cents(), -m.round_cents());
        }

        /// Rounding twice is rounding once.
        #[test]
        fn round_cents_is_idempotent(units in -10_000_000i64..10_000_000, scale in 0u32..6) {
            let once = Money::new(Decimal::new(units, scale)).round_cents();
            prop_assert_eq!(once.round_cents().to_string(), once.to_string());
        }

        /// An amount's text survives the wire unchanged, scale and all.
        #[test]
        fn wire_round_trip(units in -10_000_000i64..10_000_000, scale in 0u32..8) {
            let m = Money::new(Decimal::new(units, scale));
            let text = serde_json::to_string(&m).unwrap();
            let back: Money = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(back.to_string(), m.to_string());
        }

        /// A unit price on a document has four digits and is within half a unit of the fourth.
        #[test]
        fn unit_price_on_document(units in 0i64..100_000_000, scale in 0u32..8) {
            let exact = Decimal::new(units, scale);
            let p = UnitPrice::new(exact).on_document().value();
            prop_assert_eq!(p.scale(), 4);
            prop_assert!((p - exact).abs() <= Decimal::new(5, 5));
            if scale <= 4 {
                prop_assert_eq!(p, exact);
            }
        }
    }
}
