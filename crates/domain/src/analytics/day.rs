//! Local calendar days: every analytics boundary is a day in the app's own zone.

use crate::FieldError;
use jiff::civil::Date;
use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;
use std::fmt;

const MICROS_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

/// A calendar day in an app's time zone, as the number of days since 1970-01-01.
///
/// A plain integer so that day arithmetic, ranges and map keys cost nothing; the
/// zone is applied once, when an instant is turned into a day.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalDay(i32);

impl LocalDay {
    pub const fn from_number(days_since_1970: i32) -> Self {
        Self(days_since_1970)
    }

    pub const fn number(self) -> i32 {
        self.0
    }

    /// The local day containing an instant (UTC microseconds) in `zone`.
    pub fn of_micros(zone: &TimeZone, micros: i64) -> Self {
        let seconds = micros.div_euclid(MICROS_PER_SECOND);
        let offset = Timestamp::from_second(seconds)
            .map(|at| zone.to_offset(at))
            .unwrap_or(Offset::UTC);
        Self::of_local_seconds(seconds + i64::from(offset.seconds()))
    }

    fn of_local_seconds(local_seconds: i64) -> Self {
        Self(local_seconds.div_euclid(SECONDS_PER_DAY) as i32)
    }

    /// The first instant of this local day in `zone`, in UTC microseconds.
    ///
    /// On a day whose midnight is skipped by a daylight-saving change the day
    /// starts at the first wall-clock time that exists.
    pub fn start_micros(self, zone: &TimeZone) -> i64 {
        let midnight = self.date().to_datetime(jiff::civil::Time::midnight());
        zone.to_ambiguous_timestamp(midnight)
            .compatible()
            .map(|at| at.as_microsecond())
            .unwrap_or_else(|_| i64::from(self.0) * SECONDS_PER_DAY * MICROS_PER_SECOND)
    }

    pub fn from_date(date: Date) -> Self {
        Self(days_from_civil(
            i32::from(date.year()),
            date.month() as u32,
            date.day() as u32,
        ))
    }

    pub fn date(self) -> Date {
        let (year, month, day) = civil_from_days(self.0);
        Date::new(year as i16, month as i8, day as i8).unwrap_or(Date::MIN)
    }

    /// Parses `YYYY-MM-DD`; `field` names the parameter in the error.
    pub fn parse(text: &str, field: &str) -> Result<Self, FieldError> {
        let looks_right =
            text.len() == 10 && text.as_bytes()[4] == b'-' && text.as_bytes()[7] == b'-';
        looks_right
            .then(|| text.parse::<Date>().ok())
            .flatten()
            .filter(|date| (1970..=9999).contains(&date.year()))
            .map(Self::from_date)
            .ok_or_else(|| {
                FieldError::new(
                    "invalid_date",
                    field,
                    format!("{text:?} is not a date of the form YYYY-MM-DD (from 1970 on)"),
                )
            })
    }

    pub fn plus(self, days: i32) -> Self {
        Self(self.0 + days)
    }

    /// Days from `earlier` to `self` (negative if `earlier` is later).
    pub fn days_since(self, earlier: LocalDay) -> i32 {
        self.0 - earlier.0
    }

    /// The Monday starting this day's week (weeks run Monday to Sunday, as in ISO 8601).
    pub fn week_start(self) -> Self {
        // 1970-01-01 was a Thursday, three days after a Monday.
        Self(self.0 - (self.0 + 3).rem_euclid(7))
    }

    /// Every day from `self` to `last`, both included.
    pub fn through(self, last: LocalDay) -> impl Iterator<Item = LocalDay> {
        (self.0..=last.0).map(LocalDay)
    }
}

impl fmt::Display for LocalDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.date())
    }
}

impl fmt::Debug for LocalDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalDay({})", self.date())
    }
}

// Proleptic Gregorian conversions after Howard Hinnant's `days_from_civil` /
// `civil_from_days` (public-domain algorithms), exact for every date jiff supports.
fn days_from_civil(year: i32, month: u32, day: u32) -> i32 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400) as u32;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era as i32 - 719_468
}

fn civil_from_days(days: i32) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097) as u32;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era as i32 + era * 400 + i32::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn zone(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    fn micros(rfc3339: &str) -> i64 {
        rfc3339.parse::<Timestamp>().unwrap().as_microsecond()
    }

    #[test]
    fn the_last_and_first_second_of_a_shanghai_day_fall_on_different_days() {
        let shanghai = zone("Asia/Shanghai");
        let before = LocalDay::of_micros(&shanghai, micros("2026-11-23T23:59:59+08:00"));
        let after = LocalDay::of_micros(&shanghai, micros("2026-11-24T00:00:00+08:00"));
        assert_eq!(before.to_string(), "2026-11-23");
        assert_eq!(after.to_string(), "2026-11-24");
        assert_eq!(after.days_since(before), 1);
    }

    #[test]
    fn los_angeles_days_follow_the_daylight_saving_change() {
        let la = zone("America/Los_Angeles");
        // 2026-11-01 is 25 hours long in Los Angeles: PDT until 02:00, then PST.
        let day = LocalDay::parse("2026-11-01", "from").unwrap();
        assert_eq!(day.start_micros(&la), micros("2026-11-01T00:00:00-07:00"));
        assert_eq!(
            day.plus(1).start_micros(&la),
            micros("2026-11-02T00:00:00-08:00")
        );
        let late = LocalDay::of_micros(&la, micros("2026-11-01T23:59:59-08:00"));
        assert_eq!(late, day);
        // In UTC that instant is already 2026-11-02.
        assert_eq!(
            LocalDay::of_micros(&zone("UTC"), micros("2026-11-01T23:59:59-08:00")),
            day.plus(1)
        );
        // 2026-03-08 is 23 hours long.
        let spring = LocalDay::parse("2026-03-08", "from").unwrap();
        let hours = (spring.plus(1).start_micros(&la) - spring.start_micros(&la)) / 3_600_000_000;
        assert_eq!(hours, 23);
    }

    #[test]
    fn weeks_start_on_monday() {
        let thursday = LocalDay::parse("2026-11-26", "d").unwrap();
        assert_eq!(thursday.week_start().to_string(), "2026-11-23");
        let monday = LocalDay::parse("2026-11-23", "d").unwrap();
        assert_eq!(monday.week_start(), monday);
        let sunday = LocalDay::parse("2026-11-29", "d").unwrap();
        assert_eq!(sunday.week_start(), monday);
    }

    #[test]
    fn bad_dates_name_the_field() {
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "26-01-01",
            "2026/01/01",
            "",
            "1969-12-31",
            "2026-1-1",
        ] {
            let err = LocalDay::parse(bad, "from").unwrap_err();
            assert_eq!(err.field.as_deref(), Some("from"), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn day_numbers_agree_with_jiff(days in -100_000i32..2_900_000) {
            let date = LocalDay::from_number(days).date();
            let expected = Date::constant(1970, 1, 1)
                .checked_add(jiff::Span::new().days(days))
                .unwrap();
            prop_assert_eq!(date, expected);
            prop_assert_eq!(LocalDay::from_date(date).number(), days);
        }

        #[test]
        fn an_instant_falls_inside_its_local_day(seconds in 0i64..4_000_000_000, zone_pick in 0usize..4) {
            let zone = zone(["Asia/Shanghai", "America/Los_Angeles", "UTC", "Australia/Lord_Howe"][zone_pick]);
            let at = seconds * MICROS_PER_SECOND;
            let day = LocalDay::of_micros(&zone, at);
            prop_assert!(day.start_micros(&zone) <= at);
            prop_assert!(at < day.plus(1).start_micros(&zone));
        }
    }
}
