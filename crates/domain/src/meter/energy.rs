//! Energy from the exporter's counter (`DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`, mJ since boot) as
//! exact watt-hours.
//!
//! One mJ is 1/3,600,000 Wh, which has no finite decimal, so each *reading* of the counter is
//! rounded to whole µWh (six digits, half away from zero) and the energy of a stretch of time is
//! the difference of its two rounded readings. The differences telescope: the Wh of a run's
//! pieces add up to exactly `round6(last) − round6(first)`, whatever the pieces. Inside a scrape
//! interval the counter is read at minute boundaries by linear interpolation between its two
//! scrapes (as Prometheus' `increase` does), one exact division before the rounding.

use rust_decimal::{Decimal, RoundingStrategy};

const MJ_PER_WH: i64 = 3_600_000;

/// A counter reading in Wh rounded to six digits.
pub fn reading_wh(mj: Decimal) -> Decimal {
    (mj / Decimal::from(MJ_PER_WH)).round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero)
}

/// The counter at `at_ms` in Wh (rounded), read on the straight line between
/// `(t1_ms, e1_mj)` and `(t2_ms, e2_mj)`; the ends are the readings themselves.
pub fn interpolated_wh(t1_ms: i64, e1_mj: Decimal, t2_ms: i64, e2_mj: Decimal, at_ms: i64) -> Decimal {
    if at_ms == t1_ms {
        return reading_wh(e1_mj);
    }
    if at_ms == t2_ms {
        return reading_wh(e2_mj);
    }
    let span = Decimal::from(t2_ms - t1_ms);
    let mj_times_span = e1_mj * span + (e2_mj - e1_mj) * Decimal::from(at_ms - t1_ms);
    (mj_times_span / (span * Decimal::from(MJ_PER_WH)))
        .round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero)
}

/// The energy of `[from_ms, to_ms)` inside the scrape interval `[t1_ms, t2_ms)`: `None` when the
/// counter went down (exporter or driver restarted: the energy of that interval is unknown and
/// is neither guessed nor made negative) or a reading is missing.
pub fn piece_wh(
    t1_ms: i64,
    e1_mj: Option<Decimal>,
    t2_ms: i64,
    e2_mj: Option<Decimal>,
    from_ms: i64,
    to_ms: i64,
) -> Option<Decimal> {
    let (e1, e2) = (e1_mj?, e2_mj?);
    if e2 < e1 {
        return None;
    }
    Some(interpolated_wh(t1_ms, e1, t2_ms, e2, to_ms) - interpolated_wh(t1_ms, e1, t2_ms, e2, from_ms))
}
