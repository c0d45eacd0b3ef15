//! Projections as folds over the log. The hourly usage projection: GPU-seconds per tenant, SKU,
//! project, MIG profile (none for a whole GPU) and hour. The store keeps it live in the same transaction as the append; a rebuild
//! folds the same function over the ledger and must find the same figures.

use crate::gpu_seconds::GpuSeconds;
use crate::usage::UsageRecorded;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HourKey {
    pub tenant_id: String,
    pub gpu_sku: String,
    pub project: String,
    /// The MIG profile of a slice (`1g.18gb`), `None` for whole-GPU usage; ordered before the
    /// hour, as the store's key is.
    pub mig_profile: Option<String>,
    pub hour: DateTime<Utc>,
}

/// One row of the hourly projection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourTotals {
    pub gpu_seconds: Decimal,
    /// Events that started in this hour.
    pub events: i64,
}

/// The start of the hour that contains `t`.
pub fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    let micros = t.timestamp_micros().div_euclid(3_600_000_000) * 3_600_000_000;
    DateTime::from_timestamp_micros(micros).expect("an hour start of a bounded instant")
}

/// Splits an event's GPU-seconds across the clock hours its interval touches, pro rata to time,
/// rounded to microseconds, the last hour taking the remainder so that the parts add up exactly.
pub fn split_by_hour(
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    gpu_seconds: GpuSeconds,
) -> Vec<(DateTime<Utc>, Decimal)> {
    assert!(end > start, "validated intervals are never empty");
    let total = gpu_seconds.value();
    let first = hour_of(start);
    // Most intervals (a minute) stay inside their hour: whole-hour arithmetic on the Unix time.
    let (s, e) = (start.timestamp_micros(), end.timestamp_micros() - 1);
    if s.div_euclid(3_600_000_000) == e.div_euclid(3_600_000_000) {
        return vec![(first, total)];
    }
    let duration = Decimal::from((end - start).num_microseconds().expect("bounded interval"));
    let mut parts = Vec::new();
    let mut hour = first;
    let mut assigned = Decimal::ZERO;
    while hour < end {
        let next = hour + Duration::hours(1);
        let lo = start.max(hour);
        let hi = end.min(next);
        if next >= end {
            parts.push((hour, total - assigned));
        } else {
            let overlap = Decimal::from((hi - lo).num_microseconds().expect("bounded interval"));
            let part = (total * overlap / duration).round_dp_with_strategy(6, RoundingStrategy::MidpointAwayFromZero);
            assigned += part;
            parts.push((hour, part));
        }
        hour = next;
    }
    parts
}

/// One key where two hourly projections differ (see [`HourlyUsage::differences`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourDifference<'a> {
    pub key: &'a HourKey,
    pub ours: Option<HourTotals>,
    pub theirs: Option<HourTotals>,
}

impl fmt::Display for HourKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tenant {} sku {} project {}", self.tenant_id, self.gpu_sku, self.project)?;
        if let Some(profile) = &self.mig_profile {
            write!(f, " MIG profile {profile}")?;
        }
        write!(f, " hour {}", self.hour.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    }
}

impl fmt::Display for HourTotals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = if self.events == 1 { "event" } else { "events" };
        write!(f, "{} GPU-seconds in {} {unit}", self.gpu_seconds.normalize(), self.events)
    }
}

/// The hourly projection as a value: a fold of `apply` over usage events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HourlyUsage {
    pub rows: BTreeMap<HourKey, HourTotals>,
}

/// What one event adds to the hourly projection: per hour its interval touches, the GPU-seconds
/// (split by `split_by_hour`) and whether the event is counted there (in its first hour).
fn hour_parts(e: &UsageRecorded) -> impl Iterator<Item = (DateTime<Utc>, Decimal, bool)> {
    split_by_hour(e.interval_start, e.interval_end, e.gpu_seconds)
        .into_iter()
        .enumerate()
        .map(|(i, (hour, seconds))| (hour, seconds, i == 0))
}

/// A batch row's key, borrowed: tenant, SKU, project, MIG profile (none for a whole GPU), hour.
pub type BatchKey<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, DateTime<Utc>);

/// The hourly projection of a batch of events, keyed by borrowed names (no owned key per
/// event): the ingester's per-batch fold. `into_owned` gives the same `HourlyUsage` as applying
/// each event with `HourlyUsage::apply`.
#[derive(Debug, Default)]
pub struct BatchHourly<'a> {
    pub rows: rustc_hash::FxHashMap<BatchKey<'a>, HourTotals>,
}

impl<'a> BatchHourly<'a> {
    pub fn apply(&mut self, e: &'a UsageRecorded) {
        for (hour, seconds, first) in hour_parts(e) {
            let profile = e.mig.as_ref().map(|m| m.profile.as_str());
            let row = self.rows.entry((&e.tenant_id, &e.gpu_sku, &e.project, profile, hour)).or_default();
            row.gpu_seconds += seconds;
            row.events += i64::from(first);
        }
    }

    #[cfg(test)]
    pub fn into_owned(self) -> HourlyUsage {
        let mut out = HourlyUsage::default();
        for ((t, s, p, m, hour), v) in self.rows {
            let key = HourKey {
                tenant_id: t.to_string(),
                gpu_sku: s.to_string(),
                project: p.to_string(),
                mig_profile: m.map(str::to_string),
                hour,
            };
            out.rows.insert(key, v);
        }
        out
    }
}

impl HourlyUsage {
    pub fn apply(&mut self, e: &UsageRecorded) {
        for (hour, seconds, first) in hour_parts(e) {
            let key = HourKey {
                tenant_id: e.tenant_id.clone(),
                gpu_sku: e.gpu_sku.clone(),
                project: e.project.clone(),
                mig_profile: e.mig.as_ref().map(|m| m.profile.clone()),
                hour,
            };
            let row = self.rows.entry(key).or_default();
            row.gpu_seconds += seconds;
            row.events += i64::from(first);
        }
    }

    /// A finance correction (`usage.adjusted`): GPU-seconds added to (or taken from) one
    /// whole-GPU row (an adjustment names no MIG profile).
    pub fn adjust(&mut self, a: &crate::billing::reference::UsageAdjustment) {
        let key = HourKey {
            tenant_id: a.tenant_id.clone(),
            gpu_sku: a.gpu_sku.clone(),
            project: a.project.clone(),
            mig_profile: None,
            hour: a.hour,
        };
        self.rows.entry(key).or_default().gpu_seconds += a.gpu_seconds_delta;
    }

    pub fn fold<'a>(events: impl IntoIterator<Item = &'a UsageRecorded>) -> HourlyUsage {
        let mut p = HourlyUsage::default();
        for e in events {
            p.apply(e);
        }
        p
    }

    /// Every key where `self` and `other` differ, in key order: a row on one side only, or other
    /// figures. Each side's row, `None` where it has none.
    pub fn differences<'a>(&'a self, other: &'a HourlyUsage) -> Vec<HourDifference<'a>> {
        let keys: std::collections::BTreeSet<&HourKey> = self.rows.keys().chain(other.rows.keys()).collect();
        keys.into_iter()
            .filter_map(|key| {
                let (ours, theirs) = (self.rows.get(key), other.rows.get(key));
                (ours != theirs).then_some(HourDifference { key, ours: ours.copied(), theirs: theirs.copied() })
            })
            .collect()
    }

    /// Total GPU-seconds per (tenant, SKU).
    pub fn per_tenant_sku(&self) -> BTreeMap<(String, String), Decimal> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.rows {
            *out.entry((k.tenant_id.clone(), k.gpu_sku.clone())).or_insert(Decimal::ZERO) += v.gpu_seconds;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[test]
    fn differences_name_each_key_and_both_sides() {
        let key = |t: &str, h: u32| HourKey {
            tenant_id: t.into(),
            gpu_sku: "nvidia-l40s".into(),
            project: "p".into(),
            mig_profile: None,
            hour: Utc.with_ymd_and_hms(2026, 10, 1, h, 0, 0).unwrap(),
        };
        let row = |s: i64, e: i64| HourTotals { gpu_seconds: Decimal::new(s, 1), events: e };
        let mut a = HourlyUsage::default();
        let mut b = HourlyUsage::default();
        a.rows.insert(key("alpha", 0), row(600, 1));
        b.rows.insert(key("alpha", 0), row(600, 1));
        a.rows.insert(key("alpha", 1), row(605, 2));
        b.rows.insert(key("alpha", 1), row(600, 2));
        a.rows.insert(key("beta", 0), row(10, 1));
        b.rows.insert(key("gamma", 0), row(20, 1));
        assert!(a.differences(&a.clone()).is_empty());
        let d = a.differences(&b);
        assert_eq!(d.len(), 3);
        assert_eq!(*d[0].key, key("alpha", 1));
        assert_eq!((d[0].ours, d[0].theirs), (Some(row(605, 2)), Some(row(600, 2))));
        assert_eq!((d[1].ours, d[1].theirs), (Some(row(10, 1)), None));
        assert_eq!((d[2].ours, d[2].theirs), (None, Some(row(20, 1))));
        assert_eq!(d[0].key.to_string(), "tenant alpha sku nvidia-l40s project p hour 2026-10-01T01:00:00Z");
        assert_eq!(row(605, 2).to_string(), "60.5 GPU-seconds in 2 events");
        // Each difference seen from the other side is the same key, sides swapped.
        let back = b.differences(&a);
        assert!(d.iter().zip(&back).all(|(x, y)| x.key == y.key && x.ours == y.theirs && x.theirs == y.ours));
    }

    /// None (a whole GPU) or one of two MIG slices.
    fn slice(which: usize) -> Option<crate::usage::MigSlice> {
        let profile = [None, Some("1g.18gb"), Some("3g.71gb")][which]?;
        Some(crate::usage::MigSlice { instance: u8::try_from(which).unwrap(), profile: profile.into() })
    }

    #[test]
    fn a_slice_and_the_whole_gpu_are_rows_of_their_own() {
        let s = t0() + Duration::minutes(5);
        let event = |mig| UsageRecorded {
            event_id: uuid::Uuid::nil(),
            source: "s".into(),
            tenant_id: "a".into(),
            gpu_sku: "nvidia-h200".into(),
            gpu_id: uuid::Uuid::nil(),
            node: "n".into(),
            project: "p".into(),
            job: None,
            labels: Default::default(),
            interval_start: s,
            interval_end: s + Duration::minutes(1),
            gpu_seconds: GpuSeconds::parse("60").unwrap(),
            mig,
            energy_wh: None,
        };
        let p = HourlyUsage::fold(&[event(None), event(slice(1)), event(slice(1)), event(slice(2))]);
        let rows: Vec<(Option<&str>, HourTotals)> =
            p.rows.iter().map(|(k, v)| (k.mig_profile.as_deref(), *v)).collect();
        let row = |s: i64, e: i64| HourTotals { gpu_seconds: Decimal::from(s), events: e };
        assert_eq!(rows, vec![(None, row(60, 1)), (Some("1g.18gb"), row(120, 2)), (Some("3g.71gb"), row(60, 1))]);
        let key = p.rows.keys().nth(1).unwrap().to_string();
        assert_eq!(key, "tenant a sku nvidia-h200 project p MIG profile 1g.18gb hour 2026-10-01T00:00:00Z");
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap()
    }

    #[test]
    fn a_minute_inside_an_hour_stays_whole() {
        let s = t0() + Duration::minutes(5);
        let parts = split_by_hour(s, s + Duration::minutes(1), GpuSeconds::parse("60").unwrap());
        assert_eq!(parts, vec![(t0(), Decimal::from(60))]);
    }

    #[test]
    fn an_interval_across_the_hour_is_split_by_time() {
        let s = t0() + Duration::minutes(50);
        let parts = split_by_hour(s, s + Duration::minutes(20), GpuSeconds::parse("1200").unwrap());
        assert_eq!(parts, vec![(t0(), Decimal::from(600)), (t0() + Duration::hours(1), Decimal::from(600))]);
    }

    proptest! {
        #[test]
        fn split_never_loses_or_invents_a_microsecond(
            start_us in 0i64..(86_400i64 * 1_000_000),
            len_us in 1i64..=3_600_000_000i64,
            frac in 0u64..=1_000_000u64,
        ) {
            let start = t0() + Duration::microseconds(start_us);
            let end = start + Duration::microseconds(len_us);
            let interval = Decimal::new(len_us, 6);
            let seconds = (interval * Decimal::new(frac as i64, 6)).round_dp_with_strategy(6, RoundingStrategy::ToZero);
            let g = GpuSeconds::new(seconds).unwrap();
            let parts = split_by_hour(start, end, g);
            let sum: Decimal = parts.iter().map(|(_, s)| *s).sum();
            prop_assert_eq!(sum, g.value());
            prop_assert!(parts.iter().all(|(_, s)| !s.is_sign_negative() || s.is_zero()));
            prop_assert!(parts.len() <= 2);
            prop_assert_eq!(parts[0].0, hour_of(start));
        }

        #[test]
        fn hour_of_truncates_to_the_hour(us in -10_000_000_000_000i64..10_000_000_000_000i64) {
            use chrono::DurationRound;
            let t = DateTime::from_timestamp_micros(us).unwrap();
            prop_assert_eq!(hour_of(t), t.duration_trunc(Duration::hours(1)).unwrap());
        }

        /// The ingester's per-batch fold gives the projection the rebuild folds event by event.
        #[test]
        fn the_batch_fold_is_the_event_fold(
            events in proptest::collection::vec(
                ((0usize..3, 0usize..2, 0usize..2, 0usize..3), 0i64..10_000, 1i64..=3600, 0u64..=1000),
                0..40,
            )
        ) {
            let tenants = ["a", "b", "c"];
            let events: Vec<UsageRecorded> = events
                .into_iter()
                .map(|((t, s, p, m), start_s, len_s, permille)| {
                    let start = t0() + Duration::seconds(start_s);
                    let seconds = (Decimal::from(len_s) * Decimal::new(permille as i64, 3)).round_dp(6);
                    UsageRecorded {
                        event_id: uuid::Uuid::nil(),
                        source: "s".into(),
                        tenant_id: tenants[t].into(),
                        gpu_sku: ["x", "y"][s].into(),
                        gpu_id: uuid::Uuid::nil(),
                        node: "n".into(),
                        project: ["p", "q"][p].into(),
                        job: None,
                        labels: Default::default(),
                        interval_start: start,
                        interval_end: start + Duration::seconds(len_s),
                        gpu_seconds: GpuSeconds::new(seconds).unwrap(),
                        mig: slice(m),
                        energy_wh: None,
                    }
                })
                .collect();
            let mut one_by_one = HourlyUsage::default();
            let mut batch = BatchHourly::default();
            for e in &events {
                one_by_one.apply(e);
                batch.apply(e);
            }
            prop_assert_eq!(batch.into_owned(), one_by_one);
        }
    }
}
