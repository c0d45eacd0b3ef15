//! A billing period: a calendar month in Europe/Berlin time.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::Berlin;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    year: i32,
    month: u32,
}

impl Period {
    pub fn new(year: i32, month: u32) -> Result<Period, String> {
        if !(2020..=2100).contains(&year) || !(1..=12).contains(&month) {
            return Err(format!("{year:04}-{month:02} is not a period between 2020-01 and 2100-12"));
        }
        Ok(Period { year, month })
    }

    /// `YYYY-MM`.
    pub fn parse(text: &str) -> Result<Period, String> {
        let bad = || format!("{text:?} is not a period; write it as YYYY-MM, e.g. 2026-11");
        let (y, m) = text.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Period::new(y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?)
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u32 {
        self.month
    }

    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("valid period")
    }

    pub fn last_day(self) -> NaiveDate {
        self.next().first_day().pred_opt().expect("valid date")
    }

    pub fn next(self) -> Period {
        if self.month == 12 {
            Period { year: self.year + 1, month: 1 }
        } else {
            Period { year: self.year, month: self.month + 1 }
        }
    }

    pub fn prev(self) -> Period {
        if self.month == 1 {
            Period { year: self.year - 1, month: 12 }
        } else {
            Period { year: self.year, month: self.month - 1 }
        }
    }

    /// Midnight of the first day in Berlin, as a UTC instant.
    pub fn start(self) -> DateTime<Utc> {
        let local = self.first_day().and_hms_opt(0, 0, 0).expect("midnight");
        // Berlin never changes its clocks at midnight, so midnight is never ambiguous or skipped.
        Berlin.from_local_datetime(&local).single().expect("Berlin midnight is unambiguous").with_timezone(&Utc)
    }

    /// The start of the next period (exclusive end).
    pub fn end(self) -> DateTime<Utc> {
        self.next().start()
    }

    /// The period (Berlin month) that contains `t`.
    pub fn of(t: DateTime<Utc>) -> Period {
        let local = t.with_timezone(&Berlin);
        Period { year: local.year(), month: local.month() }
    }

    /// Hours in the period (743, 744 or 745 across the clock changes).
    pub fn hours(self) -> i64 {
        (self.end() - self.start()).num_hours()
    }
}

/// The instants a request may name: those of the periods there can be (2020-01 to 2100-12).
/// Outside them there is nothing to read, and date arithmetic at chrono's or PostgreSQL's limits
/// would fail; so a request naming one is refused first, with this message.
pub fn check_instant(t: DateTime<Utc>) -> Result<(), String> {
    let (first, last) = (Period { year: 2020, month: 1 }, Period { year: 2100, month: 12 });
    if t < first.start() || t > last.end() {
        return Err(format!(
            "{} is outside {} to {}",
            t.to_rfc3339(),
            first.start().to_rfc3339(),
            last.end().to_rfc3339()
        ));
    }
    Ok(())
}

/// The calendar dates a request may name: those of the periods there can be (see [`check_instant`]).
pub fn check_date(d: NaiveDate) -> Result<(), String> {
    if !(2020..=2100).contains(&d.year()) {
        return Err(format!("{d} is outside 2020-01-01 to 2100-12-31"));
    }
    Ok(())
}

/// Midnight at the start of a Berlin calendar date, as a UTC instant.
pub fn berlin_midnight(d: NaiveDate) -> DateTime<Utc> {
    let local = d.and_hms_opt(0, 0, 0).expect("midnight");
    Berlin.from_local_datetime(&local).single().expect("Berlin midnight is unambiguous").with_timezone(&Utc)
}

/// The Berlin calendar date of an instant (issue and due dates on invoices).
pub fn berlin_date(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&Berlin).date_naive()
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Period, D::Error> {
        Period::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_may_name_only_dates_of_possible_periods() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert!(check_instant(t("2026-08-01T00:00:00Z")).is_ok());
        assert!(check_instant(Period::new(2100, 12).unwrap().end()).is_ok());
        for bad in ["2019-12-31T22:00:00Z", "2101-01-01T00:00:00Z"] {
            assert!(check_instant(t(bad)).is_err(), "{bad}");
        }
        assert!(check_instant(DateTime::<Utc>::MAX_UTC).is_err() && check_instant(DateTime::<Utc>::MIN_UTC).is_err());
        assert!(check_date(NaiveDate::from_ymd_opt(2100, 12, 31).unwrap()).is_ok());
        assert!(check_date(NaiveDate::MAX).is_err() && check_date(NaiveDate::MIN).is_err());
    }

    #[test]
    fn berlin_months_in_utc() {
        let nov = Period::parse("2026-11").unwrap();
        assert_eq!(nov.start().to_rfc3339(), "2026-10-31T23:00:00+00:00");
        assert_eq!(nov.end().to_rfc3339(), "2026-11-30T23:00:00+00:00");
        assert_eq!(nov.hours(), 720);
        assert_eq!(Period::parse("2026-10").unwrap().hours(), 745);
        assert_eq!(Period::parse("2026-03").unwrap().hours(), 743);
        assert_eq!(Period::of(nov.start()), nov);
        assert_eq!(Period::of(nov.end()), nov.next());
        assert_eq!(Period::parse("2026-12").unwrap().next().to_string(), "2027-01");
        assert!(Period::parse("2026-13").is_err());
        assert!(Period::parse("26-11").is_err());
    }
}
