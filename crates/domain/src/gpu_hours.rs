//! `GpuHours` and the one place that converts between GPU-seconds and GPU-hours.
//!
//! GPU-seconds are exact (microseconds); GPU-hours are what prices are quoted in and what people
//! read. Hours to seconds is exact (× 3600). Seconds to hours is not (÷ 3600 has no end in
//! decimals: one second is 0.000277… hours), so it is rounded, half away from zero, in one of two
//! ways named for their purpose:
//! - `GpuHours::billed`: six fractional digits, always written out, for the quantity of an invoice
//!   line and the API's usage figures (documents must show the same text for the same seconds).
//! - `GpuHours::summary`: at most three fractional digits, for the operator's usage report on the
//!   command line, where readers want a short figure and the exact seconds stand beside it.

use crate::billing::dec;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::fmt;

/// 3600 seconds in an hour (scale 0, so products keep the scale of the other factor).
pub const SECONDS_PER_HOUR: Decimal = Decimal::from_parts(3600, 0, 0, false, 0);

/// Fractional digits of billed GPU-hours (invoice quantities, the API).
pub const BILLED_SCALE: u32 = 6;

/// Most fractional digits of GPU-hours in the command-line usage report.
pub const SUMMARY_SCALE_MAX: u32 = 3;

/// An amount of GPU time in hours. Signed: a credit note's line bills negative hours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GpuHours(#[serde(with = "crate::billing::dec")] Decimal);

impl GpuHours {
    /// Whole or exact hours as given (a price tier's start, a commitment).
    pub const fn new(hours: Decimal) -> GpuHours {
        GpuHours(hours)
    }

    pub const fn value(self) -> Decimal {
        self.0
    }

    /// Billed GPU-hours of `gpu_seconds` (signed): half away from zero to exactly six digits.
    pub fn billed(gpu_seconds: Decimal) -> GpuHours {
        GpuHours(dec::fixed(gpu_seconds / SECONDS_PER_HOUR, BILLED_SCALE))
    }

    /// GPU-hours of `gpu_seconds` for the usage report: half away from zero to at most three
    /// digits (fewer when the quotient has fewer; not padded).
    pub fn summary(gpu_seconds: Decimal) -> GpuHours {
        GpuHours(
            (gpu_seconds / SECONDS_PER_HOUR)
                .round_dp_with_strategy(SUMMARY_SCALE_MAX, RoundingStrategy::MidpointAwayFromZero),
        )
    }

    /// The exact GPU-seconds of these hours.
    pub fn gpu_seconds(self) -> Decimal {
        self.0 * SECONDS_PER_HOUR
    }
}

impl fmt::Display for GpuHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn billed_and_summary_texts() {
        assert_eq!(GpuHours::billed(d("3600")).to_string(), "1.000000");
        assert_eq!(GpuHours::billed(d("1")).to_string(), "0.000278");
        assert_eq!(GpuHours::billed(d("-1")).to_string(), "-0.000278");
        assert_eq!(GpuHours::billed(d("0")).to_string(), "0.000000");
        // The summary keeps the quotient's own digits up to three (its text is what the report printed).
        assert_eq!(GpuHours::summary(d("3600")).value(), d("1"));
        assert_eq!(GpuHours::summary(d("5400")).value(), d("1.5"));
        assert_eq!(GpuHours::summary(d("1")).value(), d("0"));
        assert_eq!(GpuHours::summary(d("1.8")).value(), d("0.001"), "0.0005 rounds away from zero");
    }

    proptest! {
        /// Whole hours and hours with up to three digits convert to seconds and back exactly.
        #[test]
        fn hours_to_seconds_and_back_exact(milli_hours in -100_000_000i64..100_000_000) {
            let h = GpuHours::new(Decimal::new(milli_hours, 3));
            let secs = h.gpu_seconds();
            prop_assert_eq!(GpuHours::billed(secs).value(), h.value());
            prop_assert_eq!(GpuHours::summary(secs).value(), h.value());
        }

        /// Billed hours are within half a millionth of an hour of the exact quotient, six digits always.
        #[test]
        fn billed_is_nearest(micros in -10_000_000_000_000i64..10_000_000_000_000) {
            let secs = Decimal::new(micros, 6);
            let h = GpuHours::billed(secs).value();
            prop_assert_eq!(h.scale(), BILLED_SCALE);
            prop_assert!((h * SECONDS_PER_HOUR - secs).abs() <= Decimal::new(5, 7) * SECONDS_PER_HOUR);
            prop_assert_eq!(GpuHours::billed(-secs).value(), -h, "symmetric about zero");
        }

        /// The summary is the billed figure rounded further (never further than half a thousandth).
        #[test]
        fn summary_is_within_half_a_thousandth(micros in 0i64..10_000_000_000_000) {
            let secs = Decimal::new(micros, 6);
            let h = GpuHours::summary(secs).value();
            prop_assert!(h.scale() <= SUMMARY_SCALE_MAX);
            prop_assert!((h * SECONDS_PER_HOUR - secs).abs() <= Decimal::new(5, 4) * SECONDS_PER_HOUR);
        }
    }
}
