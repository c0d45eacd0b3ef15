//! The coverage report (issue 15, section 5): per SKU (or MIG slice) and day, the device-time
//! the collector observed (capacity) and what became of it — metered (usage events produced),
//! idle, unmetered (gaps longer than the bridge), unmapped (a namespace mapped to no tenant) and
//! unbillable (no SKU, or a name the event cannot carry) — so finance sees before a close what
//! will not be billed, and why. A pure fold of the collector's coverage rows.
//!
//! Days are Europe/Berlin calendar days, as a close's month is a Berlin month: the days of a
//! month add up to exactly the instants its close rates. A row that crosses a midnight is split
//! at it by time (to the microsecond); its last day takes the rest, so the days of a row always
//! add up to its seconds exactly.
//!
//! MIG: a slice's seconds are seconds of its instance, counted in the row of its SKU and
//! profile and never added to the whole GPU's row (a slice-second is not a GPU-second; the
//! invoices rate slices apart too). The exporter writes a GPU in MIG mode as its instances
//! only, so no physical second is counted under two rows.

use crate::billing::period::{berlin_date, berlin_midnight, check_date};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Longest report one request may ask for, in days.
pub const RANGE_DAYS_MAX: i64 = 366;

/// The class of a coverage row (`collector_coverage.class`, `meter::event::Class::name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CoverageClass {
    Billed,
    Idle,
    Unmetered,
    Unmapped,
    Unbillable,
}

impl CoverageClass {
    pub fn parse(name: &str) -> Option<CoverageClass> {
        Some(match name {
            "billed" => CoverageClass::Billed,
            "idle" => CoverageClass::Idle,
            "unmetered" => CoverageClass::Unmetered,
            "unmapped" => CoverageClass::Unmapped,
            "unbillable" => CoverageClass::Unbillable,
            _ => return None,
        })
    }
}

/// What a row's seconds count under.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct CoverageKey {
    /// The SKU of the device's model; `None` when the model has none (then `model_name` says which).
    pub sku: Option<String>,
    /// The exporter's `modelName`, only for a model without a SKU (one SKU may be several models).
    pub model_name: Option<String>,
    /// `None`: a whole GPU; else the MIG profile of the instance (`unrecorded` for rows written
    /// before migration 0018 kept the profile).
    pub mig_profile: Option<String>,
}

impl CoverageKey {
    pub fn new(sku: Option<String>, model_name: String, mig_profile: Option<String>) -> CoverageKey {
        let model_name = if sku.is_none() { Some(model_name) } else { None };
        CoverageKey { sku, model_name, mig_profile }
    }
}

/// One coverage row (a closed run of a device), or several runs of one key, class and day
/// summed: `start`..`end` then lie inside that one day and `gpu_seconds` is their sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoverageRow {
    pub key: CoverageKey,
    pub class: CoverageClass,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub gpu_seconds: Decimal,
    /// A billed run whose event the ledger holds (`ledger_event_ids`).
    pub in_ledger: bool,
}

/// GPU-seconds of one key over one day (or the whole range).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Figures {
    /// Every class: the device-time the collector observed (and its gaps).
    #[serde(with = "crate::billing::dec")]
    pub capacity: Decimal,
    /// Class billed: usage events produced.
    #[serde(with = "crate::billing::dec")]
    pub metered: Decimal,
    /// The part of `metered` whose events are in the ledger (the rest: not ingested yet, or quarantined).
    #[serde(with = "crate::billing::dec")]
    pub in_ledger: Decimal,
    #[serde(with = "crate::billing::dec")]
    pub idle: Decimal,
    #[serde(with = "crate::billing::dec")]
    pub unmetered: Decimal,
    #[serde(with = "crate::billing::dec")]
    pub unmapped: Decimal,
    #[serde(with = "crate::billing::dec")]
    pub unbillable: Decimal,
}

impl Figures {
    fn add(&mut self, class: CoverageClass, in_ledger: bool, secs: Decimal) {
        self.capacity += secs;
        let slot = match class {
            CoverageClass::Billed => {
                if in_ledger {
                    self.in_ledger += secs;
                }
                &mut self.metered
            }
            CoverageClass::Idle => &mut self.idle,
            CoverageClass::Unmetered => &mut self.unmetered,
            CoverageClass::Unmapped => &mut self.unmapped,
            CoverageClass::Unbillable => &mut self.unbillable,
        };
        *slot += secs;
    }

    fn plus(&mut self, o: &Figures) {
        self.capacity += o.capacity;
        self.metered += o.metered;
        self.in_ledger += o.in_ledger;
        self.idle += o.idle;
        self.unmetered += o.unmetered;
        self.unmapped += o.unmapped;
        self.unbillable += o.unbillable;
    }

    /// What will not be billed: capacity less metered.
    pub fn not_metered(&self) -> Decimal {
        self.capacity - self.metered
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoverageDay {
    pub day: NaiveDate,
    #[serde(flatten)]
    pub key: CoverageKey,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoverageTotal {
    #[serde(flatten)]
    pub key: CoverageKey,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The report over Berlin days `from..=to`: a row per day and key (every key seen in the range,
/// on every day, zeros included), then each key's totals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoverageReport {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The instants covered: Berlin midnight of `from` to Berlin midnight after `to`.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub days: Vec<CoverageDay>,
    pub totals: Vec<CoverageTotal>,
}

/// The range a request names: a month (`YYYY-MM`, a close's Berlin month) or two dates,
/// inclusive; not both, at most [`RANGE_DAYS_MAX`] days.
pub fn range(
    month: Option<&str>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<(NaiveDate, NaiveDate), String> {
    let (from, to) = match (month, from, to) {
        (Some(m), None, None) => {
            let p = crate::billing::Period::parse(m)?;
            (p.first_day(), p.last_day())
        }
        (None, Some(f), Some(t)) => (f, t),
        (Some(_), _, _) => return Err("name a month or a range from..to, not both".into()),
        (None, _, _) => return Err("name a month (YYYY-MM) or both from and to (YYYY-MM-DD)".into()),
    };
    check_date(from)?;
    check_date(to)?;
    if to < from {
        return Err(format!("to ({to}) is before from ({from})"));
    }
    if (to - from).num_days() >= RANGE_DAYS_MAX {
        return Err(format!("at most {RANGE_DAYS_MAX} days at once"));
    }
    Ok((from, to))
}

/// The instants of Berlin days `from..=to`: [midnight of `from`, midnight after `to`).
pub fn instants(from: NaiveDate, to: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    (berlin_midnight(from), berlin_midnight(to.succ_opt().expect("a date before 2101 has a successor")))
}

fn micros(a: DateTime<Utc>, b: DateTime<Utc>) -> Decimal {
    Decimal::new((b - a).num_microseconds().expect("a run is shorter than 292,000 years"), 6)
}

/// A row's seconds per Berlin day: each day but the last its share of the time, the last the rest.
pub fn split_days(start: DateTime<Utc>, end: DateTime<Utc>, gpu_seconds: Decimal) -> Vec<(NaiveDate, Decimal)> {
    let mut out = Vec::new();
    let (mut at, mut day, mut given) = (start, berlin_date(start), Decimal::ZERO);
    loop {
        let next_day = day.succ_opt().expect("a date before 2101 has a successor");
        let midnight = berlin_midnight(next_day);
        if end <= midnight {
            out.push((day, gpu_seconds - given));
            return out;
        }
        let piece = micros(at, midnight);
        out.push((day, piece));
        given += piece;
        (at, day) = (midnight, next_day);
    }
}

/// Folds the rows into the report over Berlin days `from..=to` (time of rows outside it is left out).
pub fn fold(rows: &[CoverageRow], from: NaiveDate, to: NaiveDate) -> CoverageReport {
    let mut cells: BTreeMap<(CoverageKey, NaiveDate), Figures> = BTreeMap::new();
    let mut keys = BTreeSet::new();
    for r in rows {
        for (day, secs) in split_days(r.start, r.end, r.gpu_seconds) {
            if day < from || day > to {
                continue;
            }
            keys.insert(r.key.clone());
            cells.entry((r.key.clone(), day)).or_default().add(r.class, r.in_ledger, secs);
        }
    }
    let mut days = Vec::new();
    let mut totals = Vec::new();
    for key in keys {
        let mut total = Figures::default();
        for day in from.iter_days().take_while(|d| *d <= to) {
            let figures = cells.get(&(key.clone(), day)).copied().unwrap_or_default();
            total.plus(&figures);
            days.push(CoverageDay { day, key: key.clone(), figures });
        }
        totals.push(CoverageTotal { key, figures: total });
    }
    days.sort_by(|a, b| (a.day, &a.key).cmp(&(b.day, &b.key)));
    let (start, end) = instants(from, to);
    CoverageReport { from, to, start, end, days, totals }
}

fn key_cells(k: &CoverageKey) -> [String; 3] {
    [
        k.sku.clone().unwrap_or_default(),
        k.model_name.clone().unwrap_or_default(),
        k.mig_profile.clone().unwrap_or_default(),
    ]
}

fn figure_cells(f: &Figures) -> [String; 7] {
    [f.capacity, f.metered, f.in_ledger, f.idle, f.unmetered, f.unmapped, f.unbillable].map(|d| d.to_string())
}

/// The CSV export: one line per day and key (the totals are their sums), exact decimal GPU-seconds.
pub fn csv(report: &CoverageReport) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "day",
        "sku",
        "model_name",
        "mig_profile",
        "capacity_gpu_seconds",
        "metered_gpu_seconds",
        "in_ledger_gpu_seconds",
        "idle_gpu_seconds",
        "unmetered_gpu_seconds",
        "unmapped_gpu_seconds",
        "unbillable_gpu_seconds",
    ])
    .expect("writing to memory");
    for d in &report.days {
        let day = [d.day.to_string()];
        let cells = day.iter().cloned().chain(key_cells(&d.key)).chain(figure_cells(&d.figures));
        w.write_record(cells.collect::<Vec<String>>()).expect("writing to memory");
    }
    w.into_inner().expect("writing to memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn key(sku: &str, mig: Option<&str>) -> CoverageKey {
        CoverageKey::new(Some(sku.into()), "m".into(), mig.map(str::to_string))
    }

    fn t(ms: i64) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(ms).unwrap()
    }

    const CLASSES: [CoverageClass; 5] = [
        CoverageClass::Billed,
        CoverageClass::Idle,
        CoverageClass::Unmetered,
        CoverageClass::Unmapped,
        CoverageClass::Unbillable,
    ];

    #[test]
    fn a_row_across_berlin_midnight_is_split_there_and_not_at_utc_midnight() {
        // 2026-10-14 22:00 UTC is midnight in Berlin (CEST, UTC+2).
        let midnight = Utc.with_ymd_and_hms(2026, 10, 14, 22, 0, 0).unwrap();
        let start = midnight - chrono::Duration::milliseconds(12_500);
        let end = midnight + chrono::Duration::seconds(30);
        let parts = split_days(start, end, Decimal::new(42_500, 3));
        let d = |day| NaiveDate::from_ymd_opt(2026, 10, day).unwrap();
        assert_eq!(parts, vec![(d(14), Decimal::new(12_500, 3)), (d(15), Decimal::from(30))]);
        let utc_midnight = Utc.with_ymd_and_hms(2026, 10, 15, 0, 0, 0).unwrap();
        let across_utc = split_days(utc_midnight - chrono::Duration::seconds(1), utc_midnight, Decimal::ONE);
        assert_eq!(across_utc, vec![(d(15), Decimal::ONE)]);
    }

    #[test]
    fn the_day_the_clocks_go_back_has_25_hours() {
        let d = NaiveDate::from_ymd_opt(2026, 10, 25).unwrap();
        let (a, b) = instants(d, d);
        assert_eq!((b - a).num_hours(), 25);
    }

    #[test]
    fn ranges_are_a_month_or_two_dates() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(range(Some("2026-10"), None, None), Ok((d("2026-10-01"), d("2026-10-31"))));
        assert_eq!(range(None, Some(d("2026-10-02")), Some(d("2026-10-02"))), Ok((d("2026-10-02"), d("2026-10-02"))));
        assert!(range(Some("2026-10"), Some(d("2026-10-01")), None).is_err());
        assert!(range(None, Some(d("2026-10-01")), None).is_err());
        assert!(range(None, None, None).is_err());
        assert!(range(None, Some(d("2026-10-02")), Some(d("2026-10-01"))).is_err());
        assert!(range(None, Some(d("2026-01-01")), Some(d("2027-01-02"))).is_err());
        assert!(range(Some("2026-13"), None, None).is_err());
    }

    #[test]
    fn slices_and_models_without_a_sku_have_rows_of_their_own() {
        let day = NaiveDate::from_ymd_opt(2026, 10, 5).unwrap();
        let at = berlin_midnight(day) + chrono::Duration::hours(3);
        let row = |key: CoverageKey, class, secs: i64, in_ledger| CoverageRow {
            key,
            class,
            start: at,
            end: at + chrono::Duration::seconds(secs),
            gpu_seconds: Decimal::from(secs),
            in_ledger,
        };
        let unknown = CoverageKey::new(None, "NVIDIA A30".into(), None);
        let rows = vec![
            row(key("nvidia-h200", None), CoverageClass::Billed, 60, true),
            row(key("nvidia-h200", None), CoverageClass::Billed, 30, false),
            row(key("nvidia-h200", Some("1g.18gb")), CoverageClass::Billed, 60, false),
            row(unknown.clone(), CoverageClass::Unbillable, 45, false),
        ];
        let r = fold(&rows, day, day);
        assert_eq!(r.days.len(), 3);
        let whole = &r.totals.iter().find(|t| t.key == key("nvidia-h200", None)).unwrap().figures;
        assert_eq!(
            (whole.capacity, whole.metered, whole.in_ledger),
            (Decimal::from(90), Decimal::from(90), Decimal::from(60))
        );
        let slice = &r.totals.iter().find(|t| t.key.mig_profile.is_some()).unwrap().figures;
        assert_eq!(slice.capacity, Decimal::from(60));
        let other = &r.totals.iter().find(|t| t.key == unknown).unwrap().figures;
        assert_eq!((other.capacity, other.unbillable), (Decimal::from(45), Decimal::from(45)));
        assert_eq!(unknown.model_name.as_deref(), Some("NVIDIA A30"));
        let text = String::from_utf8(csv(&r)).unwrap();
        assert_eq!(text.lines().count(), 4);
        assert!(text.contains("2026-10-05,,NVIDIA A30,,45,0,0,0,0,0,45"), "{text}");
    }

    fn arb_row() -> impl Strategy<Value = CoverageRow> {
        // Around the October clock change (2026-10-25), rows up to two days long, ms precision.
        let base = Utc.with_ymd_and_hms(2026, 10, 22, 0, 0, 0).unwrap().timestamp_millis();
        (0i64..7 * 86_400_000, 1i64..2 * 86_400_000, 0usize..5, 0usize..3, any::<bool>()).prop_map(
            move |(at, len, class, k, in_ledger)| CoverageRow {
                key: [key("nvidia-h200", None), key("nvidia-h200", Some("3g.71gb")), key("nvidia-l40s", None)][k]
                    .clone(),
                class: CLASSES[class],
                start: t(base + at),
                end: t(base + at + len),
                gpu_seconds: Decimal::new(len, 3),
                in_ledger,
            },
        )
    }

    proptest! {
        /// Over a range that holds every row: the days add up to the rows' seconds, per key and
        /// class; every day's classes add up to its capacity; in-ledger never exceeds metered.
        #[test]
        fn days_add_up_to_the_rows_and_classes_to_capacity(rows in proptest::collection::vec(arb_row(), 0..40)) {
            let (from, to) = (NaiveDate::from_ymd_opt(2026, 10, 21).unwrap(), NaiveDate::from_ymd_opt(2026, 11, 2).unwrap());
            let r = fold(&rows, from, to);
            for d in &r.days {
                let f = &d.figures;
                prop_assert_eq!(f.capacity, f.metered + f.idle + f.unmetered + f.unmapped + f.unbillable);
                prop_assert!(f.in_ledger <= f.metered);
            }
            for t in &r.totals {
                let want: Decimal = rows.iter().filter(|x| x.key == t.key).map(|x| x.gpu_seconds).sum();
                prop_assert_eq!(t.figures.capacity, want);
                let billed: Decimal = rows.iter().filter(|x| x.key == t.key && x.class == CoverageClass::Billed).map(|x| x.gpu_seconds).sum();
                prop_assert_eq!(t.figures.metered, billed);
                let days: Decimal = r.days.iter().filter(|d| d.key == t.key).map(|d| d.figures.capacity).sum();
                prop_assert_eq!(days, want);
            }
            prop_assert_eq!(r.days.len(), r.totals.len() * 13);
        }

        /// A row split at days keeps every microsecond: the pieces add up to its seconds, each
        /// piece but the last is its time inside that day, and no piece exceeds a day of 25 hours.
        #[test]
        fn a_split_keeps_every_second(row in arb_row()) {
            let parts = split_days(row.start, row.end, row.gpu_seconds);
            let sum: Decimal = parts.iter().map(|p| p.1).sum();
            prop_assert_eq!(sum, row.gpu_seconds);
            for w in parts.windows(2) {
                prop_assert_eq!(w[0].0.succ_opt().unwrap(), w[1].0);
            }
            for p in &parts {
                prop_assert!(p.1 > Decimal::ZERO && p.1 <= Decimal::from(25 * 3600));
            }
        }

        /// Splitting the range into two adjacent ranges gives the same days: a report over a
        /// month is the union of reports over its halves.
        #[test]
        fn adjacent_ranges_compose(rows in proptest::collection::vec(arb_row(), 0..20), cut in 0i64..12) {
            let from = NaiveDate::from_ymd_opt(2026, 10, 21).unwrap();
            let to = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
            let mid = from + chrono::Duration::days(cut);
            let whole = fold(&rows, from, to);
            let mut parts = fold(&rows, from, mid).days;
            parts.extend(fold(&rows, mid.succ_opt().unwrap(), to).days);
            let nonzero = |v: Vec<CoverageDay>| -> Vec<CoverageDay> {
                let mut v: Vec<_> = v.into_iter().filter(|d| d.figures != Figures::default()).collect();
                v.sort_by(|a, b| (a.day, &a.key).cmp(&(b.day, &b.key)));
                v
            };
            prop_assert_eq!(nonzero(whole.days), nonzero(parts));
        }
    }
}
